"""The HTML report's reward-model section shows eval-rm's intervals and length-balanced accuracy."""

from stackllama_cli.pipeline.report import reward_eval_section

EVAL = {"model": "runs/reward", "pairs": 200, "accuracy": 0.61, "accuracy_ci95": [0.541, 0.675],
        "length_rule_accuracy": 0.66, "length_rule_ci95": [0.59, 0.72], "balanced_pairs": 40,
        "balanced_accuracy": 0.55, "balanced_accuracy_ci95": [0.398, 0.693], "balanced_length_rule_accuracy": 0.5,
        "reward_length_spearman": 0.42, "mean_margin": 0.1, "accuracy_by_score_gap": {"1": {"accuracy": 0.6}}}


def test_reward_section_shows_intervals_and_balanced_pairs():
    html = "\n".join(reward_eval_section(EVAL))
    assert "does not beat the length rule (0.610 vs 0.660)" in html
    assert "0.610 [0.54, 0.68]" in html and "0.660 [0.59, 0.72]" in html
    assert "length-balanced pairs (within 20%)" in html and "0.550 [0.40, 0.69]" in html
    assert "not distinguishable from chance" in html
    assert "reward_length_spearman" in html and "0.42" in html and "accuracy_by_score_gap.1.accuracy" in html


def test_reward_section_of_an_older_eval_without_intervals():
    html = "\n".join(reward_eval_section({"pairs": 17, "accuracy": 0.9, "length_rule_accuracy": 0.8}))
    assert "beats the length rule" in html and "0.900" in html and "chance" not in html
