"""Where a split's rows come from: every form `--data` takes, located and read.

- a prepare-data directory: DIR/data/<split>-00000-of-00001.parquet (or .jsonl), or DIR/<split>.parquet;
- a folder laid out as the Hub lays out the original recipe's lvwerra/stack-exchange-paired: one folder
  per split, DIR/data/rl/*.parquet, DIR/data/evaluation/*.parquet ... (each holding a 'train' split);
- any folder `datasets.load_dataset` reads: its split naming conventions, a README.md with `configs`;
- one Parquet, JSONL/JSON or CSV file: the split itself;
- a Hub dataset id, where the Hub is reachable.

A stage asks for a role (finetune, reward, rl, evaluation). `--data-dir` and `--split` apply to the
stage's own role; the evaluation role also answers to the names test and validation, and is never
taken from a folder's only split (that would evaluate on the training data).
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from stackllama_cli.core.cards import CC_BY_SA, is_stackexchange, read_card
from stackllama_cli.core.errors import StackLlamaError, one_line

DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")
ALIASES = {"evaluation": ("evaluation", "test", "validation")}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# Failures that mean the Hub cannot answer at all (as opposed to "no such folder in this dataset")
_HUB_UNREACHABLE = ("ConnectionError", "OfflineModeIsEnabled", "DatasetNotFoundError", "RepositoryNotFoundError",
                    "GatedRepoError", "HfHubHTTPError", "LocalEntryNotFoundError")


@dataclasses.dataclass(frozen=True)
class DataSource:
    """What `--data`, `--data-dir`, `--split` and `--columns` say; `role` is the stage's own split."""

    path: str
    data_dir: str | None = None
    split: str | None = None
    columns: str = ""
    role: str | None = None

    def __str__(self) -> str:
        return self.path


def data_source(cfg: Any, role: str) -> DataSource:
    """The data options of a stage config (any of them may be absent)."""
    return DataSource(str(cfg.data), getattr(cfg, "data_dir", None) or None, getattr(cfg, "split", None) or None,
                      getattr(cfg, "columns", "") or "", role)


def read_split(source: DataSource, role: str):
    """(`datasets.Dataset` as stored, facts: where it was found, its split name, what kind of source)."""
    main = source.role in (None, role)
    names = (source.split,) if main and source.split else ALIASES.get(role, (role,))
    path = Path(source.path).expanduser()
    if path.is_file():
        if source.data_dir:
            raise StackLlamaError(f"--data-dir needs a folder or a Hub dataset; {path} is a file")
        if not main:
            raise StackLlamaError(f"{path} is a single file: it holds no '{role}' split")
        if path.suffix.lower() not in DATA_SUFFIXES:
            raise StackLlamaError(f"{path} is not a Parquet, JSONL, JSON or CSV file")
        return read_files([path]), {"where": str(path), "split": role, "kind": "file"}
    if path.is_dir():
        store: LocalStore | HubStore = LocalStore(path)
    elif _HUB_ID.match(source.path) and source.path.count("/") <= 1:
        store = HubStore(source.path)
    else:
        raise StackLlamaError(f"data path {path} does not exist")
    base = source.data_dir.strip("/") if main and source.data_dir else ""
    found, splits = locate(store, base, names, only_split_ok=main and not source.split, role=role)
    if found is None:
        raise StackLlamaError(f"no '{names[0]}' split in {store.where(base)} (found: {', '.join(splits) or 'no data'}"
                              f"{'; ' + store.problem if store.problem else ''}); choose one with --split or a "
                              "folder with --data-dir, or run 'stackllama prepare-data' to make the four splits")
    folder, split, files = found
    one_file = isinstance(store, LocalStore) and len(files) == 1
    where = str(files[0]) if one_file else store.where(folder, split)
    return store.load(folder, split, files), {"where": where, "split": split, "kind": store.kind(folder)}


