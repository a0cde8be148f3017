"""Console output and logging: the one Rich console (stderr), progress, summaries, JSON on stdout.

Conventions:
- stdout carries data only (JSON, JSONL) so commands compose in pipelines;
  everything meant for people (progress, tables, messages) goes to stderr.
- only the main process (rank 0) prints (dist/ranks.py says which one that is).

How stderr reads is decided here, once per process (`configure`, called by the root command in
cli/app.py with --log-format and --quiet, which it also exports to the processes it starts):
- rich:  live progress bars and colours; what `auto` picks on a terminal.
- plain: no escape codes, no redraws; progress is one line per update (core/progress_lines.py, and
         stages/callbacks.py for the Trainer stages); what `auto` picks when stderr is a file or a pipe
         (nohup, `2> log`, `| tee`, CI) and on TERM=dumb.
- json:  one JSON object per line on stderr ({"time", "event", ...}) for log collectors; whatever
         is printed through the console (a message, a table) arrives as {"event": "message", "text": ...}.
- quiet (with any format): errors, warnings and the final summary only.
NO_COLOR is honoured by Rich itself (colourless rich mode).
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from stackllama_cli.core.errors import UsageError
from stackllama_cli.dist.ranks import is_main_process

LOG_FORMATS = ("auto", "rich", "plain", "json")
LOG_FORMAT_ENV = "STACKLLAMA_LOG_FORMAT"  # --log-format, inherited by relaunched ranks and demo's stages
QUIET_ENV = "STACKLLAMA_QUIET"  # --quiet, likewise

console = Console(stderr=True, highlight=False)
_state: dict[str, Any] = {"mode": None, "quiet": False}


def configure(log_format: str | None = None, quiet: bool | None = None) -> str:
    """Set this process's output mode from the options, else from the environment; returns rich, plain or json."""
    requested = (log_format or os.environ.get(LOG_FORMAT_ENV) or "auto").strip().lower()
    _state["quiet"] = quiet if quiet is not None else os.environ.get(QUIET_ENV, "") not in ("", "0")
    _state["mode"] = _apply(requested if requested in LOG_FORMATS else "auto")
    if requested not in LOG_FORMATS:
        raise UsageError(f"--log-format (or {LOG_FORMAT_ENV}) must be one of {', '.join(LOG_FORMATS)}, "
                         f"not {requested!r}")
    return _state["mode"]


def _apply(requested: str) -> str:
    """Point the shared console at this mode. Other modules hold `console` itself, so it is updated in place;
    a fresh Console reads the environment (NO_COLOR, TERM, TTY_*, FORCE_COLOR) and the current stderr."""
    probe = Console(stderr=True)
    mode = ("rich" if probe.is_interactive else "plain") if requested == "auto" else requested
    if mode == "rich" and not probe.is_interactive:  # asked for explicitly: bars even into a file
        probe = Console(stderr=True, force_terminal=True, force_interactive=True)
    console.file = _JsonLines() if mode == "json" else None  # None: whatever sys.stderr is at each write
    console._force_terminal = probe._force_terminal if mode == "rich" else None
    console.is_interactive = mode == "rich" and probe.is_interactive
    console._color_system = probe._color_system if mode == "rich" else None  # no escape codes in logs
    console.no_color = probe.no_color
    console.soft_wrap = mode != "rich"  # a log line stays one line, whatever its length
    return mode


def mode() -> str:
    """rich, plain or json (configured from the environment on first use outside the command line)."""
    if _state["mode"] is None:
        try:
            configure()
        except UsageError:
            pass  # a bad STACKLLAMA_LOG_FORMAT: the command line reports it; output falls back to auto
    return _state["mode"]


def quiet() -> bool:
    mode()
    return _state["quiet"]


def emit(event: str, **fields: Any) -> None:
    """One JSON object on stderr (json mode): {"time", "event", **fields}; non-finite floats become null."""
    record = {"time": datetime.datetime.now().astimezone().isoformat(timespec="milliseconds"), "event": event,
              **{k: finite_or_none(v) for k, v in fields.items()}}
    sys.stderr.write(json.dumps(record, default=json_default, ensure_ascii=False) + "\n")
    sys.stderr.flush()


