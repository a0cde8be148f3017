"""Relaunch decisions and the exact accelerate argv: pure, no processes started."""

import pytest

from stackllama_cli.errors import StackLlamaError
from stackllama_cli.launch import (
    LaunchOptions,
    build_launch_argv,
    child_env,
    count_visible_gpus,
    effective_batch_size,
    needs_relaunch,
    resolve_processes,
)

PY = "/venv/bin/python"
HEAD = [PY, "-m", "accelerate.commands.launch", "--quiet"]


def test_gpu_count_from_cuda_visible_devices():
    assert count_visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1,2"}) == 3
    assert count_visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert count_visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == 0


@pytest.mark.parametrize("opts, visible, expected", [
    (LaunchOptions(), 8, (8, False)),
    (LaunchOptions(gpus="all"), 2, (2, False)),
    (LaunchOptions(), 0, (1, True)),
    (LaunchOptions(gpus="4"), 8, (4, False)),
    (LaunchOptions(cpu_processes=2), 8, (2, True)),
])
def test_resolve_processes(opts, visible, expected):
    assert resolve_processes(opts, visible) == expected


def test_resolve_processes_errors():
    with pytest.raises(StackLlamaError, match="2 GPU"):
        resolve_processes(LaunchOptions(gpus="8"), 2)
    with pytest.raises(StackLlamaError, match="--gpus takes"):
        resolve_processes(LaunchOptions(gpus="many"), 2)


def test_needs_relaunch_and_never_twice():
    assert needs_relaunch(LaunchOptions(), {}, 8)
    assert not needs_relaunch(LaunchOptions(), {}, 1)
    assert needs_relaunch(LaunchOptions(accelerate_config="ds.yaml"), {}, 1)
    for var in ("LOCAL_RANK", "WORLD_SIZE", "STACKLLAMA_LAUNCHED"):
        assert not needs_relaunch(LaunchOptions(), {var: "0"}, 8)


def test_single_node_argv_passes_every_argument_through():
    args = ["ppo", "--kl-target", "6", "--output", "runs/with space", "--model", "a'b\"c", "--"]
    argv = build_launch_argv(LaunchOptions(gpus="8"), 8, False, PY, args)
    assert argv == HEAD + ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--num_processes", "8", "--num_machines", "1", "-m", "stackllama_cli", *args]


def test_multi_node_argv():
    opts = LaunchOptions(num_machines=2, machine_rank=1, main_process_ip="10.0.0.1", main_process_port=29500)
    argv = build_launch_argv(opts, 8, False, PY, ["sft"])
    assert argv == HEAD + ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--num_processes", "16", "--num_machines", "2", "--machine_rank", "1",
                           "--main_process_ip", "10.0.0.1", "--main_process_port", "29500",
                           "-m", "stackllama_cli", "sft"]
    with pytest.raises(StackLlamaError, match="--main-process-ip"):
        build_launch_argv(LaunchOptions(num_machines=2), 8, False, PY, ["sft"])


def test_config_file_argv():
    argv = build_launch_argv(LaunchOptions(accelerate_config="zero3.yaml"), 1, False, PY, ["sft", "-o", "x"])
    assert argv == HEAD + ["--config_file", "zero3.yaml", "-m", "stackllama_cli", "sft", "-o", "x"]
    argv = build_launch_argv(LaunchOptions(accelerate_config="zero3.yaml", gpus="4"), 4, False, PY, ["sft"])
    assert argv == HEAD + ["--config_file", "zero3.yaml", "--num_processes", "4", "-m", "stackllama_cli", "sft"]


def test_cpu_child_env():
    env = child_env({"PATH": "/bin"}, cpu=True, error_dir="/tmp/e", interactive=False)
    assert env["ACCELERATE_USE_CPU"] == "1" and env["STACKLLAMA_LAUNCHED"] == "1" and env["PATH"] == "/bin"
    assert "ACCELERATE_USE_CPU" not in child_env({}, cpu=False, error_dir="/tmp/e", interactive=False)


def test_effective_batch_size():
    assert effective_batch_size(4, 8, 2) == 64


def test_launcher_noise_filter_keeps_rank_output_drops_elastic_dump():
    from stackllama_cli.launch import LauncherNoise

    lines = [b"step 1/2  reward +0.1\n", b"error: x is not a reward model\n",
             b"W1124 23:05:38.634000 7495 torch/distributed/elastic/multiprocessing/api.py:1028] Sending\n",
             b"Traceback (most recent call last):\n", b'  File "launch.py", line 1\n', b"ChildFailedError:\n"]
    noise = LauncherNoise()
    assert [line for line in lines if noise.keep(line)] == lines[:2]
    debug = LauncherNoise(debug=True)
    assert all(debug.keep(line) for line in lines)


def test_batch_description_counts_processes(monkeypatch):
    from stackllama_cli.training.common import TrainCommon, batch_description

    monkeypatch.setenv("WORLD_SIZE", "8")
    assert batch_description(TrainCommon(batch_size=4, grad_accum=2)) == \
        "effective batch 64 = 4 per device x 8 processes x 2 accumulation"
