"""A self-contained HTML report of a pipeline run: numbers, curves (embedded PNG), answers side by side.

Reads only files the stages write, so it can be rebuilt for any run directory.
Everything is inline (CSS, images as data URIs): the file renders offline.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from pathlib import Path
from typing import Any, Iterable

from stackllama_cli.core.metrics import METRICS_FILENAME, plot_curves, read_jsonl

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;
color:#1b1f24;background:#fff}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.3em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #d0d7de;padding:.35em .6em;vertical-align:top;
text-align:left}th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.answers td{width:16%;font-size:.9em;white-space:pre-wrap}.muted{color:#57606a}.good{color:#1a7f37}.bad{color:#cf222e}
img{max-width:100%;border:1px solid #d0d7de}.reward{font-weight:600;display:block;margin-top:.4em}
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def kv_table(rows: dict[str, Any]) -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td class=num>{esc(fmt(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def grid_table(header: list[str], rows: Iterable[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table class='{cls}'><tr>{head}</tr>{body}</table>"


def png_data_uri(records: list[dict], series: list[tuple[str, str]], title: str) -> str | None:
    """Plot `series` from metric records into an in-memory PNG data URI (None when nothing to plot)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_curves(records, Path(tmp) / "plot.png", series, title)
        if path is None:
            return None
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def img(uri: str | None, alt: str) -> str:
    return f"<img alt='{esc(alt)}' src='{uri}'>" if uri else f"<p class=muted>No {esc(alt)} recorded.</p>"


def load_metrics(stage_dir: Path) -> list[dict]:
    path = stage_dir / METRICS_FILENAME
    return read_jsonl(path) if path.is_file() else []


def load_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def answers_table(answers: dict[str, list[dict]], limit: int = 6) -> str:
    """Rows = questions, columns = models; each cell the response and its reward."""
    models = [m for m, rows in answers.items() if rows]
    if not models:
        return "<p class=muted>No answers generated.</p>"
    questions = [r["question"] for r in answers[models[0]]][:limit]
    by_model = {m: {r["question"]: r for r in rows} for m, rows in answers.items()}
    rows = []
    for q in questions:
        cells = [esc(q)]
        for m in models:
            r = by_model[m].get(q, {})
            reward = r.get("reward")
            reward_html = f"<span class=reward>reward {reward:.3f}</span>" if isinstance(reward, (int, float)) else ""
            cells.append(esc(r.get("response", "")) + reward_html)
        rows.append(cells)
    means = []
    for m in models:
        rewards = [r["reward"] for r in answers[m] if isinstance(r.get("reward"), (int, float))]
        means.append(f"{m} {sum(rewards) / len(rewards):.3f}" if rewards else f"{m} -")
    return (f"<p>Mean reward: {esc(', '.join(means))}</p>"
            + grid_table(["question", *models], rows, cls="answers"))


def _with_ci(value: Any, ci: Any) -> str:
    if not isinstance(value, (int, float)) or value != value:
        return "-"
    if isinstance(ci, list) and len(ci) == 2 and all(isinstance(c, (int, float)) and c == c for c in ci):
        return f"{value:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"
    return f"{value:.3f}"


