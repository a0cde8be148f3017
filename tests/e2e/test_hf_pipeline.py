"""The pipeline on data in other forms, with trackers and cards: sft on TRL-format JSONL logging to
tensorboard, train-rm and ppo on a folder laid out as the Hub lays out lvwerra/stack-exchange-paired,
merge carrying the cards forward, eval-rm on a CSV mapped with --columns."""

import json
import math
import shutil

import pytest
import torch

from tests.conftest import load_safetensors, run_ok


def scalar_tags(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(folder.rglob("events.out.tfevents.*"))
    assert events, f"no tensorboard events under {folder}"
    tags = set()
    for path in events:
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


def card(directory):
    from huggingface_hub import ModelCard

    loaded = ModelCard.load(directory / "README.md")  # a local path: the Hub's own parser, no download
    return loaded.data, loaded.text


@pytest.fixture(scope="module")
def hub_copy(sample_data_dir, tmp_path_factory):
    """prepare-data's splits in the Hub layout of the original recipe: data/<split>/train-00000-of-00001.parquet."""
    root = tmp_path_factory.mktemp("hub") / "stack-exchange-paired"
    for split in ("finetune", "reward", "rl", "evaluation"):
        (root / "data" / split).mkdir(parents=True)
        shutil.copy(sample_data_dir / "data" / f"{split}-00000-of-00001.parquet",
                    root / "data" / split / "train-00000-of-00001.parquet")
    return root


@pytest.fixture(scope="module")
def trl_jsonl(sample_data_dir, tmp_path_factory):
    """The finetune split as TRL conversations: prompt / chosen / rejected lists of messages."""
    from stackllama_cli.data.datasets import load_split

    ds = load_split(sample_data_dir, "finetune")
    path = tmp_path_factory.mktemp("trl") / "pairs.jsonl"
    with open(path, "w") as fh:
        for q, j, k in zip(ds["question"], ds["response_j"], ds["response_k"]):
            fh.write(json.dumps({"prompt": [{"role": "user", "content": q}],
                                 "chosen": [{"role": "assistant", "content": j}],
                                 "rejected": [{"role": "assistant", "content": k}]}) + "\n")
    return path


@pytest.fixture(scope="module")
def runs(tiny_model_dir, trl_jsonl, hub_copy, tmp_path_factory):
    root = tmp_path_factory.mktemp("hf-runs")
    sft, rm, ppo, merged = root / "sft", root / "rm", root / "ppo", root / "merged"
    run_ok("sft", "--model", tiny_model_dir, "--data", trl_jsonl, "--output", sft, "--max-steps", "2", "--seq-length",
           "128", "--batch-size", "2", "--learning-rate", "5e-3", "--warmup-steps", "0", "--logging-steps", "1",
           "--report-to", "tensorboard", "--run-name", "hf-sft")
    run_ok("train-rm", "--model", sft, "--data", hub_copy, "--output", rm, "--max-steps", "2", "--max-length", "256",
           "--truncate", "--batch-size", "2", "--eval-pairs", "6", "--stats-pairs", "4")
    run_ok("ppo", "--model", sft, "--reward-model", rm, "--data", hub_copy, "--data-dir", "data/rl", "--output", ppo,
           "--steps", "2", "--batch-size", "2", "--mini-batch-size", "2", "--ppo-epochs", "1", "--min-new-tokens", "4",
           "--max-new-tokens", "8", "--log-samples", "0", "--report-to", "tensorboard", "--run-name", "hf-ppo")
    run_ok("merge", ppo, "--output", merged)
    return {"sft": sft, "rm": rm, "ppo": ppo, "merged": merged}


def test_sft_on_trl_conversations_logs_to_tensorboard(runs, trl_jsonl):
    sft = runs["sft"]
    assert {"train/loss", "train/learning_rate"} <= scalar_tags(sft / "runs" / "hf-sft")
    losses = [r["loss"] for r in map(json.loads, (sft / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert losses and all(math.isfinite(x) for x in losses)
    final = load_safetensors(sft / "adapter_model.safetensors")
    assert all(final[k].abs().sum() > 0 for k in final if "lora_B" in k)  # B starts at zero: it trained
    data, text = card(sft)
    assert data.library_name == "peft" and data.base_model.endswith("tiny-llama0") and data.license == "other"
    assert data.datasets == [str(trl_jsonl)] and "sft" in data.tags
    assert f"| finetune | `{trl_jsonl}` | 25 | 15 texts |" in text  # 25 pairs, 15 distinct texts
    assert "stackllama sft --model" in text and "--report-to tensorboard --run-name hf-sft" in text
    assert "More Information Needed" not in text  # peft's template card is replaced


def test_train_rm_on_the_hub_layout_reports_accuracy_beside_the_length_rule(runs, hub_copy):
    data, text = card(runs["rm"])
    assert data.pipeline_tag == "text-classification" and "reward-model" in data.tags
    assert data.datasets == [str(hub_copy)] and "stackexchange" in data.tags
    assert f"| reward | `{hub_copy}/data/reward/train-00000-of-00001.parquet` | 38 |" in text
    assert f"| evaluation | `{hub_copy}/data/evaluation/train-00000-of-00001.parquet` | 17 | 6 held out |" in text
    assert "| accuracy on held-out pairs (r_j > r_k) |" in text and "| length rule accuracy" in text
    assert "CC BY-SA 4.0" in text and "[sample.stackexchange.com](https://sample.stackexchange.com)" in text
    summary = json.loads((runs["rm"] / "reward_summary.json").read_text())
    assert f"| {summary['evaluation']['accuracy']:.4g} |" in text


def test_ppo_with_data_dir_logs_through_accelerate_trackers(runs, hub_copy):
    ppo = runs["ppo"]
    assert {"reward_mean", "kl", "beta"} <= scalar_tags(ppo / "runs" / "hf-ppo")
    data, text = card(ppo)
    assert {"ppo", "rlhf"} <= set(data.tags) and data.base_model.endswith("tiny-llama0")
    assert f"| rl | `{hub_copy}/data/rl/train-00000-of-00001.parquet` | 9 |" in text
    assert "| reward, last quarter of steps |" in text and f"`{runs['sft'].resolve()}` merged into it" in text
    records = [json.loads(line) for line in (ppo / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(math.isfinite(r["reward_mean"]) and math.isfinite(r["kl"]) for r in records)


def test_merge_carries_the_cards_forward(runs):
    data, text = card(runs["merged"])
    assert data.library_name == "transformers" and data.base_model.endswith("tiny-llama0")
    assert "merged" in data.tags and "ppo" in data.tags
    sft, ppo = runs["sft"].resolve(), runs["ppo"].resolve()
    assert f"## Merged adapter: sft (`{sft}`)" in text and f"## Merged adapter: ppo (`{ppo}`)" in text
    assert "### Results" in text and "stackllama merge" in text
    merged_weights = load_safetensors(runs["merged"] / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in merged_weights.values())


def test_eval_rm_on_a_csv_mapped_with_columns(runs, sample_data_dir, tmp_path, run_cli):
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    table = pq.read_table(sample_data_dir / "data" / "evaluation-00000-of-00001.parquet")
    table = table.select(["question", "response_j", "response_k"]).rename_columns(["q", "good", "bad"])
    pcsv.write_csv(table, tmp_path / "pairs.csv")
    result = run_cli("eval-rm", runs["rm"], "--data", tmp_path / "pairs.csv",
                     "--columns", "question=q,response_j=good,response_k=bad", "--json")
    assert result.exit_code == 0, result
    report = json.loads(result.stdout)
    assert report["pairs"] == 17 and 0 <= report["accuracy"] <= 1 and "length_rule_accuracy" in report
    result = run_cli("eval-rm", runs["rm"], "--data", tmp_path / "pairs.csv")
    assert result.exit_code == 1 and "lacks column(s) question, response_j, response_k (has: q, good, bad)" in \
        result.stderr and len(result.stderr.strip().splitlines()) == 1
