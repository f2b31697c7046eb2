"""Post stage: execute a plan in IFS exactly once, then label in Expensify.

Per voucher: the intent (ReferenceNumber, body digest) is committed locally first; then one
POST; then the outcome. The journal template's ETag is read once per company and voucher type
and reused (the client re-reads it only when IFS answers 412).

Exactly once, whatever fails: after an unknown outcome (dropped connection, timeout or 5xx after
the request was sent), and at start-up for intents left without an outcome by a crash, the
ReferenceNumber is looked up in IFS before anything is posted again. Found: recorded as posted,
no second POST. Not found: safe to post.

The Expensify export label is set only for reports whose voucher is posted and recorded
locally, in one batched request per cycle; reports posted but not labelled (a crash, or
Expensify unreachable) are labelled on the next cycle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from console.audit import AuditLog, Event, digest
from console.errors import AuthError, ServiceError, UnknownOutcome, Unreachable
from console.ifs.models import Voucher
from console.plan import Plan, PlannedVoucher
from console.store import Store, crash_point

# Test-only hook (documented in the e2e tests): when set to 1, the process exits with 137
# right after a voucher POST returns and before its outcome is recorded, as a SIGKILL
# between POST and local commit would. Never set in production.
CRASH_AFTER_POST_ENV = "ML_CONSOLE_TEST_CRASH_AFTER_POST"


@dataclass(frozen=True)
class PostProgress:
    done: int
    total: int
    report_id: str
    outcome: str  # posted | failed | unknown | already-posted | reconciled
    voucher: str | None = None
    message: str = ""


@dataclass
class PostOutcome:
    posted: list[tuple[str, str]] = field(default_factory=list)  # (reportID, voucher)
    already_posted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (reportID, message)
    unknown: list[str] = field(default_factory=list)
    reconciled: list[tuple[str, str]] = field(default_factory=list)  # found in IFS
    labelled: list[str] = field(default_factory=list)
    label_error: str = ""


class VoucherPoster(Protocol):
    """The IfsClient methods the post stage uses."""

    def post_voucher(self, voucher: Mapping[str, Any]) -> Voucher: ...

    def find_vouchers(self, reference: str, company: str | None = None) -> list[Voucher]: ...


def voucher_label(v: Voucher) -> str:
    """How a voucher is named to people: company, type, year and number."""
    return f"{v.Company}/{v.VoucherType}/{v.AccountingYear}/{v.VoucherNo}"


def reconcile(ifs: VoucherPoster, store: Store, audit: AuditLog) -> list[tuple[str, str]]:
    """Resolve every intent without an outcome by looking its ReferenceNumber up in IFS.

    Found → recorded as posted (no second POST). Not found → recorded as failed with
    'not posted', which makes the report postable again in this cycle.
    """
    found: list[tuple[str, str]] = []
    for intent in store.open_intents():
        vouchers = ifs.find_vouchers(intent.reference, intent.company)
        if vouchers:
            v = vouchers[0]
            label = voucher_label(v)
            with store.transaction():
                store.record_outcome(intent.id, "posted", voucher_no=label)
                audit.record(
                    "reconciled",
                    f"voucher {label} found in IFS for {intent.reference}: recorded as posted,"
                    " not posted again",
                    report_id=intent.report_id,
                    voucher=label,
                    data={"reference": intent.reference, "matches": len(vouchers)},
                )
            found.append((intent.report_id, label))
        else:
            with store.transaction():
                store.record_outcome(intent.id, "failed", error="not in IFS after a lost answer")
                store.set_status(intent.report_id, "ready")
                audit.record(
                    "reconciled",
                    f"{intent.reference} is not in IFS: the earlier post did not happen; the"
                    " report may be posted",
                    report_id=intent.report_id,
                    data={"reference": intent.reference, "matches": 0},
                )
    return found


def post_plan(
    plan: Plan,
    ifs: VoucherPoster,
    store: Store,
    audit: AuditLog,
    *,
    progress: Callable[[PostProgress], None] | None = None,
) -> PostOutcome:
    """Post every voucher of the plan, unchanged, once. A business rejection fails that report
    and the batch goes on; an auth or reachability failure stops the batch (raised after the
    outcome of the voucher in flight is recorded)."""
    outcome = PostOutcome()
    total = len(plan.vouchers)
    crash_hook = os.environ.get(CRASH_AFTER_POST_ENV) == "1"
    for n, pv in enumerate(plan.vouchers, 1):
        rid = pv.report_id
        ref = pv.reference_number
        done = store.posted_posting(rid)
        if done is not None and (
            done.version == pv.version or store.content_hash(rid) == pv.content_hash
        ):
            outcome.already_posted.append(rid)
            _tell(progress, PostProgress(n, total, rid, "already-posted", done.voucher_no))
            continue
        if store.report_status(rid) in ("excluded", "posted"):
            outcome.already_posted.append(rid)
            continue
        body = pv.to_ifs_body()
        body_digest = digest(body) or ""
        with store.transaction():
            posting_id = store.record_intent(rid, ref, pv.version, pv.company, body_digest)
            audit.record(
                "intent",
                f"posting {ref} to company {pv.company} ({len(pv.rows)} rows)",
                report_id=rid,
                request_digest=body_digest,
                data={"reference": ref, "company": pv.company, "version": pv.version},
            )
        crash_point("intent")
        try:
            voucher = ifs.post_voucher(body)
        except UnknownOutcome as exc:
            store.record_outcome(posting_id, "unknown", error=str(exc))
            audit.record(
                "unknown-outcome",
                f"{ref}: {exc}; looking it up in IFS before anything else",
                report_id=rid,
                request_digest=body_digest,
            )
            # Resolve now, before the next POST: the lookup decides, never a blind retry.
            found = reconcile(ifs, store, audit)
            if any(r == rid for r, _ in found):
                label = next(lbl for r, lbl in found if r == rid)
                outcome.reconciled.append((rid, label))
                outcome.posted.append((rid, label))
                _tell(progress, PostProgress(n, total, rid, "reconciled", label))
            else:
                outcome.unknown.append(rid)
                _tell(progress, PostProgress(n, total, rid, "unknown", None, str(exc)))
            continue
        except ServiceError as exc:
            message = exc.detail or str(exc)
            with store.transaction():
                store.record_outcome(posting_id, "failed", error=f"IFS: {message}")
                audit.record(
                    "post-failed",
                    f"IFS rejected {ref}: {message}",
                    report_id=rid,
                    request_digest=body_digest,
                    data={"status": exc.status, "code": exc.code},
                )
            outcome.failed.append((rid, message))
            _tell(progress, PostProgress(n, total, rid, "failed", None, message))
            continue
        except (AuthError, Unreachable) as exc:
            # Refused before anything was sent (token) or never reached IFS: not posted.
            with store.transaction():
                store.record_outcome(posting_id, "failed", error=str(exc))
                store.set_status(rid, "ready")
            raise
        if crash_hook:
            os._exit(137)
        crash_point("post")
        label = voucher_label(voucher)
        with store.transaction():
            store.record_outcome(posting_id, "posted", voucher_no=label)
            audit.record(
                "posted",
                f"posted {ref} as voucher {label}",
                report_id=rid,
                voucher=label,
                transaction_ids=[
                    r.source.transaction_id for r in pv.rows if r.source.transaction_id
                ],
                request_digest=body_digest,
                response_digest=digest(voucher.model_dump(mode="json")),
            )
        crash_point("posted")
        outcome.posted.append((rid, label))
        _tell(progress, PostProgress(n, total, rid, "posted", label))
    return outcome


class Labeller(Protocol):
    """The ExpensifyClient method the label step uses."""

    def mark_exported(self, report_ids: Sequence[str], label: str) -> None: ...


def label_posted(expensify: Labeller, store: Store, audit: AuditLog, label: str) -> list[str]:
    """Mark every posted-but-unlabelled report with the export label, in one request."""
    pending = sorted({p.report_id for p in store.unlabelled_postings()})
    if not pending:
        return []
    expensify.mark_exported(pending, label)
    crash_point("label")
    with store.transaction():
        store.mark_labelled(pending)
        audit.record_many(
            Event(
                type="labelled",
                report_id=rid,
                summary=f"marked exported in Expensify with label {label!r}",
                data={"label": label},
            )
            for rid in pending
        )
    return pending


def _tell(progress: Callable[[PostProgress], None] | None, event: PostProgress) -> None:
    if progress is not None:
        progress(event)


def planned_ids(vouchers: Sequence[PlannedVoucher]) -> list[str]:
    return [v.report_id for v in vouchers]
