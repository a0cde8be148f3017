"""prepare-data's split writers: Parquet row groups as full as memory allows, memory bounded for long texts."""

import math
import random
import sys
from collections import Counter

import pyarrow.parquet as pq
import pytest

from stackllama_cli.data.datasets import SPLITS, data_filename
from stackllama_cli.data import writers
from stackllama_cli.data.writers import ROW_GROUP, SplitWriters

TEXTS = ("question", "response_j", "response_k")


def row(i: int, question_chars: int, answer_chars: int, char: str = "x") -> dict:
    return {"qid": i, "question": char * question_chars, "date": "2020-01-01",
            "metadata": [f"https://s/questions/{i}", f"https://s/a/{i}", f"https://s/a/{i + 1}"],
            "response_j": char * answer_chars, "response_k": char * answer_chars, "answer_id_j": i,
            "answer_id_k": i + 1, "score_j": 2, "score_k": 0, "site": "s"}


def held(writers: SplitWriters) -> int:
    """Bytes of the texts in the writers' buffers, as Python holds them (1, 2 or 4 bytes a character)."""
    return sum(sys.getsizeof(r[k]) for rows in writers.buffers.values() for r in rows for k in TEXTS)


def write_rows(folder, n: int, question_chars: int, answer_chars: int, char: str = "x",
               measure: bool = False) -> tuple[Counter, int]:
    """n rows spread over the splits in the default shares; (rows per split, most text bytes ever buffered
    if `measure`)."""
    writers = SplitWriters(folder, "parquet")
    rng = random.Random(0)
    counts, most = Counter(), 0
    for i in range(n):
        split = rng.choices(SPLITS, weights=[0.35, 0.35, 0.15, 0.15])[0]
        counts[split] += 1
        writers.write(split, row(i, question_chars, answer_chars, char))
        if measure:
            most = max(most, held(writers))
    writers.close()
    return counts, most


def test_rows_of_usual_size_fill_whole_row_groups(tmp_path):
    """Parquet keeps each row group's metadata in memory until the file closes (~9 KB a group), so row
    groups cut short by the bound on buffered text made memory grow with the dump (~25 bytes a row on
    beer-like rows): rows of a few KB of text must fill ROW_GROUP rows."""
    counts, _ = write_rows(tmp_path, 5 * ROW_GROUP, 1500, 1500)
    for split in SPLITS:
        meta = pq.ParquetFile(tmp_path / data_filename(split, "parquet")).metadata
        assert meta.num_rows == counts[split]
        assert meta.num_row_groups == math.ceil(counts[split] / ROW_GROUP), split


@pytest.mark.parametrize("char", ["x", "中", "🍺"])  # 1, 2 and 4 bytes a character in a Python str
def test_long_texts_are_written_out_before_they_pile_up(tmp_path, monkeypatch, char):
    bound = 2**20  # (BUFFERED_BYTES scaled down, for speed)
    monkeypatch.setattr(writers, "BUFFERED_BYTES", bound)
    long = bound // 160
    counts, most = write_rows(tmp_path, 200, long, long, char, measure=True)
    assert most <= bound + sum(sys.getsizeof(row(0, long, long, char)[k]) for k in TEXTS)  # one row past it at most
    for split in SPLITS:
        assert pq.ParquetFile(tmp_path / data_filename(split, "parquet")).metadata.num_rows == counts[split]
