"""Data parallelism by re-executing ourselves under `accelerate launch`.

Pure: `resolve_processes`, `needs_relaunch`, `build_launch_argv`. Effectful:
`relaunch_if_needed`, which runs the child launcher, forwards signals, surfaces a
failing rank's error once and exits with the child's exit code. Nothing here
imports torch: GPUs are counted from CUDA_VISIBLE_DEVICES or nvidia-smi.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from stackllama_cli.errors import StackLlamaError, UsageError

LAUNCHED_ENV = "STACKLLAMA_LAUNCHED"  # set in every child: never relaunch twice
ERROR_DIR_ENV = "STACKLLAMA_ERROR_DIR"  # ranks > 0 leave their one-line error here
LAUNCHER_VARS = ("LOCAL_RANK", "WORLD_SIZE", LAUNCHED_ENV, "ACCELERATE_PROCESS_INDEX")


@dataclasses.dataclass
class LaunchOptions:
    gpus: str = "auto"  # N, all, or auto (= all visible)
    cpu_processes: int = 0  # > 0: N CPU processes (gloo), for machines without GPUs
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int | None = None
    accelerate_config: str | None = None


def under_launcher(env: Mapping[str, str]) -> bool:
    return any(var in env for var in LAUNCHER_VARS)


def count_visible_gpus(env: Mapping[str, str]) -> int:
    """GPUs this process may use, without initialising CUDA."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() not in ("", "-1")])
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def resolve_processes(opts: LaunchOptions, visible_gpus: int) -> tuple[int, bool]:
    """(processes on this machine, on CPU?) for the options and the GPUs visible."""
    if opts.cpu_processes < 0:
        raise UsageError("--cpu-processes must be non-negative")
    if opts.cpu_processes:
        return opts.cpu_processes, True
    gpus = str(opts.gpus).strip().lower()
    if gpus in ("auto", "all"):
        return max(visible_gpus, 1), visible_gpus == 0
    try:
        n = int(gpus)
    except ValueError:
        raise UsageError(f"--gpus takes a number, 'all' or 'auto', not {opts.gpus!r}") from None
    if n < 1:
        raise UsageError("--gpus must be at least 1 (use --cpu-processes for CPU runs)")
    if n > visible_gpus:
        raise StackLlamaError(f"--gpus {n} asked for, but {visible_gpus} GPU(s) are visible")
    return n, False


def needs_relaunch(opts: LaunchOptions, env: Mapping[str, str], processes: int) -> bool:
    if under_launcher(env):
        return False
    return processes > 1 or opts.num_machines > 1 or opts.accelerate_config is not None


def build_launch_argv(opts: LaunchOptions, processes: int, cpu: bool, python: str, args: Sequence[str]) -> list[str]:
    """`python -m accelerate.commands.launch ... -m stackllama_cli <args>`; args are passed through verbatim."""
    argv = [python, "-m", "accelerate.commands.launch", "--quiet"]
    if opts.accelerate_config:
        argv += ["--config_file", str(opts.accelerate_config)]
    else:
        # `--cpu` would start only one process: CPU DDP goes through --multi_gpu + ACCELERATE_USE_CPU.
        argv += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if not opts.accelerate_config or processes > 1:
        argv += ["--num_processes", str(processes * opts.num_machines)]
    if opts.num_machines > 1 or not opts.accelerate_config:
        argv += ["--num_machines", str(opts.num_machines)]
    if opts.num_machines > 1:
        if not opts.main_process_ip:
            raise UsageError("--num-machines > 1 needs --main-process-ip (the address of machine rank 0)")
        argv += ["--machine_rank", str(opts.machine_rank), "--main_process_ip", opts.main_process_ip]
    if opts.main_process_port:
        argv += ["--main_process_port", str(opts.main_process_port)]
    return argv + ["-m", "stackllama_cli", *args]


def child_env(env: Mapping[str, str], cpu: bool, error_dir: str, interactive: bool) -> dict[str, str]:
    out = {**env, LAUNCHED_ENV: "1", ERROR_DIR_ENV: error_dir}
    if cpu:
        out["ACCELERATE_USE_CPU"] = "1"
    if interactive:  # ranks write to our terminal: keep Rich's live progress bars
        out.setdefault("TTY_INTERACTIVE", "1")
        out.setdefault("TTY_COMPATIBLE", "1")
    return out


