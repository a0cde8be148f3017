"""The model card (README.md) of every model output: the sft, train-rm and ppo adapters, and merge's models.

Front matter as the Hub reads it (base_model, library_name, license, pipeline_tag, tags, datasets), then
what the model is, how to use it, the data it saw, its final metrics, the resolved config, the library
versions and the command that made it. It replaces peft's template README, inside the stage's publish.
A merged model's card carries the cards of the adapters folded into it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from stackllama_cli.core.cards import (
    CARD_FILENAME,
    CC_BY_SA,
    CC_BY_SA_LINK,
    code_block,
    command_section,
    number,
    read_card,
    render_card,
    table,
    versions_line,
)
from stackllama_cli.core.files import atomic_write_text
from stackllama_cli.models.resolve import ALIASES, SMOLLM2_ALIAS, adapter_base_name

STAGES = {  # config class -> (stage, what it trains, pipeline tag, tags, the stage's own split, data unit)
    "SftConfig": ("sft", "supervised fine-tuning on the preferred answers (TRL's SFTTrainer)", "text-generation",
                  ["sft"], "finetune", "texts"),
    "RewardConfig": ("train-rm", "reward modelling, a one-output sequence classifier trained on preference pairs "
                     "with -logsigmoid(r_j - r_k) (TRL's RewardTrainer)", "text-classification", ["reward-model"],
                     "reward", "pairs"),
    "PpoConfig": ("ppo", "RLHF with PPO against a reward model, KL-penalised towards the SFT model",
                  "text-generation", ["ppo", "rlhf"], "rl", "prompts"),
}
HUB_NAMES = {SMOLLM2_ALIAS: "HuggingFaceTB/SmolLM2-135M-Instruct"}  # our aliases as the Hub names them
LICENSES = {SMOLLM2_ALIAS: "apache-2.0"}
TEMPLATE = "Question: <question>\\n\\nAnswer: <answer>"


def write_model_card(directory: str | Path, cfg, spec, metrics: dict[str, Any]) -> Path:
    """README.md for the adapter a stage trained on `spec` with `cfg`, and its final `metrics`."""
    return atomic_write_text(Path(directory) / CARD_FILENAME, model_card(cfg, spec, metrics))


def model_card(cfg, spec, metrics: dict[str, Any]) -> str:
    from stackllama_cli.core.config import to_dict
    from stackllama_cli.data.sources import data_source, seen

    stage, what, pipeline, tags, role, unit = STAGES[type(cfg).__name__]
    roles = [role] + (["evaluation"] if _evaluated(stage, metrics) else [])
    facts = {r: seen(data_source(cfg, role), r) for r in roles}
    base, inner = base_model(spec), _adapters(spec)
    sites = sorted({s for f in facts.values() if f for s in f["sites"]})
    front = {"base_model": base, "base_model_relation": "adapter", "library_name": "peft",
             "license": model_license(spec), "pipeline_tag": pipeline,
             "tags": ["stackllama", "trl", "peft", "lora", *tags] + (["stackexchange"] if sites else []),
             "datasets": [str(cfg.data)]}
    lora = f"r={cfg.lora_r}, alpha={cfg.lora_alpha}, dropout={cfg.lora_dropout}, modules {cfg.lora_target_modules}"
    intro = (f"A LoRA adapter ({lora}) made by the `{stage}` stage of stackllama: {what}. Base model: `{base}`"
             + (f", with the adapter(s) {', '.join(f'`{a}`' for a in inner)} merged into it when loaded" if inner
                else "") + f". Texts follow the template `{TEMPLATE}`.")
    if stage == "ppo":
        intro += f" Reward model: `{cfg.reward_model}`; the reference policy is the SFT model (this adapter off)."
    body = [f"# {Path(str(cfg.output)).name}", intro, "## Use", _use(stage, str(cfg.output)),
            "## Training data", _data_table(cfg, facts, metrics, unit), _data_notes(facts, sites),
            "## Results", _results(stage, metrics),
            "## Configuration", "The resolved config (`stackllama_config.json`):",
            code_block(_yaml(to_dict(cfg)), "yaml"),
            "## Framework versions", versions_line(), "## Command", command_section("This adapter")]
    return render_card(front, "\n\n".join(body))


def _evaluated(stage: str, metrics: dict[str, Any]) -> bool:
    return {"sft": bool(metrics.get("eval_texts")), "train-rm": bool(metrics.get("evaluation"))}.get(stage, False)


def _use(stage: str, out: str) -> str:
    if stage == "train-rm":
        return (f"Score answers with `stackllama eval-rm {out} --data PAIRS` (accuracy beside the length rule) or "
                f"`stackllama eval-rm {out} --score < answers.jsonl`; `stackllama merge {out} -o {out}-merged` "
                "folds it into a standalone `AutoModelForSequenceClassification` (one logit: the reward).")
    return (f"`stackllama generate {out}` (chat, or JSONL with `--input`); `stackllama merge {out} -o "
            f"{out}-merged` folds it into a standalone model for `transformers`' `AutoModelForCausalLM`.")


def _data_table(cfg, facts: dict, metrics: dict[str, Any], unit: str) -> str:
    used = {"sft": (metrics.get("train_texts"), metrics.get("eval_texts")),
            "train-rm": (metrics.get("train_pairs"), (metrics.get("evaluation") or {}).get("pairs")),
            "ppo": (metrics.get("prompts"), None)}[STAGES[type(cfg).__name__][0]]
    rows = []
    for (role, fact), n in zip(facts.items(), used):
        where = fact["where"] if fact else str(cfg.data)
        rows.append((role, f"`{where}`", number(fact["rows"]) if fact else "-",
                     f"{number(n)} {unit if role != 'evaluation' else 'held out'}"))
    return table(("split", "source", "rows", "used"), rows)


def _data_notes(facts: dict, sites: list[str]) -> str:
    notes = []
    if sites:
        shown = ", ".join(f"[{s}](https://{s})" for s in sites[:20]) + (f" and {len(sites) - 20} more"
                                                                        if len(sites) > 20 else "")
        notes.append(f"StackExchange sites: {shown}.")
    licenses = {f["license"] for f in facts.values() if f and f["license"]}
    if CC_BY_SA in licenses:
        notes.append(f"Licence of the data: [CC BY-SA 4.0]({CC_BY_SA_LINK}) (StackExchange content): reuse must "
                     "credit the posts' authors and share alike.")
    elif licenses:
        notes.append(f"Licence of the data: {', '.join(sorted(licenses))}.")
    else:
        notes.append("Licence of the data: not recorded; see the data's own card.")
    return " ".join(notes)


def _results(stage: str, m: dict[str, Any]) -> str:
    if stage == "sft":
        loss = m.get("eval_loss")
        ppl = math.exp(loss) if isinstance(loss, (int, float)) and loss < 50 else None
        return table(("metric", "value"), [
            ("eval loss (held-out texts)", number(loss)), ("eval perplexity", number(ppl)),
            ("train loss", number(m.get("train_loss"))), ("steps", number(m.get("steps")))])
    if stage == "train-rm":
        ev = m.get("evaluation") or {}
        rows = [("accuracy on held-out pairs (r_j > r_k)", number(ev.get("accuracy"))),
                ("length rule accuracy (the longer answer wins)", number(ev.get("length_rule_accuracy"))),
                ("mean margin r_j - r_k", number(ev.get("mean_margin"))), ("held-out pairs", number(ev.get("pairs"))),
                ("train loss", number(m.get("train_loss"))), ("steps", number(m.get("steps")))]
        verdict = ""
        if ev.get("accuracy") is not None and ev.get("length_rule_accuracy") is not None:
            beats = ev["accuracy"] > ev["length_rule_accuracy"]
            verdict = ("\n\nThe reward model beats the 'longer answer wins' rule on these pairs." if beats else
                       "\n\nThe reward model does not beat the 'longer answer wins' rule on these pairs.")
        return table(("metric", "value"), rows) + verdict
    return table(("metric", "value"), [
        ("steps", number(m.get("steps"))), ("reward, first quarter of steps", number(m.get("reward_first_quarter"))),
        ("reward, last quarter of steps", number(m.get("reward_last_quarter"))),
        ("KL to the SFT model, last step", number(m.get("kl_last"))), ("beta (KL coefficient), last", number(
            m.get("beta_last"))), ("degenerate responses (mean share)", number(m.get("degenerate_rate_mean")))])


def write_merged_card(directory: str | Path, spec, kind: str, diff: float, output: str) -> Path:
    """README.md of a merged model: what was folded into what, and the adapters' own cards carried forward."""
    return atomic_write_text(Path(directory) / CARD_FILENAME, merged_card(spec, kind, diff, output))


