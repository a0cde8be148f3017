"""transformers Trainer callbacks: Rich progress on stderr and a JSONL metrics log (imports transformers)."""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from stackllama_cli.core.console import progress
from stackllama_cli.core.metrics import MetricsLog


class JsonlMetricsCallback(TrainerCallback):
    """Every Trainer log line (train and eval) as one JSON object in `metrics.jsonl`."""

    def __init__(self, path: Path):
        self.log = MetricsLog(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.log.write({"step": state.global_step, "epoch": state.epoch, **logs})


class RichProgressCallback(TrainerCallback):
    """Step progress with loss, eval loss and tokens/s (from the trainer's `num_tokens` log when present)."""

    def __init__(self, description: str):
        self.description = description
        self.bar = None
        self.task = None
        self._tokens = None
        self._time = None
        self.fields: dict[str, str] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.bar = progress()
        self.bar.start()
        self.task = self.bar.add_task(self.description, total=state.max_steps, completed=state.global_step, extra="")
        self._time = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        now = time.time()
        if "num_tokens" in logs:
            if self._tokens is not None and now > self._time:
                self.fields["tok/s"] = f"{(logs['num_tokens'] - self._tokens) / (now - self._time):.0f}"
            self._tokens, self._time = logs["num_tokens"], now
        for key, label in (("loss", "loss"), ("eval_loss", "eval"), ("eval_accuracy", "eval acc")):
            if key in logs:
                self.fields[label] = f"{logs[key]:.4g}"
        self.bar.update(self.task, extra="  ".join(f"{k} {v}" for k, v in self.fields.items()))

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


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
