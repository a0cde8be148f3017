"""PPO vs DPO vs RLOO on SmolLM2-135M and the real beer dump, on 2 CPU cores:

    python bench/compare.py [--output runs/bench-compare] [--questions 32]

prepare-data -> sft -> train-rm -> ppo, dpo, rloo (each from the same SFT adapter) -> compare of base, sft,
ppo, dpo and rloo on held-out questions of the evaluation split, every answer scored by the one reward model.
Sized for ~30 minutes on 2 idle cores from the rates in the README (sft 20 steps ~3 min, train-rm capped at
5 min, ppo 6 steps at ~42 s, dpo 20 steps, rloo 10 steps, compare 5 x 32 answers of 64 tokens ~6 min).
Each stage is skipped when its output exists; an interrupted one starts again (rerun to resume).
Prints seconds per stage, the comparison as a Markdown table, and each model's verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BEER, REPO, require_dumps  # noqa: E402

LABELS = ("base", "sft", "ppo", "dpo", "rloo")


def stage_plan(out: Path, questions: int, model: str = "smollm2-135m") -> list[tuple[str, Path, list]]:
    """(name, artifact that marks it done, stackllama arguments)."""
    data, sft, rm, ppo, dpo, rloo = (out / n for n in ("data", "sft", "reward", "ppo", "dpo", "rloo"))
    seed = ["--seed", 0]
    return [
        ("prepare-data", data / "stats.json", ["prepare-data", BEER, "--output", data, *seed]),
        ("sft", sft / "adapter_config.json",
         ["sft", "--model", model, "--data", data, "--output", sft, "--max-steps", 20, "--batch-size", 4,
          "--seq-length", 256, "--learning-rate", 2e-4, "--eval-samples", 16, "--eval-steps", 100, *seed]),
        ("train-rm", rm / "adapter_config.json",
         ["train-rm", "--model", sft, "--data", data, "--output", rm, "--max-steps", 30, "--batch-size", 4,
          "--max-length", 256, "--truncate", "--learning-rate", 1e-4, "--eval-pairs", 32, "--eval-steps", 100,
          "--stats-pairs", 64, "--max-minutes", 5, *seed]),
        ("ppo", ppo / "adapter_config.json",
         ["ppo", "--model", sft, "--reward-model", rm, "--data", data, "--output", ppo, "--steps", 6, "--batch-size", 8,
          "--min-new-tokens", 24, "--max-new-tokens", 48, "--learning-rate", 1e-4, "--max-prompt-length", 256,
          "--log-samples", 0, *seed]),
        ("dpo", dpo / "adapter_config.json",
         ["dpo", "--model", sft, "--data", data, "--output", dpo, "--max-steps", 20, "--batch-size", 2,
          "--max-length", 256, "--max-prompt-length", 128, "--eval-pairs", 16, "--eval-steps", 100,
          "--logging-steps", 5, *seed]),
        ("rloo", rloo / "adapter_config.json",
         ["rloo", "--model", sft, "--reward-model", rm, "--data", data, "--output", rloo, "--max-steps", 10,
          "--batch-size", 4, "--num-generations", 4, "--max-new-tokens", 48, "--learning-rate", 1e-4,
          "--max-prompt-length", 256, "--logging-steps", 2, *seed]),
        ("compare", out / "compare" / "compare.json",
         ["compare", model, sft, ppo, dpo, rloo, "--labels", ",".join(LABELS), "--reward-model", rm,
          "--data", data, "--limit", questions, "--max-new-tokens", 64, "--output", out / "compare", *seed]),
    ]


def markdown(result: dict) -> str:
    def ci(pair, digits=2):
        return f"[{pair[0]:.{digits}f}, {pair[1]:.{digits}f}]"

    first = result["models"][0]["label"]
    lines = [f"| model | reward (95% CI) | win vs {first} | length-controlled win | length | degenerate | "
             f"distinct-2 | KL to {first} |", "|---|---|---|---|---|---|---|---|"]
    for m in result["models"]:
        kl = "-" if m["kl_to_first"] is None else f"{m['kl_to_first']:.2f}"
        lines.append(f"| {m['label']} | {m['reward_mean']:.3f} {ci(m['reward_ci'])} | {m['win_rate']:.2f} "
                     f"{ci(m['win_rate_ci'])} | {m['lc_win_rate']:.2f} {ci(m['lc_win_rate_ci'])} | "
                     f"{m['length_mean']:.0f} | {m['degenerate_share']:.0%} | {m['distinct_2']:.2f} | {kl} |")
    return "\n".join(lines)


def main() -> None:
    require_dumps()
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", default=str(REPO / "runs" / "bench-compare"))
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--model", default="smollm2-135m", help="base model (another one only to try the script)")
    a = parser.parse_args()
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    times_path = out / "stage_seconds.json"
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}
    for name, done, args in stage_plan(out, a.questions, a.model):
        if done.is_file():
            print(f"{name}: done already ({times.get(name, '?')} s)", flush=True)
            continue
        if done.parent.exists():  # an interrupted stage: start it again from scratch
            shutil.rmtree(done.parent)
        start = time.time()
        proc = subprocess.run([sys.executable, "-m", "stackllama_cli", *map(str, args)],
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})  # progress on our stderr
        if proc.returncode != 0:
            sys.exit(f"{name} failed (exit {proc.returncode}); rerun to resume from it")
        times[name] = round(time.time() - start, 1)
        times_path.write_text(json.dumps(times, indent=2) + "\n")
        print(f"{name}: {times[name]} s", flush=True)
    result = json.loads((out / "compare" / "compare.json").read_text())
    print(f"\n{a.model}, beer dump, 2 CPU cores: {sum(times.values()) / 60:.1f} min in all "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in times.items())})")
    print(f"{result['questions']} held-out questions, {result['sampling']['max_new_tokens']} new tokens, "
          f"reward model {result['reward_model']}\n")
    print(markdown(result))
    print()
    for m in result["models"][1:]:
        print(m["verdict"])
    for name in ("dpo/dpo_summary.json", "rloo/rloo_summary.json", "ppo/ppo_summary.json"):
        if (out / name).is_file():
            summary = json.loads((out / name).read_text())
            print(f"{name}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in summary.items() if not isinstance(v, (list, dict))))


if __name__ == "__main__":
    main()
