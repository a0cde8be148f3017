"""Data parallelism by re-executing ourselves under `accelerate launch`.

Pure: `resolve_processes`, `needs_relaunch`, `build_launch_argv`. Effectful: `relaunch_if_needed`,
which runs the launcher in its own process group, forwards signals to it, shows a failing rank's
error once (dist/launcher_output.py) and exits with the launcher's exit code. Nothing here imports
torch at module level (`--help` stays fast): GPUs are counted from CUDA_VISIBLE_DEVICES or
nvidia-smi. See docs/multi-gpu.md.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from stackllama_cli.core.errors import StackLlamaError, UsageError
from stackllama_cli.dist.launcher_output import ERROR_DIR_ENV, LauncherNoise, report_failure


RELAYED = {"exit": False}  # set once this process exits with its relaunched ranks' exit code
LAUNCHED_ENV = "STACKLLAMA_LAUNCHED"  # set in every child: never relaunch twice


# Set by accelerate/torchrun (LOCAL_RANK, WORLD_SIZE, RANK), by us, and by MPI launchers (which accelerate
# supports for CPU runs): any of them means "already one of several processes", never relaunch.
LAUNCHER_VARS = ("LOCAL_RANK", "WORLD_SIZE", "RANK", LAUNCHED_ENV, "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


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
        hint = "--cpu-processes N runs on CPUs" if visible_gpus == 0 else f"use --gpus {visible_gpus} or fewer"
        raise StackLlamaError(f"--gpus {n} asked for, but {visible_gpus} GPU(s) are visible; {hint}")
    return n, False


def needs_relaunch(opts: LaunchOptions, env: Mapping[str, str], processes: int) -> bool:
    if under_launcher(env):
        return False
    return processes > 1 or opts.num_machines > 1 or opts.accelerate_config is not None


CONFIGS_DIR = Path(__file__).parent.parent / "configs"  # shipped examples, usable by name


def resolve_accelerate_config(value: str | Path) -> Path:
    """A path as given, or the name of a shipped config (`deepspeed-zero3-offload`, with or without .yaml)."""
    path = Path(value)
    if path.exists() or path.parent != Path("."):
        return path
    shipped = CONFIGS_DIR / (path.name if path.suffix in (".yaml", ".yml", ".json") else f"{path.name}.yaml")
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml")))
    raise StackLlamaError(f"accelerate config {value} not found; pass a file written by 'accelerate config' "
                          f"or a shipped one: {names}")


def read_accelerate_config(path: str | Path) -> dict:
    """The user's accelerate config (YAML or JSON), read only to learn its process and machine counts."""
    path = Path(path)
    if not path.is_file():
        raise StackLlamaError(f"accelerate config {path} not found; pass a file written by 'accelerate config' "
                              "or one of the examples in stackllama_cli/configs/")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            import json

            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml/json/decoding errors all mean the same thing to the user
        raise StackLlamaError(f"cannot read accelerate config {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise StackLlamaError(f"accelerate config {path} is not a mapping of settings")
    return data


def build_launch_argv(opts: LaunchOptions, processes: int, cpu: bool, python: str, args: Sequence[str],
                      config: Mapping | None = None) -> list[str]:
    """`python -m accelerate.commands.launch ... -m stackllama_cli <args>`; args are passed through verbatim.

    `processes` is per machine; `config` is the parsed --accelerate-config file. Precedence: our command
    line > the config file > auto-detection (so `--gpus auto` leaves a config's num_processes alone, but
    fills it in for the shipped example configs, which leave it out on purpose).
    """
    argv = [python, "-m", "accelerate.commands.launch", "--quiet"]
    if opts.accelerate_config:
        config = config or {}
        argv += ["--config_file", str(opts.accelerate_config)]
        machines = opts.num_machines if opts.num_machines > 1 else int(config.get("num_machines") or 1)
        explicit = opts.cpu_processes > 0 or str(opts.gpus).strip().lower() != "auto"
        if explicit or not config.get("num_processes"):
            argv += ["--num_processes", str(processes * machines)]
        if machines != int(config.get("num_machines") or 1):
            argv += ["--num_machines", str(machines)]
        has_ip = bool(opts.main_process_ip or config.get("main_process_ip"))
    else:
        # `--cpu` would start only one process: CPU DDP goes through --multi_gpu + ACCELERATE_USE_CPU.
        machines = opts.num_machines
        argv += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no",
                 "--num_processes", str(processes * machines), "--num_machines", str(machines)]
        has_ip = bool(opts.main_process_ip)
    if machines > 1 and not has_ip:
        raise UsageError("--num-machines > 1 needs --main-process-ip (the address of machine rank 0)")
    if not 0 <= opts.machine_rank < max(machines, 1):
        raise UsageError(f"--machine-rank must be between 0 and {machines - 1} (--num-machines {machines})")
    if machines > 1:
        argv += ["--machine_rank", str(opts.machine_rank)]
    if opts.main_process_ip:
        argv += ["--main_process_ip", opts.main_process_ip]
    if opts.main_process_port is not None:
        argv += ["--main_process_port", str(opts.main_process_port)]
    elif machines == 1 and not (config or {}).get("main_process_port"):
        # 0 = accelerate picks a free port: its fixed default (29500) makes two runs on one machine collide
        argv += ["--main_process_port", "0"]
    return argv + ["-m", "stackllama_cli", *args]


