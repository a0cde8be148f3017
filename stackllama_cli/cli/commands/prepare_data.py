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
    "With several sites, qid is unique within a site: (site, qid) names a question.",
)


def command(
    ctx: typer.Context,
    inputs: Annotated[Optional[List[Path]], typer.Argument(
        help="Posts.xml files, site folders holding Posts.xml, or the dump's .7z archives "
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
    workers: Annotated[int, typer.Option("--workers", "--num-proc", help="Processes converting HTML to Markdown "
                                         "(0: one per CPU core, at most 8, for dumps big enough to gain).")
                       ] = PrepareConfig.workers,
    seed: Seed = PrepareConfig.seed,
    overwrite: Overwrite = False,
    json_out: Json = False,
    config: ConfigFile = None,
) -> None:
    from stackllama_cli.core.config import config_from_cli
    from stackllama_cli.core.console import print_json
    from stackllama_cli.data.prepare import print_summary, run

    values = dict(inputs=[str(p) for p in inputs or []], output=output, format=format, max_pairs=max_pairs,
                  splits=splits, workers=workers, seed=seed, overwrite=overwrite)
    cfg = config_from_cli(PrepareConfig, ctx, values, config, "prepare-data")
    summary = run(cfg)
    if json_out and cfg.output != "-":
        print_json(summary)
    else:
        print_summary(summary, cfg.output)
