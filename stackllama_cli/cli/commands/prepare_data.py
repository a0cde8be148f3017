"""`stackllama prepare-data`: StackExchange dump -> preference pairs in four splits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from stackllama_cli.cli.options import ConfigFile, Json, Overwrite, Seed
from stackllama_cli.data.prepare import PrepareConfig

COMMAND = dict(
    name="prepare-data",
    help="Turn StackExchange dumps into preference pairs (Markdown) split by question into "
    "finetune / reward / rl / evaluation.",
    epilog="[bold]Examples[/]\n\n"
    "  [cyan]stackllama prepare-data --output runs/demo/data[/]   (the bundled sample dump)\n\n"
    "  [cyan]stackllama prepare-data beer.stackexchange.com.7z coffee.stackexchange.com/ -o data/[/]\n\n"
    "  [cyan]stackllama prepare-data stackexchange/ -o data/ --workers 8 --keep-going[/]   (a folder of site "
    "archives: every site)\n\n"
    "  [cyan]stackllama prepare-data Posts.xml --output - | head -1 | jq .question[/]   (JSONL on stdout)\n\n"
    "  [cyan]stackllama prepare-data Posts.xml -o data/ --splits finetune=0.5,reward=0.3,rl=0.1,evaluation=0.1[/]"
    "\n\n"
    "Each answer scores round(log2(1 + votes)) (halves round up), +1 if accepted, -1 if votes < 0. "
    "Pairs are answers of one question with different scores, at most --max-pairs per question.\n\n"
    "Rows are skipped, and counted by reason under 'dropped' in stats.json, when they repeat an Id seen "
    "earlier in the same dump (duplicates: the first row wins), when an answer's Score is missing or not an "
    "integer (never guessed as 0), or when a question's AcceptedAnswerId is not an integer.\n\n"
    "Output: DIR/data/<split>-00000-of-00001.parquet (no file for an empty split), DIR/stats.json and "
    "DIR/stackllama_config.json; load it with datasets.load_dataset(\"parquet\", data_dir=DIR). "
    "With several sites, qid is unique within a site: (site, qid) names a question, and stats.json has "
    "each site's counts under per_site. Sites are processed --workers at a time and their rows appended in "
    "input order once all are done (the same output as one process); a site that fails (a corrupt archive, "
    "broken XML) fails the run and nothing is written, unless --keep-going: then it is left out and listed "
    "under 'failed' in stats.json.\n\n"
    "Memory: under 20 bytes per post (ids, parents and scores in int32 columns; converted texts waiting for "
    "a late answer spill to a temporary SQLite file beyond 64 MiB); temporary disk: an archive's Posts.xml "
    "while its site is processed, and with several sites the output once more until it is assembled.",
)


def command(
    ctx: typer.Context,
    inputs: Annotated[Optional[List[Path]], typer.Argument(
        help="Posts.xml files, site folders holding Posts.xml, the dump's .7z archives, or folders of those "
        "(default: a small sample dump bundled with stackllama).", show_default=False)] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Output directory, or '-' for JSONL on stdout.")
                      ] = PrepareConfig.output,
    format: Annotated[str, typer.Option("--format", help="parquet or jsonl.")] = PrepareConfig.format,
    max_pairs: Annotated[int, typer.Option("--max-pairs", help="At most this many pairs per question "
                                              "(sampled with --seed when there are more).")
                         ] = PrepareConfig.max_pairs,
    splits: Annotated[str, typer.Option("--splits", help="Share of questions per split: comma-separated "
                                       "name=fraction summing to 1; a question's split comes from a seeded hash "
                                       "of site:qid, so it stays put when data is added.")
                      ] = PrepareConfig.splits,
    workers: Annotated[int, typer.Option("--workers", "--num-proc", help="Processes: sites processed at once "
                                         "with several inputs, bodies converted at once with one (0: one per CPU "
                                         "core, at most 8; for one input only if the dump is big enough to gain).")
                       ] = PrepareConfig.workers,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="With several inputs, leave out a site that "
                                             "fails (reported, and listed in stats.json) instead of failing the "
                                             "run.")] = PrepareConfig.keep_going,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars (MiB read per input, with an "
                                        "ETA) and no summary table on stderr.")] = PrepareConfig.quiet,
    seed: Seed = PrepareConfig.seed,
    overwrite: Overwrite = False,
    json_out: Json = False,
    config: ConfigFile = None,
) -> None:
    from stackllama_cli.core.config import config_from_cli
    from stackllama_cli.core.console import print_json
    from stackllama_cli.data.prepare import print_summary, run

    values = dict(inputs=[str(p) for p in inputs or []], output=output, format=format, max_pairs=max_pairs,
                  splits=splits, workers=workers, keep_going=keep_going, quiet=quiet, seed=seed, overwrite=overwrite)
    cfg = config_from_cli(PrepareConfig, ctx, values, config, "prepare-data")
    summary = run(cfg)
    if json_out and cfg.output != "-":
        print_json(summary)
    elif not cfg.quiet:
        print_summary(summary, cfg.output)