def child_env(env: Mapping[str, str], cpu: bool, error_dir: str, interactive: bool) -> dict[str, str]:
    out = {**env, LAUNCHED_ENV: "1", ERROR_DIR_ENV: error_dir}
    if cpu:
        out["ACCELERATE_USE_CPU"] = "1"
    if interactive:  # ranks write to our terminal: keep Rich's live progress bars
        out.setdefault("TTY_INTERACTIVE", "1")
        out.setdefault("TTY_COMPATIBLE", "1")
    return out


def relaunch_if_needed(opts: LaunchOptions, args: Sequence[str] | None = None) -> None:
    """Re-exec under accelerate when several processes are wanted; never returns in that case."""
    env = os.environ
    if under_launcher(env):
        return
    processes, cpu = resolve_processes(opts, count_visible_gpus(env))
    if not needs_relaunch(opts, env, processes):
        return
    from stackllama_cli.core.console import info

    config = None
    if opts.accelerate_config:
        opts = dataclasses.replace(opts, accelerate_config=str(resolve_accelerate_config(opts.accelerate_config)))
        config = read_accelerate_config(opts.accelerate_config)
    args = list(sys.argv[1:] if args is None else args)
    argv = build_launch_argv(opts, processes, cpu, sys.executable, args, config)
    error_dir = tempfile.mkdtemp(prefix="stackllama-errors-")
    where = f" on each of {opts.num_machines} machines" if opts.num_machines > 1 else ""
    setup = f" ({opts.accelerate_config})" if opts.accelerate_config else ""
    info(f"Launching {processes} {'CPU' if cpu else 'GPU'} process(es){where} with accelerate{setup}")
    try:
        code, noise, interrupted = _run_child(argv, child_env(env, cpu, error_dir, sys.stderr.isatty()))
        if code != 0 and not interrupted:
            report_failure(Path(error_dir), noise, code)
    finally:
        shutil.rmtree(error_dir, ignore_errors=True)
    RELAYED["exit"] = True
    raise SystemExit(130 if interrupted and code != 0 else code)


def _pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the launcher gets SIGTERM if we die (even from SIGKILL), so no orphaned ranks keep training."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _run_child(argv: list[str], env: dict[str, str]) -> tuple[int, LauncherNoise, bool]:
    """Run the launcher in its own process group; relay its stderr; forward signals to the whole group.

    Returns (exit code, what was filtered, interrupted?). The first Ctrl-C asks every rank to stop
    (SIGINT to the group); a second one kills them.
    """
    from stackllama_cli.core.errors import debug_enabled

    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=_pdeathsig if sys.platform == "linux" else None)
    noise = LauncherNoise(debug_enabled())
    state = {"interrupts": 0}

    def to_group(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:  # already gone
            pass

    def on_interrupt(signum, frame):
        state["interrupts"] += 1
        if state["interrupts"] == 1:
            sys.stderr.write("\nstopping every rank (Ctrl-C again to kill them)\n")
            to_group(signal.SIGINT)
        else:
            to_group(signal.SIGKILL)

    def on_terminate(signum, frame):  # SIGTERM/SIGHUP from a scheduler or a closed terminal
        state["interrupts"] += 1
        to_group(signal.SIGTERM)

    previous = {sig: signal.signal(sig, handler) for sig, handler in
                ((signal.SIGINT, on_interrupt), (signal.SIGTERM, on_terminate), (signal.SIGHUP, on_terminate))}
    try:
        fd = proc.stderr.fileno()
        while chunk := os.read(fd, 65536):  # relay the ranks' stderr (stdout is inherited as is)
            sys.stderr.buffer.write(noise.feed(chunk))
            sys.stderr.buffer.flush()
        sys.stderr.buffer.write(noise.flush())
        sys.stderr.buffer.flush()
        return proc.wait(), noise, state["interrupts"] > 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
