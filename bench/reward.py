"""Reward models on real data, LoRA vs probe at the same budget: train on beer's reward split with SmolLM2-135M,
judge on beer's evaluation split and on coffee (another site, never seen).

    python bench/reward.py [--train-minutes 5] [--max-length 256] [--batch-size 4] [--methods probe,lora]

Each method gets the same `train-rm --max-minutes` (the whole command: loading, training or feature
extraction, reward statistics, saving); then `eval-rm` scores both held-out sets with the same
--max-length. About 15 minutes in all on 2 CPU cores with the defaults. Prints one table: accuracy with
its 95% interval, the "longer answer wins" rule, accuracy on length-balanced pairs (answers within 20%),
the rank correlation of reward with answer length, pairs seen, wall time and peak RSS of each command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BEER, COFFEE, require_dumps  # noqa: E402


def run(*args) -> tuple[str, float, float]:
    """`python -m stackllama_cli ARGS` -> (stdout, seconds, this command's own peak RSS in MiB)."""
    start = time.time()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "stackllama_cli", *map(str, args)], stdout=out, stderr=err,
                                env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"stackllama {' '.join(map(str, args))} failed:\n{err.read()[-3000:]}")
        return out.read(), time.time() - start, usage.ru_maxrss / 1024


def ci(value: float, interval) -> str:
    if value != value:
        return "-"
    return f"{value:.3f} [{interval[0]:.2f},{interval[1]:.2f}]"


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    require_dumps()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-minutes", type=float, default=5.0, help="train-rm budget of each method")
    parser.add_argument("--methods", default="probe,lora")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=None, help="LoRA (default: train-rm's)")
    parser.add_argument("--beer-pairs", type=int, default=None, help="beer evaluation pairs scored (default: all)")
    parser.add_argument("--coffee-pairs", type=int, default=None, help="coffee pairs scored (default: all 129)")
    parser.add_argument("--epochs", type=float, default=1.0, help="LoRA: the schedule's length (cosine); the "
                        "budget usually stops it first")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    a = parser.parse_args()
    header = ["method", "eval on", "pairs", "accuracy [95%]", "length rule [95%]", "balanced acc [95%] (n)",
              "rho(r,len)", "pairs seen", "wall s (train + eval)", "peak RSS MiB"]
    widths = [6, 9, 5, 17, 17, 24, 10, 14, 21, 12]

    def show(row) -> None:  # a row as soon as it is known: a run cut short still shows what it measured
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)), flush=True)

    began = time.time()
    print(f"bench/reward.py {time.strftime('%Y-%m-%d %H:%M')} on {cpu_model()} ({os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}); SmolLM2-135M, train-rm --max-minutes {a.train_minutes:g} per method on beer's "
          f"reward split, --max-length {a.max_length}, batch {a.batch_size}", flush=True)
    show(header)
    show(["-" * w for w in widths])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run("prepare-data", BEER, "--output", tmp / "beer")
        # every coffee pair in one split: the whole site is held out
        run("prepare-data", COFFEE, "--output", tmp / "coffee", "--splits", "evaluation=1.0")
        for method in a.methods.split(","):
            out, train_s, train_rss = run(
                "train-rm", "--model", "smollm2-135m", "--data", tmp / "beer", "--output", tmp / method,
                "--method", method, "--max-minutes", a.train_minutes, "--epochs", a.epochs,
                "--batch-size", a.batch_size, "--max-length", a.max_length, "--logging-steps", 5,
                "--eval-pairs", 0, "--stats-pairs", 32, "--save-steps", 100_000, "--json",
                *(["--learning-rate", a.learning_rate] if a.learning_rate else []),
                *(["--gradient-checkpointing"] if a.gradient_checkpointing else []))
            summary = json.loads(out)
            seen = f"{summary['pairs_seen']}" + (f" ({summary['steps']} steps)" if summary.get("steps") else "")
            for split, data, limit in (("beer eval", tmp / "beer", a.beer_pairs),
                                       ("coffee", tmp / "coffee", a.coffee_pairs)):
                out, eval_s, eval_rss = run("eval-rm", tmp / method, "--data", data, "--max-length", a.max_length,
                                            "--batch-size", 8, "--json", *(["--limit", limit] if limit else []))
                ev = json.loads(out)
                show([method, split, ev["pairs"], ci(ev["accuracy"], ev["accuracy_ci95"]),
                      ci(ev["length_rule_accuracy"], ev["length_rule_ci95"]),
                      f"{ci(ev['balanced_accuracy'], ev['balanced_accuracy_ci95'])} ({ev['balanced_pairs']})",
                      f"{ev['reward_length_spearman']:+.2f}", seen, f"{summary['seconds']:.0f} + {eval_s:.0f}",
                      f"{max(train_rss, eval_rss):.0f}"])
    print(f"total {(time.time() - began) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
