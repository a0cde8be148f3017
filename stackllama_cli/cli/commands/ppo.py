"""`stackllama ppo`: RLHF with PPO against a reward model, KL-penalised towards the SFT model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from stackllama_cli.cli import options as o
from stackllama_cli.cli.build import lora_rows, model_rows, run_rows, stage_command
from stackllama_cli.stages.ppo.config import PpoConfig as C

COMMAND = dict(
    name="ppo",
    help="RLHF with PPO: sample answers, score them with the reward model, update a LoRA policy with a "
    "KL penalty to the SFT model (adaptive with --kl-target).",
    epilog="""[bold]Examples[/]

  [cyan]stackllama ppo --model runs/sft --reward-model runs/reward --data runs/demo/data --steps 8 --batch-size 8[/]

  [cyan]stackllama ppo -m runs/sft-merged --reward-model runs/rm-merged --data data/ --gpus 8 --kl-target 6[/]

  [cyan]stackllama ppo ... --output runs/ppo --resume[/]       continue exactly where a run stopped

Only the tokens the policy sampled (up to and including EOS) carry KL, reward and loss; EOS is never banned.
Responses are sampled from the policy itself: nothing in the model's generation_config (repetition penalty,
minimum length, banned tokens) applies, and log-probs are taken at --temperature. Dropout (the model's and
--lora-dropout) is off in every forward pass, so the update sees the distribution the responses came from.

Output: a LoRA adapter (use with merge/generate), value_head.safetensors, metrics.jsonl, samples.jsonl, ppo.png.""",
)

PPO, KL, GEN, REWARD = "PPO", "KL control", "Generation", "Reward"


def _row(name: str, type_: Any, help: str = "", panel: str = PPO, flag: str | None = None) -> tuple:
    """An option row named like the PpoConfig field, its default taken from there."""
    option = typer.Option(flag or "--" + name.replace("_", "-"), help=help, rich_help_panel=panel)
    return name, Annotated[type_, option], getattr(C, name)


command = stage_command(C, "ppo", "stackllama_cli.stages.ppo.loop", [
    ("model", Annotated[str, typer.Option("--model", "-m", help="SFT model: merged dir, or an SFT adapter dir.",
                                          rich_help_panel=o.MODEL_PANEL)], C.model),
    ("reward_model", Annotated[str, typer.Option("--reward-model", "-r", help="train-rm output (adapter or merged).",
                                                 rich_help_panel=o.MODEL_PANEL)], C.reward_model),
    ("prompt_format", o.PromptFormat, C.prompt_format),
    ("data", o.Data, Path(C.data)), *o.DATA_OPTIONS,
    ("output", o.OutputDir, Path(C.output)),
    _row("steps", int, "PPO steps (each: generate, score, optimise)."),
    _row("batch_size", int, "Prompts per step per process; a multiple of --mini-batch-size x --grad-accum."),
    _row("mini_batch_size", int, "Samples per forward/backward."),
    _row("grad_accum", int, "Mini-batches per optimizer step (windows never span PPO epochs)."),
    _row("ppo_epochs", int, "Optimisation passes over each batch."),
    _row("learning_rate", float, "Adam learning rate."),
    _row("gamma", float, "Discount."),
    _row("lam", float, "GAE lambda."),
    _row("cliprange", float, "Policy ratio clip."),
    _row("cliprange_value", float, "Value clip."),
    _row("vf_coef", float, "Value loss coefficient."),
    _row("max_grad_norm", float, "Gradient clipping norm."),
    _row("whiten_advantages", bool, "Standardise advantages per batch.",
         flag="--whiten-advantages/--no-whiten-advantages"),
    _row("ratio_threshold", float, "Skip a mini-batch whose mean ratio exceeds this."),
    _row("target_kl", float, "Stop PPO epochs at the first mini-batch past 1.5x this KL from the rollout policy."),
    _row("early_stopping", bool, "Use --target-kl.", flag="--early-stopping/--no-early-stopping"),
    _row("value_init", str, "Value head start: random (small, near 0) or reward-model (its score head, rescaled "
         "like the reward; needs the same hidden size)."),
    _row("critic_warmup", int, "First N steps train only the value head."),
    _row("init_kl_coef", float, "Initial beta.", KL),
    _row("adaptive_kl", bool, "Ziegler controller or a fixed beta.", KL, flag="--adaptive-kl/--fixed-kl"),
    _row("kl_target", float, "Target KL for the adaptive controller.", KL),
    _row("kl_horizon", int, "Adaptive controller horizon (samples).", KL),
    _row("kl_estimator", str, "k1, k3 or abs, for the penalty.", KL),
    _row("kl_in_loss", str, "none, k2 or k3: also a KL-to-reference loss term (OpenRLHF); with --init-kl-coef 0 "
         "instead of the penalty in the reward.", KL),
    _row("kl_loss_coef", float, "Weight of the --kl-in-loss term.", KL),
    _row("reward_baseline", float, "Subtracted from the RM score.", REWARD),
    _row("reward_norm", str, "Standardise RM scores: none; stats (train-rm's reward_stats.json); policy (mean/std "
         "of scores of the SFT policy's own responses, measured before step 1).", REWARD),
    _row("reward_norm_batches", int, "Batches of SFT responses scored for --reward-norm policy.", REWARD),
    _row("normalize_reward", bool, "Same as --reward-norm stats.", REWARD),
    _row("missing_eos_penalty", float, "Subtract from the score of a response cut before its EOS (0: off).",
         REWARD),
    _row("reward_clip", float, "Clip rewards to +-this (0: off).", REWARD),
    _row("degenerate_penalty", float, "Subtract from degenerate responses' reward.", REWARD),
    _row("degenerate_patience", int, "Stop after this many mostly-degenerate steps.", REWARD),
    _row("min_new_tokens", int, "Shortest response length drawn per step.", GEN),
    _row("max_new_tokens", int, "Longest response length drawn per step.", GEN),
    _row("top_k", int, "0 = off (sample from the policy itself).", GEN),
    _row("top_p", float, "1.0 = off.", GEN),
    _row("temperature", float, "Sampling temperature.", GEN),
    _row("max_prompt_length", int, "Longer prompts are dropped (counted).", GEN),
    ("gradient_checkpointing", o.GradientCheckpointing, C.gradient_checkpointing),
    ("seed", o.Seed, C.seed),
    *lora_rows(C), *model_rows(C.precision), *o.LAUNCH_OPTIONS,
    _row("save_every", int, "Checkpoint every N steps.", o.OUTPUT_PANEL),
    _row("log_samples", int, "Show and log samples every N steps (0: off).", o.OUTPUT_PANEL),
    ("report_to", o.ReportTo, C.report_to), ("run_name", o.RunName, None),
    *run_rows(),
])
