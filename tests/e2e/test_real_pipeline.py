"""The reward model and PPO on the real SmolLM2-135M and the real beer dump (slow: about a minute)."""

import json
import math

import pytest

pytestmark = pytest.mark.slow


def test_reward_and_ppo_on_smollm2(beer_posts, tmp_path, run_cli):
    data = tmp_path / "beer"
    assert run_cli("prepare-data", beer_posts, "--output", data).exit_code == 0
    rm = tmp_path / "rm"
    result = run_cli("train-rm", "--model", "smollm2-135m", "--data", data, "--output", rm, "--max-steps", "2",
                     "--batch-size", "2", "--max-length", "128", "--eval-pairs", "4", "--stats-pairs", "4", "--json")
    assert result.exit_code == 0, result
    summary = json.loads(result.stdout)
    # long pairs are cut (question first), not dropped
    assert math.isfinite(summary["train_loss"]) and summary["over_max_length"] > 0
    assert summary["dropped_over_max_length"] == 0 and summary["train_pairs"] > 0
    result = run_cli("eval-rm", rm, "--data", data, "--limit", "4", "--json")
    assert result.exit_code == 0, result
    assert json.loads(result.stdout)["pairs"] == 4
    ppo = tmp_path / "ppo"
    result = run_cli("ppo", "--model", "smollm2-135m", "--reward-model", rm, "--data", data, "--output", ppo,
                     "--steps", "1", "--batch-size", "2", "--mini-batch-size", "2", "--ppo-epochs", "1",
                     "--min-new-tokens", "8", "--max-new-tokens", "8", "--max-prompt-length", "256", "--json")
    assert result.exit_code == 0, result
    row = json.loads((ppo / "metrics.jsonl").read_text().splitlines()[0])
    assert all(math.isfinite(row[k]) for k in ("reward_mean", "kl", "pg_loss", "vf_loss", "entropy"))
    assert json.loads((ppo / "adapter_config.json").read_text())["base_model_name_or_path"] == "smollm2-135m"
