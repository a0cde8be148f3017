"""The whole pipeline (`stackllama demo`) on the tiny model: every stage's outputs, the report, resume."""

import json
import shutil

from tests.conftest import run_cli_subprocess

STAGES = ["prepare-data", "sft", "train-rm", "eval-rm", "ppo", "dpo", "rloo", "compare"]


def test_demo_end_to_end_and_resume(tiny_model_dir, tmp_path):
    out = tmp_path / "demo"
    proc = run_cli_subprocess("demo", "--model", tiny_model_dir, "--output", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for path in ("data/stats.json", "sft/adapter_config.json", "reward/adapter_config.json",
                 "reward/reward_stats.json", "eval-rm.json", "ppo/adapter_config.json", "ppo/metrics.jsonl",
                 "dpo/adapter_config.json", "dpo/dpo_summary.json", "rloo/adapter_config.json", "rloo/metrics.jsonl",
                 "compare/compare.json", "compare/answers.jsonl", "compare/reward_vs_length.png", "report.html",
                 "demo_state.json"):
        assert (out / path).is_file(), path
    state = json.loads((out / "demo_state.json").read_text())
    assert list(state["stage_seconds"]) == STAGES
    compared = json.loads((out / "compare" / "compare.json").read_text())
    assert [m["label"] for m in compared["models"]] == ["base", "sft", "ppo", "dpo", "rloo"]
    n = compared["questions"]  # the budget asks 8; the sample's evaluation split holds 6 distinct questions
    assert n == 6 and all(m["kl_to_first"] is not None for m in compared["models"])
    answers = [json.loads(line) for line in (out / "compare" / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 5 * n and all(isinstance(a["reward"], float) and "response" in a for a in answers)
    html = (out / "report.html").read_text()
    for section in ("Stages", "Data", "Supervised fine-tuning", "Reward model", "length rule", "PPO", "DPO", "RLOO",
                    "Comparison on held-out questions", "length-controlled win rate", "95% interval",
                    "Answers to held-out questions", "data:image/png;base64,"):
        assert section in html, section
    assert html.count("data:image/png;base64,") >= 6  # sft, reward, ppo, dpo, rloo curves; reward vs length
    assert "http://" not in html.split("<body>")[1].split("questions/")[0]  # nothing fetched from the network

    # interrupted after dpo (eval-rm's output lost too): the finished stages are not redone
    for stage in ("rloo", "compare"):
        shutil.rmtree(out / stage)
    (out / "eval-rm.json").unlink()
    again = run_cli_subprocess("demo", "--model", tiny_model_dir, "--output", out)
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ("prepare-data", "sft", "train-rm", "ppo", "dpo"):
        assert f"{stage}: already done" in again.stderr
    assert "$ stackllama eval-rm" in again.stderr and "$ stackllama rloo" in again.stderr
    assert "$ stackllama sft" not in again.stderr and "$ stackllama ppo" not in again.stderr
    assert (out / "rloo" / "adapter_config.json").is_file() and (out / "compare" / "compare.json").is_file()


def test_demo_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    proc = run_cli_subprocess("demo", "--output", tmp_path)
    assert proc.returncode == 1 and "not a demo run" in proc.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
