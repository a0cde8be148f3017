"""`stackllama dpo`: direct preference optimisation of the SFT model on the preference pairs."""

from __future__ import annotations

import typer

from stackllama_cli.cli import options as o
from stackllama_cli.cli.build import trainer_command
from stackllama_cli.stages.dpo import LOSS_TYPES
from stackllama_cli.stages.dpo import DpoConfig as C

COMMAND = dict(
    name="dpo",
    help="Direct preference optimisation (TRL's DPOTrainer) of the SFT model on the pairs: no reward model, "
    "no sampling; a LoRA adapter whose reference is the SFT model (adapter disabled).",
    epilog=f"""[bold]Examples[/]

  [cyan]stackllama dpo --model runs/sft --data runs/demo/data --output runs/dpo --max-steps 100[/]

  [cyan]stackllama dpo -m runs/sft-merged --data data/ -o runs/dpo --beta 0.1 --max-length 512 --gpus 8[/]

  [cyan]stackllama dpo -m runs/sft --data data/ -o runs/dpo --loss-type ipo[/]

  [cyan]stackllama dpo ... --output runs/dpo --resume[/]       continue from the last checkpoint

Pairs: prompt = "Question: ...\\n\\nAnswer: " (the one template), chosen = response_j, rejected =
response_k, from the rl split by default (--split). Lengths are counted in tokens: a prompt over
--max-prompt-length keeps its end, an answer is cut to fit --max-length (both counted in the log).
Eval loss, reward accuracy (share of pairs whose implicit reward beta * log(pi/pi_ref) ranks chosen
first) and margin come from the evaluation split.

--loss-type: {', '.join(LOSS_TYPES)}; several joined by commas are summed.

Output: a LoRA adapter (base: the --model, so merge/generate/compare take it), metrics.jsonl, dpo.png,
dpo_summary.json.""",
)

TRAIN = o.TRAIN_PANEL

command = trainer_command(C, "dpo", "stackllama_cli.stages.dpo", [
    ("beta", o.Annotated[float, typer.Option("--beta", help="Strength of the pull towards the reference (higher: "
                                             "closer to SFT).", rich_help_panel=TRAIN)], C.beta),
    ("loss_type", o.Annotated[str, typer.Option("--loss-type", help="TRL's DPO loss (sigmoid = DPO; see below).",
                                                rich_help_panel=TRAIN)], C.loss_type),
    ("label_smoothing", o.Annotated[float, typer.Option("--label-smoothing", help="robust: chance a label is "
                                                        "flipped; exo_pair: epsilon.", rich_help_panel=TRAIN)],
     C.label_smoothing),
    ("max_length", o.Annotated[int, typer.Option("--max-length", help="Prompt + answer, in tokens.",
                                                 rich_help_panel=TRAIN)], C.max_length),
    ("max_prompt_length", o.Annotated[int, typer.Option("--max-prompt-length", help="Prompt tokens kept (its end).",
                                                        rich_help_panel=TRAIN)], C.max_prompt_length),
    ("eval_pairs", o.Annotated[int, typer.Option("--eval-pairs", help="Evaluation-split pairs to evaluate on "
                                                 "(0: none).", rich_help_panel=TRAIN)], C.eval_pairs),
])
