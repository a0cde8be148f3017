"""Step 6 of a PPO step: the clipped policy and value losses optimised over mini-batches for a few epochs."""

from __future__ import annotations

import torch

from stackllama_cli.stages.ppo import math as pm
from stackllama_cli.stages.ppo.batches import step_seed
from stackllama_cli.stages.ppo.config import PpoConfig

STATS = ("pg_loss", "vf_loss", "kl_loss", "clipfrac", "vf_clipfrac", "approx_kl", "ratio")


def optimise(accelerator, module, optimizer, rollout, exp: dict, cfg: PpoConfig, step: int) -> dict:
    """Step 6: PPO epochs over shuffled mini-batches, one optimizer step per --grad-accum of them.

    An accumulation window never spans two epochs (config.py: the batch holds whole windows). A
    mini-batch whose mean ratio passes --ratio-threshold adds no gradient but keeps its place in its
    window. The first mini-batch that finds the policy more than 1.5 x --target-kl from the rollout's
    ends the epochs, and what its window had accumulated is dropped, never applied. During
    --critic-warmup only the value head steps.
    """
    # Dropout is off in the model (policy.py), so the update's forward is the one experience.py scored
    # the rollout with and the first mini-batch's ratio is exactly 1. Eval mode also turns off whatever
    # else a model does only in training (router noise, say), but transformers checkpoints activations only in
    # training mode.
    module.train(cfg.gradient_checkpointing)
    ids, attn, start, mask = rollout.input_ids, rollout.attention_mask, rollout.query_ids.shape[1], \
        rollout.response_mask
    warmup = step < cfg.critic_warmup
    value_head = {id(p) for p in accelerator.unwrap_model(module).value_head.parameters()}
    trainable = [p for p in module.parameters() if p.requires_grad]
    policy_params = [p for p in trainable if id(p) not in value_head]
    stats = {key: [] for key in STATS}
    skipped, epochs_done, steps, early_stopped = 0, 0, 0, False
    gen = torch.Generator().manual_seed(step_seed(cfg, step, 0))
    for _ in range(cfg.ppo_epochs):
        epochs_done += 1
        for i, idx in enumerate(torch.randperm(ids.shape[0], generator=gen).split(cfg.mini_batch_size)):
            logits, values = module(ids[idx], attn[idx], start)
            logp = pm.logprobs_from_logits(logits, rollout.response_ids[idx], cfg.temperature)
            pg, s = pm.policy_loss(logp, exp["logp"][idx], exp["advantages"][idx], mask[idx], cfg.cliprange)
            vf, vf_clip = pm.value_loss(values, exp["values"][idx], exp["returns"][idx], mask[idx],
                                        cfg.cliprange_value)
            kl = pm.kl_loss(logp, exp["ref_logp"][idx], mask[idx], cfg.kl_in_loss) if cfg.kl_in_loss != "none" \
                else torch.zeros((), device=logp.device)
            # the same decisions on every rank
            drift = accelerator.reduce(s["approx_kl"].detach(), "mean")
            if cfg.early_stopping and drift > 1.5 * cfg.target_kl:
                optimizer.zero_grad(set_to_none=True)
                early_stopped = True
                break
            if accelerator.reduce(s["ratio"].detach(), "mean") > cfg.ratio_threshold:
                skipped += 1
            else:
                # in warm-up the policy loss still runs backward (zero weight): every rank's DDP expects
                # gradients for every trainable parameter; the policy's are dropped before the step
                loss = (0.0 if warmup else 1.0) * pg + cfg.vf_coef * vf + cfg.kl_loss_coef * kl
                accelerator.backward(loss / cfg.grad_accum)
                for key, value in (("pg_loss", pg), ("vf_loss", vf), ("kl_loss", kl), ("vf_clipfrac", vf_clip),
                                   *s.items()):
                    stats[key].append(float(value.detach()))
            if (i + 1) % cfg.grad_accum == 0:
                if warmup:
                    for p in policy_params:
                        p.grad = None
                accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                steps += 1
        if early_stopped:
            break
    out = {k: sum(v) / len(v) if v else float("nan") for k, v in stats.items()}
    if cfg.kl_in_loss == "none":
        del out["kl_loss"]
    return {**out, "skipped_minibatches": skipped, "ppo_epochs_done": epochs_done, "optimizer_steps": steps,
            "early_stopped": early_stopped, "critic_warmup": warmup}
