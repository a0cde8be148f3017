"""`stackllama train-rm`: a pairwise reward model (LoRA sequence classifier)."""

from __future__ import annotations

from pathlib import Path

import typer

from stackllama_cli import options as o
from stackllama_cli.training.reward import RewardConfig as C

COMMAND = dict(
    name="train-rm",
    help="Train a reward model on preference pairs (reward split): -logsigmoid(r_j - r_k), LoRA + score head.",
    epilog="""[bold]Examples[/]

  [cyan]stackllama train-rm --model runs/sft --data runs/demo/data --output runs/reward --max-steps 40[/]

  [cyan]stackllama train-rm -m runs/sft-merged --data data/ -o runs/reward --max-length 512 --gpus 8[/]

  [cyan]stackllama train-rm -m smollm2-135m --data pairs.parquet -o runs/reward --truncate[/]

--model may be a base model, a merged SFT model or an SFT adapter (merged into the classifier's decoder).
Output: a SEQ_CLS LoRA adapter with its score head, reward_stats.json (mean/std of training rewards, used by
ppo --normalize-reward), metrics.jsonl, reward.png, reward_summary.json.""",
)


def command(
    ctx: typer.Context,
    model: o.Model = C.model,
    data: o.Data = Path(C.data),
    output: o.OutputDir = Path(C.output),
    base: o.Base = None,
    max_length: o.Annotated[int, typer.Option("--max-length", help="Longest pair in tokens (question + answer).",
                                              rich_help_panel=o.TRAIN_PANEL)] = C.max_length,
    truncate: o.Annotated[bool, typer.Option("--truncate", help="Cut pairs over --max-length instead of dropping.",
                                             rich_help_panel=o.TRAIN_PANEL)] = False,
    eval_pairs: o.Annotated[int, typer.Option("--eval-pairs", help="Evaluation-split pairs to score (0: none).",
                                              rich_help_panel=o.TRAIN_PANEL)] = C.eval_pairs,
    stats_pairs: o.Annotated[int, typer.Option("--stats-pairs", help="Training pairs scored for reward_stats.json.",
                                               rich_help_panel=o.TRAIN_PANEL)] = C.stats_pairs,
    max_steps: o.MaxSteps = C.max_steps,
    epochs: o.Epochs = C.epochs,
    learning_rate: o.LearningRate = C.learning_rate,
    lr_scheduler: o.LrScheduler = C.lr_scheduler,
    warmup_steps: o.WarmupSteps = C.warmup_steps,
    weight_decay: o.WeightDecay = C.weight_decay,
    batch_size: o.BatchSize = C.batch_size,
    grad_accum: o.GradAccum = C.grad_accum,
    gradient_checkpointing: o.GradientCheckpointing = C.gradient_checkpointing,
    max_grad_norm: o.MaxGradNorm = C.max_grad_norm,
    seed: o.Seed = C.seed,
    lora_r: o.LoraR = C.lora_r,
    lora_alpha: o.LoraAlpha = C.lora_alpha,
    lora_dropout: o.LoraDropout = C.lora_dropout,
    lora_target_modules: o.LoraTargets = C.lora_target_modules,
    load_in_8bit: o.LoadIn8bit = False,
    load_in_4bit: o.LoadIn4bit = False,
    precision: o.Precision = C.precision,
    trust_remote_code: o.TrustRemoteCode = False,
    gpus: o.Gpus = "auto",
    cpu_processes: o.CpuProcesses = 0,
    num_machines: o.NumMachines = 1,
    machine_rank: o.MachineRank = 0,
    main_process_ip: o.MainProcessIp = None,
    main_process_port: o.MainProcessPort = None,
    accelerate_config: o.AccelerateConfig = None,
    logging_steps: o.LoggingSteps = C.logging_steps,
    save_steps: o.SaveSteps = C.save_steps,
    eval_steps: o.EvalSteps = C.eval_steps,
    report_to: o.ReportTo = C.report_to,
    resume: o.Resume = False,
    overwrite: o.Overwrite = False,
    json_out: o.Json = False,
    config: o.ConfigFile = None,
) -> None:
    from stackllama_cli.config import config_from_cli
    from stackllama_cli.console import print_json
    from stackllama_cli.training.reward import run

    values = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()
              if k not in ("ctx", "config", "json_out")}
    o.launch_from_params(values)  # several processes: re-exec under accelerate, exit with its code
    summary = run(config_from_cli(C, ctx, values, config, "train-rm"))
    if json_out:
        print_json(summary)
