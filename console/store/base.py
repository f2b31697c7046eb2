"""The connection and its plumbing: the state file (private, WAL), its migrations, one write
transaction at a time (BEGIN IMMEDIATE, nested calls join the outer one), the test-only crash
hook, and the SQL helpers the table groups share."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import sqlite_utils

from console import state_check
from console.nesting import Nesting
from console.store.schema import _MIGRATIONS, SCHEMA_VERSION


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with seconds and a `Z` (sortable as text)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Test-only (the crash suite, tests/chaos): ML_CONSOLE_TEST_CRASH_AT=POINT[:N][,POINT[:N]...]
# SIGKILLs this process the Nth time (default 1) it reaches POINT, so a crash can be placed
# exactly: in-migration, fetched (export read, nothing stored), intent (intent committed,
# before the POST), post (POST answered, outcome not committed), posted (outcome committed),
# label (label set in Expensify, not yet recorded). Unset (always, outside tests): no-op.
CRASH_AT_ENV = "ML_CONSOLE_TEST_CRASH_AT"

_crash_hits: dict[str, int] = {}


def crash_point(point: str) -> None:
    spec = os.environ.get(CRASH_AT_ENV)
    if not spec:
        return
    _crash_hits[point] = _crash_hits.get(point, 0) + 1
    for item in spec.split(","):
        name, _, nth = item.strip().partition(":")
        if name == point and _crash_hits[point] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)


def _private_file(path: Path) -> None:
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    os.chmod(path, 0o600)


class StoreBase:
    """The SQLite state file. Thread-safe (one connection behind a re-entrant lock)."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], datetime] = utc_now,
        busy_timeout_s: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        state_check.check(self.path, SCHEMA_VERSION)  # damaged, read-only, newer: exit 7
        _private_dir(self.path.parent)
        _private_file(self.path)
        conn = sqlite3.connect(
            str(self.path),
            isolation_level=None,  # we open transactions ourselves
            check_same_thread=False,
            timeout=busy_timeout_s,
        )
        self.db = sqlite_utils.Database(conn)
        self._conn = conn
        self._lock = threading.RLock()
        self._nesting = Nesting(self._lock)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                with contextlib.suppress(OSError):
                    os.chmod(side, 0o600)

    def now(self) -> str:
        return iso(self.clock())

    def _migrate(self) -> None:
        with self._lock:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"state file {self.path} has schema {version}, newer than this "
                    f"ml-console ({SCHEMA_VERSION}); upgrade ml-console"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    # Another process may have migrated while we waited for the write lock.
                    current = self._conn.execute("PRAGMA user_version").fetchone()[0]
                    if current < target:
                        for statement in _MIGRATIONS[target - 1]:
                            self._conn.execute(statement)
                        self._conn.execute(f"PRAGMA user_version = {target}")
                        crash_point("in-migration")
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def transaction(self) -> AbstractContextManager[None]:
        """One write transaction (BEGIN IMMEDIATE); nested calls join the outer one."""
        return self._nesting.enter(self._begin_commit)

    @contextlib.contextmanager
    def _begin_commit(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                # SQLite may have rolled back already (a full disk, an I/O error): the error
                # that ended the transaction is the one to report, not "no transaction".
                pass
            raise
        self._conn.execute("COMMIT")

    def _x(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, params)

    def _tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            rows: list[tuple[Any, ...]] = self._conn.execute(sql, params).fetchall()
            return rows

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._conn.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count(self, table: str, where: str, params: list[Any]) -> int:
        return int(self._x(f"SELECT COUNT(*) FROM {table}{where}", params).fetchone()[0])


def _and_any_of(
    where: str, params: list[Any], clauses: list[str], args: list[Any]
) -> tuple[str, list[Any]]:
    """`where` (a WHERE clause or "") narrowed to rows that match any of `clauses`."""
    joined = "(" + " OR ".join(clauses) + ")"
    where = f"{where} AND {joined}" if where else f" WHERE {joined}"
    return where, [*params, *args]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
