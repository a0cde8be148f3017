"""Generation shared by batch mode, chat and the demo: the one prompt template, sampling settings."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import IO, Iterable, Iterator

from stackllama_cli.core.config import require
from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.core.files import text_lines
from stackllama_cli.data.prompts import format_prompt


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

    def generate_kwargs(self, tokenizer) -> dict:
        sample = self.temperature > 0
        kwargs = dict(max_new_tokens=self.max_new_tokens, do_sample=sample, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, repetition_penalty=self.repetition_penalty)
        if sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:  # silence "temperature is set but do_sample=False" from generation configs
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


def load_for_generation(model: str, precision: str = "auto", load_in_8bit: bool = False,
                        load_in_4bit: bool = False, trust_remote_code: bool = False):
    """(model, tokenizer) ready for batched generation: adapters merged, left padding, eval mode."""
    import torch

    from stackllama_cli.models.load import load_causal_lm, load_tokenizer
    from stackllama_cli.models.resolve import resolve_model

    spec = resolve_model(model)
    tokenizer = load_tokenizer(spec, padding_side="left", trust_remote_code=trust_remote_code)
    lm = load_causal_lm(spec, precision=precision, load_in_8bit=load_in_8bit, load_in_4bit=load_in_4bit,
                        trust_remote_code=trust_remote_code)
    if not (load_in_8bit or load_in_4bit) and torch.cuda.is_available():
        lm = lm.to("cuda")
    lm.eval()
    return lm, tokenizer


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


def generate_batch(model, tokenizer, questions: list[str], sampling: SamplingConfig) -> list[dict]:
    """Answer a batch of questions; left padding so every prompt ends where generation starts."""
    import torch

    prompts = [format_prompt(q) for q in questions]
    enc = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    with torch.no_grad():
        out = model.generate(**enc, **sampling.generate_kwargs(tokenizer))
    new = out[:, enc["input_ids"].shape[1]:]
    results = []
    for row in new:
        ids = row.tolist()
        finished = tokenizer.eos_token_id in ids
        if finished:
            ids = ids[: ids.index(tokenizer.eos_token_id)]
        results.append({"response": tokenizer.decode(ids, skip_special_tokens=True).strip(),
                        "response_tokens": len(ids), "finish_reason": "eos" if finished else "length"})
    return results


def run_batch(model: str, inputs: Iterable[dict], sampling: SamplingConfig, batch_size: int = 8,
              out: IO[str] = sys.stdout, **load_kwargs) -> int:
    """JSONL answers on `out` (and nothing else), progress on stderr. Returns the number answered."""
    import time

    from transformers import set_seed

    from stackllama_cli.core.console import progress

    rows = list(inputs)
    lm, tokenizer = load_for_generation(model, **load_kwargs)
    set_seed(sampling.seed)
    tokens = 0
    start = time.time()
    with progress(transient=True) as bar:
        task = bar.add_task("generate", total=len(rows), extra="")
        for chunk in batches(rows, batch_size):
            for row, result in zip(chunk, generate_batch(lm, tokenizer, [r["question"] for r in chunk], sampling)):
                out.write(json.dumps({**row, **result}, ensure_ascii=False) + "\n")
                tokens += result["response_tokens"]
            out.flush()
            bar.update(task, advance=len(chunk), extra=f"{tokens / max(time.time() - start, 1e-9):.1f} tok/s")
    return len(rows)
