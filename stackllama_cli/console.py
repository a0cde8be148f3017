"""Console output, logging and machine-readable metrics.

Conventions (DESIGN.md §3.5):
- stdout carries data only (JSON, JSONL) so commands compose in pipelines;
  everything meant for people (progress, tables, messages) goes to stderr.
- only the main process (rank 0) prints or writes metrics.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable

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

console = Console(stderr=True, highlight=False)


def rank() -> int:
    """Global rank from the launcher's environment (0 when not distributed)."""
    for var in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def is_main_process() -> bool:
    return rank() == 0


def info(message: str) -> None:
    if is_main_process():
        console.print(message)


def warn(message: str) -> None:
    if is_main_process():
        console.print(f"[yellow]warning:[/] {message}")


def setup_logging(verbose: bool = False) -> None:
    """Rich logging for diagnostics; quiet third-party noise unless verbose."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=False)],
        force=True,
    )
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


def progress(transient: bool = False) -> Progress:
    """A Rich progress bar on stderr, disabled on non-main ranks."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[extra]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=not is_main_process(),
    )


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


class MetricsLog:
    """Append-only JSONL metrics file, one object per line, flushed per write.

    Only the main process writes; other ranks get a no-op log.
    """

    def __init__(self, path: str | Path | None, enabled: bool | None = None):
        self.path = Path(path) if path else None
        self.enabled = (is_main_process() if enabled is None else enabled) and self.path is not None
        self._start = time.time()
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        line = {k: finite_or_none(v) for k, v in record.items()}
        line.setdefault("time", round(time.time() - self._start, 3))
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, default=json_default) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def table_rows(mapping: dict[str, Any]) -> Iterable[tuple[str, str]]:
    for key, value in mapping.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        yield str(key), str(value)
