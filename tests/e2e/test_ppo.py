"""ppo on the tiny LLaMA: what trains, what must not, exact resume, and clear errors."""

import json
import math
import shutil

import pytest
import torch

from tests.conftest import load_safetensors

PPO_ARGS = ["--steps", "4", "--batch-size", "4", "--mini-batch-size", "2", "--ppo-epochs", "2",
            "--min-new-tokens", "6", "--max-new-tokens", "12", "--save-every", "2", "--log-samples", "2",
            "--learning-rate", "2e-3", "--seed", "3"]


@pytest.fixture(scope="module")
def models(tiny_model_dir, sample_data_dir, tmp_path_factory):
    """A tiny SFT adapter and a tiny reward adapter on top of it, as the real pipeline makes them."""
    from stackllama_cli.stages.reward import RewardConfig
    from stackllama_cli.stages.reward import run as run_rm
    from stackllama_cli.stages.sft import SftConfig
    from stackllama_cli.stages.sft import run as run_sft

    root = tmp_path_factory.mktemp("ppo-models")
    run_sft(SftConfig(model=str(tiny_model_dir), data=str(sample_data_dir), output=str(root / "sft"), max_steps=2,
                      seq_length=128))
    run_rm(RewardConfig(model=str(root / "sft"), data=str(sample_data_dir), output=str(root / "rm"), max_steps=2,
                        max_length=256, eval_pairs=0, stats_pairs=8))
    return root / "sft", root / "rm"


@pytest.fixture(scope="module")
def ppo_run(models, sample_data_dir, tmp_path_factory):
    from stackllama_cli.cli import main

    sft, rm = models
    out = tmp_path_factory.mktemp("ppo") / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["ppo", "--model", str(sft), "--reward-model", str(rm), "--data", str(sample_data_dir),
              "--output", str(out), *PPO_ARGS])
    assert exit_info.value.code in (0, None)
    return out


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_outputs_and_finite_metrics(ppo_run):
    for name in ("adapter_config.json", "adapter_model.safetensors", "value_head.safetensors", "metrics.jsonl",
                 "samples.jsonl", "ppo.png", "ppo_summary.json", "stackllama_config.json", "tokenizer.json"):
        assert (ppo_run / name).is_file(), name
    rows = records(ppo_run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        for key in ("reward_mean", "kl", "kl_k3", "beta", "entropy", "pg_loss", "vf_loss", "clipfrac",
                    "approx_kl", "response_length", "degenerate_rate", "negative_kl_share"):
            assert r[key] is not None and math.isfinite(r[key]), (key, r)
        assert r["kl_k3"] >= 0 and 1 <= r["response_length"] <= 12 and r["samples"] == 4
    assert rows[-1]["beta_next"] < 0.2  # KL far below the target of 6: the adaptive controller lowers beta
    assert records(ppo_run / "samples.jsonl")[0]["question"]


def test_lora_and_value_head_trained_reference_untouched(ppo_run, models, tiny_model_dir):
    from stackllama_cli.models.load import load_causal_lm
    from stackllama_cli.models.resolve import resolve_model
    from stackllama_cli.stages.ppo.math import logprobs_from_logits

    start = load_safetensors(ppo_run / "checkpoints" / "step-2" / "adapter" / "adapter_model.safetensors")
    final = load_safetensors(ppo_run / "adapter_model.safetensors")
    unchanged = [k for k in final if torch.equal(start[k], final[k])]
    assert not unchanged, unchanged
    v_start = load_safetensors(ppo_run / "checkpoints" / "step-2" / "value_head.safetensors")
    v_final = load_safetensors(ppo_run / "value_head.safetensors")
    assert all(not torch.equal(v_start[k], v_final[k]) for k in v_final)
    # the PPO adapter loads as a chain (tiny base -> SFT adapter -> PPO adapter) ...
    spec = resolve_model(str(ppo_run))
    assert spec.merged_adapters == (str(models[0].resolve()),)
    from peft import PeftModel

    sft_only = load_causal_lm(resolve_model(str(models[0])))
    policy = load_causal_lm(spec, merge_adapter=False)
    assert isinstance(policy, PeftModel)
    ids = torch.tensor([[5, 9, 13, 21, 34, 55]])
    with torch.no_grad():
        ref = sft_only(ids).logits
        with policy.disable_adapter():  # ... and with the PPO adapter off it is exactly the SFT model
            disabled = policy(ids).logits
        trained = policy(ids).logits
    assert torch.allclose(ref, disabled, atol=1e-5)
    assert not torch.allclose(logprobs_from_logits(trained, ids), logprobs_from_logits(ref, ids), atol=1e-4)


def test_resume_repeats_the_uninterrupted_run(ppo_run, models, sample_data_dir, tmp_path, run_cli):
    sft, rm = models
    cut = tmp_path / "cut"
    shutil.copytree(ppo_run, cut)
    for entry in cut.iterdir():  # as if the run died right after the step-2 checkpoint
        if entry.name not in ("checkpoints", "metrics.jsonl", "samples.jsonl", "stackllama_config.json"):
            entry.unlink() if entry.is_file() else shutil.rmtree(entry)
    result = run_cli("ppo", "--model", sft, "--reward-model", rm, "--data", sample_data_dir, "--output", cut,
                     *PPO_ARGS, "--resume")
    assert result.exit_code == 0, result
    full, resumed = records(ppo_run / "metrics.jsonl"), records(cut / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(full, resumed):
        for key in ("reward_mean", "kl", "beta_next", "pg_loss", "vf_loss", "response_length"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["step"], key)
    a, b = load_safetensors(ppo_run / "adapter_model.safetensors"), load_safetensors(cut / "adapter_model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_bad_inputs(models, tiny_model_dir, sample_data_dir, tmp_path, run_cli):
    sft, rm = models
    base = ["--model", sft, "--data", sample_data_dir, "--steps", "1", "--batch-size", "2", "--mini-batch-size", "2"]
    result = run_cli("ppo", *base, "--reward-model", tiny_model_dir, "--output", tmp_path / "a")
    assert result.exit_code == 1 and "not a reward model" in result.stderr
    result = run_cli("ppo", *base, "--reward-model", sft, "--output", tmp_path / "b")
    assert result.exit_code == 1 and "not a reward model" in result.stderr
    result = run_cli("ppo", *base, "--reward-model", rm, "--output", tmp_path / "c", "--max-prompt-length", "5")
    assert result.exit_code == 1 and "longer than --max-prompt-length" in result.stderr
    result = run_cli("ppo", "--model", sft, "--reward-model", rm, "--data", tmp_path, "--output", tmp_path / "d")
    assert result.exit_code == 1 and "no 'rl' split" in result.stderr
    result = run_cli("ppo", *base, "--reward-model", rm, "--output", tmp_path / "e", "--batch-size", "3")
    assert result.exit_code == 1 and "multiple of --mini-batch-size" in result.stderr
    result = run_cli("ppo", *base, "--reward-model", rm, "--output", tmp_path / "f", "--resume")
    assert result.exit_code == 1 and "nothing to resume" in result.stderr
