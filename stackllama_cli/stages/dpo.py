"""Direct preference optimisation on the prepared pairs, on TRL's DPOTrainer.

Steps: 1 pairs -> token ids (prompt cut to --max-prompt-length keeping its end, answers cut to
--max-length, both counted) -> 2 the SFT weights with every adapter merged -> 3 DPOTrainer with a
fresh LoRA adapter; the reference is the same weights with the adapter disabled -> 4 train (or resume)
-> 5 evaluate (loss, reward accuracy and margin on the evaluation split) -> 6 publish.

Tokens are built here, not by TRL: the prompt is tokenised alone, exactly as generate, ppo and rloo
feed it to the model (`format_prompt`, ending in "Answer:"), and the answer after it, EOS last. TRL
would tokenise prompt + answer together and move the prompt's trailing space into the answer.
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
from stackllama_cli.data.datasets import SPLITS, load_split
from stackllama_cli.data.prompts import format_prompt
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

SUMMARY_FILENAME = "dpo_summary.json"
# TRL 1.16's DPOConfig.loss_type choices (trl/trainer/dpo_config.py)
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


@dataclasses.dataclass
class DpoConfig(TrainCommon):
    model: str = "runs/sft"
    output: str = "runs/dpo"
    split: str = "rl"
    beta: float = 0.1
    loss_type: str = "sigmoid"  # one of LOSS_TYPES, or several joined by commas (summed with equal weights)
    label_smoothing: float = 0.0  # robust: flip probability in [0, 0.5); exo_pair: needs > 0
    max_length: int = 1024  # prompt + answer tokens
    max_prompt_length: int = 512
    eval_pairs: int = 200  # evaluation-split pairs for eval loss / reward accuracy (0: none)
    learning_rate: float = 5e-4  # the StackLLaMA-2 DPO recipe, with LoRA r 8 / alpha 16 / dropout 0.05
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.split in SPLITS, f"--split must be one of {', '.join(SPLITS)}")
        require(self.beta > 0, "--beta must be positive")
        bad = [t for t in self.loss_types if t not in LOSS_TYPES]
        require(self.loss_types and not bad, f"--loss-type {','.join(bad) or repr(self.loss_type)} is not one of "
                f"{', '.join(LOSS_TYPES)}")
        require(0.0 <= self.label_smoothing < 0.5, "--label-smoothing must be in [0, 0.5)")
        require("exo_pair" not in self.loss_types or self.label_smoothing > 0,
                "--loss-type exo_pair needs --label-smoothing > 0 (the EXO paper suggests 1e-3)")
        require(self.max_prompt_length >= 4, "--max-prompt-length must be at least 4")
        require(self.max_length > self.max_prompt_length, "--max-length must exceed --max-prompt-length "
                "(room is needed for the answer)")
        require(self.eval_pairs >= 0, "--eval-pairs must be non-negative")

    @property
    def loss_types(self) -> list[str]:
        return [t.strip() for t in self.loss_type.split(",") if t.strip()]


def tokenize_preferences(ds, tokenizer, max_length: int, max_prompt_length: int) -> tuple[dict[str, list], dict]:
    """prompt_ids / chosen_ids / rejected_ids for DPOTrainer, and how many prompts and answers were cut.

    A long prompt keeps its last `max_prompt_length` tokens (the end of the question and the "Answer: "
    header the model continues from; a leading BOS stays). An answer gets EOS appended and is cut to the
    room the prompt leaves in `max_length` (a cut answer loses its EOS: it did not end there)."""
    questions = list(ds["question"])
    unique = list(dict.fromkeys(questions))
    bos = tokenizer.bos_token_id
    prompt_of, prompts_cut = {}, 0
    for question, ids in zip(unique, tokenizer([format_prompt(q) for q in unique])["input_ids"]):
        if len(ids) > max_prompt_length:
            prompts_cut += 1
            head = ids[:1] if bos is not None and ids and ids[0] == bos else []
            ids = head + ids[len(ids) - (max_prompt_length - len(head)):]
        prompt_of[question] = ids

    def answers(column: str) -> list[list[int]]:
        texts = [" " + a.strip() for a in ds[column]]  # the answer brings its leading space (data/prompts.py)
        return [ids + [tokenizer.eos_token_id] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    out: dict[str, list] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    answers_cut = 0
    for question, chosen, rejected in zip(questions, answers("response_j"), answers("response_k")):
        prompt = prompt_of[question]
        room = max_length - len(prompt)
        answers_cut += (len(chosen) > room) + (len(rejected) > room)
        out["prompt_ids"].append(prompt)
        out["chosen_ids"].append(chosen[:room])
        out["rejected_ids"].append(rejected[:room])
    return out, {"prompts": len(unique), "prompts_cut": prompts_cut, "answers": 2 * len(questions),
                 "answers_cut": answers_cut}


def pretokenized_trainer_class():
    """DPOTrainer that takes our token ids as they are (its `_prepare_dataset` would re-tokenise from text)."""
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if "prompt_ids" in dataset.column_names:  # built by tokenize_preferences
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    return PretokenizedDPOTrainer


def load_pairs(cfg: DpoConfig, tokenizer):
    import datasets

    train = load_split(cfg.data, cfg.split)
    evaluation = None
    if cfg.eval_pairs and cfg.split != "evaluation" and Path(cfg.data).is_dir():
        try:
            evaluation = load_split(cfg.data, "evaluation")
            evaluation = evaluation.select(range(min(cfg.eval_pairs, len(evaluation))))
        except StackLlamaError as exc:
            warn(f"training without evaluation: {exc}")
    train_ids, counts = tokenize_preferences(train, tokenizer, cfg.max_length, cfg.max_prompt_length)
    eval_ds = None
    if evaluation is not None:
        eval_ids, _ = tokenize_preferences(evaluation, tokenizer, cfg.max_length, cfg.max_prompt_length)
        eval_ds = datasets.Dataset.from_dict(eval_ids)
    return datasets.Dataset.from_dict(train_ids), eval_ds, counts


def run(cfg: DpoConfig) -> dict:
    from trl import DPOConfig

    from stackllama_cli.models.load import check_causal_lm, load_tokenizer
    from stackllama_cli.models.resolve import make_adapter_portable, resolve_model
    from stackllama_cli.stages.start_model import load_start_model

    # 1. output dir, pairs, token ids (errors come before the model loads)
    run_dir = open_stage_run(cfg, last_checkpoint, inputs=(cfg.model, cfg.base, cfg.data))
    out = run_dir.work
    spec = resolve_model(cfg.model, base=cfg.base)
    check_causal_lm(spec)
    tokenizer = load_tokenizer(spec, padding_side="left", trust_remote_code=cfg.trust_remote_code)
    train_ds, eval_ds, counts = load_pairs(cfg, tokenizer)
    info(f"DPO on {len(train_ds)} pairs of the '{cfg.split}' split ({counts['prompts_cut']} of {counts['prompts']} "
         f"prompts cut to {cfg.max_prompt_length} tokens, {counts['answers_cut']} of {counts['answers']} answers to "
         f"fit {cfg.max_length}), {len(eval_ds) if eval_ds else 0} held out, model {spec.name}, beta {cfg.beta}, "
         f"loss {cfg.loss_type}, {describe_batch(cfg.batch_size, cfg.grad_accum)}")
    if is_main_process():
        save_config(cfg, out)

    # 2. the SFT weights, adapters merged (the reference is these weights: the adapter disabled)
    model = load_start_model(cfg, spec)

    # 3. trainer. disable_dropout=False: TRL's default would zero the LoRA dropout asked for.
    args = DPOConfig(**training_args_kwargs(cfg, out, has_eval=eval_ds is not None), beta=cfg.beta,
                     loss_type=cfg.loss_types, label_smoothing=cfg.label_smoothing, max_length=cfg.max_length,
                     disable_dropout=False, dataset_num_proc=None, trust_remote_code=cfg.trust_remote_code)
    trainer = pretokenized_trainer_class()(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                                           processing_class=tokenizer, peft_config=lora_config(cfg, "CAUSAL_LM"))
    install_callbacks(trainer, out, "dpo")

    # 4. train
    resume_from = prepare_resume(out) if cfg.resume else None
    steps_before = checkpoint_step(resume_from)
    if resume_from:
        info(f"Resuming from {resume_from}")
    start = time.time()
    result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.time() - start

    # 5. evaluate
    metrics = trainer.evaluate() if eval_ds is not None else {}

    # 6. publish the adapter and the run's record
    def save(tmp: Path) -> None:
        trainer.model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        make_adapter_portable(tmp, spec)

    publish(save, out)
    from stackllama_cli.dist.ranks import effective_batch_size, world_size

    summary = {"train_loss": result.training_loss, "eval_loss": metrics.get("eval_loss"),
               "eval_reward_accuracy": metrics.get("eval_rewards/accuracies"),
               "eval_reward_margin": metrics.get("eval_rewards/margins"),
               "eval_reward_chosen": metrics.get("eval_rewards/chosen"),
               "eval_reward_rejected": metrics.get("eval_rewards/rejected"),
               "steps": result.global_step, "train_pairs": len(train_ds), "eval_pairs": len(eval_ds or []),
               **counts, "beta": cfg.beta, "loss_type": cfg.loss_type,
               "pairs_per_second": (result.global_step - steps_before) * effective_batch_size(
                   cfg.batch_size, world_size(), cfg.grad_accum) / seconds if seconds > 0 else None,
               "seconds": round(seconds, 1)}
    if is_main_process():
        write_json(out / SUMMARY_FILENAME, summary)
        records = read_jsonl(out / METRICS_FILENAME) if (out / METRICS_FILENAME).is_file() else []
        plot_curves(records, out / "dpo.png", [("loss", "train loss"), ("eval_loss", "eval loss"),
                                               ("rewards/accuracies", "reward accuracy (train)"),
                                               ("eval_rewards/accuracies", "reward accuracy (eval)"),
                                               ("rewards/margins", "reward margin (train)")], "DPO")
    summary_table(f"dpo -> {run_dir.final}", {k: v for k, v in summary.items() if v is not None})
    finish_run(run_dir)
    return summary
