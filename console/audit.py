"""The audit trail: an append-only, SHA-256 hash-chained event log inside the store.

Each event's hash covers a canonical JSON of the previous event's hash and every field of the
event, so editing, deleting or reordering any stored event breaks the chain at that event;
the chain head kept beside the log catches deletion of the newest events. `verify()` names
the first bad event.

Digests of requests and responses are SHA-256 of the body with secrets taken out first
(the Expensify job description carries the partner secret: its `credentials` are redacted
before digesting). No secret is ever stored here.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any

from console.store import AuditRow, Store

# Event types (design.md §4: every step leaves one).
EVENT_TYPES = (
    "fetched",
    "mapped",
    "held",
    "released",
    "planned",
    "dry-run",
    "intent",
    "posted",
    "post-failed",
    "unknown-outcome",
    "reconciled",
    "labelled",
    "excluded",
    "included",  # an exclusion undone by the operator (with the exclusion it undoes)
    "replayed",
    "mapping-changed",
    "run-started",
    "run-finished",
    "changed-after-post",
    "dimensions-refreshed",
    "adopted",  # a voucher IFS already held, linked to its report by `ml-console adopt`
    # console/reversal.py: accrual reversals and changes after posting
    "reversal-planned",
    "reversal-posted",
    "reversal-failed",
    "reimbursed",  # a posted report seen REIMBURSED in Expensify
    "change-confirmed",  # the operator confirmed reversing a changed or rejected report
    "tie-out",  # a period-close tie-out was computed (console/close.py): its result and digest
    # console/card_accrual.py: card spend not yet reported, accrued at close and reversed
    "card-accrual-planned",  # intent committed, before the POST
    "card-accrual-posted",
    "card-accrual-failed",
    "card-accrual-differs",  # posted accrual no longer matches the spend; left as it is
    "card-reversal-planned",
    "card-reversal-posted",
    "card-reversal-failed",
)

GENESIS = "0" * 64
# Rows written per INSERT batch when appending many events (AuditLog.append).
APPEND_CHUNK = 1000
_SECRET_KEYS = frozenset(
    {
        "partnerusersecret",
        "client_secret",
        "clientsecret",
        "password",
        "secret",
        "access_token",
        "refresh_token",
        "authorization",
    }
)
_FIELDS = (
    "seq",
    "at",
    "actor",
    "type",
    "report_id",
    "transaction_ids",
    "voucher",
    "summary",
    "request_digest",
    "response_digest",
    "data",
)


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


def redact(value: Any) -> Any:
    """A copy with every secret-looking key's value replaced (recursively)."""
    if isinstance(value, dict):
        return {
            k: ("[redacted]" if str(k).lower() in _SECRET_KEYS else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return format(obj, "f")
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", by_alias=True)
    return str(obj)


def canonical(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default
    )


def digest(body: Any) -> str | None:
    """SHA-256 of a request/response body with secrets redacted. Bytes and text are parsed as
    JSON where possible (so a job description's secret is redacted too), else hashed as is."""
    if body is None:
        return None
    if isinstance(body, bytes | bytearray):
        try:
            body = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return hashlib.sha256(bytes(body)).hexdigest()
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return hashlib.sha256(body.encode()).hexdigest()
    return hashlib.sha256(canonical(redact(body)).encode()).hexdigest()


def _chain_hash(prev_hash: str, row: dict[str, Any]) -> str:
    payload = {"prev_hash": prev_hash, **{k: row[k] for k in _FIELDS}}
    return hashlib.sha256(canonical(payload).encode()).hexdigest()


@dataclass(frozen=True)
class Event:
    """One event to append; the log assigns seq, at, prev_hash and hash."""

    type: str
    summary: str = ""
    report_id: str | None = None
    transaction_ids: Sequence[str] | None = None
    voucher: str | None = None
    request_digest: str | None = None
    response_digest: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    actor: str | None = None  # None: the log's actor


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} events verified"
        return f"audit chain broken at event {self.first_bad_seq}: {self.problem}"


class AuditLog:
    def __init__(self, store: Store, actor: str) -> None:
        self.store = store
        self.actor = actor

    def record(self, type: str, summary: str = "", **fields: Any) -> AuditRow:
        return self.record_many([Event(type=type, summary=summary, **fields)])[-1]

    def record_many(self, events: Iterable[Event]) -> list[AuditRow]:
        """Append events in one transaction (joining the caller's, if any)."""
        rows: list[dict[str, Any]] = []
        self._append(events, rows.append)
        return [_audit_row_of(row) for row in rows]

    def append(self, events: Iterable[Event]) -> int:
        """As record_many, for many events: rows are built and written a chunk at a time as
        `events` yields them (a generator is never materialised), and none is handed back.
        Returns how many were appended."""
        return self._append(events, None)

    def _append(
        self, events: Iterable[Event], keep: Callable[[dict[str, Any]], None] | None
    ) -> int:
        count = 0
        with self.store.transaction():
            seq, prev = self.store.audit_head()
            prev = prev or GENESIS
            now = self.store.now()  # one timestamp for every event of the call
            chunk: list[dict[str, Any]] = []
            for ev in events:
                if ev.type not in EVENT_TYPES:
                    raise ValueError(f"unknown audit event type {ev.type!r}")
                seq += 1
                row: dict[str, Any] = {
                    "seq": seq,
                    "at": now,
                    "actor": ev.actor or self.actor,
                    "type": ev.type,
                    "report_id": ev.report_id,
                    "transaction_ids": (
                        canonical(list(ev.transaction_ids))
                        if ev.transaction_ids is not None
                        else None
                    ),
                    "voucher": ev.voucher,
                    "summary": ev.summary,
                    "request_digest": ev.request_digest,
                    "response_digest": ev.response_digest,
                    "data": canonical(redact(ev.data)),
                }
                row["prev_hash"] = prev
                row["hash"] = _chain_hash(prev, row)
                prev = row["hash"]
                chunk.append(row)
                if keep is not None:
                    keep(row)
                if len(chunk) >= APPEND_CHUNK:
                    self.store.append_audit_rows(chunk)
                    count += len(chunk)
                    chunk = []
            self.store.append_audit_rows(chunk)
            count += len(chunk)
        return count

    def verify(self) -> VerifyResult:
        """Walk the chain in seq order; name the first event that was edited, deleted or moved."""
        expected_prev = GENESIS
        expected_seq = 1
        checked = 0
        for row in self.store.iter_audit_rows():
            seq = row["seq"]
            if seq != expected_seq:
                return VerifyResult(
                    False,
                    checked,
                    expected_seq,
                    f"event {expected_seq} is missing (next stored event is {seq}): deleted",
                )
            if row["prev_hash"] != expected_prev:
                return VerifyResult(
                    False,
                    checked,
                    seq,
                    "does not follow the event before it (deleted, inserted or reordered)",
                )
            if _chain_hash(row["prev_hash"], row) != row["hash"]:
                return VerifyResult(
                    False, checked, seq, f"its content was edited ({row['type']} event)"
                )
            expected_prev = row["hash"]
            expected_seq += 1
            checked += 1
        head_seq, head_hash = self.store.audit_head()
        if head_seq != checked or (head_seq and head_hash != expected_prev):
            if head_seq > checked:
                return VerifyResult(
                    False,
                    checked,
                    checked + 1,
                    f"the log ends at event {checked} but the chain head says {head_seq}:"
                    " the newest events were deleted",
                )
            return VerifyResult(
                False,
                checked,
                head_seq + 1 if head_seq < checked else head_seq,
                "the chain head does not match the last event",
            )
        return VerifyResult(True, checked)

    def export(self, out: IO[str], fmt: str = "jsonl", report_id: str | None = None) -> int:
        """Write events (oldest first) as JSON lines or CSV; returns how many. Outside data is
        shown, never executed (console/textsafe.py): JSON lines carry no raw control character
        (the same JSON values), CSV cells are made visible and neutralised against formulas."""
        from console.textsafe import csv_cell, escape_json_text

        n = 0
        if fmt == "jsonl":
            for ev in self.store.audit_rows_for_export(report_id):
                out.write(escape_json_text(canonical(_export_dict(ev))) + "\n")
                n += 1
        elif fmt == "csv":
            cols = [*_FIELDS, "prev_hash", "hash"]
            writer = csv.DictWriter(out, fieldnames=cols)
            writer.writeheader()
            for ev in self.store.audit_rows_for_export(report_id):
                d = _export_dict(ev)
                d["transaction_ids"] = " ".join(ev.transaction_ids or [])
                d["data"] = canonical(ev.data)
                writer.writerow({k: csv_cell(v) for k, v in d.items()})
                n += 1
        else:
            raise ValueError(f"unknown export format {fmt!r} (jsonl or csv)")
        return n


def _audit_row_of(row: dict[str, Any]) -> AuditRow:
    return AuditRow(
        seq=row["seq"],
        at=row["at"],
        actor=row["actor"],
        type=row["type"],
        report_id=row["report_id"],
        transaction_ids=json.loads(row["transaction_ids"]) if row["transaction_ids"] else None,
        voucher=row["voucher"],
        summary=row["summary"],
        request_digest=row["request_digest"],
        response_digest=row["response_digest"],
        data=json.loads(row["data"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def _export_dict(ev: AuditRow) -> dict[str, Any]:
    return {
        "seq": ev.seq,
        "at": ev.at,
        "actor": ev.actor,
        "type": ev.type,
        "report_id": ev.report_id,
        "transaction_ids": ev.transaction_ids,
        "voucher": ev.voucher,
        "summary": ev.summary,
        "request_digest": ev.request_digest,
        "response_digest": ev.response_digest,
        "data": ev.data,
        "prev_hash": ev.prev_hash,
        "hash": ev.hash,
    }
