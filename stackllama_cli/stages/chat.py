"""Interactive chat: streamed answers in the model's prompt format, a few REPL commands.

Ctrl-C stops the answer being generated (not the program); Ctrl-D or /quit leaves.
"""

from __future__ import annotations

import dataclasses
import sys
import threading

from stackllama_cli.core.console import console
from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.data.prompt_format import RECIPE
from stackllama_cli.stages.generate import SamplingConfig

HELP = """Commands:
  /help                 this help
  /set NAME VALUE       change a setting: temperature, top_p, top_k, max_new_tokens, repetition_penalty, seed
  /settings             show the settings
  /reset                restore the settings you started with
  /quit                 leave (or Ctrl-D). Ctrl-C stops the current answer."""


def apply_setting(sampling: SamplingConfig, name: str, value: str) -> SamplingConfig:
    """A new SamplingConfig with one field changed, validated like the CLI options."""
    fields = {f.name: f.type for f in dataclasses.fields(SamplingConfig)}
    name = name.replace("-", "_")
    if name not in fields:
        raise StackLlamaError(f"unknown setting {name!r}; one of {', '.join(fields)}")
    current = getattr(sampling, name)
    try:
        parsed = type(current)(value)
    except ValueError:
        raise StackLlamaError(f"{name} takes a {type(current).__name__}, not {value!r}") from None
    return dataclasses.replace(sampling, **{name: parsed})


def stream_answer(model, tokenizer, question: str, sampling: SamplingConfig, write, fmt=RECIPE,
                  stop_ids: list[int] | None = None) -> str:
    """Generate in a thread and write tokens as they come; Ctrl-C stops generation cleanly."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer, set_seed

    stop = threading.Event()

    class StopOnEvent(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return stop.is_set()

    enc = tokenizer([fmt.prompt(question)], return_tensors="pt").to(model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    set_seed(sampling.seed)
    kwargs = dict(**enc, **sampling.generate_kwargs(tokenizer, stop_ids), streamer=streamer,
                  stopping_criteria=StoppingCriteriaList([StopOnEvent()]))

    def work():
        with torch.no_grad():
            model.generate(**kwargs)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    pieces = []
    try:
        for piece in streamer:
            pieces.append(piece)
            write(piece)
    except KeyboardInterrupt:
        stop.set()
        for _ in streamer:  # drain so the generation thread can finish
            pass
        write(" [stopped]")
    thread.join()
    write("\n")
    return "".join(pieces)


def chat(model: str, sampling: SamplingConfig, prompt_format: str | None = None, **load_kwargs) -> None:
    from stackllama_cli.stages.generate import generation_format, load_for_generation

    with console.status(f"Loading {model}..."):
        lm, tokenizer = load_for_generation(model, **load_kwargs)
        fmt, stop_ids = generation_format(model, lm, tokenizer, prompt_format)
    initial = sampling
    console.print(f"[bold]stackllama chat[/] with {model}. Ask a question; /help for commands, Ctrl-D to quit.")

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    while True:
        try:
            line = input("\n? ")
        except EOFError:
            write("\n")
            return
        except KeyboardInterrupt:
            write("\n(Ctrl-D or /quit to leave)\n")
            continue
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            parts = line[1:].split()
            cmd, args = parts[0].lower() if parts else "", parts[1:]
            if cmd in ("quit", "exit", "q"):
                return
            if cmd == "help":
                write(HELP + "\n")
            elif cmd == "reset":
                sampling = initial
                write("settings restored\n")
            elif cmd == "settings":
                write(", ".join(f"{k}={v}" for k, v in dataclasses.asdict(sampling).items()) + "\n")
            elif cmd == "set" and len(args) == 2:
                try:
                    sampling = apply_setting(sampling, *args)
                    write(f"{args[0]} = {getattr(sampling, args[0].replace('-', '_'))}\n")
                except StackLlamaError as exc:
                    write(f"error: {exc}\n")
            else:
                write(f"unknown command {line!r}; /help lists them\n")
            continue
        write("\n")
        stream_answer(lm, tokenizer, line, sampling, write, fmt, stop_ids)
