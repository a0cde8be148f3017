"""Data parallelism by re-executing ourselves under `accelerate launch`.

Pure: `resolve_processes`, `needs_relaunch`, `build_launch_argv`, `LauncherNoise` (the stderr
filter). Effectful: `relaunch_if_needed`, which runs the launcher in its own process group,
forwards signals to it, shows a failing rank's error once and exits with the launcher's exit
code. Nothing here imports torch at module level (`--help` stays fast): GPUs are counted from
CUDA_VISIBLE_DEVICES or nvidia-smi. Also helpers for ranks: `describe_batch`,
`distributed_state`, `shard_bounds`, `gather_in_order`. See docs/multi-gpu.md.
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


CONFIGS_DIR = Path(__file__).parent / "configs"  # shipped examples, usable by name


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


def effective_batch_size(per_device: int, processes: int, accumulation: int = 1) -> int:
    return per_device * processes * accumulation


def world_size(env: Mapping[str, str] = os.environ) -> int:
    return int(env.get("WORLD_SIZE", "1"))


def describe_batch(per_device: int, accumulation: int = 1, processes: int | None = None) -> str:
    """'effective batch 64 = 4 per device x 8 processes x 2 accumulation' (processes: this run's by default)."""
    n = world_size() if processes is None else processes
    return (f"effective batch {effective_batch_size(per_device, n, accumulation)} = {per_device} per device x "
            f"{n} process{'es' if n != 1 else ''} x {accumulation} accumulation")


# Helpers for work split across the processes of a run without a Trainer (e.g. scoring pairs).


def distributed_state():
    """accelerate's PartialState, set up right for CPU runs too: without cpu=True on a machine with no GPU,
    accelerate falls back to a single process even under `accelerate launch` (measured)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """This rank's contiguous slice [start, end) of n items; sizes differ by at most one, rank order = item order."""
    return rank * n // world, (rank + 1) * n // world


def gather_in_order(local: list, total: int) -> list:
    """Every rank's `shard_bounds` results, concatenated in rank order (= the original order), on every rank."""
    if world_size() == 1:
        return list(local)
    from accelerate.utils import gather_object

    distributed_state()
    gathered = gather_object(list(local))
    if len(gathered) != total:
        raise RuntimeError(f"gathered {len(gathered)} results across processes, expected {total}")
    return gathered


def finish_distributed() -> None:
    """Leave a data-parallel run in order: wait for every rank, then tear the process group down.

    A rank that simply exits with the group alive can abort in the C++ destructor ("terminate called
    without an active exception") and take the rendezvous store down under slower ranks (seen with two
    machines on one host). A no-op in a single process; never raises (we are on the way out)."""
    if world_size() == 1:
        return
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - a broken group at exit must not hide the run's own result
        pass


def relaunch_if_needed(opts: LaunchOptions, args: Sequence[str] | None = None) -> None:
    """Re-exec under accelerate when several processes are wanted; never returns in that case."""
    env = os.environ
    if under_launcher(env):
        return
    processes, cpu = resolve_processes(opts, count_visible_gpus(env))
    if not needs_relaunch(opts, env, processes):
        return
    from stackllama_cli.console import info

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
            _report_failure(Path(error_dir), noise, code)
    finally:
        shutil.rmtree(error_dir, ignore_errors=True)
    raise SystemExit(130 if interrupted and code != 0 else code)


_ELASTIC_LOG = re.compile(rb"^[WEI]\d{4} .*torch/distributed/")
_ROOT_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)")
_ROOT_EXIT = re.compile(r"^\s*exitcode\s*:\s*(-?\d+).*?(?:\((SIG\w+)\))?\s*$")


