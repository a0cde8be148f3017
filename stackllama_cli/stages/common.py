"""What the Trainer-based stages (sft, train-rm) share: the common options (`TrainCommon`), the
TrainingArguments they map to, the LoRA config, checkpoints and callbacks.

PPO has its own loop (stages/ppo/) but the same output-dir rules (core/files.py) and metrics log
(core/metrics.py).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

from stackllama_cli.core.config import check_exclusive, check_precision, require
from stackllama_cli.core.errors import StackLlamaError, UsageError
from stackllama_cli.core.files import CHECKPOINTS_DIRNAME
from stackllama_cli.core.metrics import METRICS_FILENAME, truncate_jsonl
from stackllama_cli.dist.ranks import is_main_process, wait_for_everyone
from stackllama_cli.stages.trackers import check_report_to  # noqa: F401  (ppo's config imports it from here)


@dataclasses.dataclass
class TrainCommon:
    """Options every Trainer-based stage shares. Stage configs subclass this and override defaults."""

    TRAINER_ARGS: ClassVar[str] = "transformers:TrainingArguments"  # what other config-file keys must be fields of

    model: str = "smollm2-135m"
    data: str = "runs/demo/data"
    data_dir: str | None = None  # a subfolder of --data holding the stage's split (data/sources.py)
    split: str | None = None  # the stage's split by another name
    columns: str = ""  # 'ours=theirs,...' column mapping (data/columns.py)
    output: str = "runs/stage"
    base: str | None = None
    max_steps: int = -1  # > 0 overrides epochs
    epochs: float = 1.0
    learning_rate: float = 1e-4
    lr_scheduler: str = "cosine"
    warmup_steps: float = 0.03  # steps, or a fraction of all steps when below 1
    weight_decay: float = 0.0
    batch_size: int = 4
    grad_accum: int = 1
    gradient_checkpointing: bool = False
    max_grad_norm: float = 1.0
    seed: int = 0
    logging_steps: int = 10
    save_steps: int = 200
    eval_steps: int = 200
    save_total_limit: int = 2
    precision: str = "auto"
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"
    trust_remote_code: bool = False
    attn_implementation: str | None = None  # sdpa, eager, flash_attention_2; None: the library's choice
    prompt_format: str | None = None  # recipe or chat; None: the input model's recorded format, else recipe
    report_to: str = "none"
    run_name: str | None = None
    resume: bool = False
    overwrite: bool = False
    trainer_args: dict[str, Any] = dataclasses.field(default_factory=dict)  # config-file keys for TRL's config

    def __post_init__(self) -> None:
        require(self.max_steps > 0 or self.epochs > 0, "give --max-steps or --epochs greater than 0")
        require(self.learning_rate > 0, "--learning-rate must be positive")
        require(self.warmup_steps >= 0, "--warmup-steps must be non-negative")
        if self.warmup_steps >= 1:
            self.warmup_steps = int(self.warmup_steps)
        require(self.batch_size >= 1 and self.grad_accum >= 1, "--batch-size and --grad-accum must be at least 1")
        require(self.lora_r >= 1, "--lora-r must be at least 1")
        require(0.0 <= self.lora_dropout < 1.0, "--lora-dropout must be in [0, 1)")
        check_exclusive(self.load_in_8bit, self.load_in_4bit, self.resume, self.overwrite)
        check_precision(self.precision)
        check_report_to(self.report_to)
        if self.trainer_args:
            from stackllama_cli.stages.trainer_args import check_trainer_args

            check_trainer_args(self.trainer_args, self.TRAINER_ARGS, (f.name for f in dataclasses.fields(self)))
        check_model_options(self)
        for name in ("logging_steps", "save_steps", "eval_steps"):
            require(getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be at least 1")


def check_model_options(cfg) -> None:
    """--attn-implementation and --prompt-format values, before anything loads (both checks are torch-free)."""
    from stackllama_cli.data.prompt_format import check_format_name
    from stackllama_cli.models.load import check_attn_implementation

    check_attn_implementation(cfg.attn_implementation)
    check_format_name(cfg.prompt_format)


def stage_prompt_format(explicit: str | None, models: dict, tokenizer, model_name: str):
    """The prompt format of a stage whose input models are `models` (name -> ModelSpec), for `tokenizer`:
    their recorded format, else `explicit`, else recipe (data/prompt_format.py:resolve_format_name)."""
    from stackllama_cli.data.prompt_format import prompt_format, resolve_format_name
    from stackllama_cli.models.load import recorded_prompt_format

    name = resolve_format_name(explicit, {n: recorded_prompt_format(spec) for n, spec in models.items()})
    return prompt_format(name, tokenizer, model_name)


def checkpoint_step(path: str | Path | None) -> int:
    """The global step of a Trainer checkpoint folder (`checkpoint-N`); 0 for none (a run not resumed)."""
    return int(Path(path).name.rsplit("-", 1)[-1]) if path else 0


def _trainer_checkpoints(output: str | Path) -> list[Path]:
    """checkpoint-N folders, newest first."""
    root = Path(output) / CHECKPOINTS_DIRNAME
    if not root.is_dir():
        return []
    dirs = [d for d in root.iterdir() if d.is_dir() and d.name.startswith("checkpoint-") and
            d.name.rsplit("-", 1)[-1].isdigit()]
    return sorted(dirs, key=checkpoint_step, reverse=True)


def is_complete_checkpoint(path: Path) -> bool:
    """The Trainer writes trainer_state.json last: a folder killed mid-save has none, or a cut one."""
    try:
        json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def last_checkpoint(output: str | Path) -> str | None:
    """The newest *complete* checkpoint (transformers' own choice is the newest folder, even a half-written one)."""
    return next((str(d) for d in _trainer_checkpoints(output) if is_complete_checkpoint(d)), None)


def prepare_resume(output: Path) -> str:
    """Prepare `output` to continue from its newest complete checkpoint: newer half-written checkpoints go,
    and metrics.jsonl keeps only the steps up to it (the resumed run logs the rest again)."""
    checkpoint = last_checkpoint(output)
    if is_main_process():
        for d in _trainer_checkpoints(output):
            if checkpoint_step(d) > checkpoint_step(checkpoint):
                shutil.rmtree(d, ignore_errors=True)
        truncate_jsonl(output / METRICS_FILENAME, checkpoint_step(checkpoint))
    wait_for_everyone()
    return checkpoint


def precision_kwargs(precision: str) -> dict[str, Any]:
    """TrainingArguments precision flags; TRL defaults to bf16=True, a trap on CPUs (bf16 matmuls without AMX
    are 15-60x slower)."""
    import torch

    from stackllama_cli.models.load import resolve_precision

    resolved = resolve_precision(precision)
    return {"bf16": resolved == "bf16", "fp16": resolved == "fp16", "use_cpu": not torch.cuda.is_available()}


def training_args_kwargs(cfg: TrainCommon, output: Path, has_eval: bool) -> dict[str, Any]:
    """The TrainingArguments fields common to SFTConfig and RewardConfig, then the config file's others."""
    from stackllama_cli.stages.trackers import run_name, transformers_report_to

    return dict(
        output_dir=str(output / CHECKPOINTS_DIRNAME),
        max_steps=cfg.max_steps,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        gradient_checkpointing=cfg.gradient_checkpointing,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.eval_steps if has_eval else None,
        report_to=transformers_report_to(cfg.report_to),
        run_name=run_name(cfg.run_name, cfg.output),
        disable_tqdm=True,  # our progress instead (stages/callbacks.py)
        ddp_find_unused_parameters=False,  # LoRA uses every trainable parameter; the search costs a graph pass
        **precision_kwargs(cfg.precision),
        **cfg.trainer_args,
    )


def lora_config(cfg, task_type: str, model=None):
    """The LoRA adapter of any stage: `cfg` has lora_r, lora_alpha, lora_dropout, lora_target_modules. Named
    targets are checked against `model` when given (peft drops names that match nothing without a word)."""
    from peft import LoraConfig

    targets = cfg.lora_target_modules
    target_modules = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    if not target_modules:
        raise UsageError("--lora-target-modules is empty: give all-linear or module names separated by commas")
    if model is not None and target_modules != "all-linear":
        check_lora_targets(model, target_modules)
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
                      task_type=task_type, target_modules=target_modules)


