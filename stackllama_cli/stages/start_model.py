"""The model a policy stage starts from: the SFT weights with every adapter merged in, ready for the fresh LoRA
adapter the stage adds (dpo and rloo through TRL's peft_config, ppo in stages/ppo/policy.py). The reference
each of them uses is then this model with the adapter disabled - one set of weights in memory."""

from __future__ import annotations

import dataclasses


def load_policy_base(cfg, spec, cpu_bf16: bool = False):
    """SFT weights (adapters merged, innermost first), loaded as --precision, --attn-implementation and the
    quantisation options ask; k-bit preparation when quantised. `cpu_bf16`: models/load.py:resolve_precision.

    `cfg` has precision, load_in_8bit, load_in_4bit, trust_remote_code, attn_implementation, gradient_checkpointing."""
    from stackllama_cli.models.load import load_causal_lm

    inner = spec.merged_adapters + ((spec.adapter,) if spec.adapter else ())
    base_spec = dataclasses.replace(spec, adapter=None, merged_adapters=inner)
    model = load_causal_lm(base_spec, precision=cfg.precision, load_in_8bit=cfg.load_in_8bit,
                           load_in_4bit=cfg.load_in_4bit, trust_remote_code=cfg.trust_remote_code,
                           attn_implementation=cfg.attn_implementation, cpu_bf16=cpu_bf16)
    if cfg.load_in_8bit or cfg.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return model


def load_start_model(cfg, spec):
    """dpo's and rloo's start model (`load_policy_base`), with no KV cache in training."""
    model = load_policy_base(cfg, spec)
    model.config.use_cache = False
    return model
