"""REINFORCE leave-one-out against our reward model, on TRL's RLOOTrainer.

Steps: 1 the rl split's prompts (as ppo: stages/ppo/batches.py) -> 2 reward model (stages/ppo/reward.py)
-> 3 the SFT weights with every adapter merged; TRL adds a fresh LoRA adapter and the KL reference is
the same weights with the adapter disabled -> 4 train: per step, k answers per prompt are sampled and
scored, each answer's advantage is its reward minus the mean of its k - 1 siblings' -> 5 publish.

The reward is a callable, not the model itself: TRL would score `prompt + completion` with no EOS and no
stripping, while ours reads exactly the text train-rm trained on (`format_example`, EOS last, kept when
cut: `stages/ppo/reward.py:score`), flags degenerate answers (`stages/ppo/degenerate.py`) and shapes
the score as ppo does (`stages/ppo/reward.py:shape_scores`: normalisation, clipping, degenerate penalty).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import ClassVar

from stackllama_cli.core.config import require, save_config
from stackllama_cli.core.console import info, summary_table
from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.core.files import publish, write_json
from stackllama_cli.core.metrics import METRICS_FILENAME, plot_curves, read_jsonl, truncate_jsonl
from stackllama_cli.core.rundir import finish_run, open_stage_run
from stackllama_cli.dist.ranks import describe_batch, is_main_process
from stackllama_cli.stages.common import (
    TrainCommon,
    checkpoint_step,
    install_callbacks,
    last_checkpoint,
    lora_config,
    prepare_resume,
    training_args_kwargs,
)

SUMMARY_FILENAME = "rloo_summary.json"
SAMPLES_FILENAME = "samples.jsonl"


@dataclasses.dataclass
class RlooConfig(TrainCommon):
    output: str = "runs/rloo"
    model: str = "runs/sft"
    reward_model: str = "runs/reward"
    num_generations: int = 4  # k answers per prompt
    batch_size: int = 8  # answers per process per step (batch_size / k prompts)
    beta: float = 0.05  # KL coefficient: reward - beta * sum over answer tokens of log(pi / pi_ref)
    learning_rate: float = 1.41e-5  # ppo's
    # The importance ratio compares two forward passes of the same weights: dropout would make it noise.
    lora_dropout: float = 0.0
    max_new_tokens: int = 128
    top_k: int = 0  # ppo's sampling: the policy's own distribution
    top_p: float = 1.0
    temperature: float = 1.0
    max_prompt_length: int = 512  # longer prompts are dropped (counted), as in ppo
    rm_max_length: int = 1024
    normalize_reward: bool = False
    reward_clip: float = 0.0
    degenerate_penalty: float = 0.0
    degenerate_patience: int = 3
    degenerate_stop_rate: float = 0.5
    log_samples: int = 10
    # read by stages/ppo/reward.py:shape_scores; the leave-one-out baseline already centres the rewards
    reward_baseline: ClassVar[float] = 0.0
    missing_eos_penalty: ClassVar[float] = 0.0

    @property
    def reward_norm(self) -> str:
        """ppo's name for the choice (stages/ppo/reward.py reads it): train-rm's statistics or none."""
        return "stats" if self.normalize_reward else "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.num_generations >= 2, "--num-generations must be at least 2 (the baseline is the others' mean)")
        require(self.batch_size * self.grad_accum % self.num_generations == 0,
                f"--batch-size x --grad-accum ({self.batch_size * self.grad_accum}) must be a multiple of "
                f"--num-generations ({self.num_generations}): every prompt's answers are sampled together")
        require(self.max_new_tokens >= 1, "--max-new-tokens must be at least 1")
        require(self.top_k >= 0 and 0 < self.top_p <= 1 and self.temperature > 0,
                "--top-k >= 0, 0 < --top-p <= 1 and --temperature > 0")
        require(self.beta >= 0, "--beta must be non-negative")
        require(self.max_prompt_length >= 4 and self.rm_max_length >= 16,
                "--max-prompt-length must be at least 4 and --rm-max-length at least 16")
        require(self.reward_clip >= 0 and self.degenerate_penalty >= 0,
                "--reward-clip and --degenerate-penalty must be non-negative")
        require(self.degenerate_patience >= 1 and 0 <= self.degenerate_stop_rate <= 1,
                "--degenerate-patience must be at least 1 and --degenerate-stop-rate in [0, 1]")
        require(self.log_samples >= 0, "--log-samples must be non-negative")


class RewardModelScorer:
    """A TRL reward function (called with the prompts, completions and dataset columns of a generation batch):
    our reward model's shaped score per answer. Tracks the run of mostly-degenerate batches."""

    __name__ = "reward_model"  # TRL names the logged reward metrics after it

    def __init__(self, cfg: RlooConfig, model, tokenizer, stats: dict | None, samples_path: Path | None):
        from stackllama_cli.core.metrics import MetricsLog

        self.cfg, self.model, self.tokenizer, self.stats = cfg, model, tokenizer, stats
        self.samples = MetricsLog(samples_path)
        self.streak = 0

    def __call__(self, prompts, completions, completion_ids, question, trainer_state=None, log_metric=None,
                 **_columns) -> list[float]:
        import torch

        from stackllama_cli.stages.ppo.degenerate import degenerate_reason
        from stackllama_cli.stages.ppo.reward import score, shape_scores

        raw = score(self.model, self.tokenizer, list(question), list(completions), self.cfg.rm_max_length)
        reasons = [degenerate_reason(text, list(ids)) for text, ids in zip(completions, completion_ids)]
        degenerate = torch.tensor([r is not None for r in reasons], device=raw.device)
        stats = self.stats if self.cfg.reward_norm == "stats" else None
        finished = torch.tensor([bool(ids) and ids[-1] == self.tokenizer.eos_token_id for ids in completion_ids],
                                device=raw.device)  # TRL keeps the EOS in a finished completion's ids
        shaped = shape_scores(raw, self.cfg, stats, degenerate, finished)
        rate = self._global_rate(degenerate)
        self.streak = self.streak + 1 if rate > self.cfg.degenerate_stop_rate else 0
        if log_metric is not None:
            log_metric("rm_score", float(raw.mean()))
            log_metric("degenerate_rate", rate)
        step = (trainer_state.global_step if trainer_state is not None else 0) + 1
        if self.cfg.log_samples and (step == 1 or step % self.cfg.log_samples == 0):
            for q, text, r, why in list(zip(question, completions, raw.tolist(), reasons))[:3]:
                self.samples.write({"step": step, "question": q, "response": text, "reward": r, "degenerate": why})
        return shaped.tolist()

    @staticmethod
    def _global_rate(degenerate) -> float:
        """Share of degenerate answers over every process's batch (so every rank takes the same stop decision)."""
        import torch
        import torch.distributed as dist

        counts = torch.tensor([float(degenerate.sum()), float(degenerate.numel())], device=degenerate.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
        return float(counts[0] / counts[1].clamp(min=1.0))


def degenerate_stop_callback(scorer: RewardModelScorer, patience: int):
    """Stop (and checkpoint) once `patience` generation batches in a row were mostly degenerate."""
    from transformers import TrainerCallback

    class DegenerateStop(TrainerCallback):
        stopped_at: int | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if scorer.streak >= patience and not control.should_training_stop:
                self.stopped_at = state.global_step
                control.should_training_stop = True
                control.should_save = True

    return DegenerateStop()


def resumable_trainer_class():
    """RLOOTrainer whose prompt order is a function of (seed, epoch). TRL's RepeatSampler draws each epoch's
    order from one generator seeded at start, which a resumed run recreates: it would replay the first
    epoch's order instead of the one the interrupted run was in. The Trainer calls `set_epoch` on the
    sampler at the start of every epoch (resumed or not); reseeding there makes resume exact."""
    from trl import RLOOTrainer

    class ResumableRLOOTrainer(RLOOTrainer):
        def _get_train_sampler(self, dataset=None):
            sampler = super()._get_train_sampler(dataset)
            seed = self.args.seed

            def set_epoch(epoch: int) -> None:
                sampler.generator.manual_seed(seed * 1_000_003 + epoch)

            sampler.set_epoch = set_epoch
            return sampler

    return ResumableRLOOTrainer


def run(cfg: RlooConfig) -> dict:
    import datasets
    from trl import RLOOConfig

    from stackllama_cli.data.prompts import format_prompt
    from stackllama_cli.dist.ranks import distributed_state, effective_batch_size, world_size
    from stackllama_cli.models.load import check_causal_lm, load_tokenizer
    from stackllama_cli.models.resolve import make_adapter_portable, resolve_model
    from stackllama_cli.stages.ppo.batches import load_prompts
    from stackllama_cli.stages.ppo.reward import load_reward
    from stackllama_cli.stages.start_model import load_start_model

    # 1. output dir and prompts (errors come before the models load)
    run_dir = open_stage_run(cfg, last_checkpoint, inputs=(cfg.model, cfg.reward_model, cfg.data))
    out = run_dir.work
    spec = resolve_model(cfg.model, base=cfg.base)
    check_causal_lm(spec)
    tokenizer = load_tokenizer(spec, padding_side="left", trust_remote_code=cfg.trust_remote_code)
    questions, dropped = load_prompts(cfg, tokenizer)
    train_ds = datasets.Dataset.from_dict({"prompt": [format_prompt(q) for q in questions], "question": questions})

    # 2. reward model, 3. policy start
    reward_model, rm_tokenizer, stats = load_reward(cfg, distributed_state().device)
    info(f"RLOO on {len(questions)} prompts of the rl split ({dropped} over {cfg.max_prompt_length} tokens dropped), "
         f"{cfg.num_generations} answers per prompt, {describe_batch(cfg.batch_size, cfg.grad_accum)} answers, "
         f"policy {spec.name}, reward model {cfg.reward_model}, beta {cfg.beta}")
    if is_main_process():
        save_config(cfg, out)
    model = load_start_model(cfg, spec)

    # 4. train
    args = RLOOConfig(**training_args_kwargs(cfg, out, has_eval=False), num_generations=cfg.num_generations,
                      max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                      top_k=cfg.top_k, beta=cfg.beta, disable_dropout=False, remove_unused_columns=False,
                      trust_remote_code=cfg.trust_remote_code)
    scorer = RewardModelScorer(cfg, reward_model, rm_tokenizer, stats, out / SAMPLES_FILENAME)
    trainer = resumable_trainer_class()(model=model, reward_funcs=scorer, args=args, train_dataset=train_ds,
                                        processing_class=tokenizer, peft_config=lora_config(cfg, "CAUSAL_LM"))
    install_callbacks(trainer, out, "rloo")
    stop = degenerate_stop_callback(scorer, cfg.degenerate_patience)
    trainer.add_callback(stop)
    resume_from = prepare_resume(out) if cfg.resume else None
    steps_before = checkpoint_step(resume_from)
    if resume_from:
        info(f"Resuming from {resume_from}")
        if is_main_process():
            truncate_jsonl(out / SAMPLES_FILENAME, steps_before)
    start = time.time()
    result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.time() - start
    if stop.stopped_at is not None:
        raise StackLlamaError(
            f"stopped at step {stop.stopped_at}: over {cfg.degenerate_stop_rate:.0%} of answers were degenerate "
            f"(repetition, code-fence runs) for {cfg.degenerate_patience} steps, a sign of reward hacking; lower "
            "--learning-rate, raise --beta, or add --degenerate-penalty (checkpoint saved)")

    # 5. publish
    def save(tmp: Path) -> None:
        trainer.model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        make_adapter_portable(tmp, spec)

    publish(save, out)
    records = read_jsonl(out / METRICS_FILENAME) if (out / METRICS_FILENAME).is_file() else []
    summary = summarise(records, len(questions), dropped, result, seconds,
                        (result.global_step - steps_before) * effective_batch_size(cfg.batch_size, world_size(),
                                                                                   cfg.grad_accum))
    if is_main_process():
        write_json(out / SUMMARY_FILENAME, summary)
        plot_curves(records, out / "rloo.png", [("rm_score", "reward-model score"), ("kl", "KL to SFT"),
                                                ("completions/mean_length", "answer tokens"),
                                                ("degenerate_rate", "degenerate share")], "RLOO")
    summary_table(f"rloo -> {run_dir.final}", {k: v for k, v in summary.items() if v is not None})
    finish_run(run_dir)
    return summary


def summarise(records: list[dict], prompts: int, dropped: int, result, seconds: float, answers: int) -> dict:
    """The run in a few numbers: the reward-model score early and late, the last KL, degenerate share
    (`answers`: sampled in this session, all processes)."""
    train = [r for r in records if r.get("rm_score") is not None]

    def mean(key: str, part: list[dict]):
        values = [r[key] for r in part if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    k = max(1, len(train) // 4)
    return {"train_loss": result.training_loss, "steps": result.global_step, "prompts": prompts,
            "prompts_dropped_too_long": dropped, "rm_score_first_quarter": mean("rm_score", train[:k]),
            "rm_score_last_quarter": mean("rm_score", train[-k:]), "kl_last": train[-1].get("kl") if train else None,
            "answer_tokens_mean": mean("completions/mean_length", train),
            "degenerate_rate_mean": mean("degenerate_rate", train),
            "answers_per_second": answers / seconds if seconds > 0 and answers else None,
            "seconds": round(seconds, 1)}
