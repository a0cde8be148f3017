"""`stackllama sft`: supervised fine-tuning with LoRA and packing."""

from __future__ import annotations

from pathlib import Path

import typer

from stackllama_cli import options as o
from stackllama_cli.training.sft import SftConfig as C

COMMAND = dict(
    name="sft",
    help="Supervised fine-tuning on the preferred answers (finetune split), LoRA + packing, on TRL's SFTTrainer.",
    epilog="""[bold]Examples[/]

  [cyan]stackllama sft --data runs/demo/data --output runs/sft --max-steps 30 --seq-length 256[/]

  [cyan]stackllama sft -m meta-llama/Llama-3.2-1B --load-in-8bit --data data/ -o runs/sft --gpus 8[/]

  [cyan]stackllama sft --data data/ -o runs/sft --resume[/]        continue from the last checkpoint

Packing: [bold]bfd[/] (default) fills sequences best-fit and keeps documents from attending to each other;
[bold]wrapped[/] is the original StackLLaMA chunking (texts joined with EOS); [bold]none[/] pads.
Output: a LoRA adapter + tokenizer, stackllama_config.json, metrics.jsonl, loss.png, sft_summary.json.""",
)


def command(
    ctx: typer.Context,
    model: o.Model = C.model,
    data: o.Data = Path(C.data),
    output: o.OutputDir = Path(C.output),
    base: o.Base = None,
    seq_length: o.Annotated[int, typer.Option("--seq-length", help="Tokens per training sequence.",
                                              rich_help_panel=o.TRAIN_PANEL)] = C.seq_length,
    packing: o.Annotated[str, typer.Option("--packing", help="bfd, wrapped or none.",
                                           rich_help_panel=o.TRAIN_PANEL)] = C.packing,
    eval_samples: o.Annotated[int, typer.Option("--eval-samples", help="Held-out texts for eval loss (0: none).",
                                                rich_help_panel=o.TRAIN_PANEL)] = C.eval_samples,
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
    from stackllama_cli.training.sft import run

    values = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()
              if k not in ("ctx", "config", "json_out")}
    o.launch_from_params(values)  # several processes: re-exec under accelerate, exit with its code
    summary = run(config_from_cli(C, ctx, values, config, "sft"))
    if json_out:
        print_json(summary)
