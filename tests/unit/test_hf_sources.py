"""Every form --data takes, through load_split: Hub-layout folders, TRL's format (JSONL, CSV, conversations),
--columns mappings and their errors, a Hub id (datasets faked), and the facts kept for model cards."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.data.columns import message_text, parse_column_map, split_prompt
from stackllama_cli.data.datasets import load_split
from stackllama_cli.data.sources import DataSource, seen


def pairs_table(tag: str, n: int = 2) -> pa.Table:
    return pa.table({"qid": list(range(n)), "question": [f"{tag} q{i}" for i in range(n)],
                     "response_j": [f"{tag} good {i}" for i in range(n)],
                     "response_k": [f"{tag} bad {i}" for i in range(n)],
                     "metadata": [[f"https://beer.stackexchange.com/questions/{i}"] for i in range(n)]})


@pytest.fixture
def hub_layout(tmp_path):
    """A local copy of a dataset laid out like lvwerra/stack-exchange-paired: data/<split>/train-*.parquet."""
    root = tmp_path / "stack-exchange-paired"
    for split, shards in (("finetune", 1), ("reward", 1), ("rl", 2), ("evaluation", 1)):
        (root / "data" / split).mkdir(parents=True)
        for i in range(shards):
            pq.write_table(pairs_table(f"{split}{i}"), root / "data" / split / f"train-0000{i}-of-0000{shards}.parquet")
    return root


def test_hub_layout_folder_gives_each_role_its_folder(hub_layout):
    rl = load_split(hub_layout, "rl")
    assert len(rl) == 4 and rl["question"][0].startswith("rl0")  # both shards of data/rl
    assert load_split(hub_layout, "evaluation")["question"][0].startswith("evaluation0")
    facts = seen(DataSource(str(hub_layout)), "rl")
    assert facts["rows"] == 4 and facts["split"] == "train" and facts["where"].endswith("data/rl (split 'train')")
    assert facts["sites"] == ["beer.stackexchange.com"] and facts["license"] == "cc-by-sa-4.0"  # from metadata


def test_data_dir_and_split_pick_the_stage_split_not_the_evaluation(hub_layout):
    source = DataSource(str(hub_layout), data_dir="data/reward", role="reward")
    assert load_split(source, "reward")["question"][0].startswith("reward0")  # the folder's only split ('train')
    # held-out data is still found at the root, never taken from the training folder's only split
    assert load_split(source, "evaluation")["question"][0].startswith("evaluation0")
    explicit = DataSource(str(hub_layout), data_dir="data/reward", split="train", role="reward")
    assert len(load_split(explicit, "reward")) == 2
    with pytest.raises(StackLlamaError, match=r"no 'test' split .*found: train.*--split"):
        load_split(DataSource(str(hub_layout), data_dir="data/reward", split="test", role="reward"), "reward")


def test_single_split_folder_is_not_evaluation_data(tmp_path):
    (tmp_path / "d").mkdir()
    pq.write_table(pairs_table("x"), tmp_path / "d" / "pairs.parquet")
    assert len(load_split(DataSource(str(tmp_path / "d"), role="reward"), "reward")) == 2
    with pytest.raises(StackLlamaError, match="no 'evaluation' split"):
        load_split(DataSource(str(tmp_path / "d"), role="reward"), "evaluation")


def test_trl_strings_in_jsonl_and_csv(tmp_path):
    rows = [{"prompt": "How cold?", "chosen": "About 8 C.", "rejected": "Hot."},
            {"prompt": "Which hops?", "chosen": "Cascade,\nfor aroma.", "rejected": "Any."}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_split(tmp_path / "p.jsonl", "reward")
    assert ds["question"] == ["How cold?", "Which hops?"] and ds["response_k"] == ["Hot.", "Any."]
    (tmp_path / "p.csv").write_text('prompt,chosen,rejected\n"How cold?","About 8 C.",Hot.\n'
                                    '"Which hops?","Cascade,\nfor aroma.",Any.\n')
    csv = load_split(tmp_path / "p.csv", "finetune", columns=("question", "response_j"))
    assert csv["response_j"] == ["About 8 C.", "Cascade,\nfor aroma."]  # quoted comma and newline kept


def test_trl_conversations_explicit_and_implicit_prompt(tmp_path):
    user = {"role": "user", "content": "How cold?"}
    rows = [{"prompt": [{"role": "system", "content": "Be brief."}, user],
             "chosen": [{"role": "assistant", "content": "8 C."}],
             "rejected": [{"role": "assistant", "content": "Hot."}]}]
    (tmp_path / "c.jsonl").write_text(json.dumps(rows[0]) + "\n")
    ds = load_split(tmp_path / "c.jsonl", "reward")
    assert ds[0] == {"question": "system: Be brief.\n\nuser: How cold?", "response_j": "8 C.", "response_k": "Hot."}
    implicit = {"chosen": [user, {"role": "assistant", "content": "8 C."}],
                "rejected": [user, {"role": "assistant", "content": "Hot."}]}
    (tmp_path / "i.jsonl").write_text(json.dumps(implicit) + "\n")
    row = load_split(tmp_path / "i.jsonl", "reward")[0]
    assert (row["question"], row["response_j"], row["response_k"]) == ("How cold?", "8 C.", "Hot.")


def test_pure_column_helpers():
    assert parse_column_map(" question=q , response_j=good ") == {"question": "q", "response_j": "good"}
    assert split_prompt("Human: hi Assistant: hello there", "Human: hi Assistant: go away") == (
        "Human: hi Assistant:", "hello there", "go away")
    assert split_prompt("Q: x. A: yes", "Q: x. A: yet") == ("Q: x. A:", "yes", "yet")  # never splits a word
    assert split_prompt([1, 2, 3], [1, 2, 4]) == ([1, 2], [3], [4])
    assert message_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]) == "a\n\nb"
    assert message_text("plain") == "plain"


def test_columns_mapping_and_its_errors(tmp_path):
    pq.write_table(pa.table({"q": ["x"], "good": ["a"], "bad": ["b"], "s1": [3], "s2": [1]}), tmp_path / "o.parquet")
    source = DataSource(str(tmp_path / "o.parquet"), columns="question=q,response_j=good,response_k=bad,"
                                                             "score_j=s1,score_k=s2")
    row = load_split(source, "reward")[0]
    assert row == {"question": "x", "response_j": "a", "response_k": "b", "score_j": 3, "score_k": 1}
    with pytest.raises(StackLlamaError, match=r"lacks column\(s\) question, response_j, response_k "
                                              r"\(has: q, good, bad, s1, s2\); name them with --columns"):
        load_split(tmp_path / "o.parquet", "reward")
    for columns, message in (("question", "OURS=THEIRS"), ("answer=q", "not one of our columns"),
                             ("question=nope", r"has no column 'nope' \(has: q, good, bad, s1, s2\)"),
                             ("question=q,question=good", "twice")):
        with pytest.raises(StackLlamaError, match=message):
            load_split(DataSource(str(tmp_path / "o.parquet"), columns=columns), "reward")


def test_prepare_data_directory_and_bad_paths(sample_data_dir, tmp_path):
    ds = load_split(sample_data_dir, "finetune")
    facts = seen(DataSource(str(sample_data_dir)), "finetune")
    assert facts["kind"] == "prepare-data" and facts["rows"] == len(ds) == 25
    assert facts["sites"] == ["sample.stackexchange.com"] and facts["license"] == "cc-by-sa-4.0"
    with pytest.raises(StackLlamaError, match="does not exist"):
        load_split(tmp_path / "nope", "rl")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(StackLlamaError, match="not a Parquet, JSONL, JSON or CSV file"):
        load_split(tmp_path / "notes.txt", "rl")
    with pytest.raises(StackLlamaError, match="--data-dir needs a folder"):
        load_split(DataSource(str(tmp_path / "notes.txt"), data_dir="data/rl"), "rl")


def test_hub_id_goes_through_datasets_with_data_dir_and_split(monkeypatch, hub_layout):
    """The Hub is out of reach in tests: datasets' two entry points are served from the local copy."""
    import datasets

    calls = []
    real_builder = datasets.load_dataset_builder

    def builder(path, data_dir=None, **kwargs):
        calls.append(("builder", path, data_dir))
        assert path == "lvwerra/stack-exchange-paired"
        return real_builder(str(hub_layout / (data_dir or "")), cache_dir=str(hub_layout.parent / "cache"))

    def load(path, data_dir=None, split=None, **kwargs):
        calls.append(("load", path, data_dir, split))
        return datasets.Dataset(pq.read_table(next((hub_layout / data_dir).glob("*.parquet"))))

    monkeypatch.setattr(datasets, "load_dataset_builder", builder)
    monkeypatch.setattr(datasets, "load_dataset", load)
    ds = load_split(DataSource("lvwerra/stack-exchange-paired", role="rl"), "rl")
    assert calls[-1] == ("load", "lvwerra/stack-exchange-paired", "data/rl", "train") and len(ds) == 2
    calls.clear()
    load_split(DataSource("lvwerra/stack-exchange-paired", data_dir="data/finetune", role="finetune"), "finetune")
    assert calls[-2:] == [("builder", "lvwerra/stack-exchange-paired", "data/finetune"),
                          ("load", "lvwerra/stack-exchange-paired", "data/finetune", "train")]


def test_unreachable_hub_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StackLlamaError, match="does not exist here, and the Hub cannot give it"):
        load_split("someone/no-such-dataset", "rl")
