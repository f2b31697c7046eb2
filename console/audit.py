"""The audit trail: an append-only, SHA-256 hash-chained event log inside the store.

Each event's hash covers a canonical JSON of the previous event's hash and every field of the
event, so editing, deleting or reordering any stored event breaks the chain at that event;
the chain head kept beside the log catches deletion of the newest events. `verify()` names
the first bad event.

A hash chain alone proves nothing against whoever can write the file: they can edit an event
and recompute every hash and the head. So the chain carries signed checkpoints: `checkpoint`
events whose Ed25519 signature (key in the OS keyring, console/audit_keys.py) covers the hash
of the event before them, and so every event up to there. One follows every
CHECKPOINT_EVERY-th event, and `seal()` adds one at the end of every cycle and command that
wrote events. `verify()` checks hashes and signatures and says from which event on the chain
is unproven; console/evidence_check.py holds the rules (also shipped in evidence bundles).

Digests of requests and responses are SHA-256 of the body with secrets taken out first
(the Expensify job description carries the partner secret: its `credentials` are redacted
before digesting). No secret is ever stored here.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any

from console import evidence_check
from console.errors import ConsoleError
from console.store import AuditRow, Store

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from console.audit_keys import AuditKeys

log = logging.getLogger(__name__)

# Event types (design.md §4: every step leaves one).
EVENT_TYPES = (
    "fetched",
    "fetched-late",  # approved before the poll window, found by the daily check (fetch.py)
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
    # console/flows/holdings.py, console/flows/rebuild.py: the state checked against IFS
    "recovered",  # a voucher IFS holds that the state did not know, recorded as posted
    "held-twice",  # IFS holds a reference more than once (two installations at once)
    "state-rebuilt",  # `ml-console state rebuild` made the state from IFS and Expensify
    # console/reversal.py: accrual reversals and changes after posting
    "reversal-planned",
    "reversal-posted",
    "reversal-failed",
    "reimbursed",  # a posted report seen REIMBURSED in Expensify
    "watch-unreadable",  # a posted or held report the re-read cannot read (once)
    "watch-readable",  # and when it reads again
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
    # a signed checkpoint over the chain so far (console/evidence_check.py)
    evidence_check.CHECKPOINT,
)

GENESIS = evidence_check.GENESIS
# A checkpoint follows every event whose seq is a multiple of this, besides the one at the end
# of each cycle and command: a crash or a kill mid-cycle leaves at most this many events
# unsigned (until the next run's checkpoint signs them). 200 events are a few reports' worth
# in a large cycle; a checkpoint costs one signature (~50 µs) and one row.
CHECKPOINT_EVERY = 200
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
_FIELDS = evidence_check.CHAIN_FIELDS


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
    return evidence_check.chain_hash(prev_hash, row)


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
    """What `verify()` found. `ok`: the hash chain is intact and, where a key was there to
    check them with, every event is proven by a good signed checkpoint."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""
    signatures_checked: bool = False
    signed_through: int = 0  # the last event a good checkpoint proves
    checkpoints: int = 0  # good checkpoints (before the first bad one)
    bad_checkpoint: int | None = None  # the first unsigned or mis-signed checkpoint
    unproven_from: int | None = None  # the first event no good checkpoint proves
    key_fingerprint: str = ""
    text: str = ""
    # False when the hash chain itself breaks (an event edited, deleted or moved); an
    # unproven or mis-signed chain is intact but not ok. For screens that show one event,
    # first_bad_seq also names the first bad checkpoint (or unproven event) then.
    chain_intact: bool = True

    def describe(self) -> str:
        if self.text:
            return self.text
        if self.ok:
            return f"audit chain intact: {self.checked} events verified"
        return f"audit chain broken at event {self.first_bad_seq}: {self.problem}"


