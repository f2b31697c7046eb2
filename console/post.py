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
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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


def reconcile(
    ifs: VoucherPoster,
    store: Store,
    audit: AuditLog,
    only: Collection[int] | None = None,
) -> list[tuple[str, str]]:
    """Resolve every intent without an outcome (or just the postings `only` names) by looking
    its ReferenceNumber up in IFS.

    Found → recorded as posted (no second POST). Not found → recorded as failed with
    'not posted', which makes the report postable again in this cycle.
    """
    found: list[tuple[str, str]] = []
    for intent in store.open_intents():
        if only is not None and intent.id not in only:
            continue
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


@dataclass
class _Attempt:
    """One voucher whose intent is committed and whose request is about to go out."""

    pv: PlannedVoucher
    posting_id: int
    body: dict[str, Any]
    body_digest: str


class _Poster:
    """The per-voucher steps shared by the sequential, concurrent and `$batch` paths. Every
    store write happens on the calling thread; only the IFS requests run in parallel."""

    def __init__(
        self,
        plan: Plan,
        ifs: VoucherPoster,
        store: Store,
        audit: AuditLog,
        progress: Callable[[PostProgress], None] | None,
    ) -> None:
        self.ifs = ifs
        self.store = store
        self.audit = audit
        self.progress = progress
        self.total = len(plan.vouchers)
        self.done = 0
        self.outcome = PostOutcome()
        self.crash_hook = os.environ.get(CRASH_AFTER_POST_ENV) == "1"

    def tell(self, rid: str, what: str, voucher: str | None = None, message: str = "") -> None:
        self.done += 1
        _tell(self.progress, PostProgress(self.done, self.total, rid, what, voucher, message))

    def begin(self, pv: PlannedVoucher) -> _Attempt | None:
        """Skip a voucher already posted; otherwise commit its intent (before any request)."""
        rid = pv.report_id
        ref = pv.reference_number
        # A confirmed change after posting: the old accrual is reversed, the new one posts.
        done = None if self.store.awaiting_new_accrual(rid) else self.store.posted_posting(rid)
        if done is not None and (
            done.version == pv.version or self.store.content_hash(rid) == pv.content_hash
        ):
            self.outcome.already_posted.append(rid)
            self.tell(rid, "already-posted", done.voucher_no)
            return None
        if self.store.report_status(rid) in ("excluded", "posted"):
            self.outcome.already_posted.append(rid)
            self.done += 1
            return None
        body = pv.to_ifs_body()
        body_digest = digest(body) or ""
        with self.store.transaction():
            posting_id = self.store.record_intent(rid, ref, pv.version, pv.company, body_digest)
            self.audit.record(
                "intent",
                f"posting {ref} to company {pv.company} ({len(pv.rows)} rows)",
                report_id=rid,
                request_digest=body_digest,
                data={"reference": ref, "company": pv.company, "version": pv.version},
            )
        crash_point("intent")
        return _Attempt(pv, posting_id, body, body_digest)

    def finish(self, att: _Attempt, result: Voucher | BaseException) -> None:
        """Record what IFS answered for one voucher. Raises AuthError/Unreachable (after
        recording the voucher as not posted) and anything unexpected."""
        rid, ref = att.pv.report_id, att.pv.reference_number
        if isinstance(result, UnknownOutcome):
            self.store.record_outcome(att.posting_id, "unknown", error=str(result))
            self.audit.record(
                "unknown-outcome",
                f"{ref}: {result}; looking it up in IFS before anything else",
                report_id=rid,
                request_digest=att.body_digest,
            )
            # Resolve now, by this voucher's ReferenceNumber: the lookup decides, never a
            # blind retry.
            found = reconcile(self.ifs, self.store, self.audit, only=(att.posting_id,))
            label = next((lbl for r, lbl in found if r == rid), None)
            if label is not None:
                self.outcome.reconciled.append((rid, label))
                self.outcome.posted.append((rid, label))
                self.tell(rid, "reconciled", label)
            else:
                self.outcome.unknown.append(rid)
                self.tell(rid, "unknown", None, str(result))
            return
        if isinstance(result, ServiceError):
            message = result.detail or str(result)
            with self.store.transaction():
                self.store.record_outcome(att.posting_id, "failed", error=f"IFS: {message}")
                self.audit.record(
                    "post-failed",
                    f"IFS rejected {ref}: {message}",
                    report_id=rid,
                    request_digest=att.body_digest,
                    data={"status": result.status, "code": result.code},
                )
            self.outcome.failed.append((rid, message))
            self.tell(rid, "failed", None, message)
            return
        if isinstance(result, (AuthError, Unreachable)):
            # Refused before anything was sent (token) or never reached IFS: not posted.
            with self.store.transaction():
                self.store.record_outcome(att.posting_id, "failed", error=str(result))
                self.store.set_status(rid, "ready")
            raise result
        if isinstance(result, BaseException):
            raise result
        if self.crash_hook:
            os._exit(137)
        crash_point("post")
        label = voucher_label(result)
        with self.store.transaction():
            self.store.record_outcome(att.posting_id, "posted", voucher_no=label)
            self.audit.record(
                "posted",
                f"posted {ref} as voucher {label}",
                report_id=rid,
                voucher=label,
                transaction_ids=[
                    r.source.transaction_id for r in att.pv.rows if r.source.transaction_id
                ],
                request_digest=att.body_digest,
                response_digest=digest(result.model_dump(mode="json")),
            )
        crash_point("posted")
        self.outcome.posted.append((rid, label))
        self.tell(rid, "posted", label)

    def post_one(self, att: _Attempt) -> Voucher | BaseException:
        try:
            return self.ifs.post_voucher(att.body)
        except (UnknownOutcome, ServiceError, AuthError, Unreachable) as exc:
            return exc


