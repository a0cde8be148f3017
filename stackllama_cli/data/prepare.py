"""The prepare-data stage: dump(s) -> scored answers -> preference pairs -> four splits by question.

Two streaming passes per site keep memory bounded by what pairing needs (tables.py, site.py):
1. scan ids, scores, parents and accepted answers into int32 columns (no bodies), build pairs;
2. convert to Markdown only the bodies of posts that ended up in a pair, and write a
   question's rows as soon as its last body is converted.
One input streams its rows straight to the output; several go through parallel.py (a part per
site, appended in input order once all are done).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

from stackllama_cli.core.config import require, save_config
from stackllama_cli.core.console import console, info
from stackllama_cli.core.errors import StackLlamaError, UsageError
from stackllama_cli.core.files import atomic_dir, check_output_dir, write_json
from stackllama_cli.data.card import write_dataset_card
from stackllama_cli.data.datasets import SPLITS
from stackllama_cli.data.parallel import run_sites
from stackllama_cli.data.progress import Board
from stackllama_cli.data.site import prepare_site
from stackllama_cli.data.stackexchange import expand_inputs, site_name
from stackllama_cli.data.writers import SplitWriters

DEFAULT_SPLITS = "finetune=0.35,reward=0.35,rl=0.15,evaluation=0.15"
SAMPLE_DUMP = Path(__file__).resolve().parent.parent / "demo_data" / "sample.stackexchange.com-Posts.xml"


def parse_split_fractions(text: str) -> dict[str, float]:
    """'finetune=0.4,reward=0.3,rl=0.2,evaluation=0.1' -> dict in canonical split order (sums to 1).

    Usage errors (exit 2): unknown or repeated names, values that are not finite numbers >= 0, a sum other than 1.
    """
    fractions: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in SPLITS:
            raise UsageError(f"--splits takes name=fraction pairs with names from {', '.join(SPLITS)}; "
                             f"got {part!r}")
        if name in fractions:
            raise UsageError(f"--splits names {name} twice")
        try:
            fractions[name] = float(value)
        except ValueError:
            raise UsageError(f"--splits: {value!r} is not a number") from None
        if not math.isfinite(fractions[name]) or fractions[name] < 0:
            raise UsageError(f"--splits: {name}={value.strip()} is not a fraction between 0 and 1")
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise UsageError(f"--splits fractions must sum to 1 (got {sum(fractions.values()):g})")
    return {name: fractions.get(name, 0.0) for name in SPLITS}


@dataclasses.dataclass
class PrepareConfig:
    inputs: list[str] = dataclasses.field(default_factory=list)  # empty: the bundled sample dump
    output: str = "runs/demo/data"  # '-' = JSONL on stdout
    format: str = "parquet"
    max_pairs: int = 10
    seed: int = 0
    splits: str = DEFAULT_SPLITS
    # processes: with several inputs, sites processed at once; with one, bodies converted at once.
    # 0 = one per CPU core (at most 8; for one input, only for dumps big enough to gain)
    workers: int = 0
    keep_going: bool = False  # a site that fails is reported and left out instead of failing the run
    quiet: bool = False  # no progress bars, no summary table
    overwrite: bool = False

    def __post_init__(self) -> None:
        require(self.format in ("parquet", "jsonl"), "--format must be parquet or jsonl")
        require(self.workers >= 0, "--workers must be non-negative")
        require(self.max_pairs >= 1, "--max-pairs must be at least 1")
        parse_split_fractions(self.splits)


def run(cfg: PrepareConfig) -> dict:
    """Run the stage; returns the stats (also written to OUTPUT/stats.json).

    Nothing is written before pass 1 is over: one input streams rows only after its pairs are
    known, and several inputs are appended to the output only once every site is done, so broken
    XML or a corrupt archive fails before output starts (stdout stays empty, no directory).
    """
    fractions = parse_split_fractions(cfg.splits)
    inputs = expand_inputs([Path(p) for p in cfg.inputs]) if cfg.inputs else [SAMPLE_DUMP]
    for path in inputs:
        if not path.exists():
            raise StackLlamaError(f"input {path} does not exist")
    names = [site_name(path) for path in inputs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise StackLlamaError(f"two inputs are the same site ({', '.join(repeated)}): question ids would collide")
    if cfg.output != "-":
        check_output_dir(cfg.output, cfg.overwrite)  # fail before the long work, not after
    start = time.time()
    stats: Counter = Counter()
    per_site: dict[str, Counter] = {}
    failed: dict[str, str] = {}
    with Board(len(inputs), cfg.quiet) as board, output_writers(cfg) as (writers, folder):
        if len(inputs) == 1:
            per_site[prepare_site(inputs[0], cfg, fractions, writers, stats, board.report, cfg.workers)] = stats
        else:
            with tempfile.TemporaryDirectory(prefix=".parts-", dir=folder) as parts:
                runs = run_sites(inputs, cfg, fractions, Path(parts), board, cfg.keep_going)
                failed = runs.failed
                if not runs.sites:
                    raise StackLlamaError(f"every input failed; the first: {next(iter(failed.values()))}")
                for index in sorted(runs.sites):
                    per_site[runs.sites[index]] = runs.stats[index]
                    stats.update(runs.stats[index])
                if _pairs(stats):
                    for index in sorted(runs.sites):
                        writers.append_part(Path(parts) / str(index))
        writers.close()
        if _pairs(stats) == 0:
            raise_no_pairs(inputs)
        summary = collect_stats(stats, per_site, failed, [str(p) for p in inputs], time.time() - start)
        if folder is not None:
            check_empty_splits(summary, fractions)
            write_json(folder / "stats.json", summary)
            save_config(cfg, folder)
            write_dataset_card(folder, summary, cfg)
    for path, message in failed.items():
        info(f"[yellow]warning:[/] left out {path}: {message}")
    return summary


def _pairs(stats: Counter) -> int:
    return sum(stats[f"split.{s}.pairs"] for s in SPLITS)


def counts(stats: Counter) -> dict:
    """The figures stats.json gives for the whole run and for each site."""
    return {"rows": stats["rows"], "questions": stats["questions"], "answers": stats["answers"],
            "pairs": _pairs(stats), "questions_with_pairs": sum(stats[f"split.{s}.questions"] for s in SPLITS),
            "bodies_converted": stats["bodies_converted"],
            "splits": {s: {"questions": stats[f"split.{s}.questions"], "pairs": stats[f"split.{s}.pairs"]}
                       for s in SPLITS},
            "dropped": {k.split(".", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith("dropped.") and v}}


def collect_stats(stats: Counter, per_site: dict[str, Counter], failed: dict[str, str], inputs: list[str],
                  seconds: float) -> dict:
    out = {"inputs": inputs, "sites": list(per_site), **counts(stats)}
    if len(inputs) > 1:  # (one site's counts are the totals)
        out["per_site"] = {site: counts(site_stats) for site, site_stats in per_site.items()}
    out["seconds"] = round(seconds, 2)
    if failed:
        out["failed"] = failed
    out["rows_per_second"] = round(out["rows"] / seconds, 1) if seconds > 0 else None
    return out


def raise_no_pairs(inputs: list[Path]) -> None:
    raise StackLlamaError(f"no preference pairs in {', '.join(map(str, inputs))}: no question has two answers "
                          "with different scores")


@contextlib.contextmanager
def output_writers(cfg: PrepareConfig) -> Iterator[tuple[SplitWriters, Path | None]]:
    """Writers into a temp dir renamed into place on success (or JSONL on stdout for '-')."""
    if cfg.output == "-":
        yield SplitWriters(None), None
        return
    with atomic_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        writers = SplitWriters(tmp / "data", cfg.format)
        try:
            yield writers, tmp
        finally:
            writers.close()


def check_empty_splits(summary: dict, fractions: dict[str, float]) -> None:
    empty = [s for s in SPLITS if fractions[s] > 0 and summary["splits"][s]["pairs"] == 0]
    if empty:
        info(f"[yellow]warning:[/] split(s) {', '.join(empty)} got no pairs; the dump may be too small "
             "for these --splits fractions")


def print_summary(summary: dict, output: str) -> None:
    from rich.table import Table

    sites = summary["sites"]
    table = Table(title=f"prepare-data: {', '.join(sites) if len(sites) <= 3 else f'{len(sites)} sites'}")
    table.add_column("split")
    table.add_column("questions", justify="right")
    table.add_column("pairs", justify="right")
    for split, counts in summary["splits"].items():
        table.add_row(split, str(counts["questions"]), str(counts["pairs"]))
    table.add_row("[bold]total", f"[bold]{summary['questions_with_pairs']}", f"[bold]{summary['pairs']}")
    console.print(table)
    dropped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary["dropped"].items() if v)
    console.print(f"{summary['rows']} rows ({summary['questions']} questions, {summary['answers']} answers) "
                  f"in {summary['seconds']} s; {summary['bodies_converted']} bodies converted to Markdown.")
    if dropped:
        console.print(f"[dim]Skipped: {dropped}.[/]")
    if summary.get("failed"):
        console.print(f"[yellow]Left out {len(summary['failed'])} input(s) that failed[/] (see 'failed' in stats.json).")
    if output != "-":
        console.print(f"Wrote [bold]{output}[/] (load with datasets.load_dataset('parquet', data_dir=...)).")
