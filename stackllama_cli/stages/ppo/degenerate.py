"""Detecting degenerate responses: the reward hacks the original StackLLaMA run fell into.

Pure functions over token ids and text. A response is degenerate when it is mostly
repetition: runs of ``` code fences, a repeated n-gram loop, or one token dominating.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

FENCE = "```"


@dataclass(frozen=True)
class DegenerateThresholds:
    max_fences: int = 6  # more than 3 code blocks' worth of fences in one answer
    ngram: int = 4
    max_repeated_ngram_fraction: float = 0.5
    max_token_share: float = 0.5
    min_tokens: int = 12  # shorter responses are judged on fences only


def repeated_ngram_fraction(tokens: Sequence[int], n: int) -> float:
    """Share of n-grams that repeat an earlier n-gram: 0 for no repetition, near 1 for a loop."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def max_token_share(tokens: Sequence[int]) -> float:
    if not tokens:
        return 0.0
    return Counter(tokens).most_common(1)[0][1] / len(tokens)


def degenerate_reason(text: str, tokens: Sequence[int], th: DegenerateThresholds = DegenerateThresholds()
                      ) -> str | None:
    """Why a response is degenerate ('fences', 'ngram-loop', 'one-token'), or None."""
    if text.count(FENCE) > th.max_fences:
        return "fences"
    if len(tokens) < th.min_tokens:
        return None
    if repeated_ngram_fraction(tokens, th.ngram) > th.max_repeated_ngram_fraction:
        return "ngram-loop"
    if max_token_share(tokens) > th.max_token_share:
        return "one-token"
    return None


def reward_spike(history: Sequence[float], current: float, kl_rising: bool, window: int = 8,
                 n_std: float = 3.0) -> bool:
    """A sudden reward jump (> n_std standard deviations above the recent mean) while KL rises."""
    recent = list(history)[-window:]
    if len(recent) < 3 or not kl_rising:
        return False
    mean = sum(recent) / len(recent)
    std = (sum((r - mean) ** 2 for r in recent) / len(recent)) ** 0.5
    return current > mean + n_std * max(std, 1e-6)
