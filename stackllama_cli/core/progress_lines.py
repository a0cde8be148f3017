"""Progress as lines, for stderr that is not a terminal (plain and json modes of core/console.py).

A Rich live bar redraws itself in place; written to a file it shows nothing until the end. `LineProgress`
takes the same calls (the part of Rich's Progress the stages use) and reports a task as one line (or one
JSON event): at most every `interval_s` seconds while it runs, when its description changes (a new phase),
and when it ends. A task that ends before its first line is reported once, when the next task starts or
the block ends; not at all if the block ends in an error, which then stays the one line that matters.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable


def clock(seconds: float | None) -> str:
    """0:01:05 (hours unbounded); ? when unknown."""
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def number(x: float | None) -> str:
    """A count or an amount in a unit, short: 12, 12.3, 0.004."""
    if x is None:
        return "?"
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.1f}" if abs(x) >= 1 else f"{x:.3f}"


@dataclasses.dataclass
class _Task:
    description: str
    total: float | None
    completed: float
    fields: dict[str, Any]
    start: float
    last_report: float
    reported: tuple[str, float]  # (description, completed) of the last line
    lines: int = 0


class LineProgress:
    """Rich Progress's add_task / advance / update / start / stop / with-block, reported as lines."""

    interval_s = 10.0

    def __init__(self, now: Callable[[], float] = time.monotonic):
        self.now = now
        self.tasks: dict[int, _Task] = {}
        self.disable = False  # as Rich's: a caller may silence this one (e.g. prepare-data --quiet)
        self._next_id = 0  # ids stay unique when tasks are removed (Rich's remove_task)

    def __enter__(self) -> LineProgress:
        self.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.stop(failed=exc_type is not None)

    def start(self) -> None:
        pass

    def stop(self, failed: bool = False) -> None:
        for task in self.tasks.values():
            if not failed and (task.description, task.completed) != task.reported:
                self._report(task)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        for task in self.tasks.values():  # a task that ended quietly: its line before the next task's
            if self._done(task) and (task.description, task.completed) != task.reported:
                self._report(task)
        t = self.now()
        task_id, self._next_id = self._next_id, self._next_id + 1
        self.tasks[task_id] = _Task(description, total, completed, fields, t, t, (description, completed))
        return task_id

    def remove_task(self, task_id: int) -> None:
        task = self.tasks.pop(task_id)
        if (task.description, task.completed) != task.reported:
            self._report(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, **fields: Any) -> None:
        task = self.tasks[task_id]
        was_done = self._done(task)
        new_phase = description is not None and description != task.description
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance:
            task.completed += advance
        if description is not None:
            task.description = description
        fields.pop("refresh", None)
        task.fields.update(fields)
        ended = self._done(task) and not was_done and task.lines > 0  # a long task: at once
        if new_phase or ended or self.now() - task.last_report >= self.interval_s:
            self._report(task)

    @staticmethod
    def _done(task: _Task) -> bool:
        return task.total is not None and task.completed >= task.total

    def _report(self, task: _Task) -> None:
        from stackllama_cli.core.console import report

        t = self.now()
        task.last_report, task.reported = t, (task.description, task.completed)
        task.lines += 1
        if self.disable:
            return
        report("progress", self.line(task, t), **self.fields(task, t))

    @staticmethod
    def _eta(task: _Task, elapsed: float) -> float | None:
        if task.total is None or task.completed <= 0:
            return None
        return max(0.0, elapsed / task.completed * (task.total - task.completed))

    def line(self, task: _Task, t: float) -> str:
        """scan beer.stackexchange.com 12.3/45 MiB  27%  elapsed 0:00:10  ETA 0:00:27"""
        elapsed = t - task.start
        parts = [f"{task.description} {number(task.completed)}"
                 + (f"/{number(task.total)}" if task.total is not None else "")
                 + (f" {task.fields['extra']}" if task.fields.get("extra") else "")]
        if task.total:
            parts.append(f"{min(100.0, 100 * task.completed / task.total):.0f}%")
        parts.append(f"elapsed {clock(elapsed)}")
        if task.total is not None:
            parts.append(f"ETA {clock(self._eta(task, elapsed))}")
        return "  ".join(parts)

    def fields(self, task: _Task, t: float) -> dict[str, Any]:
        elapsed = t - task.start
        eta = self._eta(task, elapsed)
        out = {"stage": task.description, "completed": _round(task.completed), "total": _round(task.total),
               "elapsed_s": round(elapsed, 3), "eta_s": None if eta is None else round(eta, 3)}
        if task.fields.get("extra"):
            out["detail"] = task.fields["extra"]
        return out


def _round(x: float | None) -> float | None:
    return round(x, 4) if isinstance(x, float) else x