def locate(store, base: str, names: tuple[str, ...], only_split_ok: bool, role: str):
    """((folder, split, files), splits seen) for the first of `names` found under `base`, else (None, splits).

    Order: our own file names; a folder named after the split (the Hub layout of the recipe); the split
    names datasets infers for `base`; and, for a stage's own role without --split, `base`'s only split
    (unless that is held-out data, say 'test', and the role is not evaluation).
    """
    for name in names:
        files = store.exact(base, name)
        if files:
            return (base, name, files), []
    for name in names:
        for folder in (f"{base}/data/{name}".lstrip("/"), f"{base}/{name}".lstrip("/")):
            splits = store.splits(folder)
            if splits and len(splits) == 1:
                (split, files), = splits.items()
                return (folder, split, files), []
            if splits:
                raise StackLlamaError(f"{store.where(folder)} holds the splits {', '.join(splits)}: choose one "
                                      f"with --data-dir {folder} --split NAME")
    splits = store.splits(base) or {}
    for name in names:
        if name in splits:
            return (base, name, splits[name]), list(splits)
    held_out = ALIASES["evaluation"]
    if only_split_ok and len(splits) == 1 and (role in held_out or next(iter(splits)) not in held_out):
        (split, files), = splits.items()
        return (base, split, files), list(splits)
    return None, list(splits)


class LocalStore:
    """A local folder: files read directly (no copy into datasets' cache)."""

    def __init__(self, root: Path):
        self.root, self.problem = root, ""

    def where(self, folder: str, split: str | None = None) -> str:
        return str(self.root / folder) + (f" (split '{split}')" if split else "")

    def kind(self, folder: str) -> str:
        return "prepare-data" if (self.root / "stats.json").is_file() and not folder else "folder"

    def exact(self, base: str, name: str) -> list[Path] | None:
        folder = self.root / base
        for suffix in DATA_SUFFIXES:
            for candidate in (folder / "data" / f"{name}-00000-of-00001{suffix}", folder / f"{name}{suffix}"):
                if candidate.is_file():
                    return [candidate]
        return None

    def splits(self, folder: str) -> dict[str, list[str]] | None:
        """{split: files} as `datasets.load_dataset` would see them, None when there is no data there."""
        import datasets

        directory = self.root / folder
        if not directory.is_dir():
            return None
        with tempfile.TemporaryDirectory() as cache:  # the builder's lock files go nowhere permanent
            try:
                builder = datasets.load_dataset_builder(str(directory), cache_dir=cache)
            except Exception as exc:  # no data files, mixed formats, a broken README: many kinds
                self.problem = f"datasets: {one_line(str(exc))[:200]}"
                return None
        return {str(k): list(v) for k, v in (builder.config.data_files or {}).items()}

    def load(self, folder: str, split: str, files: list):
        if all(Path(f).suffix.lower() in DATA_SUFFIXES for f in files):
            return read_files([Path(f) for f in files])
        import datasets  # other formats datasets knows (arrow, text ...): through its cache

        return datasets.load_dataset(str(self.root / folder), split=split)


class HubStore:
    """A dataset on the Hub, through `datasets` (downloaded into its cache)."""

    def __init__(self, repo_id: str):
        self.repo_id, self.problem = repo_id, ""

    def where(self, folder: str, split: str | None = None) -> str:
        return self.repo_id + (f" (data_dir {folder})" if folder else "") + (f" (split '{split}')" if split else "")

    def kind(self, folder: str) -> str:
        return "hub"

    def exact(self, base: str, name: str) -> None:
        return None  # datasets' own conventions cover prepare-data's file names on the Hub

    def splits(self, folder: str) -> dict[str, list[str]] | None:
        import datasets

        try:
            builder = datasets.load_dataset_builder(self.repo_id, data_dir=folder or None)
        except Exception as exc:
            if type(exc).__name__ in _HUB_UNREACHABLE or any(t.__name__ in _HUB_UNREACHABLE
                                                             for t in type(exc).__mro__):
                raise StackLlamaError(f"data path {self.repo_id} does not exist here, and the Hub cannot give "
                                      f"it either ({type(exc).__name__}: {one_line(str(exc))[:200]})") from None
            self.problem = f"datasets: {one_line(str(exc))[:200]}"
            return None
        return {str(k): list(v) for k, v in (builder.config.data_files or {}).items()}

    def load(self, folder: str, split: str, files: list):
        import datasets

        try:
            return datasets.load_dataset(self.repo_id, data_dir=folder or None, split=split)
        except Exception as exc:
            raise StackLlamaError(f"cannot load {self.where(folder, split)}: {one_line(str(exc))[:200]}") from None


