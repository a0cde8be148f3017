"""prepare-data throughput and memory on a large dump vs plain markdownify on every body.

    python bench/prepare_data.py [--copies 85]

Builds a dump of the beer site replicated with fresh ids (>= 200k rows at 85 copies),
runs `stackllama prepare-data` on it in a child process, and compares with the naive
baseline: markdownify (its default html.parser) on every body, single process,
timed on a sample of bodies and extrapolated.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BEER, require_dumps, stackllama  # noqa: E402

ID_ATTRS = re.compile(rb'\b(Id|ParentId|AcceptedAnswerId)="(\d+)"')


def replicate(src: Path, dst: Path, copies: int) -> int:
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


def baseline_bodies_per_second(src: Path, sample: int = 3000) -> tuple[float, int]:
    """Plain markdownify on bodies as they come, single process."""
    import html

    from markdownify import markdownify

    bodies = [html.unescape(m.group(1).decode()) for m in re.finditer(rb'Body="([^"]*)"', src.read_bytes())]
    work = (bodies * (sample // len(bodies) + 1))[:sample]
    start = time.perf_counter()
    for body in work:
        markdownify(body)
    return len(work) / (time.perf_counter() - start), len(bodies)


def main() -> None:
    require_dumps()
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=85)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results = {}
        for copies, workers in ((1, 1), (args.copies, 1), (args.copies, 0)):
            dump = tmp / f"big{copies}.stackexchange.com-Posts.xml"
            rows = replicate(BEER, dump, copies) if not dump.exists() else rows
            proc, seconds, rss = stackllama("prepare-data", dump, "--output", tmp / f"out{copies}-{workers}",
                                            "--workers", workers, "--json")
            results[copies, workers] = (rows, seconds, rss, json.loads(proc.stdout), dump.stat().st_size)
        rate, bodies_per_copy = baseline_bodies_per_second(BEER)
    baseline_seconds = bodies_per_copy * args.copies / rate
    rows, _, _, stats, size = results[args.copies, 1]
    print(f"dump: {rows} rows ({size / 2**20:.0f} MiB), {stats['pairs']} pairs, {stats['bodies_converted']} "
          f"bodies in pairs (of {bodies_per_copy * args.copies})")
    print(f"baseline, plain markdownify on every body (1 process): {rate:,.0f} bodies/s -> "
          f"{baseline_seconds:.1f} s")
    for (copies, workers), (rows, seconds, rss, stats, size) in results.items():
        if copies == 1:
            continue
        label = "1 process " if workers == 1 else f"{os.cpu_count()} cores   "
        print(f"stackllama prepare-data, {label}: {seconds:.1f} s wall (incl. ~3 s start-up) = "
              f"{rows / seconds:,.0f} rows/s, {stats['bodies_converted'] / seconds:,.0f} bodies converted/s, "
              f"peak RSS {rss:.0f} MiB; {baseline_seconds / seconds:.2f}x the baseline")
    print(f"peak RSS with 1 copy of the dump: {results[1, 1][2]:.0f} MiB (memory grows with the pairs kept, "
          "not with the rows streamed)")


if __name__ == "__main__":
    main()