def merged_card(spec, kind: str, diff: float, output: str) -> str:
    adapters = _adapters(spec)  # innermost first; the last is the one named to merge
    cards = {a: read_card(a) for a in adapters}
    fronts = [c[0] for c in cards.values() if c]
    outer = fronts[-1] if fronts else {}
    datasets = list(dict.fromkeys(d for f in fronts for d in (f.get("datasets") or []) if isinstance(d, str)))
    tags = [t for t in (outer.get("tags") or ["stackllama"]) if t not in ("peft", "lora")] + ["merged"]
    base = base_model(spec)
    front = {"base_model": base, "base_model_relation": "finetune", "library_name": "transformers",
             "license": outer.get("license") or model_license(spec),
             "pipeline_tag": "text-classification" if kind == "SEQ_CLS" else "text-generation",
             "tags": list(dict.fromkeys(tags)), "datasets": datasets or None}
    auto = "AutoModelForSequenceClassification" if kind == "SEQ_CLS" else "AutoModelForCausalLM"
    names = ", ".join(f"`{a}`" for a in adapters)
    use = f"from transformers import {auto}, AutoTokenizer\n\nmodel = {auto}.from_pretrained({str(output)!r})\n" \
          f"tokenizer = AutoTokenizer.from_pretrained({str(output)!r})"
    body = [f"# {Path(output).name}",
            f"A standalone model made by `stackllama merge`: the LoRA adapter(s) {names} folded into `{base}`. "
            f"Checked on reload: its logits match base + adapter (max |logit diff| {diff:.2e}). Texts follow the "
            f"template `{TEMPLATE}`.", "## Use", code_block(use, "python")]
    for adapter, card in cards.items():
        title = re.match(r"^# (.*)\n", card[1].strip() + "\n") if card else None
        body += [f"## Merged adapter: {title.group(1) + ' ' if title else ''}(`{adapter}`)",
                 _demote(card[1].strip()[title.end():] if title else card[1]) if card else "(no model card there)"]
    body += ["## Framework versions (merge)", versions_line(), "## Command (merge)", command_section("This model")]
    return render_card(front, "\n\n".join(body))


