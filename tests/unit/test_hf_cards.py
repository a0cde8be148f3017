"""Model and dataset cards: the front matter the Hub reads, the sections, and `datasets` reading prepare-data's card."""

import json
import math

import pytest
import yaml

from stackllama_cli.core import cards
from stackllama_cli.core.cards import parse_card, record_command
from stackllama_cli.data.card import dataset_card, size_category
from stackllama_cli.data.datasets import load_split
from stackllama_cli.data.prepare import PrepareConfig
from stackllama_cli.data.sources import data_source
from stackllama_cli.models.card import _demote, merged_card, model_card
from stackllama_cli.models.resolve import ModelSpec
from stackllama_cli.stages.ppo.config import PpoConfig
from stackllama_cli.stages.reward import RewardConfig
from stackllama_cli.stages.sft import SftConfig


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch):
    """No command recorded and no data seen yet, whatever ran before in this process."""
    from stackllama_cli.data import sources

    monkeypatch.setattr(cards, "_command", None)
    monkeypatch.setattr(sources, "_seen", {})


def front_and_body(text: str):
    from huggingface_hub import ModelCard

    card = ModelCard(text)  # the Hub's own parser
    front, body = parse_card(text)
    assert front == yaml.safe_load(text.split("---\n")[1]) and body.strip()
    return card.data, front, body


def adapter_dir(path, base, card_text=None):
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base}))
    if card_text:
        (path / "README.md").write_text(card_text)
    return path


def test_sft_card(sample_data_dir, tmp_path):
    cfg = SftConfig(model="smollm2-135m", data=str(sample_data_dir), output=str(tmp_path / "sft"), max_steps=4)
    for role in ("finetune", "evaluation"):  # what the stage loads; the card reports what was seen
        load_split(data_source(cfg, "finetune"), role)
    record_command(["sft", "--data", str(sample_data_dir), "--max-steps", "4"])
    text = model_card(cfg, ModelSpec(name="smollm2-135m", path=str(tmp_path / "cache")),
                      {"train_loss": 2.5, "eval_loss": math.log(20), "steps": 4, "train_texts": 23, "eval_texts": 17})
    data, front, body = front_and_body(text)
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and data.library_name == "peft"
    assert data.license == "apache-2.0" and data.datasets == [str(sample_data_dir)]
    assert {"stackllama", "sft", "lora", "stackexchange"} <= set(data.tags) and front["pipeline_tag"] == "text-generation"
    assert "| eval perplexity | 20 |" in body and "| train loss | 2.5 |" in body and "| steps | 4 |" in body
    assert "| finetune | `" in body and "finetune-00000-of-00001.parquet` | 25 | 23 texts |" in body
    assert "| evaluation | `" in body and "| 17 | 17 held out |" in body
    assert "[sample.stackexchange.com](https://sample.stackexchange.com)" in body and "CC BY-SA 4.0" in body
    assert f"stackllama sft --data {sample_data_dir} --max-steps 4" in body and "transformers " in body
    config = yaml.safe_load(body.split("```yaml\n")[1].split("```")[0])
    assert config["max_steps"] == 4 and config["seq_length"] == cfg.seq_length


