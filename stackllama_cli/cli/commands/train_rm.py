"""`stackllama train-rm`: a pairwise reward model (LoRA sequence classifier, or a linear probe)."""

from __future__ import annotations

import typer

from stackllama_cli.cli import options as o
from stackllama_cli.cli.build import trainer_command
from stackllama_cli.stages.reward import RewardConfig as C

COMMAND = dict(
    name="train-rm",
    help="Train a reward model on preference pairs (reward split): -logsigmoid(r_j - r_k), LoRA + score head, "
         "or a linear probe on the frozen model.",
    epilog="""[bold]Examples[/]

  [cyan]stackllama train-rm --model runs/sft --data runs/demo/data --output runs/reward --max-steps 40[/]

  [cyan]stackllama train-rm -m smollm2-135m --data data/ -o runs/reward-probe --method probe --max-minutes 10[/]

  [cyan]stackllama train-rm -m runs/sft-merged --data data/ -o runs/reward --max-length 512 --lr 2e-5 --gpus 8[/]

--model may be a base model, a merged SFT model or an SFT adapter (merged into the classifier's decoder).

--method lora trains LoRA and the score head with TRL's RewardTrainer. --method probe runs the frozen model
once over each distinct text (forward only) and fits the score head alone - a logistic regression on the
differences of the last-token hidden states, L2 chosen by cross-validation - in seconds; it is saved in the
same format (a SEQ_CLS adapter whose LoRA matrices are zero), so eval-rm, ppo and merge use it unchanged.
The LoRA options, learning rate, steps and epochs do not apply to it.

A pair over --max-length loses the end of its question first (down to a quarter of --max-length: the title
and first lines), then the ends of its answers; the start of each answer is always kept and every text still
ends in EOS. --drop-long drops such pairs instead, like the original recipe.

Defaults are for a CPU with 16 GB of memory, measured with SmolLM2-135M on 2 cores: 4 pairs of 256 tokens
peak at ~7 GB, about 10 s a step (--gradient-checkpointing: ~3.5 GB, ~30% slower; 512 tokens: ~14 GB). The
score head starts at zero and the learning rate is 3e-4 because a CPU budget is tens of steps: on beer, a
zero-started head reached 0.63-0.64 held-out accuracy after 60-220 steps at 3e-4, 0.60-0.61 at the original
2e-5; a randomly started one stayed near chance (0.50-0.56) with either. The original recipe on GPUs (100k pairs):
--max-length 512 --learning-rate 2e-5.

--max-minutes is the budget of the whole command: the evaluation and reward statistics after training are
timed beforehand (shrunk to at most half of what is left) and training stops in time for them.

Output: a SEQ_CLS LoRA adapter with its score head, reward_stats.json (mean/std of training rewards, used by
ppo --normalize-reward), metrics.jsonl, reward.png, reward_summary.json.""",
)


command = trainer_command(C, "train-rm", "stackllama_cli.stages.reward", [
    ("method", o.Annotated[str, typer.Option("--method", help="lora: train LoRA + score head; probe: fit a "
                                             "linear score head on the frozen model's features (seconds, "
                                             "forward passes only).", rich_help_panel=o.TRAIN_PANEL)], C.method),
    ("max_length", o.Annotated[int, typer.Option("--max-length", help="Longest text in tokens (question + answer "
                                                 "+ EOS).", rich_help_panel=o.TRAIN_PANEL)], C.max_length),
    ("truncate", o.Annotated[bool, typer.Option("--truncate/--drop-long", help="Cut pairs over --max-length "
                                                "(question first, then the answers' ends) or drop them.",
                                                rich_help_panel=o.TRAIN_PANEL)], C.truncate),
    ("margin", o.Annotated[str, typer.Option("--margin", help="none, or score-gap: loss -logsigmoid(r_j - r_k - "
                                             "(score_j - score_k)), as Llama 2.", rich_help_panel=o.TRAIN_PANEL)],
     C.margin),
    ("eval_pairs", o.Annotated[int, typer.Option("--eval-pairs", help="Evaluation-split pairs to score (0: none).",
                                                 rich_help_panel=o.TRAIN_PANEL)], C.eval_pairs),
    ("stats_pairs", o.Annotated[int, typer.Option("--stats-pairs", help="Training pairs scored for reward_stats.json.",
                                                  rich_help_panel=o.TRAIN_PANEL)], C.stats_pairs),
    ("max_minutes", o.Annotated[float, typer.Option("--max-minutes", help="Budget of the whole command in minutes "
                                                    "(0: none): training stops in time for evaluation and saving.",
                                                    rich_help_panel=o.TRAIN_PANEL)], C.max_minutes),
])
