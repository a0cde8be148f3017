"""Reward model: a one-output sequence classifier trained on preference pairs.

Steps: 1 pairs -> token ids (`prompts.reward_inputs`: a long text loses the end of its question,
then the end of its answer; or, with --drop-long, the pair is dropped) -> 2 classifier (from a base,
a merged SFT model or an SFT adapter) -> 3 train: --method lora (TRL's RewardTrainer, LoRA + score
head; loss -logsigmoid(r_j - r_k - margin)) or --method probe (a linear head on the frozen model's
features, stages/reward_probe.py) -> 4 evaluate, reward statistics for PPO -> 5 publish.

--max-minutes is the budget of the whole command: what runs after training (evaluation, reward
statistics) is timed on one batch beforehand, shrunk to at most half of what is left if needed,
and training stops early enough for it.

Where the reward is read: the classifier takes the logit at the last token that is not
`pad_token_id`. Our tokenizers pad with EOS, so the EOS that `reward_token_ids` appends counts as
padding and the reward sits on the last kept token, in training and in scoring alike (tests check
that a reloaded model reproduces the in-training rewards).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from stackllama_cli.core.config import require, save_config
from stackllama_cli.core.console import info, summary_table, warn
from stackllama_cli.core.errors import StackLlamaError, UsageError
from stackllama_cli.core.files import publish, write_json
from stackllama_cli.core.metrics import METRICS_FILENAME, plot_curves, read_jsonl
from stackllama_cli.core.rundir import finish_run, open_stage_run
from stackllama_cli.data.datasets import load_split
from stackllama_cli.data.prompt_format import RECIPE, write_record
from stackllama_cli.data.prompts import MIN_REWARD_LENGTH, reward_inputs, reward_part_ids, reward_token_ids
from stackllama_cli.data.reward_metrics import mean_std
from stackllama_cli.data.sources import data_source
from stackllama_cli.dist.ranks import describe_batch
from stackllama_cli.stages.budget import Clock, size_after_training
from stackllama_cli.stages.common import (
    TrainCommon,
    checkpoint_step,
    install_callbacks,
    last_checkpoint,
    lora_config,
    prepare_resume,
    stage_prompt_format,
    training_args_kwargs,
    whole_run_loss,
)

SUMMARY_FILENAME = "reward_summary.json"
METHODS = ("lora", "probe")
MARGINS = ("none", "score-gap")
SAVE_SECONDS = 20.0  # kept free at the end of a --max-minutes budget for the checkpoint and the final save


@dataclasses.dataclass
class RewardConfig(TrainCommon):
    TRAINER_ARGS = "trl:RewardConfig"
    output: str = "runs/reward"
    method: str = "lora"
    max_length: int = 256
    truncate: bool = True  # cut long pairs (question first); False: drop them (counted), like the original
    margin: str = "none"  # "score-gap": TRL's margin column = score_j - score_k (as Llama 2)
    # measured on frozen SmolLM2 features (beer, zero-started head, batch 4): after 60-220 steps 2e-5 -> 0.60-0.61
    # held-out accuracy, 1e-4 -> 0.62-0.63, 3e-4 -> 0.63-0.64, 1e-3 and up peak then fall to 0.55-0.59
    learning_rate: float = 3e-4
    batch_size: int = 4
    gradient_checkpointing: bool = False
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    eval_pairs: int = 500  # evaluation-split pairs scored during/after training (0: none)
    stats_pairs: int = 256  # training pairs scored for reward_stats.json
    max_minutes: float = 0.0  # wall-clock budget of the whole command (0: none)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in METHODS:
            raise UsageError(f"--method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.margin not in MARGINS:
            raise UsageError(f"--margin must be one of {', '.join(MARGINS)}, not {self.margin!r}")
        require(self.max_length >= MIN_REWARD_LENGTH, f"--max-length must be at least {MIN_REWARD_LENGTH}")
        require(self.eval_pairs >= 0 and self.stats_pairs >= 1, "--eval-pairs must be >= 0, --stats-pairs >= 1")
        require(self.max_minutes >= 0, "--max-minutes must be non-negative (0: no time budget)")
        if self.method == "probe" and self.resume:
            raise UsageError("--method probe takes seconds to fit and has nothing to resume; drop --resume")


def tokenize_pairs(ds, tokenizer, max_length: int, truncate: bool, margin: str = "none", fmt=RECIPE
                   ) -> tuple[dict[str, list], int, list[int]]:
    """(columns, over, kept): chosen_ids/rejected_ids (`prompts.reward_inputs`, EOS last) and, with
    margin "score-gap", a `margin` column score_j - score_k; how many pairs were over `max_length`
    (dropped, or cut); the indices of the pairs kept."""
    questions, js, ks = list(ds["question"]), list(ds["response_j"]), list(ds["response_k"])
    eos = tokenizer.eos_token_id
    parts_j = reward_part_ids(tokenizer, questions, js, fmt.example)
    parts_k = reward_part_ids(tokenizer, questions, ks, fmt.example)
    whole = [max(sum(map(len, pj)), sum(map(len, pk))) + 1 for pj, pk in zip(parts_j, parts_k)]  # + 1: the EOS
    kept = [i for i, n in enumerate(whole) if truncate or n <= max_length]
    out: dict[str, list] = {"chosen_ids": [reward_token_ids(*parts_j[i], eos, max_length) for i in kept],
                            "rejected_ids": [reward_token_ids(*parts_k[i], eos, max_length) for i in kept]}
    if margin == "score-gap":
        if not {"score_j", "score_k"} <= set(ds.column_names):
            raise StackLlamaError("--margin score-gap needs score_j and score_k columns in the pairs "
                                  "(prepare-data writes them)")
        sj, sk = list(ds["score_j"]), list(ds["score_k"])
        out["margin"] = [float(sj[i] - sk[i]) for i in kept]
    return out, sum(n > max_length for n in whole), kept


def build_classifier(cfg: RewardConfig, spec, pad_token_id: int):
    """A num_labels=1 classifier; an SFT adapter given as --model is merged into its decoder first."""
    from transformers import AutoModelForSequenceClassification

    from stackllama_cli.models.load import (
        _from_pretrained,
        attn_kwargs,
        device_map_for,
        merge_inner_adapters,
        quantization_config,
        torch_dtype,
    )
    from stackllama_cli.models.resolve import adapter_task_type

    if spec.adapter and adapter_task_type(spec.adapter) not in (None, "CAUSAL_LM"):
        raise StackLlamaError(f"{spec.adapter} is a {adapter_task_type(spec.adapter)} adapter; start train-rm from "
                              "a base model, a merged model or an SFT adapter")
    quant = quantization_config(cfg.load_in_8bit, cfg.load_in_4bit, cfg.precision)
    model, loading = _from_pretrained(AutoModelForSequenceClassification, spec, num_labels=1,
                                      dtype=torch_dtype(cfg.precision), quantization_config=quant,
                                      device_map=device_map_for(quant is not None),
                                      trust_remote_code=cfg.trust_remote_code, output_loading_info=True,
                                      **attn_kwargs(cfg.attn_implementation, cfg.precision))
    head = getattr(model, "score", None)
    if head is not None and any(k.startswith("score.") for k in loading.get("missing_keys", ())):
        # A new head starts at zero, not random: random (std 0.02 x hidden-state norm ~47 on SmolLM2) it gives
        # rewards of std ~0.9 that a CPU budget of steps never unlearns - its random direction decided the
        # held-out accuracy (0.39 on beer); from zero, all it learns is signal (README, train-rm).
        import torch

        with torch.no_grad():
            head.weight.zero_()
            if head.bias is not None:
                head.bias.zero_()
    inner = spec.merged_adapters + ((spec.adapter,) if spec.adapter else ())
    model = merge_inner_adapters(model, dataclasses.replace(spec, adapter=None, merged_adapters=inner))
    model.config.pad_token_id = pad_token_id
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return model


def load_pairs(cfg: RewardConfig):
    """(training pairs, evaluation pairs or None): the reward split and up to --eval-pairs of the evaluation split."""
    train_pairs = load_split(data_source(cfg, "reward"), "reward")
    eval_pairs = None
    if cfg.eval_pairs and not Path(cfg.data).is_file():  # a folder or a Hub id may hold an evaluation split
        try:
            eval_pairs = load_split(data_source(cfg, "reward"), "evaluation")
            eval_pairs = eval_pairs.select(range(min(cfg.eval_pairs, len(eval_pairs))))
        except StackLlamaError as exc:
            warn(f"training without evaluation: {exc}")
    return train_pairs, eval_pairs


def seconds_per_pair(model, tokenizer, ds, cfg: RewardConfig, fmt=RECIPE) -> float:
    """Time to score one pair of `ds` after training, from one timed batch (distinct texts only, x 1.25 for
    the LoRA layers and noise)."""
    from stackllama_cli.stages.eval_rm import score_ids

    questions = list(ds["question"])
    rows = reward_inputs(tokenizer, questions * 2, list(ds["response_j"]) + list(ds["response_k"]), cfg.max_length,
                         fmt.example)
    distinct = sorted(set(map(tuple, rows)), key=len)
    sample = distinct[len(distinct) // 2 : len(distinct) // 2 + cfg.batch_size]
    start = time.perf_counter()
    score_ids(model, tokenizer, sample, cfg.batch_size, "timing")
    per_token = (time.perf_counter() - start) / max(1, sum(map(len, sample)))
    return 1.25 * per_token * sum(map(len, distinct)) / max(1, len(ds))


def train_lora(cfg: RewardConfig, clock: Clock, model, tokenizer, train_ids: dict, eval_pairs, out: Path,
               fmt=RECIPE):
    """TRL's RewardTrainer with LoRA; stops early enough for what --max-minutes leaves after it.
    Returns (trained model, training result, seconds, stopped by the budget, steps in this session)."""
    import datasets
    from trl import RewardConfig as TrlRewardConfig
    from trl import RewardTrainer

    eval_ds = None
    if eval_pairs is not None and len(eval_pairs):
        eval_ds = datasets.Dataset.from_dict(tokenize_pairs(eval_pairs, tokenizer, cfg.max_length, True, fmt=fmt)[0])
    # disable_dropout=False: TRL's default would silently zero the recipe's LoRA dropout (0.1).
    args = TrlRewardConfig(**training_args_kwargs(cfg, out, has_eval=eval_ds is not None), max_length=None,
                           disable_dropout=False, center_rewards_coefficient=None, eos_token=tokenizer.eos_token,
                           pad_token=tokenizer.pad_token)
    trainer = RewardTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_dict(train_ids),
                            eval_dataset=eval_ds, processing_class=tokenizer,
                            peft_config=lora_config(cfg, "SEQ_CLS", model))
    budget = install_callbacks(trainer, out, "train-rm", max_minutes=cfg.max_minutes,
                               deadline=clock.deadline - clock.reserved if clock.limited else None)
    start = time.time()
    resume_from = prepare_resume(out) if cfg.resume else None
    result = trainer.train(resume_from_checkpoint=resume_from)
    if resume_from is not None:  # the Trainer's loss covers this session only: the whole run's from the log
        records = read_jsonl(out / METRICS_FILENAME) if (out / METRICS_FILENAME).is_file() else []
        result = result._replace(training_loss=whole_run_loss(result.training_loss, records, True))
    stopped = budget is not None and budget.stopped_at is not None
    if stopped:
        info(f"time budget of {cfg.max_minutes:g} min: training stopped after step {budget.stopped_at}, "
             f"{clock.left() / 60:.1f} min left for evaluation and saving")
    steps_before = checkpoint_step(resume_from)
    return trainer.model.eval(), result, time.time() - start, stopped, result.global_step - steps_before


def run_lora(cfg: RewardConfig, clock: Clock, model, tokenizer, train_ids: dict, eval_pairs, stats_ds, out: Path,
             fmt=RECIPE):
    """Size the scoring after training to the budget, train, then score statistics and evaluation pairs.
    Returns (model, statistics rewards, evaluation, summary fields, training seconds)."""
    from stackllama_cli.dist.ranks import effective_batch_size, world_size
    from stackllama_cli.stages.eval_rm import evaluate_pairs, score_answers

    if clock.limited:
        # what runs after training is sized now, against the whole budget
        per_pair = seconds_per_pair(model, tokenizer, eval_pairs if eval_pairs is not None else stats_ds, cfg, fmt)
        n_eval = len(eval_pairs) if eval_pairs is not None else 0
        n_eval, n_stats = size_after_training(clock.left() - SAVE_SECONDS, per_pair, n_eval, len(stats_ds))
        if world_size() > 1:  # every rank must score the same pairs (gathered in order): rank 0 decides
            from accelerate.utils import broadcast_object_list

            from stackllama_cli.dist.ranks import distributed_state

            distributed_state()
            n_eval, n_stats, per_pair = broadcast_object_list([n_eval, n_stats, per_pair])
        if eval_pairs is not None and n_eval < len(eval_pairs) or n_stats < len(stats_ds):
            warn(f"--max-minutes {cfg.max_minutes:g}: scoring {n_eval} evaluation and {n_stats} statistics pairs "
                 "after training (of "
                 f"{len(eval_pairs) if eval_pairs is not None else 0} and {len(stats_ds)}) to fit the budget")
        eval_pairs = eval_pairs.select(range(n_eval)) if eval_pairs is not None else None
        stats_ds = stats_ds.select(range(n_stats))
        clock.reserved = SAVE_SECONDS + per_pair * (n_eval + n_stats)
    model, result, seconds, stopped, steps = train_lora(cfg, clock, model, tokenizer, train_ids, eval_pairs, out, fmt)
    stats_rewards = score_answers(model, tokenizer, list(stats_ds["question"]) * 2,
                                  list(stats_ds["response_j"]) + list(stats_ds["response_k"]), cfg.batch_size,
                                  cfg.max_length, "reward stats", fmt.example)
    evaluation = evaluate_pairs(model, tokenizer, eval_pairs, cfg.batch_size, cfg.max_length, fmt) \
        if eval_pairs is not None and len(eval_pairs) else {}
    pairs_seen = steps * effective_batch_size(cfg.batch_size, world_size(), cfg.grad_accum)
    summary = {"train_loss": result.training_loss, "steps": result.global_step, "pairs_seen": pairs_seen,
               "epochs": round(pairs_seen / len(train_ids["chosen_ids"]), 3), "stopped_by_time_budget": stopped,
               # pairs trained in this session (a resumed run started at its checkpoint's step), all processes
               "train_pairs_per_second": pairs_seen / seconds if seconds > 0 else None}
    return model, stats_rewards, evaluation, summary, seconds


def run(cfg: RewardConfig) -> dict:
    from stackllama_cli.dist.ranks import world_size
    from stackllama_cli.models.card import write_model_card
    from stackllama_cli.models.load import REWARD_STATS_FILENAME, load_tokenizer
    from stackllama_cli.models.resolve import make_adapter_portable, resolve_model
    from stackllama_cli.stages.eval_rm import pair_metrics

    clock = Clock(cfg.max_minutes)  # the whole command: loading, training, evaluation, saving
    if cfg.method == "probe" and world_size() > 1:
        raise UsageError("--method probe runs in one process; drop --gpus/--cpu-processes")

    # 1. data
    run_dir = open_stage_run(cfg, last_checkpoint, inputs=(cfg.model, cfg.base, cfg.data))
    out = run_dir.work
    train_pairs, eval_pairs = load_pairs(cfg)
    spec = resolve_model(cfg.model, base=cfg.base)
    tokenizer = load_tokenizer(spec, padding_side="right", trust_remote_code=cfg.trust_remote_code)
    fmt = stage_prompt_format(cfg.prompt_format, {spec.name: spec}, tokenizer, spec.name)
    cfg.prompt_format = fmt.name  # recorded in stackllama_config.json
    train_ids, n_over, kept = tokenize_pairs(train_pairs, tokenizer, cfg.max_length, cfg.truncate, cfg.margin, fmt)
    if not kept:
        raise StackLlamaError(f"all {len(train_pairs)} training pairs are longer than --max-length {cfg.max_length} "
                              "tokens; raise it or drop --drop-long")
    if not cfg.truncate and n_over > len(train_pairs) / 4:
        # measured (bench/reward.py, beer -> coffee at 256 tokens): dropping 70% of the pairs gave 0.33
        # held-out accuracy, cutting them 0.56 - a model that never saw a cut text misjudges long answers
        warn(f"{n_over} of {len(train_pairs)} pairs are over --max-length {cfg.max_length} and dropped: the "
             "model learns only from short answers; consider dropping --drop-long or a larger --max-length")
    train_pairs = train_pairs.select(kept)
    info(f"Reward model ({cfg.method}) on {len(kept)} pairs ({n_over} over {cfg.max_length} tokens "
         f"{'cut' if cfg.truncate else 'dropped'}), model {spec.name}"
         + (f", {describe_batch(cfg.batch_size, cfg.grad_accum)}" if cfg.method == "lora" else ""))
    save_config(cfg, out)

    # 2. classifier
    model = build_classifier(cfg, spec, tokenizer.pad_token_id)

    # 3. train
    stats_ds = train_pairs.select(range(min(cfg.stats_pairs, len(train_pairs))))
    if cfg.method == "probe":
        from stackllama_cli.stages.reward_probe import run_probe

        model, stats_rewards, eval_rewards, fit = run_probe(cfg, clock, model, tokenizer, train_ids, train_pairs,
                                                            eval_pairs, fmt)
        if eval_pairs is not None:
            eval_pairs = eval_pairs.select(range(len(eval_rewards[0])))
        evaluation = pair_metrics(eval_pairs, *eval_rewards) if eval_pairs is not None and len(eval_pairs) else {}
        summary = {"train_loss": fit["train_loss"], "train_accuracy": fit["train_accuracy"], "probe_l2": fit["l2"],
                   "pairs_seen": fit["pairs"], "probe_texts": fit["texts"],
                   "probe_features_seconds": round(fit["features_seconds"], 1)}
        seconds = fit["seconds"]
    else:
        model, stats_rewards, evaluation, summary, seconds = run_lora(cfg, clock, model, tokenizer, train_ids,
                                                                      eval_pairs, stats_ds, out, fmt)
    mean, std = mean_std(stats_rewards)

    # 4. publish
    def save(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        make_adapter_portable(tmp, spec)
        write_record(tmp, fmt.name)
        write_json(tmp / REWARD_STATS_FILENAME, {"mean": mean, "std": std, "n": len(stats_rewards)})
        write_model_card(tmp, cfg, spec, {"method": cfg.method, "train_loss": summary["train_loss"],
                                          "steps": summary.get("steps"), "train_pairs": len(kept),
                                          "evaluation": evaluation})

    publish(save, out)
    records = read_jsonl(out / METRICS_FILENAME) if (out / METRICS_FILENAME).is_file() else []
    summary = {"method": cfg.method, **summary, "train_pairs": len(kept), "over_max_length": n_over,
               "dropped_over_max_length": 0 if cfg.truncate else n_over, "reward_mean": mean, "reward_std": std,
               "train_seconds": round(seconds, 1), "seconds": round(clock.elapsed(), 1)}
    summary.update({f"eval_{k}": v for k, v in evaluation.items() if not isinstance(v, (dict, list))})
    write_json(out / SUMMARY_FILENAME, {**summary, "evaluation": evaluation})
    plot_curves(records, out / "reward.png", [("loss", "train loss"), ("eval_loss", "eval loss"),
                                              ("eval_accuracy", "eval accuracy"),
                                              ("eval_margin", "eval mean margin")], "Reward model")
    summary_table(f"train-rm -> {run_dir.final}", summary)
    finish_run(run_dir)
    return summary
