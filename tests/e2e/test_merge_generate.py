"""merge (causal-LM and reward adapters) and generate (batch JSONL and a real REPL in a pseudo-terminal)."""

import json
import os
import select
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, run_cli_subprocess


@pytest.fixture(scope="module")
def sft_adapter(tiny_model_dir, sample_data_dir, tmp_path_factory):
    from stackllama_cli.stages.sft import SftConfig, run

    out = tmp_path_factory.mktemp("sft") / "adapter"
    run(SftConfig(model=str(tiny_model_dir), data=str(sample_data_dir), output=str(out), max_steps=2,
                  seq_length=128, learning_rate=5e-3, warmup_steps=0))
    return out


def test_merge_causal_lm_adapter(sft_adapter, tmp_path, run_cli):
    out = tmp_path / "merged"
    result = run_cli("merge", sft_adapter, "--output", out, "--json")
    assert result.exit_code == 0, result
    info = json.loads(result.stdout)
    assert info["task"] == "CAUSAL_LM" and info["max_abs_logit_diff"] < 1e-4
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert not (out / "adapter_config.json").exists()
    again = run_cli("merge", sft_adapter, "--output", out)
    assert again.exit_code == 1 and "--overwrite" in again.stderr


def test_merge_reward_adapter_keeps_score_head(tiny_model_dir, tmp_path, run_cli):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    model.config.pad_token_id = AutoTokenizer.from_pretrained(tiny_model_dir).pad_token_id
    peft_model = get_peft_model(model, LoraConfig(r=4, task_type="SEQ_CLS", target_modules="all-linear",
                                                  init_lora_weights=False))
    with torch.no_grad():
        peft_model.base_model.model.score.modules_to_save["default"].weight.normal_()
    adapter = tmp_path / "rm"
    peft_model.save_pretrained(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tiny_model_dir)
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    (adapter / "reward_stats.json").write_text('{"mean": 0.5, "std": 2.0}')
    out = tmp_path / "rm-merged"
    result = run_cli("merge", adapter, "--output", out, "--json")
    assert result.exit_code == 0, result
    assert json.loads(result.stdout)["max_abs_logit_diff"] < 1e-4
    from transformers import AutoConfig

    merged_config = AutoConfig.from_pretrained(out)
    assert merged_config.architectures == ["LlamaForSequenceClassification"] and merged_config.num_labels == 1
    assert (out / "reward_stats.json").is_file()


def test_merge_rejects_a_full_model(tiny_model_dir, tmp_path, run_cli):
    result = run_cli("merge", tiny_model_dir, "--output", tmp_path / "x")
    assert result.exit_code == 1 and "not a LoRA adapter" in result.stderr


def test_generate_batch_jsonl_stdout_only(sft_adapter, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "What is a stout?", "id": 7}\n\nHow do I store coffee beans?\n')
    proc = run_cli_subprocess("generate", sft_adapter, "--input", questions, "--max-new-tokens", "6",
                              "--batch-size", "2", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["question"] for line in lines] == ["What is a stout?", "How do I store coffee beans?"]
    assert lines[0]["id"] == 7  # input fields are kept
    assert all(0 < line["response_tokens"] <= 6 and line["finish_reason"] in ("eos", "length") for line in lines)
    same = run_cli_subprocess("generate", sft_adapter, "--input", questions, "--max-new-tokens", "6",
                              "--batch-size", "2", "--seed", "1")
    assert same.stdout == proc.stdout  # seeded sampling is reproducible


def test_generate_bad_input(sft_adapter):
    proc = run_cli_subprocess("generate", sft_adapter, input='{"q": 1}\n')
    assert proc.returncode == 1 and "'question'" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli_subprocess("generate", sft_adapter, input="\n\n")
    assert proc.returncode == 1 and "no questions" in proc.stderr


def read_until(fd: int, marker: bytes, timeout: float = 60) -> bytes:
    buf = b""
    deadline = time.time() + timeout
    while marker not in buf:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.time()))
        if not ready:
            raise AssertionError(f"timed out waiting for {marker!r}; got {buf[-500:]!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def test_generate_repl_in_a_pseudo_terminal(sft_adapter):
    """A real interactive session: stdin is a TTY, so `generate` starts the chat REPL."""
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "stackllama_cli", "generate", str(sft_adapter),
                             "--max-new-tokens", "5"], stdin=slave, stdout=slave, stderr=slave, cwd=REPO,
                            env={**os.environ, "COLUMNS": "120"}, close_fds=True)
    os.close(slave)
    try:
        read_until(master, b"? ")
        os.write(master, b"/set temperature 0\n")
        assert b"temperature = 0.0" in read_until(master, b"? ")
        os.write(master, b"/set colour blue\n")
        assert b"unknown setting" in read_until(master, b"? ")
        os.write(master, b"What is a stout?\n")
        answer = read_until(master, b"? ")
        assert len(answer.strip()) > len(b"What is a stout?")
        os.write(master, b"/settings\n")
        assert b"max_new_tokens=5" in read_until(master, b"? ")
        os.write(master, b"\x04")  # Ctrl-D quits
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
