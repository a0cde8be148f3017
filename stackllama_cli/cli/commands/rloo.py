"""`stackllama rloo`: RLHF with REINFORCE leave-one-out against the reward model."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from stackllama_cli.cli import options as o
from stackllama_cli.cli.build import trainer_command
from stackllama_cli.stages.rloo import RlooConfig as C

COMMAND = dict(
    name="rloo",
    help="RLHF with RLOO (TRL's RLOOTrainer): k answers per prompt scored by the reward model, each one's "
    "baseline the mean of the other k - 1; KL penalty to the SFT model; no value head.",
    epilog="""[bold]Examples[/]

  [cyan]stackllama rloo --model runs/sft --reward-model runs/reward --data runs/demo/data -o runs/rloo --max-steps 50[/]

  [cyan]stackllama rloo -m runs/sft-merged --reward-model runs/rm-merged --data data/ -o runs/rloo --gpus 8[/]

  [cyan]stackllama rloo ... --num-generations 8 --batch-size 16 --beta 0.1[/]

  [cyan]stackllama rloo ... --output runs/rloo --resume[/]       continue from the last checkpoint

Each step samples --batch-size answers per process (--batch-size / --num-generations prompts of the rl
split, as ppo picks them) with ppo's sampling (top-k 0, top-p 1, temperature 1: the policy's own
distribution), up to --max-new-tokens. The reward is the reward model's score of exactly the text
train-rm trained on, shaped as in ppo (--normalize-reward, --reward-clip, --degenerate-penalty), minus
--beta x the answer's summed log-ratio to the SFT model (the adapter disabled). Degenerate answers
(fence runs, n-gram loops) are counted each step; the run stops when they dominate.

Output: a LoRA adapter (base: the --model, so merge/generate/compare take it), metrics.jsonl (rm_score,
kl, degenerate_rate, answer length...), samples.jsonl, rloo.png, rloo_summary.json.""",
)

RL, GEN, REWARD = "RLOO", "Generation", "Reward"


def _row(name: str, type_: Any, help: str, panel: str = RL, flag: str | None = None) -> tuple:
    option = typer.Option(flag or "--" + name.replace("_", "-"), help=help, rich_help_panel=panel)
    return name, Annotated[type_, option], getattr(C, name)


command = trainer_command(C, "rloo", "stackllama_cli.stages.rloo", [
    ("reward_model", Annotated[str, typer.Option("--reward-model", "-r", help="train-rm output (adapter or merged).",
                                                 rich_help_panel=o.MODEL_PANEL)], C.reward_model),
    _row("num_generations", int, "Answers sampled per prompt (k)."),
    _row("beta", float, "KL coefficient (0: no reference pass)."),
    _row("max_new_tokens", int, "Longest answer, in tokens.", GEN),
    _row("top_k", int, "0 = off.", GEN),
    _row("top_p", float, "1.0 = off.", GEN),
    _row("temperature", float, "Sampling temperature.", GEN),
    _row("max_prompt_length", int, "Longer prompts are dropped (counted).", GEN),
    _row("rm_max_length", int, "Reward-model input tokens (cut keeping EOS last).", REWARD),
    _row("normalize_reward", bool, "Standardise with train-rm's reward_stats.json.", REWARD),
    _row("reward_clip", float, "Clip rewards to +-this (0: off).", REWARD),
    _row("degenerate_penalty", float, "Subtract from degenerate answers' reward.", REWARD),
    _row("degenerate_patience", int, "Stop after this many mostly-degenerate steps.", REWARD),
    _row("degenerate_stop_rate", float, "'Mostly': the share of degenerate answers above this.", REWARD),
    _row("log_samples", int, "Log 3 samples every N steps to samples.jsonl (0: off).", o.OUTPUT_PANEL),
])