def effective_batch_size(per_device: int, processes: int, accumulation: int = 1) -> int:
    return per_device * processes * accumulation


def world_size(env: Mapping[str, str] = os.environ) -> int:
    return int(env.get("WORLD_SIZE", "1"))


def relaunch_if_needed(opts: LaunchOptions, args: Sequence[str] | None = None) -> None:
    """Re-exec under accelerate when several processes are wanted; never returns in that case."""
    env = os.environ
    if under_launcher(env):
        return
    processes, cpu = resolve_processes(opts, count_visible_gpus(env))
    if not needs_relaunch(opts, env, processes):
        return
    from stackllama_cli.console import info

    args = list(sys.argv[1:] if args is None else args)
    argv = build_launch_argv(opts, processes, cpu, sys.executable, args)
    error_dir = tempfile.mkdtemp(prefix="stackllama-errors-")
    info(f"Launching {processes} {'CPU' if cpu else 'GPU'} process(es)"
         f"{f' on each of {opts.num_machines} machines' if opts.num_machines > 1 else ''} with accelerate")
    try:
        code = _run_child(argv, child_env(env, cpu, error_dir, sys.stderr.isatty()))
        if code != 0:
            _report_rank_errors(Path(error_dir))
    finally:
        shutil.rmtree(error_dir, ignore_errors=True)
    raise SystemExit(code)


_ELASTIC_LOG = re.compile(rb"^[WEI]\d{4} .*torch/distributed/")


class LauncherNoise:
    """Drops torch-elastic's log lines and the launcher's traceback (a failing rank has printed its own
    one-line error already); everything else, the ranks' output, passes through untouched."""

    def __init__(self, debug: bool = False):
        self.debug = debug
        self.dropping = False

    def keep(self, line: bytes) -> bool:
        if self.debug:
            return True
        if line.startswith(b"Traceback (most recent call last)"):
            self.dropping = True  # from the launcher itself: our ranks print tracebacks only with --debug
        return not (self.dropping or _ELASTIC_LOG.match(line))


def _run_child(argv: list[str], env: dict[str, str]) -> int:
    from stackllama_cli.errors import debug_enabled

    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    noise = LauncherNoise(debug_enabled())
    forwarded = {}

    def forward(signum, frame):  # SIGTERM from a scheduler reaches the ranks too
        if proc.poll() is None:
            proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        forwarded[sig] = signal.signal(sig, forward)
    try:
        while True:  # relay the ranks' stderr; Ctrl-C reaches them directly (same process group)
            try:
                for line in iter(proc.stderr.readline, b""):
                    if noise.keep(line):
                        sys.stderr.buffer.write(line)
                        sys.stderr.buffer.flush()
                break
            except KeyboardInterrupt:
                continue
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # Ctrl-C already reached the ranks (same process group): wait for them
                continue
    finally:
        for sig, handler in forwarded.items():
            signal.signal(sig, handler)


def record_rank_error(message: str) -> None:
    """Called by `cli.main` on every rank under our launcher: the parent shows each distinct error once."""
    directory = os.environ.get(ERROR_DIR_ENV)
    rank = os.environ.get("RANK", "0")
    if directory:
        with open(Path(directory) / f"rank-{rank}.txt", "w", encoding="utf-8") as fh:
            fh.write(message)


def _report_rank_errors(directory: Path) -> None:
    from rich.text import Text

    from stackllama_cli.console import console

    messages: dict[str, list[str]] = {}
    for path in sorted(directory.glob("rank-*.txt")):
        messages.setdefault(path.read_text(encoding="utf-8"), []).append(path.stem.split("-")[1])
    for message, ranks in messages.items():
        if "0" in ranks:  # rank 0 has printed it already
            continue
        console.print(Text.assemble((f"error (rank {', '.join(ranks)}): ", "bold red"), message), soft_wrap=True)
