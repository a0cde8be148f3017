"""`stackllama merge`: fold a LoRA adapter into its base model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stackllama_cli.cli import options as o

COMMAND = dict(
    name="merge",
    help="Fold a LoRA adapter (sft, ppo or train-rm output) into its base: a standalone safetensors model.",
    epilog="""[bold]Examples[/]

  [cyan]stackllama merge runs/sft --output runs/sft-merged[/]

  [cyan]stackllama merge runs/reward --output runs/reward-merged[/]      keeps the reward head

  [cyan]stackllama merge runs/ppo --output runs/ppo-merged[/]            PPO adapter on an SFT adapter: both folded

The merged model is reloaded and checked against base + adapter; the max |logit diff| is printed.""",
)


def command(
    adapter: Annotated[Path, typer.Argument(help="LoRA adapter directory.", show_default=False)],
    output: o.Annotated[Path, typer.Option("--output", "-o", help="Directory for the merged model.")],
    base: o.Base = None,
    overwrite: o.Overwrite = False,
    json_out: o.Json = False,
) -> None:
    from stackllama_cli.core.console import print_json
    from stackllama_cli.models.merge import merge

    result = merge(str(adapter), str(output), base=base, overwrite=overwrite)
    if json_out:
        print_json(result)
