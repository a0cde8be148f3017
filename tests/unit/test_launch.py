"""Relaunch decisions and the exact accelerate argv: pure, no processes started."""

import pytest

from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.dist.ranks import effective_batch_size
from stackllama_cli.dist.relaunch import (
    LaunchOptions,
    build_launch_argv,
    child_env,
    count_visible_gpus,
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
                           "--num_processes", "8", "--num_machines", "1",
                           "--main_process_port", "0",  # accelerate picks a free port: no clash with another run
                           "-m", "stackllama_cli", *args]


def test_multi_node_argv():
    opts = LaunchOptions(num_machines=2, machine_rank=1, main_process_ip="10.0.0.1", main_process_port=29500)
    argv = build_launch_argv(opts, 8, False, PY, ["sft"])
    assert argv == HEAD + ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--num_processes", "16", "--num_machines", "2", "--machine_rank", "1",
                           "--main_process_ip", "10.0.0.1", "--main_process_port", "29500",
                           "-m", "stackllama_cli", "sft"]
    with pytest.raises(StackLlamaError, match="--main-process-ip"):
        build_launch_argv(LaunchOptions(num_machines=2), 8, False, PY, ["sft"])


def test_config_file_argv_fills_in_processes_the_config_leaves_out():
    # shipped configs leave num_processes out: auto-detection fills it in
    argv = build_launch_argv(LaunchOptions(accelerate_config="zero3.yaml"), 4, False, PY, ["sft", "-o", "x"],
                             {"distributed_type": "DEEPSPEED"})
    assert argv == HEAD + ["--config_file", "zero3.yaml", "--num_processes", "4", "--main_process_port", "0",
                           "-m", "stackllama_cli", "sft", "-o", "x"]


def test_config_file_argv_precedence():
    cfg = {"num_processes": 6, "num_machines": 1}
    # --gpus auto: the user's config decides
    argv = build_launch_argv(LaunchOptions(accelerate_config="c.yaml"), 8, False, PY, ["sft"], cfg)
    assert argv == HEAD + ["--config_file", "c.yaml", "--main_process_port", "0", "-m", "stackllama_cli", "sft"]
    # a port in the config file is respected
    argv = build_launch_argv(LaunchOptions(accelerate_config="c.yaml"), 8, False, PY, ["sft"],
                             {**cfg, "main_process_port": 1234})
    assert argv == HEAD + ["--config_file", "c.yaml", "-m", "stackllama_cli", "sft"]
    # an explicit --gpus beats the config
    argv = build_launch_argv(LaunchOptions(accelerate_config="c.yaml", gpus="2"), 2, False, PY, ["sft"], cfg)
    assert argv == HEAD + ["--config_file", "c.yaml", "--num_processes", "2", "--main_process_port", "0",
                           "-m", "stackllama_cli", "sft"]


def test_config_file_multi_node_counts_the_configs_machines():
    cfg = {"num_machines": 2, "main_process_ip": "10.0.0.1"}
    argv = build_launch_argv(LaunchOptions(accelerate_config="c.yaml", machine_rank=1), 8, False, PY, ["ppo"], cfg)
    assert argv == HEAD + ["--config_file", "c.yaml", "--num_processes", "16", "--machine_rank", "1",
                           "-m", "stackllama_cli", "ppo"]
    argv = build_launch_argv(LaunchOptions(accelerate_config="c.yaml", num_machines=4, main_process_ip="h"), 8,
                             False, PY, ["ppo"], cfg)
    assert argv == HEAD + ["--config_file", "c.yaml", "--num_processes", "32", "--num_machines", "4",
                           "--machine_rank", "0", "--main_process_ip", "h", "-m", "stackllama_cli", "ppo"]
    with pytest.raises(StackLlamaError, match="--main-process-ip"):
        build_launch_argv(LaunchOptions(accelerate_config="c.yaml"), 8, False, PY, ["sft"], {"num_machines": 2})


def test_machine_rank_must_fit():
    with pytest.raises(StackLlamaError, match="between 0 and 1"):
        build_launch_argv(LaunchOptions(num_machines=2, machine_rank=2, main_process_ip="h"), 8, False, PY, ["sft"])


