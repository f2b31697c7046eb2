"""The console's state: one SQLite file (WAL), the only place SQL lives.

Reports and their lines, the operator's mapping rules, the cached IFS dimensions, postings
(intent, then outcome), the hold queue, exclusions, runs, the Expensify request window, the
poll cursor and the audit log. Schema changes are versioned migrations (`PRAGMA user_version`),
each applied in its own transaction.

Writes that belong together run in one `transaction()` (BEGIN IMMEDIATE, so two processes
serialise instead of interleaving); 10k reports are one transaction, never a commit per row.
Reads for the TUI are paginated and filtered in SQL.

The posting lock is `flock` on a file next to the state file: the OS releases it when its
holder dies, even by SIGKILL. The file's content only says who holds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from console import clock, state_check
from console.errors import ConfigError, LockHeld
from console.reference import KINDS

STATUSES = ("pending", "held", "ready", "posting", "posted", "failed", "excluded")
OUTCOMES = ("intent", "posted", "failed", "unknown")


# The cursor key of the file system that served the last card reconciliation download.
RECONCILIATION_FILE_SYSTEM = "expensify.reconciliation_file_system"
# The cursor key of the policies' approval modes (JSON {"day", "modes"}), read once a day.
APPROVAL_MODES = "expensify.approval_modes"


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


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with seconds and a `Z` (sortable as text)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------------- test hook
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


# ------------------------------------------------------------------------- schema
# Each entry migrates from version index to index+1. Never edit a released entry: append.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE reports (
            report_id TEXT PRIMARY KEY,
            policy_id TEXT NOT NULL DEFAULT '',
            employee TEXT NOT NULL DEFAULT '',
            report_name TEXT NOT NULL DEFAULT '',
            approved TEXT NOT NULL DEFAULT '',
            currency TEXT NOT NULL DEFAULT '',
            total_minor INTEGER NOT NULL DEFAULT 0,
            line_count INTEGER NOT NULL DEFAULT 0,
            content_hash TEXT NOT NULL DEFAULT '',
            raw TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'pending',
            reason TEXT NOT NULL DEFAULT '',
            company TEXT NOT NULL DEFAULT '',
            held_since TEXT,
            first_seen TEXT NOT NULL,
            updated TEXT NOT NULL
        )""",
        "CREATE INDEX reports_status ON reports(status, approved)",
        """CREATE TABLE lines (
            report_id TEXT NOT NULL,
            transaction_id TEXT NOT NULL,
            position INTEGER NOT NULL DEFAULT 0,
            merchant TEXT NOT NULL DEFAULT '',
            category TEXT NOT NULL DEFAULT '',
            tag TEXT NOT NULL DEFAULT '',
            amount_minor INTEGER NOT NULL DEFAULT 0,
            currency TEXT NOT NULL DEFAULT '',
            reimbursable INTEGER NOT NULL DEFAULT 1,
            created TEXT NOT NULL DEFAULT '',
            comment TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (report_id, transaction_id)
        )""",
        """CREATE TABLE mapping_rules (
            kind TEXT NOT NULL,
            policy_id TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL,
            rule TEXT NOT NULL,
            actor TEXT NOT NULL DEFAULT '',
            updated TEXT NOT NULL,
            PRIMARY KEY (kind, policy_id, source)
        )""",
        """CREATE TABLE ifs_dimensions (
            company TEXT NOT NULL,
            code_part TEXT NOT NULL,
            value TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            valid_from TEXT NOT NULL,
            valid_until TEXT NOT NULL,
            fetched_at TEXT NOT NULL,
            PRIMARY KEY (company, code_part, value)
        )""",
        """CREATE TABLE postings (
            id INTEGER PRIMARY KEY,
            report_id TEXT NOT NULL,
            reference TEXT NOT NULL,
            version TEXT NOT NULL,
            company TEXT NOT NULL,
            body_digest TEXT NOT NULL,
            intent_at TEXT NOT NULL,
            outcome TEXT NOT NULL DEFAULT 'intent',
            voucher_no TEXT,
            posted_at TEXT,
            labelled_at TEXT,
            error TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX postings_report ON postings(report_id)",
        "CREATE INDEX postings_outcome ON postings(outcome, labelled_at)",
        """CREATE TABLE holds (
            report_id TEXT NOT NULL,
            code TEXT NOT NULL,
            message TEXT NOT NULL DEFAULT '',
            company TEXT NOT NULL DEFAULT '',
            first_held TEXT NOT NULL,
            last_checked TEXT NOT NULL,
            PRIMARY KEY (report_id, code)
        )""",
        "CREATE INDEX holds_code ON holds(code)",
        """CREATE TABLE exclusions (
            report_id TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            actor TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            started TEXT NOT NULL,
            finished TEXT,
            actor TEXT NOT NULL,
            mode TEXT NOT NULL,
            summary TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE expensify_window (
            key TEXT PRIMARY KEY,
            stamps TEXT NOT NULL DEFAULT '[]'
        )""",
        """CREATE TABLE cursor (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        """CREATE TABLE audit_events (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            type TEXT NOT NULL,
            report_id TEXT,
            transaction_ids TEXT,
            voucher TEXT,
            summary TEXT NOT NULL DEFAULT '',
            request_digest TEXT,
            response_digest TEXT,
            data TEXT NOT NULL DEFAULT '{}',
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        "CREATE INDEX audit_report ON audit_events(report_id, seq)",
        "CREATE INDEX audit_type ON audit_events(type, seq)",
        # The chain head, so that deleting the newest events is detected too.
        """CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
    ),
    # 2: accrual reversals, watching posted reports, changes after posting (console/reversal.py)
    (
        """CREATE TABLE reversals (
            id INTEGER PRIMARY KEY,
            report_id TEXT NOT NULL,
            accrual_reference TEXT NOT NULL,
            reference TEXT NOT NULL,
            groups TEXT NOT NULL,
            cause TEXT NOT NULL,
            company TEXT NOT NULL,
            voucher_date TEXT NOT NULL,
            body_digest TEXT NOT NULL,
            intent_at TEXT NOT NULL,
            outcome TEXT NOT NULL DEFAULT 'intent',
            voucher_no TEXT,
            posted_at TEXT,
            error TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX reversals_report ON reversals(report_id, accrual_reference)",
        "CREATE INDEX reversals_outcome ON reversals(outcome)",
        """CREATE TABLE watched (
            report_id TEXT PRIMARY KEY,
            last_checked TEXT NOT NULL DEFAULT '',
            expensify_status TEXT NOT NULL DEFAULT '',
            reimbursed TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE report_changes (
            report_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            accrual_reference TEXT NOT NULL,
            new_hash TEXT NOT NULL DEFAULT '',
            new_raw TEXT NOT NULL DEFAULT '{}',
            state TEXT NOT NULL DEFAULT 'open',
            detected_at TEXT NOT NULL,
            confirmed_by TEXT NOT NULL DEFAULT '',
            confirmed_at TEXT
        )""",
    ),
    # 3: card spend not yet reported, accrued at close and reversed (console/card_accrual.py)
    (
        """CREATE TABLE card_accruals (
            id INTEGER PRIMARY KEY,
            period TEXT NOT NULL,
            company TEXT NOT NULL,
            kind TEXT NOT NULL,
            reference TEXT NOT NULL,
            voucher_date TEXT NOT NULL,
            amount TEXT NOT NULL,
            currency TEXT NOT NULL,
            body_digest TEXT NOT NULL,
            intent_at TEXT NOT NULL,
            outcome TEXT NOT NULL DEFAULT 'intent',
            voucher_no TEXT,
            posted_at TEXT,
            error TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX card_accruals_reference ON card_accruals(reference, outcome)",
        "CREATE INDEX card_accruals_outcome ON card_accruals(outcome, kind)",
    ),
    # 4: one posting ledger for every voucher kind (console/ledger.py): the three tables of
    # versions 1-3 become rows of one, in the order their intents were written.
    (
        """CREATE TABLE ledger (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            reference TEXT NOT NULL,
            company TEXT NOT NULL,
            report_id TEXT NOT NULL DEFAULT '',
            period TEXT NOT NULL DEFAULT '',
            version TEXT NOT NULL DEFAULT '',
            accrual_reference TEXT NOT NULL DEFAULT '',
            groups TEXT NOT NULL DEFAULT '',
            cause TEXT NOT NULL DEFAULT '',
            voucher_date TEXT NOT NULL DEFAULT '',
            amount TEXT NOT NULL DEFAULT '',
            currency TEXT NOT NULL DEFAULT '',
            body_digest TEXT NOT NULL,
            intent_at TEXT NOT NULL,
            outcome TEXT NOT NULL DEFAULT 'intent',
            voucher_no TEXT,
            posted_at TEXT,
            labelled_at TEXT,
            error TEXT NOT NULL DEFAULT ''
        )""",
        """INSERT INTO ledger (kind, reference, company, report_id, period, version,
            accrual_reference, groups, cause, voucher_date, amount, currency, body_digest,
            intent_at, outcome, voucher_no, posted_at, labelled_at, error)
        SELECT kind, reference, company, report_id, period, version, accrual_reference, groups,
            cause, voucher_date, amount, currency, body_digest, intent_at, outcome, voucher_no,
            posted_at, labelled_at, error FROM (
            SELECT 'accrual' AS kind, reference, company, report_id, '' AS period, version,
                '' AS accrual_reference, '' AS groups, '' AS cause, '' AS voucher_date,
                '' AS amount, '' AS currency, body_digest, intent_at, outcome, voucher_no,
                posted_at, labelled_at, error, 1 AS src, id FROM postings
            UNION ALL
            SELECT 'reversal', reference, company, report_id, '', '', accrual_reference, groups,
                cause, voucher_date, '', '', body_digest, intent_at, outcome, voucher_no,
                posted_at, NULL, error, 2, id FROM reversals
            UNION ALL
            SELECT 'card-' || kind, reference, company, '', period, '', '', '', '',
                voucher_date, amount, currency, body_digest, intent_at, outcome, voucher_no,
                posted_at, NULL, error, 3, id FROM card_accruals
        ) ORDER BY intent_at, src, id""",
        "DROP TABLE postings",
        "DROP TABLE reversals",
        "DROP TABLE card_accruals",
        "CREATE INDEX ledger_report ON ledger(report_id, kind)",
        "CREATE INDEX ledger_reference ON ledger(reference, outcome)",
        "CREATE INDEX ledger_outcome ON ledger(outcome, kind, labelled_at)",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)


# Report IDs per `IN (...)` query: well under SQLite's bound on parameters.
_ID_BATCH = 500


# ------------------------------------------------------------------------- records
@dataclass(frozen=True)
class LineRecord:
    transaction_id: str
    merchant: str = ""
    category: str = ""
    tag: str = ""
    amount_minor: int = 0
    currency: str = ""
    reimbursable: bool = True
    created: str = ""
    comment: str = ""


@dataclass(frozen=True)
class ReportRecord:
    """A report as fetched, ready to upsert."""

    report_id: str
    policy_id: str
    employee: str
    report_name: str
    approved: str
    currency: str
    total_minor: int
    content_hash: str
    raw: dict[str, Any]
    lines: tuple[LineRecord, ...] = ()


@dataclass(frozen=True)
class UpsertResult:
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    changed_after_post: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HoldRecord:
    code: str
    message: str


@dataclass(frozen=True)
class EvaluationRecord:
    """What evaluation decided for one report: ready, or held with reasons."""

    report_id: str
    company: str
    holds: tuple[HoldRecord, ...] = ()

    @property
    def status(self) -> str:
        return "held" if self.holds else "ready"


@dataclass(frozen=True)
class ReportRow:
    report_id: str
    policy_id: str
    employee: str
    report_name: str
    approved: str
    currency: str
    total_minor: int
    line_count: int
    status: str
    reason: str
    company: str
    held_since: str | None
    content_hash: str
    first_seen: str
    updated: str


@dataclass(frozen=True)
class StoredLine:
    report_id: str
    transaction_id: str
    position: int
    merchant: str
    category: str
    tag: str
    amount_minor: int
    currency: str
    reimbursable: bool
    created: str
    comment: str


@dataclass(frozen=True)
class StoredHold:
    report_id: str
    code: str
    message: str
    company: str
    first_held: str
    last_checked: str


@dataclass(frozen=True)
class LedgerEntry:
    """One voucher the console sent or meant to send (console/ledger.py): intent, then
    outcome. Report vouchers name their report; card vouchers their period."""

    id: int
    kind: str  # accrual | reversal | card-accrual | card-reversal (console.reference.KINDS)
    reference: str
    company: str
    report_id: str
    period: str  # card vouchers: the accrued period, YYYY-MM
    version: str  # accruals: the content version in the reference
    accrual_reference: str  # reversals: the accrual they mirror
    groups: str  # reversals: comma list of credit groups reversed (reimbursable, card)
    cause: str  # reversals: next-period-start | on-reimbursement | changed | rejected
    voucher_date: str
    amount: str  # card vouchers: Decimal text of the expense net (accrual sign)
    currency: str
    body_digest: str
    intent_at: str
    outcome: str
    voucher_no: str | None
    posted_at: str | None
    labelled_at: str | None
    error: str


@dataclass(frozen=True)
class PostedAccrual:
    """A posted report and its current accrual voucher."""

    report_id: str
    reference: str
    version: str
    company: str
    voucher_no: str
    approved: str
    posted_at: str


@dataclass(frozen=True)
class WatchRow:
    report_id: str
    last_checked: str
    expensify_status: str
    reimbursed: str


@dataclass(frozen=True)
class ChangeRow:
    """A report that changed in Expensify after it was posted, awaiting the operator."""

    report_id: str
    kind: str  # changed | rejected
    accrual_reference: str
    new_hash: str
    new_raw: dict[str, Any]
    state: str  # open | confirmed | done
    detected_at: str
    confirmed_by: str
    confirmed_at: str | None


@dataclass(frozen=True)
class Exclusion:
    report_id: str
    reason: str
    actor: str
    at: str


@dataclass(frozen=True)
class ReportDetail:
    report: ReportRow
    raw: dict[str, Any]
    lines: list[StoredLine]
    holds: list[StoredHold]
    postings: list[LedgerEntry]  # the report's accruals, oldest first
    exclusion: Exclusion | None


@dataclass(frozen=True)
class HoldGroup:
    """Held reports sharing one reason (e.g. every report waiting on cost centre CC-999)."""

    code: str  # the full reason code: missing-dimension:B:CC-999
    company: str
    value: str  # the part after the reason kind: B:CC-999
    report_ids: list[str]
    total_by_currency: dict[str, int]
    oldest_first_held: str
    message: str = ""

    @property
    def kind(self) -> str:
        return self.code.split(":", 1)[0]


@dataclass(frozen=True)
class AuditFilter:
    report_id: str | None = None
    types: tuple[str, ...] = ()
    actor: str | None = None
    text: str = ""  # searched in the summary, report, voucher and transaction IDs
    transaction_id: str | None = None  # events that name this Expensify transaction
    since: str | None = None  # ISO, inclusive
    until: str | None = None  # ISO, exclusive


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at: str
    actor: str
    type: str
    report_id: str | None
    transaction_ids: list[str] | None
    voucher: str | None
    summary: str
    request_digest: str | None
    response_digest: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class MappingRuleRow:
    kind: str
    policy_id: str
    source: str
    rule: dict[str, Any]
    actor: str
    updated: str


@dataclass(frozen=True)
class RunRow:
    id: int
    started: str
    finished: str | None
    actor: str
    mode: str
    summary: dict[str, Any]


@dataclass(frozen=True)
class DimensionRow:
    company: str
    code_part: str
    value: str
    description: str
    valid_from: str
    valid_until: str
    fetched_at: str


# ------------------------------------------------------------------------- files
def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)


def _private_file(path: Path) -> None:
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    os.chmod(path, 0o600)


# ------------------------------------------------------------------------- the store
class Store:
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
        self._depth = 0
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                with contextlib.suppress(OSError):
                    os.chmod(side, 0o600)

    # -- plumbing
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

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE); nested calls join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                self._conn.execute("ROLLBACK")
                raise
            self._depth = 0
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

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reports
    def upsert_reports(self, records: Iterable[ReportRecord]) -> UpsertResult:
        """Insert new reports, refresh changed ones; one transaction for the whole batch.

        A changed report that was pending, held or failed goes back to pending; a posted or
        excluded report keeps its status (a change after posting is reported, not reposted).
        """
        result = UpsertResult()
        now = self.now()
        with self.transaction():
            for rec in records:
                row = self._conn.execute(
                    "SELECT content_hash, status FROM reports WHERE report_id = ?",
                    (rec.report_id,),
                ).fetchone()
                raw = json.dumps(rec.raw, sort_keys=True, default=str)
                values = (
                    rec.policy_id,
                    rec.employee,
                    rec.report_name,
                    rec.approved,
                    rec.currency,
                    rec.total_minor,
                    len(rec.lines),
                    rec.content_hash,
                    raw,
                )
                if row is None:
                    self._conn.execute(
                        "INSERT INTO reports (policy_id, employee, report_name, approved, currency,"
                        " total_minor, line_count, content_hash, raw, report_id, status,"
                        " first_seen, updated) VALUES (?,?,?,?,?,?,?,?,?,?, 'pending', ?, ?)",
                        (*values, rec.report_id, now, now),
                    )
                    result.new.append(rec.report_id)
                elif row[0] == rec.content_hash:
                    result.unchanged.append(rec.report_id)
                    continue
                elif row[1] in ("posted", "posting", "excluded"):
                    result.changed_after_post.append(rec.report_id)
                    continue
                else:
                    self._conn.execute(
                        "UPDATE reports SET policy_id=?, employee=?, report_name=?, approved=?,"
                        " currency=?, total_minor=?, line_count=?, content_hash=?, raw=?,"
                        " status='pending', reason='', updated=? WHERE report_id=?",
                        (*values, now, rec.report_id),
                    )
                    self._conn.execute("DELETE FROM lines WHERE report_id = ?", (rec.report_id,))
                    result.changed.append(rec.report_id)
                self._insert_lines(rec)
        return result

    def report_raw(self, report_id: str) -> dict[str, Any] | None:
        row = self._x("SELECT raw FROM reports WHERE report_id = ?", (report_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def reports_raw(
        self, statuses: Sequence[str], report_ids: Sequence[str] | None = None
    ) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(report_id, status, raw) for reports in these statuses, oldest approval first."""
        for rid, status, text in self.iter_reports_raw_text(statuses, report_ids):
            yield rid, status, json.loads(text)

    def reports_raw_text(
        self, statuses: Sequence[str], report_ids: Sequence[str] | None = None
    ) -> list[tuple[str, str, str]]:
        """(report_id, status, raw JSON text), as reports_raw but not parsed, all at once."""
        return list(self.iter_reports_raw_text(statuses, report_ids))

    def report_keys(
        self, statuses: Sequence[str], report_ids: Sequence[str] | None = None
    ) -> list[tuple[str, str]]:
        """(report_id, status) of reports in these statuses, oldest approval first (with
        `report_ids`: in batches of 500 of them, each batch in that order)."""
        marks = ",".join("?" for _ in statuses)
        sql = f"SELECT report_id, status FROM reports WHERE status IN ({marks})"
        params: list[Any] = list(statuses)
        order = " ORDER BY approved, report_id"
        if report_ids is None:
            return [(r[0], r[1]) for r in self._tuples(sql + order, params)]
        ids = list(report_ids)
        out: list[tuple[str, str]] = []
        for start in range(0, len(ids), _ID_BATCH):
            chunk = ids[start : start + _ID_BATCH]
            q = sql + f" AND report_id IN ({','.join('?' for _ in chunk)})"
            out += [(r[0], r[1]) for r in self._tuples(q + order, params + chunk)]
        return out

    def iter_reports_raw_text(
        self,
        statuses: Sequence[str],
        report_ids: Sequence[str] | None = None,
        keys: Sequence[tuple[str, str]] | None = None,
    ) -> Iterator[tuple[str, str, str]]:
        """(report_id, status, raw JSON text) in report_keys order, the raw text read 500
        reports at a time: at 10,000 reports the texts alone are some 50 MB, and a caller
        that parses one report at a time needs only the batch in hand. `keys`: the
        report_keys the caller already read."""
        if keys is None:
            keys = self.report_keys(statuses, report_ids)
        for start in range(0, len(keys), _ID_BATCH):
            batch = keys[start : start + _ID_BATCH]
            marks = ",".join("?" for _ in batch)
            raw = dict(
                self._tuples(
                    f"SELECT report_id, raw FROM reports WHERE report_id IN ({marks})",
                    [rid for rid, _ in batch],
                )
            )
            for rid, status in batch:
                text = raw.get(rid)
                if text is not None:
                    yield rid, status, text

    def currencies_by_policy(self) -> dict[str, set[str]]:
        """The report currencies seen per Expensify policy."""
        out: dict[str, set[str]] = {}
        for r in self._rows("SELECT DISTINCT policy_id, currency FROM reports"):
            if r["currency"]:
                out.setdefault(r["policy_id"], set()).add(r["currency"])
        return out

    def report_status(self, report_id: str) -> str | None:
        row = self._x("SELECT status FROM reports WHERE report_id = ?", (report_id,)).fetchone()
        return None if row is None else str(row[0])

    def content_hash(self, report_id: str) -> str | None:
        row = self._x(
            "SELECT content_hash FROM reports WHERE report_id = ?", (report_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def set_status(self, report_id: str, status: str, reason: str = "") -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown report status {status!r}")
        now = self.now()
        with self.transaction():
            self._x(
                "UPDATE reports SET status=?, reason=?, updated=?,"
                " held_since = CASE WHEN ?='held' THEN COALESCE(held_since, ?) ELSE NULL END"
                " WHERE report_id=?",
                (status, reason, now, status, now, report_id),
            )
            if status != "held":
                self._x("DELETE FROM holds WHERE report_id = ?", (report_id,))

    def apply_evaluations(self, evaluations: Iterable[EvaluationRecord]) -> dict[str, list[str]]:
        """Record evaluation results in one transaction; the hold queue keeps first_held for
        reasons that persist. Returns {"held": [...], "released": [...], "ready": [...]}:
        `released` are reports that were held and no longer are."""
        now = self.now()
        out: dict[str, list[str]] = {"held": [], "released": [], "ready": [], "newly_held": []}
        with self.transaction():
            for ev in evaluations:
                prev = self._conn.execute(
                    "SELECT status FROM reports WHERE report_id = ?", (ev.report_id,)
                ).fetchone()
                if prev is None:
                    continue
                was_held = prev[0] == "held"
                if ev.holds:
                    codes = [h.code for h in ev.holds]
                    self._conn.execute(
                        f"DELETE FROM holds WHERE report_id = ? AND code NOT IN"
                        f" ({','.join('?' for _ in codes)})",
                        (ev.report_id, *codes),
                    )
                    self._conn.executemany(
                        "INSERT INTO holds (report_id, code, message, company, first_held,"
                        " last_checked) VALUES (?,?,?,?,?,?) ON CONFLICT(report_id, code) DO"
                        " UPDATE SET message=excluded.message, company=excluded.company,"
                        " last_checked=excluded.last_checked",
                        [(ev.report_id, h.code, h.message, ev.company, now, now) for h in ev.holds],
                    )
                    self._conn.execute(
                        "UPDATE reports SET status='held', reason=?, company=?, updated=?,"
                        " held_since=COALESCE(held_since, ?) WHERE report_id=?",
                        (ev.holds[0].code, ev.company, now, now, ev.report_id),
                    )
                    out["held"].append(ev.report_id)
                    if not was_held:
                        out["newly_held"].append(ev.report_id)
                else:
                    self._conn.execute("DELETE FROM holds WHERE report_id = ?", (ev.report_id,))
                    self._conn.execute(
                        "UPDATE reports SET status='ready', reason='', company=?, updated=?,"
                        " held_since=NULL WHERE report_id=?",
                        (ev.company, now, ev.report_id),
                    )
                    out["ready"].append(ev.report_id)
                    if was_held:
                        out["released"].append(ev.report_id)
        return out

    # -- read models for the TUI
    _REPORT_COLS = (
        "report_id, policy_id, employee, report_name, approved, currency, total_minor,"
        " line_count, status, reason, company, held_since, content_hash, first_seen, updated"
    )

    def _report_where(
        self, filter_text: str, status: str | Sequence[str] | None
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if status:
            wanted = [status] if isinstance(status, str) else list(status)
            clauses.append(f"status IN ({','.join('?' for _ in wanted)})")
            params.extend(wanted)
        text = filter_text.strip()
        if text:
            like = "%" + _escape_like(text) + "%"
            clauses.append(
                "("
                + " OR ".join(
                    f"{c} LIKE ? ESCAPE '\\'"
                    for c in (
                        "report_id",
                        "employee",
                        "report_name",
                        "policy_id",
                        "reason",
                        "company",
                    )
                )
                + ")"
            )
            params.extend([like] * 6)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def pending_reports(
        self,
        filter_text: str = "",
        status: str | Sequence[str] | None = None,
        offset: int = 0,
        limit: int = 200,
    ) -> list[ReportRow]:
        """One page of reports (newest approval first), filtered in SQL."""
        where, params = self._report_where(filter_text, status)
        rows = self._rows(
            f"SELECT {self._REPORT_COLS} FROM reports{where}"
            " ORDER BY approved DESC, report_id LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
        return [ReportRow(**r) for r in rows]

    def count_reports(
        self, filter_text: str = "", status: str | Sequence[str] | None = None
    ) -> int:
        where, params = self._report_where(filter_text, status)
        return int(self._x(f"SELECT COUNT(*) FROM reports{where}", params).fetchone()[0])

    def status_counts(self) -> dict[str, int]:
        return {
            r["status"]: r["n"]
            for r in self._rows("SELECT status, COUNT(*) AS n FROM reports GROUP BY status")
        }

    def report_detail(self, report_id: str) -> ReportDetail | None:
        rows = self._rows(
            f"SELECT {self._REPORT_COLS}, raw FROM reports WHERE report_id = ?", (report_id,)
        )
        if not rows:
            return None
        raw = json.loads(rows[0].pop("raw"))
        report = ReportRow(**rows[0])
        lines = [
            StoredLine(**{**r, "reimbursable": bool(r["reimbursable"])})
            for r in self._rows(
                "SELECT * FROM lines WHERE report_id = ? ORDER BY position", (report_id,)
            )
        ]
        holds = [
            StoredHold(**r)
            for r in self._rows(
                "SELECT * FROM holds WHERE report_id = ? ORDER BY first_held, code", (report_id,)
            )
        ]
        excl = self._rows("SELECT * FROM exclusions WHERE report_id = ?", (report_id,))
        return ReportDetail(
            report=report,
            raw=raw,
            lines=lines,
            holds=holds,
            postings=self.ledger_entries(kinds=("accrual",), report_id=report_id),
            exclusion=Exclusion(**excl[0]) if excl else None,
        )

    def holds(self, report_ids: Sequence[str] | None = None) -> list[StoredHold]:
        """Every current hold (held reports only), oldest first."""
        sql = (
            "SELECT h.* FROM holds h JOIN reports r ON r.report_id = h.report_id"
            " WHERE r.status = 'held'"
        )
        params: list[Any] = []
        if report_ids is not None:
            sql += f" AND h.report_id IN ({','.join('?' for _ in report_ids)})"
            params = list(report_ids)
        return [
            StoredHold(**r) for r in self._rows(sql + " ORDER BY h.first_held, h.report_id", params)
        ]

    def hold_groups(self) -> list[HoldGroup]:
        """Held reports grouped by reason code and company: fix one cost centre, release many."""
        rows = self._rows(
            "SELECT h.code, h.company, h.report_id, h.first_held, h.message, r.currency,"
            " r.total_minor FROM holds h JOIN reports r ON r.report_id = h.report_id"
            " WHERE r.status = 'held' ORDER BY h.code, h.company, h.first_held, h.report_id"
        )
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for r in rows:
            g = groups.setdefault(
                (r["code"], r["company"]),
                {"ids": [], "totals": {}, "oldest": r["first_held"], "message": r["message"]},
            )
            g["ids"].append(r["report_id"])
            g["totals"][r["currency"]] = g["totals"].get(r["currency"], 0) + r["total_minor"]
            g["oldest"] = min(g["oldest"], r["first_held"])
        out = [
            HoldGroup(
                code=code,
                company=company,
                value=code.split(":", 1)[1] if ":" in code else "",
                report_ids=g["ids"],
                total_by_currency=g["totals"],
                oldest_first_held=g["oldest"],
                message=g["message"],
            )
            for (code, company), g in groups.items()
        ]
        out.sort(key=lambda g: (-len(g.report_ids), g.oldest_first_held, g.code))
        return out

    # -- exclusions
    def shared_transactions(self) -> dict[str, list[tuple[str, str, str]]]:
        """Expensify transaction IDs on more than one report that is not excluded:
        ID -> [(first_seen, report_id, status)], oldest first (console/report_checks.py)."""
        out: dict[str, list[tuple[str, str, str]]] = {}
        for tid, first_seen, report_id, status in self._tuples(
            "SELECT l.transaction_id, r.first_seen, r.report_id, r.status FROM lines l"
            " JOIN reports r ON r.report_id = l.report_id"
            " WHERE l.transaction_id != '' AND r.status != 'excluded' AND l.transaction_id IN"
            " (SELECT l2.transaction_id FROM lines l2 JOIN reports r2"
            "  ON r2.report_id = l2.report_id WHERE l2.transaction_id != ''"
            "  AND r2.status != 'excluded' GROUP BY l2.transaction_id HAVING COUNT(*) > 1)"
            " ORDER BY l.transaction_id, r.first_seen, r.report_id"
        ):
            out.setdefault(str(tid), []).append((str(first_seen), str(report_id), str(status)))
        return out

    def exclude(self, report_id: str, reason: str, actor: str) -> bool:
        """Exclude a report from posting. False if the report is unknown or already posted."""
        now = self.now()
        with self.transaction():
            status = self.report_status(report_id)
            if status is None or status in ("posted", "posting"):
                return False
            self._x(
                "INSERT OR REPLACE INTO exclusions (report_id, reason, actor, at) VALUES (?,?,?,?)",
                (report_id, reason, actor, now),
            )
            self.set_status(report_id, "excluded", f"excluded: {reason}")
        return True

    def exclusion(self, report_id: str) -> Exclusion | None:
        rows = self._rows("SELECT * FROM exclusions WHERE report_id = ?", (report_id,))
        return Exclusion(**rows[0]) if rows else None

    def excluded_ids(self) -> set[str]:
        return {r[0] for r in self._x("SELECT report_id FROM exclusions").fetchall()}

    # -- mapping rules
    def save_mapping_rule(
        self, kind: str, policy_id: str, source: str, rule: dict[str, Any], actor: str
    ) -> None:
        with self.transaction():
            self._x(
                "INSERT INTO mapping_rules (kind, policy_id, source, rule, actor, updated)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT(kind, policy_id, source) DO UPDATE SET"
                " rule=excluded.rule, actor=excluded.actor, updated=excluded.updated",
                (kind, policy_id, source, json.dumps(rule, sort_keys=True), actor, self.now()),
            )

    def delete_mapping_rule(self, kind: str, policy_id: str, source: str) -> bool:
        with self.transaction():
            cur = self._x(
                "DELETE FROM mapping_rules WHERE kind=? AND policy_id=? AND source=?",
                (kind, policy_id, source),
            )
            return cur.rowcount > 0

    def mapping_rules(self, policy_id: str | None = None) -> list[MappingRuleRow]:
        sql = "SELECT * FROM mapping_rules"
        params: list[Any] = []
        if policy_id is not None:
            sql += " WHERE policy_id IN (?, '')"
            params.append(policy_id)
        return [
            MappingRuleRow(**{**r, "rule": json.loads(r["rule"])})
            for r in self._rows(sql + " ORDER BY kind, policy_id, source", params)
        ]

    # -- IFS dimension cache
    def replace_dimensions(self, company: str, rows: Iterable[DimensionRow]) -> int:
        with self.transaction():
            self._x("DELETE FROM ifs_dimensions WHERE company = ?", (company,))
            cur = self._conn.executemany(
                "INSERT OR REPLACE INTO ifs_dimensions (company, code_part, value, description,"
                " valid_from, valid_until, fetched_at) VALUES (?,?,?,?,?,?,?)",
                [
                    (
                        company,
                        d.code_part,
                        d.value,
                        d.description,
                        d.valid_from,
                        d.valid_until,
                        d.fetched_at,
                    )
                    for d in rows
                ],
            )
            return cur.rowcount

    def upsert_dimension(self, d: DimensionRow) -> None:
        with self.transaction():
            self._x(
                "INSERT OR REPLACE INTO ifs_dimensions (company, code_part, value, description,"
                " valid_from, valid_until, fetched_at) VALUES (?,?,?,?,?,?,?)",
                (
                    d.company,
                    d.code_part,
                    d.value,
                    d.description,
                    d.valid_from,
                    d.valid_until,
                    d.fetched_at,
                ),
            )

    def dimensions(
        self, company: str, code_part: str | None = None, prefix: str = "", limit: int = 500
    ) -> list[DimensionRow]:
        sql = "SELECT * FROM ifs_dimensions WHERE company = ?"
        params: list[Any] = [company]
        if code_part:
            sql += " AND code_part = ?"
            params.append(code_part)
        if prefix:
            sql += " AND (value LIKE ? OR description LIKE ?)"
            params.extend([f"{prefix}%", f"%{prefix}%"])
        sql += " ORDER BY code_part, value LIMIT ?"
        params.append(int(limit))
        return [DimensionRow(**r) for r in self._rows(sql, params)]

    # -- the posting ledger (console/ledger.py)
    def ledger_intent(
        self,
        *,
        kind: str,
        reference: str,
        company: str,
        body_digest: str,
        report_id: str = "",
        period: str = "",
        version: str = "",
        accrual_reference: str = "",
        groups: Sequence[str] = (),
        cause: str = "",
        voucher_date: str = "",
        amount: str = "",
        currency: str = "",
    ) -> int:
        """Write (and commit, unless inside an outer transaction) the intent to post. An
        accrual's report goes to status posting with it."""
        if kind not in KINDS:
            raise ValueError(f"unknown voucher kind {kind!r}")
        with self.transaction():
            cur = self._x(
                "INSERT INTO ledger (kind, reference, company, report_id, period, version,"
                " accrual_reference, groups, cause, voucher_date, amount, currency,"
                " body_digest, intent_at, outcome) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,'intent')",
                (
                    kind,
                    reference,
                    company,
                    report_id,
                    period,
                    version,
                    accrual_reference,
                    ",".join(groups),
                    cause,
                    voucher_date,
                    amount,
                    currency,
                    body_digest,
                    self.now(),
                ),
            )
            if kind == "accrual":
                self._x(
                    "UPDATE reports SET status='posting', updated=? WHERE report_id=?",
                    (self.now(), report_id),
                )
            return int(cur.lastrowid or 0)

    def ledger_outcome(
        self, entry_id: int, outcome: str, *, voucher_no: str | None = None, error: str = ""
    ) -> LedgerEntry:
        """Record what became of an intent; an accrual's report status follows it."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown posting outcome {outcome!r}")
        now = self.now()
        with self.transaction():
            cur = self._x(
                "UPDATE ledger SET outcome=?, voucher_no=?, error=?,"
                " posted_at = CASE WHEN ?='posted' THEN ? ELSE posted_at END WHERE id=?",
                (outcome, voucher_no, error, outcome, now, entry_id),
            )
            if cur.rowcount == 0:
                raise KeyError(entry_id)
            entry = self.ledger_entries(entry_ids=(entry_id,))[0]
            if entry.kind == "accrual":
                status = {"posted": "posted", "failed": "failed", "unknown": "posting"}.get(outcome)
                if status:
                    self.set_status(entry.report_id, status, error if outcome == "failed" else "")
            return entry

    def ledger_entries(
        self,
        *,
        kinds: Sequence[str] | None = None,
        outcomes: Sequence[str] | None = None,
        reference: str | None = None,
        report_id: str | None = None,
        entry_ids: Sequence[int] | None = None,
        unlabelled: bool = False,
    ) -> list[LedgerEntry]:
        """Ledger entries, oldest first, filtered by kind, outcome, reference, report or id."""
        where: list[str] = []
        params: list[Any] = []
        for column, values in (("kind", kinds), ("outcome", outcomes), ("id", entry_ids)):
            if values is not None:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                params.extend(values)
        for column, value in (("reference", reference), ("report_id", report_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if unlabelled:
            where.append("outcome = 'posted' AND labelled_at IS NULL")
        sql = "SELECT * FROM ledger"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [LedgerEntry(**r) for r in self._rows(sql + " ORDER BY id", params)]

    def posted_accrual(self, report_id: str, version: str | None = None) -> LedgerEntry | None:
        """The report's newest posted accrual (of that version)."""
        rows = [
            e
            for e in self.ledger_entries(
                kinds=("accrual",), outcomes=("posted",), report_id=report_id
            )
            if version is None or e.version == version
        ]
        return rows[-1] if rows else None

    def mark_labelled(self, report_ids: Sequence[str]) -> None:
        now = self.now()
        with self.transaction():
            self._conn.executemany(
                "UPDATE ledger SET labelled_at = ? WHERE report_id = ? AND kind = 'accrual'"
                " AND outcome = 'posted' AND labelled_at IS NULL",
                [(now, rid) for rid in report_ids],
            )

    def posted_accruals(self, report_ids: Sequence[str] | None = None) -> list[PostedAccrual]:
        """Reports in status posted with their newest posted accrual."""
        sql = (
            "SELECT r.report_id, p.reference, p.version, p.company, COALESCE(p.voucher_no, '')"
            " AS voucher_no, r.approved, COALESCE(p.posted_at, '') AS posted_at"
            " FROM reports r JOIN ledger p ON p.id = (SELECT MAX(id) FROM ledger q"
            " WHERE q.report_id = r.report_id AND q.kind = 'accrual' AND q.outcome = 'posted')"
            " WHERE r.status = 'posted'"
        )
        rows = self._rows(sql + " ORDER BY r.approved, r.report_id")
        wanted = None if report_ids is None else set(report_ids)
        return [PostedAccrual(**r) for r in rows if wanted is None or r["report_id"] in wanted]

    def line_reimbursable(self, report_id: str) -> dict[str, bool]:
        """transactionID -> reimbursable, for the lines the store holds for a report."""
        return {
            r["transaction_id"]: bool(r["reimbursable"])
            for r in self._rows(
                "SELECT transaction_id, reimbursable FROM lines WHERE report_id = ?", (report_id,)
            )
        }

    def watch_candidates(self, limit: int) -> list[str]:
        """Posted reports that may still change (not seen reimbursed, no open change), the
        least recently re-read first: each cycle re-reads the next `limit` of them."""
        rows = self._rows(
            "SELECT r.report_id FROM reports r LEFT JOIN watched w ON w.report_id = r.report_id"
            " WHERE r.status = 'posted' AND COALESCE(w.expensify_status, '') != 'REIMBURSED'"
            " AND r.report_id NOT IN (SELECT report_id FROM report_changes"
            " WHERE state IN ('open', 'confirmed'))"
            " ORDER BY COALESCE(w.last_checked, ''), r.approved, r.report_id LIMIT ?",
            (int(limit),),
        )
        return [r["report_id"] for r in rows]

    def save_watch(self, seen: Sequence[tuple[str, str, str]]) -> None:
        """(report_id, Expensify status, reimbursed date) for each report re-read."""
        now = self.now()
        with self.transaction():
            self._conn.executemany(
                "INSERT INTO watched (report_id, last_checked, expensify_status, reimbursed)"
                " VALUES (?,?,?,?) ON CONFLICT(report_id) DO UPDATE SET"
                " last_checked=excluded.last_checked,"
                " expensify_status=excluded.expensify_status, reimbursed=excluded.reimbursed",
                [(rid, now, status, reimbursed) for rid, status, reimbursed in seen],
            )

    def watched(self, report_ids: Sequence[str] | None = None) -> dict[str, WatchRow]:
        rows = [WatchRow(**r) for r in self._rows("SELECT * FROM watched")]
        wanted = None if report_ids is None else set(report_ids)
        return {w.report_id: w for w in rows if wanted is None or w.report_id in wanted}

    def open_change(
        self, report_id: str, kind: str, accrual_reference: str, new_hash: str, new_raw: Any
    ) -> bool:
        """Record (or refresh) a change after posting; True when it is new or different."""
        with self.transaction():
            row = self._x(
                "SELECT kind, new_hash, state FROM report_changes WHERE report_id = ?",
                (report_id,),
            ).fetchone()
            if (
                row is not None
                and row[2] in ("open", "confirmed")
                and tuple(row[:2])
                == (
                    kind,
                    new_hash,
                )
            ):
                return False
            if row is not None and row[2] == "confirmed":
                return False  # being applied: the confirmation decides
            self._x(
                "INSERT OR REPLACE INTO report_changes (report_id, kind, accrual_reference,"
                " new_hash, new_raw, state, detected_at) VALUES (?,?,?,?,?, 'open', ?)",
                (
                    report_id,
                    kind,
                    accrual_reference,
                    new_hash,
                    json.dumps(new_raw, sort_keys=True, default=str),
                    self.now(),
                ),
            )
            code = f"changed-after-posting:{report_id}"
            self._x(
                "INSERT INTO holds (report_id, code, message, company, first_held, last_checked)"
                " SELECT ?, ?, ?, company, ?, ? FROM reports WHERE report_id = ?"
                " ON CONFLICT(report_id, code) DO UPDATE SET message=excluded.message,"
                " last_checked=excluded.last_checked",
                (
                    report_id,
                    code,
                    f"report {report_id} was {kind} in Expensify after its accrual"
                    f" {accrual_reference} was posted; confirm to reverse it"
                    + (" and post the new version" if kind == "changed" else ""),
                    self.now(),
                    self.now(),
                    report_id,
                ),
            )
            return True

    def report_change(self, report_id: str) -> ChangeRow | None:
        rows = self._rows("SELECT * FROM report_changes WHERE report_id = ?", (report_id,))
        return _change_row(rows[0]) if rows else None

    def report_changes(self, states: Sequence[str] = ("open", "confirmed")) -> list[ChangeRow]:
        marks = ",".join("?" for _ in states)
        return [
            _change_row(r)
            for r in self._rows(
                f"SELECT * FROM report_changes WHERE state IN ({marks}) ORDER BY detected_at,"
                " report_id",
                list(states),
            )
        ]

    def set_change_state(self, report_id: str, state: str, actor: str = "") -> None:
        with self.transaction():
            if state == "confirmed":
                self._x(
                    "UPDATE report_changes SET state='confirmed', confirmed_by=?, confirmed_at=?"
                    " WHERE report_id=?",
                    (actor, self.now(), report_id),
                )
            else:
                self._x("UPDATE report_changes SET state=? WHERE report_id=?", (state, report_id))
            if state == "done":
                self._x(
                    "DELETE FROM holds WHERE report_id = ? AND code = ?",
                    (report_id, f"changed-after-posting:{report_id}"),
                )

    def awaiting_new_accrual(self, report_id: str) -> bool:
        """A confirmed change whose new accrual is not posted yet: the post step must not
        take the old posting for this report's accrual."""
        row = self._x(
            "SELECT 1 FROM report_changes WHERE report_id = ? AND state = 'confirmed'"
            " AND kind = 'changed'",
            (report_id,),
        ).fetchone()
        return row is not None

    def replace_report_content(self, rec: ReportRecord) -> None:
        """A confirmed change: the report's stored content becomes the new version, to be
        evaluated and posted like a new report."""
        now = self.now()
        with self.transaction():
            self._x(
                "UPDATE reports SET policy_id=?, employee=?, report_name=?, approved=?,"
                " currency=?, total_minor=?, line_count=?, content_hash=?, raw=?,"
                " status='pending', reason='', updated=? WHERE report_id=?",
                (
                    rec.policy_id,
                    rec.employee,
                    rec.report_name,
                    rec.approved,
                    rec.currency,
                    rec.total_minor,
                    len(rec.lines),
                    rec.content_hash,
                    json.dumps(rec.raw, sort_keys=True, default=str),
                    now,
                    rec.report_id,
                ),
            )
            self._x("DELETE FROM lines WHERE report_id = ?", (rec.report_id,))
            self._insert_lines(rec)

    def _insert_lines(self, rec: ReportRecord) -> None:
        """Writes a report's lines (the caller holds the transaction and cleared old lines)."""
        self._conn.executemany(
            "INSERT OR REPLACE INTO lines (report_id, transaction_id, position, merchant,"
            " category, tag, amount_minor, currency, reimbursable, created, comment)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    rec.report_id,
                    ln.transaction_id,
                    i,
                    ln.merchant,
                    ln.category,
                    ln.tag,
                    ln.amount_minor,
                    ln.currency,
                    1 if ln.reimbursable else 0,
                    ln.created,
                    ln.comment,
                )
                for i, ln in enumerate(rec.lines)
            ],
        )

    def posted_count(self) -> int:
        return int(
            self._x(
                "SELECT COUNT(*) FROM ledger WHERE kind = 'accrual' AND outcome = 'posted'"
            ).fetchone()[0]
        )

    # -- cursor and request window
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

    # -- runs
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

    # -- audit rows (audit.py owns the chain; these are its storage primitives)
    def audit_head(self) -> tuple[int, str]:
        """(last seq, last hash) as recorded in the chain head; (0, '') when empty."""
        row = self._x("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        if row is None:
            return 0, ""
        seq, _, digest = str(row[0]).partition(":")
        return int(seq), digest

    def append_audit_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert chained rows and move the head; the caller holds the transaction."""
        if not rows:
            return
        with self.transaction():
            self._conn.executemany(
                "INSERT INTO audit_events (seq, at, actor, type, report_id, transaction_ids,"
                " voucher, summary, request_digest, response_digest, data, prev_hash, hash)"
                " VALUES (:seq, :at, :actor, :type, :report_id, :transaction_ids, :voucher,"
                " :summary, :request_digest, :response_digest, :data, :prev_hash, :hash)",
                rows,
            )
            last = rows[-1]
            self._x(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('audit_head', ?)",
                (f"{last['seq']}:{last['hash']}",),
            )

    def iter_audit_rows(self, batch: int = 2000) -> Iterator[dict[str, Any]]:
        """Every stored audit row in physical seq order, in batches (no full load)."""
        last = -1
        while True:
            rows = self._rows(
                "SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?", (last, batch)
            )
            if not rows:
                return
            yield from rows
            last = rows[-1]["seq"]

    def _audit_where(self, flt: AuditFilter) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if flt.report_id:
            clauses.append("report_id = ?")
            params.append(flt.report_id)
        if flt.types:
            clauses.append(f"type IN ({','.join('?' for _ in flt.types)})")
            params.extend(flt.types)
        if flt.actor:
            clauses.append("actor = ?")
            params.append(flt.actor)
        if flt.since:
            clauses.append("at >= ?")
            params.append(flt.since)
        if flt.until:
            clauses.append("at < ?")
            params.append(flt.until)
        if flt.transaction_id:
            # transaction_ids holds a JSON list: match the quoted ID, not a substring of another.
            clauses.append("transaction_ids LIKE ? ESCAPE '\\'")
            params.append('%"' + _escape_like(flt.transaction_id) + '"%')
        if flt.text.strip():
            like = "%" + _escape_like(flt.text.strip()) + "%"
            clauses.append(
                "(summary LIKE ? ESCAPE '\\' OR report_id LIKE ? ESCAPE '\\'"
                " OR voucher LIKE ? ESCAPE '\\' OR transaction_ids LIKE ? ESCAPE '\\')"
            )
            params.extend([like, like, like, like])
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def audit_page(
        self, flt: AuditFilter | None = None, before_seq: int | None = None, limit: int = 200
    ) -> list[AuditRow]:
        """One page of events, newest first; pass the last row's seq as before_seq for more."""
        where, params = self._audit_where(flt or AuditFilter())
        if before_seq is not None:
            where += (" AND " if where else " WHERE ") + "seq < ?"
            params.append(before_seq)
        rows = self._rows(
            f"SELECT * FROM audit_events{where} ORDER BY seq DESC LIMIT ?", [*params, int(limit)]
        )
        return [_audit_row(r) for r in rows]

    def audit_count(self, flt: AuditFilter | None = None) -> int:
        where, params = self._audit_where(flt or AuditFilter())
        return int(self._x(f"SELECT COUNT(*) FROM audit_events{where}", params).fetchone()[0])

    def audit_rows_for_export(
        self, report_id: str | None = None, batch: int = 2000
    ) -> Iterator[AuditRow]:
        last = 0
        while True:
            sql = "SELECT * FROM audit_events WHERE seq > ?"
            params: list[Any] = [last]
            if report_id:
                sql += " AND report_id = ?"
                params.append(report_id)
            rows = self._rows(sql + " ORDER BY seq LIMIT ?", [*params, batch])
            if not rows:
                return
            for r in rows:
                yield _audit_row(r)
            last = rows[-1]["seq"]

    # -- searches over what the screens show (issue 15): every visible column
    # The amount as the console shows it, without thousands separators ("1234.56", "-0.05").
    _AMOUNT_SHOWN = (
        "(CASE WHEN total_minor < 0 THEN '-' ELSE '' END || (ABS(total_minor) / 100) || '.'"
        " || printf('%02d', ABS(total_minor) % 100))"
    )

    def _report_search_where(
        self,
        filter_text: str,
        status: str | Sequence[str] | None,
        status_words: Mapping[str, str],
    ) -> tuple[str, list[Any]]:
        """_report_where's statuses, and the text searched in every column a report row
        shows: ID, employee, name, policy, company, reason, the status (its code and the word
        shown for it, `status_words`), the approval date and the amount as shown (with or
        without thousands separators)."""
        where, params = self._report_where("", status)
        text = filter_text.strip()
        if not text:
            return where, params
        like = "%" + _escape_like(text) + "%"
        columns = ("report_id", "employee", "report_name", "policy_id", "reason", "company")
        clauses = [f"{c} LIKE ? ESCAPE '\\'" for c in columns]
        clauses += ["status LIKE ? ESCAPE '\\'", "substr(approved, 1, 10) LIKE ? ESCAPE '\\'"]
        args: list[Any] = [like] * (len(columns) + 2)
        shown = [code for code, word in status_words.items() if text.lower() in word.lower()]
        if shown:
            clauses.append(f"status IN ({','.join('?' for _ in shown)})")
            args.extend(shown)
        bare = text.replace(",", "")
        if any(ch.isdigit() for ch in bare):
            clauses.append(f"{self._AMOUNT_SHOWN} LIKE ? ESCAPE '\\'")
            args.append("%" + _escape_like(bare) + "%")
        joined = "(" + " OR ".join(clauses) + ")"
        where = f"{where} AND {joined}" if where else f" WHERE {joined}"
        return where, [*params, *args]

    def search_reports(
        self,
        filter_text: str = "",
        status: str | Sequence[str] | None = None,
        status_words: Mapping[str, str] | None = None,
        offset: int = 0,
        limit: int = 200,
    ) -> list[ReportRow]:
        """pending_reports() with the text searched in every shown column (newest first)."""
        where, params = self._report_search_where(filter_text, status, status_words or {})
        rows = self._rows(
            f"SELECT {self._REPORT_COLS} FROM reports{where}"
            " ORDER BY approved DESC, report_id LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
        return [ReportRow(**r) for r in rows]

    def count_search_reports(
        self,
        filter_text: str = "",
        status: str | Sequence[str] | None = None,
        status_words: Mapping[str, str] | None = None,
    ) -> int:
        where, params = self._report_search_where(filter_text, status, status_words or {})
        return int(self._x(f"SELECT COUNT(*) FROM reports{where}", params).fetchone()[0])

    def _audit_search_where(self, flt: AuditFilter) -> tuple[str, list[Any]]:
        """_audit_where's fields, and free words searched in every column the audit shows:
        summary, report, voucher, transactions, the event type, the actor and the time."""
        where, params = self._audit_where(dataclasses.replace(flt, text=""))
        text = flt.text.strip()
        if not text:
            return where, params
        like = "%" + _escape_like(text) + "%"
        columns = ("summary", "report_id", "voucher", "transaction_ids", "type", "actor", "at")
        clauses = [f"{c} LIKE ? ESCAPE '\\'" for c in columns]
        args: list[Any] = [like] * len(columns)
        # An amount as shown ("357.40") also finds a summary written in minor units ("35740 ").
        bare = text.replace(",", "")
        whole, dot, cents = bare.partition(".")
        if dot and whole.lstrip("-").isdigit() and cents.isdigit() and len(cents) == 2:
            clauses.append("summary LIKE ? ESCAPE '\\'")
            args.append("%" + _escape_like(str(int(whole + cents))) + " %")
        joined = "(" + " OR ".join(clauses) + ")"
        where = f"{where} AND {joined}" if where else f" WHERE {joined}"
        return where, [*params, *args]

    def search_audit_page(
        self, flt: AuditFilter | None = None, before_seq: int | None = None, limit: int = 200
    ) -> list[AuditRow]:
        """audit_page() with free words searched in every shown column, newest first."""
        where, params = self._audit_search_where(flt or AuditFilter())
        if before_seq is not None:
            where += (" AND " if where else " WHERE ") + "seq < ?"
            params.append(before_seq)
        rows = self._rows(
            f"SELECT * FROM audit_events{where} ORDER BY seq DESC LIMIT ?", [*params, int(limit)]
        )
        return [_audit_row(r) for r in rows]

    def count_search_audit(self, flt: AuditFilter | None = None) -> int:
        where, params = self._audit_search_where(flt or AuditFilter())
        return int(self._x(f"SELECT COUNT(*) FROM audit_events{where}", params).fetchone()[0])

    def include(self, report_id: str) -> Exclusion | None:
        """Undo an exclusion: the report is pending again (evaluated on the next look).
        Returns the exclusion undone; None when the report is not excluded."""
        with self.transaction():
            found = self.exclusion(report_id)
            if found is None or self.report_status(report_id) != "excluded":
                return None
            self._x("DELETE FROM exclusions WHERE report_id = ?", (report_id,))
            self.set_status(report_id, "pending", "")
        return found


def _change_row(r: dict[str, Any]) -> ChangeRow:
    return ChangeRow(**{**r, "new_raw": json.loads(r["new_raw"] or "{}")})


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _audit_row(r: dict[str, Any]) -> AuditRow:
    return AuditRow(
        seq=r["seq"],
        at=r["at"],
        actor=r["actor"],
        type=r["type"],
        report_id=r["report_id"],
        transaction_ids=json.loads(r["transaction_ids"]) if r["transaction_ids"] else None,
        voucher=r["voucher"],
        summary=r["summary"],
        request_digest=r["request_digest"],
        response_digest=r["response_digest"],
        data=json.loads(r["data"] or "{}"),
        prev_hash=r["prev_hash"],
        hash=r["hash"],
    )


# ------------------------------------------------------------------------- posting lock
@dataclass(frozen=True)
class LockInfo:
    pid: int
    actor: str
    since: str

    def describe(self) -> str:
        return f"pid {self.pid} ({self.actor}) since {self.since}"


class PostingLock:
    """An exclusive `flock` on `<state>.lock`. The OS drops it when the holder dies, so a
    SIGKILLed run never leaves a stale lock. A second holder waits up to `wait_s`, then gets
    LockHeld naming the holder (pid, actor, since: written into the file after locking)."""

    def __init__(self, path: str | Path, actor: str, *, wait_s: float = 10.0) -> None:
        self.path = Path(path)
        self.actor = actor
        self.wait_s = wait_s
        self._fd: int | None = None
        self._depth = 0

    def holder(self) -> LockInfo | None:
        try:
            text = self.path.read_text(encoding="utf-8")
            data = json.loads(text)
            return LockInfo(int(data["pid"]), str(data["actor"]), str(data["since"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def acquire(self) -> None:
        if self._fd is not None:
            self._depth += 1
            return
        # Taken only to post: nothing is posted by rules of a day that has not come yet.
        try:
            clock.refuse_future_posting()
        except clock.AsOfError as exc:
            raise ConfigError(str(exc)) from None
        _private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + max(0.0, self.wait_s)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    info = self.holder()
                    who = info.describe() if info else "another process"
                    raise LockHeld(
                        f"another run holds the posting lock: {who}; waited {self.wait_s:g}s"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        payload = json.dumps({"pid": os.getpid(), "actor": self.actor, "since": iso(utc_now())})
        os.pwrite(fd, payload.encode(), 0)
        self._fd = fd
        self._depth = 1

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> PostingLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
