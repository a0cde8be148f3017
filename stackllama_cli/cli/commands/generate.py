"""`stackllama generate`: interactive chat on a terminal, JSONL batch generation in pipelines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from stackllama_cli.cli import options as o
from stackllama_cli.stages.generate import SamplingConfig as S

COMMAND = dict(
    name="generate",
    help="Answer questions: interactive streaming chat on a terminal, JSONL in and out in pipelines.",
    epilog="""[bold]Examples[/]

  [cyan]stackllama generate runs/ppo[/]                                 chat (stdin is a terminal)

  [cyan]echo "How do I descale an espresso machine?" | stackllama generate runs/sft-merged[/]

  [cyan]stackllama generate smollm2-135m --input questions.jsonl > answers.jsonl[/]

Input lines are plain questions or JSON objects with a "question" field (other fields are kept).

Output: one JSON object per line with "question", "response", "response_tokens", "finish_reason".""",
)

SAMPLING = "Sampling"


def command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Merged model dir, adapter dir (base + adapter), or alias.",
                                         show_default=False)],
    input: Annotated[Optional[Path], typer.Option("--input", "-i",
                                                  help="Questions file (default: stdin when it is not a terminal).")
                     ] = None,
    interactive: Annotated[Optional[bool], typer.Option("--interactive/--batch",
                                                        help="Force chat or batch mode (default: chat on a terminal).",
                                                        show_default=False)] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", rich_help_panel=SAMPLING)] = S.max_new_tokens,
    temperature: Annotated[float, typer.Option("--temperature", help="0 = greedy.", rich_help_panel=SAMPLING)
                           ] = S.temperature,
    top_p: Annotated[float, typer.Option("--top-p", rich_help_panel=SAMPLING)] = S.top_p,
    top_k: Annotated[int, typer.Option("--top-k", help="0 = off.", rich_help_panel=SAMPLING)] = S.top_k,
    repetition_penalty: Annotated[float, typer.Option("--repetition-penalty", rich_help_panel=SAMPLING)
                                  ] = S.repetition_penalty,
    seed: o.Seed = S.seed,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Questions generated together (batch mode).")
                          ] = 8,
    prompt_format: o.PromptFormat = None,
    precision: o.Precision = "auto",
    load_in_8bit: o.LoadIn8bit = False,
    load_in_4bit: o.LoadIn4bit = False,
    attn_implementation: o.AttnImplementation = None,
    trust_remote_code: o.TrustRemoteCode = False,
) -> None:
    from stackllama_cli.core.config import config_from_cli
    from stackllama_cli.core.errors import UsageError
    from stackllama_cli.data.prompt_format import check_format_name
    from stackllama_cli.models.load import check_attn_implementation

    sampling = config_from_cli(S, ctx, dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                            top_k=top_k, repetition_penalty=repetition_penalty, seed=seed),
                               None, "generate")
    from stackllama_cli.core.config import load_options

    check_format_name(prompt_format)
    check_attn_implementation(attn_implementation)
    load = dict(load_options(precision, load_in_8bit, load_in_4bit, trust_remote_code),
                attn_implementation=attn_implementation, prompt_format=prompt_format)
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    chat_mode = interactive if interactive is not None else (input is None and sys.stdin.isatty())
    if chat_mode:
        from stackllama_cli.stages.chat import chat

        chat(model, sampling, **load)
        return
    from stackllama_cli.stages.generate import read_questions, run_batch

    if input is not None:
        from stackllama_cli.core.errors import StackLlamaError

        if not input.is_file():
            raise StackLlamaError(f"input file {input} does not exist")
        with open(input, encoding="utf-8") as fh:
            rows = read_questions(fh, str(input))
    else:
        rows = read_questions(sys.stdin)
    run_batch(model, rows, sampling, batch_size=batch_size, **load)