def reward_eval_section(rm_eval: dict) -> list[str]:
    """eval-rm's verdicts and its accuracies with their 95% intervals: all pairs, the length rule, and pairs whose
    answers are within 20% of each other in length (where "the longer wins" cannot help)."""
    out = []
    acc, length = rm_eval.get("accuracy"), rm_eval.get("length_rule_accuracy")
    if isinstance(acc, (int, float)) and isinstance(length, (int, float)):
        cls, word = ("good", "beats") if acc > length else ("bad", "does not beat")
        out.append(f"<p class={cls}>The reward model {word} the length rule ({acc:.3f} vs {length:.3f}).</p>")
    low = (rm_eval.get("balanced_accuracy_ci95") or [None])[0]
    if isinstance(low, (int, float)):
        cls, word = ("good", "above") if low > 0.5 else ("bad", "not distinguishable from")
        out.append(f"<p class={cls}>On length-balanced pairs it is {word} chance (95% interval "
                   f"{_with_ci(rm_eval.get('balanced_accuracy'), rm_eval.get('balanced_accuracy_ci95'))}).</p>")
    rows = [["accuracy", _with_ci(acc, rm_eval.get("accuracy_ci95")), fmt(rm_eval.get("pairs", "-"))],
            ["length rule (longer answer wins)", _with_ci(length, rm_eval.get("length_rule_ci95")),
             fmt(rm_eval.get("pairs", "-"))],
            ["accuracy, length-balanced pairs (within 20%)",
             _with_ci(rm_eval.get("balanced_accuracy"), rm_eval.get("balanced_accuracy_ci95")),
             fmt(rm_eval.get("balanced_pairs", "-"))],
            ["length rule, length-balanced pairs", _with_ci(rm_eval.get("balanced_length_rule_accuracy"), None),
             fmt(rm_eval.get("balanced_pairs", "-"))]]
    out.append(grid_table(["metric", "value [95% interval]", "pairs"], [[esc(c) for c in r] for r in rows]))
    shown = {"accuracy", "accuracy_ci95", "length_rule_accuracy", "length_rule_ci95", "balanced_accuracy",
             "balanced_accuracy_ci95", "balanced_length_rule_accuracy", "balanced_pairs"}
    out.append(kv_table({k: v for k, v in _flatten(rm_eval).items() if k not in shown and not isinstance(v, list)}))
    return out


def build_report(run_dir: Path, stage_times: dict[str, float], answers: dict[str, list[dict]]) -> str:
    """The whole HTML document for a demo/pipeline run directory."""
    data_stats = load_json(run_dir / "data" / "stats.json") or {}
    rm_eval = load_json(run_dir / "eval-rm.json") or {}
    sections = ["<h1>stackllama run report</h1>",
                f"<p class=muted>{esc(run_dir.resolve())}</p>",
                "<h2>Stages</h2>",
                kv_table({k: f"{v:.1f} s" for k, v in stage_times.items()})]

    sections += ["<h2>Data</h2>", kv_table(_flatten(data_stats)) if data_stats else "<p class=muted>none</p>"]

    sft = load_metrics(run_dir / "sft")
    sections += ["<h2>Supervised fine-tuning</h2>",
                 img(png_data_uri(sft, [("loss", "train loss"), ("eval_loss", "eval loss")], "SFT loss"),
                     "SFT loss curve")]

    sections.append("<h2>Reward model</h2>")
    if rm_eval:
        sections += reward_eval_section(rm_eval)
    rm = load_metrics(run_dir / "reward")
    sections.append(img(png_data_uri(rm, [("loss", "train loss"), ("eval_accuracy", "eval accuracy")],
                                     "Reward model training"), "reward model curves"))

    ppo = load_metrics(run_dir / "ppo")
    sections += ["<h2>PPO</h2>",
                 img(png_data_uri(ppo, [("reward_mean", "reward"), ("kl", "KL (k1)"), ("beta", "beta")], "PPO"),
                     "PPO curves")]
    if ppo:
        first, last = ppo[0], ppo[-1]
        sections.append(kv_table({"steps": len(ppo), "reward (first step)": first.get("reward_mean"),
                                  "reward (last step)": last.get("reward_mean"), "KL (last step)": last.get("kl"),
                                  "beta (last step)": last.get("beta")}))

    sections += dpo_section(run_dir) + rloo_section(run_dir) + comparison_section(run_dir)
    sections += ["<h2>Answers to held-out questions</h2>", answers_table(answers)]
    body = "\n".join(s for s in sections if s)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>stackllama report</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def dpo_section(run_dir: Path) -> list[str]:
    records, summary = load_metrics(run_dir / "dpo"), load_json(run_dir / "dpo" / "dpo_summary.json") or {}
    out = ["<h2>DPO</h2>",
           img(png_data_uri(records, [("loss", "train loss"), ("rewards/margins", "reward margin (train)"),
                                      ("rewards/accuracies", "reward accuracy (train)")], "DPO"), "DPO curves")]
    if summary:
        out.append(kv_table({"steps": summary.get("steps"), "train pairs": summary.get("train_pairs"),
                             "eval loss": summary.get("eval_loss"),
                             "eval reward accuracy": summary.get("eval_reward_accuracy"),
                             "eval reward margin": summary.get("eval_reward_margin"),
                             "eval pairs": summary.get("eval_pairs")}))
    return out


