"""Rollouts sample from exactly the distribution PPO scores: nothing inherited from the model's
generation_config, and log-probs taken at the sampling temperature."""

import pytest
import torch

from stackllama_cli.stages.ppo.config import PpoConfig
from stackllama_cli.stages.ppo.experience import experience
from stackllama_cli.stages.ppo.policy import PolicyWithValueHead
from stackllama_cli.stages.ppo.rollout import generate

QUESTIONS = ["What is the best temperature to serve a stout?", "How do I descale my espresso machine?",
             "Which grind for a French press?"]


@pytest.fixture(scope="module")
def policy_with_opinions(tiny_model_dir):
    """The tiny LLaMA with a LoRA adapter, whose generation_config would bend sampling if inherited."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.padding_side = "left"
    lm = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    gc = lm.generation_config
    gc.repetition_penalty, gc.min_new_tokens, gc.no_repeat_ngram_size = 1.8, 6, 2
    gc.suppress_tokens = list(range(5, 40))
    gc.bad_words_ids = [[41], [42]]
    torch.manual_seed(0)
    policy = get_peft_model(lm, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    with torch.no_grad():  # a trained-looking adapter, so the policy differs from the base
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.2)
    module = PolicyWithValueHead(policy, lm.config.hidden_size).eval()
    return module, tokenizer


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_tokens_logprobs_equal_ppo_logprobs(policy_with_opinions, monkeypatch, temperature):
    module, tokenizer = policy_with_opinions
    lm = module.policy
    captured, built = {}, []
    generate_fn = lm.generate

    def spy(*args, **kwargs):  # the real generate, also returning the scores it sampled from
        out = generate_fn(*args, **kwargs, output_scores=True, return_dict_in_generate=True)
        captured["scores"] = torch.stack(out.scores, dim=1)
        return out.sequences

    inner = lm.get_base_model()
    get_processors = inner._get_logits_processor

    def spy_processors(*args, **kwargs):
        processors = get_processors(*args, **kwargs)
        built.extend(type(p).__name__ for p in processors)
        return processors

    monkeypatch.setattr(lm, "generate", spy)
    monkeypatch.setattr(inner, "_get_logits_processor", spy_processors)
    torch.manual_seed(1)
    prompts = [f"Question: {q}\n\nAnswer:" for q in QUESTIONS]
    rollout = generate(lm, tokenizer, QUESTIONS, prompts, max_new_tokens=10, temperature=temperature)
    # what generate() built: a temperature warper at most, no penalty, ban or minimum length
    assert set(built) <= {"TemperatureLogitsWarper"}, built
    assert lm.get_base_model().generation_config.repetition_penalty == 1.8  # the model's own config is left as it was

    cfg = PpoConfig(temperature=temperature, batch_size=3, mini_batch_size=1)
    exp = experience(module, module, rollout, torch.zeros(3), beta=0.0, cfg=cfg)
    mask = rollout.response_mask
    sampled = torch.log_softmax(captured["scores"].float(), dim=-1)
    sampled = torch.gather(sampled, 2, rollout.response_ids.unsqueeze(-1)).squeeze(-1)
    assert mask.sum() > 10
    assert torch.allclose(exp["logp"] * mask, sampled * mask, atol=1e-5), (exp["logp"] - sampled).abs().max()
    # the reference is the same model with the adapter off, scored at the same temperature
    with lm.disable_adapter(), torch.no_grad():
        logits, _ = module(rollout.input_ids, rollout.attention_mask, rollout.query_ids.shape[1], with_values=False)
    ref = torch.gather(torch.log_softmax(logits / temperature, -1), 2, rollout.response_ids.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(exp["ref_logp"] * mask, ref * mask, atol=1e-6)
