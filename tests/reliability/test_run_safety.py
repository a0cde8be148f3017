"""Never lose a run: safe --overwrite, resume after a kill at any moment, one writer per output, one-line
errors with the right exit codes. Each test reproduces a way a run or its output was lost or garbled."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli_subprocess

SFT_ARGS = ["--seq-length", "64", "--batch-size", "2", "--logging-steps", "1", "--eval-samples", "0",
            "--learning-rate", "5e-3", "--warmup-steps", "0"]
TIMING_KEYS = {"time", "train_runtime", "train_samples_per_second", "train_steps_per_second", "num_tokens"}


@pytest.fixture(scope="module")
def sft_run(tiny_model_dir, sample_data_dir, tmp_path_factory):
    """A finished tiny sft run (2 steps), and a merged reward model for the kind-mismatch tests."""
    out = tmp_path_factory.mktemp("safety") / "sft"
    result = run_cli_subprocess("sft", "--model", tiny_model_dir, "--data", sample_data_dir, "-o", out,
                                "--max-steps", "2", *SFT_ARGS)
    assert result.returncode == 0, result.stderr
    return out


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), stderr
    assert "Traceback" not in stderr, stderr
    return lines[-1]


# 1. --overwrite keeps the old run until the new one succeeds; an output that is an input is refused


def test_failed_overwrite_keeps_the_previous_run(sft_run, sample_data_dir):
    before = files_of(sft_run)
    result = run_cli_subprocess("sft", "--model", "no/such-model-dir/", "--data", sample_data_dir, "-o", sft_run,
                                "--overwrite", "--max-steps", "1", *SFT_ARGS)
    assert result.returncode == 1
    one_error_line(result.stderr)
    assert files_of(sft_run) == before
    assert not list(sft_run.parent.glob(f".{sft_run.name}.overwrite*"))  # no staging debris either


def test_output_that_is_an_input_is_a_usage_error(sft_run, sample_data_dir, tiny_model_dir):
    before = files_of(sft_run)
    result = run_cli_subprocess("sft", "--model", sft_run, "--data", sample_data_dir, "-o", sft_run, "--overwrite",
                                "--max-steps", "1", *SFT_ARGS)
    assert result.returncode == 2, result.stderr
    assert "holds an input" in one_error_line(result.stderr)
    assert files_of(sft_run) == before
    result = run_cli_subprocess("ppo", "--model", sft_run, "--reward-model", sft_run, "--data", sample_data_dir,
                                "-o", sft_run, "--overwrite", "--steps", "1")
    assert result.returncode == 2, result.stderr
    assert files_of(sft_run) == before


def test_successful_overwrite_replaces_the_run(tiny_model_dir, sample_data_dir, tmp_path):
    out = tmp_path / "sft"
    for steps in ("1", "2"):
        result = run_cli_subprocess("sft", "--model", tiny_model_dir, "--data", sample_data_dir, "-o", out,
                                    "--overwrite", "--max-steps", steps, *SFT_ARGS, "--json")
        assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["steps"] == 2
    assert json.loads((out / "sft_summary.json").read_text())["steps"] == 2
    assert not list(tmp_path.glob(".sft.*"))


# 2. A kill -9 while a checkpoint is being written: --resume continues from the newest complete one


def kill_when_checkpoint_appears(args: list, checkpoint: Path, timeout: float = 240) -> bool:
    """Start `stackllama ARGS`, SIGKILL it the moment `checkpoint` appears; True if it was caught half-written."""
    proc = subprocess.Popen([sys.executable, "-m", "stackllama_cli", *map(str, args)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while not checkpoint.exists():
            if proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"the run ended (code {proc.returncode}) before {checkpoint} appeared")
            time.sleep(0.0005)
        os.kill(proc.pid, signal.SIGSTOP)  # freeze it mid-save, look, then kill
        half_written = not (checkpoint / "trainer_state.json").is_file()
        os.kill(proc.pid, signal.SIGKILL)
        return half_written
    finally:
        proc.kill()
        proc.wait()


def test_resume_after_kills_during_checkpoint_writes(tiny_model_dir, sample_data_dir, tmp_path):
    out = tmp_path / "sft"
    args = ["sft", "--model", tiny_model_dir, "--data", sample_data_dir, "-o", out, "--max-steps", "6",
            "--save-steps", "2", *SFT_ARGS]
    first = kill_when_checkpoint_appears(args, out / "checkpoints" / "checkpoint-4")
    caught = [first]
    for _ in range(2):  # twice more: resume, and kill it again while it writes the same checkpoint
        caught.append(kill_when_checkpoint_appears([*args, "--resume"], out / "checkpoints" / "checkpoint-4"))
    assert any(caught), "never caught a checkpoint half-written: the test did not test anything"
    result = run_cli_subprocess(*args, "--resume", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["steps"] == 6
    steps = [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # logged once each, whatever the kills


def test_killed_run_before_its_first_checkpoint_can_be_rerun(tiny_model_dir, sample_data_dir, tmp_path):
    out = tmp_path / "sft"
    args = ["sft", "--model", tiny_model_dir, "--data", sample_data_dir, "-o", out, "--max-steps", "4",
            "--save-steps", "2", *SFT_ARGS]
    kill_when_checkpoint_appears(args, out / "checkpoints" / "checkpoint-2")
    for path in (out / "checkpoints").glob("checkpoint-*"):
        (path / "trainer_state.json").unlink(missing_ok=True)  # as if killed before any checkpoint completed
    result = run_cli_subprocess(*args)  # no --overwrite needed: nothing there could be resumed
    assert result.returncode == 0, result.stderr


# 3. One writer per output


def test_second_writer_is_refused_while_the_first_runs(tiny_model_dir, sample_data_dir, tmp_path):
    out = tmp_path / "sft"
    first = subprocess.Popen([sys.executable, "-m", "stackllama_cli", "sft", "--model", str(tiny_model_dir), "--data",
                              str(sample_data_dir), "-o", str(out), "--max-steps", "1000000", *SFT_ARGS], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").is_file():
            assert first.poll() is None and time.time() < deadline, "the first run did not start"
            time.sleep(0.1)
        for extra in ([], ["--overwrite"], ["--resume"]):
            result = run_cli_subprocess("sft", "--model", tiny_model_dir, "--data", sample_data_dir, "-o", out,
                                        "--max-steps", "1", *SFT_ARGS, *extra)
            assert first.poll() is None, "the first run ended before the check: it must outlive every attempt"
            assert result.returncode == 1, (extra, result.stderr)
            assert f"pid {first.pid}" in one_error_line(result.stderr)
        result = run_cli_subprocess("prepare-data", "-o", out, "--overwrite")
        assert result.returncode == 1 and f"pid {first.pid}" in result.stderr
    finally:
        first.kill()
        first.wait()


def test_two_prepare_data_runs_into_one_output(tmp_path):
    out = tmp_path / "data"
    procs = [subprocess.Popen([sys.executable, "-m", "stackllama_cli", "prepare-data", "-o", str(out)], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 1], results
    assert any("being written by another stackllama run" in err or "not empty" in err for _, err in results)


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    from stackllama_cli.core.lock import lock_path

    out = tmp_path / "data"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    lock_path(out).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "x",
                                          "command": "stackllama prepare-data"}))
    result = run_cli_subprocess("prepare-data", "-o", out)
    assert result.returncode == 0, result.stderr
    assert not lock_path(out).exists()


# 4. Resume equals the uninterrupted run; options that change the run are refused on resume


def test_sft_resume_logs_each_step_once_and_sums_the_whole_run(tiny_model_dir, sample_data_dir, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    base = ["sft", "--model", tiny_model_dir, "--data", sample_data_dir, "--max-steps", "4", "--save-steps", "2",
            *SFT_ARGS]
    whole = run_cli_subprocess(*base, "-o", full, "--json")
    assert whole.returncode == 0, whole.stderr
    kill_when_checkpoint_appears([*base, "-o", cut], cut / "checkpoints" / "checkpoint-4")  # steps 3-4 logged
    resumed = run_cli_subprocess(*base, "-o", cut, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr

    def rows(path):
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS}
                for line in (path / "metrics.jsonl").read_text().splitlines()]

    assert rows(cut) == rows(full)
    a, b = json.loads(whole.stdout), json.loads(resumed.stdout)
    assert b["steps"] == a["steps"] == 4
    assert b["train_loss"] == pytest.approx(sum(r["loss"] for r in rows(full)) / 4, rel=1e-6)


def test_resume_refuses_options_that_change_the_run(tiny_model_dir, sample_data_dir, tmp_path):
    out = tmp_path / "sft"
    base = ["sft", "--model", tiny_model_dir, "--data", sample_data_dir, "-o", out, "--save-steps", "1", *SFT_ARGS]
    assert run_cli_subprocess(*base, "--max-steps", "1").returncode == 0
    result = run_cli_subprocess(*base, "--max-steps", "2", "--resume", "--seed", "7", "--batch-size", "1")
    assert result.returncode == 2, result.stderr
    line = one_error_line(result.stderr)
    assert "seed: 0 -> 7" in line and "batch_size: 2 -> 1" in line
    saved = json.loads((out / "stackllama_config.json").read_text())["config"]
    assert saved["seed"] == 0  # the run's record is not rewritten by a refused resume


# 5-7. One-line errors, at once, of the right kind


def test_mistyped_local_path_is_not_tried_on_the_hub(tmp_path):
    (tmp_path / "runs").mkdir()
    result = subprocess.run([sys.executable, "-m", "stackllama_cli", "generate", "runs/typo", "--batch"],
                            input="q\n", capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1
    assert "no model at runs/typo" in one_error_line(result.stderr)  # not "cannot load ... (no network)"


def test_reward_model_where_a_policy_is_needed(sft_run, tiny_model_dir, sample_data_dir, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    merged_rm = tmp_path / "rm-merged"
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1).save_pretrained(merged_rm)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (merged_rm / name).write_bytes((tiny_model_dir / name).read_bytes())
    result = run_cli_subprocess("generate", merged_rm, "--batch", input="a question\n")
    assert result.returncode == 1 and "is a reward model" in one_error_line(result.stderr)
    result = run_cli_subprocess("sft", "--model", merged_rm, "--data", sample_data_dir, "-o", tmp_path / "s",
                                "--max-steps", "1", *SFT_ARGS)
    assert result.returncode == 1 and "is a reward model" in one_error_line(result.stderr)
    assert not (tmp_path / "s").exists()
    result = run_cli_subprocess("ppo", "--model", merged_rm, "--reward-model", merged_rm, "--data", sample_data_dir,
                                "-o", tmp_path / "p", "--steps", "1")
    assert result.returncode == 1 and "is a reward model" in one_error_line(result.stderr)


def test_adapter_chain_that_loops_and_malformed_adapter_config(sft_run, tmp_path):
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    for this, other in ((a, b), (b, a)):
        shutil.copytree(sft_run, this, ignore=shutil.ignore_patterns("checkpoints"))
        config = json.loads((this / "adapter_config.json").read_text())
        (this / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(other)}))
    result = run_cli_subprocess("generate", a, "--batch", input="q\n")
    assert result.returncode == 1 and "loops" in one_error_line(result.stderr)
    (b / "adapter_config.json").write_text("{not json")
    result = run_cli_subprocess("generate", b, "--batch", input="q\n")
    assert result.returncode == 1 and "adapter_config.json is not valid JSON" in one_error_line(result.stderr)


def test_input_that_is_not_utf8(sft_run, tmp_path):
    for args in (["generate", sft_run, "--batch"], ["eval-rm", sft_run, "--score"]):
        result = subprocess.run([sys.executable, "-m", "stackllama_cli", *map(str, args)], input=b"caf\xe9\n",
                                capture_output=True, cwd=REPO)
        assert result.returncode == 1, args
        assert "not UTF-8" in one_error_line(result.stderr.decode()), args


def test_usage_errors_exit_2_before_any_model_loads(sft_run, tiny_model_dir, sample_data_dir, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('max_steps = "three"\n')
    cases = [
        ["sft", "--model", tiny_model_dir, "--data", sample_data_dir, "-o", tmp_path / "x", "--resume", "--overwrite"],
        ["train-rm", "--model", tiny_model_dir, "--data", sample_data_dir, "-o", tmp_path / "x", "--resume",
         "--overwrite"],
        ["ppo", "--model", sft_run, "--reward-model", sft_run, "--data", sample_data_dir, "-o", tmp_path / "x",
         "--resume", "--overwrite"],
        ["sft", "--model", tiny_model_dir, "--data", sample_data_dir, "-o", tmp_path / "x", "--load-in-8bit",
         "--load-in-4bit"],
        ["ppo", "--model", sft_run, "--reward-model", sft_run, "--data", sample_data_dir, "-o", tmp_path / "x",
         "--load-in-8bit", "--load-in-4bit"],
        ["generate", sft_run, "--batch", "--load-in-8bit", "--load-in-4bit"],
        ["eval-rm", sft_run, "--data", sample_data_dir, "--load-in-8bit", "--load-in-4bit"],
        ["sft", "--model", tiny_model_dir, "--data", sample_data_dir, "-o", tmp_path / "x", "--precision", "fp8"],
        ["generate", sft_run, "--batch", "--precision", "fp8"],
        ["sft", "--model", tiny_model_dir, "--data", sample_data_dir, "-o", tmp_path / "x", "--config", config],
    ]
    for args in cases:
        result = run_cli_subprocess(*args, input="q\n")
        assert result.returncode == 2, (args, result.stderr)
        one_error_line(result.stderr)
    assert not (tmp_path / "x").exists()


# 9-10. Ctrl-C and failures leave a clear line and nothing half-made


def test_ctrl_c_exits_130_with_one_line_saying_what_was_kept(tiny_model_dir, sample_data_dir, tmp_path):
    out = tmp_path / "sft"
    proc = subprocess.Popen([sys.executable, "-m", "stackllama_cli", "sft", "--model", str(tiny_model_dir), "--data",
                             str(sample_data_dir), "-o", str(out), "--max-steps", "400", "--save-steps", "2",
                             *SFT_ARGS], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not list((out / "checkpoints").glob("checkpoint-*/trainer_state.json")):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    line = one_error_line(err)
    assert line.startswith("error: interrupted") and "--resume" in line, line
    result = run_cli_subprocess("sft", "--model", tiny_model_dir, "--data", sample_data_dir, "-o", out,
                                "--max-steps", "4", "--save-steps", "2", *SFT_ARGS, "--resume")
    assert result.returncode == 0, result.stderr


def test_failed_run_leaves_nothing_that_blocks_the_rerun(tiny_model_dir, sample_data_dir, tmp_path):
    out = tmp_path / "sft"
    result = run_cli_subprocess("sft", "--model", tiny_model_dir, "--data", sample_data_dir, "-o", out,
                                "--max-steps", "1", *SFT_ARGS, "--lora-target-modules", "no_such_module")
    assert result.returncode == 1
    one_error_line(result.stderr)
    assert not out.exists()
    result = run_cli_subprocess("sft", "--model", tiny_model_dir, "--data", sample_data_dir, "-o", out,
                                "--max-steps", "1", *SFT_ARGS)
    assert result.returncode == 0, result.stderr


def test_output_that_is_the_current_directory(tiny_model_dir, sample_data_dir):
    # (last in this file: before the fix, the sft case deleted the current directory - the checkout)
    for args in (["prepare-data", "-o", ".", "--overwrite"],
                 ["sft", "--model", tiny_model_dir, "--data", sample_data_dir, "-o", ".", "--overwrite"]):
        result = run_cli_subprocess(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "current directory" in one_error_line(result.stderr)
    assert (REPO / "pyproject.toml").is_file()
