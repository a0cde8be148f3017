"""Shared `Annotated` option aliases so every command spells an option the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

MODEL_PANEL = "Model"
TRAIN_PANEL = "Training"
LORA_PANEL = "LoRA"
OUTPUT_PANEL = "Output"
LAUNCH_PANEL = "Launch"

Model = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Model: a local directory (full model or LoRA adapter), a .gguf file, a hub id, "
        "or the built-in alias [bold]smollm2-135m[/].",
        rich_help_panel=MODEL_PANEL,
    ),
]
Base = Annotated[
    Optional[str],
    typer.Option("--base", help="Base model for a LoRA adapter (default: the one named in adapter_config.json).",
                 rich_help_panel=MODEL_PANEL),
]
LoadIn8bit = Annotated[
    bool, typer.Option("--load-in-8bit", help="Load the base model in 8-bit (bitsandbytes).", rich_help_panel=MODEL_PANEL)
]
LoadIn4bit = Annotated[
    bool,
    typer.Option("--load-in-4bit", help="Load the base model in 4-bit NF4 (bitsandbytes).", rich_help_panel=MODEL_PANEL),
]
Precision = Annotated[
    str,
    typer.Option(
        "--precision",
        help="auto (bf16 on GPUs that support it, fp32 on CPU; ppo: bf16 on CPUs with AMX), fp32, bf16 or fp16.",
        rich_help_panel=MODEL_PANEL,
    ),
]
AttnImplementation = Annotated[
    Optional[str],
    typer.Option("--attn-implementation", metavar="sdpa|eager|flash_attention_2", show_default=False,
                 help="Attention kernel for every model this command loads (default: the library's choice for "
                 "the architecture, e.g. eager for Gemma-2). flash_attention_2 needs a CUDA GPU, the flash-attn "
                 "package and bf16/fp16.", rich_help_panel=MODEL_PANEL),
]
PromptFormat = Annotated[
    Optional[str],
    typer.Option("--prompt-format", metavar="recipe|chat", show_default=False,
                 help="recipe: 'Question: ...\\n\\nAnswer: ...'; chat: the tokenizer's chat template (question as "
                 "the user turn, answer as the assistant turn). Default: the format the input model was trained "
                 "with (recorded in its prompt_format.json), else recipe; contradicting it is an error.",
                 rich_help_panel=MODEL_PANEL),
]
TrustRemoteCode = Annotated[
    bool,
    typer.Option("--trust-remote-code", help="Allow model code from the model's repository to run.",
                 rich_help_panel=MODEL_PANEL),
]
Data = Annotated[
    Path,
    typer.Option("--data", "-d", help="prepare-data output; or any folder or Parquet/JSONL/CSV file datasets "
                 "reads, or a Hub dataset id; in our columns, TRL's prompt/chosen/rejected, or mapped with "
                 "--columns."),
]
DataDir = Annotated[Optional[str], typer.Option(
    "--data-dir", help="Subfolder of --data holding the split (e.g. data/rl of lvwerra/stack-exchange-paired).")]
Split = Annotated[Optional[str], typer.Option(
    "--split", help="Split to read (default: the stage's own: finetune, reward, rl; or the folder's only split).")]
Columns = Annotated[str, typer.Option(
    "--columns", metavar="OURS=THEIRS,...", help="Map the data's column names to ours (question, response_j, "
    "response_k, score_j, score_k ...), e.g. question=prompt,response_j=chosen,response_k=rejected.")]
# (name, annotation, default) of the data options beside --data, in help order
DATA_OPTIONS = (("data_dir", DataDir, None), ("split", Split, None), ("columns", Columns, ""))
OutputDir = Annotated[Path, typer.Option("--output", "-o", help="Output directory.", rich_help_panel=OUTPUT_PANEL)]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing output directory.", rich_help_panel=OUTPUT_PANEL)
]
Resume = Annotated[
    bool,
    typer.Option("--resume", help="Continue from the last checkpoint in the output directory.",
                 rich_help_panel=OUTPUT_PANEL),
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (data order, sampling, initialisation).")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (nothing else on stdout).")]
ConfigFile = Annotated[
    Optional[Path],
    typer.Option("--config", help="YAML/TOML/JSON file with option values (a \\[command] table, e.g. \\[sft], is "
                 "used when present; sft and train-rm also take TrainingArguments fields); options on the command "
                 "line win. Examples: examples/."),
]
ReportTo = Annotated[
    str,
    typer.Option("--report-to", help="Experiment trackers, comma-separated (tensorboard, wandb, trackio, mlflow, "
                 "comet_ml ... if installed), all or none; tensorboard writes OUTPUT/runs/RUN_NAME.",
                 rich_help_panel=OUTPUT_PANEL),
]
RunName = Annotated[Optional[str], typer.Option("--run-name", help="The run's name in the trackers (default: the "
                                                "output directory's name).", rich_help_panel=OUTPUT_PANEL)]

# Training options shared by sft and train-rm (defaults come from each stage's dataclass).
MaxSteps = Annotated[int, typer.Option("--max-steps", help="Optimizer steps; > 0 overrides --epochs.",
                                       rich_help_panel=TRAIN_PANEL)]
Epochs = Annotated[float, typer.Option("--epochs", help="Passes over the training data.", rich_help_panel=TRAIN_PANEL)]
LearningRate = Annotated[float, typer.Option("--learning-rate", "--lr", help="Peak learning rate.",
                                             rich_help_panel=TRAIN_PANEL)]
LrScheduler = Annotated[str, typer.Option("--lr-scheduler", help="cosine, linear, constant, ...",
                                          rich_help_panel=TRAIN_PANEL)]
WarmupSteps = Annotated[float, typer.Option("--warmup-steps", help="Warmup steps, or a fraction of all steps if < 1.",
                                            rich_help_panel=TRAIN_PANEL)]
WeightDecay = Annotated[float, typer.Option("--weight-decay", rich_help_panel=TRAIN_PANEL)]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", help="Per-device batch size.",
                                        rich_help_panel=TRAIN_PANEL)]
GradAccum = Annotated[int, typer.Option("--grad-accum", help="Gradient accumulation steps.",
                                        rich_help_panel=TRAIN_PANEL)]
GradientCheckpointing = Annotated[bool, typer.Option("--gradient-checkpointing",
                                                     help="Trade compute for activation memory.",
                                                     rich_help_panel=TRAIN_PANEL)]
MaxGradNorm = Annotated[float, typer.Option("--max-grad-norm", help="Gradient clipping norm.",
                                            rich_help_panel=TRAIN_PANEL)]
LoggingSteps = Annotated[int, typer.Option("--logging-steps", rich_help_panel=OUTPUT_PANEL)]
SaveSteps = Annotated[int, typer.Option("--save-steps", help="Checkpoint every N steps.",
                                        rich_help_panel=OUTPUT_PANEL)]
EvalSteps = Annotated[int, typer.Option("--eval-steps", help="Evaluate every N steps.", rich_help_panel=OUTPUT_PANEL)]
LoraR = Annotated[int, typer.Option("--lora-r", help="LoRA rank.", rich_help_panel=LORA_PANEL)]
LoraAlpha = Annotated[int, typer.Option("--lora-alpha", rich_help_panel=LORA_PANEL)]
LoraDropout = Annotated[float, typer.Option("--lora-dropout", rich_help_panel=LORA_PANEL)]
LoraTargets = Annotated[str, typer.Option("--lora-target-modules",
                                          help="all-linear, or comma-separated module names.",
                                          rich_help_panel=LORA_PANEL)]

# Launch options (sft, train-rm, ppo, eval-rm): see stackllama_cli/dist/relaunch.py and docs/multi-gpu.md.
Gpus = Annotated[str, typer.Option("--gpus", metavar="N|all|auto", help="GPUs (= processes) on this machine; "
                                   "auto: all visible. More than one re-executes under 'accelerate launch'.",
                                   rich_help_panel=LAUNCH_PANEL)]
CpuProcesses = Annotated[int, typer.Option("--cpu-processes", metavar="N",
                                           help="Run N CPU processes (gloo) instead of GPUs; 0: off.",
                                           rich_help_panel=LAUNCH_PANEL)]
NumMachines = Annotated[int, typer.Option("--num-machines", help="Machines in a multi-node run; run the same "
                                          "command on each, with its own --machine-rank.",
                                          rich_help_panel=LAUNCH_PANEL)]
MachineRank = Annotated[int, typer.Option("--machine-rank", help="This machine's rank (0 = main).",
                                          rich_help_panel=LAUNCH_PANEL)]
MainProcessIp = Annotated[Optional[str], typer.Option("--main-process-ip", help="Address of machine rank 0.",
                                                      rich_help_panel=LAUNCH_PANEL)]
MainProcessPort = Annotated[Optional[int], typer.Option("--main-process-port",
                                                        help="Port on machine rank 0 (accelerate's default: 29500).",
                                                        rich_help_panel=LAUNCH_PANEL)]
AccelerateConfig = Annotated[Optional[Path], typer.Option(
    "--accelerate-config", metavar="FILE|NAME",
    help="An accelerate config file (DeepSpeed, FSDP...), or a shipped one by name: multi-gpu, "
         "deepspeed-zero2, deepspeed-zero3-offload.", rich_help_panel=LAUNCH_PANEL)]

# (name, annotation, default) of each launch option, in help order
LAUNCH_OPTIONS = (("gpus", Gpus, "auto"), ("cpu_processes", CpuProcesses, 0), ("num_machines", NumMachines, 1),
                  ("machine_rank", MachineRank, 0), ("main_process_ip", MainProcessIp, None),
                  ("main_process_port", MainProcessPort, None), ("accelerate_config", AccelerateConfig, None))
LAUNCH_PARAMS = tuple(name for name, _, _ in LAUNCH_OPTIONS)


def launch_from_params(values: dict) -> None:
    """Pop the launch options out of a command's parameters and relaunch under accelerate if asked."""
    from stackllama_cli.dist.relaunch import LaunchOptions, relaunch_if_needed

    opts = {k: values.pop(k) for k in LAUNCH_PARAMS}
    if opts["accelerate_config"] is not None:
        opts["accelerate_config"] = str(opts["accelerate_config"])
    relaunch_if_needed(LaunchOptions(**opts))