def rloo_section(run_dir: Path) -> list[str]:
    records = [r for r in load_metrics(run_dir / "rloo") if "rm_score" in r]
    out = ["<h2>RLOO</h2>",
           img(png_data_uri(records, [("rm_score", "reward-model score"), ("kl", "KL to SFT"),
                                      ("degenerate_rate", "degenerate share")], "RLOO"), "RLOO curves")]
    if records:
        out.append(kv_table({"steps": records[-1].get("step"), "score (first step)": records[0].get("rm_score"),
                             "score (last step)": records[-1].get("rm_score"), "KL (last step)": records[-1].get("kl"),
                             "answer tokens (last step)": records[-1].get("completions/mean_length")}))
    return out


def _ci_text(ci: list | None, digits: int = 2) -> str:
    return "" if not ci or ci[0] is None else f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def comparison_section(run_dir: Path) -> list[str]:
    """compare's table, what its intervals allow us to say, and the reward-vs-length picture."""
    from stackllama_cli.stages.compare_stats import interval_verdict

    result = load_json(run_dir / "compare" / "compare.json")
    out = ["<h2>Comparison on held-out questions</h2>"]
    if not result:
        return out + ["<p class=muted>No comparison run.</p>"]
    first = result["models"][0]["label"]
    rows = []
    for m in result["models"]:
        rows.append([esc(m["label"]), f"{m['reward_mean']:.3f}{_ci_text(m['reward_ci'])}",
                     f"{m['win_rate']:.2f}{_ci_text(m['win_rate_ci'])}",
                     f"{m['lc_win_rate']:.2f}{_ci_text(m['lc_win_rate_ci'])}", f"{m['length_mean']:.0f}",
                     f"{m['degenerate_share']:.0%}", f"{m['distinct_2']:.2f}",
                     "-" if m["kl_to_first"] is None else f"{m['kl_to_first']:.2f}"])
    header = ["model", "reward (95% CI)", f"win rate vs {first}", "length-controlled win rate", "length (tokens)",
              "degenerate", "distinct-2", f"KL to {first}"]
    differs, items = [], []
    for m in result["models"][1:]:
        side = interval_verdict(tuple(float("nan") if v is None else v for v in m["reward_diff_ci"]), 0.0)
        cls = {"above": "good", "below": "bad"}.get(side, "muted")
        if side != "inside":
            differs.append(m["label"])
        items.append(f"<li class={cls}>{esc(m['verdict'])}</li>")
    n = result["questions"]
    if differs:
        verb = "differs" if len(differs) == 1 else "differ"
        headline = (f"Beyond the 95% interval of the paired difference, only {esc(', '.join(differs))} {verb} from "
                    f"{esc(first)}; every other gap in this table is within what {n} questions leave uncertain.")
    else:
        headline = (f"No model's reward differs from {esc(first)}'s beyond the 95% interval of the paired "
                    f"difference: with {n} questions, the order of the rows is not evidence that one model is "
                    "better.")
    plot = run_dir / "compare" / "reward_vs_length.png"
    uri = "data:image/png;base64," + base64.b64encode(plot.read_bytes()).decode() if plot.is_file() else None
    return out + [f"<p>{n} questions of the evaluation split, one answer per model with the same seeded "
                  f"sampling, every answer scored by the reward model {esc(result['reward_model'])}. "
                  "Intervals: paired bootstrap over questions.</p>",
                  f"<p><b>{headline}</b> The reward model is the judge here: a higher reward means the reward "
                  "model prefers it, which is only as good as the reward model's accuracy above.</p>",
                  grid_table(header, rows), f"<ul>{''.join(items)}</ul>",
                  f"<p class=muted>Length-controlled win rate: {esc(result['length_control']['description'])} "
                  f"(slope {result['length_control']['slope']:.4f} reward per token). "
                  f"KL: {esc(result['kl']['definition'])}.</p>",
                  img(uri, "reward vs length plot")]


def _flatten(obj: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
