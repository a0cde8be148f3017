"""The --max-minutes budget of a whole command, and sizing the scoring after training to fit it."""

import math

from stackllama_cli.stages.budget import Clock, size_after_training


def test_clock_counts_from_its_creation():
    now = [100.0]
    clock = Clock(2.0, now=lambda: now[0])
    now[0] = 130.0
    assert clock.limited and clock.left() == 90.0 and clock.elapsed() == 30.0
    unlimited = Clock(0.0, now=lambda: now[0])
    assert not unlimited.limited and unlimited.left() == math.inf


def test_scoring_that_fits_is_left_alone():
    # 100 + 50 pairs at 0.1 s = 15 s <= half of 60 s
    assert size_after_training(60.0, 0.1, 100, 50) == (100, 50)


def test_scoring_shrinks_to_half_the_time_left():
    # 200 + 100 pairs at 1 s = 300 s; half of 120 s = 60 s -> factor 0.2
    assert size_after_training(120.0, 1.0, 200, 100) == (40, 20)
    # statistics keep 16 pairs (or all they have), the evaluation may go to zero
    assert size_after_training(0.0, 1.0, 200, 100) == (0, 16)
    assert size_after_training(-5.0, 1.0, 200, 8) == (0, 8)
