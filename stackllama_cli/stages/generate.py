"""Generation shared by batch mode, chat and the demo: the model's prompt format, its stop tokens, sampling
settings."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import IO, Iterable, Iterator

from stackllama_cli.core.config import require
from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.core.files import text_lines
from stackllama_cli.data.prompt_format import RECIPE


@dataclasses.dataclass
class SamplingConfig:
    max_new_tokens: int = 256
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 0.95
    top_k: int = 50  # 0 = off
    repetition_penalty: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.max_new_tokens >= 1, "--max-new-tokens must be at least 1")
        require(self.temperature >= 0, "--temperature must be non-negative")
        require(0 < self.top_p <= 1, "--top-p must be in (0, 1]")
        require(self.top_k >= 0, "--top-k must be non-negative")

    def generate_kwargs(self, tokenizer, eos_token_ids: list[int] | None = None) -> dict:
        """generate()'s arguments; it stops at any of `eos_token_ids` (default: the tokenizer's EOS)."""
        sample = self.temperature > 0
        kwargs = dict(max_new_tokens=self.max_new_tokens, do_sample=sample, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=eos_token_ids or tokenizer.eos_token_id, repetition_penalty=self.repetition_penalty)
        if sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:  # silence "temperature is set but do_sample=False" from generation configs
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


def load_for_generation(model: str, precision: str = "auto", load_in_8bit: bool = False,
                        load_in_4bit: bool = False, trust_remote_code: bool = False,
                        attn_implementation: str | None = None):
    """(model, tokenizer) ready for batched generation: adapters merged, left padding, eval mode."""
    import torch

    from stackllama_cli.models.load import load_causal_lm, load_tokenizer
    from stackllama_cli.models.resolve import resolve_model

    spec = resolve_model(model)
    tokenizer = load_tokenizer(spec, padding_side="left", trust_remote_code=trust_remote_code)
    lm = load_causal_lm(spec, precision=precision, load_in_8bit=load_in_8bit, load_in_4bit=load_in_4bit,
                        trust_remote_code=trust_remote_code, attn_implementation=attn_implementation)
    if not (load_in_8bit or load_in_4bit) and torch.cuda.is_available():
        lm = lm.to("cuda")
    lm.eval()
    return lm, tokenizer


def generation_format(model: str, lm, tokenizer, prompt_format: str | None = None):
    """(prompt format, stop token ids) for a loaded model: the format it was trained with (or `prompt_format`,
    checked against it), and every token that ends its answers (data/prompt_format.py:stop_token_ids)."""
    from stackllama_cli.data.prompt_format import stop_token_ids
    from stackllama_cli.models.resolve import resolve_model
    from stackllama_cli.stages.common import stage_prompt_format

    fmt = stage_prompt_format(prompt_format, {model: resolve_model(model)}, tokenizer, model)
    return fmt, stop_token_ids(tokenizer, lm.generation_config.eos_token_id, fmt)


def first_stop(ids: list[int], stop_ids: list[int]) -> int | None:
    """Index of the first token in `ids` that ends a response, or None."""
    stops = set(stop_ids)
    return next((i for i, t in enumerate(ids) if t in stops), None)


def parse_input_line(line: str, lineno: int) -> dict | None:
    """A JSON object with a `question` field, or a plain line of text; blank lines are skipped."""
    text = line.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StackLlamaError(f"input line {lineno} looks like JSON but does not parse ({exc.msg})") from None
        if not isinstance(obj.get("question"), str):
            raise StackLlamaError(f"input line {lineno} is a JSON object without a string 'question' field")
        return obj
    return {"question": text}


def read_questions(stream: IO[str], source: str = "the input") -> list[dict]:
    rows = [parse_input_line(line, i) for i, line in text_lines(stream, source)]
    rows = [r for r in rows if r is not None]
    if not rows:
        raise StackLlamaError("no questions on the input (one per line, plain text or JSON with 'question')")
    return rows


def batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def generate_batch(model, tokenizer, questions: list[str], sampling: SamplingConfig, fmt=RECIPE,
                   stop_ids: list[int] | None = None) -> list[dict]:
    """Answer a batch of questions in the prompt format `fmt`, each ending at the first of `stop_ids` (default:
    the tokenizer's EOS); left padding so every prompt ends where generation starts."""
    import torch

    stop_ids = stop_ids or [tokenizer.eos_token_id]
    prompts = [fmt.prompt(q) for q in questions]
    enc = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    with torch.no_grad():
        out = model.generate(**enc, **sampling.generate_kwargs(tokenizer, stop_ids))
    new = out[:, enc["input_ids"].shape[1]:]
    results = []
    for row in new:
        ids = row.tolist()
        stop = first_stop(ids, stop_ids)
        finished = stop is not None
        if finished:
            ids = ids[:stop]
        results.append({"response": tokenizer.decode(ids, skip_special_tokens=True).strip(),
                        "response_tokens": len(ids), "finish_reason": "eos" if finished else "length"})
    return results


def run_batch(model: str, inputs: Iterable[dict], sampling: SamplingConfig, batch_size: int = 8,
              out: IO[str] = sys.stdout, prompt_format: str | None = None, **load_kwargs) -> int:
    """JSONL answers on `out` (and nothing else), progress on stderr. Returns the number answered."""
    import time

    from transformers import set_seed

    from stackllama_cli.core.console import progress

    rows = list(inputs)
    lm, tokenizer = load_for_generation(model, **load_kwargs)
    fmt, stop_ids = generation_format(model, lm, tokenizer, prompt_format)
    set_seed(sampling.seed)
    tokens = 0
    start = time.time()
    with progress(transient=True) as bar:
        task = bar.add_task("generate", total=len(rows), extra="")
        for chunk in batches(rows, batch_size):
            answers = generate_batch(lm, tokenizer, [r["question"] for r in chunk], sampling, fmt, stop_ids)
            for row, result in zip(chunk, answers):
                out.write(json.dumps({**row, **result}, ensure_ascii=False) + "\n")
                tokens += result["response_tokens"]
            out.flush()
            bar.update(task, advance=len(chunk), extra=f"{tokens / max(time.time() - start, 1e-9):.1f} tok/s")
    return len(rows)
