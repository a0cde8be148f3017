"""prepare-data's split writers: Parquet row groups as full as memory allows, memory bounded for long texts."""

import math
import random
from collections import Counter

import pyarrow.parquet as pq

from stackllama_cli.data.datasets import SPLITS, data_filename
from stackllama_cli.data.writers import BUFFERED_CHARS, ROW_GROUP, SplitWriters


def row(i: int, question_chars: int, answer_chars: int) -> dict:
    return {"qid": i, "question": "q" * question_chars, "date": "2020-01-01",
            "metadata": [f"https://s/questions/{i}", f"https://s/a/{i}", f"https://s/a/{i + 1}"],
            "response_j": "j" * answer_chars, "response_k": "k" * answer_chars, "answer_id_j": i,
            "answer_id_k": i + 1, "score_j": 2, "score_k": 0, "site": "s"}


def write_rows(folder, n: int, question_chars: int, answer_chars: int) -> tuple[Counter, int]:
    """n rows spread over the splits in the default shares; (rows per split, most text ever buffered)."""
    writers = SplitWriters(folder, "parquet")
    rng = random.Random(0)
    counts, most = Counter(), 0
    for i in range(n):
        split = rng.choices(SPLITS, weights=[0.35, 0.35, 0.15, 0.15])[0]
        counts[split] += 1
        writers.write(split, row(i, question_chars, answer_chars))
        most = max(most, sum(writers.buffered.values()))
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


def test_long_texts_are_written_out_before_they_pile_up(tmp_path):
    long = BUFFERED_CHARS // 40
    counts, most = write_rows(tmp_path, 200, long, long)
    assert most <= BUFFERED_CHARS + 3 * long  # one row past the bound at most
    for split in SPLITS:
        assert pq.ParquetFile(tmp_path / data_filename(split, "parquet")).metadata.num_rows == counts[split]
