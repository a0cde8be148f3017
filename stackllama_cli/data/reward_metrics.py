"""Pure reward-model metrics over preference pairs (j preferred to k)."""

from __future__ import annotations

import math
from typing import Sequence


def pair_accuracy(rewards_j: Sequence[float], rewards_k: Sequence[float]) -> float:
    """Share of pairs where the preferred answer gets the strictly higher reward."""
    if not rewards_j:
        return float("nan")
    return sum(rj > rk for rj, rk in zip(rewards_j, rewards_k)) / len(rewards_j)


def mean_margin(rewards_j: Sequence[float], rewards_k: Sequence[float]) -> float:
    if not rewards_j:
        return float("nan")
    return sum(rj - rk for rj, rk in zip(rewards_j, rewards_k)) / len(rewards_j)


def length_rule_accuracy(lengths_j: Sequence[int], lengths_k: Sequence[int]) -> float:
    """Accuracy of the trivial rule "the longer answer wins"; equal lengths count as a coin flip (0.5)."""
    if not lengths_j:
        return float("nan")
    score = sum(1.0 if lj > lk else 0.5 if lj == lk else 0.0 for lj, lk in zip(lengths_j, lengths_k))
    return score / len(lengths_j)


def gap_bucket(score_j: int, score_k: int) -> str:
    gap = abs(score_j - score_k)
    return "3+" if gap >= 3 else str(gap)


def accuracy_by_gap(rewards_j: Sequence[float], rewards_k: Sequence[float], scores_j: Sequence[int],
                    scores_k: Sequence[int]) -> dict[str, dict[str, float]]:
    """Accuracy and pair count per |score_j - score_k| bucket: '1', '2', '3+'."""
    buckets: dict[str, list[bool]] = {}
    for rj, rk, sj, sk in zip(rewards_j, rewards_k, scores_j, scores_k):
        buckets.setdefault(gap_bucket(sj, sk), []).append(rj > rk)
    return {name: {"accuracy": sum(hits) / len(hits), "pairs": len(hits)}
            for name, hits in sorted(buckets.items(), key=lambda kv: kv[0])}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Population mean and standard deviation."""
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
