"""What a relaunched run shows on stderr: the ranks' output relayed, torch-elastic's noise dropped,
and each rank's one-line error shown once by the parent."""

from __future__ import annotations

import os
import re
from pathlib import Path

ERROR_DIR_ENV = "STACKLLAMA_ERROR_DIR"  # ranks > 0 leave their one-line error here


_ELASTIC_LOG = re.compile(rb"^[WEI]\d{4} .*torch/distributed/")


_ROOT_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)")


_ROOT_EXIT = re.compile(r"^\s*exitcode\s*:\s*(-?\d+).*?(?:\((SIG\w+)\))?\s*$")


class LauncherNoise:
    """Drops torch-elastic's log lines and the launcher's traceback (a failing rank has printed its own
    one-line error already); everything else, the ranks' output, passes through untouched. What it drops
    is kept, so that a launcher failure no rank explained can still be summed up in one line."""

    def __init__(self, debug: bool = False):
        self.debug = debug
        self.dropping = False
        self.dropped: list[str] = []
        self.partial = b""  # the current line's start, held back while it might still be noise
        self.passing = False  # the current line's start was written: the rest of it follows unfiltered

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to show for a chunk of the launcher's stderr. Works on chunks, not lines, because
        Rich redraws a progress bar with '\\r' and no newline: a line-by-line relay froze it."""
        if self.debug:
            return chunk
        out = []
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        for line in lines:
            if self.passing or self.keep(line + b"\n"):
                out.append(line + b"\n")
            self.passing = False
        if self.partial and (self.passing or not self._may_be_noise(self.partial)):
            out.append(self.partial)
            self.partial, self.passing = b"", True
        return b"".join(out)

    def flush(self) -> bytes:
        """At the end: what is left of a last line without a newline."""
        rest, self.partial = self.partial, b""
        return rest if rest and (self.passing or self.keep(rest)) else b""

    def _may_be_noise(self, start: bytes) -> bool:
        if self.dropping:
            return True
        traceback = b"Traceback (most recent call last)"
        return (traceback.startswith(start) or start.startswith(traceback)
                or bool(re.match(rb"^[WEI]\d{0,4}$", start)) or bool(_ELASTIC_LOG.match(start))
                or bool(re.match(rb"^[WEI]\d{4} [^\n]*$", start)))  # a log line whose path has not come yet

    def keep(self, line: bytes) -> bool:
        if self.debug:
            return True
        if line.startswith(b"Traceback (most recent call last)"):
            self.dropping = True  # from the launcher itself: our ranks print tracebacks only with --debug
        if self.dropping or _ELASTIC_LOG.match(line):
            self.dropped.append(line.decode("utf-8", "replace").rstrip())
            return False
        return True

    def summary(self) -> str | None:
        """One line for the launcher's failure: the rank that died first and how, else its last error line."""
        lines = self.dropped
        if "Root Cause (first observed failure):" in lines:
            rank = code = sig = None
            for line in lines[lines.index("Root Cause (first observed failure):"):]:
                if rank is None and (m := _ROOT_RANK.match(line)):
                    rank = m.group(1)
                elif code is None and (m := _ROOT_EXIT.match(line)):
                    code, sig = int(m.group(1)), m.group(2)
            if rank is not None and code is not None:
                if code < 0:
                    hint = " (the system killed it: often out of memory)" if sig == "SIGKILL" else ""
                    return f"rank {rank} died from {sig or f'signal {-code}'}{hint}"
                return f"rank {rank} exited with code {code}"
        for line in reversed(lines):
            if line.strip() and not line.startswith((" ", "\t", "=", "-")) and not _ELASTIC_LOG.match(line.encode()):
                return line.strip()
        return None


def record_rank_error(message: str) -> None:
    """Called by `cli.main` on every rank under our launcher: the parent shows each distinct error once."""
    directory = os.environ.get(ERROR_DIR_ENV)
    rank = os.environ.get("RANK", "0")
    if directory:
        with open(Path(directory) / f"rank-{rank}.txt", "w", encoding="utf-8") as fh:
            fh.write(message)


def report_failure(directory: Path, noise: LauncherNoise, code: int) -> None:
    """Show each distinct rank error once (rank 0's is on screen already); if no rank explained the
    failure (killed, or the launcher itself failed), one line from the launcher's own report."""
    from rich.text import Text

    from stackllama_cli.core.console import console

    messages: dict[str, list[str]] = {}
    for path in sorted(directory.glob("rank-*.txt"), key=lambda p: int(p.stem.split("-")[1])):
        messages.setdefault(path.read_text(encoding="utf-8"), []).append(path.stem.split("-")[1])
    for message, ranks in messages.items():
        if "0" in ranks:  # rank 0 has printed it already
            continue
        console.print(Text.assemble((f"error (rank {', '.join(ranks)}): ", "bold red"), message), soft_wrap=True)
    if not messages and not noise.debug:
        reason = noise.summary() or f"accelerate launch exited with code {code}"
        console.print(Text.assemble(("error: ", "bold red"), reason, " (rerun with --debug for the launcher's log)"),
                      soft_wrap=True)
