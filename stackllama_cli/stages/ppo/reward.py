"""The reward side of PPO: load the reward model, score responses exactly as train-rm trained on them,
and shape raw scores into the PPO reward (normalisation, baseline, clipping, degenerate and missing-EOS
penalties)."""

from __future__ import annotations

import torch

from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.data.prompt_format import RECIPE
from stackllama_cli.data.prompts import reward_batch
from stackllama_cli.stages.ppo import math as pm
from stackllama_cli.stages.ppo.config import PpoConfig


def load_reward(cfg: PpoConfig, device):
    from stackllama_cli.models.load import load_reward_model, load_reward_stats, load_tokenizer
    from stackllama_cli.models.resolve import resolve_model

    spec = resolve_model(cfg.reward_model)
    tokenizer = load_tokenizer(spec, trust_remote_code=cfg.trust_remote_code)
    # bf16 on an AMX CPU with --precision auto, like the policy (models/load.py:resolve_precision): a
    # no-grad forward, which bf16 makes 2x faster there
    model = load_reward_model(spec, precision=cfg.precision, trust_remote_code=cfg.trust_remote_code,
                              pad_token_id=tokenizer.pad_token_id, attn_implementation=cfg.attn_implementation,
                              cpu_bf16=True)
    stats = load_reward_stats(spec)
    if cfg.reward_norm == "stats" and not (stats and stats.get("std")):
        raise StackLlamaError(f"--reward-norm stats (--normalize-reward) needs reward_stats.json beside "
                              f"{cfg.reward_model} (written by train-rm)")
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device), tokenizer, stats


@torch.no_grad()
def score(reward_model, rm_tokenizer, questions: list[str], responses: list[str], max_length: int | None = None,
          fmt=RECIPE) -> torch.Tensor:
    """Raw reward-model scores [B] for question + response texts in the reward model's prompt format `fmt`, read
    as in train-rm (question cut first, then the response's end, EOS last: `prompts.reward_inputs`)."""
    enc = reward_batch(rm_tokenizer, list(questions), list(responses), max_length, fmt.example).to(reward_model.device)
    return reward_model(**enc).logits[:, 0].float()


def shape_scores(raw: torch.Tensor, cfg: PpoConfig, stats: dict | None, degenerate: torch.Tensor,
                 finished: torch.Tensor) -> torch.Tensor:
    """RM score -> PPO reward, all [B]: standardised with `stats` (--reward-norm) when given, minus the
    baseline, clipped, minus --degenerate-penalty for degenerate responses and --missing-eos-penalty
    for responses cut at the length limit before their EOS."""
    scores = pm.normalise_scores(raw, stats, cfg.reward_baseline)
    if cfg.reward_clip > 0:
        scores = scores.clamp(-cfg.reward_clip, cfg.reward_clip)
    scores = scores - cfg.degenerate_penalty * degenerate.float()
    return scores - cfg.missing_eos_penalty * (~finished.bool()).float()
