"""The PPO policy: a causal LM with a trainable LoRA adapter and a scalar value head.

One forward pass gives both the response logits and the values, and it runs through
this module's `forward` so DDP (accelerate) sees it. The reference policy is the same
weights with the adapter disabled: one base in memory, not two.

A bf16 base keeps its frozen weights bf16 and the LoRA weights and the value head float32 (peft
upcasts adapters). On a CPU (--precision bf16, or auto with AMX: models/load.py:resolve_precision) a
forward runs under bf16 autocast, so the adapter computes in bf16 from its float32 master weights,
the values come from a float32 head outside it, and two slow paths of bf16 on a CPU are avoided
(`cpu_bf16_fixes`).
"""

from __future__ import annotations

import contextlib
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
        weight = lm.get_output_embeddings().weight
        # a bf16 base on a CPU (not a quantised one: bitsandbytes has its own compute dtype), where bf16 was
        # measured (models/load.py:resolve_precision); on a GPU a bf16 base runs as before
        self._autocast = weight.dtype == torch.bfloat16 and weight.device.type == "cpu" and \
            not getattr(lm, "is_quantized", False)
        if self._autocast:
            cpu_bf16_fixes(lm)

    def causal_lm(self):
        """The transformers model under the peft wrapper."""
        return self.policy.get_base_model() if hasattr(self.policy, "get_base_model") else self.policy

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int,
                with_values: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits predicting each response token, and the value at each response position.

        input_ids, attention_mask [B, P + T] (left-padded prompts of length P, then T response
        tokens) -> logits [B, T, V] (the model's dtype: math.py reads them in float32), values [B, T]
        (float32) or None.

        The logits come from the model's own forward, so whatever it does after lm_head (Gemma's
        soft-capping, Cohere's logit_scale, Granite's logits_scaling) is in them, exactly as in
        generate(). The values read the decoder's last hidden state, caught with a hook rather than
        output_hidden_states, which would keep every layer's states alive in the no-grad passes.
        """
        # Leading columns that no row attends to (left padding common to the whole batch) change nothing
        # but the cost: positions come from the attention mask, and the response stays the last T columns.
        first = int(attention_mask.any(0).int().argmax()) if response_start > 1 else 0
        first = min(first, response_start - 1)
        if first:
            input_ids, attention_mask, response_start = input_ids[:, first:], attention_mask[:, first:], \
                response_start - first
        T = input_ids.shape[1] - response_start
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = []
        hook = self.causal_lm().get_decoder().register_forward_hook(lambda mod, args, out: hidden.append(out[0]))
        try:
            # the token at position i is predicted from position i - 1: the last T + 1 positions, less the last
            keep = {"logits_to_keep": T + 1} if self._keeps_logits else {}
            with self.mixed_precision():
                out = self.policy(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  use_cache=False, **keep)
        finally:
            hook.remove()
        logits = out.logits[:, -(T + 1) : -1]
        values = None
        if with_values:
            values = self.value_head(hidden[-1][:, response_start - 1 : -1].float()).squeeze(-1)
        return logits, values

    @contextlib.contextmanager
    def mixed_precision(self):
        """bf16 autocast over a bf16 base, with peft's cast of each adapter's input to its float32 weights
        turned off: the adapter then computes in bf16 too, its gradients reaching the float32 masters."""
        if not self._autocast:
            yield
            return
        from peft.helpers import disable_input_dtype_casting

        device = self.value_head.weight.device.type
        with torch.autocast(device, dtype=torch.bfloat16), disable_input_dtype_casting(self.policy):
            yield

    def sample(self, tokenizer, questions: list[str], prompts: list[str], *args, **kwargs):
        """rollout.generate with the policy (adapter on), under the autocast `forward` uses: the tokens are drawn
        from the distribution the update computes (in bf16, up to its rounding)."""
        from stackllama_cli.stages.ppo.rollout import generate

        with self.mixed_precision():
            return generate(self.policy, tokenizer, questions, prompts, *args, **kwargs)

    @contextlib.contextmanager
    def reference(self):
        """The frozen SFT model: the same weights with the LoRA adapter disabled."""
        with self.policy.disable_adapter():
            yield self


CPU_BF16_ATTENTION = "stackllama_sdpa_float32"


def _sdpa_float32(module, query, key, value, attention_mask, scaling=None, dropout=0.0, is_causal=None, **kwargs):
    """sdpa with query, key and value in float32 and the key/value heads shared without copies (GQA), for a bf16
    model on a CPU. torch 2.13's sdpa backward in bf16 on a CPU is 2-3x slower than in float32 (one layer,
    batch 4 x 164 tokens: 31 ms in bf16, 12-15 ms in float32; SmolLM2's whole forward + backward of two
    mini-batches of 4: 2.7 s with transformers' sdpa in bf16, 1.9 s with this). float32 scores also keep
    log-probs nearer the float32 model's (a heavily padded row: 0.055 nats a token from float32's on
    average, 0.13 with bf16 score matmuls).

    query [B, H, Lq, D], key and value [B, Hkv, Lk, D], attention_mask boolean (transformers' sdpa mask) or None
    -> ([B, Lq, H, D] in query's dtype, None).
    """
    if any(kwargs.get(k) is not None for k in ("softcap", "s_aux", "position_bias")):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        with torch.autocast(query.device.type, enabled=False):
            out, _ = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask,
                                            dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs)
        return out.to(query.dtype), None
    causal = attention_mask is None and query.shape[2] > 1 and (is_causal if is_causal is not None else
                                                                getattr(module, "is_causal", True))
    with torch.autocast(query.device.type, enabled=False):  # autocast would send sdpa back to bf16
        out = nn.functional.scaled_dot_product_attention(
            query.float(), key.float(), value.float(), attn_mask=attention_mask, is_causal=causal, scale=scaling,
            dropout_p=dropout if module.training else 0.0, enable_gqa=query.shape[1] != key.shape[1])
    return out.transpose(1, 2).contiguous().to(query.dtype), None


def cpu_bf16_fixes(lm) -> None:
    """Two slow paths of bf16 on a CPU, avoided (measured on SmolLM2-135M, torch 2.13):

    - a bf16 linear layer given a non-contiguous 3-D input (the `logits_to_keep` slice of the hidden
      states that lm_head reads) runs as a batched matmul against a copy of the whole weight per row:
      2.8 s of a 5.2 s forward. lm_head's input is made contiguous first.
    - sdpa attention in bf16 (see `_sdpa_float32`): attention runs in float32 instead, registered with
      transformers under CPU_BF16_ATTENTION with sdpa's mask. Every forward of the policy uses it, sampling
      included.
    """
    lm.get_output_embeddings().register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))
    if getattr(lm.config, "_attn_implementation", None) == "sdpa":
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(CPU_BF16_ATTENTION, _sdpa_float32)
        AttentionMaskInterface.register(CPU_BF16_ATTENTION, sdpa_mask)
        lm.set_attn_implementation(CPU_BF16_ATTENTION)


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

    from stackllama_cli.stages.common import lora_config
    from stackllama_cli.stages.start_model import load_policy_base

    lm = load_policy_base(cfg, spec, cpu_bf16=True)
    if cfg.gradient_checkpointing and not (cfg.load_in_8bit or cfg.load_in_4bit):  # k-bit preparation did it
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lm.enable_input_require_grads()
    torch.manual_seed(cfg.seed)
    policy = get_peft_model(lm, lora_config(cfg, "CAUSAL_LM", lm))
    disable_dropout(policy)
    return PolicyWithValueHead(policy, lm.config.get_text_config().hidden_size, seed=cfg.seed)
