"""sft on the tiny LLaMA: trains every LoRA tensor, finite losses, outputs, resume; slow run on SmolLM2."""

import json
import math
import shutil

import pytest
import torch

from tests.conftest import load_safetensors

TINY_ARGS = ["--max-steps", "4", "--seq-length", "128", "--batch-size", "2", "--save-steps", "2",
             "--logging-steps", "1", "--eval-steps", "2", "--learning-rate", "5e-3", "--warmup-steps", "0"]


def test_sft_trains_every_lora_tensor(tiny_model_dir, sample_data_dir, tmp_path, run_cli):
    out = tmp_path / "sft"
    result = run_cli("sft", "--model", tiny_model_dir, "--data", sample_data_dir, "--output", out, *TINY_ARGS,
                     "--json")
    assert result.exit_code == 0, result
    summary = json.loads(result.stdout)
    assert summary["steps"] == 4 and math.isfinite(summary["train_loss"]) and math.isfinite(summary["eval_loss"])
    assert summary["non_padding_fraction"] == 1.0  # bfd packing is padding-free
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "metrics.jsonl", "loss.png",
                 "stackllama_config.json", "sft_summary.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        tiny_model_dir.resolve())
    mid = load_safetensors(out / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")
    final = load_safetensors(out / "adapter_model.safetensors")
    assert mid.keys() == final.keys() and len(final) >= 2 * 7 * 2  # A and B for 7 linear layers x 2 layers
    unchanged = [k for k in final if torch.equal(mid[k], final[k])]
    assert not unchanged, f"LoRA tensors that did not train between steps 2 and 4: {unchanged}"
    assert all(final[k].abs().sum() > 0 for k in final if "lora_B" in k)  # B starts at zero
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in records if "loss" in r)


def test_sft_resume_matches_uninterrupted_run(tiny_model_dir, sample_data_dir, tmp_path, run_cli):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run_cli("sft", "--model", tiny_model_dir, "--data", sample_data_dir, "--output", full,
                   *TINY_ARGS).exit_code == 0
    assert run_cli("sft", "--model", tiny_model_dir, "--data", sample_data_dir, "--output", cut,
                   *TINY_ARGS).exit_code == 0
    # simulate a crash after the step-2 checkpoint: only checkpoint-2 remains
    for entry in list(cut.iterdir()):
        if entry.name != "checkpoints":
            entry.unlink() if entry.is_file() else shutil.rmtree(entry)
    shutil.rmtree(cut / "checkpoints" / "checkpoint-4")
    again = run_cli("sft", "--model", tiny_model_dir, "--data", sample_data_dir, "--output", cut, *TINY_ARGS)
    assert again.exit_code == 1 and "--resume" in again.stderr  # never clobbers a run silently
    resumed = run_cli("sft", "--model", tiny_model_dir, "--data", sample_data_dir, "--output", cut, *TINY_ARGS,
                      "--resume")
    assert resumed.exit_code == 0, resumed
    a = load_safetensors(full / "adapter_model.safetensors")
    b = load_safetensors(cut / "adapter_model.safetensors")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_sft_bad_inputs(tiny_model_dir, tmp_path, run_cli):
    result = run_cli("sft", "--model", tiny_model_dir, "--data", tmp_path / "nope", "--output", tmp_path / "o")
    assert result.exit_code == 1 and "does not exist" in result.stderr
    result = run_cli("sft", "--model", tiny_model_dir, "--data", tmp_path, "--output", tmp_path / "o",
                     "--packing", "zigzag")
    assert result.exit_code == 1 and "--packing" in result.stderr
    result = run_cli("sft", "--model", tiny_model_dir, "--data", tmp_path, "--output", tmp_path / "o2",
                     "--resume")
    assert result.exit_code == 1 and "nothing to resume" in result.stderr


@pytest.mark.parametrize("packing", ["wrapped", "none"])
def test_sft_packing_modes(tiny_model_dir, sample_data_dir, tmp_path, run_cli, packing):
    out = tmp_path / packing
    result = run_cli("sft", "--model", tiny_model_dir, "--data", sample_data_dir, "--output", out,
                     "--packing", packing, "--max-steps", "2", "--seq-length", "512", "--batch-size", "4", "--json")
    assert result.exit_code == 0, result
    fraction = json.loads(result.stdout)["non_padding_fraction"]
    # wrapped chunks are full except the very last one; padding to the longest text wastes much more
    assert (fraction > 0.9) if packing == "wrapped" else (0.2 < fraction < 0.9)


@pytest.mark.slow
def test_sft_on_real_smollm2_and_beer(beer_posts, tmp_path, run_cli):
    data = tmp_path / "beer"
    assert run_cli("prepare-data", beer_posts, "--output", data).exit_code == 0
    out = tmp_path / "sft"
    result = run_cli("sft", "--model", "smollm2-135m", "--data", data, "--output", out, "--max-steps", "2",
                     "--seq-length", "128", "--batch-size", "2", "--eval-samples", "4", "--json")
    assert result.exit_code == 0, result
    summary = json.loads(result.stdout)
    assert math.isfinite(summary["train_loss"]) and summary["train_loss"] < 6  # a pretrained model, not random
    final = load_safetensors(out / "adapter_model.safetensors")
    assert all(final[k].abs().sum() > 0 for k in final if "lora_B" in k)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "smollm2-135m"
