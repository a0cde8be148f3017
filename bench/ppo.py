"""PPO seconds per step and peak memory, ours beside the original StackLLaMA stack (trl 0.11's PPOTrainer).

    python bench/ppo.py --anchor-python /path/to/old-venv/bin/python [--steps 4] [--threads 2]
    python bench/ppo.py                       # ours only
    python bench/ppo.py --rev ba7bb83         # and ours at an earlier commit (before/after a change)

The same work for every row, as the original's script (../shared/anchors/old_trl_ppo.py, run from there
when --anchor-python is given) does it: SmolLM2-135M as the SFT model; a reward model that is the same
weights with a seeded, untrained one-output score head (it costs what a real one costs; its scores mean
nothing); the first 64 beer.stackexchange questions cut so the prompt is <= 128 tokens; batch 8; responses
of 24-48 new tokens; 4 PPO epochs; 4 samples per optimizer step; LoRA r16/alpha32; adaptive KL.

Rows: the original (mini-batch 1 x accumulation 4, LoRA on q_proj,v_proj as peft's LLaMA default); ours
with the original's LoRA targets; ours with every default (targets, mini-batch, precision). Each row is a
fresh process run one after the other, with the same thread count; seconds per step are averaged over
steps 2..N (step 1 pays one-off costs), peak RSS is the child's own (os.wait4). Only ratios measured in
one run of this script mean anything: absolute times move from machine to machine and minute to minute.
`--rev REV` adds a row for this repository at commit REV (checked out in a temporary git worktree, every
default): a change measured against the code before it, in the same run.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BEER, REPO, require_dumps  # noqa: E402

ANCHOR = REPO.parent / "shared" / "anchors" / "old_trl_ppo.py"
SMOLLM2 = "smollm2-135m"
SEED_TARGETS = "q_proj,v_proj"  # peft's default for LLaMA, which the original recipe used
PHASES = ("generate", "score", "experience", "optimise")


def first_questions(n: int = 64) -> list[str]:
    """The first n questions of the beer dump, HTML stripped as the original's script does."""
    out = []
    for _, el in ET.iterparse(BEER, events=("end",)):
        if el.tag == "row" and el.get("PostTypeId") == "1":
            body = html.unescape(re.sub(r"<[^>]+>", " ", el.get("Body", "")))
            body = re.sub(r"\s*\n\s*", "\n", re.sub(r"[ \t]+", " ", body)).strip()
            out.append(f"{html.unescape(el.get('Title', ''))}\n{body}".strip())
            if len(out) >= n:
                break
        el.clear()
    return out


def cut_to(tokenizer, question: str, max_tokens: int) -> str:
    """The question cut (at a token boundary) so that its prompt fits max_tokens, as the original cuts."""
    from stackllama_cli.data.prompts import format_prompt

    if len(tokenizer(format_prompt(question))["input_ids"]) <= max_tokens:
        return question
    ids = tokenizer(question)["input_ids"]
    k = len(ids) - (len(tokenizer(format_prompt(question))["input_ids"]) - max_tokens)
    while len(tokenizer(format_prompt(tokenizer.decode(ids[:k])))["input_ids"]) > max_tokens:
        k -= 1
    return tokenizer.decode(ids[:k])


def build_inputs(tmp: Path, max_prompt: int) -> tuple[Path, Path]:
    """The prompts (JSONL with a question column) and the untrained reward model, in tmp."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from stackllama_cli.models.load import load_tokenizer
    from stackllama_cli.models.resolve import resolve_model

    spec = resolve_model(SMOLLM2)
    tokenizer = load_tokenizer(spec)
    prompts = tmp / "rl.jsonl"
    prompts.write_text("".join(json.dumps({"question": cut_to(tokenizer, q, max_prompt)}) + "\n"
                               for q in first_questions()))
    torch.manual_seed(0)  # the untrained score head, seeded as the original's script seeds its own
    rm = AutoModelForSequenceClassification.from_pretrained(spec.path, num_labels=1, dtype=torch.float32)
    rm.config.pad_token_id = tokenizer.pad_token_id
    rm.save_pretrained(tmp / "reward")
    tokenizer.save_pretrained(tmp / "reward")
    return prompts, tmp / "reward"


def run_child(argv: list[str], env: dict, cwd: Path = REPO) -> tuple[subprocess.CompletedProcess, float]:
    """Run argv; (result, the child's own peak RSS in MiB). wait4 reads the rusage of this child alone,
    where RUSAGE_CHILDREN would report the largest child so far (the original's, for the rows after it)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        result = subprocess.CompletedProcess(argv, proc.returncode, out.read(), err.read())
    if result.returncode != 0:
        sys.exit(f"{' '.join(map(str, argv))} failed:\n{result.stderr[-3000:]}")
    return result, usage.ru_maxrss / 1024


def original(python: str, steps: int, threads: int, tmp: Path, env: dict) -> dict:
    from stackllama_cli.models.resolve import resolve_model

    env = {**env, "SMOLLM2_DIR": str(resolve_model(SMOLLM2).path), "OLD_MODEL_DIR": str(tmp / "smollm2-old")}
    _, rss = run_child([python, str(ANCHOR), "--steps", str(steps), "--threads", str(threads),
                        "--json", str(tmp / "anchor.json")], env)
    s = json.loads((tmp / "anchor.json").read_text())["summary"]
    return {"name": "original trl 0.11 PPOTrainer, q_proj,v_proj, mini-batch 1 x accum 4, fp32",
            "seconds": s["total_s"], "rss": rss,
            "phases": {"generate": s["gen_s"], "score": s["score_s"], "experience+optimise": s["ppo_step_s"]}}


def ours(name: str, extra: list, steps: int, prompts: Path, reward: Path, tmp: Path, env: dict,
         code: Path = REPO) -> dict:
    """Our row: `python -m stackllama_cli ppo` from the checkout `code` (this one, or --rev's worktree)."""
    out = tmp / f"ppo-{len(list(tmp.glob('ppo-*')))}"
    argv = [sys.executable, "-m", "stackllama_cli", "ppo", "--model", SMOLLM2, "--reward-model", reward,
            "--data", prompts, "--output", out, "--steps", steps, "--batch-size", 8, "--min-new-tokens", 24,
            "--max-new-tokens", 48, "--ppo-epochs", 4, "--max-prompt-length", 128, "--log-samples", 0,
            "--save-every", 10_000, *extra]
    _, rss = run_child(list(map(str, argv)), {**env, "PYTHONPATH": str(code)}, cwd=code)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tail = rows[1:] or rows
    # an earlier commit (--rev) may time fewer phases (experience inside optimise): those it has
    phases = {p: sum(r[f"time_{p}"] for r in tail) / len(tail) for p in PHASES if f"time_{p}" in tail[0]}
    return {"name": name, "seconds": sum(phases.values()), "rss": rss, "phases": phases, "rows": rows}


def at_commit(rev: str, steps: int, prompts: Path, reward: Path, tmp: Path, env: dict) -> dict:
    """Our row at git commit `rev` (every default), from a temporary worktree of this repository."""
    tree = tmp / "rev"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), rev], check=True)
    try:
        sha = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        return ours(f"stackllama ppo at {sha}, every default", [], steps, prompts, reward, tmp, env, tree)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)