class AuditLog:
    def __init__(self, store: Store, actor: str, keys: AuditKeys | None = None) -> None:
        self.store = store
        self.actor = actor
        # The signing key (None: no checkpoints are written, e.g. a session without keyring).
        self.keys = keys
        # Why the last checkpoint could not be signed ("" when it could).
        self.seal_problem = ""
        self._signing_failed = False
        self._wrote = False  # this log appended events: seal() has something to sign

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
                if seq % CHECKPOINT_EVERY == 0 and self.keys is not None:
                    checkpoint = self._checkpoint_row(seq, prev, now, periodic=True)
                    if checkpoint is not None:
                        seq += 1
                        prev = checkpoint["hash"]
                        chunk.append(checkpoint)
                if len(chunk) >= APPEND_CHUNK:
                    self.store.append_audit_rows(chunk)
                    count += len(chunk)
                    chunk = []
            self.store.append_audit_rows(chunk)
            count += len(chunk)
        self._wrote = self._wrote or count > 0
        return count

    def _checkpoint_row(
        self, seq: int, prev: str, now: str, *, periodic: bool = False
    ) -> dict[str, Any] | None:
        """A signed checkpoint after event `seq` (hash `prev`), or None when the key cannot
        be had (said once in the log; the next checkpoint that can be signed covers these
        events too)."""
        assert self.keys is not None
        if periodic and self._signing_failed:
            return None  # asked the keyring once this run already; seal() tries again
        try:
            signature, key = self.keys.sign(evidence_check.checkpoint_message(seq, prev, now))
        except Exception as exc:
            # Whatever the keyring backend raises must not undo the events being written (a
            # posted voucher's outcome is recorded in the same transaction): sign later.
            self._signing_failed = True
            reason = str(exc) if isinstance(exc, ConsoleError) else type(exc).__name__
            self.seal_problem = (
                f"audit checkpoint not signed: {reason}; events from the last checkpoint on "
                "stay unproven until a checkpoint can be signed"
            )
            log.warning("%s", self.seal_problem)
            return None
        self._signing_failed = False
        self.seal_problem = ""
        row: dict[str, Any] = {
            "seq": seq + 1,
            "at": now,
            "actor": self.actor,
            "type": evidence_check.CHECKPOINT,
            "report_id": None,
            "transaction_ids": None,
            "voucher": None,
            "summary": f"checkpoint: events up to {seq} signed",
            "request_digest": None,
            "response_digest": None,
            "data": canonical(evidence_check.sign_fields(signature, key, seq, prev)),
            "prev_hash": prev,
        }
        row["hash"] = _chain_hash(prev, row)
        return row

    def seal(self, *, always: bool = False) -> AuditRow | None:
        """Sign a checkpoint over the chain as it stands, when this log wrote events (or
        `always`), unless the newest event already is a checkpoint or this log has no key. A
        command that only read never writes (nor waits for the write lock) here. Never raises
        for a keyring problem: `seal_problem` says it, and the events stay unproven until a
        later checkpoint. Returns the checkpoint."""
        if self.keys is None or not (self._wrote or always):
            return None
        with self.store.transaction():
            newest = self.store.audit_page(limit=1)
            if not newest or newest[0].type == evidence_check.CHECKPOINT:
                return None
            seq, prev = self.store.audit_head()
            row = self._checkpoint_row(seq, prev or GENESIS, self.store.now())
            if row is None:
                return None
            self.store.append_audit_rows([row])
        self._wrote = False
        return _audit_row_of(row)

    def verify(self, public_key: Ed25519PublicKey | None = None) -> VerifyResult:
        """Walk the chain in seq order: name the first event that was edited, deleted or
        moved, and check every checkpoint's signature with `public_key` (default: this log's
        key, read from the keyring, never created here). Without any key only the hashes are
        checked, and the result says so."""
        if public_key is None and self.keys is not None:
            public_key = self.keys.public_key(create=False)
            if public_key is None:
                return self._no_key_result()
        report = evidence_check.walk(self.store.iter_audit_rows(), public_key)
        if not report.intact:
            return VerifyResult(
                False, report.checked, report.first_bad_seq, report.problem, chain_intact=False
            )
        checked = report.checked
        expected_prev = self._last_hash(report)
        head_seq, head_hash = self.store.audit_head()
        if head_seq != checked or (head_seq and head_hash != expected_prev):
            if head_seq > checked:
                return VerifyResult(
                    False,
                    checked,
                    checked + 1,
                    f"the log ends at event {checked} but the chain head says {head_seq}:"
                    " the newest events were deleted",
                    chain_intact=False,
                )
            return VerifyResult(
                False,
                checked,
                head_seq + 1 if head_seq < checked else head_seq,
                "the chain head does not match the last event",
                chain_intact=False,
            )
        if public_key is None:
            text = (
                f"audit chain intact: {checked} events verified (hashes only: no audit key to "
                "check the signed checkpoints with)"
            )
            return VerifyResult(True, checked, text=text)
        return VerifyResult(
            report.ok,
            checked,
            None if report.ok else (report.bad_checkpoint or report.unproven_from),
            "" if report.ok else report.describe(),
            signatures_checked=True,
            signed_through=report.signed_through,
            checkpoints=report.checkpoints,
            bad_checkpoint=report.bad_checkpoint,
            unproven_from=report.unproven_from,
            key_fingerprint=report.key_fingerprint,
            text=report.describe(),
        )

    def _no_key_result(self) -> VerifyResult:
        """The keyring holds no audit key: nothing can be proven (hashes still checked)."""
        report = evidence_check.walk(self.store.iter_audit_rows(), None)
        if not report.intact:
            return VerifyResult(
                False, report.checked, report.first_bad_seq, report.problem, chain_intact=False
            )
        if report.checked == 0:
            return VerifyResult(True, 0, text="audit chain empty: nothing to verify")
        text = (
            "audit chain unproven from event 1: the keyring holds no audit signing key, so "
            f"no checkpoint can be checked ({report.checked} events hash-checked); "
            "`ml-console audit key` creates one, or check with the auditor's copy: "
            "`ml-console audit verify --public-key FILE`"
        )
        return VerifyResult(
            False,
            report.checked,
            1,
            text,
            signatures_checked=True,
            unproven_from=1,
            text=text,
        )

    def _last_hash(self, report: evidence_check.ChainReport) -> str:
        if report.checked == 0:
            return GENESIS
        rows = self.store.audit_page(limit=1)
        return rows[0].hash if rows else GENESIS

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
