"""Once, before step 1 of a fresh run: the reward's scale (--reward-norm) and the value head's start
(--value-init). A resumed run takes both from its checkpoint instead (checkpoint.py)."""

from __future__ import annotations

import torch

from stackllama_cli.core.console import info
from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.data.prompt_format import RECIPE
from stackllama_cli.stages.ppo import math as pm
from stackllama_cli.stages.ppo.batches import prompt_batch, response_length, step_seed
from stackllama_cli.stages.ppo.config import PpoConfig
from stackllama_cli.stages.ppo.reward import score


def reward_stats(cfg: PpoConfig, accelerator, inner, tokenizer, prompts: list[str], reward_model, rm_tokenizer,
                 file_stats: dict | None, fmt=RECIPE, rm_fmt=RECIPE, stop_ids: list[int] | None = None
                 ) -> dict | None:
    """Mean/std the raw scores are standardised with: none; train-rm's reward_stats.json (stats); or the
    reward model's scores of the SFT policy's own responses (policy), measured here."""
    if cfg.reward_norm == "none":
        return None
    if cfg.reward_norm == "stats":
        return {"mean": float(file_stats["mean"]), "std": float(file_stats["std"])}
    # The adapter is fresh (LoRA's B starts at zero), so the policy is still exactly the SFT model.
    # Its own seeds and prompt order: negative step numbers, which no PPO step uses.
    world, rank = accelerator.num_processes, accelerator.process_index
    inner.eval()
    raw = []
    for b in range(cfg.reward_norm_batches):
        torch.manual_seed(step_seed(cfg, -1 - b, rank))
        questions = prompt_batch(prompts, b, cfg.batch_size, world, rank, f"{cfg.seed}:reward-norm")
        rollout = inner.sample(tokenizer, questions, [fmt.prompt(q) for q in questions], response_length(cfg, -1 - b),
                               cfg.top_k, cfg.top_p, cfg.temperature, stop_ids)
        raw.append(score(reward_model, rm_tokenizer, questions, rollout.texts, cfg.rm_max_length, rm_fmt))
    stats = pm.score_stats(accelerator.gather_for_metrics(torch.cat(raw)))
    if stats["std"] < 1e-6:
        raise StackLlamaError(f"the reward model gave all {stats['samples']} SFT responses the same score "
                              f"({stats['mean']:.4g}): --reward-norm policy has nothing to scale by")
    info(f"Reward scale from {stats['samples']} SFT responses: mean {stats['mean']:+.4f}, std {stats['std']:.4f}")
    return stats


def score_head(reward_model):
    """The reward model's one-output linear head (`score` in transformers' *ForSequenceClassification)."""
    model = reward_model.get_base_model() if hasattr(reward_model, "get_base_model") else reward_model
    head = getattr(model, "score", None) or getattr(model, "classifier", None)
    return head if isinstance(head, torch.nn.Linear) and head.out_features == 1 else None


def init_value_head(value_head: torch.nn.Linear, reward_model, stats: dict | None, baseline: float) -> None:
    """--value-init reward-model: the value head starts as the reward model's score head, mapped to the
    shaped score's scale (math.value_head_from_score_head)."""
    head = score_head(reward_model)
    if head is None:
        raise StackLlamaError("--value-init reward-model: the reward model has no one-output linear score head; "
                              "use --value-init random")
    if head.in_features != value_head.in_features:
        raise StackLlamaError(f"--value-init reward-model: the reward model's hidden size is {head.in_features}, "
                              f"the policy's {value_head.in_features}; use --value-init random")
    weight, bias = pm.value_head_from_score_head(head.weight, head.bias, stats, baseline)
    with torch.no_grad():
        value_head.weight.copy_(weight)
        value_head.bias.copy_(bias)