def test_reward_card_puts_accuracy_beside_the_length_rule(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    cfg = RewardConfig(model=str(base), data=str(tmp_path / "pairs.jsonl"), output=str(tmp_path / "rm"))
    evaluation = {"accuracy": 0.7, "length_rule_accuracy": 0.6, "mean_margin": 0.25, "pairs": 40}
    data, front, body = front_and_body(model_card(cfg, ModelSpec(name=str(base), path=str(base)), {
        "train_loss": 0.6, "steps": 10, "train_pairs": 80, "evaluation": evaluation}))
    assert data.base_model == str(base) and data.license == "other" and front["pipeline_tag"] == "text-classification"
    assert "| accuracy on held-out pairs (r_j > r_k) | 0.7 |" in body
    assert "| length rule accuracy (the longer answer wins) | 0.6 |" in body
    assert "beats the 'longer answer wins' rule" in body and "| held-out pairs | 40 |" in body
    assert "called from Python" not in body and "a call from Python" in body


def test_ppo_card_names_the_chain_and_inherits_the_licence(tmp_path):
    sft = adapter_dir(tmp_path / "sft", "smollm2-135m", "---\nlicense: apache-2.0\n---\n\n# sft\n")
    cfg = PpoConfig(model=str(sft), reward_model="runs/rm", data="lvwerra/stack-exchange-paired",
                    output=str(tmp_path / "ppo"))
    spec = ModelSpec(name=str(sft), path=str(tmp_path / "cache"), adapter=str(sft))
    data, front, body = front_and_body(model_card(cfg, spec, {
        "steps": 8, "prompts": 9, "reward_first_quarter": -0.5, "reward_last_quarter": 0.25, "kl_last": 0.8,
        "beta_last": 0.19, "degenerate_rate_mean": 0.0}))
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and data.license == "apache-2.0"
    assert data.datasets == ["lvwerra/stack-exchange-paired"] and {"ppo", "rlhf"} <= set(data.tags)
    assert f"`{sft}` merged into it when loaded" in body and "Reward model: `runs/rm`" in body
    assert "| reward, last quarter of steps | 0.25 |" in body and "| KL to the SFT model, last step | 0.8 |" in body
    assert "| rl | `lvwerra/stack-exchange-paired` | - | 9 prompts |" in body  # not loaded here: where known


def test_merged_card_carries_the_adapters_cards(tmp_path):
    sft = adapter_dir(tmp_path / "sft", "smollm2-135m", "---\nlicense: apache-2.0\ndatasets:\n- data/se\n---\n\n"
                      "# sft\n\n## Results\n\n```bash\n# not a heading\n```\n")
    ppo = adapter_dir(tmp_path / "ppo", str(sft), "---\nlicense: apache-2.0\ntags: [stackllama, peft, lora, ppo]\n"
                      "datasets:\n- data/se\n- other/set\n---\n\n# ppo\n\n## Results\n\nreward up\n")
    spec = ModelSpec(name=str(ppo), path=str(tmp_path / "cache"), adapter=str(ppo), merged_adapters=(str(sft),))
    data, front, body = front_and_body(merged_card(spec, "CAUSAL_LM", 2e-6, str(tmp_path / "ppo-merged")))
    assert data.library_name == "transformers" and front["base_model_relation"] == "finetune"
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and data.license == "apache-2.0"
    assert data.datasets == ["data/se", "other/set"] and data.tags == ["stackllama", "ppo", "merged"]
    assert body.startswith("# ppo-merged\n")
    assert f"## Merged adapter: sft (`{sft}`)\n\n### Results\n\n```bash\n# not a heading" in body
    assert f"## Merged adapter: ppo (`{ppo}`)\n\n### Results\n\nreward up" in body
    assert "max |logit diff| 2.00e-06" in body
    assert f"AutoModelForCausalLM.from_pretrained('{tmp_path / 'ppo-merged'}')" in body


def test_demote_and_size_categories():
    assert _demote("# a\n```\n# b\n```\n## c") == "## a\n```\n# b\n```\n### c"
    assert [size_category(n) for n in (0, 999, 1000, 99_999, 5_000_000, 20_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M", "n>10M"]


def stats(splits):
    return {"inputs": ["beer.7z"], "sites": ["beer.stackexchange.com", "ru.stackoverflow.com"], "rows": 100,
            "questions": 20, "answers": 80, "pairs": sum(p for _, p in splits.values()), "questions_with_pairs": 9,
            "bodies_converted": 50, "splits": {s: {"questions": q, "pairs": p} for s, (q, p) in splits.items()},
            "dropped": {"orphan_answers": 2, "tied_pairs": 7}}


def test_dataset_card_text():
    cfg = PrepareConfig(inputs=["beer.7z"], format="jsonl", splits="finetune=0.5,reward=0.5")
    text = dataset_card(stats({"finetune": (5, 12), "reward": (4, 9), "rl": (0, 0), "evaluation": (0, 0)}), cfg)
    front, body = parse_card(text)
    assert front["license"] == "cc-by-sa-4.0" and front["language"] == ["en", "ru"]
    assert front["configs"] == [{"config_name": "default", "default": True, "data_files": [
        {"split": "finetune", "path": "data/finetune-*"}, {"split": "reward", "path": "data/reward-*"}]}]
    assert "| rl | 0 | 0 | (empty: no file) |" in body and "| reward | 4 | 9 | `data/reward-00000-of-00001.jsonl` |" in body
    assert "`round(log2(1 + upvotes)) + 1 if accepted, -1 for negative votes`" in body
    assert "| orphan answers | 2 |" in body and "| tied pairs | 7 |" in body
    assert "[beer.stackexchange.com](https://beer.stackexchange.com)" in body and 'load_dataset("json"' in body


def test_dataset_card_schema_is_the_writers_schema():
    from stackllama_cli.data.card import COLUMNS
    from stackllama_cli.data.writers import parquet_schema

    schema = parquet_schema()
    assert [(n, t) for n, t, _ in COLUMNS] == [(f.name, str(f.type).replace("list<item: string>", "list<string>"))
                                               for f in schema]


def test_prepare_data_card_is_read_by_datasets(sample_data_dir, tmp_path):
    import datasets
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(sample_data_dir / "README.md")
    assert card.data.license == "cc-by-sa-4.0"
    assert [f["split"] for f in card.data.configs[0]["data_files"]] == ["finetune", "reward", "rl", "evaluation"]
    counts = json.loads((sample_data_dir / "stats.json").read_text())["splits"]
    for ds in (datasets.load_dataset("parquet", data_dir=str(sample_data_dir), cache_dir=str(tmp_path / "a")),
               datasets.load_dataset(str(sample_data_dir), cache_dir=str(tmp_path / "b"))):  # the card's configs
        assert {split: len(ds[split]) for split in ds} == {s: c["pairs"] for s, c in counts.items()}
    body = (sample_data_dir / "README.md").read_text()
    assert "| finetune | 8 | 25 |" in body and "bundled sample dump" in body
