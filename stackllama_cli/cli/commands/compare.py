"""`stackllama compare`: answer held-out questions with several models, score them with one reward model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from stackllama_cli.cli import options as o
from stackllama_cli.cli.build import command_from_table
from stackllama_cli.stages.compare import CompareConfig as C

COMMAND = dict(
    name="compare",
    help="Compare models on held-out questions: the same seeded sampling for each, one reward model scoring "
    "every answer; mean reward with a bootstrap interval, win rate and length-controlled win rate against "
    "the first model, length, degenerate share, distinct-2, KL to the first model.",
    epilog="""[bold]Examples[/]

  [cyan]stackllama compare smollm2-135m runs/sft runs/ppo runs/dpo runs/rloo -r runs/reward --data runs/demo/data[/]

  [cyan]stackllama compare runs/sft runs/dpo -r runs/reward --labels sft,dpo --limit 200 -o runs/compare --json[/]

  [cyan]stackllama compare runs/sft runs/ppo -r runs/reward --judge runs/reward-2 --questions q.jsonl[/]

The first model is the baseline. Questions: the first --limit distinct questions of the evaluation split
(no stage trains on it), or --questions FILE (plain lines or JSON objects with "question").

Win rate: per question 1 if the model's reward beats the first model's, 0.5 on a tie; the mean.
Length-controlled win rate: the same on reward residuals after one least-squares line reward ~ a + b x
length (reward-model tokens) fitted over every answer of every model; a model that wins only by writing
longer answers scores about 0.5 there. Intervals: 95% paired bootstrap over questions. KL: the exact
per-token KL(model || first model) at temperature 1 summed along the model's own answers (only for
models sharing the first model's vocabulary; --no-kl skips it and the first model's memory).

Output: a table on stderr; --json: the result on stdout; --output DIR: answers.jsonl (every answer with
its reward), compare.json, reward_vs_length.png.""",
)

SAMPLING, SCORING = "Sampling", "Scoring"


def _opt(flag: str, help: str, panel: str | None = None, *aliases: str):
    return typer.Option(flag, *aliases, help=help, rich_help_panel=panel)


def body(ctx: typer.Context, **values) -> None:
    from stackllama_cli.core.config import config_from_cli
    from stackllama_cli.core.console import print_json
    from stackllama_cli.stages.compare import run

    config, json_out = values.pop("config"), values.pop("json_out")
    values = {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}
    result = run(config_from_cli(C, ctx, values, config, "compare"))
    if json_out:
        print_json(result)


command = command_from_table(body, [
    ("models", Annotated[List[str], typer.Argument(help="Models to compare (the first is the baseline): model "
                                                  "dirs, adapter dirs, aliases.", show_default=False)], ...),
    ("reward_model", Annotated[str, _opt("--reward-model", "Reward model scoring every answer (train-rm output).",
                                         SCORING, "-r")], C.reward_model),
    ("judge", Annotated[Optional[str], _opt("--judge", "A second reward model scoring the same answers.",
                                            SCORING)], None),
    ("labels", Annotated[Optional[str], _opt("--labels", "Comma-separated names, one per model (default: the "
                                             "directory names).")], None),
    ("data", o.Data, Path(C.data)),
    ("split", Annotated[str, _opt("--split", "Split whose questions are asked.")], C.split),
    ("questions", Annotated[Optional[Path], _opt("--questions", "Questions file instead of the split.")], None),
    ("limit", Annotated[int, _opt("--limit", "Questions asked (the first N distinct).")], C.limit),
    ("max_new_tokens", Annotated[int, _opt("--max-new-tokens", "Longest answer.", SAMPLING)], C.max_new_tokens),
    ("temperature", Annotated[float, _opt("--temperature", "0 = greedy.", SAMPLING)], C.temperature),
    ("top_p", Annotated[float, _opt("--top-p", "1.0 = off.", SAMPLING)], C.top_p),
    ("top_k", Annotated[int, _opt("--top-k", "0 = off.", SAMPLING)], C.top_k),
    ("seed", o.Seed, C.seed),
    ("batch_size", Annotated[int, _opt("--batch-size", "Questions answered (and answers scored) together.",
                                       None, "-b")], C.batch_size),
    ("rm_max_length", Annotated[int, _opt("--rm-max-length", "Reward-model input tokens (cut keeping EOS last).",
                                          SCORING)], C.rm_max_length),
    ("kl", Annotated[bool, _opt("--kl/--no-kl", "KL to the first model (keeps it in memory).", SCORING)], C.kl),
    ("resamples", Annotated[int, _opt("--resamples", "Bootstrap draws.", SCORING)], C.resamples),
    ("output", Annotated[Optional[Path], _opt("--output", "Directory for answers.jsonl, compare.json and the plot.",
                                              o.OUTPUT_PANEL, "-o")], None),
    ("overwrite", o.Overwrite, False),
    ("precision", o.Precision, C.precision),
    ("trust_remote_code", o.TrustRemoteCode, False),
    ("json_out", o.Json, False),
    ("config", o.ConfigFile, None),
])
