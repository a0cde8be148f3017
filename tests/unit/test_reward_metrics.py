"""Reward metrics against hand-computed values."""

import math

from stackllama_cli.data.reward_metrics import (
    accuracy_by_gap,
    length_rule_accuracy,
    mean_margin,
    mean_std,
    pair_accuracy,
)


def test_pair_accuracy_and_margin():
    rj, rk = [2.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, -1.0]
    assert pair_accuracy(rj, rk) == 0.5  # ties are not correct
    assert mean_margin(rj, rk) == (1 - 1 + 0 + 2) / 4
    assert math.isnan(pair_accuracy([], []))


def test_length_rule_counts_ties_as_half():
    assert length_rule_accuracy([10, 5, 7], [3, 9, 7]) == (1 + 0 + 0.5) / 3


def test_accuracy_by_gap():
    out = accuracy_by_gap([1, 1, 0, 5], [0, 2, 1, 0], [3, 4, 6, 2], [2, 2, 1, -1])
    assert out == {"1": {"accuracy": 1.0, "pairs": 1}, "2": {"accuracy": 0.0, "pairs": 1},
                   "3+": {"accuracy": 0.5, "pairs": 2}}


def test_mean_std():
    assert mean_std([1.0, 3.0]) == (2.0, 1.0)
