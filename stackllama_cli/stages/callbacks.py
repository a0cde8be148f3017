"""transformers Trainer callbacks: step progress on stderr, a JSONL metrics log, a time budget (imports transformers)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from stackllama_cli.core.console import mode, progress, quiet, report
from stackllama_cli.core.metrics import MetricsLog
from stackllama_cli.core.progress_lines import clock

EVAL_FIGURES = (("eval_loss", "loss"), ("eval_accuracy", "accuracy"), ("eval_margin", "margin"))


class JsonlMetricsCallback(TrainerCallback):
    """Every Trainer log line (train and eval) as one JSON object in `metrics.jsonl`."""

    def __init__(self, path: Path):
        self.log = MetricsLog(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # Not the Trainer's end-of-run record (train_runtime, train_loss of this session only): the stage's
        # summary holds the whole run's figures, and a resumed run's log then equals an uninterrupted one's.
        if state.is_world_process_zero and logs and "train_runtime" not in logs:
            self.log.write({"step": state.global_step, "epoch": state.epoch, **logs})


class TimeBudgetCallback(TrainerCallback):
    """Stop training cleanly (checkpoint, then the stage's normal evaluation and save) after `minutes`.

    Every process must stop at the same step or DDP hangs in the next all-reduce, so
    the "over budget" flag is max-reduced across processes before anyone acts on it.

    `deadline` (a `time.monotonic()` value) replaces "`minutes` after training begins" when the budget
    covers more than training (train-rm: stages/budget.py).
    """

    def __init__(self, minutes: float, deadline: float | None = None):
        self.seconds = minutes * 60.0
        self.deadline = deadline
        self.stopped_at: int | None = None

    def remaining(self) -> float | None:
        """Seconds left of the budget (None before training starts)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        if self.deadline is None:
            self.deadline = time.monotonic() + self.seconds

    def on_step_end(self, args, state, control, **kwargs):
        over = time.monotonic() > self.deadline
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            import torch

            flag = torch.tensor([float(over)], device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            over = bool(flag.item())
        if over and not control.should_training_stop:
            self.stopped_at = state.global_step
            control.should_training_stop = True
            control.should_save = True


def eta(elapsed: float, steps_done: int, steps_left: int, budget_left: float | None) -> tuple[float | None, str]:
    """(seconds to the end, the limit that ends it): the steps left at this session's pace, or the time
    budget's remainder when that ends first."""
    by_steps = elapsed / steps_done * steps_left if steps_done > 0 else None
    if budget_left is not None and (by_steps is None or budget_left < by_steps):
        return max(0.0, budget_left), "time budget"
    return by_steps, "max steps"


def train_line(stage: str, f: dict[str, Any]) -> str:
    """sft step 3/500  loss 1.234  812 tok/s  4.1 samples/s  elapsed 0:00:12  ETA 0:33:05 (time budget)"""
    parts = [f"{stage} step {f['step']}/{f['total']}", f"loss {f['loss']:.4g}"]
    if f.get("tokens_per_second") is not None:
        parts.append(f"{f['tokens_per_second']:.0f} tok/s")
    if f.get("samples_per_second") is not None:
        parts.append(f"{f['samples_per_second']:.3g} samples/s")
    parts.append(f"elapsed {clock(f['elapsed_s'])}")
    parts.append(f"ETA {clock(f['eta_s'])}" + (" (time budget)" if f["eta_limit"] == "time budget" else ""))
    return "  ".join(parts)


def eval_line(stage: str, f: dict[str, Any]) -> str:
    """sft eval at step 200/500  loss 1.301  accuracy 0.61"""
    figures = [f"{label} {f[key]:.4g}" for key, label in EVAL_FIGURES if isinstance(f.get(key), (int, float))]
    return "  ".join([f"{stage} eval at step {f['step']}/{f['total']}", *figures])


class TrainProgressCallback(TrainerCallback):
    """Step progress of a Trainer-based stage in the console's mode (core/console.py): a Rich bar on a terminal;
    elsewhere one line (or JSON event) per logging step with the loss, rates, elapsed time and ETA, and one per
    evaluation. The ETA comes from the binding limit: max steps at the pace so far, or the time budget."""

    def __init__(self, stage: str, budget: TimeBudgetCallback | None = None):
        self.stage = stage
        self.budget = budget
        self.active = False
        self.bar = None
        self.task = None
        self.shown: dict[str, str] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or quiet():
            return
        self.active = True
        self.start = self.last_time = time.monotonic()
        self.first_step = self.last_step = state.global_step
        self.last_tokens = None
        self.samples_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(
            1, args.world_size)
        if mode() == "rich":
            self.bar = progress(eta_field=True)
            self.bar.start()
            self.task = self.bar.add_task(self.stage, total=state.max_steps, completed=state.global_step, extra="",
                                          eta="")

    def _eta(self, step: int, total: int, now: float) -> tuple[float | None, str]:
        budget_left = self.budget.remaining() if self.budget is not None else None
        return eta(now - self.start, step - self.first_step, max(0, total - step), budget_left)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            seconds, limit = self._eta(state.global_step, state.max_steps, time.monotonic())
            self.bar.update(self.task, completed=state.global_step,
                            eta=f"ETA {clock(seconds)}" + (" (time budget)" if limit == "time budget" else ""))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self.active or not logs:
            return
        now = time.monotonic()
        base = {"stage": self.stage, "step": state.global_step, "total": state.max_steps,
                "elapsed_s": round(now - self.start, 3)}
        if "loss" in logs:
            fields = {**base, **logs, **self._rates(state.global_step, logs.get("num_tokens"), now)}
            seconds, fields["eta_limit"] = self._eta(state.global_step, state.max_steps, now)
            fields["eta_s"] = None if seconds is None else round(seconds, 3)
            event, text = "progress", train_line(self.stage, fields)
            self.shown["loss"] = f"{logs['loss']:.4g}"
            if fields.get("tokens_per_second") is not None:
                self.shown["tok/s"] = f"{fields['tokens_per_second']:.0f}"
        elif any(key.startswith("eval_") for key in logs):
            fields = {**base, **logs}
            event, text = "eval", eval_line(self.stage, fields)
            self.shown.update({f"eval {label}": f"{logs[key]:.4g}" for key, label in EVAL_FIGURES if key in logs})
        else:
            return  # the end-of-training summary: the stage prints its own
        if self.bar is not None:
            self.bar.update(self.task, extra="  ".join(f"{k} {v}" for k, v in self.shown.items()))
        else:
            report(event, text, **fields)

    def _rates(self, step: int, tokens: float | None, now: float) -> dict[str, float | None]:
        """Tokens/s (from the trainer's cumulative `num_tokens`) and samples/s since the previous log."""
        seconds = now - self.last_time
        out: dict[str, float | None] = {"tokens_per_second": None, "samples_per_second": None}
        if seconds > 0:
            out["samples_per_second"] = round((step - self.last_step) * self.samples_per_step / seconds, 3)
            if tokens is not None and (self.last_tokens is not None or self.first_step == 0):
                out["tokens_per_second"] = round((tokens - (self.last_tokens or 0)) / seconds, 1)
        self.last_time, self.last_step, self.last_tokens = now, step, tokens
        return out

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        self.active = False
