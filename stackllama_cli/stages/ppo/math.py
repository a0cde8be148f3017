"""PPO math as pure tensor functions (no model, no I/O). Shapes: B = batch, T = response tokens.

`mask` is 1.0 on response tokens the policy sampled freely (up to and including the
first EOS) and 0.0 elsewhere (padding after EOS): masked tokens carry no KL, no reward
and no loss. This is what keeps the KL estimate from going negative on tokens the
policy never chose (the README's PPO table: negative KL in the original).
"""

from __future__ import annotations

import torch


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over positions where mask == 1 ([B, T] -> scalar, or [B] with dim=1)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over masked positions (Bessel-corrected by default)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over masked positions; masked-out positions are returned as 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


# Rows of the [N, V] logits handled at once: 64 x 49k-vocab fp32 = 12.6 MiB per temporary.
CHUNK_ROWS = 64


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature in float32 (no copy when already float32 at temperature 1)."""
    logits = logits.float()
    return logits if temperature == 1.0 else logits / temperature


def row_blocks(logits: torch.Tensor, chunk: int = CHUNK_ROWS) -> list[torch.Tensor]:
    """logits [..., V] as views of at most `chunk` rows [n, V], in row-major order. No copy: a slice such as
    the response positions of [B, P + T, V] cannot be flattened to [B * T, V] without one."""
    if logits.dim() <= 2:
        return list(logits.split(chunk)) if logits.dim() == 2 else [logits.unsqueeze(0)]
    return [block for sub in logits.unbind(0) for block in row_blocks(sub, chunk)]


def logsumexp_rows(logits: torch.Tensor, temperature: float = 1.0, chunk: int = CHUNK_ROWS) -> torch.Tensor:
    """logsumexp over the vocabulary of logits / temperature: [..., V] -> [...] (float32), computed over
    blocks of rows so that no float32 copy of the whole tensor exists at once (in a no-grad pass)."""
    out = [torch.logsumexp(_scaled(rows, temperature), dim=-1) for rows in row_blocks(logits, chunk)]
    return torch.cat(out).view(logits.shape[:-1]) if out else logits.new_zeros(logits.shape[:-1], dtype=torch.float)


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(token) per position under softmax(logits / temperature), the distribution sampling drew
    from (rollout.py): logits [B, T, V], tokens [B, T] -> [B, T] (float32).

    log_softmax(z)[token] = z[token] - logsumexp(z): the sampled token's logit less a logsumexp taken
    over chunks of positions, never the [B, T, V] log-softmax (tests/unit/test_ppo_math.py checks it
    against that formula).
    """
    picked = _scaled(torch.gather(logits, -1, tokens.unsqueeze(-1)).squeeze(-1), temperature)
    return picked - logsumexp_rows(logits, temperature)


