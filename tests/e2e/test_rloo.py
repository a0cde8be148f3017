"""rloo on the tiny LLaMA: our reward model as a callable, every LoRA tensor trains, finite metrics, resume, errors."""

import json
import math
import shutil

import pytest
import torch

from tests.conftest import load_safetensors, records, run_ok

TINY_ARGS = ["--max-steps", "4", "--batch-size", "4", "--num-generations", "2", "--max-new-tokens", "12",
             "--save-steps", "2", "--logging-steps", "1", "--log-samples", "2", "--warmup-steps", "0",
             "--learning-rate", "5e-3", "--seed", "3"]


@pytest.fixture(scope="module")
def rloo_run(tiny_model_dir, tiny_rm, sample_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("rloo") / "run"
    run_ok("rloo", "--model", tiny_model_dir, "--reward-model", tiny_rm, "--data", sample_data_dir,
           "--output", out, *TINY_ARGS)
    return out


def test_rloo_outputs_and_finite_metrics(rloo_run, tiny_model_dir):
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "metrics.jsonl", "rloo.png",
                 "samples.jsonl", "stackllama_config.json", "rloo_summary.json"):
        assert (rloo_run / name).is_file(), name
    assert json.loads((rloo_run / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        tiny_model_dir.resolve())
    rows = [r for r in records(rloo_run / "metrics.jsonl") if "loss" in r]  # (the last line: the run's totals)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        for key in ("loss", "rm_score", "kl", "degenerate_rate", "entropy", "completions/mean_length"):
            assert r[key] is not None and math.isfinite(r[key]), (key, r)
        assert 1 <= r["completions/mean_length"] <= 12 and 0 <= r["degenerate_rate"] <= 1
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy starts as the reference
    assert any(abs(r["kl"]) > 1e-6 for r in rows[1:])  # and moves away from it
    samples = records(rloo_run / "samples.jsonl")
    assert {s["step"] for s in samples} == {1, 2, 4} and all(isinstance(s["reward"], float) for s in samples)
    summary = json.loads((rloo_run / "rloo_summary.json").read_text())
    assert summary["steps"] == 4 and summary["prompts"] == 3 and math.isfinite(summary["rm_score_last_quarter"])


def test_rloo_trains_every_lora_tensor(rloo_run):
    mid = load_safetensors(rloo_run / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")
    final = load_safetensors(rloo_run / "adapter_model.safetensors")
    assert mid.keys() == final.keys() and len(final) >= 2 * 7 * 2
    unchanged = [k for k in final if torch.equal(mid[k], final[k])]
    assert not unchanged, f"LoRA tensors that did not train between steps 2 and 4: {unchanged}"


def test_reward_is_our_reward_model_on_the_train_rm_format(tiny_rm, tiny_model_dir):
    """The callable scores exactly what eval-rm scores (the recipe's example, EOS last) and flags degenerate answers."""
    from stackllama_cli.data.prompts import format_prompt
    from stackllama_cli.stages.eval_rm import load_scorer, score_answers
    from stackllama_cli.stages.ppo.reward import load_reward
    from stackllama_cli.stages.rloo import RewardModelScorer, RlooConfig

    cfg = RlooConfig(model=str(tiny_model_dir), reward_model=str(tiny_rm), degenerate_penalty=1.0,
                     degenerate_stop_rate=0.4)
    model, tokenizer, stats = load_reward(cfg, torch.device("cpu"))
    scorer = RewardModelScorer(cfg, model, tokenizer, stats, None)
    questions = ["What is a stout?", "How do I grind coffee?"]
    answers = [" A dark beer. ", "```\n" * 8]
    logged = {}
    shaped = scorer(prompts=[format_prompt(q) for q in questions], completions=answers,
                    completion_ids=[[1, 2, 3], [4] * 16], question=questions,
                    log_metric=lambda name, value: logged.update({name: value}))
    rm, rm_tok = load_scorer(str(tiny_rm))
    expected = score_answers(rm, rm_tok, questions, answers)
    assert shaped[0] == pytest.approx(expected[0], abs=1e-5)
    assert shaped[1] == pytest.approx(expected[1] - 1.0, abs=1e-5)  # fence run: degenerate, penalised
    assert logged["degenerate_rate"] == 0.5 and scorer.streak == 1
    assert logged["rm_score"] == pytest.approx(sum(expected) / 2, abs=1e-5)


def test_degenerate_streak_stops_training():
    from types import SimpleNamespace

    from stackllama_cli.stages.rloo import degenerate_stop_callback

    scorer = SimpleNamespace(streak=2)
    callback = degenerate_stop_callback(scorer, patience=3)
    control = SimpleNamespace(should_training_stop=False, should_save=False)
    callback.on_step_end(None, SimpleNamespace(global_step=5), control)
    assert not control.should_training_stop
    scorer.streak = 3
    callback.on_step_end(None, SimpleNamespace(global_step=6), control)
    assert control.should_training_stop and control.should_save and callback.stopped_at == 6


def test_rloo_resume(rloo_run, tiny_model_dir, tiny_rm, sample_data_dir, tmp_path, run_cli):
    cut = tmp_path / "cut"
    shutil.copytree(rloo_run, cut)
    for entry in list(cut.iterdir()):  # a crash after the step-2 checkpoint
        if entry.name not in ("checkpoints", "metrics.jsonl", "samples.jsonl"):
            entry.unlink() if entry.is_file() else shutil.rmtree(entry)
    shutil.rmtree(cut / "checkpoints" / "checkpoint-4")
    resumed = run_cli("rloo", "--model", tiny_model_dir, "--reward-model", tiny_rm, "--data", sample_data_dir,
                      "--output", cut, *TINY_ARGS, "--resume", "--json")
    assert resumed.exit_code == 0, resumed
    assert json.loads(resumed.stdout)["steps"] == 4
    steps = [r["step"] for r in records(cut / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4]  # the log reads as one run
    a, b = load_safetensors(rloo_run / "adapter_model.safetensors"), load_safetensors(cut / "adapter_model.safetensors")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_rloo_bad_inputs(tiny_model_dir, tiny_rm, sample_data_dir, tmp_path, run_cli):
    base = ["rloo", "--model", tiny_model_dir, "--data", sample_data_dir, "--output", tmp_path / "o"]
    result = run_cli(*base, "--reward-model", tiny_rm, "--num-generations", "1")
    assert result.exit_code == 1 and "--num-generations must be at least 2" in result.stderr
    result = run_cli(*base, "--reward-model", tiny_rm, "--batch-size", "6", "--num-generations", "4")
    assert result.exit_code == 1 and "multiple of --num-generations" in result.stderr
    result = run_cli(*base, "--reward-model", tiny_model_dir)
    assert result.exit_code == 1 and "not a reward model" in result.stderr
    result = run_cli(*base, "--reward-model", tmp_path / "missing")
    assert result.exit_code == 1 and "missing" in result.stderr
    result = run_cli("rloo", "--model", tiny_rm, "--reward-model", tiny_rm, "--data", sample_data_dir,
                     "--output", tmp_path / "o2")
    assert result.exit_code == 1 and "SEQ_CLS adapter" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
