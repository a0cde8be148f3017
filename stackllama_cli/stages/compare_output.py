"""What `stackllama compare` reports: the result document (JSON), the table on stderr, the verdict sentences
(also used by the demo report), and the files of --output (answers.jsonl, compare.json, reward_vs_length.png)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from stackllama_cli.core.console import finite_or_none
from stackllama_cli.stages.compare_stats import agreement, compare_models, distinct_n, interval_verdict, mean

ANSWERS_FILENAME = "answers.jsonl"
RESULT_FILENAME = "compare.json"
PLOT_FILENAME = "reward_vs_length.png"
KL_DEFINITION = ("KL(model || first model) of the next-token distributions at temperature 1, exact over the "
                 "vocabulary, summed over the tokens of the model's own answer, averaged over questions")


def _clean(value):
    if isinstance(value, tuple):
        return [_clean(v) for v in value]
    return finite_or_none(value)


def build_result(cfg, questions: list[str], answers: dict[str, list[dict]], kl_note: str | None) -> dict:
    labels = cfg.label_list
    lengths = {k: [float(r["length"]) for r in answers[k]] for k in labels}
    rewards = {k: [r["reward"] for r in answers[k]] for k in labels}
    stats = compare_models(rewards, lengths, cfg.resamples, cfg.seed)
    judge_stats = agree = None
    if cfg.judge:
        judged = {k: [r["judge_reward"] for r in answers[k]] for k in labels}
        judge_stats, agree = compare_models(judged, lengths, cfg.resamples, cfg.seed)["models"], agreement(rewards,
                                                                                                            judged)
    models = []
    for label, model in zip(labels, cfg.models):
        rows = answers[label]
        kls = [r.get("kl_to_first") for r in rows]
        entry = {"label": label, "model": model, **{k: _clean(v) for k, v in stats["models"][label].items()},
                 "eos_rate": mean([float(r["finish_reason"] == "eos") for r in rows]),
                 "degenerate_share": mean([float(r["degenerate"] is not None) for r in rows]),
                 "distinct_2": distinct_n([r["response"] for r in rows], 2),
                 "kl_to_first": _clean(mean(kls)) if kls and None not in kls else None}
        if judge_stats is not None:
            j = judge_stats[label]
            entry.update(judge_reward_mean=_clean(j["reward_mean"]), judge_reward_ci=_clean(j["reward_ci"]),
                         judge_win_rate=_clean(j["win_rate"]), judge_win_rate_ci=_clean(j["win_rate_ci"]),
                         judge_agreement=agree.get(label))
        models.append(entry)
    for entry in models[1:]:
        entry["verdict"] = verdict(entry, labels[0], len(questions))
    return {"questions": len(questions),
            "question_source": cfg.questions or f"{cfg.split} split of {cfg.data} (first {cfg.limit} distinct)",
            "reward_model": cfg.reward_model, "judge": cfg.judge,
            "sampling": {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "top_p": cfg.top_p,
                         "top_k": cfg.top_k, "seed": cfg.seed},
            "length_control": {"method": "reward residual after a linear fit on length",
                               "description": "one least-squares line reward ~ a + b * length over every answer of "
                                              "every model; per question, each model's residual is compared with "
                                              "the first model's",
                               "length_unit": "reward-model tokens", **stats["fit"]},
            "bootstrap": {"resamples": cfg.resamples, "level": 0.95, "unit": "questions (paired across models)",
                          "seed": cfg.seed},
            "kl": {"definition": KL_DEFINITION, "note": kl_note},
            "models": models}


def _fmt(value, digits: int = 3, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _ci(ci, digits: int = 2, signed: bool = False) -> str:
    return "[-]" if not ci or ci[0] is None else f"[{_fmt(ci[0], digits, signed)}, {_fmt(ci[1], digits, signed)}]"


def verdict(entry: dict, first: str, n: int) -> str:
    """One honest sentence: is the model's reward different from the first model's, beyond the interval?"""
    diff, ci = entry["reward_diff_vs_first"], entry["reward_diff_ci"]
    side = interval_verdict(tuple(float("nan") if v is None else v for v in ci), 0.0)
    head = f"{entry['label']} vs {first}: reward {_fmt(diff, 3, True)} {_ci(ci, 3, True)}"
    if side == "inside":
        text = f"{head}; the 95% interval includes 0, so {n} questions do not show a difference"
    else:
        text = f"{head}; {'higher' if side == 'above' else 'lower'} beyond the 95% interval"
    lc_side = interval_verdict(tuple(float("nan") if v is None else v for v in entry["lc_win_rate_ci"]), 0.5)
    lc = entry["lc_win_rate"]
    if lc is not None:
        text += (f"; length-controlled win rate {lc:.2f} {_ci(entry['lc_win_rate_ci'])}"
                 + (" (includes 0.5)" if lc_side == "inside" else ""))
    return text + "."


def print_table(result: dict) -> None:
    """One row per model; the reward's interval under it. The verdicts below carry the paired differences."""
    from rich import box
    from rich.table import Table

    from stackllama_cli.core.console import console
    from stackllama_cli.dist.ranks import is_main_process

    if not is_main_process():
        return
    first = result["models"][0]["label"]
    judge = result["judge"] is not None
    table = Table(title=f"compare: {result['questions']} questions, reward model {result['reward_model']}",
                  box=box.SIMPLE_HEAD, padding=(0, 1))
    for name in ("model", "reward", "win", "LC win", "len", "EOS", "degen", "d-2", "KL"):
        table.add_column(name, justify="left" if name == "model" else "right", no_wrap=True)
    for m in result["models"]:
        row = [m["label"], f"{_fmt(m['reward_mean'])}\n{_ci(m['reward_ci'])}", _fmt(m["win_rate"], 2),
               _fmt(m["lc_win_rate"], 2), f"{m['length_mean']:.0f}", f"{m['eos_rate']:.0%}",
               f"{m['degenerate_share']:.0%}", _fmt(m["distinct_2"], 2), _fmt(m["kl_to_first"], 2)]
        table.add_row(*row)
    console.print(table)
    if judge:
        second = Table(title=f"judge: {result['judge']}", box=box.SIMPLE_HEAD, padding=(0, 1))
        for name in ("model", "judge reward (95% CI)", f"judge win vs {first}", "picks the reward model's winner"):
            second.add_column(name, justify="left" if name == "model" else "right")
        for m in result["models"]:
            second.add_row(m["label"], f"{_fmt(m['judge_reward_mean'])} {_ci(m['judge_reward_ci'])}",
                           f"{_fmt(m['judge_win_rate'], 2)} {_ci(m['judge_win_rate_ci'])}",
                           "-" if m.get("judge_agreement") is None else f"{m['judge_agreement']:.0%}")
        console.print(second)
    kl_note = f" ({result['kl']['note']})" if result["kl"]["note"] else ""
    console.print(f"[dim]reward: mean and 95% interval (paired bootstrap over questions). win: against {first}. "
                  f"LC win: the same on reward residuals ({result['length_control']['description']}; slope "
                  f"{result['length_control']['slope']:.4f} per token). len: mean answer length in reward-model "
                  f"tokens. EOS: answers that ended. degen: degenerate answers. d-2: distinct-2. KL: to {first}, "
                  f"summed over the answer{kl_note}."
                  "[/]")
    for m in result["models"][1:]:
        console.print(m["verdict"])


