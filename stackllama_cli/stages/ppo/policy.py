"""The PPO policy: a causal LM with a trainable LoRA adapter and a scalar value head.

One forward pass gives both the response logits and the values, and it runs through
this module's `forward` so DDP (accelerate) sees it. The reference policy is the same
weights with the adapter disabled: one base in memory, not two.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect

import torch
from torch import nn


class PolicyWithValueHead(nn.Module):
    def __init__(self, policy, hidden_size: int, seed: int = 0):
        super().__init__()
        self.policy = policy  # a peft PeftModel around the causal LM
        self.value_head = nn.Linear(hidden_size, 1)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # small init: early values near 0, like TRL's ValueHead
            self.value_head.weight.normal_(0.0, 1.0 / (hidden_size + 1), generator=generator)
            self.value_head.bias.zero_()
        lm = self.causal_lm()
        # A quantised model is placed on its device when it loads, and accelerate leaves it (and so this
        # module) where it is (loop.py): the head goes where the hidden states it reads will be.
        self.value_head.to(lm.get_output_embeddings().weight.device)
        self._keeps_logits = "logits_to_keep" in inspect.signature(lm.forward).parameters

    def causal_lm(self):
        """The transformers model under the peft wrapper."""
        return self.policy.get_base_model() if hasattr(self.policy, "get_base_model") else self.policy

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int,
                with_values: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits predicting each response token, and the value at each response position.

        input_ids, attention_mask [B, P + T] (left-padded prompts of length P, then T response
        tokens) -> logits [B, T, V] (fp32), values [B, T] (fp32) or None.

        The logits come from the model's own forward, so whatever it does after lm_head (Gemma's
        soft-capping, Cohere's logit_scale, Granite's logits_scaling) is in them, exactly as in
        generate(). The values read the decoder's last hidden state, caught with a hook rather than
        output_hidden_states, which would keep every layer's states alive in the no-grad passes.
        """
        T = input_ids.shape[1] - response_start
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = []
        hook = self.causal_lm().get_decoder().register_forward_hook(lambda mod, args, out: hidden.append(out[0]))
        try:
            # the token at position i is predicted from position i - 1: the last T + 1 positions, less the last
            keep = {"logits_to_keep": T + 1} if self._keeps_logits else {}
            out = self.policy(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              use_cache=False, **keep)
        finally:
            hook.remove()
        logits = out.logits[:, -(T + 1) : -1].float()
        values = None
        if with_values:
            values = self.value_head(hidden[-1][:, response_start - 1 : -1].float()).squeeze(-1)
        return logits, values

    @contextlib.contextmanager
    def reference(self):
        """The frozen SFT model: the same weights with the LoRA adapter disabled."""
        with self.policy.disable_adapter():
            yield self


def save_adapter(policy, directory) -> None:
    """The LoRA adapter as peft saves it, from the trainable tensors alone: left to itself peft reads the whole
    model's state_dict, and bitsandbytes' 4-bit layers on a CPU answer that by unpacking their weights in place
    (lossily: a saved run would no longer compute what a resumed one does)."""
    state = {name: p.detach() for name, p in policy.named_parameters() if p.requires_grad}
    policy.save_pretrained(directory, state_dict=state, safe_serialization=True)


def disable_dropout(model: nn.Module) -> None:
    """Dropout off everywhere (the model's and LoRA's): PPO's ratio compares the update's forward with the
    rollout's, and with dropout in one of them the first mini-batch's ratio is already not 1."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):  # attention's functional dropout
            module.attention_dropout = 0.0


def build_policy(cfg, spec) -> PolicyWithValueHead:
    """SFT weights (adapters merged) + a fresh trainable LoRA adapter, wrapped with a value head."""
    from peft import get_peft_model

    from stackllama_cli.models.load import load_causal_lm
    from stackllama_cli.stages.common import lora_config

    inner = spec.merged_adapters + ((spec.adapter,) if spec.adapter else ())
    base_spec = dataclasses.replace(spec, adapter=None, merged_adapters=inner)
    lm = load_causal_lm(base_spec, precision=cfg.precision, load_in_8bit=cfg.load_in_8bit,
                        load_in_4bit=cfg.load_in_4bit, trust_remote_code=cfg.trust_remote_code,
                        attn_implementation=cfg.attn_implementation)
    if cfg.load_in_8bit or cfg.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        lm = prepare_model_for_kbit_training(lm, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lm.enable_input_require_grads()
    torch.manual_seed(cfg.seed)
    policy = get_peft_model(lm, lora_config(cfg, "CAUSAL_LM", lm))
    disable_dropout(policy)
    return PolicyWithValueHead(policy, lm.config.get_text_config().hidden_size, seed=cfg.seed)
