"""Fold a LoRA adapter into its base: a standalone safetensors model directory.

The check that matters is done for real: the saved directory is reloaded and its
logits are compared with base + adapter on the same input.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stackllama_cli.core.console import info, progress
from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.core.files import atomic_dir
from stackllama_cli.data.prompt_format import write_record
from stackllama_cli.models.card import write_merged_card
from stackllama_cli.models.load import REWARD_STATS_FILENAME, recorded_prompt_format
from stackllama_cli.models.resolve import adapter_task_type, resolve_model

PROBE = "Question: How do I store coffee beans?\n\nAnswer: Keep them airtight, dark and cool."


def _load(spec, kind: str, merged_dir: Path | None = None):
    from stackllama_cli.models.load import load_causal_lm, load_reward_model, load_tokenizer
    from stackllama_cli.models.resolve import ModelSpec

    if merged_dir is not None:
        spec = ModelSpec(name=str(merged_dir), path=str(merged_dir))
    tokenizer = load_tokenizer(spec)
    if kind == "SEQ_CLS":
        return load_reward_model(spec, precision="fp32", pad_token_id=tokenizer.pad_token_id,
                                 merge_adapter=False), tokenizer
    return load_causal_lm(spec, precision="fp32", merge_adapter=False), tokenizer


def _logits(model, tokenizer):
    import torch

    batch = tokenizer([PROBE], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits.float()


def merge(adapter: str, output: str, base: str | None = None, overwrite: bool = False) -> dict:
    spec = resolve_model(adapter, base=base)
    if not spec.adapter:
        raise StackLlamaError(f"{adapter} is not a LoRA adapter directory (no adapter_config.json); "
                              "nothing to merge")
    kind = adapter_task_type(spec.adapter) or "CAUSAL_LM"
    if kind not in ("CAUSAL_LM", "SEQ_CLS"):
        raise StackLlamaError(f"cannot merge a {kind} adapter: only causal-LM and sequence-classification ones")
    with progress(transient=True) as bar:  # minutes for a large model: say which phase it is in
        task = bar.add_task("merge: load base + adapter", total=3, extra="phases")
        model, tokenizer = _load(spec, kind)
        expected = _logits(model, tokenizer)
        merged = model.merge_and_unload()
        bar.update(task, advance=1, description="merge: save")
        with atomic_dir(output, overwrite=overwrite) as tmp:
            merged.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            stats = Path(spec.adapter) / REWARD_STATS_FILENAME
            if stats.is_file():
                shutil.copy(stats, tmp / REWARD_STATS_FILENAME)
            fmt = recorded_prompt_format(spec)
            if fmt is not None:  # the merged model is read in the format its adapters were trained with
                write_record(tmp, fmt)
            bar.update(task, advance=1, description="merge: reload and check")
            reloaded, _ = _load(spec, kind, merged_dir=tmp)
            diff = float((_logits(reloaded, tokenizer) - expected).abs().max())
            if diff > 1e-3:
                raise StackLlamaError(f"merged model differs from base + adapter (max |logit diff| {diff:.3g}); "
                                      "nothing was written")
            write_merged_card(tmp, spec, kind, diff, output)  # the adapters' cards carried forward
            bar.advance(task)
    info(f"Merged {kind} adapter {spec.adapter} into {spec.path} -> [bold]{output}[/] "
         f"(max |logit diff| vs base + adapter: {diff:.2e})")
    return {"output": str(output), "task": kind, "base": spec.path, "adapter": spec.adapter,
            "max_abs_logit_diff": diff}
