"""compare's statistics on fixed numbers, every expected value worked out by hand."""

import math

import pytest

from stackllama_cli.stages.compare_stats import (
    agreement,
    bootstrap_mean_ci,
    compare_models,
    distinct_n,
    interval_verdict,
    linear_fit,
    percentile,
    resample_indices,
    residuals,
    wins,
)


def test_percentile_interpolates_linearly():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0.0) == 1.0 and percentile(values, 1.0) == 4.0
    assert percentile(values, 0.5) == 2.5  # position 1.5: halfway between 2 and 3
    assert percentile(values, 1 / 3) == pytest.approx(2.0)  # position 1
    assert percentile([7.0], 0.3) == 7.0 and math.isnan(percentile([], 0.5))


def test_bootstrap_interval_on_given_draws():
    values = [1.0, 2.0, 3.0, 4.0]
    draws = [[0, 0, 0, 0], [3, 3, 3, 3], [0, 1, 2, 3], [1, 1, 2, 2], [0, 3, 0, 3]]
    # draw means 1, 4, 2.5, 2.5, 2.5 -> sorted 1, 2.5, 2.5, 2.5, 4 (positions 0..4)
    assert bootstrap_mean_ci(values, draws, level=0.5) == (2.5, 2.5)  # positions 1 and 3
    lo, hi = bootstrap_mean_ci(values, draws, level=0.95)  # positions 0.1 and 3.9
    assert lo == pytest.approx(1.0 + 0.1 * 1.5) and hi == pytest.approx(2.5 + 0.9 * 1.5)


def test_bootstrap_draws_are_seeded_and_cover_the_mean():
    assert resample_indices(5, 3, seed=1) == resample_indices(5, 3, seed=1) != resample_indices(5, 3, seed=2)
    assert bootstrap_mean_ci([3.0] * 6, resample_indices(6, 200, 0)) == (3.0, 3.0)
    # two values 0 and 1: draw means are 0, 0.5 or 1 (1/4, 1/2, 1/4); the 95% interval spans [0, 1]
    assert bootstrap_mean_ci([0.0, 1.0], resample_indices(2, 2000, 0)) == (0.0, 1.0)


def test_wins_with_ties():
    assert wins([2, 2, 1, 5], [1, 2, 3, 4]) == [1.0, 0.5, 0.0, 1.0]
    assert wins([0.1 + 0.2, 2.00000001], [0.3, 2.0]) == [0.5, 0.5]  # equal up to float rounding: a tie
    assert wins([1.0001], [1.0]) == [1.0]


def test_win_rate_and_paired_difference():
    result = compare_models({"a": [1.0, 2.0, 3.0, 4.0], "b": [2.0, 2.0, 1.0, 5.0]},
                            {"a": [5.0] * 4, "b": [5.0] * 4}, resamples=200)["models"]
    assert result["a"]["win_rate"] == 0.5 and result["a"]["reward_diff_ci"] == (0.0, 0.0)
    assert result["b"]["win_rate"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert result["b"]["reward_diff_vs_first"] == pytest.approx((1 + 0 - 2 + 1) / 4)
    assert result["b"]["reward_mean"] == 2.5 and result["b"]["length_mean"] == 5.0
    lo, hi = result["b"]["win_rate_ci"]
    assert 0.0 <= lo <= 0.625 <= hi <= 1.0


def test_linear_fit_and_residuals():
    assert linear_fit([1, 2, 3], [3, 5, 7]) == pytest.approx((1.0, 2.0))
    assert linear_fit([4, 4], [1, 3]) == (2.0, 0.0)  # length does not vary: flat line at the mean
    assert residuals([1, 2], [4, 4], (1.0, 2.0)) == [1.0, -1.0]


def test_length_control_when_the_longer_answer_always_wins():
    """b is 10 tokens longer than a on every question and gets the higher reward every time, but the reward
    rises with length and b sits below the line: once length is accounted for, a wins every question."""
    lengths = {"a": [10.0, 20.0, 30.0], "b": [20.0, 30.0, 40.0]}
    rewards = {"a": [1.2, 2.2, 3.2], "b": [1.9, 2.9, 3.9]}
    result = compare_models(rewards, lengths, resamples=200)
    # pooled fit by hand: x mean 25, y mean 2.55, Sxy 50.5, Sxx 550
    slope = 50.5 / 550
    assert result["fit"]["slope"] == pytest.approx(slope)
    assert result["fit"]["intercept"] == pytest.approx(2.55 - 25 * slope)
    b = result["models"]["b"]
    assert b["win_rate"] == 1.0 and b["lc_win_rate"] == 0.0
    assert b["win_rate_ci"] == (1.0, 1.0) and b["lc_win_rate_ci"] == (0.0, 0.0)
    # residuals by hand: a 0.0273, 0.1091, 0.1909; b -0.1909, -0.1091, -0.0273
    assert residuals(lengths["b"], rewards["b"], (2.55 - 25 * slope, slope)) == pytest.approx(
        [-0.190909, -0.109091, -0.027273], abs=1e-6)


def test_length_control_when_reward_is_length():
    lengths = {"a": [10.0, 20.0, 30.0], "b": [15.0, 25.0, 35.0]}
    rewards = {k: [0.5 * x - 1 for x in v] for k, v in lengths.items()}  # the reward is a function of length
    b = compare_models(rewards, lengths, resamples=200)["models"]["b"]
    assert b["win_rate"] == 1.0 and b["lc_win_rate"] == 0.5  # every residual 0: ties


def test_distinct_2():
    assert distinct_n(["a b a b", "a b"], 2) == pytest.approx(2 / 4)  # (a,b) x3, (b,a) x1
    assert distinct_n(["a b c"], 2) == 1.0
    assert distinct_n(["a", ""], 2) == 0.0  # no bigram at all


def test_interval_verdict_and_agreement():
    assert interval_verdict((-0.1, 0.2), 0.0) == "inside"
    assert interval_verdict((0.05, 0.2), 0.0) == "above" and interval_verdict((0.1, 0.4), 0.5) == "below"
    a = {"first": [0.0, 0.0, 0.0], "m": [1.0, -1.0, 0.0]}
    b = {"first": [0.0, 0.0, 0.0], "m": [1.0, 1.0, 5.0]}
    # winners: a picks m, first, tie; b picks m, m, m; the tie is left out -> 1 agreement in 2
    assert agreement(a, b) == {"m": 0.5}


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        compare_models({"a": [1.0], "b": [1.0, 2.0]}, {"a": [1.0], "b": [1.0, 2.0]})
