"""The model dpo and rloo start from: the SFT weights with every adapter merged in, ready for a fresh LoRA
adapter that TRL adds (peft_config). The reference both trainers use is then this model with the adapter
disabled - one set of weights in memory, as in stages/ppo/policy.py."""

from __future__ import annotations

import dataclasses

from stackllama_cli.core.errors import StackLlamaError


def check_causal_lm(spec, command: str) -> None:
    """A reward-model adapter given as --model would load as a causal LM with the wrong head: say so."""
    from stackllama_cli.models.resolve import adapter_task_type

    if spec.adapter and adapter_task_type(spec.adapter) not in (None, "CAUSAL_LM"):
        raise StackLlamaError(f"{spec.name} is a {adapter_task_type(spec.adapter)} adapter (a reward model?); start "
                              f"{command} from an SFT adapter, a merged SFT model or a base model")


def load_start_model(cfg, spec, command: str):
    """SFT weights (adapters merged, innermost first); k-bit preparation when quantised; no KV cache in training.

    `cfg` has precision, load_in_8bit, load_in_4bit, trust_remote_code, gradient_checkpointing."""
    from stackllama_cli.models.load import load_causal_lm

    check_causal_lm(spec, command)
    inner = spec.merged_adapters + ((spec.adapter,) if spec.adapter else ())
    base_spec = dataclasses.replace(spec, adapter=None, merged_adapters=inner)
    model = load_causal_lm(base_spec, precision=cfg.precision, load_in_8bit=cfg.load_in_8bit,
                           load_in_4bit=cfg.load_in_4bit, trust_remote_code=cfg.trust_remote_code)
    if cfg.load_in_8bit or cfg.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    model.config.use_cache = False
    return model


def resumed_step(checkpoint: str | None) -> int:
    """The global step of a Trainer checkpoint directory (`checkpoint-N`), 0 for none."""
    return int(str(checkpoint).rstrip("/").rsplit("-", 1)[-1]) if checkpoint else 0
