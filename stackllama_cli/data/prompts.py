"""The one prompt template, used by every stage (SFT, reward model, PPO, generate), and the
one way a reward model reads a text (the same in train-rm, eval-rm and ppo).

    Question: <question>

    Answer: <answer>
"""

from __future__ import annotations

QUESTION_PREFIX = "Question: "
MIN_REWARD_LENGTH = 16  # shortest reward-model input (--max-length) that still holds a question, header and answer
ANSWER_PREFIX = "\n\nAnswer: "


def format_prompt(question: str) -> str:
    """The text a model continues: question plus the answer header."""
    return f"{QUESTION_PREFIX}{question.strip()}{ANSWER_PREFIX}"


def format_example(question: str, answer: str) -> str:
    """A full training text: prompt followed by the answer."""
    return format_prompt(question) + answer.strip()


def reward_text_parts(question: str, answer: str) -> tuple[str, str, str]:
    """`format_example(question, answer)` split into (question, header, answer) spans: the question
    part ends where the question text does, the answer part starts at the whitespace before the
    answer (so a byte-level BPE tokenizer gives the same ids part by part as in one pass)."""
    prompt, text = format_prompt(question), format_example(question, answer)
    q = question.strip()
    found = prompt.find(q) if q else -1
    q_end = found + len(q) if found >= 0 else 0
    a_start = len(prompt.rstrip()) if text.startswith(prompt) else len(text)
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


def reward_part_ids(tokenizer, questions: list[str], answers: list[str]) -> list[tuple[list[int], ...]]:
    """(question, header, answer) token ids of each text (`reward_text_parts`), whole."""
    parts = [reward_text_parts(q, a) for q, a in zip(questions, answers)]
    if not parts:
        return []
    q_ids = tokenizer([p[0] for p in parts])["input_ids"]
    h_ids = tokenizer([p[1] for p in parts], add_special_tokens=False)["input_ids"]
    a_ids = tokenizer([p[2] for p in parts], add_special_tokens=False)["input_ids"]
    return list(zip(q_ids, h_ids, a_ids))


def reward_inputs(tokenizer, questions: list[str], answers: list[str], max_length: int | None = None
                  ) -> list[list[int]]:
    """Token ids of each (question, answer) for a reward model (see `reward_token_ids`)."""
    return [reward_token_ids(q, h, a, tokenizer.eos_token_id, max_length)
            for q, h, a in reward_part_ids(tokenizer, questions, answers)]


def pad_reward_ids(tokenizer, rows: list[list[int]]):
    """Right-padded `input_ids`/`attention_mask` tensors of `reward_inputs` rows."""
    tokenizer.padding_side = "right"
    return tokenizer.pad({"input_ids": rows}, return_tensors="pt")


def reward_batch(tokenizer, questions: list[str], answers: list[str], max_length: int | None = None):
    """Right-padded tensors of (question, answer) texts for a reward model (see `reward_token_ids`)."""
    return pad_reward_ids(tokenizer, reward_inputs(tokenizer, questions, answers, max_length))
