"""A wall-clock budget for a whole command (--max-minutes) and sizing the work after training to fit it."""

from __future__ import annotations

import math
import time


class Clock:
    """The --max-minutes budget of the whole command, counted from when it was created."""

    def __init__(self, minutes: float, now=time.monotonic):
        self.now = now
        self.start = now()
        self.deadline = self.start + minutes * 60 if minutes > 0 else math.inf
        self.reserved = 0.0  # seconds kept at the end for what runs after training

    @property
    def limited(self) -> bool:
        return self.deadline != math.inf

    def left(self) -> float:
        return self.deadline - self.now()

    def elapsed(self) -> float:
        return self.now() - self.start


def size_after_training(seconds_left: float, seconds_per_pair: float, eval_pairs: int, stats_pairs: int,
                        share: float = 0.5, min_stats: int = 16) -> tuple[int, int]:
    """(eval pairs, stats pairs) to score after training so that scoring takes at most `share` of the time
    left; both shrink by the same factor, the statistics keep at least `min_stats` pairs."""
    need = (eval_pairs + stats_pairs) * seconds_per_pair
    allowed = max(share * seconds_left, 0.0)
    if need <= allowed:
        return eval_pairs, stats_pairs
    factor = allowed / need
    return int(eval_pairs * factor), min(stats_pairs, max(min_stats, int(stats_pairs * factor)))
