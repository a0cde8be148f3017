"""Reward model on real data: train on the beer dump's reward split with SmolLM2-135M, evaluate on coffee.

    python bench/reward.py [--minutes 15] [--batch-size 4] [--max-length 256] [--eval-pairs 128]

Training runs for a fixed wall-clock budget (`train-rm --max-minutes`; default 15 minutes,
because about five engineers share this machine's 2 CPU cores), fp32 on CPU, constant
learning rate after a short warmup (the number of steps is not known in advance). Pairs
over --max-length are cut (train-rm --truncate), not dropped (--drop-long). The model is
then judged on coffee pairs it never saw (another site), beside the "longer answer wins"
rule on the same pairs; pairs/s are printed for training and for scoring.
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget (wall clock)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--eval-pairs", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--gradient-checkpointing", action="store_true", help="half the memory, ~30%% slower")
    parser.add_argument("--drop-long", action="store_true",
                        help="drop pairs over --max-length (train-rm's default) instead of cutting them: at 256 "
                             "tokens that keeps only the short 30%% of beer pairs, and the model never sees a cut "
                             "text, though most coffee answers are cut when scored")
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stackllama("prepare-data", BEER, "--output", tmp / "beer")
        # every coffee pair in one split: the whole site is held out
        stackllama("prepare-data", COFFEE, "--output", tmp / "coffee", "--splits", "evaluation=1.0")
        proc, _, rss = stackllama("train-rm", "--model", "smollm2-135m", "--data", tmp / "beer", "--output",
                                  tmp / "rm", "--max-minutes", a.minutes, "--max-steps", 100_000, "--epochs", 1,
                                  "--lr-scheduler", "constant_with_warmup", "--warmup-steps", 10,
                                  "--batch-size", a.batch_size, "--max-length", a.max_length,
                                  "--learning-rate", a.learning_rate, "--logging-steps", 10,
                                  "--eval-pairs", 0, "--stats-pairs", 32, "--save-steps", 100_000, "--json",
                                  *([] if a.drop_long else ["--truncate"]),
                                  *(["--gradient-checkpointing"] if a.gradient_checkpointing else []))
        summary = json.loads(proc.stdout)
        proc, _, _ = stackllama("eval-rm", tmp / "rm", "--data", tmp / "coffee", "--limit", a.eval_pairs,
                                "--max-length", a.max_length, "--json")
        ev = json.loads(proc.stdout)
    print(f"train: {summary['steps']} steps x {a.batch_size} pairs = {summary['steps'] * a.batch_size} of "
          f"{summary['train_pairs']} beer pairs (max {a.max_length} tokens, "
          f"{summary['over_max_length']} longer pairs {'dropped' if a.drop_long else 'cut'}) in "
          f"{summary['seconds']:.0f} s = {summary['train_pairs_per_second']:.2f} pairs/s; "
          f"train loss {summary['train_loss']:.3f}")
    print(f"eval on {ev['pairs']} coffee pairs (other site, never seen): accuracy {ev['accuracy']:.3f} vs length "
          f"rule {ev['length_rule_accuracy']:.3f}; mean margin {ev['mean_margin']:.3f}; scoring "
          f"{ev['pairs_per_second']:.2f} pairs/s (2 texts each)")
    print("accuracy by score gap: " + ", ".join(f"{gap}: {b['accuracy']:.3f} ({b['pairs']} pairs)"
                                                for gap, b in ev.get("accuracy_by_score_gap", {}).items()))
    verdict = "beats" if ev["accuracy"] > ev["length_rule_accuracy"] else "does NOT beat"
    print(f"the reward model {verdict} the length rule; peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
