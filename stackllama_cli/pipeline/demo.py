"""`stackllama demo`: the whole pipeline as a thin chain of the real commands.

Each stage runs as `python -m stackllama_cli <command> ...` (the same code path a
person runs by hand), writes its normal outputs under OUTPUT/<stage>/, and is
skipped on a rerun when its final artifact exists (outputs are written
atomically, so existence means complete). At the end: OUTPUT/report.html.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

from stackllama_cli.core.config import require
from stackllama_cli.core.console import console, info
from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.core.files import atomic_write_text, read_json, write_json
from stackllama_cli.core.metrics import read_jsonl

STATE_FILENAME = "demo_state.json"
REPORT_FILENAME = "report.html"

# Step budgets. `small` is sized for ~10-15 minutes on 2 CPU cores with SmolLM2-135M.
# SmolLM2-135M on 2 CPU cores (measured, bench/): LoRA fwd+bwd ~130 tokens/s, generation ~46 tokens/s at batch 8.
# questions / answer_tokens: what `compare` asks every model at the end.
BUDGETS = {
    "small": dict(sft_steps=12, sft_batch=4, seq_length=256, sft_lr=2e-4, rm_steps=20, rm_batch=4,
                  rm_max_length=256, rm_lr=1e-4, ppo_steps=10, ppo_batch=8, ppo_lr=1e-4, min_new=24, max_new=48,
                  dpo_steps=8, dpo_batch=2, dpo_max_length=256, dpo_prompt_length=128, dpo_lr=5e-4, dpo_eval=8,
                  rloo_steps=6, rloo_batch=4, rloo_k=4, rloo_lr=1e-4, questions=8, answer_tokens=64),
    "medium": dict(sft_steps=60, sft_batch=8, seq_length=512, sft_lr=2e-4, rm_steps=80, rm_batch=8,
                   rm_max_length=384, rm_lr=5e-5, ppo_steps=30, ppo_batch=16, ppo_lr=5e-5, min_new=32, max_new=96,
                   dpo_steps=40, dpo_batch=4, dpo_max_length=512, dpo_prompt_length=256, dpo_lr=5e-4, dpo_eval=32,
                   rloo_steps=20, rloo_batch=8, rloo_k=4, rloo_lr=5e-5, questions=16, answer_tokens=128),
}
COMPARED = ("base", "sft", "ppo", "dpo", "rloo")  # the models `compare` answers with, the first the baseline


@dataclasses.dataclass
class DemoConfig:
    data: list[str] = dataclasses.field(default_factory=list)  # dumps; empty = bundled sample
    output: str = "runs/demo"
    budget: str = "small"
    model: str = "smollm2-135m"
    seed: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        require(self.budget in BUDGETS, f"--budget must be one of {', '.join(BUDGETS)}")


@dataclasses.dataclass
class Stage:
    name: str
    argv: list[str]
    done: Path  # the stage's final artifact: present = complete
    stdout: Path | None = None  # capture stdout (JSON/JSONL) into this file, atomically
    stdin: Path | None = None


def stages(cfg: DemoConfig, out: Path) -> list[Stage]:
    b = BUDGETS[cfg.budget]
    seed = ["--seed", str(cfg.seed)]
    data, sft, reward, ppo = out / "data", out / "sft", out / "reward", out / "ppo"
    dpo, rloo, compare = out / "dpo", out / "rloo", out / "compare"
    return [
        Stage("prepare-data", ["prepare-data", *cfg.data, "--output", str(data), *seed], data / "stats.json"),
        Stage("sft", ["sft", "--model", cfg.model, "--data", str(data), "--output", str(sft),
                      "--max-steps", str(b["sft_steps"]), "--batch-size", str(b["sft_batch"]),
                      "--seq-length", str(b["seq_length"]), "--learning-rate", str(b["sft_lr"]), "--eval-steps",
                      str(b["sft_steps"] // 2), "--logging-steps", "1", *seed], sft / "adapter_config.json"),
        Stage("train-rm", ["train-rm", "--model", str(sft), "--data", str(data), "--output", str(reward),
                           "--max-steps", str(b["rm_steps"]), "--batch-size", str(b["rm_batch"]),
                           "--max-length", str(b["rm_max_length"]), "--learning-rate", str(b["rm_lr"]),
                           "--eval-steps", str(b["rm_steps"] // 2), "--logging-steps", "1", *seed],
              reward / "adapter_config.json"),
        Stage("eval-rm", ["eval-rm", str(reward), "--data", str(data), "--json"], out / "eval-rm.json",
              stdout=out / "eval-rm.json"),
        Stage("ppo", ["ppo", "--model", str(sft), "--reward-model", str(reward), "--data", str(data),
                      "--output", str(ppo), "--steps", str(b["ppo_steps"]), "--batch-size", str(b["ppo_batch"]),
                      "--min-new-tokens", str(b["min_new"]), "--max-new-tokens", str(b["max_new"]),
                      "--learning-rate", str(b["ppo_lr"]), "--log-samples", str(b["ppo_steps"] // 2), *seed],
              ppo / "adapter_config.json"),
        # evaluated once, after training (--eval-steps past the end): a last step-wise eval would repeat it
        Stage("dpo", ["dpo", "--model", str(sft), "--data", str(data), "--output", str(dpo),
                      "--max-steps", str(b["dpo_steps"]), "--batch-size", str(b["dpo_batch"]),
                      "--max-length", str(b["dpo_max_length"]), "--max-prompt-length", str(b["dpo_prompt_length"]),
                      "--learning-rate", str(b["dpo_lr"]), "--eval-pairs", str(b["dpo_eval"]),
                      "--eval-steps", str(b["dpo_steps"] + 1), "--logging-steps", "1", *seed],
              dpo / "adapter_config.json"),
        Stage("rloo", ["rloo", "--model", str(sft), "--reward-model", str(reward), "--data", str(data),
                       "--output", str(rloo), "--max-steps", str(b["rloo_steps"]), "--batch-size",
                       str(b["rloo_batch"]), "--num-generations", str(b["rloo_k"]), "--max-new-tokens",
                       str(b["max_new"]), "--learning-rate", str(b["rloo_lr"]), "--logging-steps", "1",
                       "--log-samples", str(max(1, b["rloo_steps"] // 2)), *seed], rloo / "adapter_config.json"),
        Stage("compare", ["compare", cfg.model, str(sft), str(ppo), str(dpo), str(rloo), "--labels",
                          ",".join(COMPARED), "--reward-model", str(reward), "--data", str(data), "--limit",
                          str(b["questions"]), "--max-new-tokens", str(b["answer_tokens"]), "--output", str(compare),
                          *seed], compare / "compare.json"),
    ]


def run_stage(stage: Stage) -> None:
    cmd = [sys.executable, "-m", "stackllama_cli", *stage.argv]
    console.rule(f"[bold]{stage.name}[/]")
    console.print("[dim]$ stackllama " + " ".join(stage.argv) + "[/]", soft_wrap=True)
    stdin = open(stage.stdin, encoding="utf-8") if stage.stdin else subprocess.DEVNULL
    try:
        result = subprocess.run(cmd, stdin=stdin, stdout=subprocess.PIPE if stage.stdout else None, text=True)
    finally:
        if stage.stdin:
            stdin.close()
    if result.returncode != 0:
        raise StackLlamaError(f"stage '{stage.name}' failed (exit {result.returncode}); fix the cause above "
                              "and rerun the same 'stackllama demo' command to resume from this stage")
    if stage.stdout:
        atomic_write_text(stage.stdout, result.stdout)


def run(cfg: DemoConfig) -> Path:
    out = Path(cfg.output)
    state_path = out / STATE_FILENAME
    if out.exists() and any(out.iterdir()) and not state_path.is_file() and not cfg.overwrite:
        raise StackLlamaError(f"{out} exists and is not a demo run; choose another --output or pass --overwrite")
    if cfg.overwrite and out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    state = read_json(state_path) if state_path.is_file() else {"stage_seconds": {}}
    if state.get("config", dataclasses.asdict(cfg)) != dataclasses.asdict(cfg) and not cfg.overwrite:
        info("[yellow]note:[/] options differ from the run being resumed; finished stages are kept as they are")
    state["config"] = dataclasses.asdict(cfg)
    for stage in stages(cfg, out):
        if stage.done.is_file():
            info(f"[green]✓[/] {stage.name}: already done ({stage.done})")
            continue
        start = time.time()
        run_stage(stage)
        state["stage_seconds"][stage.name] = round(time.time() - start, 1)
        write_json(state_path, state)
    report = write_report(out, state["stage_seconds"])
    print_summary(out, state["stage_seconds"])
    info(f"Report: [bold]{report}[/]")
    return report


def collect_answers(out: Path) -> dict[str, list[dict]]:
    """label -> compare's answers (question, response, reward), in the order the models were compared."""
    path = out / "compare" / "answers.jsonl"
    answers: dict[str, list[dict]] = {}
    for row in read_jsonl(path) if path.is_file() else []:
        answers.setdefault(row["label"], []).append(row)
    return answers


def write_report(out: Path, stage_seconds: dict[str, float]) -> Path:
    from stackllama_cli.pipeline.report import build_report

    return atomic_write_text(out / REPORT_FILENAME, build_report(out, stage_seconds, collect_answers(out)))


def print_summary(out: Path, stage_seconds: dict[str, float]) -> None:
    from stackllama_cli.core.console import summary_table

    rows: dict[str, object] = {f"{k} (s)": v for k, v in stage_seconds.items()}
    rows["total (s)"] = round(sum(stage_seconds.values()), 1)
    rm_eval = out / "eval-rm.json"
    if rm_eval.is_file():
        ev = json.loads(rm_eval.read_text() or "{}")
        rows["RM accuracy"] = ev.get("accuracy")
        rows["length-rule accuracy"] = ev.get("length_rule_accuracy")
    compared = out / "compare" / "compare.json"
    if compared.is_file():
        for m in json.loads(compared.read_text())["models"]:
            lo, hi = m["reward_ci"]
            rows[f"reward ({m['label']})"] = f"{m['reward_mean']:.3f} [{lo:.2f}, {hi:.2f}]"
    summary_table("stackllama demo", rows)
