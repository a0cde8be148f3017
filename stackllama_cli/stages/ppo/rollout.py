"""Rollouts: sample responses from the policy and build exact response masks."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass
class Rollout:
    """One batch of experience. P = prompt length (left-padded), T = response length."""

    questions: list[str]
    query_ids: torch.Tensor  # [B, P]
    query_mask: torch.Tensor  # [B, P]
    response_ids: torch.Tensor  # [B, T]
    response_mask: torch.Tensor  # [B, T] float: 1 up to and including the first EOS (any of the stop ids)
    texts: list[str]  # decoded responses (up to EOS)
    finished: torch.Tensor  # [B] bool: ended with EOS (vs cut at max_new_tokens)

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.query_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.response_mask.long()], dim=1)


def response_mask(response_ids: torch.Tensor, eos_token_id: int | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """1.0 on tokens up to and including the first EOS, 0.0 after it (padding the policy never chose). Several
    ids may end a response (Llama-3's <|eot_id|> and <|end_of_text|>): the first of any of them does.

    response_ids [B, T] -> (mask [B, T] float, finished [B] bool).
    """
    is_eos = torch.isin(response_ids, torch.tensor(eos_token_id, device=response_ids.device).reshape(-1))
    finished = is_eos.any(dim=1)
    # number of EOS strictly before each position: 0 up to and including the first EOS
    eos_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    return (eos_before == 0).float(), finished


# Every logits processor transformers would build, set so that it does nothing. A field left at None
# would be filled from the model's generation_config (a penalty, a ban, a minimum length ...).
NEUTRAL_PROCESSING = dict(
    num_beams=1, num_return_sequences=1, repetition_penalty=1.0, encoder_repetition_penalty=1.0,
    no_repeat_ngram_size=0, encoder_no_repeat_ngram_size=0, min_length=0, min_new_tokens=None, typical_p=1.0,
    epsilon_cutoff=0.0, eta_cutoff=0.0, guidance_scale=1.0, renormalize_logits=False, remove_invalid_values=False,
    length_penalty=1.0, bad_words_ids=None, suppress_tokens=None, begin_suppress_tokens=None, sequence_bias=None,
    forced_bos_token_id=None, forced_eos_token_id=None, exponential_decay_length_penalty=None, min_p=None, top_h=None,
    watermarking_config=None, stop_strings=None,
)


def sampling_kwargs(tokenizer, max_new_tokens: int, top_k: int, top_p: float, temperature: float,
                    eos_token_ids: list[int] | None = None) -> dict:
    """A GenerationConfig that samples from softmax(logits / temperature), cut by top-k/top-p if asked.

    With top_k=0 and top_p=1 the sampled tokens come from exactly the distribution whose
    log-probs PPO uses (math.logprobs_from_logits at the same temperature). The None fields
    only stay None under `model_generation_defaults_off`.
    """
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=True, max_new_tokens=max_new_tokens, top_k=top_k, top_p=top_p,
                              temperature=temperature, eos_token_id=eos_token_ids or tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id, bos_token_id=None, use_cache=True,
                              **NEUTRAL_PROCESSING)
    return {"generation_config": config}


@contextlib.contextmanager
def model_generation_defaults_off(lm):
    """generate() fills every field of our config that is None from `model.generation_config`, and for
    several processors (banned words, suppressed tokens, forced tokens ...) None is the only "off": the
    model's config is swapped for a blank one while sampling, and put back."""
    from transformers import GenerationConfig

    model = lm.get_base_model() if hasattr(lm, "get_base_model") else lm  # peft copies it from there
    saved = model.generation_config
    model.generation_config = GenerationConfig()
    try:
        yield
    finally:
        model.generation_config = saved


@torch.no_grad()
def generate(policy_lm, tokenizer, questions: list[str], prompts: list[str], max_new_tokens: int, top_k: int = 0,
             top_p: float = 1.0, temperature: float = 1.0, eos_token_ids: list[int] | None = None) -> Rollout:
    """Sample one response per prompt (left padding, so generation starts at the same column); a response ends
    at the first of `eos_token_ids` (default: the tokenizer's EOS)."""
    eos_token_ids = eos_token_ids or [tokenizer.eos_token_id]
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True).to(policy_lm.device)
    with model_generation_defaults_off(policy_lm):
        out = policy_lm.generate(**enc, **sampling_kwargs(tokenizer, max_new_tokens, top_k, top_p, temperature,
                                                          eos_token_ids))
    response_ids = out[:, enc["input_ids"].shape[1]:]
    mask, finished = response_mask(response_ids, eos_token_ids)
    texts = []
    for ids, m in zip(response_ids, mask):
        real = ids[: int(m.sum())].tolist()
        if real and real[-1] in eos_token_ids:
            real = real[:-1]
        # the recipe's prompt ends at "Answer:" (data/prompts.py), so an answer starts with its own space
        texts.append(tokenizer.decode(real, skip_special_tokens=True).strip())
    return Rollout(questions, enc["input_ids"], enc["attention_mask"], response_ids, mask, texts, finished)
