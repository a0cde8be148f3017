"""`stackllama train-rm`: a pairwise reward model (LoRA sequence classifier)."""

from __future__ import annotations

import typer

from stackllama_cli.cli import options as o
from stackllama_cli.cli.build import trainer_command
from stackllama_cli.stages.reward import RewardConfig as C

COMMAND = dict(
    name="train-rm",
    help="Train a reward model on preference pairs (reward split): -logsigmoid(r_j - r_k), LoRA + score head.",
    epilog="""[bold]Examples[/]

  [cyan]stackllama train-rm --model runs/sft --data runs/demo/data --output runs/reward --max-steps 40[/]

  [cyan]stackllama train-rm -m runs/sft-merged --data data/ -o runs/reward --max-length 512 --gpus 8[/]

  [cyan]stackllama train-rm -m smollm2-135m --data pairs.parquet -o runs/reward --truncate[/]

--model may be a base model, a merged SFT model or an SFT adapter (merged into the classifier's decoder).

Output: a SEQ_CLS LoRA adapter with its score head, reward_stats.json (mean/std of training rewards, used by
ppo --normalize-reward), metrics.jsonl, reward.png, reward_summary.json.

On a CPU, memory grows with --batch-size x --max-length (SmolLM2-135M, 4 pairs of 256 tokens: ~7.6 GB peak);
--gradient-checkpointing halves it (~3.5 GB). --max-minutes caps the training time.""",
)


command = trainer_command(C, "train-rm", "stackllama_cli.stages.reward", [
    ("max_length", o.Annotated[int, typer.Option("--max-length", help="Longest pair in tokens (question + answer).",
                                                 rich_help_panel=o.TRAIN_PANEL)], C.max_length),
    ("truncate", o.Annotated[bool, typer.Option("--truncate", help="Cut pairs over --max-length (EOS kept last) "
                                                "instead of dropping them: better when many are long.",
                                                rich_help_panel=o.TRAIN_PANEL)], False),
    ("eval_pairs", o.Annotated[int, typer.Option("--eval-pairs", help="Evaluation-split pairs to score (0: none).",
                                                 rich_help_panel=o.TRAIN_PANEL)], C.eval_pairs),
    ("stats_pairs", o.Annotated[int, typer.Option("--stats-pairs", help="Training pairs scored for reward_stats.json.",
                                                  rich_help_panel=o.TRAIN_PANEL)], C.stats_pairs),
    ("max_minutes", o.Annotated[float, typer.Option("--max-minutes", help="Stop training after N minutes (0: no "
                                                    "budget), then evaluate and save as usual.",
                                                    rich_help_panel=o.TRAIN_PANEL)], C.max_minutes),
])
