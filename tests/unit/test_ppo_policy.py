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


def test_bf16_base_trains_float32_adapter_and_value_head():
    """A bf16 base (--precision auto on an AMX CPU): LoRA weights and the value head stay float32 with float32
    gradients, the values are float32, and the log-probs are those of the float32 model to within bf16's
    precision. The attention that replaces sdpa on a CPU (policy.py) is sdpa's own result in float32."""
    import copy

    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from stackllama_cli.stages.ppo.policy import CPU_BF16_ATTENTION, _sdpa_float32

    torch.manual_seed(0)
    lm32 = tiny("llama")
    lm32.config._attn_implementation = "sdpa"
    lm16 = copy.deepcopy(lm32).to(torch.bfloat16)
    policy32 = with_lora(lm32)
    torch.manual_seed(0)
    policy16 = with_lora(lm16)
    policy16.load_state_dict(policy32.state_dict())  # the same adapter; peft keeps it float32 on a bf16 base
    m32, m16 = PolicyWithValueHead(policy32, 32).eval(), PolicyWithValueHead(policy16, 32).eval()
    m16.value_head.load_state_dict(m32.value_head.state_dict())
    assert lm16.config._attn_implementation == CPU_BF16_ATTENTION
    ids = torch.randint(2, 96, (2, 11))
    attn = torch.ones_like(ids)
    attn[1, :3] = 0
    logits, values = m16(ids, attn, 6)
    logp = logprobs_from_logits(logits, ids[:, 6:])
    (logp.sum() + values.sum()).backward()
    trainable = [(n, p) for n, p in m16.named_parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
                             for _, p in trainable)
    assert values.dtype == torch.float32 and logits.dtype == torch.bfloat16
    with torch.no_grad():
        logits32, values32 = m32(ids, attn, 6)
    assert torch.allclose(logp, logprobs_from_logits(logits32, ids[:, 6:]), atol=0.05)
    assert torch.allclose(values, values32, atol=0.05)
    # the attention itself, on float32 inputs with a padding mask: sdpa's result
    attention = lm32.model.layers[0].self_attn
    q, k, v = torch.randn(2, 4, 7, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    mask = torch.ones(7, 7, dtype=torch.bool).tril().expand(2, 1, 7, 7).clone()
    mask[1, :, :, :2] = False
    expected, _ = sdpa_attention_forward(attention, q, k, v, mask, scaling=8**-0.5)
    got, _ = _sdpa_float32(attention, q.bfloat16(), k.bfloat16(), v.bfloat16(), mask, scaling=8**-0.5)
    assert got.dtype == torch.bfloat16 and torch.allclose(got.float()[:, 2:], expected[:, 2:], atol=2e-2)
    got32, _ = _sdpa_float32(attention, q, k, v, mask, scaling=8**-0.5)
    assert torch.allclose(got32, expected, atol=1e-6)


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
