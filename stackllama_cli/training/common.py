"""Pieces shared by the Trainer-based stages (sft, train-rm): options, output dir, callbacks, plots.

PPO has its own loop but reuses the output-dir rules, the metrics log and the plot.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from stackllama_cli.config import require
from stackllama_cli.console import console, is_main_process
from stackllama_cli.errors import StackLlamaError

METRICS_FILENAME = "metrics.jsonl"
CHECKPOINTS_DIRNAME = "checkpoints"


@dataclasses.dataclass
class TrainCommon:
    """Options every Trainer-based stage shares. Stage configs subclass this and override defaults."""

    model: str = "smollm2-135m"
    data: str = "runs/demo/data"
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
    report_to: str = "none"
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        require(self.max_steps > 0 or self.epochs > 0, "give --max-steps or --epochs greater than 0")
        require(self.learning_rate > 0, "--learning-rate must be positive")
        require(self.warmup_steps >= 0, "--warmup-steps must be non-negative")
        if self.warmup_steps >= 1:
            self.warmup_steps = int(self.warmup_steps)
        require(self.batch_size >= 1 and self.grad_accum >= 1, "--batch-size and --grad-accum must be at least 1")
        require(self.lora_r >= 1, "--lora-r must be at least 1")
        require(0.0 <= self.lora_dropout < 1.0, "--lora-dropout must be in [0, 1)")
        require(not (self.load_in_8bit and self.load_in_4bit), "choose one of --load-in-8bit and --load-in-4bit")
        require(not (self.resume and self.overwrite), "--resume and --overwrite contradict each other")
        require(self.report_to in ("none", "tensorboard", "wandb", "trackio"),
                "--report-to must be none, tensorboard, wandb or trackio")
        for name in ("logging_steps", "save_steps", "eval_steps"):
            require(getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be at least 1")


def prepare_output_dir(output: str | Path, resume: bool, overwrite: bool) -> Path:
    """Apply the output rules: never clobber a run silently; --resume needs something to resume."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise StackLlamaError(f"output path {out} exists and is not a directory")
    has_content = out.is_dir() and any(out.iterdir())
    if resume:
        if last_checkpoint(out) is None:
            raise StackLlamaError(f"nothing to resume: {out} has no checkpoint; drop --resume to start afresh")
        return out
    if has_content and not overwrite:
        raise StackLlamaError(f"{out} already holds a run; pass --resume to continue it or --overwrite to replace it")
    # Every rank has judged the directory as the user left it; only then may rank 0 change it.
    # Without this barrier a slower rank saw rank 0's fresh files and refused to start.
    wait_for_everyone()
    if has_content and is_main_process():
        shutil.rmtree(out)
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
    wait_for_everyone()
    out.mkdir(parents=True, exist_ok=True)  # other machines of a multi-node run may not share the disk
    return out


def wait_for_everyone() -> None:
    """Barrier across the processes of a data-parallel run; free (no torch import) in a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch
        from accelerate import PartialState

        # cpu=True where there is no GPU: accelerate would otherwise fall back to one process (measured)
        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()


def last_checkpoint(output: str | Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    ckpt_dir = Path(output) / CHECKPOINTS_DIRNAME
    return get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None


def publish(save: Callable[[Path], None], output: str | Path, last: Iterable[str] = ("adapter_config.json",
                                                                                         "config.json")) -> None:
    """Save final artifacts atomically: `save(tmp)` writes into a temp dir, files are renamed into `output`.

    Files named in `last` (the ones loaders look for) are moved last, so a crash
    mid-publish never leaves a loadable but incomplete model.
    """
    if not is_main_process():
        return
    output = Path(output)
    tmp = Path(tempfile.mkdtemp(prefix=".publish-", dir=output))
    try:
        save(tmp)
        entries = sorted(tmp.iterdir(), key=lambda p: p.name in last)
        for entry in entries:
            target = output / entry.name
            if target.is_dir() and entry.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def precision_kwargs(precision: str) -> dict[str, Any]:
    """TrainingArguments precision flags; TRL defaults to bf16=True, a trap on CPUs (DESIGN.md §2)."""
    import torch

    from stackllama_cli.models import resolve_precision

    resolved = resolve_precision(precision)
    return {"bf16": resolved == "bf16", "fp16": resolved == "fp16", "use_cpu": not torch.cuda.is_available()}


def batch_description(cfg: TrainCommon) -> str:
    """'effective batch 32 = 4 per device x 8 processes x 1 accumulation'."""
    from stackllama_cli.launch import effective_batch_size, world_size

    world = world_size()
    return (f"effective batch {effective_batch_size(cfg.batch_size, world, cfg.grad_accum)} = {cfg.batch_size} per "
            f"device x {world} process{'es' if world > 1 else ''} x {cfg.grad_accum} accumulation")


def training_args_kwargs(cfg: TrainCommon, output: Path, has_eval: bool) -> dict[str, Any]:
    """The TrainingArguments fields common to SFTConfig and RewardConfig."""
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
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        disable_tqdm=True,  # Rich progress instead (RichProgressCallback)
        ddp_find_unused_parameters=False,  # LoRA uses every trainable parameter; the search costs a graph pass
        **precision_kwargs(cfg.precision),
    )


def lora_config(cfg: TrainCommon, task_type: str):
    from peft import LoraConfig

    targets = cfg.lora_target_modules
    target_modules = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
                      task_type=task_type, target_modules=target_modules)


def install_callbacks(trainer, output: Path, description: str) -> None:
    """Rich progress + JSONL metrics instead of tqdm and the PrinterCallback (which prints dicts to stdout)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from stackllama_cli.training.callbacks import JsonlMetricsCallback, RichProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(RichProgressCallback(description))
    trainer.add_callback(JsonlMetricsCallback(output / METRICS_FILENAME))


def plot_curves(records: list[dict], path: str | Path, series: list[tuple[str, str]], title: str,
                x_key: str = "step") -> Path | None:
    """A PNG with one line per (metric key, label) over `x_key`; panels for metrics of different scale."""
    present = [(k, label) for k, label in series if any(r.get(k) is not None for r in records)]
    if not present or not is_main_process():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(present), 1, figsize=(7, 2.6 * len(present)), sharex=True, squeeze=False)
    for ax, (key, label) in zip(axes[:, 0], present):
        points = [(r[x_key], r[key]) for r in records if r.get(key) is not None and r.get(x_key) is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 50 else None)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel(x_key)
    fig.tight_layout()
    path = Path(path)  # written to a temp name and renamed, like every output
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def summary_table(title: str, rows: dict[str, Any]) -> None:
    """Print a two-column Rich table on stderr (main process only)."""
    if not is_main_process():
        return
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in rows.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


def count_changed(model, before: dict) -> tuple[int, int]:
    """(changed, total) trainable tensors vs a snapshot {name: tensor}: used by tests and sanity logs."""
    import torch

    changed = total = 0
    for name, param in model.named_parameters():
        if name in before:
            total += 1
            changed += int(not torch.equal(before[name], param.detach().cpu()))
    return changed, total


def snapshot_trainable(model) -> dict:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
