"""`stackllama eval-rm`: reward-model accuracy on held-out pairs, or JSONL scoring for pipelines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from stackllama_cli.cli import options as o
from stackllama_cli.cli.build import P, command_from_table, model_rows

COMMAND = dict(
    name="eval-rm",
    help="Reward-model accuracy on held-out pairs beside the 'longer answer wins' rule; or score JSONL.",
    epilog="""[bold]Examples[/]

  [cyan]stackllama eval-rm runs/reward --data runs/demo/data[/]

  [cyan]stackllama eval-rm runs/reward --data data/ --split reward --json | jq .accuracy[/]

  [cyan]stackllama generate runs/ppo < q.txt | stackllama eval-rm runs/reward --score > scored.jsonl[/]

Accuracy is the share of pairs with r_j > r_k (a tie counts half, as in the length rule). Beside it: the
length rule ("the longer answer wins"), accuracy on length-balanced pairs (answers within 20% of each other
in length, where the length rule cannot help), each with a 95% Wilson interval, the rank correlation of
reward with answer length, and accuracy by score gap: a reward model is only useful where it beats the
length rule, and has learned more than length only where the balanced-pair interval lies above 0.5.

With several GPUs (or --cpu-processes N) the pairs are split across processes; --score runs in one.""",
)


def _evaluate(ctx: typer.Context, model: str, data: Optional[Path], split: str, data_dir: Optional[str],
              columns: str, score: bool, limit: Optional[int], batch_size: int, max_length: Optional[int],
              prompt_format: Optional[str], precision: str, load_in_8bit: bool, load_in_4bit: bool,
              attn_implementation: Optional[str], trust_remote_code: bool, json_out: bool, **launch) -> None:
    from stackllama_cli.core.config import load_options
    from stackllama_cli.core.errors import UsageError
    from stackllama_cli.data.prompt_format import check_format_name
    from stackllama_cli.data.prompts import MIN_REWARD_LENGTH
    from stackllama_cli.models.load import check_attn_implementation

    check_format_name(prompt_format)
    check_attn_implementation(attn_implementation)
    load = dict(load_options(precision, load_in_8bit, load_in_4bit, trust_remote_code),
                attn_implementation=attn_implementation, prompt_format=prompt_format)
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, not {limit} (leave it out to evaluate every pair)")
    if max_length is not None and max_length < MIN_REWARD_LENGTH:
        raise UsageError(f"--max-length must be at least {MIN_REWARD_LENGTH} tokens, not {max_length} (the question's "
                         "start, the answer header and the answer's start must fit)")
    if score:
        if data is not None:
            raise UsageError("--score reads stdin; drop --data")
        from stackllama_cli.stages.eval_rm import score_jsonl

        score_jsonl(model, sys.stdin, sys.stdout, batch_size=batch_size, max_length=max_length, **load)
        return
    if data is None:
        raise UsageError("give --data (prepare-data output) to evaluate, or --score to score JSONL from stdin")
    o.launch_from_params(launch)  # pairs split across processes (--score reads stdin: one process)
    from stackllama_cli.core.console import print_json
    from stackllama_cli.data.sources import DataSource
    from stackllama_cli.dist.ranks import is_main_process
    from stackllama_cli.stages.eval_rm import evaluate, print_report

    source = DataSource(str(data), data_dir, columns=columns, role=split)  # read by data/datasets.py:load_split
    result = evaluate(model, source, split=split, batch_size=batch_size, max_length=max_length, limit=limit,
                      **load)
    if not is_main_process():
        return
    if json_out:
        print_json(result)
    else:
        print_report(result)


command = command_from_table(_evaluate, [
    ("model", Annotated[str, typer.Argument(help="Reward model: train-rm output (adapter) or a merged one.",
                                            show_default=False)], P.empty),
    ("data", Annotated[Optional[Path], typer.Option("--data", "-d", help="prepare-data output, a pairs file or "
                                                    "folder datasets reads, or a Hub dataset id.")], None),
    ("split", Annotated[str, typer.Option("--split", help="Split to evaluate (evaluation also finds test or "
                                          "validation).")], "evaluation"),
    ("data_dir", o.DataDir, None), ("columns", o.Columns, ""),
    ("score", Annotated[bool, typer.Option("--score", help="Read {question, response} JSONL on stdin, write it back "
                                           "with a 'reward' field on stdout.")], False),
    ("limit", Annotated[Optional[int], typer.Option("--limit", help="Evaluate only the first N pairs.")], None),
    ("batch_size", Annotated[int, typer.Option("--batch-size", "-b")], 8),
    ("max_length", Annotated[Optional[int], typer.Option(
        "--max-length", help="Cut texts to N tokens, EOS kept last (as train-rm --truncate); default: whole texts.")],
     None),
    ("prompt_format", o.PromptFormat, None),
    *model_rows(), *o.LAUNCH_OPTIONS,
    ("json_out", o.Json, False),
])
