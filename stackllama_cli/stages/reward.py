"""Reward model: a one-output sequence classifier trained on preference pairs with TRL's RewardTrainer.

Steps: 1 pairs -> token ids (drop or truncate over --max-length, counted) -> 2 classifier
(from a base, a merged SFT model or an SFT adapter) -> 3 RewardTrainer with LoRA ->
4 train (or resume) -> 5 evaluate, reward statistics for PPO -> 6 publish.
Loss: -logsigmoid(r_j - r_k), mean over pairs (TRL).

Where the reward is read: the classifier takes the logit at the last token that is not
`pad_token_id`. Our tokenizers pad with EOS, so the EOS that TRL (and `eval_rm.score_texts`)
appends counts as padding and the reward sits on the last answer token, in training and in
scoring alike (tests check that a reloaded model reproduces the in-training rewards).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from stackllama_cli.core.config import require, save_config
from stackllama_cli.core.console import info, summary_table, warn
from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.core.files import publish, write_json
from stackllama_cli.core.metrics import METRICS_FILENAME, plot_curves, read_jsonl
from stackllama_cli.core.rundir import finish_run, open_stage_run
from stackllama_cli.data.datasets import load_split
from stackllama_cli.data.prompt_format import RECIPE, write_record
from stackllama_cli.data.prompts import reward_token_ids
from stackllama_cli.data.reward_metrics import mean_std
from stackllama_cli.data.sources import data_source
from stackllama_cli.dist.ranks import describe_batch
from stackllama_cli.stages.common import (
    TrainCommon,
    install_callbacks,
    last_checkpoint,
    lora_config,
    prepare_resume,
    stage_prompt_format,
    training_args_kwargs,
    whole_run_loss,
)

SUMMARY_FILENAME = "reward_summary.json"


@dataclasses.dataclass
class RewardConfig(TrainCommon):
    TRAINER_ARGS = "trl:RewardConfig"
    output: str = "runs/reward"
    max_length: int = 512
    truncate: bool = False  # default: drop pairs over max_length (counted), like the original
    learning_rate: float = 2e-5
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    eval_pairs: int = 500  # evaluation-split pairs scored during/after training (0: none)
    stats_pairs: int = 1000  # training pairs scored for reward_stats.json
    max_minutes: float = 0.0  # wall-clock training budget (0: none); stops cleanly, then evaluates and saves

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.max_length >= 16, "--max-length must be at least 16")
        require(self.eval_pairs >= 0 and self.stats_pairs >= 1, "--eval-pairs must be >= 0, --stats-pairs >= 1")
        require(self.max_minutes >= 0, "--max-minutes must be non-negative (0: no time budget)")


def tokenize_pairs(ds, tokenizer, max_length: int, truncate: bool, fmt=RECIPE) -> tuple[dict[str, list], int]:
    """chosen_ids/rejected_ids (texts in the prompt format `fmt`) with EOS appended, and how many pairs were over
    `max_length` (dropped, or cut)."""
    eos = tokenizer.eos_token_id
    out: dict[str, list] = {"chosen_ids": [], "rejected_ids": []}
    over = 0
    chosen = tokenizer([fmt.example(q, a) for q, a in zip(ds["question"], ds["response_j"])])["input_ids"]
    rejected = tokenizer([fmt.example(q, a) for q, a in zip(ds["question"], ds["response_k"])])["input_ids"]
    for cj, rk in zip(chosen, rejected):
        if max(len(cj), len(rk)) + 1 > max_length:  # + 1: the EOS
            over += 1
            if not truncate:
                continue
        # EOS last; a side that is too long is cut keeping it (the short side is untouched)
        cj, rk = reward_token_ids(cj, eos, max_length), reward_token_ids(rk, eos, max_length)
        out["chosen_ids"].append(cj)
        out["rejected_ids"].append(rk)
    return out, over


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
    model = _from_pretrained(AutoModelForSequenceClassification, spec, num_labels=1,
                             dtype=torch_dtype(cfg.precision), quantization_config=quant,
                             device_map=device_map_for(quant is not None), trust_remote_code=cfg.trust_remote_code,
                             **attn_kwargs(cfg.attn_implementation, cfg.precision))
    inner = spec.merged_adapters + ((spec.adapter,) if spec.adapter else ())
    model = merge_inner_adapters(model, dataclasses.replace(spec, adapter=None, merged_adapters=inner))
    model.config.pad_token_id = pad_token_id
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return model


def run(cfg: RewardConfig) -> dict:
    import datasets
    from trl import RewardConfig as TrlRewardConfig
    from trl import RewardTrainer

    from stackllama_cli.dist.ranks import effective_batch_size, world_size
    from stackllama_cli.models.card import write_model_card
    from stackllama_cli.models.load import REWARD_STATS_FILENAME, load_tokenizer
    from stackllama_cli.models.resolve import make_adapter_portable, resolve_model
    from stackllama_cli.stages.eval_rm import evaluate_pairs, score_texts

    # 1. data
    run_dir = open_stage_run(cfg, last_checkpoint, inputs=(cfg.model, cfg.base, cfg.data))
    out = run_dir.work
    train_pairs = load_split(data_source(cfg, "reward"), "reward")
    eval_pairs = None
    if cfg.eval_pairs and not Path(cfg.data).is_file():
        try:
            eval_pairs = load_split(data_source(cfg, "reward"), "evaluation")
            eval_pairs = eval_pairs.select(range(min(cfg.eval_pairs, len(eval_pairs))))
        except StackLlamaError as exc:
            warn(f"training without evaluation: {exc}")
    spec = resolve_model(cfg.model, base=cfg.base)
    tokenizer = load_tokenizer(spec, padding_side="right", trust_remote_code=cfg.trust_remote_code)
    fmt = stage_prompt_format(cfg.prompt_format, {spec.name: spec}, tokenizer, spec.name)
    cfg.prompt_format = fmt.name  # recorded in stackllama_config.json
    train_ids, n_over = tokenize_pairs(train_pairs, tokenizer, cfg.max_length, cfg.truncate, fmt)
    if not train_ids["chosen_ids"]:
        raise StackLlamaError(f"all {len(train_pairs)} training pairs are longer than --max-length {cfg.max_length} "
                              "tokens; raise it or pass --truncate")
    if not cfg.truncate and n_over > len(train_pairs) / 4:
        # measured (bench/reward.py, beer -> coffee at 256 tokens): dropping 70% of the pairs gave 0.33
        # held-out accuracy, cutting them 0.56 - a model that never saw a cut text misjudges long answers
        warn(f"{n_over} of {len(train_pairs)} pairs are over --max-length {cfg.max_length} and dropped: the "
             "model learns only from short answers; consider --truncate or a larger --max-length")
    eval_ds = None
    if eval_pairs is not None:
        eval_ids, _ = tokenize_pairs(eval_pairs, tokenizer, cfg.max_length, truncate=True, fmt=fmt)
        eval_ds = datasets.Dataset.from_dict(eval_ids)
    info(f"Reward model on {len(train_ids['chosen_ids'])} pairs ({n_over} over {cfg.max_length} tokens "
         f"{'truncated' if cfg.truncate else 'dropped'}), model {spec.name}, "
         f"{describe_batch(cfg.batch_size, cfg.grad_accum)}")
    save_config(cfg, out)

    # 2. classifier
    model = build_classifier(cfg, spec, tokenizer.pad_token_id)

    # 3. trainer. disable_dropout=False: TRL's default would silently zero the recipe's LoRA dropout (0.1).
    args = TrlRewardConfig(**training_args_kwargs(cfg, out, has_eval=eval_ds is not None), max_length=None,
                           disable_dropout=False, center_rewards_coefficient=None, eos_token=tokenizer.eos_token,
                           pad_token=tokenizer.pad_token)
    trainer = RewardTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_dict(train_ids),
                            eval_dataset=eval_ds, processing_class=tokenizer,
                            peft_config=lora_config(cfg, "SEQ_CLS", model))
    budget = install_callbacks(trainer, out, "train-rm", max_minutes=cfg.max_minutes)

    # 4. train
    start = time.time()
    resume_from = prepare_resume(out) if cfg.resume else None
    steps_before = int(Path(resume_from).name.rsplit("-", 1)[-1]) if resume_from else 0
    result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.time() - start
    if budget is not None and budget.stopped_at is not None:
        info(f"time budget of {cfg.max_minutes:g} min reached: stopped after step {budget.stopped_at}")

    # 5. evaluate; reward statistics over training pairs (PPO normalises rewards with them)
    model = trainer.model.eval()
    stats_ds = train_pairs.select(range(min(cfg.stats_pairs, len(train_pairs))))
    texts = [fmt.example(q, a) for q, a in zip(stats_ds["question"], stats_ds["response_j"])] + \
            [fmt.example(q, a) for q, a in zip(stats_ds["question"], stats_ds["response_k"])]
    mean, std = mean_std(score_texts(model, tokenizer, texts, cfg.batch_size, cfg.max_length, "reward stats"))
    evaluation = evaluate_pairs(model, tokenizer, eval_pairs, cfg.batch_size, cfg.max_length, fmt) \
        if eval_pairs is not None else {}

    # 6. publish
    def save(tmp: Path) -> None:
        trainer.model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        make_adapter_portable(tmp, spec)
        write_record(tmp, fmt.name)
        write_json(tmp / REWARD_STATS_FILENAME, {"mean": mean, "std": std, "n": len(texts)})
        write_model_card(tmp, cfg, spec, {"train_loss": result.training_loss, "steps": result.global_step,
                                          "train_pairs": len(train_ids["chosen_ids"]), "evaluation": evaluation})

    publish(save, out)
    records = read_jsonl(out / METRICS_FILENAME) if (out / METRICS_FILENAME).is_file() else []
    summary = {"train_loss": whole_run_loss(result.training_loss, records, resume_from is not None),
               "steps": result.global_step,
               "train_pairs": len(train_ids["chosen_ids"]), "over_max_length": n_over,
               "dropped_over_max_length": 0 if cfg.truncate else n_over,
               "stopped_by_time_budget": budget is not None and budget.stopped_at is not None,
               "reward_mean": mean, "reward_std": std,
               # pairs trained in this session (a resumed run started at its checkpoint's step), all processes
               "train_pairs_per_second": (result.global_step - steps_before) * effective_batch_size(
                   cfg.batch_size, world_size(), cfg.grad_accum) / seconds if seconds > 0 else None,
               "seconds": round(seconds, 1)}
    summary.update({f"eval_{k}": v for k, v in evaluation.items() if not isinstance(v, dict)})
    write_json(out / SUMMARY_FILENAME, {**summary, "evaluation": evaluation})
    plot_curves(records, out / "reward.png", [("loss", "train loss"), ("eval_loss", "eval loss"),
                                              ("eval_accuracy", "eval accuracy"),
                                              ("eval_margin", "eval mean margin")], "Reward model")
    summary_table(f"train-rm -> {run_dir.final}", summary)
    finish_run(run_dir)
    return summary