def linear_layer_names(model) -> list[str]:
    """The distinct names of the model's linear layers that LoRA can adapt (all-linear's choice: not the
    output projection nor a classifier's score head), e.g. Phi-3's qkv_proj and gate_up_proj."""
    import torch
    from transformers.pytorch_utils import Conv1D

    heads = {id(m) for m in (model.get_output_embeddings(), getattr(model, "score", None)) if m is not None}
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, (torch.nn.Linear, Conv1D)) and id(module) not in heads})


def check_lora_targets(model, targets: list[str]) -> None:
    """Every name in --lora-target-modules must be a module of `model` (peft's rule: the full name or its
    dotted suffix), else a one-line error listing the model's linear layers."""
    names = [name for name, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        arch = type(model).__name__
        raise StackLlamaError(f"--lora-target-modules: {arch} has no module named {', '.join(missing)}; its linear "
                              f"layers are {', '.join(linear_layer_names(model))} (or use all-linear)")


def install_callbacks(trainer, output: Path, description: str, max_minutes: float = 0.0,
                      deadline: float | None = None):
    """Our progress + JSONL metrics instead of tqdm and the PrinterCallback (which prints dicts to stdout), and a
    time budget when `max_minutes` > 0 (returned: it says where it stopped; the progress ETA counts with it),
    ending at `deadline` (time.monotonic()) where the budget covers more than training."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from stackllama_cli.stages.callbacks import JsonlMetricsCallback, TimeBudgetCallback, TrainProgressCallback
    from stackllama_cli.stages.trackers import point_local_trackers

    budget = TimeBudgetCallback(max_minutes, deadline) if max_minutes > 0 else None
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(TrainProgressCallback(description, budget))
    trainer.add_callback(JsonlMetricsCallback(output / METRICS_FILENAME))
    if budget is not None:
        trainer.add_callback(budget)
    point_local_trackers(trainer, output)
    return budget


def whole_run_loss(session_loss: float, records: list[dict], resumed: bool) -> float | None:
    """The run's mean training loss. The Trainer's figure covers this session only, so after a resume it is
    the mean of every logged training loss in metrics.jsonl (the whole run's)."""
    if not resumed:
        return session_loss
    losses = [r["loss"] for r in records if r.get("loss") is not None]
    return sum(losses) / len(losses) if losses else None