def post_plan(
    plan: Plan,
    ifs: VoucherPoster,
    store: Store,
    audit: AuditLog,
    *,
    progress: Callable[[PostProgress], None] | None = None,
    concurrency: int = 1,
    batch_size: int = 0,
) -> PostOutcome:
    """Post every voucher of the plan, unchanged, once. A business rejection fails that report
    and the run goes on; an auth or reachability failure stops it (raised after the outcome of
    every voucher in flight is recorded).

    Each voucher's intent is committed before its request goes out, whatever the path:
    - `batch_size` > 0: `$batch` requests of up to that many vouchers, one change set each
      (`ifs` must have `post_vouchers_batch`); a lost answer is resolved voucher by voucher;
    - `concurrency` > 1: up to that many single POSTs in flight, so the pipe stays full up to
      the rate limit (the client's limiter paces them; its connection pool bounds them too);
    - otherwise one POST after another.
    """
    poster = _Poster(plan, ifs, store, audit, progress)
    if poster.crash_hook:
        # The test hook stands for a kill right after one POST returns: one at a time, so
        # exactly one voucher is posted in IFS and unrecorded here.
        concurrency, batch_size = 1, 0
    if batch_size > 0:
        _post_batches(poster, plan.vouchers, batch_size)
    elif concurrency > 1:
        _post_concurrently(poster, plan.vouchers, concurrency)
    else:
        for pv in plan.vouchers:
            att = poster.begin(pv)
            if att is not None:
                poster.finish(att, poster.post_one(att))
    return poster.outcome


def _post_concurrently(
    poster: _Poster, vouchers: Sequence[PlannedVoucher], concurrency: int
) -> None:
    stop: BaseException | None = None
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ifs-post") as pool:
        inflight: dict[Future[Voucher | BaseException], _Attempt] = {}

        def drain(block_until_below: int) -> None:
            nonlocal stop
            while len(inflight) >= block_until_below and inflight:
                ready, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in ready:
                    att = inflight.pop(fut)
                    try:
                        poster.finish(att, fut.result())
                    except BaseException as exc:  # recorded; stop sending, finish the rest
                        stop = stop or exc

        for pv in vouchers:
            if stop is not None:
                break
            att = poster.begin(pv)
            if att is None:
                continue
            inflight[pool.submit(poster.post_one, att)] = att
            drain(concurrency)
        drain(1)
    if stop is not None:
        raise stop


def _post_batches(poster: _Poster, vouchers: Sequence[PlannedVoucher], batch_size: int) -> None:
    send = getattr(poster.ifs, "post_vouchers_batch", None)
    if send is None:
        raise TypeError("posting in batches needs an IFS client with post_vouchers_batch")
    for start in range(0, len(vouchers), batch_size):
        attempts = [a for a in map(poster.begin, vouchers[start : start + batch_size]) if a]
        if not attempts:
            continue
        results: list[Voucher | BaseException]
        try:
            answers = send([a.body for a in attempts])
            results = [r.voucher if r.voucher is not None else r.error for r in answers]
        except (UnknownOutcome, ServiceError) as exc:
            # The whole answer was lost (each voucher is looked up on its own), or IFS
            # refused the batch as such (nothing of it was committed).
            results = [exc] * len(attempts)
        except (AuthError, Unreachable) as exc:
            results = [exc] * len(attempts)
        stop: BaseException | None = None
        for att, result in zip(attempts, results, strict=True):
            try:
                poster.finish(att, result if result is not None else UnknownOutcome("ifs", "?"))
            except BaseException as exc:
                stop = stop or exc
        if stop is not None:
            raise stop


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
        audit.append(
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
