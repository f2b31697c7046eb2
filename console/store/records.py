"""What the store takes and hands back: records to write, rows read (frozen dataclasses)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
class ReportFacts:
    """What a report is (who, when, how much), as it is written and as it is read back."""

    report_id: str
    policy_id: str
    employee: str
    report_name: str
    approved: str
    currency: str
    total_minor: int


@dataclass(frozen=True)
class ReportRecord(ReportFacts):
    """A report as fetched, ready to upsert."""

    content_hash: str
    raw: dict[str, Any]
    lines: tuple[LineRecord, ...] = ()
    # The same content's version-1 hash (console/report_hash.py), for stores written before
    # version 2: a report that still matches it is not a change.
    legacy_hash: str = ""


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
class ReportRow(ReportFacts):
    """A stored report as the lists show it: its facts, its lines' count, its state."""

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
    text: str = ""  # searched in every column the audit shows (store/audit.py)
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

    @classmethod
    def from_db(cls, row: Mapping[str, Any]) -> AuditRow:
        """An `audit_events` row as stored (its JSON columns still text)."""
        ids = row["transaction_ids"]
        return cls(
            **{
                **row,
                "transaction_ids": json.loads(ids) if ids else None,
                "data": json.loads(row["data"] or "{}"),
            }
        )


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
