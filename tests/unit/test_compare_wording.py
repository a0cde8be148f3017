"""What compare and the demo report say about differences: nothing beyond what the intervals allow."""

import json

from stackllama_cli.pipeline.report import comparison_section
from stackllama_cli.stages.compare_output import verdict


def model(label, diff_ci, lc=0.5, lc_ci=(0.3, 0.7)):
    return {"label": label, "model": label, "reward_mean": 0.1, "reward_ci": [0.0, 0.2], "win_rate": 0.5,
            "win_rate_ci": [0.3, 0.7], "lc_win_rate": lc, "lc_win_rate_ci": list(lc_ci), "length_mean": 40.0,
            "degenerate_share": 0.0, "distinct_2": 0.9, "kl_to_first": 1.5,
            "reward_diff_vs_first": sum(diff_ci) / 2, "reward_diff_ci": list(diff_ci)}


def test_verdict_sentences():
    inside = verdict(model("dpo", (-0.1, 0.3)), "base", 8)
    assert inside.startswith("dpo vs base: reward +0.100 [-0.100, +0.300]")
    assert "includes 0, so 8 questions do not show a difference" in inside and "(includes 0.5)" in inside
    above = verdict(model("ppo", (0.05, 0.25), lc=0.9, lc_ci=(0.7, 1.0)), "base", 8)
    assert "higher beyond the 95% interval" in above and "(includes 0.5)" not in above
    assert "lower beyond" in verdict(model("rloo", (-0.4, -0.1)), "base", 8)


def write(run_dir, models):
    (run_dir / "compare").mkdir(parents=True)
    result = {"questions": 8, "reward_model": "runs/reward", "models": models, "kl": {"definition": "KL", "note": None},
              "length_control": {"description": "one line", "slope": 0.01}}
    for m in models[1:]:
        m["verdict"] = verdict(m, models[0]["label"], 8)
    (run_dir / "compare" / "compare.json").write_text(json.dumps(result))


def test_report_headline_when_nothing_differs(tmp_path):
    write(tmp_path, [model("base", (0.0, 0.0)), model("dpo", (-0.1, 0.3)), model("rloo", (-0.2, 0.1))])
    html = "".join(comparison_section(tmp_path))
    assert "No model's reward differs from base's beyond the 95% interval" in html
    assert "not evidence that one model is better" in html and html.count("<li class=muted>") == 2


def test_report_headline_names_the_models_that_differ(tmp_path):
    write(tmp_path, [model("base", (0.0, 0.0)), model("dpo", (0.05, 0.3)), model("rloo", (-0.2, 0.1))])
    html = "".join(comparison_section(tmp_path))
    assert "only dpo differs from base" in html and "<li class=good>" in html
    assert "No comparison run" in "".join(comparison_section(tmp_path / "elsewhere"))
