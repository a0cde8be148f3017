"""ppo on the tiny LLaMA: what trains, what must not, exact resume, and clear errors."""

import json
import math
import shutil

import pytest
import torch

from tests.conftest import load_safetensors, records, run_ok

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
    sft, rm = models
    out = tmp_path_factory.mktemp("ppo") / "run"
    run_ok("ppo", "--model", sft, "--reward-model", rm, "--data", sample_data_dir,
           "--output", out, *PPO_ARGS)
    return out


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


TIMINGS = ("time", "time_generate", "time_score", "time_experience", "time_optimise")


def without_timings(rows):
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]


def crash_after(run, dest, step):
    """A copy of a finished run as a crash right after its step-`step` checkpoint would leave it: the logs
    up to that step, the checkpoints up to it, no final outputs."""
    shutil.copytree(run, dest)
    for entry in dest.iterdir():
        if entry.name not in ("checkpoints", "metrics.jsonl", "samples.jsonl", "stackllama_config.json"):
            entry.unlink() if entry.is_file() else shutil.rmtree(entry)
    for ckpt in (dest / "checkpoints").iterdir():
        if int(ckpt.name.split("-")[1]) > step:
            shutil.rmtree(ckpt)
    for name in ("metrics.jsonl", "samples.jsonl"):
        if (dest / name).is_file():
            kept = [json.dumps(r) for r in records(dest / name) if r["step"] <= step]
            (dest / name).write_text("".join(line + "\n" for line in kept))
    return dest


def assert_same_run(full, resumed):
    """metrics.jsonl (timings aside), samples.jsonl and the final weights of two runs are identical."""
    a, b = without_timings(records(full / "metrics.jsonl")), without_timings(records(resumed / "metrics.jsonl"))
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b):
        assert x == y, {k: (x[k], y.get(k)) for k in x if x[k] != y.get(k)}
    samples = full / "samples.jsonl"
    assert (without_timings(records(resumed / "samples.jsonl")) if samples.is_file() else None) == \
        (without_timings(records(samples)) if samples.is_file() else None)
    for name in ("adapter_model.safetensors", "value_head.safetensors"):
        a, b = load_safetensors(full / name), load_safetensors(resumed / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_resume_repeats_the_uninterrupted_run(ppo_run, models, sample_data_dir, tmp_path, run_cli):
    """Killed right after the step-2 checkpoint and resumed, the run writes what the uninterrupted one did:
    the same metrics (the reward-spike flag and the degenerate streak included), the same samples, no more."""
    sft, rm = models
    state = json.loads((ppo_run / "checkpoints" / "step-2" / "state.json").read_text())["loop"]
    rows = records(ppo_run / "metrics.jsonl")
    assert state["reward_history"] == [rows[0]["reward_mean"], rows[1]["reward_mean"]]
    assert state["last_kl"] == rows[1]["kl"] and state["degenerate_streak"] == rows[1]["degenerate_streak"]
    assert [r["step"] for r in records(ppo_run / "samples.jsonl")] == [1] * 3 + [2] * 3 + [4] * 3
    cut = crash_after(ppo_run, tmp_path / "cut", 2)
    result = run_cli("ppo", "--model", sft, "--reward-model", rm, "--data", sample_data_dir, "--output", cut,
                     *PPO_ARGS, "--resume")
    assert result.exit_code == 0, result
    assert_same_run(ppo_run, cut)


def test_log_samples_zero_logs_none(models, sample_data_dir, tmp_path, run_cli):
    sft, rm = models
    out = tmp_path / "run"
    result = run_cli("ppo", "--model", sft, "--reward-model", rm, "--data", sample_data_dir, "--output", out,
                     "--steps", "1", "--batch-size", "2", "--mini-batch-size", "2", "--ppo-epochs", "1",
                     "--min-new-tokens", "4", "--max-new-tokens", "6", "--log-samples", "0")
    assert result.exit_code == 0, result
    assert not (out / "samples.jsonl").is_file() and "samples at step" not in result.stderr


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "gradient-checkpointing"])
def test_first_minibatch_ratio_is_one_with_lora_dropout(models, sample_data_dir, tmp_path, run_cli, checkpointing):
    """The update's forward is the rollout scorer's forward: with one mini-batch per step (the first), the
    ratio is exactly 1 even with LoRA dropout asked for, because dropout is off in both."""
    sft, rm = models
    out = tmp_path / "run"
    result = run_cli("ppo", "--model", sft, "--reward-model", rm, "--data", sample_data_dir, "--output", out,
                     "--steps", "2", "--batch-size", "2", "--mini-batch-size", "2", "--ppo-epochs", "1",
                     "--min-new-tokens", "4", "--max-new-tokens", "8", "--lora-dropout", "0.1", "--log-samples",
                     "0", "--learning-rate", "1e-2", *(["--gradient-checkpointing"] if checkpointing else []))
    assert result.exit_code == 0, result
    for row in records(out / "metrics.jsonl"):
        assert row["ratio"] == 1.0 and row["approx_kl"] == 0.0 and row["clipfrac"] == 0.0, row


