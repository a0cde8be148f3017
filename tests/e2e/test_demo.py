"""The whole pipeline (`stackllama demo`) on the tiny model: every stage's outputs, the report, resume."""

import json
import shutil

from tests.conftest import run_cli_subprocess

STAGES = ["prepare-data", "sft", "train-rm", "eval-rm", "ppo", "generate (base)", "score (base)",
          "generate (sft)", "score (sft)", "generate (ppo)", "score (ppo)"]


def test_demo_end_to_end_and_resume(tiny_model_dir, tmp_path):
    out = tmp_path / "demo"
    proc = run_cli_subprocess("demo", "--model", tiny_model_dir, "--output", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for path in ("data/stats.json", "sft/adapter_config.json", "reward/adapter_config.json",
                 "reward/reward_stats.json", "eval-rm.json", "ppo/adapter_config.json", "ppo/metrics.jsonl",
                 "answers/base.jsonl", "answers/sft.jsonl", "answers/ppo.jsonl", "report.html", "demo_state.json"):
        assert (out / path).is_file(), path
    state = json.loads((out / "demo_state.json").read_text())
    assert list(state["stage_seconds"]) == STAGES
    answers = [json.loads(line) for line in (out / "answers" / "ppo.jsonl").read_text().splitlines()]
    assert len(answers) == 4 and all(isinstance(a["reward"], float) and "response" in a for a in answers)
    html = (out / "report.html").read_text()
    for section in ("Stages", "Data", "Supervised fine-tuning", "Reward model", "length rule", "PPO",
                    "Answers to held-out questions", "data:image/png;base64,"):
        assert section in html, section
    assert "http://" not in html.split("<body>")[1].split("questions/")[0]  # nothing fetched from the network

    # interrupted after train-rm: the finished stages are not redone
    shutil.rmtree(out / "ppo")
    for name in ("eval-rm.json",):
        (out / name).unlink()
    shutil.rmtree(out / "answers")
    again = run_cli_subprocess("demo", "--model", tiny_model_dir, "--output", out)
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ("prepare-data", "sft", "train-rm"):
        assert f"{stage}: already done" in again.stderr
    assert "$ stackllama ppo" in again.stderr and "$ stackllama sft" not in again.stderr
    assert (out / "ppo" / "adapter_config.json").is_file()


def test_demo_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    proc = run_cli_subprocess("demo", "--output", tmp_path)
    assert proc.returncode == 1 and "not a demo run" in proc.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
