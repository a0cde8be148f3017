"""Degenerate-response detection on hand-made token sequences."""

from stackllama_cli.stages.ppo.degenerate import (
    degenerate_reason,
    max_token_share,
    repeated_ngram_fraction,
    reward_spike,
)


def test_repeated_ngram_fraction():
    assert repeated_ngram_fraction([1, 2, 3, 4, 5], 2) == 0.0
    assert repeated_ngram_fraction([1, 2, 1, 2, 1, 2], 2) == 1 - 2 / 5  # grams 12 21 12 21 12
    assert repeated_ngram_fraction([1], 4) == 0.0


def test_max_token_share():
    assert max_token_share([7, 7, 7, 1]) == 0.75 and max_token_share([]) == 0.0


def test_degenerate_reasons():
    normal = list(range(40))
    assert degenerate_reason("Use a burr grinder.", normal) is None
    assert degenerate_reason("```\n```\n```\n```\n```\n```\n```", normal) == "fences"
    assert degenerate_reason("loop", [5, 6, 7, 8] * 10) == "ngram-loop"
    assert degenerate_reason("aaaa", [9] * 10 + list(range(10, 20))) is None  # 10 of 20 is not > 0.5
    assert degenerate_reason("aaaa", [9] * 11 + list(range(10, 20))) == "one-token"  # 11 of 21 is
    assert degenerate_reason("short", [1, 1, 1]) is None  # too short to judge


def test_reward_spike():
    assert reward_spike([1.0, 1.1, 0.9, 1.0], 5.0, kl_rising=True)
    assert not reward_spike([1.0, 1.1, 0.9, 1.0], 5.0, kl_rising=False)
    assert not reward_spike([1.0, 1.1, 0.9, 1.0], 1.2, kl_rising=True)
    assert not reward_spike([1.0], 9.0, kl_rising=True)
