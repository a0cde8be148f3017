"""One writer per output: an advisory lock file beside the output, holding its writer's pid.

A second run on the same output fails at once with a line naming the first one. A lock left by a
process that no longer exists (killed, machine rebooted) is taken over. Only the main process of a
data-parallel run takes it (the other ranks write into the directory rank 0 prepared).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.dist.ranks import is_main_process

LOCK_SUFFIX = ".stackllama-lock"
UNREADABLE_GRACE_S = 5.0  # a lock file too fresh to hold its JSON yet may be a writer between open and write


def lock_path(output: str | Path) -> Path:
    output = Path(output).absolute()
    return output.parent / f".{output.name}{LOCK_SUFFIX}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def holder_alive(holder: dict | None, age_s: float) -> bool:
    """Whether a lock's holder may still be writing. Another host's pid cannot be checked: assume it is."""
    if holder is None:
        return age_s < UNREADABLE_GRACE_S
    if holder.get("host") != socket.gethostname():
        return True
    pid = int(holder.get("pid", -1))
    return pid != os.getpid() and pid_alive(pid)  # our own pid: an earlier run of this process that failed


def _read(path: Path) -> tuple[dict | None, float]:
    try:
        age = time.time() - path.stat().st_mtime
        return json.loads(path.read_text(encoding="utf-8")), age
    except FileNotFoundError:
        raise
    except (OSError, ValueError):
        return None, age


@contextlib.contextmanager
def output_lock(output: str | Path) -> Iterator[None]:
    """Hold `output`'s lock for the duration of the block (main process only)."""
    if not is_main_process():
        yield
        return
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
          "command": " ".join(["stackllama", *sys.argv[1:]])}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder, age = _read(path)
            except FileNotFoundError:
                continue  # released meanwhile
            if holder_alive(holder, age):
                who = f"pid {holder['pid']} on {holder['host']}, since {holder['started']}: {holder['command']}" \
                    if holder else "a run that is starting"
                raise StackLlamaError(f"{output} is being written by another stackllama run ({who}); wait for it, "
                                      f"or choose another --output (remove {path} if that run is gone)") from None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # stale: its process has ended
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me, fh)
        break
    else:
        raise StackLlamaError(f"cannot take the lock {path}; remove it if no stackllama run is writing {output}")
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                path.unlink()
