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

The package splits the state by table group, one mixin each; `Store` is all of them:
`schema` (migrations), `records` (what goes in and comes out), `base` (the connection and
transactions), `reports`, `ledger`, `read_models` (what the TUI pages through), `audit`,
`rules` (mapping rules, the IFS dimension cache), `runs` (cursors, the request window, runs),
`lock` (the posting lock). A new method goes into the mixin of its tables.
"""

from __future__ import annotations

from console.store.audit import AuditMixin
from console.store.base import CRASH_AT_ENV, crash_point, iso, utc_now
from console.store.lock import LockInfo, PostingLock
from console.store.read_models import ReadModelsMixin
from console.store.records import (
    AuditFilter,
    AuditRow,
    ChangeRow,
    DimensionRow,
    EvaluationRecord,
    Exclusion,
    HoldGroup,
    HoldRecord,
    LedgerEntry,
    LineRecord,
    MappingRuleRow,
    PostedAccrual,
    ReportDetail,
    ReportRecord,
    ReportRow,
    RunRow,
    StoredHold,
    StoredLine,
    UpsertResult,
    WatchRow,
)
from console.store.rules import RulesMixin
from console.store.runs import RunsMixin, peek_cursor
from console.store.schema import (
    _MIGRATIONS,
    APPROVAL_MODES,
    OUTCOMES,
    RECONCILIATION_FILE_SYSTEM,
    SCHEMA_VERSION,
    STATUSES,
)


class Store(ReadModelsMixin, AuditMixin, RulesMixin, RunsMixin):
    """The SQLite state file. Thread-safe (one connection behind a re-entrant lock)."""


__all__ = [
    "APPROVAL_MODES",
    "CRASH_AT_ENV",
    "OUTCOMES",
    "RECONCILIATION_FILE_SYSTEM",
    "SCHEMA_VERSION",
    "STATUSES",
    "_MIGRATIONS",
    "AuditFilter",
    "AuditRow",
    "ChangeRow",
    "DimensionRow",
    "EvaluationRecord",
    "Exclusion",
    "HoldGroup",
    "HoldRecord",
    "LedgerEntry",
    "LineRecord",
    "LockInfo",
    "MappingRuleRow",
    "PostedAccrual",
    "PostingLock",
    "ReportDetail",
    "ReportRecord",
    "ReportRow",
    "RunRow",
    "Store",
    "StoredHold",
    "StoredLine",
    "UpsertResult",
    "WatchRow",
    "crash_point",
    "iso",
    "peek_cursor",
    "utc_now",
]
