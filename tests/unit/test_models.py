"""Model resolution: aliases, GGUF, adapters, hub ids and bad input."""

import json

import pytest

from stackllama_cli.errors import StackLlamaError
from stackllama_cli.models import ModelSpec, make_adapter_portable, resolve_model, resolve_precision


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


def test_precision_auto_is_fp32_on_cpu():
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("BF16") == "bf16"
    with pytest.raises(StackLlamaError):
        resolve_precision("fp8")
