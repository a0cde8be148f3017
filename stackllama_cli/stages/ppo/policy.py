"""The PPO policy: a causal LM with a trainable LoRA adapter and a scalar value head.

One forward pass gives both the response logits and the values, and it runs through
this module's `forward` so DDP (accelerate) sees it. The reference policy is the same
weights with the adapter disabled: one base in memory, not two.
"""

from __future__ import annotations

import contextlib
import dataclasses

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

    def _decoder_and_head(self):
        lm = self.policy.get_base_model()
        return lm.get_decoder(), lm.get_output_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int,
                with_values: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits predicting each response token, and the value at each response position.

        input_ids, attention_mask [B, P + T] (left-padded prompts of length P, then T response
        tokens) -> logits [B, T, V] (fp32), values [B, T] (fp32) or None.
        """
        decoder, lm_head = self._decoder_and_head()
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=False).last_hidden_state
        # the token at position i is predicted from hidden state i - 1
        hidden = hidden[:, response_start - 1 : -1]
        logits = lm_head(hidden).float()
        values = self.value_head(hidden.float()).squeeze(-1) if with_values else None
        return logits, values

    @contextlib.contextmanager
    def reference(self):
        """The frozen SFT model: the same weights with the LoRA adapter disabled."""
        with self.policy.disable_adapter():
            yield self


def build_policy(cfg, spec) -> PolicyWithValueHead:
    """SFT weights (adapters merged) + a fresh trainable LoRA adapter, wrapped with a value head."""
    from peft import get_peft_model

    from stackllama_cli.models.load import load_causal_lm
    from stackllama_cli.stages.common import lora_config

    inner = spec.merged_adapters + ((spec.adapter,) if spec.adapter else ())
    base_spec = dataclasses.replace(spec, adapter=None, merged_adapters=inner)
    lm = load_causal_lm(base_spec, precision=cfg.precision, load_in_8bit=cfg.load_in_8bit,
                        load_in_4bit=cfg.load_in_4bit, trust_remote_code=cfg.trust_remote_code)
    if cfg.load_in_8bit or cfg.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        lm = prepare_model_for_kbit_training(lm, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lm.enable_input_require_grads()
    torch.manual_seed(cfg.seed)
    policy = get_peft_model(lm, lora_config(cfg, "CAUSAL_LM"))
    return PolicyWithValueHead(policy, lm.config.get_text_config().hidden_size, seed=cfg.seed)
