"""Progress where there is no terminal: one plain line per logging step (stderr to a file), JSON events with
--log-format json, nothing but errors and the summary with --quiet (core/console.py, stages/callbacks.py)."""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

SFT = ["--seq-length", "128", "--batch-size", "2", "--eval-samples", "4"]
RM = ["--max-length", "128", "--truncate", "--batch-size", "2", "--eval-pairs", "4", "--stats-pairs", "4"]
STEPS = ["--max-steps", "3", "--logging-steps", "1", "--warmup-steps", "0"]
ROOT_ENV = ("STACKLLAMA_LOG_FORMAT", "STACKLLAMA_QUIET")


def run_to_file(tmp_path, *args: str) -> tuple[int, str]:
    """`python -m stackllama_cli ARGS` with stderr redirected to a file, as under nohup or `2> log`."""
    log = tmp_path / "stderr.log"
    env = {k: v for k, v in os.environ.items() if k not in ROOT_ENV and not k.startswith(("TTY_", "FORCE_COLOR"))}
    with open(log, "w") as err:
        proc = subprocess.run([sys.executable, "-m", "stackllama_cli", *map(str, args)], stdout=subprocess.PIPE,
                              stderr=err, text=True, env=env, cwd=REPO, timeout=600)
    return proc.returncode, log.read_text()


@pytest.mark.parametrize("stage, extra", [("sft", SFT), ("train-rm", RM)])
def test_one_plain_line_per_logging_step_when_stderr_is_a_file(stage, extra, tiny_model_dir, sample_data_dir,
                                                                tmp_path):
    code, err = run_to_file(tmp_path, stage, "--model", tiny_model_dir, "--data", sample_data_dir,
                            "--output", tmp_path / "out", *STEPS, *extra)
    assert code == 0, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith(f"{stage} step ")]
    assert [re.match(rf"{stage} step (\d+)/3\b", line).group(1) for line in lines] == ["1", "2", "3"], err
    for line in lines:
        assert re.search(r"\bloss \d+\.\d+", line), line
        assert re.search(r"\d [a-z]+/s\b", line), line  # a rate: tok/s or samples/s
        assert re.search(r"elapsed \d+:\d\d:\d\d", line) and re.search(r"ETA \d+:\d\d:\d\d", line), line
    assert "\x1b[" not in err and "\r" not in err  # no escape codes or redraws in a log file
    assert "━" not in err  # no bar


def test_log_format_json_lines_all_parse(tiny_model_dir, sample_data_dir, tmp_path):
    code, err = run_to_file(tmp_path, "--log-format", "json", "train-rm", "--model", tiny_model_dir,
                            "--data", sample_data_dir, "--output", tmp_path / "out", *STEPS, *RM)
    assert code == 0, err[-3000:]
    events = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    steps = [e for e in events if e["event"] == "progress" and e.get("stage") == "train-rm"]
    assert [e["step"] for e in steps] == [1, 2, 3] and all(e["total"] == 3 for e in steps)
    assert all(isinstance(e["loss"], float) and e["elapsed_s"] >= 0 and e["eta_s"] >= 0 for e in steps)
    assert any(e["event"] == "summary" and e["values"]["steps"] == 3 for e in events)
    assert any(e["event"] == "progress" and e.get("stage") == "reward stats" for e in events)  # progress() too
    assert all("time" in e for e in events)


@pytest.fixture
def root_env(monkeypatch):
    """The root options export STACKLLAMA_LOG_FORMAT / STACKLLAMA_QUIET: start without them, and after the test
    put both the environment and the console's mode back."""
    import os

    before = {name: os.environ.get(name) for name in ROOT_ENV}
    for name in ROOT_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    monkeypatch.undo()
    for name, value in before.items():  # monkeypatch records no variable that was absent: --quiet's would stay
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    from stackllama_cli.core.console import configure

    configure()


def test_quiet_prints_only_the_summary(tmp_path, run_cli, root_env):
    loud = run_cli("prepare-data", "--output", tmp_path / "loud")
    assert loud.exit_code == 0, loud
    quiet = run_cli("--quiet", "prepare-data", "--output", tmp_path / "quiet")
    assert quiet.exit_code == 0, quiet
    assert "scan " not in quiet.stderr and "convert " not in quiet.stderr
    assert "pairs" in quiet.stderr  # the summary table stays
    error = run_cli("--quiet", "prepare-data", tmp_path / "missing.xml", "--output", tmp_path / "x")
    assert error.exit_code == 1 and error.stderr.startswith("error:")


def test_bad_log_format_is_a_usage_error(run_cli, root_env):
    result = run_cli("--log-format", "fancy", "prepare-data", "--help")
    assert result.exit_code == 2 and "--log-format" in result.stderr
