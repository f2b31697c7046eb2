"""Cursors (the poll cursor and others), the Expensify request window kept across processes,
and the record of runs."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from console.store.base import StoreBase
from console.store.records import RunRow


def peek_cursor(path: Path, name: str) -> str | None:
    """One cursor of a state file, read-only: nothing is created or migrated (for `info`).
    None when the file, the table or the key is not there, or the file cannot be read."""
    if not Path(path).exists():
        return None
    try:
        db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        row = db.execute("SELECT value FROM cursor WHERE name = ?", (name,)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return None if row is None else str(row[0])


class RunsMixin(StoreBase):
    """Cursors, the request window and runs."""

    def cursor(self, name: str = "approved_after") -> str | None:
        row = self._x("SELECT value FROM cursor WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_cursor(self, value: str, name: str = "approved_after") -> None:
        with self.transaction():
            self._x("INSERT OR REPLACE INTO cursor (name, value) VALUES (?, ?)", (name, value))

    def load_window(self, key: str) -> list[float]:
        """RequestWindowStore: the Expensify request timestamps, kept across processes."""
        row = self._x("SELECT stamps FROM expensify_window WHERE key = ?", (key,)).fetchone()
        if row is None:
            return []
        try:
            return [float(s) for s in json.loads(row[0])]
        except (ValueError, TypeError):
            return []

    def save_window(self, key: str, stamps: Sequence[float]) -> None:
        with self.transaction():
            self._x(
                "INSERT OR REPLACE INTO expensify_window (key, stamps) VALUES (?, ?)",
                (key, json.dumps([round(s, 3) for s in stamps])),
            )

    def start_run(self, actor: str, mode: str) -> int:
        with self.transaction():
            cur = self._x(
                "INSERT INTO runs (started, actor, mode) VALUES (?,?,?)", (self.now(), actor, mode)
            )
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, summary: dict[str, Any]) -> None:
        with self.transaction():
            self._x(
                "UPDATE runs SET finished = ?, summary = ? WHERE id = ?",
                (self.now(), json.dumps(summary, sort_keys=True, default=str), run_id),
            )

    def runs(self, limit: int = 20) -> list[RunRow]:
        return [
            RunRow(**{**r, "summary": json.loads(r["summary"] or "{}")})
            for r in self._rows("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (int(limit),))
        ]
