"""`stackllama demo`: every stage, prepare-data to compare, as one resumable chain; an HTML report at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from stackllama_cli.pipeline.demo import DemoConfig

COMMAND = dict(
    name="demo",
    help="Run the whole pipeline on the real SmolLM2-135M: data, SFT, reward model, PPO, DPO, RLOO, then a comparison "
    "of base, SFT, PPO, DPO and RLOO on held-out questions, and an HTML report.",
    epilog="""[bold]Examples[/]

  [cyan]stackllama demo[/]                              bundled sample dump, ~10-15 min on 2 CPU cores

  [cyan]stackllama demo --data beer.stackexchange.com.7z --budget medium --output runs/beer[/]

  [cyan]stackllama demo --output runs/demo[/]           rerun: resumes after the last finished stage

Each stage writes its usual outputs under OUTPUT/<stage>/; OUTPUT/report.html holds the results: every
stage's curves, the comparison table with its intervals, the reward-vs-length picture, answers side by side.""",
)


def command(
    data: Annotated[Optional[List[Path]], typer.Option(
        "--data", "-d", help="StackExchange dump(s): Posts.xml, a site folder or a .7z (default: bundled sample).")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Run directory.")] = Path(DemoConfig.output),
    budget: Annotated[str, typer.Option("--budget", help="small (~10-15 min on CPU) or medium.")] = DemoConfig.budget,
    model: Annotated[str, typer.Option("--model", "-m", help="Base model (default: the bundled SmolLM2-135M).")
                     ] = DemoConfig.model,
    seed: Annotated[int, typer.Option("--seed", help="Random seed for every stage.")] = DemoConfig.seed,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start afresh instead of resuming.")] = False,
) -> None:
    from stackllama_cli.pipeline.demo import run

    run(DemoConfig(data=[str(p) for p in data or []], output=str(output), budget=budget, model=model, seed=seed,
                   overwrite=overwrite))
