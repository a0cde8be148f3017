"""Pure reward-model metrics over preference pairs (j preferred to k): accuracy, the length rule,
accuracy on length-balanced pairs, 95% Wilson intervals, reward-length rank correlation, by score gap."""

from __future__ import annotations

import math
from typing import Sequence


def pair_hits(rewards_j: Sequence[float], rewards_k: Sequence[float]) -> list[float]:
    """1 where the preferred answer gets the higher reward, 0 where the lower, 0.5 for a tie (a coin flip, as in
    the length rule: a model that scores every text alike is at chance, not below it)."""
    return [1.0 if rj > rk else 0.5 if rj == rk else 0.0 for rj, rk in zip(rewards_j, rewards_k)]


def pair_accuracy(rewards_j: Sequence[float], rewards_k: Sequence[float]) -> float:
    """Share of pairs where the preferred answer gets the higher reward, ties counting half."""
    if not rewards_j:
        return float("nan")
    return sum(pair_hits(rewards_j, rewards_k)) / len(rewards_j)


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
    """Accuracy (ties half) and pair count per |score_j - score_k| bucket: '1', '2', '3+'."""
    buckets: dict[str, list[float]] = {}
    for hit, sj, sk in zip(pair_hits(rewards_j, rewards_k), scores_j, scores_k):
        buckets.setdefault(gap_bucket(sj, sk), []).append(hit)
    return {name: {"accuracy": sum(hits) / len(hits), "pairs": len(hits)}
            for name, hits in sorted(buckets.items(), key=lambda kv: kv[0])}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Population mean and standard deviation."""
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default); (nan, nan) for no trials."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exactly 0 and 1 at the edges (rounding would leave 0.9999999999999999)
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    return low, 1.0 if successes >= n else min(1.0, centre + half)


def length_balanced(lengths_j: Sequence[int], lengths_k: Sequence[int], tolerance: float = 0.2) -> list[bool]:
    """Pairs whose answer lengths are within `tolerance` (20%) of the longer one: the length rule is no help there."""
    return [abs(lj - lk) <= tolerance * max(lj, lk) for lj, lk in zip(lengths_j, lengths_k)]


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for t in range(i, j + 1):
            out[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return out


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    if len(x) < 2:
        return float("nan")
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Rank correlation: how far a higher reward goes with a longer answer, whatever the scale."""
    return pearson(ranks(x), ranks(y))


def pair_report(rewards_j: Sequence[float], rewards_k: Sequence[float], lengths_j: Sequence[int],
                lengths_k: Sequence[int]) -> dict:
    """Accuracy, the length rule and accuracy on length-balanced pairs, each with its 95% Wilson interval,
    and the rank correlation of the reward with answer length (`lengths_*`: answer characters)."""
    n = len(rewards_j)
    hits = pair_hits(rewards_j, rewards_k)
    longer = [1.0 if lj > lk else 0.5 if lj == lk else 0.0 for lj, lk in zip(lengths_j, lengths_k)]
    balanced = [i for i, b in enumerate(length_balanced(lengths_j, lengths_k)) if b]
    nb = len(balanced)
    bal_hits = sum(hits[i] for i in balanced)
    bal_longer = sum(longer[i] for i in balanced)
    return {
        "pairs": n,
        "accuracy": pair_accuracy(rewards_j, rewards_k), "accuracy_ci95": list(wilson_interval(sum(hits), n)),
        "ties": sum(rj == rk for rj, rk in zip(rewards_j, rewards_k)),
        "mean_margin": mean_margin(rewards_j, rewards_k),
        "length_rule_accuracy": length_rule_accuracy(lengths_j, lengths_k),
        "length_rule_ci95": list(wilson_interval(sum(longer), n)),
        "balanced_pairs": nb,
        "balanced_accuracy": bal_hits / nb if nb else float("nan"),
        "balanced_accuracy_ci95": list(wilson_interval(bal_hits, nb)),
        "balanced_length_rule_accuracy": bal_longer / nb if nb else float("nan"),
        "reward_length_spearman": spearman(list(rewards_j) + list(rewards_k), list(lengths_j) + list(lengths_k)),
    }
