"""`stackllama ppo`: RLHF with PPO against a reward model, KL-penalised towards the SFT model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stackllama_cli import options as o
from stackllama_cli.training.ppo_config import PpoConfig as C

COMMAND = dict(
    name="ppo",
    help="RLHF with PPO: sample answers, score them with the reward model, update a LoRA policy with a "
    "KL penalty to the SFT model (adaptive with --kl-target).",
    epilog="""[bold]Examples[/]

  [cyan]stackllama ppo --model runs/sft --reward-model runs/reward --data runs/demo/data --steps 8 --batch-size 8[/]

  [cyan]stackllama ppo -m runs/sft-merged --reward-model runs/rm-merged --data data/ --gpus 8 --kl-target 6[/]

  [cyan]stackllama ppo ... --output runs/ppo --resume[/]       continue exactly where a run stopped

Only the tokens the policy sampled (up to and including EOS) carry KL, reward and loss; EOS is never banned.

Output: a LoRA adapter (use with merge/generate), value_head.safetensors, metrics.jsonl, samples.jsonl, ppo.png.""",
)

PPO, KL, GEN, REWARD = "PPO", "KL control", "Generation", "Reward"


def _opt(flag: str, help: str = "", panel: str = PPO):
    return typer.Option(flag, help=help, rich_help_panel=panel)


@o.with_launch_options
def command(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="SFT model: merged dir, or an SFT adapter dir.",
                                       rich_help_panel=o.MODEL_PANEL)] = C.model,
    reward_model: Annotated[str, typer.Option("--reward-model", "-r", help="train-rm output (adapter or merged).",
                                              rich_help_panel=o.MODEL_PANEL)] = C.reward_model,
    data: o.Data = Path(C.data),
    output: o.OutputDir = Path(C.output),
    steps: Annotated[int, _opt("--steps", "PPO steps (each: generate, score, optimise).")] = C.steps,
    batch_size: Annotated[int, _opt("--batch-size", "Prompts per step per process.")] = C.batch_size,
    mini_batch_size: Annotated[int, _opt("--mini-batch-size", "Samples per forward/backward.")] = C.mini_batch_size,
    grad_accum: Annotated[int, _opt("--grad-accum", "Mini-batches per optimizer step.")] = C.grad_accum,
    ppo_epochs: Annotated[int, _opt("--ppo-epochs", "Optimisation passes over each batch.")] = C.ppo_epochs,
    learning_rate: Annotated[float, _opt("--learning-rate", "Adam learning rate.")] = C.learning_rate,
    gamma: Annotated[float, _opt("--gamma")] = C.gamma,
    lam: Annotated[float, _opt("--lam", "GAE lambda.")] = C.lam,
    cliprange: Annotated[float, _opt("--cliprange")] = C.cliprange,
    cliprange_value: Annotated[float, _opt("--cliprange-value")] = C.cliprange_value,
    vf_coef: Annotated[float, _opt("--vf-coef", "Value loss coefficient.")] = C.vf_coef,
    max_grad_norm: Annotated[float, _opt("--max-grad-norm")] = C.max_grad_norm,
    whiten_advantages: Annotated[bool, _opt("--whiten-advantages/--no-whiten-advantages")] = C.whiten_advantages,
    ratio_threshold: Annotated[float, _opt("--ratio-threshold", "Skip a mini-batch whose mean ratio exceeds this.")
                               ] = C.ratio_threshold,
    target_kl: Annotated[float, _opt("--target-kl", "Stop PPO epochs when the policy drifts > 1.5x this.")
                         ] = C.target_kl,
    early_stopping: Annotated[bool, _opt("--early-stopping/--no-early-stopping")] = C.early_stopping,
    init_kl_coef: Annotated[float, _opt("--init-kl-coef", "Initial beta.", KL)] = C.init_kl_coef,
    adaptive_kl: Annotated[bool, _opt("--adaptive-kl/--fixed-kl", "Ziegler controller or a fixed beta.", KL)
                           ] = C.adaptive_kl,
    kl_target: Annotated[float, _opt("--kl-target", "Target KL for the adaptive controller.", KL)] = C.kl_target,
    kl_horizon: Annotated[int, _opt("--kl-horizon", help="Adaptive controller horizon (samples).", panel=KL)
                          ] = C.kl_horizon,
    kl_estimator: Annotated[str, _opt("--kl-estimator", "k1, k3 or abs, for the penalty.", KL)] = C.kl_estimator,
    reward_baseline: Annotated[float, _opt("--reward-baseline", "Subtracted from the RM score.", REWARD)
                               ] = C.reward_baseline,
    normalize_reward: Annotated[bool, _opt("--normalize-reward", "Standardise with train-rm's reward_stats.json.",
                                           REWARD)] = C.normalize_reward,
    reward_clip: Annotated[float, _opt("--reward-clip", "Clip rewards to +-this (0: off).", REWARD)] = C.reward_clip,
    degenerate_penalty: Annotated[float, _opt("--degenerate-penalty", "Subtract from degenerate responses' reward.",
                                              REWARD)] = C.degenerate_penalty,
    degenerate_patience: Annotated[int, _opt("--degenerate-patience", "Stop after this many mostly-degenerate "
                                             "steps.", REWARD)] = C.degenerate_patience,
    min_new_tokens: Annotated[int, _opt("--min-new-tokens", "Shortest response length drawn per step.", GEN)
                              ] = C.min_new_tokens,
    max_new_tokens: Annotated[int, _opt("--max-new-tokens", "Longest response length drawn per step.", GEN)
                              ] = C.max_new_tokens,
    top_k: Annotated[int, _opt("--top-k", "0 = off (sample from the policy itself).", GEN)] = C.top_k,
    top_p: Annotated[float, _opt("--top-p", "1.0 = off.", GEN)] = C.top_p,
    temperature: Annotated[float, _opt("--temperature", panel=GEN)] = C.temperature,
    max_prompt_length: Annotated[int, _opt("--max-prompt-length", "Longer prompts are dropped (counted).", GEN)
                                 ] = C.max_prompt_length,
    lora_r: o.LoraR = C.lora_r,
    lora_alpha: o.LoraAlpha = C.lora_alpha,
    lora_dropout: o.LoraDropout = C.lora_dropout,
    load_in_8bit: o.LoadIn8bit = False,
    load_in_4bit: o.LoadIn4bit = False,
    precision: o.Precision = C.precision,
    trust_remote_code: o.TrustRemoteCode = False,
    save_every: Annotated[int, typer.Option("--save-every", help="Checkpoint every N steps.",
                                            rich_help_panel=o.OUTPUT_PANEL)] = C.save_every,
    log_samples: Annotated[int, typer.Option("--log-samples", help="Show and log samples every N steps (0: off).",
                                             rich_help_panel=o.OUTPUT_PANEL)] = C.log_samples,
    seed: o.Seed = C.seed,
    resume: o.Resume = False,
    overwrite: o.Overwrite = False,
    json_out: o.Json = False,
    config: o.ConfigFile = None,
    launch: dict | None = None,
) -> None:
    from stackllama_cli.config import config_from_cli
    from stackllama_cli.console import print_json
    from stackllama_cli.training.ppo import run

    values = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()
              if k not in ("ctx", "config", "json_out", "launch")}
    o.launch_from_params(launch)  # several processes: re-exec under accelerate, exit with its code
    summary = run(config_from_cli(C, ctx, values, config, "ppo"))
    if json_out:
        print_json(summary)
