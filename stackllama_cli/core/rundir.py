"""A training run's output directory: the rules that make sure a run is never lost.

- One writer: the output's lock (core/lock.py) is held for the whole run.
- An output that is also an input (the model, the data) is a usage error.
- `--overwrite` never deletes the previous run up front: the new run writes into a staging sibling
  (`.NAME.overwrite`) that replaces the old output only when the run succeeds.
- `--resume` continues from the newest *complete* checkpoint (`find_checkpoint`) and refuses options
  that would change the run's meaning (`check_resume_config`).
- A run that fails or is interrupted before its first checkpoint leaves nothing behind; one that
  reached a checkpoint keeps it, and the interruption message says how to resume.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from stackllama_cli.core.config import CONFIG_FILENAME, to_dict
from stackllama_cli.core.errors import StackLlamaError, UsageError
from stackllama_cli.core.files import refuse_cwd, replace_dir
from stackllama_cli.core.lock import output_lock
from stackllama_cli.dist.ranks import is_main_process, wait_for_everyone

# Options that may differ between a run and its --resume: they steer the run (or say where it now lives),
# not what it computes.
RESUMABLE_CHANGES = frozenset({"output", "resume", "overwrite", "steps", "max_steps", "epochs", "save_steps",
                               "save_every", "logging_steps", "eval_steps", "log_samples", "report_to",
                               "max_minutes"})
MODEL_FILES = ("adapter_config.json", "config.json")

_state: dict[str, str | None] = {"kept": None}
_current: dict[str, Any] = {}  # the run this process is writing, for abort_run


@dataclass
class RunDir:
    final: Path  # where the run's result ends up
    work: Path  # where it is written now: `final`, or the staging sibling under --overwrite
    resumed: bool = False

    @property
    def staging(self) -> bool:
        return self.work != self.final


def interrupted_note() -> str | None:
    """What an interrupted run kept, for the one line `cli/app.py` prints on Ctrl-C."""
    return _state["kept"]


def check_not_input(output: Path, inputs: Iterable[str | None]) -> None:
    """An output that is, contains, or lies above an input, or the current directory, is a usage error."""
    refuse_cwd(output)
    out = output.expanduser().resolve()
    for value in filter(None, inputs):
        path = Path(value).expanduser()
        if not path.exists():
            continue
        path = path.resolve()
        if path == out or out in path.parents:
            raise UsageError(f"--output {output} holds an input of this run ({value}); choose another --output")


def is_unfinished_debris(out: Path, find_checkpoint: Callable[[Path], Any]) -> bool:
    """A folder a killed run left before its first checkpoint: its config, no checkpoint, no model."""
    return ((out / CONFIG_FILENAME).is_file() and find_checkpoint(out) is None
            and not any((out / name).is_file() for name in MODEL_FILES))


def _start(out: Path, resume: bool, overwrite: bool, find_checkpoint: Callable[[Path], Any]) -> RunDir:
    if out.exists() and not out.is_dir():
        raise StackLlamaError(f"output path {out} exists and is not a directory")
    has_content = out.is_dir() and any(out.iterdir())
    if resume:
        if find_checkpoint(out) is None:
            raise StackLlamaError(f"nothing to resume: {out} has no complete checkpoint; drop --resume to start "
                                  "afresh")
        return RunDir(out, out, resumed=True)
    debris = has_content and is_unfinished_debris(out, find_checkpoint)
    if has_content and not overwrite and not debris:
        raise StackLlamaError(f"{out} already holds a run; pass --resume to continue it or --overwrite to replace it "
                              "(the old run is kept until the new one succeeds)")
    work = out.parent / f".{out.name}.overwrite" if has_content and not debris else out
    # Every rank has judged the directory as the user left it; only then may rank 0 change it.
    wait_for_everyone()
    if is_main_process():
        if debris:
            shutil.rmtree(out)  # what a killed run left before its first checkpoint: nothing to resume
        if work != out:
            shutil.rmtree(work, ignore_errors=True)  # a staging folder of an earlier, interrupted --overwrite
        work.mkdir(parents=True, exist_ok=True)
    wait_for_everyone()
    work.mkdir(parents=True, exist_ok=True)  # other machines of a multi-node run may not share the disk
    return RunDir(out, work)


def _after_failure(run: RunDir, find_checkpoint: Callable[[Path], Any]) -> None:
    if not is_main_process():
        return
    if run.staging:
        shutil.rmtree(run.work, ignore_errors=True)
        _state["kept"] = f"nothing new was kept; the previous run in {run.final} is untouched"
        return
    checkpoint = find_checkpoint(run.work)
    if checkpoint is not None:
        _state["kept"] = f"checkpoint {checkpoint} is kept: continue with --resume"
    elif not run.resumed:
        shutil.rmtree(run.work, ignore_errors=True)
        _state["kept"] = f"it never reached a checkpoint, so {run.final} was removed"


def _finish(run: RunDir) -> None:
    wait_for_everyone()
    if run.staging and is_main_process():
        replace_dir(run.work, run.final)
    wait_for_everyone()


def open_run(output: str | Path, *, resume: bool, overwrite: bool, find_checkpoint: Callable[[Path], Any],
             inputs: Iterable[str | None] = ()) -> RunDir:
    """Start a training run's output: lock it, apply the rules above, and return where to write
    (`run.work`). End it with `finish_run` on success; `cli/app.py:main` calls `abort_run` on any error or
    interrupt, which applies the failure rules."""
    final = Path(output)
    check_not_input(final, inputs)
    lock = output_lock(final)
    lock.__enter__()
    try:
        run = _start(final, resume, overwrite, find_checkpoint)
    except BaseException:
        lock.__exit__(None, None, None)
        raise
    _state.update(kept=None)
    _current.update(run=run, lock=lock, find_checkpoint=find_checkpoint)
    return run


def open_stage_run(cfg: Any, find_checkpoint: Callable[[Path], Any], inputs: Iterable[str | None]) -> RunDir:
    """`open_run` for a stage config (output, resume, overwrite), with its --resume options checked."""
    run = open_run(cfg.output, resume=cfg.resume, overwrite=cfg.overwrite, find_checkpoint=find_checkpoint,
                   inputs=inputs)
    check_resume_config(cfg, run)
    return run


def finish_run(run: RunDir) -> Path:
    """The run succeeded: staging replaces the old output; the lock is released. Returns the final path."""
    _finish(run)
    _release()
    return run.final


def abort_run() -> None:
    """The run failed or was interrupted (called once, by the error handler in cli/app.py)."""
    run = _current.get("run")
    if run is None:
        return
    try:
        _after_failure(run, _current["find_checkpoint"])
    finally:
        _release()


def _release() -> None:
    lock = _current.pop("lock", None)
    _current.clear()
    if lock is not None:
        lock.__exit__(None, None, None)


def check_resume_config(cfg: Any, run: RunDir) -> None:
    """Refuse a --resume whose options would change what the run computes (seed, batch size, data...)."""
    if not run.resumed:
        return
    path = run.work / CONFIG_FILENAME
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError):
        return  # nothing to compare against (a run from an older version)
    now = to_dict(cfg)
    changed = [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in sorted(now)  # None: not given, the run's own holds
               if k in saved and k not in RESUMABLE_CHANGES and now[k] is not None and saved[k] != now[k]]
    if changed:
        raise UsageError(f"--resume with options that change the run: {'; '.join(changed)}; resume with the "
                         "run's own options, or start a new run")
