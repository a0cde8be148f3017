"""compare on the tiny LLaMA: same seeds -> same answers, KL, the JSON, the files, one-line errors."""

import json

import pytest


def test_compare_end_to_end(tiny_model_dir, random_lora_adapter, tiny_rm, sample_data_dir, tmp_path, run_cli):
    out = tmp_path / "cmp"
    result = run_cli("compare", tiny_model_dir, random_lora_adapter, tiny_model_dir, "--labels", "base,lora,again",
                     "--reward-model", tiny_rm, "--judge", tiny_rm, "--data", sample_data_dir, "--limit", "6",
                     "--max-new-tokens", "8", "--resamples", "200", "--output", out, "--json")
    assert result.exit_code == 0, result
    doc = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert doc["questions"] == 6 and [m["label"] for m in doc["models"]] == ["base", "lora", "again"]
    base, lora, again = doc["models"]
    for m in doc["models"]:
        for key in ("reward_mean", "win_rate", "lc_win_rate", "length_mean", "degenerate_share", "distinct_2",
                    "kl_to_first", "eos_rate", "judge_reward_mean"):
            assert isinstance(m[key], float), (m["label"], key)
        lo, hi = m["reward_ci"]
        assert lo <= m["reward_mean"] <= hi
    # the same model with the same seeds gives the same answers: ties everywhere, no KL
    # (scored in other batches, the same text's reward can move in the 8th digit: a tie still)
    assert again["win_rate"] == again["lc_win_rate"] == 0.5
    assert again["reward_diff_vs_first"] == pytest.approx(0.0, abs=1e-6)
    assert again["reward_mean"] == pytest.approx(base["reward_mean"], abs=1e-6)
    assert again["kl_to_first"] == pytest.approx(0.0, abs=1e-6)
    assert lora["kl_to_first"] > 0.01 and "lora vs base: reward" in lora["verdict"]
    assert lora["judge_agreement"] in (None, 1.0)  # the judge is the same reward model
    assert doc["length_control"]["method"] == "reward residual after a linear fit on length"
    rows = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert len(rows) == 18 and {r["label"] for r in rows} == {"base", "lora", "again"}
    by = {(r["label"], r["question"]): r for r in rows}
    for r in rows:
        assert isinstance(r["reward"], float) and r["reward"] == r["judge_reward"] and r["length"] >= 0
        assert r["label"] == "lora" or r["response"] == by[("base", r["question"])]["response"]
        assert "_ids" not in r
    assert json.loads((out / "compare.json").read_text()) == doc
    assert (out / "reward_vs_length.png").stat().st_size > 1000
    assert "LC win" in result.stderr and "lora vs base" in result.stderr


def test_compare_questions_file_one_model(tiny_model_dir, tiny_rm, tmp_path, run_cli):
    questions = tmp_path / "q.jsonl"
    questions.write_text('How do I store coffee?\n{"question": "What is a stout?", "id": 7}\n\n')
    result = run_cli("compare", tiny_model_dir, "-r", tiny_rm, "--questions", questions, "--max-new-tokens", "4",
                     "--no-kl", "--resamples", "100", "--json")
    assert result.exit_code == 0, result
    doc = json.loads(result.stdout)
    assert doc["questions"] == 2 and doc["models"][0]["kl_to_first"] is None
    assert doc["kl"]["note"] == "not computed (--no-kl)" and doc["models"][0]["label"] == tiny_model_dir.name


def test_compare_bad_inputs(tiny_model_dir, tiny_rm, sample_data_dir, tmp_path, run_cli):
    common = ["-r", tiny_rm, "--data", sample_data_dir, "--limit", "2", "--max-new-tokens", "2"]
    result = run_cli("compare", tiny_model_dir, tiny_model_dir, *common, "--labels", "only-one")
    assert result.exit_code == 2 and "--labels" in result.stderr
    result = run_cli("compare", tmp_path / "missing", *common)
    assert result.exit_code == 1 and "missing" in result.stderr
    result = run_cli("compare", tiny_model_dir, "-r", tiny_model_dir, "--data", sample_data_dir)
    assert result.exit_code == 1 and "not a reward model" in result.stderr
    result = run_cli("compare", tiny_rm, *common)
    assert result.exit_code == 1 and "SEQ_CLS adapter" in result.stderr
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep")
    result = run_cli("compare", tiny_model_dir, *common, "--output", tmp_path / "taken")
    assert result.exit_code == 1 and "--overwrite" in result.stderr
    result = run_cli("compare", tiny_model_dir, *common[:2], "--questions", tmp_path / "nope.jsonl")
    assert result.exit_code == 1 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
