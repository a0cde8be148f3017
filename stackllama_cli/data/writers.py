"""Streaming writers for prepare-data rows: one Parquet or JSONL file per split, or JSONL on stdout.

Rows are written in row groups as questions complete, so memory holds one buffer per
split instead of the whole output.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path
from typing import IO, Iterator

from stackllama_cli.data.datasets import SPLITS, data_filename

ROW_GROUP = 2048  # rows per Parquet row group at most: large enough to compress well
# Bytes of text held in all buffers together (as Python holds them: 1, 2 or 4 bytes a character): past it,
# the biggest buffer is written out. The writer keeps each row group's metadata (~9 KB) until the file
# closes, so this must let rows of usual size (up to ~5 KB of ASCII text) fill ROW_GROUP rows in every split
# at once: at 2M, beer's rows made groups of a few hundred and memory grew with the dump.
BUFFERED_BYTES = 32 * 2**20


TEXT_COLUMNS = ("question", "response_j", "response_k", "metadata")


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
        self.buffered = dict.fromkeys(SPLITS, 0)  # bytes of text in each buffer
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
        self.buffered[split] += sum(sys.getsizeof(row[k]) for k in ("question", "response_j", "response_k"))
        if len(buffer) >= ROW_GROUP:
            self._flush(split)
        elif sum(self.buffered.values()) > BUFFERED_BYTES:  # rows of long texts: bound memory, not rows
            self._flush(max(self.buffered, key=self.buffered.get))

    def _open(self, split: str):
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / data_filename(split, self.fmt)
        if self.fmt == "jsonl":
            return open(path, "w", encoding="utf-8")
        import pyarrow as pa
        import pyarrow.parquet as pq

        # no min/max statistics of the long texts: useless for them, and the writer keeps every row group's
        # statistics in memory until the footer is written (up to 8 KiB per text column and row group)
        return pq.ParquetWriter(path, parquet_schema(), memory_pool=pa.system_memory_pool(),
                                write_statistics=[n for n in parquet_schema().names if n not in TEXT_COLUMNS])

    def _flush(self, split: str) -> None:
        import pyarrow as pa

        rows = self.buffers[split]
        if rows:
            schema = parquet_schema()
            # column lists -> arrays: ~6x faster than from_pylist on rows of long strings. The system
            # allocator, not Arrow's default mimalloc, which kept ~45 MiB more resident once row groups flowed.
            pool = pa.system_memory_pool()
            columns = [pa.array([row[f.name] for row in rows], f.type, memory_pool=pool) for f in schema]
            self.files[split].write_table(pa.Table.from_arrays(columns, schema=schema))
            self.buffers[split], self.buffered[split] = [], 0
            del columns, rows
            # Collect Arrow's default pool (mimalloc): Parquet's writing allocates there too, and what mimalloc
            # keeps of it made peak RSS grow with the output. Measured in one process on beer x 200: 173 -> 188
            # MiB from 10k to 75k questions without this, 161 -> 166 MiB with it. (pyarrow 26's release_unused
            # acts on the default pool whichever pool it is called on: calling it there says what it does.)
            pa.default_memory_pool().release_unused()

    @classmethod
    @contextlib.contextmanager
    def part(cls, folder: Path, stdout: bool, fmt: str) -> Iterator["SplitWriters"]:
        """Writers for one site's part of a several-site run, read back by `append_part`: what the
        output gets (stdout's JSONL lines, or split files) in `folder`."""
        if not stdout:
            writers = cls(folder / "data", fmt)
            try:
                yield writers
            finally:
                writers.close()
            return
        with open(folder / "rows.jsonl", "w", encoding="utf-8") as fh:
            writers = cls(None, stdout=fh)
            yield writers
            writers.close()

    def append_part(self, folder: Path) -> None:
        """Append the rows a `part(folder, ...)` wrote, in order, as if they had been written here."""
        if self.stdout is not None:
            self.stdout.flush()
            with open(folder / "rows.jsonl", encoding="utf-8") as fh:
                shutil.copyfileobj(fh, self.stdout, 2**20)
            return
        for split in SPLITS:
            path = folder / "data" / data_filename(split, self.fmt)
            if not path.is_file():
                continue
            if self.fmt == "jsonl":
                if split not in self.files:
                    self.files[split] = self._open(split)
                with open(path, encoding="utf-8") as fh:
                    shutil.copyfileobj(fh, self.files[split], 2**20)
                continue
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP):
                for row in batch.to_pylist():  # through the buffers: the same row groups as one sequential run
                    self.write(split, row)

    def close(self) -> None:
        if self.stdout is not None:
            self.stdout.flush()
        for split, fh in self.files.items():
            if self.fmt == "parquet":
                self._flush(split)
            fh.close()
        self.files = {}
