"""Shared bits for the benchmark scripts: paths, timing, peak memory of child processes."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "stackexchange"
BEER = SHARED / "beer.stackexchange.com-Posts.xml"
COFFEE = SHARED / "coffee.stackexchange.com-Posts.xml"


def require_dumps() -> None:
    if not BEER.is_file():
        sys.exit(f"needs the real dumps in {SHARED}")


def stackllama(*args, stdin=None, capture: bool = True) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run `python -m stackllama_cli ARGS` as a child; returns (result, seconds, peak RSS of children in MiB)."""
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "stackllama_cli", *map(str, args)], stdin=stdin, text=True,
                          capture_output=capture, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    seconds = time.time() - start
    if proc.returncode != 0:
        sys.exit(f"stackllama {' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}")
    return proc, seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
