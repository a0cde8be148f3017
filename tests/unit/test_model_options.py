"""Options about the model itself, on each architecture of tests/tiny_models.py: LoRA targets (all-linear and
named modules), --attn-implementation, --precision against the device, --prompt-format choices; each bad
choice is one line, not a traceback."""

import pytest
import torch

from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.models.load import check_device_support
from tests.tiny_models import ARCHITECTURES, FAMILIES, _config, build_tiny_model, build_tokenizer

CPU = {"cuda": False, "bf16": False, "flash_attn": False}
OLD_GPU = {"cuda": True, "bf16": False, "flash_attn": True}
GPU = {"cuda": True, "bf16": True, "flash_attn": True}


def test_device_support():
    for facts in (CPU, OLD_GPU, GPU):
        check_device_support("fp32", None, facts)
    check_device_support("bf16", None, CPU)  # slow without AMX, but it runs
    check_device_support("fp16", None, CPU)  # slow too (resolve_precision warns), but it runs
    check_device_support("fp16", None, OLD_GPU)
    check_device_support("bf16", "flash_attention_2", GPU)
    for precision, attn, facts, message in [
        ("bf16", None, OLD_GPU, "this GPU does not support bfloat16; use fp16"),
        ("fp32", "flash_attention_2", CPU, "flash_attention_2 needs a CUDA GPU"),
        ("bf16", "flash_attention_2", {**GPU, "flash_attn": False}, "needs the flash-attn package"),
        ("fp32", "flash_attention_2", GPU, "runs in bf16 or fp16 only"),
    ]:
        with pytest.raises(StackLlamaError, match=message):
            check_device_support(precision, attn, facts)


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 on a CPU")
def test_fp16_on_a_cpu_runs_with_one_warning(capfd, monkeypatch):
    from stackllama_cli.models import load

    monkeypatch.setattr(load, "_warned", set())
    assert load.resolve_precision("fp16") == "fp16" and load.resolve_precision("fp16") == "fp16"
    assert capfd.readouterr().err.count("--precision fp16 on a CPU: slow") == 1


def tiny(family: str, task: str = "CAUSAL_LM"):
    import transformers as tf

    config = _config(family, build_tokenizer_cached(family))
    cls = tf.AutoModelForCausalLM if task == "CAUSAL_LM" else tf.AutoModelForSequenceClassification
    if task != "CAUSAL_LM":
        config.num_labels = 1
    return cls.from_config(config)


_TOKENIZERS = {}


def build_tokenizer_cached(family: str):
    import tempfile
    from pathlib import Path

    if family not in _TOKENIZERS:
        _TOKENIZERS[family] = build_tokenizer(family, Path(tempfile.mkdtemp(prefix=f"tok-{family}-")))
    return _TOKENIZERS[family]


@pytest.mark.parametrize("task", ["CAUSAL_LM", "SEQ_CLS"])
@pytest.mark.parametrize("family", ARCHITECTURES)
def test_all_linear_adapts_every_decoder_projection(family, task):
    """all-linear finds each family's own projections (Phi-3's fused qkv_proj and gate_up_proj), never the LM
    head; a reward model's score head is trained whole beside them."""
    from peft import get_peft_model

    from stackllama_cli.stages.common import TrainCommon, linear_layer_names, lora_config

    model = tiny(family, task)
    assert linear_layer_names(model) == sorted(FAMILIES[family]["linear"])
    peft_model = get_peft_model(model, lora_config(TrainCommon(lora_r=2), task, model))
    adapted = {name.rsplit(".", 1)[-1] for name, m in peft_model.named_modules() if hasattr(m, "lora_A")}
    assert adapted == FAMILIES[family]["linear"]
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad and "lora_" not in name}
    assert trainable == ({"base_model.model.score.modules_to_save.default.weight"} if task == "SEQ_CLS" else set())


def test_a_missing_lora_target_names_the_models_linear_layers():
    from stackllama_cli.stages.common import TrainCommon, lora_config

    model = tiny("phi3")
    cfg = TrainCommon(lora_target_modules="qkv_proj, v_proj,q_proj")  # peft would quietly adapt qkv_proj alone
    with pytest.raises(StackLlamaError) as err:
        lora_config(cfg, "CAUSAL_LM", model)
    assert str(err.value) == ("--lora-target-modules: Phi3ForCausalLM has no module named v_proj, q_proj; its "
                              "linear layers are down_proj, gate_up_proj, o_proj, qkv_proj (or use all-linear)")
    config = lora_config(TrainCommon(lora_target_modules="self_attn.qkv_proj,mlp.down_proj"), "CAUSAL_LM", model)
    assert set(config.target_modules) == {"self_attn.qkv_proj", "mlp.down_proj"}


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory):
    return build_tiny_model("qwen2", tmp_path_factory.mktemp("qwen2"))


