"""prepare-data throughput, memory and site parallelism on large dumps vs plain markdownify on every body.

    python bench/prepare_data.py [--copies 85] [--memory-copies 425] [--sites 4] [--site-copies 10]

Builds dumps of the beer site replicated with fresh ids (200,090 rows at 85 copies) and runs
`stackllama prepare-data` on them in child processes:

- speed: the big dump in one process. The baseline is the naive approach: markdownify with its
  defaults on every body, single process (measured on one copy's bodies, scaled by the number of
  copies). "Per core" compares CPU seconds (user + system, the child and its workers), so the figure
  is fair on a machine shared with other jobs, where wall time is noisy;
- memory: peak RSS (the largest resident set of the child or any of its workers) of the whole run in
  one process at two sizes, the big dump and one of `--memory-copies` copies (1,000,450 rows at 425),
  the growth per row between them and the projection to StackOverflow's 58M rows. The sizes are far
  apart because the growth is small: between 47k and 200k rows, a few MiB of allocator noise moved
  the figure from 0.013 to 0.024 KiB per row from one run to the next. Pass 1
  (scan and pairing) is measured alone too: its line starts lower but may grow faster, so the
  projection takes the larger of the two lines at 58M rows;
- parallelism: the big dump on every core (conversion workers), and `--sites` dumps of
  `--site-copies` copies each as separate sites, with --workers 1 and on every core (site workers),
  checked to give the same output.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BEER, REPO, require_dumps  # noqa: E402

ID_ATTRS = re.compile(rb'\b(Id|ParentId|AcceptedAnswerId)="(\d+)"')
STACKOVERFLOW_ROWS = 58_000_000
# Peak RSS of a child is read in the child, from VmHWM: Linux gives a child's ru_maxrss the peak RSS of the
# parent that spawned it (subprocess execs from a vfork, and exec keeps the old memory's high-water mark), so
# a child of this bench, which holds earlier runs' outputs, would report the bench's own size.
PEAK = """
def peak_mib():
    import resource
    with open("/proc/self/status") as fh:
        own = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024  # (and workers it waited for)
"""
# pass 1 alone in a child: scan and pair one dump, print the peak RSS (MiB) and the row count
PASS1 = PEAK + """
import sys
from collections import Counter
from stackllama_cli.data.tables import plan_pairs, scan
stats = Counter()
plan_pairs(scan(sys.argv[1], stats), 10, 0, "bench", stats)
print(peak_mib(), stats["rows"])
"""
# `stackllama ARGS` in a child that writes its peak RSS (MiB) to the file $STACKLLAMA_BENCH_PEAK as it exits
STACKLLAMA = PEAK + """
import atexit, os, runpy, sys
atexit.register(lambda: open(os.environ["STACKLLAMA_BENCH_PEAK"], "w").write(str(peak_mib())))
sys.argv[0] = "stackllama"
runpy.run_module("stackllama_cli", run_name="__main__")
"""


def replicate(src: Path, dst: Path, copies: int) -> int:
    """Write `copies` copies of the rows of `src` with ids shifted so that every copy is new. Copies follow
    each other in id space, so ids are as dense as in `src` (beer: 35%, Stack Overflow: ~70%): pass 2's
    duplicate check takes a bit per id up to the largest."""
    rows = [line for line in src.read_bytes().splitlines() if line.strip().startswith(b"<row")]
    offset = max(int(m.group(2)) for r in rows for m in ID_ATTRS.finditer(r)) + 1
    with open(dst, "wb") as fh:
        fh.write(b'<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
        for c in range(copies):
            shift = c * offset
            for row in rows:
                fh.write(ID_ATTRS.sub(lambda m: b'%s="%d"' % (m.group(1), int(m.group(2)) + shift), row) + b"\n")
        fh.write(b"</posts>\n")
    return len(rows) * copies


def run_child_with_usage(*args, stats: bool = True) -> dict:
    """Run `stackllama ARGS` in a child: wall time, CPU time (its rusage from wait4 covers the workers it
    waited for) and peak RSS (its own, or a worker's if larger)."""
    start = time.perf_counter()
    with tempfile.NamedTemporaryFile() as peak:
        proc = subprocess.Popen([sys.executable, "-c", STACKLLAMA, *map(str, args)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, cwd=REPO, env={**os.environ, "STACKLLAMA_BENCH_PEAK": peak.name})
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"stackllama {' '.join(map(str, args))} failed (exit {os.waitstatus_to_exitcode(status)})")
        rss = float(Path(peak.name).read_text())
    wall = time.perf_counter() - start
    return {"wall": wall, "stats": json.loads(out) if stats else None, "stdout": out,
            "cpu": usage.ru_utime + usage.ru_stime, "rss": rss}


def pass1_peak(dump: Path) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", PASS1, str(dump)], capture_output=True, text=True, check=True,
                         cwd=REPO).stdout.split()
    return float(out[0]), int(out[1])


def cpu_per_body(src: Path, repeats: int = 3) -> tuple[float, float, int]:
    """CPU seconds per body of plain markdownify (defaults, html.parser) and of prepare-data's converter
    (html_to_markdown) on every body of `src`, and the number of bodies."""
    from markdownify import markdownify

    from stackllama_cli.data.markdown import html_to_markdown

    bodies = [html.unescape(m.group(1).decode()) for m in re.finditer(rb'Body="([^"]*)"', src.read_bytes())]
    best = {markdownify: float("inf"), html_to_markdown: float("inf")}
    for _ in range(repeats):
        for convert in best:
            start = time.process_time()
            for body in bodies:
                convert(body)
            best[convert] = min(best[convert], time.process_time() - start)
    return best[markdownify] / len(bodies), best[html_to_markdown] / len(bodies), len(bodies)


