"""Several sites: each input goes through both passes into its own part (a folder of split files),
`workers` sites at a time in separate processes; the parts are appended to the output in input order
once every site is done, so the output is the one a sequential run writes and a failing site
leaves nothing behind (or, with keep_going, is reported and left out).
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.data.progress import Board, QueueReport
from stackllama_cli.data.site import Report, no_report, prepare_site
from stackllama_cli.data.writers import SplitWriters

_REPORT: Report = no_report  # a site worker's report (set by _init_worker)


@dataclass
class SiteRuns:
    sites: dict[int, str] = field(default_factory=dict)  # input index -> site name, for the ones that completed
    stats: dict[int, Counter] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # input -> one-line error (keep_going)


def site_workers(requested: int, inputs: int) -> int:
    """Site processes: as asked, else one per core (at most 8), never more than there are sites."""
    return max(1, min(requested or min(8, os.cpu_count() or 1), inputs))


def run_sites(inputs: list[Path], cfg, fractions: dict[str, float], parts: Path, board: Board,
              keep_going: bool = False) -> SiteRuns:
    """Each input into parts/<index>/; StackLlamaError of a site fails the run unless keep_going."""
    runs = SiteRuns()
    workers = site_workers(cfg.workers, len(inputs))
    if workers == 1:
        for index, path in enumerate(inputs):
            try:
                runs.sites[index], runs.stats[index] = site_job(index, path, cfg, fractions, parts, board.report)
            except StackLlamaError as exc:
                _failed(runs, path, exc, keep_going)
            board.report("", "", "done", 1)
        return runs
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                      else "spawn")  # not fork: the main process runs a progress thread
    events = ctx.Queue()
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(events,))
    try:
        # biggest first, so that a large site does not start last and run alone
        order = sorted(range(len(inputs)), key=lambda i: -_size(inputs[i]))
        futures = {pool.submit(site_job, i, inputs[i], cfg, fractions, parts): i for i in order}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(events, board)
            for future in done:
                index = futures[future]
                try:
                    runs.sites[index], runs.stats[index] = future.result()
                except StackLlamaError as exc:
                    _failed(runs, inputs[index], exc, keep_going)
                board.report("", "", "done", 1)
        _drain(events, board)
    except BaseException:
        for process in list(getattr(pool, "_processes", {}).values()):  # stop the other sites now
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return runs


def _failed(runs: SiteRuns, path: Path, exc: StackLlamaError, keep_going: bool) -> None:
    if not keep_going:
        raise exc
    runs.failed[str(path)] = str(exc)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else (path / "Posts.xml").stat().st_size
    except OSError:
        return 0


def _init_worker(events) -> None:
    global _REPORT
    _REPORT = QueueReport(events)


def _drain(events, board: Board) -> None:
    while True:
        try:
            board.report(*events.get_nowait())
        except queue_module.Empty:
            return


def site_job(index: int, path: Path, cfg, fractions: dict[str, float], parts: Path,
             report: Report | None = None) -> tuple[str, Counter]:
    """One site into parts/<index>/ (conversion in this process); returns (site, its stats)."""
    stats: Counter = Counter()
    folder = parts / str(index)
    folder.mkdir(parents=True, exist_ok=True)
    with SplitWriters.part(folder, cfg.output == "-", cfg.format) as writers:
        site = prepare_site(path, cfg, fractions, writers, stats, report or _REPORT, workers=1)
    return site, stats
