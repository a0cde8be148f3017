"""dpo on the tiny LLaMA: token ids, every LoRA tensor trains, finite losses, eval metrics, resume, errors."""

import json
import math
import shutil

import pytest
import torch

from tests.conftest import load_safetensors, run_ok

TINY_ARGS = ["--max-steps", "4", "--batch-size", "2", "--max-length", "160", "--max-prompt-length", "64",
             "--save-steps", "2", "--logging-steps", "1", "--eval-steps", "2", "--eval-pairs", "4",
             "--warmup-steps", "0", "--learning-rate", "5e-3"]


@pytest.fixture(scope="module")
def dpo_run(tiny_model_dir, sample_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo") / "run"
    run_ok("dpo", "--model", tiny_model_dir, "--data", sample_data_dir, "--output", out,
           *TINY_ARGS)
    return out


def test_token_ids_as_generation_sees_them(tiny_model_dir):
    """Prompt tokenised alone (as generate/ppo feed it), answer after it with EOS; long prompts keep their end."""
    import datasets
    from transformers import AutoTokenizer

    from stackllama_cli.data.prompts import format_prompt
    from stackllama_cli.stages.dpo import tokenize_preferences

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    eos = tok.eos_token_id
    long_q = "Why does coffee taste bitter? " * 20
    ds = datasets.Dataset.from_dict({"question": ["What is a stout?", long_q],
                                     "response_j": [" Stouts are dark. ", "Grind finer and brew longer " * 30],
                                     "response_k": ["No idea", "Bad"]})
    ids, counts = tokenize_preferences(ds, tok, max_length=96, max_prompt_length=32)
    assert ids["prompt_ids"][0] == tok(format_prompt("What is a stout?"))["input_ids"]
    # the answer brings its leading space (data/prompts.py): prompt + answer tokenise as the training text
    assert ids["chosen_ids"][0] == tok(" Stouts are dark.", add_special_tokens=False)["input_ids"] + [eos]
    assert ids["rejected_ids"][0][-1] == eos
    full_prompt = tok(format_prompt(long_q))["input_ids"]
    assert ids["prompt_ids"][1] == full_prompt[-32:]  # the end, with "Answer:", is kept
    assert tok.decode(ids["prompt_ids"][1]).endswith("\n\nAnswer:")
    assert len(ids["prompt_ids"][1]) + len(ids["chosen_ids"][1]) == 96 and ids["chosen_ids"][1][-1] != eos
    assert ids["rejected_ids"][1] == tok(" Bad", add_special_tokens=False)["input_ids"] + [eos]
    assert counts == {"prompts": 2, "prompts_cut": 1, "answers": 4, "answers_cut": 1}


def test_dpo_trains_every_lora_tensor(dpo_run, tiny_model_dir):
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "metrics.jsonl", "dpo.png",
                 "stackllama_config.json", "dpo_summary.json"):
        assert (dpo_run / name).is_file(), name
    config = json.loads((dpo_run / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (8, 16, 0.05)
    mid = load_safetensors(dpo_run / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")
    final = load_safetensors(dpo_run / "adapter_model.safetensors")
    assert mid.keys() == final.keys() and len(final) >= 2 * 7 * 2
    unchanged = [k for k in final if torch.equal(mid[k], final[k])]
    assert not unchanged, f"LoRA tensors that did not train between steps 2 and 4: {unchanged}"
    assert all(final[k].abs().sum() > 0 for k in final if "lora_B" in k)


def test_dpo_losses_and_eval_metrics(dpo_run):
    summary = json.loads((dpo_run / "dpo_summary.json").read_text())
    assert summary["steps"] == 4 and summary["train_pairs"] == 9 and summary["eval_pairs"] == 4
    for key in ("train_loss", "eval_loss", "eval_reward_accuracy", "eval_reward_margin"):
        assert math.isfinite(summary[key]), key
    assert 0.0 <= summary["eval_reward_accuracy"] <= 1.0
    rows = [json.loads(line) for line in (dpo_run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert train[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at the start
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["rewards/margins"]) for r in train)
    assert train[-1]["rewards/margins"] > 0  # the chosen answers gained on the rejected ones
    assert any("eval_rewards/accuracies" in r for r in rows)


def test_dpo_resume_matches_uninterrupted_run(dpo_run, tiny_model_dir, sample_data_dir, tmp_path, run_cli):
    cut = tmp_path / "cut"
    shutil.copytree(dpo_run, cut)
    for entry in list(cut.iterdir()):  # a crash after the step-2 checkpoint: only checkpoint-2 remains
        if entry.name != "checkpoints":
            entry.unlink() if entry.is_file() else shutil.rmtree(entry)
    shutil.rmtree(cut / "checkpoints" / "checkpoint-4")
    args = ["dpo", "--model", tiny_model_dir, "--data", sample_data_dir, "--output", cut, *TINY_ARGS]
    again = run_cli(*args)
    assert again.exit_code == 1 and "--resume" in again.stderr
    resumed = run_cli(*args, "--resume", "--json")
    assert resumed.exit_code == 0, resumed
    assert json.loads(resumed.stdout)["steps"] == 4
    a, b = load_safetensors(dpo_run / "adapter_model.safetensors"), load_safetensors(cut / "adapter_model.safetensors")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_dpo_bad_inputs(tiny_model_dir, sample_data_dir, tmp_path, run_cli):
    base = ["dpo", "--model", tiny_model_dir, "--output", tmp_path / "o"]
    result = run_cli(*base, "--data", tmp_path / "nope")
    assert result.exit_code == 1 and "does not exist" in result.stderr
    result = run_cli(*base, "--data", sample_data_dir, "--loss-type", "sigmoid,zigzag")
    assert result.exit_code == 1 and "--loss-type zigzag" in result.stderr
    result = run_cli(*base, "--data", sample_data_dir, "--max-length", "64", "--max-prompt-length", "64")
    assert result.exit_code == 1 and "--max-length must exceed" in result.stderr
    result = run_cli(*base, "--data", sample_data_dir, "--loss-type", "exo_pair")
    assert result.exit_code == 1 and "--label-smoothing" in result.stderr
    result = run_cli(*base, "--data", sample_data_dir, "--resume")
    assert result.exit_code == 1 and "nothing to resume" in result.stderr
    for r in (result,):
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("stage", ["dpo", "rloo"])
def test_start_model_is_loaded_with_the_attention_implementation_asked_for(tiny_model_dir, stage):
    """dpo and rloo take --attn-implementation like every training stage; their start model was loaded without it
    (the library's sdpa whatever was asked)."""
    from stackllama_cli.models.resolve import resolve_model
    from stackllama_cli.stages.dpo import DpoConfig
    from stackllama_cli.stages.rloo import RlooConfig
    from stackllama_cli.stages.start_model import load_start_model

    config = DpoConfig if stage == "dpo" else RlooConfig
    cfg = config(model=str(tiny_model_dir), attn_implementation="eager")
    model = load_start_model(cfg, resolve_model(cfg.model))
    assert model.config._attn_implementation == "eager"
