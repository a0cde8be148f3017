"""Generation throughput: `stackllama generate` batch mode vs a plain `model.generate` loop (SmolLM2-135M).

    python bench/generate.py [--questions 16] [--batch-size 8] [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BEER, require_dumps  # noqa: E402


def main() -> None:
    require_dumps()
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    a = parser.parse_args()
    import re

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stackllama_cli.core.console import quiet_libraries
    from stackllama_cli.data.prompts import format_prompt
    from stackllama_cli.models.resolve import resolve_model
    from stackllama_cli.stages.generate import SamplingConfig, generate_batch, load_for_generation

    quiet_libraries()
    titles = re.findall(r'Title="([^"]*)"', BEER.read_text())[: a.questions]
    sampling = SamplingConfig(max_new_tokens=a.max_new_tokens, temperature=0.7, top_p=0.95, top_k=50, seed=0)

    def ours():
        lm, tok = load_for_generation("smollm2-135m")
        generate_batch(lm, tok, titles[:2], sampling)  # warm-up
        torch.manual_seed(0)
        start = time.time()
        tokens = sum(r["response_tokens"] for i in range(0, len(titles), a.batch_size)
                     for r in generate_batch(lm, tok, titles[i : i + a.batch_size], sampling))
        return tokens, time.time() - start

    def plain():
        path = resolve_model("smollm2-135m").path
        tok = AutoTokenizer.from_pretrained(path, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(path).eval()

        def batch(qs):
            enc = tok([format_prompt(t) for t in qs], return_tensors="pt", padding=True)
            with torch.no_grad():
                gen = model.generate(**enc, max_new_tokens=a.max_new_tokens, do_sample=True, temperature=0.7,
                                     top_p=0.95, top_k=50, pad_token_id=tok.pad_token_id)
            return [row.index(tok.eos_token_id) if tok.eos_token_id in row else len(row)
                    for row in gen[:, enc["input_ids"].shape[1]:].tolist()]

        batch(titles[:2])  # warm-up
        torch.manual_seed(0)
        start = time.time()
        tokens = sum(n for i in range(0, len(titles), a.batch_size) for n in batch(titles[i : i + a.batch_size]))
        return tokens, time.time() - start

    plain_tokens, plain_seconds = plain()
    ours_tokens, ours_seconds = ours()
    print(f"{len(titles)} questions, batch {a.batch_size}, up to {a.max_new_tokens} new tokens, fp32 CPU "
          "(generation only, after a warm-up batch)")
    print(f"stackllama generate (batch mode): {ours_tokens} tokens in {ours_seconds:.1f} s = "
          f"{ours_tokens / ours_seconds:.1f} tokens/s")
    print(f"plain model.generate loop:        {plain_tokens} tokens in {plain_seconds:.1f} s = "
          f"{plain_tokens / plain_seconds:.1f} tokens/s")


if __name__ == "__main__":
    main()