def plot_reward_vs_length(result: dict, answers: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    xs = [r["length"] for rows in answers.values() for r in rows]
    for label, rows in answers.items():
        mean_reward = mean([r["reward"] for r in rows])
        ax.scatter([r["length"] for r in rows], [r["reward"] for r in rows], s=18, alpha=0.7,
                   label=f"{label} (mean {mean_reward:.2f})")
    fit = result["length_control"]
    if xs:
        lo, hi = min(xs), max(xs)
        ax.plot([lo, hi], [fit["intercept"] + fit["slope"] * lo, fit["intercept"] + fit["slope"] * hi], "k--",
                lw=1, label=f"fit over all answers (slope {fit['slope']:.3f})")
    ax.set_xlabel("answer length (reward-model tokens)")
    ax.set_ylabel("reward")
    ax.set_title("Reward vs answer length")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def write_outputs(cfg, result: dict, answers: dict[str, list[dict]]) -> None:
    """answers.jsonl (one line per model and question), compare.json, reward_vs_length.png: all or nothing."""
    from stackllama_cli.core.console import json_default
    from stackllama_cli.core.files import atomic_dir, write_json
    from stackllama_cli.dist.ranks import is_main_process

    if not is_main_process():
        return
    with atomic_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        with open(tmp / ANSWERS_FILENAME, "w", encoding="utf-8") as fh:
            for label, model in zip(cfg.label_list, cfg.models):
                for row in answers[label]:
                    record = {"label": label, "model": model,
                              **{k: _clean(v) for k, v in row.items() if not k.startswith("_")}}
                    fh.write(json.dumps(record, default=json_default, ensure_ascii=False) + "\n")
        write_json(tmp / RESULT_FILENAME, result)
        plot_reward_vs_length(result, answers, tmp / PLOT_FILENAME)
