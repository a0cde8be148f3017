"""Prompt formats (--prompt-format): how a question, and a question with its answer, become text.

    recipe  the StackLLaMA template of data/prompts.py: "Question: ...\\n\\nAnswer: ..."
    chat    the tokenizer's own chat template: the question is the user turn, the answer the assistant turn

Every stage reads and writes through one format object (`prompt` for what PPO and generate continue,
`example` for what SFT trains on and the reward model scores), so the prompt's tokens are the first tokens
of every training text in either format (checked on probe answers when a chat format is built).

Chat-templated text is meant to be tokenized like any other text, with the tokenizer's special tokens: a
template that writes the BOS itself (Llama-3, Gemma-2, Mistral) would give it twice, so the format leaves it
to the tokenizer. The text after an example's closing turn token (a newline in ChatML and Gemma) is dropped:
generation stops at that token, so nothing after it is ever sampled.

The format a stage ran with is recorded beside its output (`prompt_format.json`, also in
stackllama_config.json); later stages take it from the model they start from (models/load.py:
recorded_prompt_format). An explicit --prompt-format that contradicts a recorded one is an error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from stackllama_cli.core.errors import StackLlamaError, UsageError, one_line
from stackllama_cli.data.prompts import format_example, format_prompt

PROMPT_FORMATS = ("recipe", "chat")
RECORD_FILENAME = "prompt_format.json"
# answers starting with a letter, a digit, punctuation, a quote, markup and a non-ASCII letter
PROBE_ANSWERS = ("Yes, always.", "1. Grind finer.", "`grep -r x .`", "\"Quoted\" text", "(a) or [b]", "Über gut.")
PROBE_QUESTION = "How do I store coffee beans?"
PROBE_MARK = "Probe-answer-7"  # found after the template's own text, to see what follows an answer


class RecipeFormat:
    name = "recipe"
    end_of_turn_ids: tuple[int, ...] = ()

    def prompt(self, question: str) -> str:
        return format_prompt(question)

    def example(self, question: str, answer: str) -> str:
        return format_example(question, answer)


RECIPE = RecipeFormat()


class ChatFormat:
    """The tokenizer's chat template; `model_name` only names the model in error messages."""

    name = "chat"

    def __init__(self, tokenizer, model_name: str = "the model"):
        if not getattr(tokenizer, "chat_template", None):
            raise StackLlamaError(f"--prompt-format chat: the tokenizer of {model_name} has no chat template; "
                                  "use --prompt-format recipe")
        self.tokenizer, self.model_name = tokenizer, model_name
        self._bos = tokenizer.bos_token if adds_bos(tokenizer) else None
        self.end_of_turn_ids = closing_token_ids(tokenizer, self._render(_turns(PROBE_QUESTION, PROBE_MARK), False),
                                                 PROBE_MARK)
        check_prompt_is_prefix(self, tokenizer, model_name)

    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        try:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        except Exception as exc:  # jinja's TemplateError, a template's raise_exception ...
            raise StackLlamaError(f"--prompt-format chat: the chat template of {self.model_name} fails on a "
                                  f"question/answer conversation ({one_line(exc, 200)})") from None
        if self._bos and text.startswith(self._bos):
            text = text[len(self._bos):]
        return text

    def prompt(self, question: str) -> str:
        """The conversation up to where the assistant's answer starts (the template's generation prompt)."""
        return self._render(_turns(question), True)

    def example(self, question: str, answer: str) -> str:
        """The whole conversation, ending at the token that closes the assistant's turn."""
        return self._render(_turns(question, answer), False).rstrip()


def _turns(question: str, answer: str | None = None) -> list[dict]:
    turns = [{"role": "user", "content": question.strip()}]
    if answer is not None:
        turns.append({"role": "assistant", "content": answer.strip()})
    return turns


def adds_bos(tokenizer) -> bool:
    """Whether tokenizing text puts a BOS in front of it by itself."""
    if tokenizer.bos_token_id is None:
        return False
    with_special = tokenizer("x")["input_ids"]
    return bool(with_special) and with_special[0] == tokenizer.bos_token_id and \
        tokenizer("x", add_special_tokens=False)["input_ids"][:1] != [tokenizer.bos_token_id]


