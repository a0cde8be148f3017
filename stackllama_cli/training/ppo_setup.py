"""PPO set-up and persistence: prompts, models, checkpoints (the loop lives in training/ppo.py)."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path

import torch

from stackllama_cli.data.datasets import load_split
from stackllama_cli.data.prompts import format_prompt
from stackllama_cli.errors import StackLlamaError
from stackllama_cli.files import write_json
from stackllama_cli.training.ppo_config import PpoConfig

CHECKPOINTS = "checkpoints"
VALUE_HEAD = "value_head.safetensors"


def load_prompts(cfg: PpoConfig, tokenizer) -> tuple[list[str], int]:
    """Distinct questions of the `rl` split whose prompt fits --max-prompt-length tokens; (questions, dropped)."""
    ds = load_split(cfg.data, "rl", columns=("question",))
    questions = list(dict.fromkeys(ds["question"]))
    lengths = [len(ids) for ids in tokenizer([format_prompt(q) for q in questions])["input_ids"]]
    kept = [q for q, n in zip(questions, lengths) if n <= cfg.max_prompt_length]
    if not kept:
        raise StackLlamaError(f"all {len(questions)} prompts are longer than --max-prompt-length "
                              f"{cfg.max_prompt_length} tokens; raise it")
    return kept, len(questions) - len(kept)


def prompt_batch(questions: list[str], step: int, batch_size: int, world: int, rank: int, seed: int) -> list[str]:
    """This process's prompts for `step`: a seeded shuffle per pass over the data, sliced by rank.

    Stateless (a function of the step), so resuming needs only the step number.
    """
    n = len(questions)
    out = []
    for j in range(batch_size):
        i = (step * world + rank) * batch_size + j
        epoch, pos = divmod(i, n)
        order = list(range(n))
        random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
        out.append(questions[order[pos]])
    return out


def response_length(cfg: PpoConfig, step: int) -> int:
    """Response length for a step, drawn uniformly from min..max new tokens (same on every rank)."""
    return random.Random(f"{cfg.seed}:length:{step}").randint(cfg.min_new_tokens, cfg.max_new_tokens)


def step_seed(cfg: PpoConfig, step: int, rank: int) -> int:
    return (cfg.seed * 1_000_003 + step * 7919 + rank) % (2**31)


def build_policy(cfg: PpoConfig, spec):
    """SFT weights (adapters merged) + a fresh trainable LoRA adapter, wrapped with a value head."""
    from peft import LoraConfig, get_peft_model

    from stackllama_cli.models import load_causal_lm
    from stackllama_cli.rl.policy import PolicyWithValueHead

    inner = spec.merged_adapters + ((spec.adapter,) if spec.adapter else ())
    base_spec = dataclasses.replace(spec, adapter=None, merged_adapters=inner)
    lm = load_causal_lm(base_spec, precision=cfg.precision, load_in_8bit=cfg.load_in_8bit,
                        load_in_4bit=cfg.load_in_4bit, trust_remote_code=cfg.trust_remote_code)
    if cfg.load_in_8bit or cfg.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        lm = prepare_model_for_kbit_training(lm, use_gradient_checkpointing=False)
    torch.manual_seed(cfg.seed)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
                      task_type="CAUSAL_LM", target_modules="all-linear")
    policy = get_peft_model(lm, lora)
    return PolicyWithValueHead(policy, lm.config.get_text_config().hidden_size, seed=cfg.seed)


def load_reward(cfg: PpoConfig, device):
    from stackllama_cli.models import load_reward_model, load_reward_stats, load_tokenizer, resolve_model

    spec = resolve_model(cfg.reward_model)
    tokenizer = load_tokenizer(spec, trust_remote_code=cfg.trust_remote_code)
    model = load_reward_model(spec, precision=cfg.precision, trust_remote_code=cfg.trust_remote_code,
                              pad_token_id=tokenizer.pad_token_id)
    stats = load_reward_stats(spec)
    if cfg.normalize_reward and not (stats and stats.get("std")):
        raise StackLlamaError(f"--normalize-reward needs reward_stats.json beside {cfg.reward_model} "
                              "(written by train-rm)")
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device), tokenizer, stats


def shape_scores(raw: torch.Tensor, cfg: PpoConfig, stats: dict | None, degenerate: torch.Tensor) -> torch.Tensor:
    """RM score -> PPO reward: minus baseline, optional normalisation and clipping, degenerate penalty."""
    scores = raw - cfg.reward_baseline
    if cfg.normalize_reward and stats:
        scores = (raw - stats["mean"]) / max(stats["std"], 1e-6) - cfg.reward_baseline
    if cfg.reward_clip > 0:
        scores = scores.clamp(-cfg.reward_clip, cfg.reward_clip)
    return scores - cfg.degenerate_penalty * degenerate.float()


def checkpoint_dirs(out: Path) -> list[Path]:
    root = out / CHECKPOINTS
    if not root.is_dir():
        return []
    dirs = [d for d in root.iterdir() if d.name.startswith("step-") and (d / "state.json").is_file()]
    return sorted(dirs, key=lambda d: int(d.name.split("-")[1]))


def save_checkpoint(out: Path, step: int, module, optimizer, kl_ctl, keep: int = 2) -> Path:
    """Adapter, value head, optimizer, KL controller and RNG state after `step` steps (temp dir + rename)."""
    from safetensors.torch import save_file

    final = out / CHECKPOINTS / f"step-{step}"
    tmp = out / CHECKPOINTS / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    module.policy.save_pretrained(tmp / "adapter")
    save_file({k: v.detach().cpu().contiguous() for k, v in module.value_head.state_dict().items()}, tmp / VALUE_HEAD)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({"torch": torch.get_rng_state(), "python": random.getstate()[1]}, tmp / "rng.pt")
    write_json(tmp / "state.json", {"step": step, "kl_controller": kl_ctl.state_dict()})
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
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
    torch.set_rng_state(torch.load(ckpt / "rng.pt", weights_only=True)["torch"])
    return int(state["step"])


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop records past the checkpoint being resumed, so the log reads like one uninterrupted run."""
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= max_step]
        path.write_text("".join(line + "\n" for line in lines))