class _JsonLines(io.TextIOBase):
    """The console's file in json mode: what one print writes (a message, a whole table) becomes one
    {"event": "message", "text": ...} object."""

    encoding = "utf-8"

    def __init__(self) -> None:
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        if self.pending.endswith("\n"):
            self.flush()
        return len(text)

    def flush(self) -> None:
        text, self.pending = "\n".join(line.rstrip() for line in self.pending.splitlines()).strip("\n"), ""
        if text.strip():
            emit("message", text=text)

    def isatty(self) -> bool:
        return False


def report(event: str, text: str, **fields: Any) -> None:
    """A progress line: `text` in plain (and rich) mode, `fields` as a JSON event in json mode; nothing on
    ranks other than 0 or with --quiet."""
    if not is_main_process() or quiet():
        return
    if mode() == "json":
        emit(event, **fields)
    else:
        console.print(Text(text), soft_wrap=True)


def info(message: str) -> None:
    if not is_main_process() or quiet():
        return
    if mode() == "json":
        emit("info", message=Text.from_markup(message).plain)
    else:
        console.print(message)


def warn(message: str) -> None:
    """Shown with --quiet too: a warning says a result may not be what was asked for."""
    if not is_main_process():
        return
    if mode() == "json":
        emit("warning", message=Text.from_markup(message).plain)
    else:
        console.print(f"[yellow]warning:[/] {message}")


def error(message: str, label: str = "error") -> None:
    """A one-line error (message is plain text, not markup); shown in every mode."""
    if mode() == "json":
        emit("error", message=message, **({"label": label} if label != "error" else {}))
    else:
        console.print(Text.assemble((f"{label}: ", "bold red"), message), soft_wrap=True)


def setup_logging(verbose: bool = False) -> None:
    """Rich logging for diagnostics; quiet third-party noise unless verbose."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=False)],
        force=True,
    )
    logging.captureWarnings(mode() == "json")  # Python's warnings, else written raw, become JSON events too
    quiet_libraries(verbose)


def quiet_libraries(verbose: bool = False) -> None:
    """Silence the per-call warnings that drown real output (bitsandbytes casts, tokenizers fork)."""
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if not verbose:
        warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")
        warnings.filterwarnings("ignore", message=".*inputs will be cast from.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        for name in ("transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes", "torch"):
            logging.getLogger(name).setLevel(logging.ERROR)
    # Library progress bars (dataset generation, weight loading) clutter our own Rich progress.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_TQDM", "1")


def progress(transient: bool = False, eta_field: bool = False):
    """Progress on stderr in this process's mode: a Rich bar (rich), or the same calls reported as lines
    (plain, json: core/progress_lines.py); silent on ranks other than 0 and with --quiet.
    Callers use add_task(description, total=..., extra=...), advance, update, and `with`.
    eta_field: the caller computes the ETA and passes it as the task field `eta` (Rich's own assumes
    the total is what ends the task)."""
    silent = quiet() or not is_main_process()
    if mode() != "rich" and not silent:
        from stackllama_cli.core.progress_lines import LineProgress

        return LineProgress()
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[extra]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}") if eta_field else TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=silent,
    )


def summary_table(title: str, rows: dict[str, Any]) -> None:
    """The final summary of a stage on stderr (main process only, also with --quiet): a two-column table,
    or one {"event": "summary", "title", "values"} object in json mode."""
    if not is_main_process():
        return
    if mode() == "json":
        emit("summary", title=title, values={k: finite_or_none(v) for k, v in rows.items()})
        return
    from rich.table import Table

    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in rows.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(Text(title, style="bold"), soft_wrap=True)  # a long path above the table, not wrapped in it
    console.print(table)


def json_default(value: Any) -> Any:
    """Serialise numpy/torch scalars and paths in JSON output."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN/Infinity: write them as null so every line parses."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def print_json(obj: Any) -> None:
    """One JSON document on stdout (the data channel); under several processes only rank 0 writes it,
    so a command's summary appears once whatever the number of ranks that computed it."""
    if not is_main_process():
        return
    sys.stdout.write(json.dumps(obj, default=json_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()