class LauncherNoise:
    """Drops torch-elastic's log lines and the launcher's traceback (a failing rank has printed its own
    one-line error already); everything else, the ranks' output, passes through untouched. What it drops
    is kept, so that a launcher failure no rank explained can still be summed up in one line."""

    def __init__(self, debug: bool = False):
        self.debug = debug
        self.dropping = False
        self.dropped: list[str] = []
        self.partial = b""  # the current line's start, held back while it might still be noise
        self.passing = False  # the current line's start was written: the rest of it follows unfiltered

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to show for a chunk of the launcher's stderr. Works on chunks, not lines, because
        Rich redraws a progress bar with '\\r' and no newline: a line-by-line relay froze it."""
        if self.debug:
            return chunk
        out = []
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        for line in lines:
            if self.passing or self.keep(line + b"\n"):
                out.append(line + b"\n")
            self.passing = False
        if self.partial and (self.passing or not self._may_be_noise(self.partial)):
            out.append(self.partial)
            self.partial, self.passing = b"", True
        return b"".join(out)

    def flush(self) -> bytes:
        """At the end: what is left of a last line without a newline."""
        rest, self.partial = self.partial, b""
        return rest if rest and (self.passing or self.keep(rest)) else b""

    def _may_be_noise(self, start: bytes) -> bool:
        if self.dropping:
            return True
        traceback = b"Traceback (most recent call last)"
        return (traceback.startswith(start) or start.startswith(traceback)
                or bool(re.match(rb"^[WEI]\d{0,4}$", start)) or bool(_ELASTIC_LOG.match(start))
                or bool(re.match(rb"^[WEI]\d{4} [^\n]*$", start)))  # a log line whose path has not come yet

    def keep(self, line: bytes) -> bool:
        if self.debug:
            return True
        if line.startswith(b"Traceback (most recent call last)"):
            self.dropping = True  # from the launcher itself: our ranks print tracebacks only with --debug
        if self.dropping or _ELASTIC_LOG.match(line):
            self.dropped.append(line.decode("utf-8", "replace").rstrip())
            return False
        return True

    def summary(self) -> str | None:
        """One line for the launcher's failure: the rank that died first and how, else its last error line."""
        lines = self.dropped
        if "Root Cause (first observed failure):" in lines:
            rank = code = sig = None
            for line in lines[lines.index("Root Cause (first observed failure):"):]:
                if rank is None and (m := _ROOT_RANK.match(line)):
                    rank = m.group(1)
                elif code is None and (m := _ROOT_EXIT.match(line)):
                    code, sig = int(m.group(1)), m.group(2)
            if rank is not None and code is not None:
                if code < 0:
                    hint = " (the system killed it: often out of memory)" if sig == "SIGKILL" else ""
                    return f"rank {rank} died from {sig or f'signal {-code}'}{hint}"
                return f"rank {rank} exited with code {code}"
        for line in reversed(lines):
            if line.strip() and not line.startswith((" ", "\t", "=", "-")) and not _ELASTIC_LOG.match(line.encode()):
                return line.strip()
        return None


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
    from stackllama_cli.errors import debug_enabled

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


def record_rank_error(message: str) -> None:
    """Called by `cli.main` on every rank under our launcher: the parent shows each distinct error once."""
    directory = os.environ.get(ERROR_DIR_ENV)
    rank = os.environ.get("RANK", "0")
    if directory:
        with open(Path(directory) / f"rank-{rank}.txt", "w", encoding="utf-8") as fh:
            fh.write(message)


def _report_failure(directory: Path, noise: LauncherNoise, code: int) -> None:
    """Show each distinct rank error once (rank 0's is on screen already); if no rank explained the
    failure (killed, or the launcher itself failed), one line from the launcher's own report."""
    from rich.text import Text

    from stackllama_cli.console import console

    messages: dict[str, list[str]] = {}
    for path in sorted(directory.glob("rank-*.txt"), key=lambda p: int(p.stem.split("-")[1])):
        messages.setdefault(path.read_text(encoding="utf-8"), []).append(path.stem.split("-")[1])
    for message, ranks in messages.items():
        if "0" in ranks:  # rank 0 has printed it already
            continue
        console.print(Text.assemble((f"error (rank {', '.join(ranks)}): ", "bold red"), message), soft_wrap=True)
    if not messages and not noise.debug:
        reason = noise.summary() or f"accelerate launch exited with code {code}"
        console.print(Text.assemble(("error: ", "bold red"), reason, " (rerun with --debug for the launcher's log)"),
                      soft_wrap=True)