def logprobs_and_entropy(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0,
                         chunk: int = CHUNK_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """logprobs_from_logits and entropy_from_logits in one pass over chunks of rows (for no-grad passes):
    logits [B, T, V], tokens [B, T] -> (log-probs [B, T], entropy [B, T]), float32."""
    logp, entropy, done = [], [], 0
    picked = tokens.reshape(-1)
    for rows in row_blocks(logits, chunk):
        ids, done = picked[done : done + rows.shape[0]], done + rows.shape[0]
        z = _scaled(rows, temperature)
        lse = torch.logsumexp(z, dim=-1)
        logp.append(z.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - lse)
        entropy.append(lse - (torch.softmax(z, dim=-1) * z).sum(-1))
    if not logp:
        empty = logits.new_zeros(tokens.shape, dtype=torch.float)
        return empty, empty.clone()
    return torch.cat(logp).view(tokens.shape), torch.cat(entropy).view(tokens.shape)


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of softmax(logits / temperature) at each position: [B, T, V] -> [B, T]."""
    return logprobs_and_entropy(logits, torch.zeros(logits.shape[:-1], dtype=torch.long, device=logits.device),
                                temperature)[1]


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || ref) from log-probs of tokens sampled from the policy.

    k1 = logp - ref_logp (unbiased, can be negative per token);
    k2 = (logp - ref_logp)^2 / 2 (biased, >= 0; its gradient is that of KL's first-order expansion);
    k3 = (r - 1) - log r with r = p_ref / p (unbiased, always >= 0; Schulman 2020);
    abs = |logp - ref_logp| (biased, >= 0).
    """
    log_ratio = logp - ref_logp
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    if kind == "abs":
        return log_ratio.abs()
    raise ValueError(f"unknown KL estimator {kind!r} (k1, k2, k3 or abs)")


def kl_loss(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, kind: str = "k3",
            max_log_ratio: float = 10.0) -> torch.Tensor:
    """KL to the reference as a loss term (--kl-in-loss): the mean k2 or k3 estimate over response tokens.

    logp (with gradient), ref_logp, mask [B, T] -> scalar. The log ratio is clamped to +-max_log_ratio
    so one token the policy has all but abandoned cannot blow k3's exponential up.
    """
    log_ratio = (logp - ref_logp.detach()).clamp(-max_log_ratio, max_log_ratio)
    return masked_mean(kl_estimate(log_ratio, torch.zeros_like(log_ratio), kind), mask)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last masked-in position per row: [B, T] -> [B] (0 for an all-zero row)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return (positions * (mask > 0)).max(dim=1).values


def per_token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """-beta * kl_t on every response token, plus the sequence score on its last real token.

    scores [B], kl [B, T], mask [B, T] -> rewards [B, T] (0 where mask == 0).
    """
    rewards = -beta * kl * mask
    rows = torch.arange(scores.shape[0], device=scores.device)
    rewards[rows, last_token_index(mask)] += scores.to(rewards.dtype)
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over masked sequences.

    rewards, values, mask [B, T] -> (advantages, returns) [B, T]. The value after the
    last real token is 0 (the episode ends there); masked positions get 0 advantage.
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    T = rewards.shape[1]
    for t in reversed(range(T)):
        next_mask = mask[:, t + 1] if t + 1 < T else torch.zeros_like(mask[:, 0])
        next_value = values[:, t + 1] * next_mask if t + 1 < T else torch.zeros_like(values[:, 0])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * next_mask * last
        advantages[:, t] = last
    advantages = advantages * mask
    returns = (advantages + values) * mask
    return advantages, returns


def score_stats(scores: torch.Tensor) -> dict[str, float]:
    """Mean and (population) standard deviation of raw reward-model scores [N], for --reward-norm."""
    scores = scores.float()
    return {"mean": float(scores.mean()), "std": float(scores.std(unbiased=False)), "samples": int(scores.numel())}


def normalise_scores(raw: torch.Tensor, stats: dict | None, baseline: float = 0.0) -> torch.Tensor:
    """(raw - mean) / std - baseline, or raw - baseline without stats: [B] -> [B]."""
    if stats is None:
        return raw - baseline
    return (raw - stats["mean"]) / max(stats["std"], 1e-6) - baseline


def value_head_from_score_head(weight: torch.Tensor, bias: torch.Tensor | None, stats: dict | None,
                               baseline: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A value head predicting the shaped score (normalise_scores) from what a reward model's score head
    predicts raw: weight [1, H], bias [1] or None -> (weight [1, H], bias [1]), the same affine map."""
    mean, std = (stats["mean"], max(stats["std"], 1e-6)) if stats else (0.0, 1.0)
    bias = torch.zeros(1) if bias is None else bias.detach().float().cpu()
    return weight.detach().float().cpu() / std, (bias - mean) / std - baseline


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                cliprange: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate objective (to minimise) and its diagnostics; all [B, T] inputs."""
    log_ratio = (logp - old_logp) * mask
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    stats = {"clipfrac": masked_mean((clipped > unclipped).float(), mask),
             "approx_kl": 0.5 * masked_mean(log_ratio**2, mask),
             "ratio": masked_mean(ratio, mask)}
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss 0.5 * max((v - R)^2, (clip(v) - R)^2) and the clipped fraction."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    losses = (values - returns) ** 2
    losses_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(losses, losses_clipped), mask)
    return loss, masked_mean((losses_clipped > losses).float(), mask)


class FixedKLController:
    """A constant KL coefficient beta."""

    def __init__(self, value: float):
        self.value = float(value)

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Ziegler et al. 2019: e = clip(KL / target - 1, -0.2, 0.2); beta *= 1 + e * n_steps / horizon.

    `n_steps` is the number of samples in the batch across all processes.
    """

    def __init__(self, init_value: float, target: float, horizon: int):
        super().__init__(init_value)
        self.target, self.horizon = float(target), int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
