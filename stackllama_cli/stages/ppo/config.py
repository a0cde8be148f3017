"""PPO stage configuration (torch-free, so the CLI can build it for --help and validation)."""

from __future__ import annotations

import dataclasses

from stackllama_cli.core.config import check_exclusive, check_precision, require
from stackllama_cli.core.errors import UsageError
from stackllama_cli.stages.common import check_model_options, check_report_to


@dataclasses.dataclass
class PpoConfig:
    model: str = "runs/sft"  # the SFT model: merged dir, or base + SFT adapter dir
    reward_model: str = "runs/reward"
    data: str = "runs/demo/data"
    data_dir: str | None = None  # data options as in sft (data/sources.py)
    split: str | None = None
    columns: str = ""
    output: str = "runs/ppo"
    steps: int = 100
    batch_size: int = 32  # prompts per PPO step per process
    mini_batch_size: int = 4  # samples per forward/backward (batched: faster than the original's 1)
    grad_accum: int = 1
    ppo_epochs: int = 4
    learning_rate: float = 1.41e-5
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    max_grad_norm: float = 1.0
    whiten_advantages: bool = True
    init_kl_coef: float = 0.2
    adaptive_kl: bool = True
    kl_target: float = 6.0
    kl_horizon: int = 10000
    kl_estimator: str = "k1"
    kl_in_loss: str = "none"  # none, k2 or k3: KL to the reference as a loss term as well (OpenRLHF)
    kl_loss_coef: float = 0.01
    target_kl: float = 0.1  # early stop of the PPO epochs at 1.5 x this (approx. KL to the rollout policy)
    early_stopping: bool = True
    ratio_threshold: float = 10.0
    reward_baseline: float = 0.0
    reward_norm: str = "none"  # none; stats: train-rm's reward_stats.json; policy: the SFT policy's own samples
    reward_norm_batches: int = 1  # batches of SFT rollouts scored for --reward-norm policy
    normalize_reward: bool = False  # the older spelling of --reward-norm stats
    missing_eos_penalty: float = 0.0  # subtracted from the score of a response cut before its EOS
    reward_clip: float = 0.0  # 0: off
    degenerate_penalty: float = 0.0
    degenerate_patience: int = 3
    degenerate_stop_rate: float = 0.5
    value_init: str = "random"  # random (small, near 0) or reward-model (its score head)
    critic_warmup: int = 0  # first steps that train only the value head
    min_new_tokens: int = 32
    max_new_tokens: int = 128
    top_k: int = 0
    top_p: float = 1.0
    temperature: float = 1.0
    max_prompt_length: int = 512
    rm_max_length: int = 1024
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"
    gradient_checkpointing: bool = False
    report_to: str = "none"
    run_name: str | None = None
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    precision: str = "auto"
    trust_remote_code: bool = False
    attn_implementation: str | None = None  # sdpa, eager, flash_attention_2; None: the library's choice
    prompt_format: str | None = None  # recipe or chat; None: the SFT and reward models' recorded format
    save_every: int = 50
    log_samples: int = 10
    seed: int = 0
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        require(self.steps >= 1, "--steps must be at least 1")
        require(self.batch_size >= 1 and self.mini_batch_size >= 1 and self.grad_accum >= 1,
                "--batch-size, --mini-batch-size and --grad-accum must be at least 1")
        if self.batch_size % (self.mini_batch_size * self.grad_accum):
            # an accumulation window must not span two PPO epochs nor be left half-filled at the end
            raise UsageError(f"--batch-size ({self.batch_size}) must be a multiple of --mini-batch-size x "
                             f"--grad-accum ({self.mini_batch_size} x {self.grad_accum})")
        require(self.ppo_epochs >= 1, "--ppo-epochs must be at least 1")
        require(self.learning_rate > 0, "--learning-rate must be positive")
        require(0 < self.gamma <= 1 and 0 <= self.lam <= 1, "--gamma must be in (0, 1] and --lam in [0, 1]")
        require(self.kl_estimator in ("k1", "k3", "abs"), "--kl-estimator must be k1, k3 or abs")
        require(self.kl_in_loss in ("none", "k2", "k3"), "--kl-in-loss must be none, k2 or k3")
        require(self.kl_loss_coef >= 0, "--kl-loss-coef must be non-negative")
        require(self.reward_norm in ("none", "stats", "policy"), "--reward-norm must be none, stats or policy")
        if self.normalize_reward:
            if self.reward_norm == "policy":
                raise UsageError("--normalize-reward means --reward-norm stats; choose one of them")
            self.reward_norm = "stats"
        require(self.reward_norm_batches >= 1, "--reward-norm-batches must be at least 1")
        require(self.missing_eos_penalty >= 0 and self.degenerate_penalty >= 0,
                "--missing-eos-penalty and --degenerate-penalty must be non-negative")
        require(self.value_init in ("random", "reward-model"), "--value-init must be random or reward-model")
        require(self.critic_warmup >= 0, "--critic-warmup must be non-negative")
        if self.critic_warmup >= self.steps:
            raise UsageError(f"--critic-warmup ({self.critic_warmup}) must be below --steps ({self.steps}): "
                             "the policy would never train")
        require(self.kl_target > 0 and self.kl_horizon > 0, "--kl-target and --kl-horizon must be positive")
        require(self.init_kl_coef >= 0, "--init-kl-coef must be non-negative")
        require(1 <= self.min_new_tokens <= self.max_new_tokens,
                "need 1 <= --min-new-tokens <= --max-new-tokens")
        require(self.top_k >= 0 and 0 < self.top_p <= 1 and self.temperature > 0,
                "--top-k >= 0, 0 < --top-p <= 1 and --temperature > 0")
        require(self.max_prompt_length >= 4, "--max-prompt-length must be at least 4")
        require(self.save_every >= 1 and self.log_samples >= 0, "--save-every >= 1 and --log-samples >= 0")
        check_report_to(self.report_to, accelerate=True)
        check_model_options(self)
        check_exclusive(self.load_in_8bit, self.load_in_4bit, self.resume, self.overwrite)
        check_precision(self.precision)
        require(self.ratio_threshold > 1, "--ratio-threshold must be above 1")
