"""train-rm and eval-rm on the tiny LLaMA: learning a separable preference, parameters, scoring, errors."""

import json
import math
import random

import pytest
import torch

from tests.conftest import load_safetensors, run_cli_subprocess, run_ok

WORDS = "coffee beer grind roast hops yeast water brew kettle filter bean malt barley foam glass cup".split()


def write_pairs(path, n, seed):
    """Chosen answers end in "good", rejected ones in "terrible"; otherwise the two answers are alike.

    "terrible" is the longer word, so the length rule is wrong on every pair.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(6)]
        question = " ".join(rng.choice(WORDS) for _ in range(5)) + "?"
        body = " ".join(words)
        rows.append({"qid": i, "question": question, "date": "2024-01-01", "metadata": [],
                     "response_j": f"{body} good", "response_k": f"{body} terrible",
                     "answer_id_j": 2 * i, "answer_id_k": 2 * i + 1, "score_j": 2 + i % 3, "score_k": 1})
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture(scope="module")
def toy_pairs(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    write_pairs(d / "reward.parquet", 64, seed=0)
    write_pairs(d / "evaluation.parquet", 24, seed=1)
    return d


TRAIN = ["--max-steps", "30", "--batch-size", "8", "--learning-rate", "3e-3", "--warmup-steps", "0",
         "--logging-steps", "5", "--eval-steps", "15", "--save-steps", "15", "--max-length", "64"]


@pytest.fixture(scope="module")
def toy_rm(tiny_model_dir, toy_pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "reward"
    run_ok("train-rm", "--model", tiny_model_dir, "--data", toy_pairs, "--output", out, *TRAIN,
           "--json")
    return out


def test_reward_model_learns_the_marker(toy_rm):
    summary = json.loads((toy_rm / "reward_summary.json").read_text())
    assert summary["eval_accuracy"] == 1.0  # a loss wired backwards would give 0.0
    assert summary["eval_mean_margin"] > 0
    records = [json.loads(line) for line in (toy_rm / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0] < 0.8
    stats = json.loads((toy_rm / "reward_stats.json").read_text())
    assert math.isfinite(stats["mean"]) and stats["std"] > 0 and stats["n"] == 128


def test_every_trainable_tensor_and_the_score_head_trained(toy_rm):
    mid = load_safetensors(toy_rm / "checkpoints" / "checkpoint-15" / "adapter_model.safetensors")
    final = load_safetensors(toy_rm / "adapter_model.safetensors")
    assert any("score" in k for k in final), "the score head must be saved with the adapter"
    unchanged = [k for k in final if torch.equal(mid[k], final[k])]
    assert not unchanged, unchanged


def test_eval_rm_json_and_length_rule(toy_rm, toy_pairs):
    proc = run_cli_subprocess("eval-rm", toy_rm, "--data", toy_pairs, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["pairs"] == 24 and result["accuracy"] == 1.0
    assert result["length_rule_accuracy"] == 0.0  # "terrible" is longer than "good"
    assert set(result["accuracy_by_score_gap"]) <= {"1", "2", "3+"}


def test_score_mode_round_trip(toy_rm):
    lines = [{"question": "coffee roast?", "response": "grind beans good", "id": 1},
             {"question": "coffee roast?", "response": "grind beans terrible", "id": 2}]
    proc = run_cli_subprocess("eval-rm", toy_rm, "--score", input="".join(json.dumps(x) + "\n" for x in lines))
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["id"] for o in out] == [1, 2]
    assert out[0]["reward"] > out[1]["reward"]


def test_bad_inputs(tiny_model_dir, toy_rm, toy_pairs, tmp_path, run_cli):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"question": ["q"], "response_j": ["a"]}), tmp_path / "reward.parquet")
    result = run_cli("train-rm", "--model", tiny_model_dir, "--data", tmp_path, "--output", tmp_path / "o")
    assert result.exit_code == 1 and "lacks column(s) response_k" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    pq.write_table(pa.table({"question": pa.array([], pa.string()), "response_j": pa.array([], pa.string()),
                             "response_k": pa.array([], pa.string())}), empty / "reward.parquet")
    result = run_cli("train-rm", "--model", tiny_model_dir, "--data", empty, "--output", tmp_path / "o2")
    assert result.exit_code == 1 and "is empty" in result.stderr
    result = run_cli("eval-rm", tiny_model_dir, "--data", toy_pairs)
    assert result.exit_code == 1 and "not a reward model" in result.stderr
    proc = run_cli_subprocess("eval-rm", toy_rm, "--score", input='{"question": "x"}\n')
    assert proc.returncode == 1 and "'response'" in proc.stderr and "Traceback" not in proc.stderr


def test_saved_adapter_reproduces_training_rewards(toy_rm, toy_pairs, run_cli):
    """reward_stats.json was computed in memory after training; reloading the saved adapter gives the same rewards."""
    result = run_cli("eval-rm", toy_rm, "--data", toy_pairs, "--split", "reward", "--max-length", "64", "--json")
    assert result.exit_code == 0, result
    stats = json.loads((toy_rm / "reward_stats.json").read_text())
    ev = json.loads(result.stdout)
    assert ev["pairs"] == 64 and stats["n"] == 2 * 64
    assert ev["reward_mean"] == pytest.approx(stats["mean"], abs=1e-4)
    assert ev["reward_std"] == pytest.approx(stats["std"], abs=1e-4)


def test_eval_rm_on_merged_and_8bit_models(toy_rm, toy_pairs, tmp_path, run_cli):
    adapter = json.loads(run_cli("eval-rm", toy_rm, "--data", toy_pairs, "--json").stdout)
    merged = tmp_path / "merged"
    assert run_cli("merge", toy_rm, "--output", merged).exit_code == 0
    assert (merged / "reward_stats.json").is_file()
    result = run_cli("eval-rm", merged, "--data", toy_pairs, "--json")
    assert result.exit_code == 0, result
    assert json.loads(result.stdout)["reward_mean"] == pytest.approx(adapter["reward_mean"], abs=1e-4)
    result = run_cli("eval-rm", toy_rm, "--data", toy_pairs, "--load-in-8bit", "--json")
    assert result.exit_code == 0, result
    q8 = json.loads(result.stdout)
    assert q8["accuracy"] == 1.0 and q8["mean_margin"] == pytest.approx(adapter["mean_margin"], rel=0.2)


def test_sft_adapter_is_merged_into_the_classifier(random_lora_adapter, tiny_model_dir, toy_pairs):
    from transformers import AutoModelForCausalLM

    from stackllama_cli.models.load import load_causal_lm
    from stackllama_cli.models.resolve import resolve_model
    from stackllama_cli.stages.reward import RewardConfig, build_classifier

    spec = resolve_model(random_lora_adapter)
    rm = build_classifier(RewardConfig(model=str(random_lora_adapter), data=str(toy_pairs)), spec, pad_token_id=0)
    sft = load_causal_lm(spec)  # base + SFT adapter, merged
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    sft_weights, base_weights = sft.model.state_dict(), base.model.state_dict()
    changed = [k for k, v in rm.model.state_dict().items() if not torch.equal(v, base_weights[k])]
    assert changed, "the SFT adapter was not merged into the reward model's decoder"
    for k, v in rm.model.state_dict().items():
        torch.testing.assert_close(v, sft_weights[k])


def test_train_rm_on_an_sft_adapter_with_a_time_budget(random_lora_adapter, toy_pairs, tmp_path, run_cli):
    out = tmp_path / "rm"
    result = run_cli("train-rm", "--model", random_lora_adapter, "--data", toy_pairs, "--output", out,
                     "--max-steps", "50", "--max-minutes", "0.0001", "--eval-pairs", "0", "--stats-pairs", "16",
                     "--max-length", "64", "--json")
    assert result.exit_code == 0, result
    summary = json.loads(result.stdout)
    assert summary["stopped_by_time_budget"] and summary["steps"] == 1
    assert (out / "checkpoints" / "checkpoint-1").is_dir()  # saved where it stopped, so --resume can go on
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(random_lora_adapter.resolve()) and config["task_type"] == "SEQ_CLS"
    # eval-rm loads base -> SFT merged -> reward adapter and reproduces the in-training rewards
    result = run_cli("eval-rm", out, "--data", toy_pairs, "--split", "reward", "--limit", "16", "--json")
    assert result.exit_code == 0, result
    assert json.loads(result.stdout)["reward_mean"] == pytest.approx(summary["reward_mean"], abs=1e-4)


def test_train_rm_rejects_a_reward_adapter_as_model(toy_rm, toy_pairs, tmp_path, run_cli):
    result = run_cli("train-rm", "--model", toy_rm, "--data", toy_pairs, "--output", tmp_path / "o")
    assert result.exit_code == 1 and "SEQ_CLS adapter" in result.stderr and "Traceback" not in result.stderr


def test_time_budget_under_two_processes(tiny_model_dir, toy_pairs, tmp_path):
    """Both DDP ranks stop at the same step (else the run hangs in an all-reduce); stdout gets one JSON summary."""
    out = tmp_path / "rm"
    proc = run_cli_subprocess("train-rm", "--model", tiny_model_dir, "--data", toy_pairs, "--output", out,
                              "--cpu-processes", "2", "--max-steps", "500", "--max-minutes", "0.02",
                              "--max-length", "64", "--eval-pairs", "8", "--stats-pairs", "8", "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # exactly one document
    assert summary["stopped_by_time_budget"] and 0 < summary["steps"] < 500
    assert (out / "checkpoints" / f"checkpoint-{summary['steps']}").is_dir()


def test_eval_rm_split_across_two_processes_matches_one(toy_rm, toy_pairs):
    """Each rank scores its share of the pairs; gathered in order, the metrics equal a one-process run."""
    one = run_cli_subprocess("eval-rm", toy_rm, "--data", toy_pairs, "--json")
    two = run_cli_subprocess("eval-rm", toy_rm, "--data", toy_pairs, "--json", "--cpu-processes", "2", timeout=300)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    single, split = json.loads(one.stdout), json.loads(two.stdout)  # json.loads: exactly one document
    assert split["pairs"] == single["pairs"] == 24
    for key in ("accuracy", "length_rule_accuracy", "accuracy_by_score_gap"):
        assert split[key] == single[key], key
    for key in ("mean_margin", "reward_mean", "reward_std"):
        assert split[key] == pytest.approx(single[key], abs=1e-5), key


def test_eval_rm_rejects_a_negative_limit_and_a_tiny_max_length(toy_rm, toy_pairs, run_cli):
    """--limit -3 printed a NaN report with exit 0; --max-length 1 scored every text as a lone EOS."""
    from stackllama_cli.core.errors import UsageError

    assert UsageError.exit_code == 2
    result = run_cli("eval-rm", toy_rm, "--data", toy_pairs, "--limit", "-3", "--json")
    assert result.exit_code == 2 and "--limit" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("eval-rm", toy_rm, "--data", toy_pairs, "--max-length", "1", "--json")
    assert result.exit_code == 2 and "--max-length" in result.stderr and "Traceback" not in result.stderr


def test_eval_rm_reports_balanced_pairs_intervals_and_length_correlation(toy_rm, toy_pairs, run_cli):
    result = run_cli("eval-rm", toy_rm, "--data", toy_pairs, "--json")
    assert result.exit_code == 0, result
    ev = json.loads(result.stdout)
    # every toy pair is length-balanced: the answers differ only in "good" vs "terrible"
    assert ev["balanced_pairs"] == 24 and ev["balanced_accuracy"] == 1.0
    low, high = ev["balanced_accuracy_ci95"]
    assert 0.5 < low < 1.0 == high
    assert ev["accuracy_ci95"][0] > 0.5 and ev["length_rule_ci95"][1] < 0.5
    assert -1.0 <= ev["reward_length_spearman"] < 0  # the longer ("terrible") answer gets the lower reward
    result = run_cli("eval-rm", toy_rm, "--data", toy_pairs)
    assert "length-balanced" in result.stderr and "[" in result.stderr


def test_time_budget_covers_the_scoring_after_training(toy_pairs, tiny_model_dir, tmp_path, run_cli):
    """After the budget, evaluation and reward statistics used to run in full (11+ minutes past a 12-minute budget
    on SmolLM2); now they are sized to what is left."""
    out = tmp_path / "rm"
    result = run_cli("train-rm", "--model", tiny_model_dir, "--data", toy_pairs, "--output", out, "--max-steps", "50",
                     "--max-minutes", "0.0001", "--eval-pairs", "24", "--stats-pairs", "64", "--max-length", "64",
                     "--json")
    assert result.exit_code == 0, result
    assert "to fit the budget" in result.stderr
    stats = json.loads((out / "reward_stats.json").read_text())
    assert stats["n"] == 2 * 16  # shrunk to the minimum of 16 pairs, not 64
    summary = json.loads(result.stdout)
    assert summary["steps"] == 1 and "eval_accuracy" not in summary


def test_margin_score_gap_trains(toy_pairs, tiny_model_dir, tmp_path, run_cli):
    out = tmp_path / "rm"
    result = run_cli("train-rm", "--model", tiny_model_dir, "--data", toy_pairs, "--output", out, "--margin",
                     "score-gap", "--max-steps", "4", "--save-steps", "2", "--logging-steps", "1", "--batch-size", "8",
                     "--learning-rate", "3e-3", "--warmup-steps", "0", "--eval-pairs", "0", "--stats-pairs", "8",
                     "--max-length", "64", "--json")
    assert result.exit_code == 0, result
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    # score gaps of 1-3 as margins: the loss starts above log 2, the zero-margin value
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses) and losses[0] > 0.8
    mid = load_safetensors(out / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")
    final = load_safetensors(out / "adapter_model.safetensors")
    assert not [k for k in final if torch.equal(mid[k], final[k])]
    result = run_cli("train-rm", "--model", tiny_model_dir, "--data", toy_pairs, "--output", tmp_path / "o",
                     "--margin", "gap")
    assert result.exit_code == 2 and "--margin" in result.stderr


@pytest.fixture(scope="module")
def toy_probe(tiny_model_dir, toy_pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "reward"
    run_ok("train-rm", "--model", tiny_model_dir, "--data", toy_pairs, "--output", out,
           "--method", "probe", "--max-length", "64", "--batch-size", "8", "--json")
    return out


def test_probe_learns_the_marker(toy_probe):
    summary = json.loads((toy_probe / "reward_summary.json").read_text())
    assert summary["method"] == "probe" and summary["pairs_seen"] == 64
    assert summary["eval_accuracy"] == 1.0 and summary["train_accuracy"] == 1.0
    assert math.isfinite(summary["train_loss"]) and summary["train_loss"] < 0.5
    weights = load_safetensors(toy_probe / "adapter_model.safetensors")
    score = [v for k, v in weights.items() if "score" in k]
    assert len(score) == 1 and score[0].abs().sum() > 0  # the fitted head
    assert all(not v.any() for k, v in weights.items() if "lora_B" in k)  # the decoder is left as it was


def test_probe_is_a_reward_model_for_eval_rm(toy_probe, toy_pairs, run_cli):
    """eval-rm loads the probe like any train-rm output and reads the same rewards it was fitted to."""
    summary = json.loads((toy_probe / "reward_summary.json").read_text())
    result = run_cli("eval-rm", toy_probe, "--data", toy_pairs, "--max-length", "64", "--json")
    assert result.exit_code == 0, result
    ev = json.loads(result.stdout)
    assert ev["accuracy"] == 1.0
    assert ev["reward_mean"] == pytest.approx(summary["eval_reward_mean"], abs=1e-3)
    assert ev["mean_margin"] == pytest.approx(summary["eval_mean_margin"], rel=1e-3)


def test_a_new_score_head_starts_at_zero(tiny_model_dir, toy_pairs):
    """A randomly initialised head (std 0.02 x hidden-state norm ~47 on SmolLM2: reward noise ~0.9) outweighed
    what 66 steps at 1e-4 could learn, and its random direction decided the held-out accuracy (0.39 on beer).
    Started at zero, every pair scores 0 and what the head learns is all signal."""
    from stackllama_cli.models.resolve import resolve_model
    from stackllama_cli.stages.reward import RewardConfig, build_classifier

    rm = build_classifier(RewardConfig(model=str(tiny_model_dir), data=str(toy_pairs)), resolve_model(tiny_model_dir),
                          pad_token_id=0)
    assert rm.score.weight.abs().sum() == 0
