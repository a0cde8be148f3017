"""Step 6 of a PPO step: the clipped policy and value losses optimised over mini-batches for a few epochs."""

from __future__ import annotations

import torch

from stackllama_cli.stages.ppo import math as pm
from stackllama_cli.stages.ppo.batches import step_seed
from stackllama_cli.stages.ppo.config import PpoConfig


def optimise(accelerator, module, optimizer, rollout, exp: dict, cfg: PpoConfig, step: int) -> dict:
    """Step 6: PPO epochs over shuffled mini-batches; skip runaway ratios; early stop on policy drift."""
    module.train()
    ids, attn, start, mask = rollout.input_ids, rollout.attention_mask, rollout.query_ids.shape[1], \
        rollout.response_mask
    B = ids.shape[0]
    stats = {"pg_loss": [], "vf_loss": [], "clipfrac": [], "vf_clipfrac": [], "approx_kl": [], "ratio": []}
    skipped, epochs_done, pending = 0, 0, 0
    gen = torch.Generator().manual_seed(step_seed(cfg, step, 0))
    for epoch in range(cfg.ppo_epochs):
        epoch_kl = []
        for idx in torch.randperm(B, generator=gen).split(cfg.mini_batch_size):
            logits, values = module(ids[idx], attn[idx], start)
            logp = pm.logprobs_from_logits(logits, rollout.response_ids[idx])
            pg, s = pm.policy_loss(logp, exp["logp"][idx], exp["advantages"][idx], mask[idx], cfg.cliprange)
            vf, vf_clip = pm.value_loss(values, exp["values"][idx], exp["returns"][idx], mask[idx],
                                        cfg.cliprange_value)
            ratio = accelerator.reduce(s["ratio"].detach(), "mean")  # the same decision on every rank
            if ratio > cfg.ratio_threshold:
                skipped += 1
                continue
            accelerator.backward((pg + cfg.vf_coef * vf) / cfg.grad_accum)
            pending += 1
            if pending == cfg.grad_accum:
                accelerator.clip_grad_norm_([p for p in module.parameters() if p.requires_grad], cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                pending = 0
            for key, value in (("pg_loss", pg), ("vf_loss", vf), ("vf_clipfrac", vf_clip), *s.items()):
                stats[key].append(float(value.detach()))
            epoch_kl.append(float(s["approx_kl"].detach()))
        epochs_done += 1
        drift = accelerator.reduce(torch.tensor(sum(epoch_kl) / max(len(epoch_kl), 1), device=ids.device), "mean")
        if cfg.early_stopping and drift > 1.5 * cfg.target_kl:
            break
    if pending:
        accelerator.clip_grad_norm_([p for p in module.parameters() if p.requires_grad], cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    out = {k: sum(v) / len(v) if v else float("nan") for k, v in stats.items()}
    return {**out, "skipped_minibatches": skipped, "ppo_epochs_done": epochs_done}
