"""What each PPO step samples: its prompts, its response length and its random seed.

All are pure functions of (seed, step, rank), so a resumed run draws exactly what an uninterrupted
one would have, with nothing to persist but the step number.
"""

from __future__ import annotations

import random

from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.data.datasets import load_split
from stackllama_cli.data.prompt_format import RECIPE
from stackllama_cli.data.sources import data_source
from stackllama_cli.stages.ppo.config import PpoConfig


def load_prompts(cfg: PpoConfig, tokenizer, fmt=RECIPE) -> tuple[list[str], int]:
    """Distinct questions of the `rl` split whose prompt (in the format `fmt`) fits --max-prompt-length tokens;
    (questions, dropped)."""
    ds = load_split(data_source(cfg, "rl"), "rl", columns=("question",))
    questions = list(dict.fromkeys(ds["question"]))
    lengths = [len(ids) for ids in tokenizer([fmt.prompt(q) for q in questions])["input_ids"]]
    kept = [q for q, n in zip(questions, lengths) if n <= cfg.max_prompt_length]
    if not kept:
        raise StackLlamaError(f"all {len(questions)} prompts are longer than --max-prompt-length "
                              f"{cfg.max_prompt_length} tokens; raise it")
    return kept, len(questions) - len(kept)


def prompt_batch(questions: list[str], step: int, batch_size: int, world: int, rank: int, seed: int | str
                 ) -> list[str]:
    """This process's prompts for `step`: a seeded shuffle per pass over the data, sliced by rank.

    Stateless (a function of the step), so resuming needs only the step number.
    """
    n = len(questions)
    out = []
    for j in range(batch_size):
        i = (step * world + rank) * batch_size + j
        epoch, pos = divmod(i, n)
        order = list(range(n))
        random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
        out.append(questions[order[pos]])
    return out


def response_length(cfg: PpoConfig, step: int) -> int:
    """Response length for a step, drawn uniformly from min..max new tokens (same on every rank)."""
    return random.Random(f"{cfg.seed}:length:{step}").randint(cfg.min_new_tokens, cfg.max_new_tokens)


def step_seed(cfg: PpoConfig, step: int, rank: int) -> int:
    return (cfg.seed * 1_000_003 + step * 7919 + rank) % (2**31)
