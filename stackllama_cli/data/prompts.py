"""The one prompt template, used by every stage (SFT, reward model, PPO, generate), and the
one way a reward model reads a text (the same in train-rm, eval-rm and ppo).

    Question: <question>

    Answer: <answer>
"""

from __future__ import annotations

from typing import Callable

Example = Callable[[str, str], str]  # (question, answer) -> training text: a prompt format's `example`

QUESTION_PREFIX = "Question: "
ANSWER_PREFIX = "\n\nAnswer:"
MIN_REWARD_LENGTH = 16  # shortest reward-model input (--max-length) that still holds a question, header and answer


def format_prompt(question: str) -> str:
    """The text a model continues: question plus the answer header, ending at "Answer:".

    The answer brings its own leading space (format_example), so a prompt's tokens are exactly the
    first tokens of every training text: BPE tokenizers read "Answer: The" as ":" + " The", and a
    prompt ending in "Answer: " would end on a lone-space token that training never put there.
    """
    return f"{QUESTION_PREFIX}{question.strip()}{ANSWER_PREFIX}"


def format_example(question: str, answer: str) -> str:
    """A full training text: prompt, a space, the answer."""
    answer = answer.strip()
    return format_prompt(question) + (" " + answer if answer else "")


def reward_text_parts(question: str, answer: str, example: Example = format_example) -> tuple[str, str, str]:
    """`example(question, answer)` split into (question, header, answer) spans: the question part ends where
    the question text does, the answer part starts at the whitespace before the answer and runs to the end
    (a chat template's closing turn token with it), so a byte-level BPE tokenizer gives the same ids part by
    part as in one pass. `example` is a prompt format's (data/prompt_format.py), the recipe's by default."""
    text, q, a = example(question, answer), question.strip(), answer.strip()
    a_at = text.rfind(a) if a else -1  # the answer comes last (a template's closing tokens after it)
    a_start = len(text[:a_at].rstrip()) if a_at >= 0 else len(text)
    q_at = text.rfind(q, 0, a_start) if q else -1
    q_end = q_at + len(q) if q_at >= 0 else 0
    return text[:q_end], text[q_end:a_start], text[a_start:]


def reward_token_ids(question_ids: list[int], header_ids: list[int], answer_ids: list[int], eos_token_id: int,
                     max_length: int | None = None) -> list[int]:
    """One text's ids as a reward model reads them: question + header + answer + EOS, at most `max_length`.

    Too long: the question is cut first, down to a quarter of `max_length` (its title and first
    lines), then the end of the answer; the header and the start of the answer are always kept and
    EOS is always last, so the reward is read at the same place in every text. The same ids in
    train-rm, eval-rm and ppo.
    """
    q, h, a = list(question_ids), list(header_ids), list(answer_ids)
    if max_length is not None and len(q) + len(h) + len(a) + 1 > max_length:
        room = max_length - 1 - len(h)  # for question + answer
        q_floor = min(len(q), max(room // 4, 0))
        q = q[: max(q_floor, room - len(a))]
        a = a[: max(room - len(q), 0)]
    return q + h + a + [eos_token_id]


def reward_part_ids(tokenizer, questions: list[str], answers: list[str], example: Example = format_example
                    ) -> list[tuple[list[int], ...]]:
    """(question, header, answer) token ids of each text (`reward_text_parts`), whole."""
    parts = [reward_text_parts(q, a, example) for q, a in zip(questions, answers)]
    if not parts:
        return []
    q_ids = tokenizer([p[0] for p in parts])["input_ids"]
    h_ids = tokenizer([p[1] for p in parts], add_special_tokens=False)["input_ids"]
    a_ids = tokenizer([p[2] for p in parts], add_special_tokens=False)["input_ids"]
    return list(zip(q_ids, h_ids, a_ids))


def reward_inputs(tokenizer, questions: list[str], answers: list[str], max_length: int | None = None,
                  example: Example = format_example) -> list[list[int]]:
    """Token ids of each (question, answer) for a reward model (see `reward_token_ids`)."""
    return [reward_token_ids(q, h, a, tokenizer.eos_token_id, max_length)
            for q, h, a in reward_part_ids(tokenizer, questions, answers, example)]


def pad_reward_ids(tokenizer, rows: list[list[int]]):
    """Right-padded `input_ids`/`attention_mask` tensors of `reward_inputs` rows."""
    tokenizer.padding_side = "right"
    return tokenizer.pad({"input_ids": rows}, return_tensors="pt")


def reward_batch(tokenizer, questions: list[str], answers: list[str], max_length: int | None = None,
                 example: Example = format_example):
    """Right-padded tensors of (question, answer) texts for a reward model (see `reward_token_ids`)."""
    return pad_reward_ids(tokenizer, reward_inputs(tokenizer, questions, answers, max_length, example))
