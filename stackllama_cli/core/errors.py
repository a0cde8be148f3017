"""The one user-facing error type.

A `StackLlamaError` carries a single sentence that says what went wrong and, where
possible, what to do about it. `cli.main` prints it on one line and exits non-zero;
the traceback is shown only with `--debug` or `STACKLLAMA_DEBUG=1`.
"""

from __future__ import annotations

import os

DEBUG_ENV = "STACKLLAMA_DEBUG"


class StackLlamaError(Exception):
    """An error caused by the user's input or environment, not by a bug."""

    exit_code = 1


class UsageError(StackLlamaError):
    """Invalid combination of options or values (exit code 2, like click)."""

    exit_code = 2


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def one_line(text: str, limit: int = 400) -> str:
    """Collapse an exception message to one line of bounded length."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
