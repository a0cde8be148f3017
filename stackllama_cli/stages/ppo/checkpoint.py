"""PPO checkpoints: adapter, value head, optimizer, KL controller and what the loop carries from step to step,
after a step, written to a temp dir and renamed, so a kill at any moment leaves the previous checkpoint
intact. No RNG state: every step reseeds from (seed, step, rank) (stages/ppo/batches.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch

from stackllama_cli.core.files import CHECKPOINTS_DIRNAME, atomic_dir, write_json
from stackllama_cli.stages.ppo.policy import save_adapter

VALUE_HEAD = "value_head.safetensors"


@dataclasses.dataclass
class LoopState:
    """What one step hands the next besides weights; in state.json, so a resumed run decides as the
    uninterrupted one would (the stop rule, the reward-spike flag, the reward's scale)."""

    reward_history: list[float] = dataclasses.field(default_factory=list)  # reward_mean of every step so far
    last_kl: float | None = None  # for the spike flag: is KL rising?
    degenerate_streak: int = 0  # consecutive mostly-degenerate steps, for --degenerate-patience
    reward_stats: dict | None = None  # mean/std the scores are normalised with (--reward-norm), or None

    @classmethod
    def from_dict(cls, data: dict) -> LoopState:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def checkpoint_dirs(out: Path) -> list[Path]:
    root = out / CHECKPOINTS_DIRNAME
    if not root.is_dir():
        return []
    dirs = [d for d in root.iterdir() if d.name.startswith("step-") and (d / "state.json").is_file()]
    return sorted(dirs, key=lambda d: int(d.name.split("-")[1]))


def last_checkpoint(out: Path) -> Path | None:
    """The newest checkpoint (each is renamed into place whole, so every listed one is complete)."""
    dirs = checkpoint_dirs(out)
    return dirs[-1] if dirs else None


def save_checkpoint(out: Path, step: int, module, optimizer, kl_ctl, loop: LoopState, keep: int = 2) -> Path:
    """Adapter, value head, optimizer, KL controller and loop state after `step` steps (temp dir + rename)."""
    from safetensors.torch import save_file

    final = out / CHECKPOINTS_DIRNAME / f"step-{step}"
    with atomic_dir(final, overwrite=True, lock=False) as tmp:
        save_adapter(module.policy, tmp / "adapter")
        save_file({k: v.detach().cpu().contiguous() for k, v in module.value_head.state_dict().items()},
                  tmp / VALUE_HEAD)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        write_json(tmp / "state.json", {"step": step, "kl_controller": kl_ctl.state_dict(),
                                        "loop": dataclasses.asdict(loop)})
    for old in checkpoint_dirs(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(ckpt: Path, module, optimizer, kl_ctl) -> tuple[int, LoopState]:
    """Restore everything `save_checkpoint` wrote; returns the number of steps already done and the loop state."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(module.policy, load_file(str(ckpt / "adapter" / "adapter_model.safetensors")))
    module.value_head.load_state_dict(load_file(str(ckpt / VALUE_HEAD)))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    state = json.loads((ckpt / "state.json").read_text())
    kl_ctl.load_state_dict(state["kl_controller"])
    return int(state["step"]), LoopState.from_dict(state.get("loop", {}))
