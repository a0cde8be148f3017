"""Loading preference data as Hugging Face datasets in our schema: `load_split` is the one entry point.

`--data` may be a prepare-data directory, any folder or file `datasets` reads, or a Hub dataset id
(where each form is found: data/sources.py); other column names, TRL's prompt/chosen/rejected format
and `--columns` mappings become our columns (data/columns.py).

Layout written by `prepare-data` (the Hub's layout, so `datasets.load_dataset("parquet",
data_dir=DIR)` names the four splits): `DIR/data/<split>-00000-of-00001.parquet` (or
`.jsonl`), plus `DIR/README.md` (the dataset card), `DIR/stats.json` and the resolved config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from stackllama_cli.core.errors import StackLlamaError

SPLITS = ("finetune", "reward", "rl", "evaluation")
PAIR_COLUMNS = ("question", "response_j", "response_k")


def data_filename(split: str, fmt: str = "parquet") -> str:
    return f"{split}-00000-of-00001.{fmt}"


def load_split(data, split: str, columns: Iterable[str] = PAIR_COLUMNS, allow_empty: bool = False):
    """Load one split as a `datasets.Dataset` in our columns, checking the columns a stage needs.

    `data` is a path or Hub id, or a `sources.DataSource` carrying --data-dir/--split/--columns;
    `split` is the role the stage wants (finetune, reward, rl, evaluation).
    """
    from stackllama_cli.data.columns import normalise
    from stackllama_cli.data.sources import DataSource, read_split, record

    source = data if isinstance(data, DataSource) else DataSource(str(data) if isinstance(data, Path) else data)
    ds, facts = read_split(source, split)
    original = list(ds.column_names)
    ds = normalise(ds, source.columns, facts["where"])
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise StackLlamaError(f"{facts['where']} lacks column(s) {', '.join(missing)} (has: "
                              f"{', '.join(original) or 'none'}); name them with --columns, e.g. "
                              f"--columns {missing[0]}=COLUMN")
    if len(ds) == 0 and not allow_empty:
        raise StackLlamaError(f"the '{split}' split in {facts['where']} is empty")
    record(source, split, facts, ds)
    return ds
