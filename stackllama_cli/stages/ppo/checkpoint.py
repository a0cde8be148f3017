"""PPO checkpoints: adapter, value head, optimizer and KL controller after a step, written to a temp dir
and renamed, so a kill at any moment leaves the previous checkpoint intact. No RNG state: every step
reseeds from (seed, step, rank) (stages/ppo/batches.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from stackllama_cli.core.files import CHECKPOINTS_DIRNAME, atomic_dir, write_json

VALUE_HEAD = "value_head.safetensors"


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


def save_checkpoint(out: Path, step: int, module, optimizer, kl_ctl, keep: int = 2) -> Path:
    """Adapter, value head, optimizer and KL controller after `step` steps (temp dir + rename)."""
    from safetensors.torch import save_file

    final = out / CHECKPOINTS_DIRNAME / f"step-{step}"
    with atomic_dir(final, overwrite=True, lock=False) as tmp:
        module.policy.save_pretrained(tmp / "adapter")
        save_file({k: v.detach().cpu().contiguous() for k, v in module.value_head.state_dict().items()},
                  tmp / VALUE_HEAD)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        write_json(tmp / "state.json", {"step": step, "kl_controller": kl_ctl.state_dict()})
    for old in checkpoint_dirs(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(ckpt: Path, module, optimizer, kl_ctl) -> int:
    """Restore everything `save_checkpoint` wrote; returns the number of steps already done."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(module.policy, load_file(str(ckpt / "adapter" / "adapter_model.safetensors")))
    module.value_head.load_state_dict(load_file(str(ckpt / VALUE_HEAD)))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    state = json.loads((ckpt / "state.json").read_text())
    kl_ctl.load_state_dict(state["kl_controller"])
    return int(state["step"])
