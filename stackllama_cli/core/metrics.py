"""Machine-readable records of a run: the JSONL metrics log, reading it back, cutting it at a resumed
checkpoint, and plotting curves from it (PNG, written atomically)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from stackllama_cli.core.console import finite_or_none, json_default
from stackllama_cli.core.files import atomic_write_text, replace_file
from stackllama_cli.dist.ranks import is_main_process

METRICS_FILENAME = "metrics.jsonl"


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


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop records past the checkpoint being resumed, so the log reads like one uninterrupted run."""
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= max_step]
        atomic_write_text(path, "".join(line + "\n" for line in lines))


def plot_curves(records: list[dict], path: str | Path, series: list[tuple[str, str]], title: str,
                x_key: str = "step") -> Path | None:
    """A PNG with one line per (metric key, label) over `x_key`; panels for metrics of different scale."""
    present = [(k, label) for k, label in series if any(r.get(k) is not None for r in records)]
    if not present or not is_main_process():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(present), 1, figsize=(7, 2.6 * len(present)), sharex=True, squeeze=False)
    for ax, (key, label) in zip(axes[:, 0], present):
        points = [(r[x_key], r[key]) for r in records if r.get(key) is not None and r.get(x_key) is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 50 else None)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel(x_key)
    fig.tight_layout()
    try:
        return replace_file(lambda tmp: fig.savefig(tmp, dpi=110), path)
    finally:
        plt.close(fig)
