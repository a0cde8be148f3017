"""Steps 3-5 of a PPO step: from a scored rollout to log-probs, values, per-token rewards and advantages."""

from __future__ import annotations

import torch

from stackllama_cli.stages.ppo import math as pm
from stackllama_cli.stages.ppo.config import PpoConfig


def experience(module, inner, rollout, scores, beta: float, cfg: PpoConfig) -> dict:
    """Steps 3-5: old log-probs and values, reference log-probs, per-token rewards, advantages."""
    ids, attn, start = rollout.input_ids, rollout.attention_mask, rollout.query_ids.shape[1]
    mask, temperature = rollout.response_mask, cfg.temperature
    # at the sampling temperature, like the rollout (rollout.py), so --temperature keeps PPO on-policy;
    # the reference is read at the same temperature, so the KL compares like with like
    with torch.no_grad():
        logits, values = module(ids, attn, start)
        logp, entropy = pm.logprobs_and_entropy(logits, rollout.response_ids, temperature)
        entropy = pm.masked_mean(entropy, mask)
        del logits
        with inner.reference():  # `module` may be the DDP wrapper; the adapter switch lives on the inner one
            ref_logits, _ = module(ids, attn, start, with_values=False)
        ref_logp = pm.logprobs_from_logits(ref_logits, rollout.response_ids, temperature)
        del ref_logits
    penalty_kl = pm.kl_estimate(logp, ref_logp, cfg.kl_estimator)
    rewards = pm.per_token_rewards(scores, penalty_kl, mask, beta)
    values = values * mask
    advantages, returns = pm.gae(rewards, values, mask, cfg.gamma, cfg.lam)
    if cfg.whiten_advantages:
        advantages = pm.masked_whiten(advantages, mask)
    return {"logp": logp, "ref_logp": ref_logp, "values": values, "advantages": advantages, "returns": returns,
            "entropy": entropy, "rewards": rewards}
