"""`--report-to` and `--run-name`: experiment trackers through transformers (sft, train-rm) and accelerate (ppo).

`--report-to` takes tracker names separated by commas, `all` (every one installed) or `none`.
Each run logs under the name `--run-name` (default: the output directory's name); the local ones
write under OUTPUT/runs/<run name>/ (tensorboard: `tensorboard --logdir OUTPUT/runs`).

Importing this module imports neither torch nor transformers: configs validate names at once, and
whether a tracker's package is installed is checked when the stage starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stackllama_cli.core.errors import StackLlamaError

# transformers' integrations (the keys of INTEGRATION_TO_CALLBACK in transformers/integrations/integration_utils.py)
TRANSFORMERS_TRACKERS = ("azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub", "dvclive", "flyte", "kubeflow",
                         "mlflow", "neptune", "swanlab", "tensorboard", "trackio", "wandb")
# accelerate's trackers (accelerate.utils.LoggerType), which ppo logs through
ACCELERATE_TRACKERS = ("aim", "clearml", "comet_ml", "dvclive", "mlflow", "swanlab", "tensorboard", "trackio", "wandb")
PROJECT = "stackllama"  # the project (wandb, trackio, comet, swanlab) or experiment (mlflow) ppo logs to
RUNS_DIRNAME = "runs"


def parse_report_to(value: str) -> list[str] | str:
    """'none' -> [], 'all' -> 'all', 'tensorboard, wandb' -> ['tensorboard', 'wandb']."""
    names = [n.strip().lower() for n in (value or "none").split(",") if n.strip()]
    if not names or names == ["none"]:
        return []
    if names == ["all"]:
        return "all"
    if "none" in names or "all" in names:
        raise StackLlamaError("--report-to: 'none' and 'all' stand alone, not in a list of trackers")
    return list(dict.fromkeys(names))


def check_report_to(value: str, accelerate: bool = False) -> None:
    """Unknown names are an error; `accelerate`: only the trackers accelerate has (ppo)."""
    names = parse_report_to(value)
    known = ACCELERATE_TRACKERS if accelerate else TRANSFORMERS_TRACKERS
    unknown = [n for n in (names if isinstance(names, list) else []) if n not in known]
    if unknown:
        through = "ppo logs through accelerate, whose trackers are" if accelerate else "choose from"
        raise StackLlamaError(f"--report-to: unknown tracker(s) {', '.join(unknown)}; {through} "
                              f"{', '.join(known)} (comma-separated), all or none")


def run_name(name: str | None, output: str | Path) -> str:
    return name or Path(output).resolve().name


def transformers_report_to(value: str) -> list[str]:
    """TrainingArguments.report_to, after checking that each tracker's package is installed."""
    names = parse_report_to(value)
    if not names:
        return []
    from transformers.integrations import get_available_reporting_integrations

    available = get_available_reporting_integrations()
    if names == "all":
        return list(available)
    _require_installed(names, available)
    return names


def point_local_trackers(trainer, output: Path) -> None:
    """The Trainer's tensorboard events go to OUTPUT/runs/<run name> (its default: a dated folder beside the
    checkpoints), unless TENSORBOARD_LOGGING_DIR says otherwise."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = str(output / RUNS_DIRNAME / trainer.args.run_name)


def accelerate_trackers(value: str, name: str | None, output: Path, config: dict[str, Any]):
    """(log_with for `Accelerator`, keyword arguments for `init_trackers`); (None, None) for no tracker."""
    names = parse_report_to(value)
    if not names:
        return None, None
    from accelerate.tracking import TensorBoardTracker, get_available_trackers

    available = [str(t) for t in get_available_trackers()]
    names = available if names == "all" else names
    _require_installed(names, available)
    run = run_name(name, output)
    log_with = [TensorBoardTracker(run, output / RUNS_DIRNAME) if n == "tensorboard" else n for n in names]
    init_kwargs = {"wandb": {"name": run}, "trackio": {"name": run}, "swanlab": {"experiment_name": run},
                   "mlflow": {"run_name": run}, "clearml": {"task_name": run}}
    return log_with, {"project_name": PROJECT, "config": hparams(config),
                      "init_kwargs": {n: kw for n, kw in init_kwargs.items() if n in names}}


def hparams(config: dict[str, Any]) -> dict[str, Any]:
    """A config as trackers take it (tensorboard's hparams: numbers, strings and booleans only)."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.items() if v is not None}


def _require_installed(names: list[str], available: list[str]) -> None:
    missing = [n for n in names if n not in available]
    if missing:
        raise StackLlamaError(f"--report-to {','.join(missing)}: not installed (installed trackers: "
                              f"{', '.join(available) or 'none'}); pip install the tracker's package")
