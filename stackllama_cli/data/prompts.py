"""The one prompt template, used by every stage (SFT, reward model, PPO, generate).

    Question: <question>

    Answer: <answer>
"""

from __future__ import annotations

QUESTION_PREFIX = "Question: "
ANSWER_PREFIX = "\n\nAnswer: "


def format_prompt(question: str) -> str:
    """The text a model continues: question plus the answer header."""
    return f"{QUESTION_PREFIX}{question.strip()}{ANSWER_PREFIX}"


def format_example(question: str, answer: str) -> str:
    """A full training text: prompt followed by the answer."""
    return format_prompt(question) + answer.strip()
