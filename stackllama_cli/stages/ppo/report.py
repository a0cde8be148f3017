"""What a PPO run shows and leaves behind besides weights: a line per step, sample tables, the summary, the plot."""

from __future__ import annotations

from pathlib import Path

from stackllama_cli.core.console import console, info
from stackllama_cli.core.metrics import METRICS_FILENAME, MetricsLog, plot_curves, read_jsonl
from stackllama_cli.dist.ranks import is_main_process

# the phases of a step, timed by loop.py (time_experience: step 3-5's forwards, time_optimise: the PPO epochs)
PHASE_TIMES = ("time_generate", "time_score", "time_experience", "time_optimise")


def summarise(records: list[dict], dropped: int, prompts: int) -> dict:
    def mean(key, part):
        values = [r[key] for r in part if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    k = max(1, len(records) // 4)
    return {"steps": len(records), "prompts": prompts, "prompts_dropped_too_long": dropped,
            "reward_first_quarter": mean("reward_mean", records[:k]), "reward_last_quarter": mean("reward_mean",
                                                                                                  records[-k:]),
            "kl_last": records[-1]["kl"] if records else None, "beta_last": records[-1]["beta_next"] if records
            else None, "degenerate_rate_mean": mean("degenerate_rate", records),
            "negative_kl_share_mean": mean("negative_kl_share", records),
            "seconds_per_step": mean("time_generate", records) and sum(
                mean(t, records) for t in PHASE_TIMES if mean(t, records) is not None),
            "skipped_minibatches": sum(r.get("skipped_minibatches", 0) for r in records)}


def print_step(r: dict, total: int) -> None:
    info(f"step {r['step']}/{total}  reward {r['reward_mean']:+.3f}±{r['reward_std']:.2f}  kl {r['kl']:+.3f} "
         f"(k3 {r['kl_k3']:.3f})  beta {r['beta']:.3f}  len {r['response_length']:.0f}  "
         f"deg {r['degenerate_rate']:.0%}  clip {r['clipfrac']:.2f}" + ("  [critic warm-up]" if r["critic_warmup"]
                                                                         else "") +
         f"  [dim]gen {r['time_generate']:.1f}s score {r['time_score']:.1f}s exp {r['time_experience']:.1f}s "
         f"opt {r['time_optimise']:.1f}s[/]")


def log_samples(log: MetricsLog, step: int, questions, responses, rewards, reasons, n: int = 3) -> None:
    if not is_main_process():
        return
    from rich.table import Table

    table = Table(title=f"samples at step {step}", show_lines=True)
    for name in ("question", "response", "reward"):
        table.add_column(name, overflow="fold")
    for q, r, w, why in list(zip(questions, responses, rewards, reasons))[:n]:
        log.write({"step": step, "question": q, "response": r, "reward": w, "degenerate": why})
        table.add_row(q[:200], r[:400], f"{w:+.3f}" + (f" ({why})" if why else ""))
    console.print(table)


def plot(out: Path) -> None:
    if (out / METRICS_FILENAME).is_file():
        plot_curves(read_jsonl(out / METRICS_FILENAME), out / "ppo.png",
                    [("reward_mean", "reward"), ("kl", "KL (k1)"), ("beta", "beta")], "PPO")
