"""The PPO policy module: logits exactly as the model computes them (its own soft-capping or
scaling included), values on the last hidden state, the value head where the model is."""

import pytest
import torch

from stackllama_cli.stages.ppo.math import logprobs_from_logits
from stackllama_cli.stages.ppo.policy import PolicyWithValueHead

SIZES = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=8, max_position_embeddings=64, pad_token_id=0, eos_token_id=1,
             bos_token_id=None)


def tiny(arch: str):
    """A tiny causal LM of each family, built from its config class (no download); every one of these
    post-processes its logits after lm_head except LLaMA."""
    import transformers as tf

    if arch == "llama":
        return tf.LlamaForCausalLM(tf.LlamaConfig(**SIZES))
    if arch == "gemma2":  # tanh soft-capping of the final logits
        return tf.Gemma2ForCausalLM(tf.Gemma2Config(**SIZES, final_logit_softcapping=2.0))
    if arch == "gemma3":
        return tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(**SIZES, final_logit_softcapping=2.0))
    if arch == "cohere":  # logits multiplied by logit_scale
        return tf.CohereForCausalLM(tf.CohereConfig(**SIZES, logit_scale=0.25))
    if arch == "granite":  # logits divided by logits_scaling
        return tf.GraniteForCausalLM(tf.GraniteConfig(**SIZES, logits_scaling=4.0))
    raise ValueError(arch)


def with_lora(lm):
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(lm, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.1)
    return policy


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gemma3", "cohere", "granite"])
def test_logprobs_and_values_are_the_models_own(arch):
    torch.manual_seed(0)
    policy = with_lora(tiny(arch)).eval()
    module = PolicyWithValueHead(policy, 32).eval()
    ids = torch.randint(2, 96, (2, 11))
    attn = torch.ones_like(ids)
    attn[1, :3] = 0  # a left-padded prompt
    start = 6  # prompt columns 0..5, response columns 6..10
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits, values = module(ids, attn, start)
        out = policy(input_ids=ids, attention_mask=attn, position_ids=positions, output_hidden_states=True)
    # the log-probs PPO used before the selective log-softmax (math.py): the whole log-softmax of the model's logits
    full = torch.log_softmax(out.logits[:, start - 1 : -1].float(), dim=-1)
    expected = torch.gather(full, 2, ids[:, start:].unsqueeze(-1)).squeeze(-1)
    assert logits.shape == (2, 5, 96) and values.shape == (2, 5)
    assert torch.allclose(logprobs_from_logits(logits, ids[:, start:]), expected, atol=1e-5)
    hidden = out.hidden_states[-1][:, start - 1 : -1]
    assert torch.allclose(values, module.value_head(hidden).squeeze(-1), atol=1e-6)
    with module.reference(), torch.no_grad():  # the reference: the same forward with the adapter off
        ref_logits, none = module(ids, attn, start, with_values=False)
        base = policy(input_ids=ids, attention_mask=attn, position_ids=positions).logits[:, start - 1 : -1]
    assert none is None and torch.allclose(ref_logits, base.float(), atol=1e-5)


def test_left_padding_no_row_attends_to_changes_nothing():
    """Columns of left padding common to the whole batch are dropped before the forward: the same log-probs and
    values as without them."""
    torch.manual_seed(0)
    module = PolicyWithValueHead(with_lora(tiny("llama")), 32).eval()
    ids = torch.randint(2, 96, (2, 9))
    attn = torch.ones_like(ids)
    attn[1, :2] = 0
    padded_ids = torch.cat([torch.zeros(2, 4, dtype=ids.dtype), ids], 1)
    padded_attn = torch.cat([torch.zeros(2, 4, dtype=attn.dtype), attn], 1)
    with torch.no_grad():
        logits, values = module(ids, attn, 5)
        padded_logits, padded_values = module(padded_ids, padded_attn, 9)
    tokens = ids[:, 5:]
    assert torch.allclose(logprobs_from_logits(logits, tokens), logprobs_from_logits(padded_logits, tokens), atol=1e-5)
    assert torch.allclose(values, padded_values, atol=1e-5)


def test_value_head_lives_where_the_model_does():
    """A quantised model is placed at load time (device_map) and accelerate does not move it: the value
    head must follow the model's device itself (here the meta device stands for a GPU)."""
    with torch.device("meta"):
        lm = tiny("llama")
    module = PolicyWithValueHead(lm, 32)
    assert module.value_head.weight.device == lm.get_output_embeddings().weight.device
    assert module.value_head.weight.device.type == "meta"


def test_value_head_from_the_reward_models_score_head():
    """--value-init reward-model: the value head predicts what the score head does, on the reward's scale."""
    import transformers as tf

    from stackllama_cli.core.errors import StackLlamaError
    from stackllama_cli.stages.ppo.warmstart import init_value_head

    torch.manual_seed(0)
    rm = tf.LlamaForSequenceClassification(tf.LlamaConfig(**SIZES, num_labels=1))
    value_head = torch.nn.Linear(32, 1)
    init_value_head(value_head, rm, {"mean": 0.5, "std": 2.0}, baseline=0.25)
    hidden = torch.randn(3, 32)
    with torch.no_grad():
        expected = (rm.score(hidden) - 0.5) / 2.0 - 0.25
        assert torch.allclose(value_head(hidden), expected, atol=1e-6)
    with pytest.raises(StackLlamaError, match="hidden size is 32, the policy's 16"):
        init_value_head(torch.nn.Linear(16, 1), rm, None, 0.0)
