"""PPO step time and memory on SmolLM2-135M (CPU, fp32): the original trl 0.11 stack took ~69 s/step.

    python bench/ppo.py [--sft runs/demo/sft] [--reward-model runs/demo/reward] [--steps 5]

Same work as the original stack's script (bench/ppo.py --anchor-python runs it beside ours): batch 8, responses of 24-48 tokens, LoRA r16
policy with value head, reference = adapter disabled, 4 PPO epochs, adaptive KL.
Without --sft/--reward-model it uses `stackllama demo`'s outputs from runs/demo.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BEER, REPO, require_dumps, stackllama  # noqa: E402


def main() -> None:
    require_dumps()
    parser = argparse.ArgumentParser()
    parser.add_argument("--sft", default=str(REPO / "runs" / "demo" / "sft"))
    parser.add_argument("--reward-model", default=str(REPO / "runs" / "demo" / "reward"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--mini-batch-size", type=int, default=4, help="the original: 1 (x 4 accumulation)")
    parser.add_argument("--max-prompt-length", type=int, default=256, help="the original's prompts: ~75 tokens")
    a = parser.parse_args()
    for path in (a.sft, a.reward_model):
        if not Path(path).is_dir():
            sys.exit(f"{path} not found: run 'stackllama demo' first or pass --sft/--reward-model")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stackllama("prepare-data", BEER, "--output", tmp / "data")
        proc, seconds, rss = stackllama(
            "ppo", "--model", a.sft, "--reward-model", a.reward_model, "--data", tmp / "data", "--output",
            tmp / "ppo", "--steps", a.steps, "--batch-size", 8, "--mini-batch-size", a.mini_batch_size,
            "--min-new-tokens", 24, "--max-new-tokens", 48, "--ppo-epochs", 4, "--learning-rate", 1e-4,
            "--log-samples", 0, "--max-prompt-length", a.max_prompt_length,
            *(["--grad-accum", 4 // a.mini_batch_size] if a.mini_batch_size < 4 else []))
        rows = [json.loads(line) for line in (tmp / "ppo" / "metrics.jsonl").read_text().splitlines()]
    prompt = sum(r["prompt_length"] for r in rows) / len(rows)
    print(f"{len(rows)} PPO steps, batch 8, mini-batch {a.mini_batch_size}, 4 epochs, SmolLM2-135M fp32 CPU, "
          f"prompts <= {a.max_prompt_length} tokens (mean {prompt:.0f})")
    for r in rows:
        total = r["time_generate"] + r["time_score"] + r["time_optimise"]
        print(f"step {r['step']}: {total:5.1f} s (generate {r['time_generate']:.1f}, score {r['time_score']:.1f}, "
              f"optimise {r['time_optimise']:.1f})  reward {r['reward_mean']:+.3f}  KL {r['kl']:+.4f}  "
              f"beta {r['beta']:.4f}  length {r['response_length']:.0f}  eos {r['eos_rate']:.2f}  "
              f"negative-KL share {r['negative_kl_share']:.2f}")
    mean = sum(r["time_generate"] + r["time_score"] + r["time_optimise"] for r in rows) / len(rows)
    print(f"mean {mean:.1f} s/step (original trl 0.11 PPOTrainer on the same work: ~69 s/step); "
          f"peak RSS {rss:.0f} MiB (original: 2.2-2.4 GiB); whole command {seconds:.0f} s")


if __name__ == "__main__":
    main()