@pytest.fixture(scope="module")
def wide_policy(tiny_model_dir, tmp_path_factory):
    """The tiny LLaMA at hidden size 64 (same tokenizer): bitsandbytes' 4-bit CPU kernels pack weights in blocks
    of 64 input features and fail on the 32-wide one."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("wide")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.save_pretrained(out)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=None, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    return out


@pytest.mark.parametrize("bits", ["8", "4"])
def test_quantized_policy_trains_and_resumes(bits, wide_policy, models, sample_data_dir, tmp_path, run_cli):
    """bitsandbytes runs on the CPU here: the LoRA adapter on an 8-bit/4-bit base trains, and resumes exactly."""
    rm = models[1]
    args = ["ppo", "--model", wide_policy, "--reward-model", rm, "--data", sample_data_dir, "--steps", "3",
            "--save-every", "1", "--batch-size", "2", "--mini-batch-size", "2", "--ppo-epochs", "2",
            "--min-new-tokens", "4", "--max-new-tokens", "8", "--learning-rate", "1e-2", "--log-samples", "2",
            f"--load-in-{bits}bit"]
    out = tmp_path / "run"
    result = run_cli(*args, "--output", out)
    assert result.exit_code == 0, result
    for row in records(out / "metrics.jsonl"):
        assert all(math.isfinite(row[k]) for k in ("pg_loss", "vf_loss", "kl", "reward_mean")), row
    first = load_safetensors(out / "checkpoints" / "step-1" / "adapter" / "adapter_model.safetensors")
    final = load_safetensors(out / "adapter_model.safetensors")
    assert first and all(not torch.equal(first[k], final[k]) for k in final)
    cut = crash_after(out, tmp_path / "cut", 2)
    result = run_cli(*args, "--output", cut, "--resume")
    assert result.exit_code == 0, result
    assert_same_run(out, cut)


def test_strong_ppo_options_train_and_resume(models, sample_data_dir, tmp_path, run_cli):
    """Missing-EOS penalty, rewards standardised on the SFT policy's own samples, k3 KL in the loss, the value
    head from the reward model, a critic warm-up step, temperature 0.7: all run, and resume exactly."""
    sft, rm = models
    args = ["ppo", "--model", sft, "--reward-model", rm, "--data", sample_data_dir, "--steps", "3",
            "--save-every", "1", "--batch-size", "4", "--mini-batch-size", "2", "--ppo-epochs", "2",
            "--min-new-tokens", "4", "--max-new-tokens", "8", "--learning-rate", "1e-2", "--log-samples", "2",
            "--missing-eos-penalty", "1", "--reward-norm", "policy", "--kl-in-loss", "k3", "--kl-loss-coef", "0.1",
            "--value-init", "reward-model", "--critic-warmup", "1", "--temperature", "0.7"]
    out = tmp_path / "run"
    result = run_cli(*args, "--output", out)
    assert result.exit_code == 0, result
    assert "Reward scale from 4 SFT responses" in result.stderr
    stats = json.loads((out / "checkpoints" / "step-1" / "state.json").read_text())["loop"]["reward_stats"]
    assert stats["samples"] == 4 and stats["std"] > 0
    rows = records(out / "metrics.jsonl")
    assert [r["critic_warmup"] for r in rows] == [True, False, False]
    assert all(math.isfinite(r["kl_loss"]) for r in rows)
    warm = load_safetensors(out / "checkpoints" / "step-1" / "adapter" / "adapter_model.safetensors")
    lora_b = [k for k in warm if "lora_B" in k]
    assert lora_b and all(torch.count_nonzero(warm[k]) == 0 for k in lora_b)  # the policy did not move in warm-up
    final = load_safetensors(out / "adapter_model.safetensors")
    assert all(torch.count_nonzero(final[k]) > 0 for k in lora_b)
    cut = crash_after(out, tmp_path / "cut", 2)
    result = run_cli(*args, "--output", cut, "--resume")
    assert result.exit_code == 0, result
    assert "Reward scale from" not in result.stderr  # the scale comes from the checkpoint, not measured again
    assert_same_run(out, cut)


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
    assert result.exit_code == 2 and "multiple of --mini-batch-size x --grad-accum" in result.stderr
    result = run_cli("ppo", *base, "--reward-model", rm, "--output", tmp_path / "e", "--batch-size", "4",
                     "--grad-accum", "3")  # a window would span two PPO epochs
    assert result.exit_code == 2 and "(2 x 3)" in result.stderr
    result = run_cli("ppo", *base, "--reward-model", rm, "--output", tmp_path / "f", "--resume")
    assert result.exit_code == 1 and "nothing to resume" in result.stderr
