"""prepare-data throughput and memory on a large dump vs plain markdownify on every body.

    python bench/prepare_data.py [--copies 85]

Builds a dump of the beer site replicated with fresh ids (>= 200k rows at 85 copies) and
runs `stackllama prepare-data` on it in a child process, once in one process and once on
every core. The baseline is the naive approach: markdownify with its defaults on every
body, single process (measured on one copy's bodies, scaled by the number of copies).

"Per core" compares CPU seconds (user + system, the child and its workers), so the figure
is fair on a machine shared with other jobs, where wall time is noisy. Peak RSS is the
largest resident set of the child or any of its workers, for 1 copy and for all copies:
it should grow only with the pairing tables (ids and scores), not with the rows streamed.
"""

from __future__ import annotations

import argparse
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
from _common import BEER, require_dumps  # noqa: E402

ID_ATTRS = re.compile(rb'\b(Id|ParentId|AcceptedAnswerId)="(\d+)"')


def replicate(src: Path, dst: Path, copies: int) -> int:
    """Write `copies` copies of the rows of `src` with ids shifted so that every copy is new."""
    rows = [line for line in src.read_bytes().splitlines() if line.strip().startswith(b"<row")]
    offset = 10 ** (len(str(max(int(m.group(2)) for r in rows for m in ID_ATTRS.finditer(r)))) + 1)
    with open(dst, "wb") as fh:
        fh.write(b'<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
        for c in range(copies):
            shift = c * offset
            for row in rows:
                fh.write(ID_ATTRS.sub(lambda m: b'%s="%d"' % (m.group(1), int(m.group(2)) + shift), row) + b"\n")
        fh.write(b"</posts>\n")
    return len(rows) * copies


def _usage(usage) -> dict:
    return {"cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024}


def run_child_with_usage(*args) -> dict:
    """Like run_child, but with the child's own rusage (wait4), which covers the workers it waited for."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "stackllama_cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"stackllama {' '.join(map(str, args))} failed (exit {proc.returncode})")
    return {"wall": wall, "stats": json.loads(out), **_usage(usage)}


def baseline_cpu_per_body(src: Path, repeats: int = 3) -> tuple[float, int]:
    """CPU seconds per body of plain markdownify (defaults, html.parser) on every body of `src`."""
    from markdownify import markdownify

    bodies = [html.unescape(m.group(1).decode()) for m in re.finditer(rb'Body="([^"]*)"', src.read_bytes())]
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for body in bodies:
            markdownify(body)
        best = min(best, time.process_time() - start)
    return best / len(bodies), len(bodies)


def main() -> None:
    require_dumps()
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=85)
    args = parser.parse_args()
    per_body, bodies_per_copy = baseline_cpu_per_body(BEER)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small, big = tmp / "one.stackexchange.com-Posts.xml", tmp / "big.stackexchange.com-Posts.xml"
        replicate(BEER, small, 1)
        rows = replicate(BEER, big, args.copies)
        size = big.stat().st_size
        runs = {
            "1 copy, 1 process": run_child_with_usage("prepare-data", small, "-o", tmp / "o1", "--workers", 1,
                                                      "--json"),
            "1 process": run_child_with_usage("prepare-data", big, "-o", tmp / "o2", "--workers", 1, "--json"),
            f"all cores ({os.cpu_count()})": run_child_with_usage("prepare-data", big, "-o", tmp / "o3", "--json"),
        }
    baseline_cpu = per_body * bodies_per_copy * args.copies
    stats = runs["1 process"]["stats"]
    print(f"dump: {rows:,} rows ({size / 2**20:.0f} MiB, beer x {args.copies}), {stats['pairs']:,} pairs, "
          f"{stats['bodies_converted']:,} bodies converted (of {bodies_per_copy * args.copies:,})")
    print(f"baseline, plain markdownify on every body, 1 process: {1 / per_body:,.0f} bodies/s "
          f"-> {baseline_cpu:.1f} CPU s for the dump")
    for label, r in runs.items():
        if label.startswith("1 copy"):
            continue
        s = r["stats"]
        print(f"prepare-data, {label}: {r['wall']:.1f} s wall, {r['cpu']:.1f} CPU s (incl. ~1.5 s start-up); "
              f"{rows / r['wall']:,.0f} rows/s, {s['bodies_converted'] / r['wall']:,.0f} bodies converted/s; "
              f"per core {baseline_cpu / r['cpu']:.2f}x the baseline, wall {baseline_cpu / r['wall']:.2f}x; "
              f"peak RSS {r['rss']:.0f} MiB")
    print(f"peak RSS, 1 process: {runs['1 copy, 1 process']['rss']:.0f} MiB for 1 copy vs "
          f"{runs['1 process']['rss']:.0f} MiB for {args.copies} copies")


if __name__ == "__main__":
    main()
