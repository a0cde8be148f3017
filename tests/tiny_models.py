"""Tiny random models of five families, built locally (no download), each shaped like its real
instruction-tuned counterpart where the pipeline can tell: the special tokens and chat template, whether
the tokenizer adds a BOS itself, pad vs EOS, the generation_config (several EOS ids, sampling defaults, a
repetition penalty) and the architecture's own quirks (Phi-3's fused projections, Gemma-2's soft-capping).

Tokenizers are the byte-level BPE of tests/conftest.py trained on the same corpus (once more with blank
lines, so that "\n\n" is a token as in real vocabularies), with the family's special tokens; Llama-3 and
Qwen2 also get their real pre-tokenizer regex (Llama-3's template ends the prompt on "\n\n", which that
regex keeps in one piece whatever follows).
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import TOKENIZER_CORPUS

SIZES = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             head_dim=8, max_position_embeddings=1024)

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")

# Meta-Llama-3-8B-Instruct's template, verbatim
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
# Qwen2.5-Instruct's template without the tool-calling branches
QWEN2_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
    "{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\n' }}{%- endif %}{%- for message in messages %}{%- if message.role != 'system' %}"
    "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}")
# Mistral-7B-Instruct-v0.3's template without tools and system messages
MISTRAL_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{{- '[INST] ' + message['content'] + '[/INST]' }}{%- elif message['role'] == 'assistant' %}"
    "{{- ' ' + message['content']|trim + eos_token }}{%- endif %}{%- endfor %}")
# gemma-2-2b-it's template, verbatim
GEMMA2_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")
# Phi-3.5-mini-instruct's template, verbatim
PHI3_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")

# family -> special tokens (in id order), bos / eos / pad token, BOS added by the tokenizer, split regex, template,
# generation_config (token names stand for their ids), the linear layers LoRA's all-linear must find
FAMILIES = {
    "llama": dict(
        specials=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        bos="<|begin_of_text|>", eos="<|end_of_text|>", pad=None, adds_bos=True, split=LLAMA3_SPLIT,
        template=LLAMA3_TEMPLATE,
        generation=dict(bos_token_id="<|begin_of_text|>", eos_token_id=["<|end_of_text|>", "<|eot_id|>"],
                        do_sample=True, temperature=0.6, top_p=0.9),
        linear={"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    "qwen2": dict(
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos=None, eos="<|im_end|>", pad="<|endoftext|>", adds_bos=False, split=QWEN2_SPLIT, template=QWEN2_TEMPLATE,
        generation=dict(bos_token_id="<|endoftext|>", pad_token_id="<|endoftext|>",
                        eos_token_id=["<|im_end|>", "<|endoftext|>"], do_sample=True, repetition_penalty=1.05,
                        temperature=0.7, top_p=0.8, top_k=20),
        linear={"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    "mistral": dict(
        specials=["<unk>", "<s>", "</s>", "[INST]", "[/INST]"],
        bos="<s>", eos="</s>", pad=None, adds_bos=True, split=None, template=MISTRAL_TEMPLATE,
        generation=dict(bos_token_id="<s>", eos_token_id="</s>"),
        linear={"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    "gemma2": dict(
        specials=["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
        bos="<bos>", eos="<eos>", pad="<pad>", adds_bos=True, split=None, template=GEMMA2_TEMPLATE,
        generation=dict(bos_token_id="<bos>", eos_token_id=["<eos>", "<end_of_turn>"], pad_token_id="<pad>",
                        cache_implementation="hybrid"),
        linear={"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    "phi3": dict(
        specials=["<unk>", "<s>", "</s>", "<|endoftext|>", "<|assistant|>", "<|end|>", "<|user|>", "<|system|>"],
        bos="<s>", eos="<|endoftext|>", pad="<|endoftext|>", adds_bos=False, split=None, template=PHI3_TEMPLATE,
        generation=dict(bos_token_id="<s>", pad_token_id="<|endoftext|>",
                        eos_token_id=["<|endoftext|>", "<|assistant|>", "<|end|>"]),
        linear={"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}),
}
ARCHITECTURES = tuple(FAMILIES)


def build_tokenizer(family: str, directory: Path):
    """The conftest BPE (vocabulary 400) with `family`'s special tokens, BOS rule and chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    spec = FAMILIES[family]
    tok = Tokenizer(models.BPE())
    if spec["split"]:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(spec["split"]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=spec["specials"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TOKENIZER_CORPUS, TOKENIZER_CORPUS.replace("\n", "\n\n")] * 2, trainer=trainer)
    if spec["adds_bos"]:
        bos = spec["bos"]
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    named = {k: spec[k] for k in ("bos", "eos", "pad") if spec[k]}
    if "<unk>" in spec["specials"]:
        named["unk"] = "<unk>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **{f"{k}_token": v for k, v in named.items()},
                                   additional_special_tokens=[t for t in spec["specials"] if t not in named.values()])
    fast.chat_template = spec["template"]
    fast.save_pretrained(directory)
    return fast


def _config(family: str, tokenizer):
    import transformers as tf

    spec = FAMILIES[family]
    ids = dict(vocab_size=len(tokenizer), eos_token_id=tokenizer.convert_tokens_to_ids(spec["eos"]),
               bos_token_id=tokenizer.convert_tokens_to_ids(spec["bos"]) if spec["bos"] else None,
               pad_token_id=tokenizer.convert_tokens_to_ids(spec["pad"]) if spec["pad"] else None)
    if family == "llama":  # Llama-3.2: rope scaled "llama3", theta 500000, untied here like the 8B
        rope = dict(rope_type="llama3", rope_theta=500000.0, factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                    original_max_position_embeddings=256)
        return tf.LlamaConfig(**SIZES, **ids, rope_parameters=rope, tie_word_embeddings=False)
    if family == "qwen2":  # q/k/v biases (built in), tied embeddings like the 0.5B
        return tf.Qwen2Config(**SIZES, **ids, tie_word_embeddings=True, use_sliding_window=False,
                              rope_parameters=dict(rope_type="default", rope_theta=1000000.0))
    if family == "mistral":
        return tf.MistralConfig(**SIZES, **ids, sliding_window=None, tie_word_embeddings=False,
                                rope_parameters=dict(rope_type="default", rope_theta=1000000.0))
    if family == "gemma2":  # tanh soft-capping of attention scores and final logits, sliding/global layers
        return tf.Gemma2Config(**SIZES, **ids, final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
                               query_pre_attn_scalar=8, sliding_window=4096, tie_word_embeddings=True)
    if family == "phi3":  # fused qkv_proj and gate_up_proj
        return tf.Phi3Config(**SIZES, **ids, tie_word_embeddings=False, sliding_window=None)
    raise ValueError(family)


def build_tiny_model(family: str, directory: Path, seed: int = 0) -> Path:
    """A 2-layer, hidden-size-32 causal LM of `family` with its tokenizer and generation_config, as safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(family, directory)
    config = _config(family, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    to_id = tokenizer.convert_tokens_to_ids
    generation = {k: ([to_id(t) for t in v] if isinstance(v, list) else to_id(v)) if k.endswith("token_id") else v
                  for k, v in FAMILIES[family]["generation"].items()}
    model.generation_config = GenerationConfig(**generation)
    model.save_pretrained(directory, safe_serialization=True)
    return directory
