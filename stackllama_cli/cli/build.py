"""The one way a command's signature is built from shared options.

Typer reads a command's parameters from its signature. Commands that share option groups (the
training, LoRA, model, output and launch options) list their options as a table of
(name, annotation, default) rows; `command_from_table` turns a table and a body into a Typer
command, and `stage_command` is the usual body: build the stage config (dataclass defaults <
--config < command line), relaunch under accelerate when asked, run the stage, print its summary.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, Callable, Iterable

import typer

from stackllama_cli.cli import options as o

P = inspect.Parameter
Row = tuple[str, Any, Any]  # (parameter name, Annotated type with its typer.Option, default)


def command_from_table(body: Callable[..., None], rows: Iterable[Row]) -> Callable[..., None]:
    """A Typer command taking `ctx` and the options in `rows` (in help order); calls `body(ctx, **values)`."""
    params = [P("ctx", P.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    params += [P(name, P.KEYWORD_ONLY, annotation=annotation, default=default) for name, annotation, default in rows]

    def command(ctx: typer.Context, **values: Any) -> None:
        body(ctx, **values)

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def trainer_rows(C) -> tuple[list[Row], list[Row]]:
    """Options every Trainer-based stage takes, defaults from its config class `C` (a TrainCommon):
    (rows before the stage's own options, rows after them)."""
    before = [("model", o.Model, C.model), ("data", o.Data, Path(C.data)), *o.DATA_OPTIONS,
              ("output", o.OutputDir, Path(C.output)), ("base", o.Base, None),
              ("prompt_format", o.PromptFormat, C.prompt_format)]
    after = [
        ("max_steps", o.MaxSteps, C.max_steps), ("epochs", o.Epochs, C.epochs),
        ("learning_rate", o.LearningRate, C.learning_rate), ("lr_scheduler", o.LrScheduler, C.lr_scheduler),
        ("warmup_steps", o.WarmupSteps, C.warmup_steps), ("weight_decay", o.WeightDecay, C.weight_decay),
        ("batch_size", o.BatchSize, C.batch_size), ("grad_accum", o.GradAccum, C.grad_accum),
        ("gradient_checkpointing", o.GradientCheckpointing, C.gradient_checkpointing),
        ("max_grad_norm", o.MaxGradNorm, C.max_grad_norm), ("seed", o.Seed, C.seed),
        *lora_rows(C), *model_rows(C.precision), *o.LAUNCH_OPTIONS,
        ("logging_steps", o.LoggingSteps, C.logging_steps), ("save_steps", o.SaveSteps, C.save_steps),
        ("eval_steps", o.EvalSteps, C.eval_steps), ("report_to", o.ReportTo, C.report_to),
        ("run_name", o.RunName, None), *run_rows(),
    ]
    return before, after


def lora_rows(C) -> list[Row]:
    return [("lora_r", o.LoraR, C.lora_r), ("lora_alpha", o.LoraAlpha, C.lora_alpha),
            ("lora_dropout", o.LoraDropout, C.lora_dropout),
            ("lora_target_modules", o.LoraTargets, C.lora_target_modules)]


def model_rows(precision: str = "auto") -> list[Row]:
    return [("load_in_8bit", o.LoadIn8bit, False), ("load_in_4bit", o.LoadIn4bit, False),
            ("precision", o.Precision, precision), ("attn_implementation", o.AttnImplementation, None),
            ("trust_remote_code", o.TrustRemoteCode, False)]


def run_rows() -> list[Row]:
    return [("resume", o.Resume, False), ("overwrite", o.Overwrite, False), ("json_out", o.Json, False),
            ("config", o.ConfigFile, None)]


def stage_command(C, section: str, stage_module: str, rows: Iterable[Row]) -> Callable[..., None]:
    """A Typer command over `rows` that builds `C` from defaults < --config < command line, relaunches if
    asked, and runs `stage_module.run(config)`; `--json` prints the summary it returns."""

    def body(ctx: typer.Context, **values: Any) -> None:
        from stackllama_cli.core.config import config_from_cli
        from stackllama_cli.core.console import print_json

        config, json_out = values.pop("config"), values.pop("json_out")
        values = {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}
        o.launch_from_params(values)  # several processes: re-exec under accelerate, exit with its code
        summary = importlib.import_module(stage_module).run(config_from_cli(C, ctx, values, config, section))
        if json_out:  # every rank returns a summary; print_json writes rank 0's
            print_json(summary)

    return command_from_table(body, rows)


def trainer_command(C, section: str, stage_module: str, stage_rows: list[Row]) -> Callable[..., None]:
    """`stage_command` with the shared training options around the stage's own."""
    before, after = trainer_rows(C)
    return stage_command(C, section, stage_module, [*before, *stage_rows, *after])
