"""Loading what a `ModelSpec` points at: tokenizer, causal LM, reward model; precision, attention
implementation and bitsandbytes quantisation (models/resolve.py says where the weights are)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from stackllama_cli.core.config import check_exclusive, check_precision
from stackllama_cli.core.errors import StackLlamaError, UsageError, one_line
from stackllama_cli.dist.ranks import local_process_index
from stackllama_cli.models.resolve import ModelSpec, adapter_task_type, check_hub_reachable

REWARD_STATS_FILENAME = "reward_stats.json"
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")
_warned: set[str] = set()  # precision warnings already shown by this process


def device_facts() -> dict[str, bool]:
    """What the precision and attention choices depend on: a CUDA GPU, bf16 on it, the flash-attn package."""
    import torch

    cuda = torch.cuda.is_available()
    return {"cuda": cuda, "bf16": cuda and torch.cuda.is_bf16_supported(),
            "flash_attn": importlib.util.find_spec("flash_attn") is not None}


def check_device_support(precision: str, attn_implementation: str | None, facts: dict[str, bool]) -> None:
    """A resolved precision (fp32/bf16/fp16) and attention implementation this machine cannot run: one line.
    (fp16 and bf16 on a CPU run, slowly: resolve_precision warns about fp16 there.)"""
    if precision == "bf16" and facts["cuda"] and not facts["bf16"]:
        raise StackLlamaError("--precision bf16: this GPU does not support bfloat16; use fp16 (or auto)")
    if attn_implementation == "flash_attention_2":
        if not facts["cuda"]:
            raise StackLlamaError("--attn-implementation flash_attention_2 needs a CUDA GPU and none is visible; "
                                  "use sdpa or eager")
        if not facts["flash_attn"]:
            raise StackLlamaError("--attn-implementation flash_attention_2 needs the flash-attn package "
                                  "(pip install flash-attn --no-build-isolation); or use sdpa")
        if precision == "fp32":
            raise StackLlamaError("--attn-implementation flash_attention_2 runs in bf16 or fp16 only; pass "
                                  "--precision bf16 (or fp16), or use sdpa")


def cpu_bf16_fast(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bf16 in hardware: the `amx_bf16` flag of /proc/cpuinfo (Intel AMX,
    Sapphire Rapids and later). `cpuinfo` is that file's text; read here when None."""
    from stackllama_cli.core.environment import cpu_from_cpuinfo

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:  # not Linux: no AMX we can see
            return False
    return cpu_from_cpuinfo(cpuinfo)["amx_bf16"]


def resolve_precision(precision: str = "auto", cpu_bf16: bool = False) -> str:
    """'auto' -> bf16 on GPUs that support it, fp16 on older GPUs; on a CPU, fp32, or bf16 where the caller's
    CPU path is measured faster in bf16 (`cpu_bf16`) and the CPU has AMX (`cpu_bf16_fast`). An explicit choice
    the device cannot run is an error (check_device_support).

    bf16 matmuls on CPUs without AMX are ~15-60x slower than fp32. With AMX, ppo measured bf16 faster with
    its CPU fixes (stages/ppo/policy.py:cpu_bf16_fixes; bench/ppo.py has the figures) and asks for it;
    the Trainer stages and generate lack those fixes (sdpa's bf16 backward alone is 2-3x slower than
    float32's on a CPU) and keep fp32 until measured.
    """
    check_precision(precision)
    precision = precision.lower()
    if precision != "auto":
        if precision != "fp32":
            facts = device_facts()
            check_device_support(precision, None, facts)
            if precision == "fp16" and not facts["cuda"] and precision not in _warned:
                from stackllama_cli.core.console import warn

                _warned.add(precision)
                warn("--precision fp16 on a CPU: slow, and weights in fp16 lose precision in training; fp32 is "
                     "the CPU's choice (auto)")
        return precision
    facts = device_facts()
    if facts["cuda"]:
        return "bf16" if facts["bf16"] else "fp16"
    return "bf16" if cpu_bf16 and cpu_bf16_fast() else "fp32"


def check_attn_implementation(attn_implementation: str | None) -> None:
    if attn_implementation is not None and attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise UsageError(f"--attn-implementation must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, "
                         f"not {attn_implementation!r}")


def attn_kwargs(attn_implementation: str | None, precision: str = "auto") -> dict[str, str]:
    """`from_pretrained`'s attn_implementation (none: the library's choice for the model), checked first."""
    check_attn_implementation(attn_implementation)
    if attn_implementation is None:
        return {}
    check_device_support(resolve_precision(precision), attn_implementation, device_facts())
    return {"attn_implementation": attn_implementation}


def torch_dtype(precision: str, cpu_bf16: bool = False):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[
        resolve_precision(precision, cpu_bf16)]


def quantization_config(load_in_8bit: bool, load_in_4bit: bool, precision: str = "auto") -> Any | None:
    """A `BitsAndBytesConfig`, or None. Errors clearly when bitsandbytes cannot run here."""
    check_exclusive(load_in_8bit, load_in_4bit)
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


