"""Streaming writers for prepare-data rows: one Parquet or JSONL file per split, or JSONL on stdout.

Rows are written in row groups as questions complete, so memory holds one buffer per
split instead of the whole output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

from stackllama_cli.data.datasets import SPLITS, data_filename

ROW_GROUP = 2048  # rows per Parquet row group: small enough to bound memory, large enough to compress well


def parquet_schema():
    import pyarrow as pa

    return pa.schema([("qid", pa.int64()), ("question", pa.string()), ("date", pa.string()),
                      ("metadata", pa.list_(pa.string())), ("response_j", pa.string()),
                      ("response_k", pa.string()), ("answer_id_j", pa.int64()), ("answer_id_k", pa.int64()),
                      ("score_j", pa.int64()), ("score_k", pa.int64()), ("site", pa.string())])


class SplitWriters:
    """`write(split, row)` for the four splits; `close()` flushes. `folder=None` writes JSONL to stdout
    (one object a line, with its split in a `split` field)."""

    def __init__(self, folder: Path | None, fmt: str = "parquet", stdout: IO[str] | None = None):
        self.folder, self.fmt = folder, fmt
        self.stdout = (stdout or sys.stdout) if folder is None else None
        self.buffers: dict[str, list[dict]] = {s: [] for s in SPLITS}
        self.files: dict[str, object] = {}  # opened on a split's first row: an empty split gets no file,
        # because an empty Parquet file makes datasets.load_dataset fail; stages report a missing split

    def write(self, split: str, row: dict) -> None:
        if self.stdout is not None:
            self.stdout.write(json.dumps({"split": split, **row}, ensure_ascii=False) + "\n")
            return
        if split not in self.files:
            self.files[split] = self._open(split)
        if self.fmt == "jsonl":
            self.files[split].write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        buffer = self.buffers[split]
        buffer.append(row)
        if len(buffer) >= ROW_GROUP:
            self._flush(split)

    def _open(self, split: str):
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / data_filename(split, self.fmt)
        if self.fmt == "jsonl":
            return open(path, "w", encoding="utf-8")
        import pyarrow.parquet as pq

        return pq.ParquetWriter(path, parquet_schema())

    def _flush(self, split: str) -> None:
        import pyarrow as pa

        rows = self.buffers[split]
        if rows:
            schema = parquet_schema()
            # column lists -> from_pydict: ~6x faster than from_pylist on rows of long strings
            columns = {name: [row[name] for row in rows] for name in schema.names}
            self.files[split].write_table(pa.Table.from_pydict(columns, schema=schema))
            self.buffers[split] = []

    def close(self) -> None:
        if self.stdout is not None:
            self.stdout.flush()
        for split, fh in self.files.items():
            if self.fmt == "parquet":
                self._flush(split)
            fh.close()
        self.files = {}
