"""Rollouts: sample responses from the policy and build exact response masks."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Rollout:
    """One batch of experience. P = prompt length (left-padded), T = response length."""

    questions: list[str]
    query_ids: torch.Tensor  # [B, P]
    query_mask: torch.Tensor  # [B, P]
    response_ids: torch.Tensor  # [B, T]
    response_mask: torch.Tensor  # [B, T] float: 1 up to and including the first EOS
    texts: list[str]  # decoded responses (up to EOS)
    finished: torch.Tensor  # [B] bool: ended with EOS (vs cut at max_new_tokens)

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.query_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.response_mask.long()], dim=1)


def response_mask(response_ids: torch.Tensor, eos_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """1.0 on tokens up to and including the first EOS, 0.0 after it (padding the policy never chose).

    response_ids [B, T] -> (mask [B, T] float, finished [B] bool).
    """
    is_eos = response_ids == eos_token_id
    finished = is_eos.any(dim=1)
    # number of EOS strictly before each position: 0 up to and including the first EOS
    eos_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    return (eos_before == 0).float(), finished


def sampling_kwargs(tokenizer, max_new_tokens: int, top_k: int, top_p: float, temperature: float) -> dict:
    """A fresh GenerationConfig: nothing inherited from the model (no min length, no suppressed or forced tokens).

    With top_k=0, top_p=1 and temperature 1 the sampled tokens come from exactly the
    distribution whose log-probs PPO uses.
    """
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=True, max_new_tokens=max_new_tokens, top_k=top_k, top_p=top_p,
                              temperature=temperature, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id, bos_token_id=None, use_cache=True)
    return {"generation_config": config}


@torch.no_grad()
def generate(policy_lm, tokenizer, questions: list[str], prompts: list[str], max_new_tokens: int, top_k: int = 0,
             top_p: float = 1.0, temperature: float = 1.0) -> Rollout:
    """Sample one response per prompt (left padding, so generation starts at the same column)."""
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True).to(policy_lm.device)
    out = policy_lm.generate(**enc, **sampling_kwargs(tokenizer, max_new_tokens, top_k, top_p, temperature))
    response_ids = out[:, enc["input_ids"].shape[1]:]
    mask, finished = response_mask(response_ids, tokenizer.eos_token_id)
    texts = []
    for ids, m in zip(response_ids, mask):
        real = ids[: int(m.sum())].tolist()
        if real and real[-1] == tokenizer.eos_token_id:
            real = real[:-1]
        texts.append(tokenizer.decode(real, skip_special_tokens=True))
    return Rollout(questions, enc["input_ids"], enc["attention_mask"], response_ids, mask, texts, finished)
