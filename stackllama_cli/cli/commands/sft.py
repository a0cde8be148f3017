"""`stackllama sft`: supervised fine-tuning with LoRA and packing."""

from __future__ import annotations

import typer

from stackllama_cli.cli import options as o
from stackllama_cli.cli.build import trainer_command
from stackllama_cli.stages.sft import SftConfig as C

COMMAND = dict(
    name="sft",
    help="Supervised fine-tuning on the preferred answers (finetune split), LoRA + packing, on TRL's SFTTrainer.",
    epilog="""[bold]Examples[/]

  [cyan]stackllama sft --data runs/demo/data --output runs/sft --max-steps 30 --seq-length 256[/]

  [cyan]stackllama sft -m meta-llama/Llama-3.2-1B --load-in-8bit --data data/ -o runs/sft --gpus 8[/]

  [cyan]stackllama sft --data data/ -o runs/sft --resume[/]        continue from the last checkpoint

  [cyan]stackllama sft -m Qwen/Qwen2.5-0.5B-Instruct --prompt-format chat --data data/ -o runs/sft[/]
  the model's chat template; train-rm, ppo and generate take it from runs/sft

Packing: [bold]bfd[/] (default) fills sequences best-fit and keeps documents from attending to each other;
[bold]wrapped[/] is the original StackLLaMA chunking (texts joined with EOS); [bold]none[/] pads.

Output: a LoRA adapter + tokenizer, prompt_format.json, stackllama_config.json, metrics.jsonl, loss.png,
sft_summary.json.""",
)


command = trainer_command(C, "sft", "stackllama_cli.stages.sft", [
    ("seq_length", o.Annotated[int, typer.Option("--seq-length", help="Tokens per training sequence.",
                                                 rich_help_panel=o.TRAIN_PANEL)], C.seq_length),
    ("packing", o.Annotated[str, typer.Option("--packing", help="bfd, wrapped or none.",
                                              rich_help_panel=o.TRAIN_PANEL)], C.packing),
    ("eval_samples", o.Annotated[int, typer.Option("--eval-samples", help="Held-out texts for eval loss (0: none).",
                                                   rich_help_panel=o.TRAIN_PANEL)], C.eval_samples),
])