def _demote(markdown: str) -> str:
    """Headings one level down (# -> ##), outside code blocks, so a carried card nests under ours."""
    out, fence = [], None
    for line in markdown.strip().splitlines():
        match = re.match(r"^(`{3,})", line)
        if match and (fence is None or match.group(1).startswith(fence)):
            fence = None if fence else match.group(1)
        out.append("#" + line if fence is None and re.match(r"^#{1,5} ", line) else line)
    return "\n".join(out)


def _adapters(spec) -> list[str]:
    """The adapters of `spec`, innermost first: under a stage's new adapter, or all that merge folds."""
    return [*spec.merged_adapters, spec.adapter] if spec.adapter else []


def base_model(spec) -> str:
    """The base under every adapter, as the Hub names it where we know (aliases), else as given."""
    adapters = _adapters(spec)
    if adapters:
        name = adapter_base_name(adapters[0])
    else:
        name = spec.name if spec.name in ALIASES or spec.is_hub else spec.path
    return HUB_NAMES.get(name, name)


def model_license(spec) -> str:
    """The base model's licence where a card says it (adapters' first, then the base's); 'other' if unknown."""
    adapters = _adapters(spec)
    for directory in [*reversed(adapters), spec.path]:
        card = read_card(directory) if Path(directory).is_dir() else None
        if card and isinstance(card[0].get("license"), str):
            return card[0]["license"]
    name = adapter_base_name(adapters[0]) if adapters else spec.name
    if name in LICENSES:
        return LICENSES[name]
    try:  # a Hub model's card, if its README is in the local Hub cache (no download)
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, CARD_FILENAME)
        if isinstance(cached, str):
            card = read_card(Path(cached).parent)
            if card and isinstance(card[0].get("license"), str):
                return card[0]["license"]
    except Exception:  # not a Hub id, no cache: unknown
        pass
    return "other"


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

