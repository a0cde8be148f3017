"""Converted texts waiting for the rest of their question, kept in memory up to a budget and on disk beyond.

In a real dump answers follow their question by years (posts are in id order), so many questions
can wait for a late answer at once; their texts would otherwise pile up in memory. The oldest
entries spill to an SQLite file (the stdlib's) in a temporary folder, created only when needed.
"""

from __future__ import annotations

import marshal
import shutil
import sqlite3
import tempfile
from pathlib import Path

DEFAULT_BUDGET = 64 * 2**20  # characters held in memory before the oldest texts spill to disk


class TextStore:
    """`put(key, texts)` / `pop(key)`: a tuple of strings per post id."""

    def __init__(self, budget: int | None = None):
        self.budget = DEFAULT_BUDGET if budget is None else budget
        self.memory: dict[int, tuple[str, ...]] = {}
        self.held = 0  # characters in `memory`
        self.spilled = 0  # entries written to disk so far (for stats and tests)
        self.db: sqlite3.Connection | None = None
        self.folder: Path | None = None

    def put(self, key: int, texts: tuple[str, ...]) -> None:
        self.memory[key] = texts
        self.held += sum(map(len, texts))
        if self.held > self.budget:
            self._spill()

    def pop(self, key: int) -> tuple[str, ...]:
        texts = self.memory.pop(key, None)
        if texts is not None:
            self.held -= sum(map(len, texts))
            return texts
        row = self.db.execute("SELECT v FROM texts WHERE k = ?", (key,)).fetchone() if self.db else None
        if row is None:
            raise KeyError(key)
        self.db.execute("DELETE FROM texts WHERE k = ?", (key,))
        return marshal.loads(row[0])

    def _spill(self) -> None:
        """Move the oldest entries to disk until half the budget is left (so spills come in batches)."""
        if self.db is None:
            self.folder = Path(tempfile.mkdtemp(prefix="stackllama-texts-"))
            self.db = sqlite3.connect(self.folder / "texts.sqlite", isolation_level=None)
            self.db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                                  "CREATE TABLE texts (k INTEGER PRIMARY KEY, v BLOB);")
        batch = []
        for key in list(self.memory):
            if self.held <= self.budget // 2:
                break
            texts = self.memory.pop(key)
            self.held -= sum(map(len, texts))
            batch.append((key, marshal.dumps(texts)))
        self.db.executemany("INSERT INTO texts VALUES (?, ?)", batch)
        self.spilled += len(batch)

    def close(self) -> None:
        self.memory.clear()
        if self.db is not None:
            self.db.close()
            self.db = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