def main() -> None:
    require_dumps()
    parser = argparse.ArgumentParser()
    parser.add_argument("--anchor-python", help="the original stack's venv python (../shared/anchors/README.md)")
    parser.add_argument("--steps", type=int, default=4, help="steps per run; 2..N are averaged")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=("seed", "default"), help="one of our rows only")
    parser.add_argument("--extra", default="", help="more ppo options for our rows, e.g. '--precision fp32'")
    parser.add_argument("--rev", help="also run ours at this git commit, every default (before/after a change)")
    parser.add_argument("--also", action="append", default=[], metavar="OPTIONS",
                        help="another row of ours: every default plus OPTIONS, e.g. '--precision fp32' (repeatable)")
    a = parser.parse_args()
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(a.threads),
           "MKL_NUM_THREADS": str(a.threads), "PYTHONPATH": str(REPO)}
    extra = a.extra.split()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prompts, reward = build_inputs(tmp, 128)
        if a.anchor_python:
            results.append(original(a.anchor_python, a.steps, a.threads, tmp, env))
            print(f"{results[-1]['name']}: {results[-1]['seconds']:.1f} s/step", flush=True)
        if a.rev:
            results.append(at_commit(a.rev, a.steps, prompts, reward, tmp, env))
            print(f"{results[-1]['name']}: {results[-1]['seconds']:.1f} s/step", flush=True)
        for key, name, options in (("seed", f"stackllama ppo, {SEED_TARGETS}, defaults otherwise",
                                    ["--lora-target-modules", SEED_TARGETS]),
                                   ("default", "stackllama ppo, every default", []),
                                   *((None, f"stackllama ppo, {also}", also.split()) for also in a.also)):
            if key is None or a.only in (None, key):
                results.append(ours(name, options + extra, a.steps, prompts, reward, tmp, env))
                print(f"{results[-1]['name']}: {results[-1]['seconds']:.1f} s/step", flush=True)
    report(results, a)


def report(results: list[dict], a) -> None:
    from stackllama_cli.core.environment import cpu_from_cpuinfo

    cpu = cpu_from_cpuinfo(Path("/proc/cpuinfo").read_text())["model"] if Path("/proc/cpuinfo").exists() else "?"
    print(f"\nPPO on SmolLM2-135M, batch 8, 24-48 new tokens, 4 epochs, 4 samples per optimizer step, prompts "
          f"<= 128 tokens; {a.threads} threads on {cpu}; {time.strftime('%Y-%m-%d')}; s/step = mean of steps "
          f"2..{a.steps}" + (f"; ours with {a.extra}" if a.extra else ""))
    base = results[0] if a.anchor_python else None
    print(f"{'run':<72} {'s/step':>7} {'ratio':>6} {'peak RSS':>9} {'ratio':>6}")
    for r in results:
        time_ratio = f"{r['seconds'] / base['seconds']:.2f}x" if base else "-"
        rss_ratio = f"{r['rss'] / base['rss']:.2f}x" if base else "-"
        print(f"{r['name']:<72} {r['seconds']:>7.1f} {time_ratio:>6} {r['rss']:>5.0f} MiB {rss_ratio:>6}")
    for r in results:
        print(f"  {r['name']}: " + ", ".join(f"{k} {v:.1f} s" for k, v in r["phases"].items()))
    for r in results:
        for row in r.get("rows", []):
            nan = float("nan")
            print(f"  {r['name'][:40]} step {row['step']}: reward {row.get('reward_mean', nan):+.3f} KL "
                  f"{row.get('kl', nan):+.4f} length {row.get('response_length', nan):.0f} prompt "
                  f"{row.get('prompt_length', nan):.0f}")


if __name__ == "__main__":
    main()
