"""The Trainer stages' progress (stages/callbacks.py): the ETA from the binding limit, one line or JSON event per
logging step and per evaluation, silent on other ranks."""

import json
import types

import pytest

from stackllama_cli.core import console as c
from stackllama_cli.stages import callbacks
from stackllama_cli.stages.callbacks import TimeBudgetCallback, TrainProgressCallback, eta, eval_line, train_line


@pytest.fixture
def mode(monkeypatch):
    for name in ("STACKLLAMA_LOG_FORMAT", "STACKLLAMA_QUIET"):
        monkeypatch.delenv(name, raising=False)
    yield c.configure
    monkeypatch.undo()
    c.configure()


def test_eta_comes_from_the_limit_that_ends_first():
    # 10 s per step, 1000 steps left: 10000 s by steps; a budget with 120 s left ends first
    assert eta(100.0, 10, 1000, None) == (10000.0, "max steps")
    assert eta(100.0, 10, 1000, 120.0) == (120.0, "time budget")
    assert eta(100.0, 10, 5, 120.0) == (50.0, "max steps")
    assert eta(0.0, 0, 5, None) == (None, "max steps") and eta(0.0, 0, 5, 60.0) == (60.0, "time budget")
    assert eta(100.0, 10, 1000, -3.0)[0] == 0.0  # past the budget: the step in progress is the last


def test_lines():
    fields = {"step": 3, "total": 500, "loss": 1.23456, "tokens_per_second": 812.4, "samples_per_second": 4.1,
              "elapsed_s": 12, "eta_s": 1985, "eta_limit": "time budget"}
    assert train_line("train-rm", fields) == ("train-rm step 3/500  loss 1.235  812 tok/s  4.1 samples/s  "
                                              "elapsed 0:00:12  ETA 0:33:05 (time budget)")
    assert eval_line("train-rm", {"step": 200, "total": 500, "eval_loss": 0.61, "eval_accuracy": 0.7,
                                  "eval_runtime": 3.0}) == "train-rm eval at step 200/500  loss 0.61  accuracy 0.7"


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def run_steps(monkeypatch, budget=None, world_zero=True):
    now = Clock()
    monkeypatch.setattr(callbacks.time, "monotonic", now)
    args = types.SimpleNamespace(per_device_train_batch_size=4, gradient_accumulation_steps=2, world_size=1)
    state = types.SimpleNamespace(is_world_process_zero=world_zero, global_step=0, max_steps=100)
    cb = TrainProgressCallback("sft", budget)
    if budget is not None:
        budget.on_train_begin(args, state, None)
    cb.on_train_begin(args, state, None)
    for step in (1, 2):
        now.t += 2.0
        state.global_step = step
        cb.on_step_end(args, state, None)
        cb.on_log(args, state, None, logs={"loss": 2.0 / step, "num_tokens": 512.0 * step, "learning_rate": 1e-4})
    cb.on_log(args, state, None, logs={"eval_loss": 1.5, "eval_runtime": 0.1})
    cb.on_log(args, state, None, logs={"train_runtime": 4.0, "train_loss": 1.5})  # the end summary: no line
    cb.on_train_end(args, state, None)


def test_plain_line_per_logging_step(mode, monkeypatch, capsys):
    mode("plain")
    run_steps(monkeypatch)
    assert capsys.readouterr().err.splitlines() == [
        "sft step 1/100  loss 2  256 tok/s  4 samples/s  elapsed 0:00:02  ETA 0:03:18",
        "sft step 2/100  loss 1  256 tok/s  4 samples/s  elapsed 0:00:04  ETA 0:03:16",
        "sft eval at step 2/100  loss 1.5"]


def test_json_events_and_the_time_budget(mode, monkeypatch, capsys):
    mode("json")
    run_steps(monkeypatch, budget=TimeBudgetCallback(minutes=1))
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [e["event"] for e in events] == ["progress", "progress", "eval"]
    first = events[0]
    assert first["stage"] == "sft" and first["step"] == 1 and first["total"] == 100 and first["loss"] == 2.0
    assert first["tokens_per_second"] == 256.0 and first["samples_per_second"] == 4.0
    assert first["eta_limit"] == "time budget" and first["eta_s"] == 58.0 and first["learning_rate"] == 1e-4
    assert events[2]["eval_loss"] == 1.5


def test_silent_on_other_ranks_and_when_quiet(mode, monkeypatch, capsys):
    mode("plain")
    run_steps(monkeypatch, world_zero=False)
    mode("plain", quiet=True)
    run_steps(monkeypatch)
    assert capsys.readouterr().err == ""