def slope(small: tuple[float, int], big: tuple[float, int]) -> tuple[float, float]:
    """(KiB per row, projected MiB at StackOverflow's row count) from (MiB, rows) at two sizes."""
    per_row = (big[0] - small[0]) / (big[1] - small[1])  # MiB per row
    return per_row * 1024, big[0] + per_row * (STACKOVERFLOW_ROWS - big[1])


def main() -> None:
    require_dumps()
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=85)
    parser.add_argument("--memory-copies", type=int, default=425)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--site-copies", type=int, default=10)
    args = parser.parse_args()
    cores = os.cpu_count()
    per_body, ours_per_body, bodies_per_copy = cpu_per_body(BEER)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        big, huge = tmp / "big.stackexchange.com-Posts.xml", tmp / "huge.stackexchange.com-Posts.xml"
        rows = replicate(BEER, big, args.copies)
        replicate(BEER, huge, args.memory_copies)
        sites = [tmp / f"site{i}.stackexchange.com-Posts.xml" for i in range(args.sites)]
        for site in sites:
            replicate(BEER, site, args.site_copies)
        pass1 = [pass1_peak(big), pass1_peak(huge)]
        runs = {
            "1 process": run_child_with_usage("prepare-data", big, "-o", tmp / "o2", "--workers", 1, "--json"),
            f"all cores ({cores})": run_child_with_usage("prepare-data", big, "-o", tmp / "o3", "--json"),
            "sites, 1 process": run_child_with_usage("prepare-data", *sites, "-o", "-", "--workers", 1, "--quiet",
                                                     stats=False),
            f"sites, all cores ({cores})": run_child_with_usage("prepare-data", *sites, "-o", "-", "--quiet",
                                                                stats=False),
        }
        runs["memory"] = run_child_with_usage("prepare-data", huge, "-o", tmp / "o1", "--workers", 1, "--json")
        size = big.stat().st_size
    baseline_cpu = per_body * bodies_per_copy * args.copies
    one, every = runs["1 process"], runs[f"all cores ({cores})"]
    stats = one["stats"]
    print(f"dump: {rows:,} rows ({size / 2**20:.0f} MiB, beer x {args.copies}), {stats['pairs']:,} pairs, "
          f"{stats['bodies_converted']:,} bodies converted (of {bodies_per_copy * args.copies:,})")
    print(f"baseline, plain markdownify on every body, 1 process: {1 / per_body:,.0f} bodies/s "
          f"-> {baseline_cpu:.1f} CPU s for the dump")
    print(f"prepare-data's converter alone on the same bodies: {1 / ours_per_body:,.0f} bodies/s, "
          f"{per_body / ours_per_body:.2f}x plain markdownify")
    for label, r in (("1 process", one), (f"all cores ({cores})", every)):
        s = r["stats"]
        print(f"prepare-data, {label}: {r['wall']:.1f} s wall, {r['cpu']:.1f} CPU s (incl. start-up); "
              f"{rows / r['wall']:,.0f} rows/s, {s['bodies_converted'] / r['wall']:,.0f} bodies converted/s; "
              f"per core {baseline_cpu / r['cpu']:.2f}x the baseline, wall {baseline_cpu / r['wall']:.2f}x; "
              f"peak RSS {r['rss']:.0f} MiB")
    print(f"conversion workers on {cores} cores: {one['wall'] / every['wall']:.2f}x the wall speed of 1 process")
    big_run, huge_run = (one["rss"], rows), (runs["memory"]["rss"], runs["memory"]["stats"]["rows"])
    run_kib, run_projected = slope(big_run, huge_run)
    pass1_kib, pass1_projected = slope(*pass1)
    memory = runs["memory"]
    memory_speed = baseline_cpu / args.copies * args.memory_copies / memory["cpu"]
    print(f"peak RSS, whole run, 1 process: {big_run[0]:.0f} MiB at {big_run[1]:,} rows, {huge_run[0]:.0f} MiB "
          f"at {huge_run[1]:,} rows ({memory['wall']:.0f} s wall, per core {memory_speed:.2f}x the baseline): "
          f"{run_kib:.4f} KiB/row -> {run_projected:,.0f} MiB at {STACKOVERFLOW_ROWS:,} rows")
    print(f"peak RSS, pass 1 alone: {pass1[0][0]:.0f} MiB at {pass1[0][1]:,} rows, {pass1[1][0]:.0f} MiB at "
          f"{pass1[1][1]:,} rows: {pass1_kib:.4f} KiB/row -> {pass1_projected:,.0f} MiB at {STACKOVERFLOW_ROWS:,} rows")
    print(f"projected peak RSS at {STACKOVERFLOW_ROWS:,} rows: {max(run_projected, pass1_projected):,.0f} MiB")
    seq, par = runs["sites, 1 process"], runs[f"sites, all cores ({cores})"]
    same = hashlib.sha256(seq["stdout"]).digest() == hashlib.sha256(par["stdout"]).digest()
    # (wall time only: site workers are forkserver children, outside the rusage of the process the bench waits for)
    print(f"{args.sites} sites of beer x {args.site_copies}: 1 process {seq['wall']:.1f} s wall, "
          f"{cores} site workers {par['wall']:.1f} s wall: {seq['wall'] / par['wall']:.2f}x; "
          f"peak RSS {seq['rss']:.0f} MiB / main process {par['rss']:.0f} MiB; same output: {same}")


if __name__ == "__main__":
    main()
