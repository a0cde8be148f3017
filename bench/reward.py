"""Reward model on real data: train on the beer dump's reward split with SmolLM2-135M, evaluate on coffee.

    python bench/reward.py [--steps 40] [--batch-size 4] [--max-length 256] [--eval-pairs 64]

Prints accuracy vs the "longer answer wins" rule on coffee pairs the model never saw
(another site), and pairs/s for training and scoring. fp32 on CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BEER, COFFEE, require_dumps, stackllama  # noqa: E402


def main() -> None:
    require_dumps()
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--eval-pairs", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stackllama("prepare-data", BEER, "--output", tmp / "beer")
        # every coffee pair in one file: the whole site is held out
        stackllama("prepare-data", COFFEE, "--output", tmp / "coffee", "--splits", "evaluation=1.0")
        proc, train_s, rss = stackllama("train-rm", "--model", "smollm2-135m", "--data", tmp / "beer", "--output",
                                        tmp / "rm", "--max-steps", a.steps, "--batch-size", a.batch_size,
                                        "--max-length", a.max_length, "--learning-rate", a.learning_rate,
                                        "--eval-pairs", 0, "--stats-pairs", 32, "--save-steps", 1000, "--json")
        summary = json.loads(proc.stdout)
        proc, eval_s, _ = stackllama("eval-rm", tmp / "rm", "--data", tmp / "coffee", "--limit", a.eval_pairs,
                                     "--max-length", a.max_length, "--json")
        ev = json.loads(proc.stdout)
    print(f"train: {summary['steps']} steps x {a.batch_size} pairs (max {a.max_length} tokens, "
          f"{summary['dropped_over_max_length']} longer pairs dropped) in {summary['seconds']:.0f} s = "
          f"{summary['train_pairs_per_second']:.2f} pairs/s; final train loss {summary['train_loss']:.3f}")
    print(f"eval on {ev['pairs']} coffee pairs (other site, never seen): accuracy {ev['accuracy']:.3f} vs "
          f"length rule {ev['length_rule_accuracy']:.3f}; scoring {2 * ev['pairs'] / eval_s:.1f} texts/s "
          f"(incl. model load); by score gap {json.dumps(ev.get('accuracy_by_score_gap'))}")
    print(f"peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