def load_tokenizer(spec: ModelSpec, padding_side: str = "right", trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    if spec.is_hub and spec.tokenizer_path == spec.path:
        check_hub_reachable(spec.path)
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
    if spec.is_hub:
        check_hub_reachable(spec.path)
    try:
        return auto_cls.from_pretrained(spec.path, **kwargs)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        attn = kwargs.get("attn_implementation")
        if attn and isinstance(exc, (ValueError, ImportError)) and "attention" in str(exc).lower():
            raise StackLlamaError(f"--attn-implementation {attn} is not available for {spec.name}: "
                                  f"{one_line(exc, 200)}") from None
        hint = " (no network: hub ids only work where the hub is reachable or cached)" if spec.is_hub else ""
        raise StackLlamaError(f"cannot load model {spec.name}{hint}: {one_line(exc, 200)}") from None


def is_reward_model_dir(path: str) -> bool:
    """A saved sequence classifier (merged reward model): its config names a ...ForSequenceClassification."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        archs = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return False
    return any(a.endswith("ForSequenceClassification") for a in archs)


def check_causal_lm(spec: ModelSpec) -> None:
    """A reward model (or any adapter made for another task) where a policy is needed would run with an untrained
    LM head: refuse it, saying what it is. Also called before anything loads, to fail fast."""
    for adapter in (*spec.merged_adapters, *((spec.adapter,) if spec.adapter else ())):
        kind = adapter_task_type(adapter)
        if kind == "SEQ_CLS":
            raise StackLlamaError(f"{spec.name} is a reward model (adapter {adapter} is a SEQ_CLS adapter, a sequence "
                                  "classifier), not a causal LM: give the SFT model here")
        if kind not in (None, "CAUSAL_LM"):
            raise StackLlamaError(f"{spec.name} is not a causal LM (adapter {adapter} is a {kind} adapter): give the "
                                  "SFT model here")
    if not spec.is_hub and is_reward_model_dir(spec.path):
        raise StackLlamaError(f"{spec.name} is a reward model (a sequence classifier), not a causal LM: give the "
                              "SFT model here")


def load_causal_lm(spec: ModelSpec, precision: str = "auto", load_in_8bit: bool = False,
                   load_in_4bit: bool = False, trust_remote_code: bool = False, merge_adapter: bool = True,
                   attn_implementation: str | None = None, cpu_bf16: bool = False):
    """A causal LM; an adapter in `spec` is merged (full-precision base) or attached (quantised base).
    `cpu_bf16`: see resolve_precision."""
    from transformers import AutoModelForCausalLM

    check_causal_lm(spec)
    quant = quantization_config(load_in_8bit, load_in_4bit, precision)
    model = _from_pretrained(AutoModelForCausalLM, spec, dtype=torch_dtype(precision, cpu_bf16),
                             quantization_config=quant,
                             device_map=device_map_for(quant is not None), trust_remote_code=trust_remote_code,
                             **attn_kwargs(attn_implementation, precision))
    model = merge_inner_adapters(model, spec)
    if spec.adapter:
        kind = adapter_task_type(spec.adapter)
        if kind not in (None, "CAUSAL_LM"):
            raise StackLlamaError(f"{spec.adapter} is a {kind} adapter, not a causal-LM one")
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, spec.adapter)
        if merge_adapter and quant is None:
            model = model.merge_and_unload()
    return model


def load_reward_model(spec: ModelSpec, precision: str = "auto", load_in_8bit: bool = False,
                      load_in_4bit: bool = False, trust_remote_code: bool = False, pad_token_id: int | None = None,
                      merge_adapter: bool = True, attn_implementation: str | None = None,
                      cpu_bf16: bool = False):
    """A one-output sequence classifier: a train-rm adapter or a merged reward model. `cpu_bf16`: see
    resolve_precision."""
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
                             dtype=torch_dtype(precision, cpu_bf16), quantization_config=quant,
                             device_map=device_map_for(quant is not None), trust_remote_code=trust_remote_code,
                             **attn_kwargs(attn_implementation, precision))
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


def recorded_prompt_format(spec: ModelSpec) -> str | None:
    """The --prompt-format a model was trained with (data/prompt_format.py), from the outermost adapter in
    `spec` inwards to the base; None when none of them records one (a base model)."""
    from stackllama_cli.data.prompt_format import read_record

    return read_record([spec.adapter, *reversed(spec.merged_adapters), spec.path])


def load_reward_stats(spec: ModelSpec) -> dict | None:
    """Mean/std of training rewards saved by train-rm, used by PPO to normalise rewards."""
    for directory in filter(None, (spec.adapter, spec.path)):
        path = Path(directory) / REWARD_STATS_FILENAME
        if path.is_file():
            return json.loads(path.read_text())
    return None
