"""One builder for the Trainer-based commands (sft, train-rm): the same options, one body.

Typer reads a command's parameters from its signature; the shared training, LoRA,
model, output and launch options are declared once here, with defaults taken from
each stage's config dataclass, and a stage adds only its own options.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, Callable

import typer

from stackllama_cli import options as o

P = inspect.Parameter


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return P(name, P.KEYWORD_ONLY, annotation=annotation, default=default)


def shared_parameters(C) -> list[inspect.Parameter]:
    """Options every Trainer-based stage takes, defaults from its config class `C` (a TrainCommon)."""
    before = [("model", o.Model, C.model), ("data", o.Data, Path(C.data)), ("output", o.OutputDir, Path(C.output)),
              ("base", o.Base, None)]
    after = [
        ("max_steps", o.MaxSteps, C.max_steps), ("epochs", o.Epochs, C.epochs),
        ("learning_rate", o.LearningRate, C.learning_rate), ("lr_scheduler", o.LrScheduler, C.lr_scheduler),
        ("warmup_steps", o.WarmupSteps, C.warmup_steps), ("weight_decay", o.WeightDecay, C.weight_decay),
        ("batch_size", o.BatchSize, C.batch_size), ("grad_accum", o.GradAccum, C.grad_accum),
        ("gradient_checkpointing", o.GradientCheckpointing, C.gradient_checkpointing),
        ("max_grad_norm", o.MaxGradNorm, C.max_grad_norm), ("seed", o.Seed, C.seed),
        ("lora_r", o.LoraR, C.lora_r), ("lora_alpha", o.LoraAlpha, C.lora_alpha),
        ("lora_dropout", o.LoraDropout, C.lora_dropout), ("lora_target_modules", o.LoraTargets,
                                                          C.lora_target_modules),
        ("load_in_8bit", o.LoadIn8bit, False), ("load_in_4bit", o.LoadIn4bit, False),
        ("precision", o.Precision, C.precision), ("trust_remote_code", o.TrustRemoteCode, False),
        *o.LAUNCH_OPTIONS,
        ("logging_steps", o.LoggingSteps, C.logging_steps), ("save_steps", o.SaveSteps, C.save_steps),
        ("eval_steps", o.EvalSteps, C.eval_steps), ("report_to", o.ReportTo, C.report_to),
        ("resume", o.Resume, False), ("overwrite", o.Overwrite, False), ("json_out", o.Json, False),
        ("config", o.ConfigFile, None),
    ]
    return [_param(*p) for p in before], [_param(*p) for p in after]


def trainer_command(C, section: str, stage_module: str, stage_options: list[tuple[str, Any, Any]]) -> Callable:
    """A Typer command: build `C` from defaults < --config < command line, relaunch if asked, run the stage."""

    def command(ctx: typer.Context, **values: Any) -> None:
        from stackllama_cli.config import config_from_cli
        from stackllama_cli.console import print_json

        config, json_out = values.pop("config"), values.pop("json_out")
        values = {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}
        o.launch_from_params(values)  # several processes: re-exec under accelerate, exit with its code
        summary = importlib.import_module(stage_module).run(config_from_cli(C, ctx, values, config, section))
        if json_out:  # every rank returns a summary; print_json writes rank 0's
            print_json(summary)

    before, after = shared_parameters(C)
    params = [P("ctx", P.POSITIONAL_OR_KEYWORD, annotation=typer.Context), *before,
              *(_param(*p) for p in stage_options), *after]
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command
