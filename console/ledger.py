"""The posting ledger: the one way any voucher reaches IFS, exactly once.

Every kind of voucher (a report's accrual, its reversal, a period's card-spend accrual and
its reversal) goes through the same four steps, and only here:

1. **intent** — what is about to be sent (reference, company, body digest) is committed
   locally, with its audit event, before any request;
2. **request** — one `$batch` request holding the voucher's change set (temporary voucher,
   rows, CreateVoucher), or one change set of a `$batch` of many, sent by the caller or by
   `send`;
3. **outcome** — posted (with the voucher IFS numbered), failed (IFS refused it, or it never
   reached IFS), or unknown (sent, answer lost);
4. **reconcile** — an unknown outcome, and any intent a crash left without one, is settled
   by looking its ReferenceNumber up in IFS (hold table and general ledger) before anything
   is sent again: found, recorded as posted; not found, any temporary voucher of IFS's
   voucher assistant carrying the reference is removed and the intent is recorded as not
   posted (it may be sent again).

Labelling in Expensify (accruals only) follows a recorded posted outcome: console/post.py.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, Protocol

from console.audit import AuditLog, digest
from console.errors import AuthError, ConsoleError, ServiceError, UnknownOutcome, Unreachable
from console.ifs.models import Voucher
from console.reference import PREFIXES, Kind
from console.reference import parse as parse_reference
from console.store import LedgerEntry, Store, crash_point

# Test-only hook (documented in the e2e tests): when set to 1, the process exits with 137
# right after a voucher POST returns and before its outcome is recorded, as a SIGKILL
# between POST and local commit would. Never set in production.
CRASH_AFTER_POST_ENV = "ML_CONSOLE_TEST_CRASH_AFTER_POST"

# Audit event types per kind: intent, posted, refused. Kept as the audit trail has always
# named them, so older events and newer ones read alike.
EVENTS: dict[str, tuple[str, str, str]] = {
    "accrual": ("intent", "posted", "post-failed"),
    "reversal": ("reversal-planned", "reversal-posted", "reversal-failed"),
    "card-accrual": ("card-accrual-planned", "card-accrual-posted", "card-accrual-failed"),
    "card-reversal": ("card-reversal-planned", "card-reversal-posted", "card-reversal-failed"),
}
# Crash points (ML_CONSOLE_TEST_CRASH_AT) per kind: `{prefix}intent`, `{prefix}post` and
# `{prefix}posted`, so the crash suite can stop any kind at any step.
CRASH_PREFIX: dict[str, str] = {
    "accrual": "",
    "reversal": "reversal-",
    "card-accrual": "card-",
    "card-reversal": "card-",
}
LIVE = ("intent", "unknown", "posted")  # posted, or possibly posted
OPEN = ("intent", "unknown")  # outcome not known

Settlement = Literal["posted", "reconciled", "failed", "unknown"]


class VoucherSender(Protocol):
    """The IFS client methods the ledger needs."""

    def post_voucher(self, voucher: Mapping[str, Any]) -> Voucher: ...

    def find_vouchers(self, reference: str, company: str | None = None) -> list[Voucher]: ...

    def vouchers_dated(
        self, company: str, prefix: str, first: date, last: date
    ) -> list[Voucher]: ...


def voucher_label(v: Voucher) -> str:
    """How a voucher is named to people: company, type, year and number."""
    return f"{v.Company}/{v.VoucherType}/{v.AccountingYear}/{v.VoucherNo}"


@dataclass(frozen=True)
class Intent:
    """A voucher about to be sent: what the ledger records and the audit event that says so."""

    kind: Kind
    reference: str
    company: str
    body: Mapping[str, Any]
    summary: str  # the intent event's sentence
    report_id: str = ""
    period: str = ""
    version: str = ""
    accrual_reference: str = ""
    groups: tuple[str, ...] = ()
    cause: str = ""
    voucher_date: str = ""
    amount: str = ""
    currency: str = ""
    transaction_ids: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)  # the intent event's data


@dataclass(frozen=True)
class Attempt:
    """An intent committed locally; its request may go out."""

    entry_id: int
    intent: Intent
    body_digest: str


@dataclass(frozen=True)
class Settled:
    """What became of one attempt."""

    attempt: Attempt
    outcome: Settlement
    voucher: str = ""  # the voucher label, when posted or reconciled
    message: str = ""
    # An unknown outcome whose lookup failed too: the entry stays open and the next run looks
    # it up first. (Unknown and not in doubt: the lookup found nothing; not posted.)
    in_doubt: bool = False


class Ledger:
    """The one place where intents, outcomes and reconciliations are recorded."""

    def __init__(self, store: Store, audit: AuditLog, ifs: VoucherSender) -> None:
        self.store = store
        self.audit = audit
        self.ifs = ifs
        self.crash_after_post = os.environ.get(CRASH_AFTER_POST_ENV) == "1"

    # -- reading
    def live(self, reference: str) -> LedgerEntry | None:
        """The newest entry with this reference that is posted or possibly posted."""
        rows = self.store.ledger_entries(reference=reference, outcomes=LIVE)
        return rows[-1] if rows else None

    def entries(
        self,
        kinds: Sequence[str] | None = None,
        outcomes: Sequence[str] | None = None,
        **where: Any,
    ) -> list[LedgerEntry]:
        return self.store.ledger_entries(kinds=kinds, outcomes=outcomes, **where)

    # -- the four steps
    def begin(self, intent: Intent) -> Attempt:
        """Commit the intent and its audit event; nothing has been sent yet."""
        body_digest = digest(dict(intent.body)) or ""
        with self.store.transaction():
            entry_id = self.store.ledger_intent(
                kind=intent.kind,
                reference=intent.reference,
                company=intent.company,
                body_digest=body_digest,
                report_id=intent.report_id,
                period=intent.period,
                version=intent.version,
                accrual_reference=intent.accrual_reference,
                groups=intent.groups,
                cause=intent.cause,
                voucher_date=intent.voucher_date,
                amount=intent.amount,
                currency=intent.currency,
            )
            self.audit.record(
                EVENTS[intent.kind][0],
                intent.summary,
                report_id=intent.report_id or None,
                transaction_ids=list(intent.transaction_ids) or None,
                request_digest=body_digest,
                data={"reference": intent.reference, **intent.data},
            )
        crash_point(f"{CRASH_PREFIX[intent.kind]}intent")
        return Attempt(entry_id, intent, body_digest)

    def request(self, attempt: Attempt) -> Voucher | BaseException:
        """One POST; the failures the ledger settles come back as values."""
        try:
            return self.ifs.post_voucher(attempt.intent.body)
        except (UnknownOutcome, ServiceError, AuthError, Unreachable) as exc:
            return exc

    def finish(self, attempt: Attempt, result: Voucher | BaseException) -> Settled:
        """Record what IFS answered. An unknown outcome is reconciled at once, by reference.
        Raises AuthError/Unreachable (recorded as not posted: nothing reached IFS) and
        anything unexpected."""
        intent = attempt.intent
        rid = intent.report_id or None
        if isinstance(result, UnknownOutcome):
            self.store.ledger_outcome(attempt.entry_id, "unknown", error=str(result))
            self.audit.record(
                "unknown-outcome",
                f"{intent.reference}: {result}; looking it up in IFS before anything else",
                report_id=rid,
                request_digest=attempt.body_digest,
                data={"reference": intent.reference},
            )
            try:
                found = self.reconcile(only=(attempt.entry_id,))
            except ConsoleError as lookup:
                # Still in doubt: the entry stays unknown and the next run looks it up first.
                message = f"{result}; the lookup failed too ({lookup}): run again"
                return Settled(attempt, "unknown", "", message, in_doubt=True)
            if found:
                return Settled(attempt, "reconciled", found[0].voucher_no or "", str(result))
            return Settled(attempt, "unknown", "", str(result))
        if isinstance(result, ServiceError):
            message = result.detail or str(result)
            with self.store.transaction():
                self.store.ledger_outcome(attempt.entry_id, "failed", error=f"IFS: {message}")
                self.audit.record(
                    EVENTS[intent.kind][2],
                    f"IFS rejected {intent.reference}: {message}",
                    report_id=rid,
                    request_digest=attempt.body_digest,
                    data={
                        "reference": intent.reference,
                        "status": result.status,
                        "code": result.code,
                    },
                )
            return Settled(attempt, "failed", "", message)
        if isinstance(result, (AuthError, Unreachable)):
            # Refused before anything was sent (token) or never reached IFS: not posted.
            with self.store.transaction():
                self.store.ledger_outcome(attempt.entry_id, "failed", error=str(result))
                if intent.kind == "accrual":
                    self.store.set_status(intent.report_id, "ready")
            raise result
        if isinstance(result, BaseException):
            raise result
        if self.crash_after_post:
            os._exit(137)
        crash_point(f"{CRASH_PREFIX[intent.kind]}post")
        label = voucher_label(result)
        with self.store.transaction():
            self.store.ledger_outcome(attempt.entry_id, "posted", voucher_no=label)
            self.audit.record(
                EVENTS[intent.kind][1],
                f"posted {intent.reference} as voucher {label}",
                report_id=rid,
                voucher=label,
                transaction_ids=list(intent.transaction_ids) or None,
                request_digest=attempt.body_digest,
                response_digest=digest(result.model_dump(mode="json")),
                data={"reference": intent.reference, "accrual": intent.accrual_reference or None},
            )
        crash_point(f"{CRASH_PREFIX[intent.kind]}posted")
        return Settled(attempt, "posted", label)

    def send(self, intent: Intent) -> Settled:
        """Intent, request, outcome for one voucher."""
        attempt = self.begin(intent)
        return self.finish(attempt, self.request(attempt))

    def held_by_ifs(self, wanted: Sequence[tuple[str, str, date]]) -> dict[str, str]:
        """Which of these (reference, company, voucher date) IFS already holds, as reference →
        voucher label: one read per company and reference prefix over the dates wanted,
        before anything is sent. Exactly once must not rest on the state file alone: a state
        file restored from a backup, or lost, would otherwise post again."""
        spans: dict[tuple[str, str], tuple[date, date]] = {}
        refs: set[str] = set()
        for ref, company, day in wanted:
            parsed = parse_reference(ref)
            key = (company, PREFIXES[parsed.kind] if parsed is not None else ref)
            first, last = spans.get(key, (day, day))
            spans[key] = (min(first, day), max(last, day))
            refs.add(ref)
        found: dict[str, str] = {}
        for (company, prefix), (first, last) in sorted(spans.items()):
            for v in self.ifs.vouchers_dated(company, prefix, first, last):
                if v.ReferenceNumber in refs and v.ReferenceNumber not in found:
                    found[v.ReferenceNumber] = voucher_label(v)
        return found

    def adopt_existing(self, intent: Intent, existing: Sequence[Voucher] | str) -> str:
        """IFS already holds this reference (another installation, a restored state file):
        record it as posted without sending anything. Returns the voucher label."""
        label = existing if isinstance(existing, str) else voucher_label(existing[0])
        with self.store.transaction():
            attempt = self.begin(intent)
            self.store.ledger_outcome(attempt.entry_id, "posted", voucher_no=label)
            self.audit.record(
                "reconciled",
                f"{intent.reference} is already in IFS as voucher {label}: recorded, not"
                " posted again",
                report_id=intent.report_id or None,
                voucher=label,
                data={"reference": intent.reference, "found_before_posting": True},
            )
        return label

    def reconcile(
        self, *, kinds: Sequence[str] | None = None, only: Collection[int] | None = None
    ) -> list[LedgerEntry]:
        """Settle every intent without an outcome (of these kinds, or just the entries `only`
        names) by looking its ReferenceNumber up in IFS. Returns the entries found posted."""
        found: list[LedgerEntry] = []
        for intent in self.store.ledger_entries(kinds=kinds, outcomes=OPEN):
            if only is not None and intent.id not in only:
                continue
            vouchers = self.ifs.find_vouchers(intent.reference, intent.company)
            removed = 0
            if not vouchers:
                # A temporary voucher of IFS's voucher assistant that never became a voucher
                # (the request died before CreateVoucher) is removed, so that posting again
                # leaves one voucher and nothing half-made.
                discard = getattr(self.ifs, "discard_temp_vouchers", None)
                if discard is not None:
                    removed = int(discard(intent.reference, intent.company))
            rid = intent.report_id or None
            with self.store.transaction():
                if vouchers:
                    label = voucher_label(vouchers[0])
                    found.append(self.store.ledger_outcome(intent.id, "posted", voucher_no=label))
                    self.audit.record(
                        "reconciled",
                        f"voucher {label} found in IFS for {intent.reference}: recorded as"
                        " posted, not posted again",
                        report_id=rid,
                        voucher=label,
                        data={"reference": intent.reference, "matches": len(vouchers)},
                    )
                else:
                    self.store.ledger_outcome(
                        intent.id, "failed", error="not in IFS after a lost answer"
                    )
                    if intent.kind == "accrual":
                        self.store.set_status(intent.report_id, "ready")
                    left = (
                        f" ({removed} unfinished temporary voucher(s) removed)" if removed else ""
                    )
                    self.audit.record(
                        "reconciled",
                        f"{intent.reference} is not in IFS: the earlier post did not happen"
                        f"{left}; it may be posted",
                        report_id=rid,
                        data={"reference": intent.reference, "matches": 0, "temp_removed": removed},
                    )
        return found
