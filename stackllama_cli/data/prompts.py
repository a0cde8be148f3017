"""The one prompt template, used by every stage (SFT, reward model, PPO, generate), and the
one way a reward model reads a text (the same in train-rm, eval-rm and ppo).

    Question: <question>

    Answer: <answer>
"""

from __future__ import annotations

QUESTION_PREFIX = "Question: "
ANSWER_PREFIX = "\n\nAnswer:"


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


def reward_token_ids(ids: list[int], eos_token_id: int, max_length: int | None = None) -> list[int]:
    """A text's token ids as the reward model reads them: EOS appended, and when longer than
    `max_length`, cut with the EOS kept last - the same ids in train-rm (--truncate), eval-rm and
    ppo, so a cut text is scored exactly as it was trained on."""
    ids = list(ids) + [eos_token_id]
    if max_length is not None and len(ids) > max_length:
        ids = ids[: max_length - 1] + [eos_token_id]
    return ids


def reward_batch(tokenizer, texts: list[str], max_length: int | None = None):
    """Right-padded `input_ids`/`attention_mask` tensors of `texts` for a reward model (see reward_token_ids)."""
    rows = [reward_token_ids(ids, tokenizer.eos_token_id, max_length) for ids in tokenizer(list(texts))["input_ids"]]
    tokenizer.padding_side = "right"
    return tokenizer.pad({"input_ids": rows}, return_tensors="pt")
