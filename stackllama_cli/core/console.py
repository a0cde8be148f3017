"""Console output and logging: the one Rich console (stderr), progress bars, JSON on stdout.

Conventions:
- stdout carries data only (JSON, JSONL) so commands compose in pipelines;
  everything meant for people (progress, tables, messages) goes to stderr.
- only the main process (rank 0) prints (dist/ranks.py says which one that is).
"""

from __future__ import annotations

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

from stackllama_cli.dist.ranks import is_main_process

console = Console(stderr=True, highlight=False)


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


def summary_table(title: str, rows: dict[str, Any]) -> None:
    """Print a two-column Rich table on stderr (main process only)."""
    if not is_main_process():
        return
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in rows.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
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