def test_attn_implementation_reaches_every_load(qwen2_dir):
    from stackllama_cli.models.load import load_causal_lm, load_reward_model
    from stackllama_cli.models.resolve import resolve_model

    spec = resolve_model(str(qwen2_dir))
    assert load_causal_lm(spec, attn_implementation="eager").config._attn_implementation == "eager"
    assert load_causal_lm(spec).config._attn_implementation == "sdpa"  # the library's choice
    import transformers as tf

    config = tf.AutoConfig.from_pretrained(qwen2_dir, num_labels=1)
    tf.AutoModelForSequenceClassification.from_config(config).save_pretrained(qwen2_dir.parent / "rm")
    rm = load_reward_model(resolve_model(str(qwen2_dir.parent / "rm")), attn_implementation="eager")
    assert rm.config._attn_implementation == "eager"


def test_an_unsupported_attn_implementation_is_one_line(qwen2_dir, monkeypatch):
    import transformers as tf

    from stackllama_cli.models.load import load_causal_lm
    from stackllama_cli.models.resolve import resolve_model

    monkeypatch.setattr(tf.Qwen2ForCausalLM, "_supports_sdpa", False)
    with pytest.raises(StackLlamaError, match=r"--attn-implementation sdpa is not available for .*qwen2.*: "
                                              "Qwen2ForCausalLM does not support"):
        load_causal_lm(resolve_model(str(qwen2_dir)), attn_implementation="sdpa")


def one_line_error(result, code: int, text: str) -> None:
    assert result.exit_code == code, result
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in errors[0] and "Traceback" not in result.stderr, result.stderr[-1500:]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only errors")
def test_cpu_precision_and_attention_errors(qwen2_dir, sample_data_dir, tmp_path, run_cli):
    args = ["sft", "--model", qwen2_dir, "--data", sample_data_dir, "--max-steps", "1", "--seq-length", "32"]
    one_line_error(run_cli(*args, "--output", tmp_path / "b", "--attn-implementation", "flash_attention_2"), 1,
                   "flash_attention_2 needs a CUDA GPU")
    questions = tmp_path / "q.txt"
    questions.write_text("Why?\n")
    one_line_error(run_cli("generate", qwen2_dir, "--input", questions, "--attn-implementation", "flash_attention_2"),
                   1, "flash_attention_2 needs a CUDA GPU")


def test_bad_option_values_are_usage_errors(qwen2_dir, sample_data_dir, tmp_path, run_cli):
    one_line_error(run_cli("sft", "--model", qwen2_dir, "--data", sample_data_dir, "--output", tmp_path / "a",
                           "--attn-implementation", "flash"), 2, "--attn-implementation must be one of sdpa, eager, flash")
    one_line_error(run_cli("ppo", "--prompt-format", "alpaca"), 2, "--prompt-format must be one of recipe, chat")
    one_line_error(run_cli("eval-rm", qwen2_dir, "--data", sample_data_dir, "--prompt-format", "alpaca"), 2,
                   "--prompt-format must be one of recipe, chat")


def test_lora_target_error_from_the_command_line(sample_data_dir, tmp_path, run_cli):
    phi3 = build_tiny_model("phi3", tmp_path / "phi3")
    one_line_error(run_cli("sft", "--model", phi3, "--data", sample_data_dir, "--output", tmp_path / "sft",
                           "--max-steps", "1", "--seq-length", "32", "--lora-target-modules", "q_proj,v_proj"), 1,
                   "Phi3ForCausalLM has no module named q_proj, v_proj; its linear layers are down_proj, "
                   "gate_up_proj, o_proj, qkv_proj")


def test_prompt_format_errors_from_the_command_line(qwen2_dir, tiny_model_dir, sample_data_dir, tmp_path, run_cli):
    import shutil

    from stackllama_cli.data.prompt_format import write_record

    trained = tmp_path / "chat-model"  # a model recorded as trained on chat prompts
    shutil.copytree(qwen2_dir, trained)
    write_record(trained, "chat")
    one_line_error(run_cli("train-rm", "--model", trained, "--data", sample_data_dir, "--output", tmp_path / "rm",
                           "--prompt-format", "recipe"), 1,
                   f"--prompt-format recipe, but {trained} was trained with --prompt-format chat")
    questions = tmp_path / "q.txt"
    questions.write_text("Why?\n")
    one_line_error(run_cli("generate", trained, "--input", questions, "--prompt-format", "recipe"), 1,
                   "was trained with --prompt-format chat")
    one_line_error(run_cli("sft", "--model", tiny_model_dir, "--data", sample_data_dir, "--output", tmp_path / "sft",
                           "--prompt-format", "chat"), 1, "has no chat template; use --prompt-format recipe")
