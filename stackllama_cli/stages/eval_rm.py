"""Reward-model scoring: held-out pair accuracy (beside the length rule) and JSONL scoring for pipelines."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Sequence

from stackllama_cli.core.console import progress
from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.core.files import text_lines
from stackllama_cli.data.datasets import load_split
from stackllama_cli.data.prompt_format import RECIPE
from stackllama_cli.data.prompts import reward_batch
from stackllama_cli.data.reward_metrics import (
    accuracy_by_gap,
    length_rule_accuracy,
    mean_margin,
    mean_std,
    pair_accuracy,
)


def load_scorer(model: str, precision: str = "auto", load_in_8bit: bool = False, load_in_4bit: bool = False,
                trust_remote_code: bool = False, attn_implementation: str | None = None):
    """(reward_model, tokenizer): adapters merged, right padding, eval mode."""
    import torch

    from stackllama_cli.models.load import load_reward_model, load_tokenizer
    from stackllama_cli.models.resolve import resolve_model

    spec = resolve_model(model)
    tokenizer = load_tokenizer(spec, padding_side="right", trust_remote_code=trust_remote_code)
    rm = load_reward_model(spec, precision=precision, load_in_8bit=load_in_8bit, load_in_4bit=load_in_4bit,
                           trust_remote_code=trust_remote_code, pad_token_id=tokenizer.pad_token_id,
                           attn_implementation=attn_implementation)
    if not (load_in_8bit or load_in_4bit) and torch.cuda.is_available():
        from stackllama_cli.dist.ranks import distributed_state

        rm = rm.to(distributed_state().device)  # this process's GPU (cuda:0 in a single process)
    return rm, tokenizer


def score_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 8, max_length: int | None = None,
                description: str = "score") -> list[float]:
    """Scalar rewards for full `Question/Answer` texts, read as in training: EOS last, also when cut to
    `max_length` (`prompts.reward_token_ids`)."""
    import torch

    rewards: list[float] = []
    with progress(transient=True) as bar:
        task = bar.add_task(description, total=len(texts), extra="")
        for i in range(0, len(texts), batch_size):
            enc = reward_batch(tokenizer, texts[i : i + batch_size], max_length).to(model.device)
            with torch.no_grad():
                logits = model(**enc).logits
            rewards.extend(logits[:, 0].float().tolist())
            bar.advance(task, len(texts[i : i + batch_size]))
    return rewards


def scorer_format(model: str, explicit: str | None, tokenizer):
    """The prompt format a reward model reads (its recorded one; see stages/common.py:stage_prompt_format)."""
    from stackllama_cli.models.resolve import resolve_model
    from stackllama_cli.stages.common import stage_prompt_format

    return stage_prompt_format(explicit, {model: resolve_model(model)}, tokenizer, model)


def evaluate_pairs(model, tokenizer, ds, batch_size: int = 8, max_length: int | None = None, fmt=RECIPE) -> dict:
    """Accuracy, margin, reward stats, and the length rule and per-score-gap accuracies beside them, on texts in
    the prompt format `fmt`.

    Under several processes each scores its contiguous share of the pairs; the rewards are gathered
    back in pair order, so every rank computes the same metrics over all pairs."""
    from stackllama_cli.dist.ranks import distributed_state, gather_in_order, shard_bounds, world_size

    questions, js, ks = ds["question"], ds["response_j"], ds["response_k"]
    start_pair, end_pair = 0, len(questions)
    if world_size() > 1:
        state = distributed_state()
        start_pair, end_pair = shard_bounds(len(questions), state.process_index, state.num_processes)
    mine = range(start_pair, end_pair)
    start = time.perf_counter()
    rj = score_texts(model, tokenizer, [fmt.example(questions[i], js[i]) for i in mine], batch_size,
                     max_length, "score chosen")
    rk = score_texts(model, tokenizer, [fmt.example(questions[i], ks[i]) for i in mine], batch_size,
                     max_length, "score rejected")
    rj, rk = gather_in_order(rj, len(questions)), gather_in_order(rk, len(questions))
    seconds = time.perf_counter() - start
    mean, std = mean_std(rj + rk)
    result = {"pairs": len(rj), "accuracy": pair_accuracy(rj, rk), "mean_margin": mean_margin(rj, rk),
              "reward_mean": mean, "reward_std": std,
              "length_rule_accuracy": length_rule_accuracy([len(a) for a in js], [len(a) for a in ks]),
              "scoring_seconds": round(seconds, 3), "pairs_per_second": len(rj) / seconds if seconds > 0 else None}
    if "score_j" in ds.column_names and "score_k" in ds.column_names:
        result["accuracy_by_score_gap"] = accuracy_by_gap(rj, rk, ds["score_j"], ds["score_k"])
    return result


def evaluate(model: str, data: str, split: str = "evaluation", batch_size: int = 8, max_length: int | None = None,
             limit: int | None = None, prompt_format: str | None = None, **load_kwargs) -> dict:
    ds = load_split(data, split)
    if limit:
        ds = ds.select(range(min(limit, len(ds))))
    rm, tokenizer = load_scorer(model, **load_kwargs)
    fmt = scorer_format(model, prompt_format, tokenizer)
    result = evaluate_pairs(rm, tokenizer, ds, batch_size, max_length, fmt)
    return {"model": model, "data": str(data), "split": split, "prompt_format": fmt.name, **result}


def read_scoring_input(stream: IO[str]) -> list[dict]:
    rows = []
    for lineno, line in text_lines(stream, "--score input"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise StackLlamaError(f"--score input line {lineno} is not JSON ({exc.msg})") from None
        if not (isinstance(obj, dict) and isinstance(obj.get("question"), str)
                and isinstance(obj.get("response"), str)):
            raise StackLlamaError(f"--score input line {lineno} needs string fields 'question' and 'response'")
        rows.append(obj)
    if not rows:
        raise StackLlamaError("--score got no input lines (JSONL with 'question' and 'response' on stdin)")
    return rows


def score_jsonl(model: str, stream: IO[str] = sys.stdin, out: IO[str] = sys.stdout, batch_size: int = 8,
                max_length: int | None = None, prompt_format: str | None = None, **load_kwargs) -> int:
    """Add a `reward` field to each {"question", "response"} line; only JSONL on `out`."""
    rows = read_scoring_input(stream)
    rm, tokenizer = load_scorer(model, **load_kwargs)
    fmt = scorer_format(model, prompt_format, tokenizer)
    rewards = score_texts(rm, tokenizer, [fmt.example(r["question"], r["response"]) for r in rows], batch_size,
                          max_length)
    for row, reward in zip(rows, rewards):
        out.write(json.dumps({**row, "reward": reward}, ensure_ascii=False) + "\n")
    out.flush()
    return len(rows)


def print_report(result: dict) -> None:
    from rich.table import Table

    from stackllama_cli.core.console import console

    table = Table(title=f"eval-rm: {result['model']} on {result['split']} ({result['pairs']} pairs)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("accuracy (r_j > r_k)", f"{result['accuracy']:.3f}")
    table.add_row("length rule accuracy", f"{result['length_rule_accuracy']:.3f}")
    table.add_row("mean margin", f"{result['mean_margin']:.3f}")
    table.add_row("reward mean / std", f"{result['reward_mean']:.3f} / {result['reward_std']:.3f}")
    for gap, bucket in result.get("accuracy_by_score_gap", {}).items():
        table.add_row(f"accuracy, score gap {gap}", f"{bucket['accuracy']:.3f} ({bucket['pairs']} pairs)")
    if result.get("pairs_per_second"):
        table.add_row("scoring speed", f"{result['pairs_per_second']:.1f} pairs/s")
    console.print(table)
    beats = result["accuracy"] > result["length_rule_accuracy"]
    console.print("[green]The reward model beats the length rule.[/]" if beats else
                  "[yellow]The reward model does not beat the 'longer answer wins' rule on these pairs.[/]")