def closing_token_ids(tokenizer, example: str, answer: str) -> tuple[int, ...]:
    """The special token right after the answer in a rendered conversation: what ends the assistant's turn
    (<|eot_id|>, <|im_end|>, <end_of_turn>, <|end|>, </s>), or () when the template puts none there."""
    tail = example[example.rindex(answer) + len(answer):]
    ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
    if not ids:
        return ()
    special = set(tokenizer.all_special_ids)
    decoder = getattr(tokenizer, "added_tokens_decoder", {})
    first = ids[0]
    return (first,) if first in special or getattr(decoder.get(first), "special", False) else ()


def check_prompt_is_prefix(fmt, tokenizer, model_name: str) -> None:
    """The prompt, as text and as tokens, must be the start of the example for every probe answer: PPO and
    generate continue the prompt's tokens, SFT and the reward model read the example's."""
    for answer in PROBE_ANSWERS:
        prompt, example = fmt.prompt(PROBE_QUESTION), fmt.example(PROBE_QUESTION, answer)
        if not example.startswith(prompt):
            raise StackLlamaError(f"--prompt-format chat: the chat template of {model_name} renders a question "
                                  "alone differently from the same question followed by an answer; use "
                                  "--prompt-format recipe")
        p, e = tokenizer(prompt)["input_ids"], tokenizer(example)["input_ids"]
        if e[: len(p)] != p:
            raise StackLlamaError(f"--prompt-format chat: with {model_name}'s tokenizer the prompt's tokens are "
                                  f"not the first tokens of a training text (its last token "
                                  f"{tokenizer.decode(p[-1:])!r} merges with the answer {answer!r}); use "
                                  "--prompt-format recipe")


def prompt_format(name: str, tokenizer=None, model_name: str = "the model"):
    """The format object for a resolved format name (see resolve_format_name)."""
    if name == "recipe":
        return RECIPE
    if name == "chat":
        return ChatFormat(tokenizer, model_name)
    raise UsageError(f"--prompt-format must be one of {', '.join(PROMPT_FORMATS)}, not {name!r}")


def check_format_name(name: str | None) -> None:
    if name is not None and name not in PROMPT_FORMATS:
        raise UsageError(f"--prompt-format must be one of {', '.join(PROMPT_FORMATS)}, not {name!r}")


def resolve_format_name(explicit: str | None, recorded: dict[str, str | None]) -> str:
    """The format a stage runs with: the one its input models were trained with (`recorded`: model name ->
    its recorded format, None when it has none), else `explicit`, else recipe.

    Models that disagree, or an explicit format that contradicts a recorded one, are errors: a model reads
    prompts well only in the format it was trained on, and the pipeline must not mix them silently."""
    check_format_name(explicit)
    known = {name: fmt for name, fmt in recorded.items() if fmt is not None}
    if len(set(known.values())) > 1:
        listed = ", ".join(f"{name} {fmt}" for name, fmt in known.items())
        raise StackLlamaError(f"the models were trained with different prompt formats ({listed}); train them with "
                              "the same --prompt-format")
    if known:
        name, fmt = next(iter(known.items()))
        if explicit is not None and explicit != fmt:
            raise StackLlamaError(f"--prompt-format {explicit}, but {name} was trained with --prompt-format {fmt}; "
                                  f"drop the option to use {fmt}, or start again from a base model")
        return fmt
    return explicit or "recipe"


def stop_token_ids(tokenizer, generation_eos: int | Iterable[int] | None = None, fmt=RECIPE) -> list[int]:
    """Every token that ends a response: the tokenizer's EOS, the model's generation_config.eos_token_id (an
    int or a list: Llama-3 ends a turn with <|eot_id|> and a text with <|end_of_text|>), and the token that
    closes the chat template's assistant turn. The tokenizer's EOS comes first."""
    if isinstance(generation_eos, int):
        generation_eos = [generation_eos]
    ids = [tokenizer.eos_token_id, *(generation_eos or ()), *fmt.end_of_turn_ids]
    return list(dict.fromkeys(int(i) for i in ids if i is not None))


def write_record(directory: str | Path, name: str) -> None:
    from stackllama_cli.core.files import write_json

    write_json(Path(directory) / RECORD_FILENAME, {"prompt_format": name})


def read_record(directories: Iterable[str | Path | None]) -> str | None:
    """The recorded format in the first of `directories` that has a record, or None."""
    for directory in directories:
        path = Path(directory) / RECORD_FILENAME if directory else None
        if path is not None and path.is_file():
            try:
                name = json.loads(path.read_text(encoding="utf-8")).get("prompt_format")
            except (json.JSONDecodeError, AttributeError):
                raise StackLlamaError(f"{path} is not a prompt-format record; delete it or rerun the stage") from None
            check_format_name(name)
            return name
    return None
