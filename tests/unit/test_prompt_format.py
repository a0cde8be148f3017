"""Prompt formats (data/prompt_format.py): which one a stage runs with, the chat template's checks, and the
tokens that end a response (several EOS ids) in PPO's rollouts and in generate."""

import io
import json

import pytest
import torch

from stackllama_cli.core.errors import StackLlamaError, UsageError
from stackllama_cli.data.prompt_format import (
    RECIPE,
    ChatFormat,
    read_record,
    resolve_format_name,
    stop_token_ids,
    write_record,
)
from stackllama_cli.data.prompts import format_example, format_prompt


@pytest.fixture(scope="module")
def llama3_tokenizer(tmp_path_factory):
    """The tiny Llama-3 tokenizer as stackllama loads it (pad = EOS)."""
    from transformers import AutoTokenizer

    from tests.tiny_models import build_tokenizer

    directory = tmp_path_factory.mktemp("llama3-tokenizer")
    build_tokenizer("llama", directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def test_recipe_is_the_original_template():
    assert RECIPE.prompt("Is it?") == format_prompt("Is it?") and RECIPE.end_of_turn_ids == ()
    assert RECIPE.example("Is it?", " Yes. ") == format_example("Is it?", " Yes. ")


@pytest.mark.parametrize("explicit,recorded,expected", [
    (None, {}, "recipe"),  # a base model, nothing asked: today's behaviour
    ("chat", {"base": None}, "chat"),  # asked for, nothing recorded
    (None, {"runs/sft": "chat"}, "chat"),  # inherited
    (None, {"runs/sft": "chat", "runs/rm": None}, "chat"),  # a reward model without a record takes the policy's
    ("chat", {"runs/sft": "chat", "runs/rm": "chat"}, "chat"),  # asked for what is recorded
])
def test_format_comes_from_the_input_models(explicit, recorded, expected):
    assert resolve_format_name(explicit, recorded) == expected


def test_contradicting_formats_are_one_line_errors():
    with pytest.raises(StackLlamaError, match="--prompt-format recipe, but runs/sft was trained with --prompt-format "
                                              "chat; drop the option to use chat"):
        resolve_format_name("recipe", {"runs/sft": "chat"})
    with pytest.raises(StackLlamaError, match=r"different prompt formats \(runs/sft chat, runs/rm recipe\)"):
        resolve_format_name(None, {"runs/sft": "chat", "runs/rm": "recipe"})
    with pytest.raises(UsageError, match="--prompt-format must be one of recipe, chat, not 'alpaca'"):
        resolve_format_name("alpaca", {})


def test_records(tmp_path):
    outer, inner = tmp_path / "ppo", tmp_path / "sft"
    outer.mkdir(), inner.mkdir()
    assert read_record([outer, None, inner]) is None
    write_record(inner, "chat")
    assert json.loads((inner / "prompt_format.json").read_text()) == {"prompt_format": "chat"}
    assert read_record([outer, None, inner]) == "chat"
    write_record(outer, "recipe")
    assert read_record([outer, inner]) == "recipe"  # the outermost record wins
    (outer / "prompt_format.json").write_text("[1]")
    with pytest.raises(StackLlamaError, match="not a prompt-format record"):
        read_record([outer])


class Tok:
    eos_token_id = 7


def test_stop_token_ids():
    assert stop_token_ids(Tok()) == [7]
    assert stop_token_ids(Tok(), 9) == [7, 9]
    assert stop_token_ids(Tok(), [9, 7, 11]) == [7, 9, 11]  # the tokenizer's EOS first, no repeats

    class Chat:
        end_of_turn_ids = (12,)

    assert stop_token_ids(Tok(), None, Chat()) == [7, 12]


def test_response_mask_ends_at_the_first_of_several_eos():
    from stackllama_cli.stages.ppo.rollout import response_mask

    ids = torch.tensor([[5, 9, 3, 7, 4], [5, 7, 9, 4, 4], [5, 6, 4, 4, 3], [9, 9, 9, 9, 9]])
    mask, finished = response_mask(ids, [7, 9])
    assert mask.tolist() == [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert finished.tolist() == [True, True, False, True]
    assert response_mask(ids, 7)[0].tolist()[0] == [1, 1, 1, 1, 0]  # one id, as before


def test_chat_format_needs_a_template(tmp_path, llama3_tokenizer):
    import copy

    bare = copy.deepcopy(llama3_tokenizer)
    bare.chat_template = None
    with pytest.raises(StackLlamaError, match="the tokenizer of m has no chat template; use --prompt-format recipe"):
        ChatFormat(bare, "m")
    failing = copy.deepcopy(llama3_tokenizer)
    failing.chat_template = "{{ raise_exception('roles must alternate') }}"
    with pytest.raises(StackLlamaError, match=r"fails on a question/answer conversation \(.*roles must alternate"):
        ChatFormat(failing, "m")
    thinking = copy.deepcopy(llama3_tokenizer)  # a generation prompt the conversation does not repeat
    thinking.chat_template = llama3_tokenizer.chat_template.replace("<|end_header_id|>\n\n' }}",
                                                                    "<|end_header_id|>\n\n<think>' }}")
    with pytest.raises(StackLlamaError, match="renders a question alone differently"):
        ChatFormat(thinking, "m")


def test_chat_format_rejects_a_prompt_whose_tokens_merge_with_the_answer(tmp_path, llama3_tokenizer):
    """Llama-3's template ends the prompt on "\\n\\n". Llama-3's own pre-tokenizer keeps it one piece before
    an answer too; GPT-2's splits it as "\\n" + "\\n" there, so the prompt's last token would never appear in
    training: that tokenizer cannot take this template."""
    from tokenizers import pre_tokenizers

    gpt2_split = type(llama3_tokenizer).from_pretrained(llama3_tokenizer.name_or_path)
    gpt2_split.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    with pytest.raises(StackLlamaError, match=r"prompt's tokens are not the first tokens .* last token '\\n\\n'"):
        ChatFormat(gpt2_split, "m")
    ChatFormat(llama3_tokenizer, "m")  # its own pre-tokenizer: fine


def test_llama3_chat_format_stops_at_eot(llama3_tokenizer):
    fmt = ChatFormat(llama3_tokenizer)
    eot, end = llama3_tokenizer.convert_tokens_to_ids(["<|eot_id|>", "<|end_of_text|>"])
    assert fmt.end_of_turn_ids == (eot,) and llama3_tokenizer.eos_token_id == end
    assert stop_token_ids(llama3_tokenizer, [end, eot], fmt) == [end, eot]


class FakePolicy:
    """Stands for a causal LM whose generate() returns fixed response tokens after the prompts."""

    device = torch.device("cpu")

    def __init__(self, responses):
        self.responses, self.generation_config, self.kwargs = responses, None, None

    def generate(self, input_ids, attention_mask=None, **kwargs):
        self.kwargs = kwargs
        return torch.cat([input_ids, torch.tensor(self.responses[: len(input_ids)])], dim=1)


def test_ppo_rollout_ends_responses_at_any_stop_token(llama3_tokenizer):
    from stackllama_cli.stages.ppo.rollout import generate

    tok = llama3_tokenizer
    eot, end = tok.convert_tokens_to_ids(["<|eot_id|>", "<|end_of_text|>"])
    yes = tok(" Yes.", add_special_tokens=False)["input_ids"]
    junk = tok(" coffee", add_special_tokens=False)["input_ids"][:1]
    rows = [yes + [eot] + junk, yes + [end] + junk, (junk * 8)[: len(yes) + 2]]
    policy = FakePolicy(rows)
    rollout = generate(policy, tok, ["q"] * 3, ["Why?"] * 3, max_new_tokens=len(rows[0]), eos_token_ids=[end, eot])
    assert policy.kwargs["generation_config"].eos_token_id == [end, eot]
    assert rollout.texts[:2] == ["Yes.", "Yes."] and rollout.finished.tolist() == [True, True, False]
    assert rollout.response_mask.sum(1).tolist() == [len(yes) + 1, len(yes) + 1, len(yes) + 2]


def test_generate_stops_at_the_models_every_eos(tmp_path, monkeypatch):
    """Llama-3 ends a turn with <|eot_id|>, which its generation_config lists beside the tokenizer's EOS
    <|end_of_text|>: the answer ends there, is cut there, and counts as finished."""
    from stackllama_cli.stages import generate as gen
    from tests.tiny_models import build_tiny_model

    model_dir = build_tiny_model("llama", tmp_path / "llama")
    tok = gen.load_for_generation(str(model_dir))[1]
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    yes = tok(" Yes.", add_special_tokens=False)["input_ids"]
    fake = FakePolicy([yes + [eot, 5, 6]])
    real = gen.load_for_generation

    def load(model, **kwargs):
        lm, tokenizer = real(model, **kwargs)
        monkeypatch.setattr(lm, "generate", lambda **kw: fake.generate(**kw))
        return lm, tokenizer

    monkeypatch.setattr(gen, "load_for_generation", load)
    out = io.StringIO()
    gen.run_batch(str(model_dir), [{"question": "Why?"}], gen.SamplingConfig(max_new_tokens=8), out=out)
    row = json.loads(out.getvalue())
    assert row["response"] == "Yes." and row["finish_reason"] == "eos" and row["response_tokens"] == len(yes)
    assert eot in fake.kwargs["eos_token_id"]
