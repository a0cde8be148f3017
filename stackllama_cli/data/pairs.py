"""Pure logic: answer scores, preference pairs and question splits (no I/O)."""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from dataclasses import dataclass
from typing import Sequence


def answer_score(net_score: int, accepted: bool) -> int:
    """StackLLaMA's answer score (Askell et al. 2021).

    `round(log2(1 + score))`, plus 1 when the questioner accepted the answer; an answer
    whose (net) score is negative scores -1 (accepted or not).

    Rounding: halves round up (`round_half_up`), not to even as Python's `round` does.
    For integer scores the choice never shows: log2(1 + s) = k + 0.5 would need
    1 + s = 2**k * sqrt(2), which is irrational, and the nearest float values stay far
    from .5 (tested for every score up to 10**6).
    """
    if net_score < 0:
        return -1
    return round_half_up(math.log2(1 + net_score)) + (1 if accepted else 0)


def round_half_up(x: float) -> int:
    """2.5 -> 3, 3.5 -> 4, 2.4999 -> 2 (Python's round gives 2 for 2.5)."""
    return math.floor(x + 0.5)


@dataclass(frozen=True, slots=True)  # one per answer and pair: slots halve the memory
class ScoredAnswer:
    answer_id: int
    score: int


@dataclass(frozen=True, slots=True)  # one per answer and pair: slots halve the memory
class Pair:
    chosen: ScoredAnswer  # j: the better answer
    rejected: ScoredAnswer  # k


def all_pairs(answers: Sequence[ScoredAnswer]) -> list[Pair]:
    """Every pair of answers with different scores, better one first. Ties are not pairs.

    Order is deterministic: by answer id within the input, so sampling from it is too.
    """
    ordered = sorted(answers, key=lambda a: a.answer_id)
    pairs = []
    for a, b in itertools.combinations(ordered, 2):
        if a.score == b.score:
            continue
        chosen, rejected = (a, b) if a.score > b.score else (b, a)
        pairs.append(Pair(chosen, rejected))
    return pairs


def select_pairs(answers: Sequence[ScoredAnswer], max_pairs: int, seed: int, key: str) -> tuple[list[Pair], int]:
    """At most `max_pairs` pairs for one question, sampled deterministically from (seed, key).

    Returns (pairs, number dropped by the cap). Seeding per question keeps a question's
    pairs stable when other questions are added to or removed from the dump.
    """
    pairs = all_pairs(answers)
    if max_pairs <= 0 or len(pairs) <= max_pairs:
        return pairs, 0
    rng = random.Random(f"{seed}:{key}")  # str seeds hash with SHA-512: stable across runs
    keep = sorted(rng.sample(range(len(pairs)), max_pairs))
    return [pairs[i] for i in keep], len(pairs) - max_pairs


def unit_hash(seed: int, key: str) -> float:
    """A stable uniform number in [0, 1) for (seed, key)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(key: str, fractions: dict[str, float], seed: int) -> str:
    """Assign a question to a split by hashing its key: deterministic, and stable under adding data.

    `fractions` maps split name -> share (they must sum to 1); buckets follow dict order.
    """
    u = unit_hash(seed, key)
    cumulative = 0.0
    last = None
    for name, share in fractions.items():
        cumulative += share
        last = name
        if u < cumulative:
            return name
    return last  # floating-point slack at the top end
