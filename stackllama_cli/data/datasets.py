"""Loading prepare-data output (or any data in the same schema) as Hugging Face datasets.

Layout written by `prepare-data` (the Hub's layout, so `datasets.load_dataset("parquet",
data_dir=DIR)` names the four splits): `DIR/data/<split>-00000-of-00001.parquet` (or
`.jsonl`), plus `DIR/stats.json` and the resolved config. `DIR/<split>.parquet` is
accepted too, and a single Parquet/JSONL file is taken as the split itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from stackllama_cli.core.errors import StackLlamaError

SPLITS = ("finetune", "reward", "rl", "evaluation")
PAIR_COLUMNS = ("question", "response_j", "response_k")
DATA_SUFFIXES = (".parquet", ".jsonl", ".json")


def data_filename(split: str, fmt: str = "parquet") -> str:
    return f"{split}-00000-of-00001.{fmt}"


def split_file(data: str | Path, split: str) -> Path:
    """The file holding `split` in a prepare-data directory, or `data` itself if it is a file."""
    data = Path(data)
    if data.is_file():
        if data.suffix not in DATA_SUFFIXES:
            raise StackLlamaError(f"{data} is not a Parquet or JSONL file")
        return data
    if not data.is_dir():
        raise StackLlamaError(f"data path {data} does not exist")
    for suffix in DATA_SUFFIXES:
        for candidate in (data / "data" / data_filename(split, suffix[1:]), data / f"{split}{suffix}"):
            if candidate.is_file():
                return candidate
    found = sorted(p.stem for folder in (data, data / "data") if folder.is_dir()
                   for p in folder.iterdir() if p.suffix in DATA_SUFFIXES)
    raise StackLlamaError(f"no '{split}' split in {data} (found: {', '.join(found) or 'no data files'}); "
                          "run 'stackllama prepare-data' to create it")


def load_split(data: str | Path, split: str, columns: Iterable[str] = PAIR_COLUMNS, allow_empty: bool = False):
    """Load one split as a `datasets.Dataset`, checking the columns a stage needs."""
    import datasets

    path = split_file(data, split)
    try:  # read directly: no dataset cache on disk, and empty files are fine
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            ds = datasets.Dataset(pq.read_table(path))
        else:
            from stackllama_cli.core.metrics import read_jsonl

            ds = datasets.Dataset.from_list(read_jsonl(path)) if path.stat().st_size else datasets.Dataset.from_dict({})
    except Exception as exc:  # pyarrow/json parse errors of many kinds
        raise StackLlamaError(f"cannot read {path}: {' '.join(str(exc).split())[:200]}") from None
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise StackLlamaError(f"{path} lacks column(s) {', '.join(missing)} "
                              f"(has: {', '.join(ds.column_names)})")
    if len(ds) == 0 and not allow_empty:
        raise StackLlamaError(f"the '{split}' split in {path} is empty")
    return ds
