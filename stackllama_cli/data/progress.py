"""prepare-data's progress on stderr: for each input being read, MiB read of its Posts.xml with the
pass (scan, then convert) and an ETA; with several inputs, a line counting finished sites.

Site workers run in other processes: `QueueReport` sends their events through a queue, throttled,
and the main process hands them to `Board.report`.
"""

from __future__ import annotations

import time

from stackllama_cli.core.console import console, progress

MIB = 2**20


class Board:
    """Bars on a terminal; off with `quiet` or when stderr is no terminal (one line per site then would only
    repeat the summary table that follows)."""

    def __init__(self, inputs: int, quiet: bool = False):
        self.bar = progress(transient=True)
        self.bar.disable = self.bar.disable or quiet or not console.is_terminal
        self.tasks: dict[tuple[str, str], int] = {}
        self.sites = self.bar.add_task("sites done", total=inputs, extra="") if inputs > 1 else None

    def __enter__(self) -> "Board":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def report(self, site: str, phase: str, event: str, n: int) -> None:
        key = (site, phase)
        if event == "start":
            self.tasks[key] = self.bar.add_task(f"{phase} {site}", total=n / MIB, extra="MiB")
        elif event == "read" and key in self.tasks:
            self.bar.advance(self.tasks[key], n / MIB)
        elif event == "end" and key in self.tasks:
            self.bar.remove_task(self.tasks.pop(key))
        elif event == "done" and self.sites is not None:
            self.bar.advance(self.sites, 1)


class QueueReport:
    """A site worker's report: events to a multiprocessing queue, reads summed to one message per
    `every` bytes or `seconds` (a message per read would cost more than the reading)."""

    def __init__(self, queue, every: int = 4 * MIB, seconds: float = 0.5):
        self.queue, self.every, self.seconds = queue, every, seconds
        self.pending: dict[tuple[str, str], int] = {}
        self.last = time.monotonic()

    def __call__(self, site: str, phase: str, event: str, n: int) -> None:
        key = (site, phase)
        if event == "read":
            self.pending[key] = self.pending.get(key, 0) + n
            if self.pending[key] < self.every and time.monotonic() - self.last < self.seconds:
                return
            n = self.pending.pop(key)
            self.last = time.monotonic()
        elif key in self.pending:
            self.queue.put((site, phase, "read", self.pending.pop(key)))
        self.queue.put((site, phase, event, n))
