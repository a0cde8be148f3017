"""The statistics of `stackllama compare`, pure functions over per-question numbers.

Every model answers the same questions, so models are compared question by question, and every
bootstrap resamples *questions* with the same draws for all models (a paired bootstrap).

- win rate against the first model: per question 1 if the model's reward is higher, 0.5 on a tie, 0 if
  lower; the mean over questions.
- length-controlled win rate: the same, on reward residuals. One least-squares line
  reward ~ a + b * length is fitted on every answer of every model; a model's residual on a question is
  its reward minus the line at its answer's length. A model that wins only by writing longer answers
  (the reward model's favourite shortcut) gets about 0.5. The line is fitted once, not refitted in each
  bootstrap draw.
- intervals: percentile bootstrap of the mean over questions (95% by default).
- distinct-2: distinct word bigrams / all word bigrams over all of a model's answers (Li et al., 2016).
"""

from __future__ import annotations

import math
import random
from typing import Sequence

# Rewards this close (relative) tie: scoring the same text in another batch changes its last float digits.
TIE_TOLERANCE = 1e-6


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) of already sorted values, linearly interpolated (numpy's default)."""
    if not sorted_values:
        return float("nan")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def resample_indices(n: int, resamples: int, seed: int) -> list[list[int]]:
    """`resamples` draws of n question indices with replacement, seeded (shared by every model: paired)."""
    rng = random.Random(seed)
    return [[rng.randrange(n) for _ in range(n)] for _ in range(resamples)] if n else []


def bootstrap_mean_ci(values: Sequence[float], draws: Sequence[Sequence[int]], level: float = 0.95
                      ) -> tuple[float, float]:
    """Percentile interval of the mean of `values` over the bootstrap draws (lists of indices)."""
    if not values or not draws:
        return float("nan"), float("nan")
    means = sorted(sum(values[i] for i in draw) / len(draw) for draw in draws)
    tail = (1.0 - level) / 2.0
    return percentile(means, tail), percentile(means, 1.0 - tail)


def _tie(a: float, b: float) -> bool:
    return abs(a - b) <= TIE_TOLERANCE * max(1.0, abs(a), abs(b))


def wins(model: Sequence[float], first: Sequence[float]) -> list[float]:
    """Per question: 1 if `model` scored higher than `first`, 0.5 on a tie (within rounding), else 0."""
    return [0.5 if _tie(m, f) else float(m > f) for m, f in zip(model, first)]


def linear_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y on x; slope 0 when x does not vary."""
    mx, my = mean(x), mean(y)
    sxx = sum((a - mx) ** 2 for a in x)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sxx if sxx > 0 else 0.0
    return my - slope * mx, slope


def residuals(x: Sequence[float], y: Sequence[float], fit: tuple[float, float]) -> list[float]:
    intercept, slope = fit
    return [b - (intercept + slope * a) for a, b in zip(x, y)]


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct word n-grams / all word n-grams over all texts (n-grams never cross texts); 0 when none."""
    grams = [tuple(words[i:i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def interval_verdict(ci: tuple[float, float], null: float) -> str:
    """'above' / 'below' when the whole interval is on one side of `null`, else 'inside'."""
    lo, hi = ci
    if math.isnan(lo) or math.isnan(hi):
        return "inside"
    return "above" if lo > null else "below" if hi < null else "inside"


def compare_models(rewards: dict[str, list[float]], lengths: dict[str, list[float]], resamples: int = 2000,
                   seed: int = 0, level: float = 0.95) -> dict:
    """Per model (in the order given; the first is the baseline): mean reward with its interval, the paired
    difference to the first model, win rate and length-controlled win rate with intervals; and the fit."""
    labels = list(rewards)
    n = len(rewards[labels[0]])
    if any(len(rewards[k]) != n or len(lengths[k]) != n for k in labels):
        raise ValueError("every model needs one reward and one length per question")
    draws = resample_indices(n, resamples, seed)
    all_x = [x for k in labels for x in lengths[k]]
    all_y = [y for k in labels for y in rewards[k]]
    fit = linear_fit(all_x, all_y)
    resid = {k: residuals(lengths[k], rewards[k], fit) for k in labels}
    first = labels[0]
    models = {}
    for k in labels:
        diff = [a - b for a, b in zip(rewards[k], rewards[first])]
        w, lc = wins(rewards[k], rewards[first]), wins(resid[k], resid[first])
        models[k] = {"n": n, "reward_mean": mean(rewards[k]), "reward_ci": bootstrap_mean_ci(rewards[k], draws, level),
                     "reward_diff_vs_first": mean(diff), "reward_diff_ci": bootstrap_mean_ci(diff, draws, level),
                     "win_rate": mean(w), "win_rate_ci": bootstrap_mean_ci(w, draws, level),
                     "lc_win_rate": mean(lc), "lc_win_rate_ci": bootstrap_mean_ci(lc, draws, level),
                     "length_mean": mean(lengths[k])}
    return {"models": models, "fit": {"intercept": fit[0], "slope": fit[1]}}


def agreement(a: dict[str, list[float]], b: dict[str, list[float]]) -> dict[str, float | None]:
    """Per model (first excluded): share of questions where two scorers pick the same winner against the first
    model, over the questions where neither calls a tie."""
    labels = list(a)
    out: dict[str, float | None] = {}
    for k in labels[1:]:
        pairs = [(wa, wb) for wa, wb in zip(wins(a[k], a[labels[0]]), wins(b[k], b[labels[0]]))
                 if wa != 0.5 and wb != 0.5]
        out[k] = sum(wa == wb for wa, wb in pairs) / len(pairs) if pairs else None
    return out
