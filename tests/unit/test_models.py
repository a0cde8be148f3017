"""Model resolution: aliases, GGUF, adapters, hub ids and bad input."""

import json

import pytest

from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.models.load import resolve_precision
from stackllama_cli.models.resolve import ModelSpec, make_adapter_portable, resolve_model


def test_local_model_dir(tiny_model_dir):
    spec = resolve_model(str(tiny_model_dir))
    assert spec.path == str(tiny_model_dir) and spec.adapter is None and not spec.is_hub


def test_adapter_dir_resolves_its_base(tmp_path, tiny_model_dir):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model_dir),
                                                             "task_type": "CAUSAL_LM"}))
    spec = resolve_model(str(adapter))
    assert spec.path == str(tiny_model_dir) and spec.adapter == str(adapter)
    assert spec.tokenizer_path == str(tiny_model_dir)  # the adapter has no tokenizer files
    make_adapter_portable(adapter, ModelSpec(name="org/model", path="org/model", is_hub=True))
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == "org/model"


def test_hub_id_passes_through():
    spec = resolve_model("HuggingFaceTB/SmolLM2-135M")
    assert spec.is_hub and spec.path == "HuggingFaceTB/SmolLM2-135M"


@pytest.mark.parametrize("name", ["./missing-model", "/no/such/dir/", "a/b/c", "bad name!"])
def test_missing_paths_are_clear_errors(name):
    with pytest.raises(StackLlamaError, match="no model at"):
        resolve_model(name)


def test_dir_without_config_is_rejected(tmp_path):
    with pytest.raises(StackLlamaError, match="not a model directory"):
        resolve_model(str(tmp_path))


def test_missing_gguf_file(tmp_path):
    with pytest.raises(StackLlamaError, match="does not exist"):
        resolve_model(str(tmp_path / "x.gguf"))


def test_precision_auto_on_cpu_is_bf16_only_with_amx_where_asked(monkeypatch):
    import torch

    import stackllama_cli.models.load as load

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(load, "cpu_bf16_fast", lambda: False)
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("auto", cpu_bf16=True) == "fp32"
    monkeypatch.setattr(load, "cpu_bf16_fast", lambda: True)
    assert resolve_precision("auto", cpu_bf16=True) == "bf16"  # ppo, measured faster in bf16 with AMX
    assert resolve_precision("auto") == "fp32"  # a stage that has not measured it
    assert resolve_precision("FP32", cpu_bf16=True) == "fp32"  # asked for, whatever the CPU
    assert resolve_precision("BF16") == "bf16"
    with pytest.raises(StackLlamaError):
        resolve_precision("fp8")


def test_cpu_bf16_fast_reads_the_amx_bf16_flag():
    from stackllama_cli.models.load import cpu_bf16_fast

    assert cpu_bf16_fast("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert not cpu_bf16_fast("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")


def test_adapter_chain_resolves_to_merged_inner_adapters(tmp_path, tiny_model_dir):
    sft = tmp_path / "sft"
    ppo = tmp_path / "ppo"
    for directory, base in ((sft, tiny_model_dir), (ppo, sft)):
        directory.mkdir()
        (directory / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base),
                                                                   "task_type": "CAUSAL_LM"}))
    spec = resolve_model(str(ppo))
    assert spec.path == str(tiny_model_dir)
    assert spec.merged_adapters == (str(sft),) and spec.adapter == str(ppo)


def test_adapter_chain_loads_with_inner_adapter_merged(tmp_path, tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from stackllama_cli.models.load import load_causal_lm

    torch.manual_seed(0)
    paths = []
    base = str(tiny_model_dir)
    for name in ("sft", "ppo"):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM",
                                                      init_lora_weights=False))
        peft_model.save_pretrained(tmp_path / name)
        config_path = tmp_path / name / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = base
        config_path.write_text(json.dumps(config))
        base = str(tmp_path / name)
        paths.append(tmp_path / name)
    ids = torch.tensor([[5, 6, 7, 8]])
    chained = load_causal_lm(resolve_model(str(paths[1])))
    # reference: apply both adapters by hand, in order
    from peft import PeftModel

    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ref = PeftModel.from_pretrained(ref, paths[0]).merge_and_unload()
    ref = PeftModel.from_pretrained(ref, paths[1]).merge_and_unload()
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        out, expected, untouched = chained(ids).logits, ref(ids).logits, plain(ids).logits
    assert torch.allclose(out, expected, atol=1e-5)
    assert not torch.allclose(out, untouched, atol=1e-3)  # the adapters really changed something
