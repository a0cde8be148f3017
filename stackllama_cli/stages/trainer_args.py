"""Config-file keys passed through to TrainingArguments (sft: TRL's SFTConfig; train-rm: its RewardConfig).

A `--config` file for sft or train-rm may hold, beside our own options, any field of the stage's TRL
config (`adam_beta2: 0.95`, `optim: adamw_torch_fused`, `neftune_noise_alpha: 5` ...): core/config.py
collects them into `trainer_args`, checked here and passed on by stages/common.py:training_args_kwargs.
Fields stackllama sets itself from its own options are refused, naming the option to use instead.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Iterable

from stackllama_cli.core.errors import StackLlamaError

# TrainingArguments/TRL fields set from our options (training_args_kwargs and the stages' own arguments)
MANAGED = {
    "output_dir": "output", "num_train_epochs": "epochs", "lr_scheduler_type": "lr_scheduler",
    "per_device_train_batch_size": "batch_size", "per_device_eval_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum", "data_seed": "seed", "save_strategy": "save_steps",
    "eval_strategy": "eval_steps", "bf16": "precision", "fp16": "precision", "use_cpu": "precision",
    "disable_tqdm": None, "ddp_find_unused_parameters": None,
    # sft
    "max_length": "seq_length", "packing_strategy": "packing", "dataset_text_field": None, "eos_token": None,
    "pad_token": None, "dataset_num_proc": None,
    # train-rm
    "disable_dropout": "lora_dropout", "center_rewards_coefficient": None,
}


def trl_fields(target: str) -> dict[str, dataclasses.Field]:
    """The init fields of `target` ('module:Class', e.g. 'trl:SFTConfig')."""
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def check_trainer_args(args: dict[str, Any], target: str, own: Iterable[str]) -> None:
    """Refuse keys that are ours, that stackllama sets, that `target` lacks, or whose value has the wrong type."""
    own = sorted(own)
    for key in args:
        if key in own:
            raise StackLlamaError(f"config key {key!r} is a stackllama option: set it directly, not in trainer_args")
        if key in MANAGED:
            instead = f"; use {MANAGED[key]}" if MANAGED[key] and MANAGED[key] in own else ""
            raise StackLlamaError(f"config key {key!r} is set by stackllama itself{instead}")
    fields = trl_fields(target)
    unknown = sorted(k for k in args if k not in fields)
    if unknown:
        raise StackLlamaError(f"unknown config file key(s): {', '.join(unknown)} (valid: {', '.join(own)}; "
                              f"or any field of {target.replace(':', '.')})")
    for key, value in args.items():
        default = fields[key].default
        expected = type(default) if isinstance(default, (bool, int, float, str)) else None
        if expected is bool and not isinstance(value, bool) or expected in (int, float) and (
                isinstance(value, bool) or not isinstance(value, (int, float))) or expected is str and not isinstance(
                value, str):
            raise StackLlamaError(f"config key {key!r} takes a {expected.__name__}, not {value!r}")