def test_read_accelerate_config(tmp_path):
    from stackllama_cli.dist.relaunch import read_accelerate_config

    (tmp_path / "c.yaml").write_text("distributed_type: DEEPSPEED\nnum_machines: 2\n")
    assert read_accelerate_config(tmp_path / "c.yaml") == {"distributed_type": "DEEPSPEED", "num_machines": 2}
    (tmp_path / "c.json").write_text('{"num_processes": 4}')
    assert read_accelerate_config(tmp_path / "c.json") == {"num_processes": 4}
    with pytest.raises(StackLlamaError, match="not found"):
        read_accelerate_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [unclosed\n")
    with pytest.raises(StackLlamaError, match="cannot read"):
        read_accelerate_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(StackLlamaError, match="not a mapping"):
        read_accelerate_config(tmp_path / "list.yaml")


@pytest.mark.parametrize("name", ["multi-gpu.yaml", "deepspeed-zero2.yaml", "deepspeed-zero3-offload.yaml"])
def test_shipped_configs_are_valid_accelerate_configs(name):
    from pathlib import Path

    from accelerate.commands.config.config_args import load_config_from_file

    import stackllama_cli
    from stackllama_cli.dist.relaunch import read_accelerate_config

    path = Path(stackllama_cli.__file__).parent / "configs" / name
    assert "num_processes" not in read_accelerate_config(path)  # left to --gpus (auto: all visible)
    cfg = load_config_from_file(str(path))  # accelerate's own parser accepts it
    assert cfg.num_machines == 1 and cfg.distributed_type in ("MULTI_GPU", "DEEPSPEED")


def test_cpu_child_env():
    env = child_env({"PATH": "/bin"}, cpu=True, error_dir="/tmp/e", interactive=False)
    assert env["ACCELERATE_USE_CPU"] == "1" and env["STACKLLAMA_LAUNCHED"] == "1" and env["PATH"] == "/bin"
    assert "ACCELERATE_USE_CPU" not in child_env({}, cpu=False, error_dir="/tmp/e", interactive=False)


def test_effective_batch_size():
    assert effective_batch_size(4, 8, 2) == 64


def test_launcher_noise_filter_keeps_rank_output_drops_elastic_dump():
    from stackllama_cli.dist.launcher_output import LauncherNoise

    lines = [b"step 1/2  reward +0.1\n", b"error: x is not a reward model\n",
             b"W1124 23:05:38.634000 7495 torch/distributed/elastic/multiprocessing/api.py:1028] Sending\n",
             b"Traceback (most recent call last):\n", b'  File "launch.py", line 1\n', b"ChildFailedError:\n"]
    noise = LauncherNoise()
    assert [line for line in lines if noise.keep(line)] == lines[:2]
    debug = LauncherNoise(debug=True)
    assert all(debug.keep(line) for line in lines)


def test_batch_description_counts_processes(monkeypatch):
    from stackllama_cli.dist.ranks import describe_batch

    monkeypatch.setenv("WORLD_SIZE", "8")
    assert describe_batch(4, 2) == \
        "effective batch 64 = 4 per device x 8 processes x 2 accumulation"


ROOT_CAUSE = """Traceback (most recent call last):
  File "launch.py", line 383, in launch_agent
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
=======================================================
/tmp/crash.py FAILED
-------------------------------------------------------
Failures:
[1]:
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 15812)  (SIGTERM)
-------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-24_23:33:20
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 15813)  (SIGKILL)
  error_file: <N/A>
=======================================================
"""


def test_launcher_failure_summary_names_the_root_cause():
    from stackllama_cli.dist.launcher_output import LauncherNoise

    noise = LauncherNoise()
    assert not any(noise.keep(line.encode() + b"\n") for line in ROOT_CAUSE.splitlines())
    assert noise.summary() == "rank 1 died from SIGKILL (the system killed it: often out of memory)"
    noise = LauncherNoise()
    for line in ROOT_CAUSE.replace("-9 (pid: 15813)  (SIGKILL)", "2 (pid: 15813)").splitlines():
        noise.keep(line.encode())
    assert noise.summary() == "rank 1 exited with code 2"
    noise = LauncherNoise()  # the launcher itself failed (e.g. a port in use): its last error line
    for line in ["Traceback (most recent call last):", '  File "x.py", line 1',
                 "torch.distributed.DistNetworkError: The server socket has failed to listen on port 29500"]:
        noise.keep(line.encode())
    assert noise.summary().startswith("torch.distributed.DistNetworkError: The server socket")
    assert LauncherNoise().summary() is None


def test_shipped_configs_by_name(tmp_path, monkeypatch):
    from stackllama_cli.dist.relaunch import CONFIGS_DIR, resolve_accelerate_config

    monkeypatch.chdir(tmp_path)
    assert resolve_accelerate_config("deepspeed-zero3-offload") == CONFIGS_DIR / "deepspeed-zero3-offload.yaml"
    assert resolve_accelerate_config("multi-gpu.yaml") == CONFIGS_DIR / "multi-gpu.yaml"
    (tmp_path / "multi-gpu.yaml").write_text("distributed_type: MULTI_GPU\n")  # the user's own file wins
    assert resolve_accelerate_config("multi-gpu.yaml") == tmp_path.joinpath("multi-gpu.yaml").relative_to(tmp_path)
    with pytest.raises(StackLlamaError, match="shipped one: deepspeed-zero2, deepspeed-zero3-offload, multi-gpu"):
        resolve_accelerate_config("zero9")
    assert str(resolve_accelerate_config("sub/missing.yaml")) == "sub/missing.yaml"  # a path: read_ reports it


def test_relaunch_if_needed_never_relaunches_a_rank(monkeypatch):
    import subprocess

    from stackllama_cli.dist import relaunch as launch

    def no_child(*a, **k):
        raise AssertionError("relaunched twice")

    monkeypatch.setattr(subprocess, "Popen", no_child)
    monkeypatch.setattr(launch, "count_visible_gpus", lambda env: 8)
    for var in ("LOCAL_RANK", "WORLD_SIZE", "RANK", "STACKLLAMA_LAUNCHED", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.setenv(var, "1")
        assert launch.relaunch_if_needed(LaunchOptions(gpus="8"), args=["sft"]) is None
        monkeypatch.delenv(var)


def test_one_process_runs_in_place(monkeypatch):
    from stackllama_cli.cli.options import launch_from_params
    from stackllama_cli.dist import relaunch as launch

    for var in ("LOCAL_RANK", "WORLD_SIZE", "RANK", "STACKLLAMA_LAUNCHED", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(launch, "count_visible_gpus", lambda env: 1)
    values = {"gpus": "auto", "cpu_processes": 0, "num_machines": 1, "machine_rank": 0, "main_process_ip": None,
              "main_process_port": None, "accelerate_config": None, "lr": 1e-4}
    launch_from_params(values)  # returns: nothing to relaunch
    assert values == {"lr": 1e-4}  # the stage config never sees the launch options


def test_relay_shows_progress_redraws_at_once_and_drops_noise_split_across_chunks():
    from stackllama_cli.dist.launcher_output import LauncherNoise

    noise = LauncherNoise()
    # Rich redraws a progress bar with \r and no newline: each redraw must show at once
    assert noise.feed(b"\r\x1b[2K sft 1/3") == b"\r\x1b[2K sft 1/3"
    assert noise.feed(b"\r\x1b[2K sft 2/3") == b"\r\x1b[2K sft 2/3"
    assert noise.feed(b"\n") == b"\n"
    # an elastic log line arriving in pieces is held, then dropped
    assert noise.feed(b"W11") == b""
    assert noise.feed(b"24 23:05:38.634000 7495 torch/distributed/elastic/api.py:1028] Sending\nrank out") == \
        b"rank out"
    assert noise.feed(b"put\nTrace") == b"put\n"
    assert noise.feed(b"back (most recent call last):\n  File x\nChildFailedError: boom") == b""
    assert noise.flush() == b""
    assert noise.dropped[-1] == "ChildFailedError: boom"
    tail = LauncherNoise()
    assert tail.feed(b"W") == b"" and tail.flush() == b"W"  # a lone W was not noise after all
    assert LauncherNoise(debug=True).feed(b"W1124 x torch/distributed/y\n") == b"W1124 x torch/distributed/y\n"


def test_describe_batch(monkeypatch):
    from stackllama_cli.dist.ranks import describe_batch

    assert describe_batch(4, 2, processes=8) == "effective batch 64 = 4 per device x 8 processes x 2 accumulation"
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert describe_batch(4) == "effective batch 4 = 4 per device x 1 process x 1 accumulation"


@pytest.mark.parametrize("n, world", [(10, 3), (2, 4), (0, 2), (7, 1), (89, 8)])
def test_shard_bounds_cover_every_item_once_in_order(n, world):
    from stackllama_cli.dist.ranks import shard_bounds

    bounds = [shard_bounds(n, r, world) for r in range(world)]
    assert [i for a, b in bounds for i in range(a, b)] == list(range(n))
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1
    assert shard_bounds(10, 0, 3) == (0, 3) and shard_bounds(10, 2, 3) == (6, 10)


def test_gpu_count_from_nvidia_smi(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-a)'\necho '  MIG 1g.10gb Device 0: (UUID: MIG-x)'\n"
                   "echo 'GPU 1: NVIDIA H100 (UUID: GPU-b)'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert count_visible_gpus({}) == 2  # CUDA_VISIBLE_DEVICES unset: ask nvidia-smi, never initialise CUDA
    assert count_visible_gpus({"CUDA_VISIBLE_DEVICES": "1"}) == 1  # the variable wins
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert count_visible_gpus({}) == 0
