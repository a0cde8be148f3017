"""Supervised fine-tuning on the preferred answers (`finetune` split), on TRL's SFTTrainer.

Steps: 1 data -> 2 model (+ k-bit preparation) -> 3 trainer with LoRA and packing ->
4 train (or resume) -> 5 evaluate (loss, perplexity) -> 6 publish adapter, metrics, plot.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

from stackllama_cli.core.config import require, save_config
from stackllama_cli.core.console import info, summary_table, warn
from stackllama_cli.core.files import publish, write_json
from stackllama_cli.core.metrics import METRICS_FILENAME, plot_curves, read_jsonl
from stackllama_cli.core.rundir import finish_run, open_stage_run
from stackllama_cli.data.datasets import load_split
from stackllama_cli.data.prompt_format import RECIPE, write_record
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

PACKING_MODES = ("bfd", "wrapped", "none")
SUMMARY_FILENAME = "sft_summary.json"


@dataclasses.dataclass
class SftConfig(TrainCommon):
    TRAINER_ARGS = "trl:SFTConfig"
    output: str = "runs/sft"
    seq_length: int = 1024
    packing: str = "bfd"  # bfd: best-fit, documents isolated; wrapped: original chunks; none: padding
    learning_rate: float = 1e-4
    weight_decay: float = 0.05
    eval_samples: int = 200  # held-out texts from the evaluation split (never in finetune)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.packing in PACKING_MODES, f"--packing must be one of {', '.join(PACKING_MODES)}")
        require(self.seq_length >= 16, "--seq-length must be at least 16")
        require(self.eval_samples >= 0, "--eval-samples must be non-negative")


def sft_texts(ds, fmt=RECIPE) -> list[str]:
    """Unique question + answer texts of the preferred answers in the prompt format `fmt` (a question appears in
    up to 10 pairs)."""
    seen, texts = set(), []
    for question, answer in zip(ds["question"], ds["response_j"]):
        text = fmt.example(question, answer)
        if text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


def load_texts(cfg: SftConfig, fmt=RECIPE):
    import datasets

    source = data_source(cfg, "finetune")
    train = sft_texts(load_split(source, "finetune", columns=("question", "response_j")), fmt)
    evaluation: list[str] = []
    if cfg.eval_samples and not Path(cfg.data).is_file():
        try:
            evaluation = sft_texts(load_split(source, "evaluation", columns=("question", "response_j")), fmt)
        except Exception:  # no evaluation split: train without eval
            warn(f"no evaluation split in {cfg.data}: training without eval loss")
        evaluation = evaluation[: cfg.eval_samples]
    to_ds = lambda texts: datasets.Dataset.from_dict({"text": texts})  # noqa: E731
    return to_ds(train), (to_ds(evaluation) if evaluation else None)


def non_padding_fraction(dataloader, max_batches: int = 20) -> float:
    """Measured share of real tokens in the batches the model sees (padding-free batches count as 1.0)."""
    real = total = 0
    for i, batch in enumerate(dataloader):
        if i == max_batches:
            break
        ids = batch["input_ids"]
        total += ids.numel()
        real += int(batch["attention_mask"].sum()) if "attention_mask" in batch else ids.numel()
    return real / total if total else 0.0


def build_model(cfg: SftConfig, spec):
    from stackllama_cli.models.load import load_causal_lm

    quantized = cfg.load_in_8bit or cfg.load_in_4bit
    model = load_causal_lm(spec, precision=cfg.precision, load_in_8bit=cfg.load_in_8bit,
                           load_in_4bit=cfg.load_in_4bit, trust_remote_code=cfg.trust_remote_code,
                           attn_implementation=cfg.attn_implementation)
    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    model.config.use_cache = False  # the KV cache is useless (and warned about) during training
    return model


def run(cfg: SftConfig) -> dict:
    from trl import SFTConfig, SFTTrainer

    from stackllama_cli.models.card import write_model_card
    from stackllama_cli.models.load import load_tokenizer
    from stackllama_cli.models.resolve import make_adapter_portable, resolve_model

    # 1. data and output dir (checked before the model loads: errors come fast)
    run_dir = open_stage_run(cfg, last_checkpoint, inputs=(cfg.model, cfg.base, cfg.data))
    out = run_dir.work
    spec = resolve_model(cfg.model, base=cfg.base)
    tokenizer = load_tokenizer(spec, trust_remote_code=cfg.trust_remote_code)
    fmt = stage_prompt_format(cfg.prompt_format, {spec.name: spec}, tokenizer, spec.name)
    cfg.prompt_format = fmt.name  # recorded in stackllama_config.json
    train_ds, eval_ds = load_texts(cfg, fmt)
    info(f"SFT on {len(train_ds)} texts ({len(eval_ds) if eval_ds else 0} held out), model {spec.name}, "
         f"{fmt.name} prompts, packing {cfg.packing}, sequence length {cfg.seq_length}, "
         f"{describe_batch(cfg.batch_size, cfg.grad_accum)}")
    save_config(cfg, out)

    # 2. model
    model = build_model(cfg, spec)

    # 3. trainer
    args = SFTConfig(
        **training_args_kwargs(cfg, out, has_eval=eval_ds is not None),
        max_length=cfg.seq_length,
        packing=cfg.packing != "none",
        packing_strategy="wrapped" if cfg.packing == "wrapped" else "bfd",
        dataset_text_field="text",
        eos_token=tokenizer.eos_token,
        pad_token=tokenizer.pad_token,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tokenizer, peft_config=lora_config(cfg, "CAUSAL_LM", model))
    install_callbacks(trainer, out, "sft")
    efficiency = non_padding_fraction(trainer.get_train_dataloader())

    # 4. train
    start = time.time()
    resume_from = prepare_resume(out) if cfg.resume else None
    if resume_from:
        info(f"Resuming from {resume_from}")
    result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.time() - start

    # 5. evaluate
    metrics = trainer.evaluate() if eval_ds is not None else {}
    eval_loss = metrics.get("eval_loss")

    # 6. publish the adapter and the run's record
    def save(tmp: Path) -> None:
        trainer.model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_record(tmp, fmt.name)
        make_adapter_portable(tmp, spec)
        write_model_card(tmp, cfg, spec, {"train_loss": result.training_loss, "eval_loss": eval_loss, "steps":
                         result.global_step, "train_texts": len(train_ds), "eval_texts": len(eval_ds or ())})

    publish(save, out)
    records = read_jsonl(out / METRICS_FILENAME) if (out / METRICS_FILENAME).is_file() else []
    tokens = max((r.get("num_tokens") or 0 for r in records), default=0)
    summary = {
        "train_loss": whole_run_loss(result.training_loss, records, resume_from is not None),
        "eval_loss": eval_loss,
        "eval_perplexity": math.exp(eval_loss) if eval_loss is not None and eval_loss < 50 else None,
        "steps": result.global_step,
        "train_texts": len(train_ds),
        "non_padding_fraction": efficiency,
        "tokens": tokens,
        "tokens_per_second": tokens / seconds if tokens and seconds > 0 and not resume_from else None,
        "seconds": round(seconds, 1),
    }
    write_json(out / SUMMARY_FILENAME, summary)
    plot_curves(records, out / "loss.png", [("loss", "train loss"), ("eval_loss", "eval loss")], "SFT loss")
    summary_table(f"sft -> {run_dir.final}", summary)
    finish_run(run_dir)
    return summary
