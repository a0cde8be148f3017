"""Reward metrics against hand-computed values."""

import math

from stackllama_cli.data.reward_metrics import (
    accuracy_by_gap,
    length_balanced,
    length_rule_accuracy,
    mean_margin,
    mean_std,
    pair_accuracy,
    pair_report,
    ranks,
    spearman,
    wilson_interval,
)


def test_pair_accuracy_and_margin():
    rj, rk = [2.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, -1.0]
    assert pair_accuracy(rj, rk) == (1 + 0 + 0.5 + 1) / 4  # a tie is a coin flip, as in the length rule
    assert mean_margin(rj, rk) == (1 - 1 + 0 + 2) / 4
    assert math.isnan(pair_accuracy([], []))


def test_length_rule_counts_ties_as_half():
    assert length_rule_accuracy([10, 5, 7], [3, 9, 7]) == (1 + 0 + 0.5) / 3


def test_a_model_that_scores_every_text_alike_is_at_chance():
    """A zero-started head before its first update gives every text reward 0: that is chance (0.5), not 0.0 -
    counting ties as wrong made an untrained model look worse than a coin."""
    assert pair_accuracy([0.0] * 4, [0.0] * 4) == 0.5
    report = pair_report([0.0] * 4, [0.0] * 4, [10, 10, 50, 8], [9, 10, 5, 9])
    assert report["accuracy"] == 0.5 and report["balanced_accuracy"] == 0.5 and report["ties"] == 4
    assert report["accuracy_ci95"] == list(wilson_interval(2, 4))


def test_accuracy_by_gap():
    out = accuracy_by_gap([1, 1, 0, 5], [0, 2, 1, 0], [3, 4, 6, 2], [2, 2, 1, -1])
    assert out == {"1": {"accuracy": 1.0, "pairs": 1}, "2": {"accuracy": 0.0, "pairs": 1},
                   "3+": {"accuracy": 0.5, "pairs": 2}}


def test_mean_std():
    assert mean_std([1.0, 3.0]) == (2.0, 1.0)


def test_wilson_interval_by_hand():
    # 8 of 10: p = 0.8, z^2 = 3.8415, centre = (0.8 + 0.19208) / 1.38415 = 0.71674,
    # half = 1.96 * sqrt(0.016 + 0.0096037) / 1.38415 = 0.22658
    low, high = wilson_interval(8, 10)
    assert math.isclose(low, 0.49016, abs_tol=1e-4) and math.isclose(high, 0.94332, abs_tol=1e-4)
    low, high = wilson_interval(0, 4)  # never 0 width at the edge, never below 0
    assert low == 0.0 and math.isclose(high, 3.8415 / 7.8415, abs_tol=1e-4)
    assert wilson_interval(24, 24)[1] == 1.0 and wilson_interval(0, 24)[0] == 0.0
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_length_balanced_pairs_within_20_percent():
    assert length_balanced([100, 100, 79, 10], [80, 79, 100, 10]) == [True, False, False, True]


def test_spearman_with_ties_by_hand():
    assert ranks([10, 20, 20, 5]) == [2, 3.5, 3.5, 1]
    assert spearman([1, 2, 3], [10, 20, 30]) == 1.0
    assert math.isclose(spearman([1, 2, 3], [30, 20, 10]), -1.0)
    # ranks x = 1 2 3 4, y = 2 1 4 3; deviations from 2.5: sum dx*dy = 3, sum dx^2 = sum dy^2 = 5 -> 0.6
    assert math.isclose(spearman([1, 2, 3, 4], [5, 1, 9, 7]), 0.6)
    assert math.isnan(spearman([1.0], [2.0]))


def test_pair_report_on_hand_made_pairs():
    # lengths: pair 0 balanced (100 vs 90), pair 1 not (200 vs 50), pair 2 balanced tie (60 vs 60), pair 3 not
    rj, rk = [1.0, 0.0, 2.0, 3.0], [0.0, 1.0, 2.0, 1.0]
    lj, lk = [100, 200, 60, 10], [90, 50, 60, 100]
    report = pair_report(rj, rk, lj, lk)
    assert report["pairs"] == 4 and report["accuracy"] == (1 + 0 + 0.5 + 1) / 4 and report["ties"] == 1
    assert report["length_rule_accuracy"] == (1 + 1 + 0.5 + 0) / 4
    assert report["balanced_pairs"] == 2 and report["balanced_accuracy"] == 0.75  # pair 0 right, pair 2 a tie
    assert report["balanced_length_rule_accuracy"] == (1 + 0.5) / 2
    assert report["accuracy_ci95"] == list(wilson_interval(2.5, 4))
    assert report["balanced_accuracy_ci95"] == list(wilson_interval(1.5, 2))
    # rewards 1 0 2 3 | 0 1 2 1 vs lengths 100 200 60 10 | 90 50 60 100
    assert math.isclose(report["reward_length_spearman"],
                        spearman([1, 0, 2, 3, 0, 1, 2, 1], [100, 200, 60, 10, 90, 50, 60, 100]))
    empty = pair_report([], [], [], [])
    assert empty["pairs"] == 0 and math.isnan(empty["accuracy"]) and math.isnan(empty["balanced_accuracy"])
