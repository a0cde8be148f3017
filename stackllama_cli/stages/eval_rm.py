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
from stackllama_cli.data.prompts import Example, format_example, pad_reward_ids, reward_inputs
from stackllama_cli.data.reward_metrics import accuracy_by_gap, mean_std, pair_report


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


def score_ids(model, tokenizer, rows: Sequence[Sequence[int]], batch_size: int = 8,
              description: str = "score") -> list[float]:
    """The reward of each row of `prompts.reward_inputs` ids: each distinct row scored once, in batches
    of similar length (less padding), in no-grad mode."""
    import torch

    distinct = list(dict.fromkeys(tuple(r) for r in rows))
    order = sorted(range(len(distinct)), key=lambda i: len(distinct[i]))
    reward_of: dict[tuple, float] = {}
    with progress(transient=True) as bar:
        task = bar.add_task(description, total=len(distinct), extra="")
        for i in range(0, len(order), batch_size):
            chunk = [distinct[j] for j in order[i : i + batch_size]]
            enc = pad_reward_ids(tokenizer, [list(r) for r in chunk]).to(model.device)
            with torch.no_grad():
                logits = model(**enc).logits
            reward_of.update(zip(chunk, logits[:, 0].float().tolist()))
            bar.advance(task, len(chunk))
    return [reward_of[tuple(r)] for r in rows]


def score_answers(model, tokenizer, questions: Sequence[str], answers: Sequence[str], batch_size: int = 8,
                  max_length: int | None = None, description: str = "score", example: Example = format_example
                  ) -> list[float]:
    """Scalar rewards of (question, answer) texts in a prompt format's `example`, read as in training
    (`prompts.reward_inputs`: the question cut first, then the answer's end, EOS last)."""
    rows = reward_inputs(tokenizer, list(questions), list(answers), max_length, example)
    return score_ids(model, tokenizer, rows, batch_size, description)


def pair_metrics(ds, rewards_j: Sequence[float], rewards_k: Sequence[float]) -> dict:
    """`reward_metrics.pair_report` over a pairs dataset, plus accuracy by score gap when it has scores."""
    result = pair_report(rewards_j, rewards_k, [len(a) for a in ds["response_j"]], [len(a) for a in ds["response_k"]])
    mean, std = mean_std(list(rewards_j) + list(rewards_k))
    result.update(reward_mean=mean, reward_std=std)
    if "score_j" in ds.column_names and "score_k" in ds.column_names:
        result["accuracy_by_score_gap"] = accuracy_by_gap(rewards_j, rewards_k, ds["score_j"], ds["score_k"])
    return result


def scorer_format(model: str, explicit: str | None, tokenizer):
    """The prompt format a reward model reads (its recorded one; see stages/common.py:stage_prompt_format)."""
    from stackllama_cli.models.resolve import resolve_model
    from stackllama_cli.stages.common import stage_prompt_format

    return stage_prompt_format(explicit, {model: resolve_model(model)}, tokenizer, model)


def evaluate_pairs(model, tokenizer, ds, batch_size: int = 8, max_length: int | None = None, fmt=RECIPE) -> dict:
    """`pair_metrics` of the model's rewards on texts in the prompt format `fmt`, with the scoring speed.

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
    rewards = score_answers(model, tokenizer, [questions[i] for i in mine] * 2,
                            [js[i] for i in mine] + [ks[i] for i in mine], batch_size, max_length, "score pairs",
                            fmt.example)
    n = len(questions)
    rj, rk = gather_in_order(rewards[: len(mine)], n), gather_in_order(rewards[len(mine) :], n)
    seconds = time.perf_counter() - start
    return {**pair_metrics(ds, rj, rk), "scoring_seconds": round(seconds, 3),
            "pairs_per_second": len(rj) / seconds if seconds > 0 else None}


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
    rewards = score_answers(rm, tokenizer, [r["question"] for r in rows], [r["response"] for r in rows], batch_size,
                            max_length, example=fmt.example)
    for row, reward in zip(rows, rewards):
        out.write(json.dumps({**row, "reward": reward}, ensure_ascii=False) + "\n")
    out.flush()
    return len(rows)


def fmt_ci(value: float, ci) -> str:
    """0.612 [0.55, 0.67]"""
    if value != value:  # nan
        return "-"
    return f"{value:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and ci[0] == ci[0] else f"{value:.3f}"


def print_report(result: dict) -> None:
    from rich.table import Table

    from stackllama_cli.core.console import console

    table = Table(title=f"eval-rm: {result['model']} on {result['split']} ({result['pairs']} pairs)")
    table.add_column("metric")
    table.add_column("value [95% interval]", justify="right")
    table.add_row("accuracy (r_j > r_k, ties half)", fmt_ci(result["accuracy"], result.get("accuracy_ci95")))
    table.add_row("length rule accuracy", fmt_ci(result["length_rule_accuracy"], result.get("length_rule_ci95")))
    table.add_row(f"accuracy, length-balanced pairs ({result['balanced_pairs']}, lengths within 20%)",
                  fmt_ci(result["balanced_accuracy"], result.get("balanced_accuracy_ci95")))
    table.add_row("length rule, length-balanced pairs", fmt_ci(result["balanced_length_rule_accuracy"], None))
    table.add_row("reward vs answer length (Spearman)", f"{result['reward_length_spearman']:.3f}")
    table.add_row("mean margin", f"{result['mean_margin']:.3f}")
    table.add_row("reward mean / std", f"{result['reward_mean']:.3f} / {result['reward_std']:.3f}")
    if result.get("ties"):
        table.add_row("ties (counted as half)", str(result["ties"]))
    for gap, bucket in result.get("accuracy_by_score_gap", {}).items():
        table.add_row(f"accuracy, score gap {gap}", f"{bucket['accuracy']:.3f} ({bucket['pairs']} pairs)")
    if result.get("pairs_per_second"):
        table.add_row("scoring speed", f"{result['pairs_per_second']:.1f} pairs/s")
    console.print(table)
    beats = result["accuracy"] > result["length_rule_accuracy"]
    console.print("[green]The reward model beats the length rule.[/]" if beats else
                  "[yellow]The reward model does not beat the 'longer answer wins' rule on these pairs.[/]")
    low = result.get("balanced_accuracy_ci95") or [float("nan")]
    if not low[0] > 0.5:
        console.print("[yellow]On length-balanced pairs its accuracy is not distinguishable from chance (the 95% "
                      "interval includes 0.5).[/]")