def read_files(paths: list[Path]):
    """One `datasets.Dataset` from Parquet, JSONL/JSON and CSV files, read in memory."""
    import datasets

    parts = []
    for path in paths:
        try:
            parts.append(_read_file(path))
        except StackLlamaError:
            raise
        except Exception as exc:  # pyarrow/json parse errors of many kinds
            raise StackLlamaError(f"cannot read {path}: {one_line(str(exc))[:200]}") from None
    if len(parts) == 1:
        return parts[0]
    try:
        return datasets.concatenate_datasets(parts)
    except Exception as exc:
        raise StackLlamaError(f"the files {paths[0].parent} holds do not share their columns "
                              f"({one_line(str(exc))[:200]})") from None


def _read_file(path: Path):
    import datasets

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return datasets.Dataset(pq.read_table(path))
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        return datasets.Dataset(pcsv.read_csv(path, parse_options=pcsv.ParseOptions(newlines_in_values=True)))
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):  # a JSON array of objects
        rows = json.loads(text)
    else:
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise StackLlamaError(f"cannot read {path}: line {lineno} is not JSON ({exc.msg})") from None
    if not all(isinstance(row, dict) for row in rows):
        raise StackLlamaError(f"cannot read {path}: expected one JSON object per row")
    return datasets.Dataset.from_list(rows) if rows else datasets.Dataset.from_dict({})


# What each load saw, for the model cards (models/card.py): (source, role) -> facts
_seen: dict[tuple[DataSource, str], dict[str, Any]] = {}


def record(source: DataSource, role: str, facts: dict[str, Any], ds) -> dict[str, Any]:
    facts = {**facts, "source": source.path, "rows": len(ds), "sites": data_sites(ds)}
    facts["license"] = data_license(source, facts["sites"])
    _seen[(dataclasses.replace(source, role=None), role)] = facts
    return facts


def seen(source: DataSource, role: str) -> dict[str, Any] | None:
    """The facts of the last load of `role` from `source` in this process."""
    return _seen.get((dataclasses.replace(source, role=None), role))


def data_sites(ds) -> list[str]:
    """StackExchange sites of the rows: the `site` column, or the hosts of the `metadata` links."""
    try:
        if "site" in ds.column_names:
            return sorted(str(s) for s in ds.unique("site") if s)
        if "metadata" in ds.column_names and len(ds):
            import pyarrow.compute as pc

            first = pc.list_element(ds.data.column("metadata"), 0)
            hosts = pc.struct_field(pc.extract_regex(first, r"^https?://(?P<host>[^/]+)"), [0])
            return sorted(str(h) for h in pc.unique(hosts).to_pylist() if h)
    except Exception:  # metadata in another shape: sites unknown
        pass
    return []


def data_license(source: DataSource, sites: list[str]) -> str | None:
    """The data's licence where it is known: its card's, prepare-data's (StackExchange), or StackExchange's."""
    path = Path(source.path).expanduser()
    folder = path if path.is_dir() else path.parent
    card = read_card(folder)
    if card and isinstance(card[0].get("license"), str):
        return card[0]["license"]
    if (folder / "stats.json").is_file() or (sites and all(is_stackexchange(s) for s in sites)):
        return CC_BY_SA
    return None
