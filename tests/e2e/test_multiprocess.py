"""Real 2-process CPU data parallelism (gloo) through the accelerate re-exec path."""

import json

import pytest

from tests.conftest import REPO, run_cli_subprocess


@pytest.fixture(scope="module")
def sft_adapter(tiny_model_dir, sample_data_dir, tmp_path_factory):
    from stackllama_cli.stages.sft import SftConfig, run

    out = tmp_path_factory.mktemp("mp-sft") / "sft"
    run(SftConfig(model=str(tiny_model_dir), data=str(sample_data_dir), output=str(out), max_steps=2, seq_length=128))
    return out


def test_sft_two_processes(tiny_model_dir, sample_data_dir, tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    args = ["sft", "--model", tiny_model_dir, "--data", sample_data_dir, "--max-steps", "3", "--seq-length", "128",
            "--batch-size", "2", "--logging-steps", "1"]
    one = run_cli_subprocess(*args, "--output", single)
    double.mkdir()
    (double / "stale.txt").write_text("from an earlier run")  # --overwrite: rank 0 clears it, rank 1 waits
    two = run_cli_subprocess(*args, "--output", double, "--cpu-processes", "2", "--overwrite")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert "Launching 2 CPU process(es)" in two.stderr
    assert two.stderr.count("sft -> ") == 1  # one summary: only rank 0 prints
    assert sorted(p.name for p in single.iterdir()) == sorted(p.name for p in double.iterdir())
    lines = [json.loads(x) for x in (double / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3]  # one copy of the metrics
    assert "find_unused_parameters" not in two.stderr


def test_ppo_two_processes_and_shared_kl_control(sft_adapter, sample_data_dir, tmp_path, tiny_model_dir):
    from stackllama_cli.stages.reward import RewardConfig, run

    rm = tmp_path / "rm"
    run(RewardConfig(model=str(sft_adapter), data=str(sample_data_dir), output=str(rm), max_steps=1,
                     max_length=256, eval_pairs=0, stats_pairs=4))
    out = tmp_path / "ppo"
    args = ["ppo", "--model", sft_adapter, "--reward-model", rm, "--data", sample_data_dir, "--steps", "2",
            "--batch-size", "4", "--mini-batch-size", "2", "--min-new-tokens", "6", "--max-new-tokens", "10",
            "--log-samples", "0"]
    proc = run_cli_subprocess(*args, "--output", out, "--cpu-processes", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("step 1/2") == 1 and proc.stderr.count("step 2/2") == 1
    assert json.loads(proc.stdout)["steps"] == 2  # one summary on stdout, not one per rank
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["samples"] for r in rows] == [8, 8]  # gathered from both ranks
    first = rows[0]
    error = min(max(first["kl"] / 6.0 - 1, -0.2), 0.2)
    assert first["beta_next"] == pytest.approx(0.2 * (1 + error * 8 / 10000))  # n_steps counts both ranks
    assert (out / "adapter_model.safetensors").is_file() and (out / "value_head.safetensors").is_file()
    # a failure on every rank: exit code propagates, the error is shown once, no traceback
    bad = run_cli_subprocess(*args[:4], tiny_model_dir, *args[5:], "--output", tmp_path / "bad",
                             "--cpu-processes", "2")
    assert bad.returncode == 1
    assert bad.stderr.count("not a reward model") == 1 and "Traceback" not in bad.stderr


@pytest.mark.slow  # ~20 s of two ranks importing the training stack; the ppo test covers a failing rank too
def test_existing_output_fails_on_every_rank_with_one_message(tiny_model_dir, sample_data_dir, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("x")
    proc = run_cli_subprocess("sft", "--model", tiny_model_dir, "--data", sample_data_dir, "--output",
                              tmp_path / "run", "--cpu-processes", "2")
    assert proc.returncode == 1
    assert proc.stderr.count("already holds a run") == 1 and "Traceback" not in proc.stderr


def test_a_killed_rank_is_named_in_one_line(tmp_path):
    """The real `accelerate launch` with a target whose rank 1 is SIGKILLed (as by the OOM killer)."""
    import subprocess
    import sys
    import textwrap

    target = tmp_path / "target.py"
    target.write_text(textwrap.dedent("""
        import os, signal, time
        if os.environ["RANK"] == "1":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)
    """))
    parent = textwrap.dedent("""
        import sys
        from stackllama_cli.dist import relaunch as launch
        real = launch.build_launch_argv  # the real argv, with our module swapped for the target script
        launch.build_launch_argv = lambda *a, **k: real(*a, **k)[:-3] + [sys.argv[1]]
        launch.relaunch_if_needed(launch.LaunchOptions(cpu_processes=2), args=["sft"])
    """)
    proc = subprocess.run([sys.executable, "-c", parent, str(target)], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 1
    assert "error: rank 1 died from SIGKILL (the system killed it: often out of memory)" in proc.stderr
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr


GATHER_TARGET = """
import os
from stackllama_cli.dist import ranks
state = ranks.distributed_state()
start, end = ranks.shard_bounds(11, state.process_index, state.num_processes)
squares = ranks.gather_in_order([i * i for i in range(start, end)], 11)
if state.is_main_process:
    print(state.num_processes, state.distributed_type, squares, flush=True)
ranks.finish_distributed()  # as stackllama's main() does after every successful command
"""

LAUNCHING_PARENT = """
import json, sys
from stackllama_cli.dist import relaunch as launch
real = launch.build_launch_argv  # the real argv, with our module swapped for the target script
launch.build_launch_argv = lambda *a, **k: real(*a, **k)[:-3] + [sys.argv[1]]
launch.relaunch_if_needed(launch.LaunchOptions(**json.loads(sys.argv[2])), args=["sft"])
"""


def launch_target(tmp_path, target: str, wait: bool = True, **opts):
    import json
    import subprocess
    import sys

    script = tmp_path / "target.py"
    script.write_text(target)
    argv = [sys.executable, "-c", LAUNCHING_PARENT, str(script), json.dumps(opts)]
    if not wait:
        return subprocess.Popen(argv, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120)


def test_sharded_work_is_gathered_in_order(tmp_path):
    proc = launch_target(tmp_path, GATHER_TARGET, cpu_processes=2)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"2 DistributedType.MULTI_CPU {[i * i for i in range(11)]}\n"  # once: rank 0 only


def test_two_machines_on_localhost(tmp_path):
    """The multi-node flags for real: two 'machines' (one process each) meet at 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = dict(cpu_processes=1, num_machines=2, main_process_ip="127.0.0.1", main_process_port=port)
    (tmp_path / "m0").mkdir(), (tmp_path / "m1").mkdir()
    main = launch_target(tmp_path / "m0", GATHER_TARGET, wait=False, machine_rank=0, **opts)
    other = launch_target(tmp_path / "m1", GATHER_TARGET, wait=False, machine_rank=1, **opts)
    out0, err0 = main.communicate(timeout=120)
    out1, err1 = other.communicate(timeout=120)
    assert main.returncode == 0 and other.returncode == 0, err0 + err1
    assert "on each of 2 machines" in err0
    assert out0 == f"2 DistributedType.MULTI_CPU {[i * i for i in range(11)]}\n" and out1 == ""
