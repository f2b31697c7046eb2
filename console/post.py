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

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from console.audit import AuditLog, Event
from console.errors import AuthError, ServiceError, UnknownOutcome, Unreachable
from console.ifs.models import Voucher
from console.ledger import Attempt, Intent, Ledger, VoucherSender
from console.plan import Plan, PlannedVoucher
from console.store import Store, crash_point


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


# The IFS client methods the post stage uses: the ledger's.
VoucherPoster = VoucherSender


class _Poster:
    """The per-voucher steps shared by the sequential, concurrent and `$batch` paths, on the
    posting ledger. Every store write happens on the calling thread; only the IFS requests
    run in parallel."""

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
        self.ledger = Ledger(store, audit, ifs)
        self.progress = progress
        self.total = len(plan.vouchers)
        self.done = 0
        self.outcome = PostOutcome()
        self.planned: dict[int, PlannedVoucher] = {}
        self.in_ifs: dict[str, str] = {}  # reference -> voucher, read before anything is sent

    def look_up(
        self, vouchers: Sequence[PlannedVoucher], seen: tuple[date, Mapping[str, str]] | None
    ) -> None:
        """One read per company: which of the vouchers this state file would send IFS already
        holds (a state file restored from a backup, or lost, must not post them again).
        `seen`: (first day, reference → voucher) of everything of ours IFS held from that day
        on, read by this cycle just before planning: it answers for the vouchers it covers."""
        fresh = [
            (pv.reference_number, pv.company, pv.voucher_date)
            for pv in vouchers
            if self.ledger.live(pv.reference_number) is None
        ]
        if seen is not None:
            since, held = seen
            self.in_ifs = {ref: held[ref] for ref, _c, day in fresh if ref in held}
            fresh = [f for f in fresh if f[2] < since]
        if fresh:
            self.in_ifs.update(self.ledger.held_by_ifs(fresh))

    @property
    def crash_hook(self) -> bool:
        return self.ledger.crash_after_post

    def tell(self, rid: str, what: str, voucher: str | None = None, message: str = "") -> None:
        self.done += 1
        _tell(self.progress, PostProgress(self.done, self.total, rid, what, voucher, message))

    def begin(self, pv: PlannedVoucher) -> Attempt | None:
        """Skip a voucher already posted; otherwise commit its intent (before any request)."""
        rid = pv.report_id
        # A confirmed change after posting: the old accrual is reversed, the new one posts.
        done = None if self.store.awaiting_new_accrual(rid) else self.store.posted_accrual(rid)
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
        ref = pv.reference_number
        intent = Intent(
            kind="accrual",
            reference=ref,
            company=pv.company,
            body=pv.to_ifs_body(),
            summary=f"posting {ref} to company {pv.company} ({len(pv.rows)} rows)",
            report_id=rid,
            version=pv.version,
            voucher_date=pv.voucher_date.isoformat(),
            transaction_ids=tuple(
                r.source.transaction_id for r in pv.rows if r.source.transaction_id
            ),
            data={"company": pv.company, "version": pv.version, "coding": posted_coding(pv)},
        )
        held = self.in_ifs.get(ref)
        if held is not None:
            self.ledger.adopt_existing(intent, held)
            self.outcome.already_posted.append(rid)
            self.tell(rid, "already-posted", held, "already in IFS: recorded, not posted again")
            return None
        attempt = self.ledger.begin(intent)
        self.planned[attempt.entry_id] = pv
        return attempt

    def finish(self, att: Attempt, result: Voucher | BaseException) -> None:
        """Record what IFS answered for one voucher. Raises AuthError/Unreachable (after
        recording the voucher as not posted) and anything unexpected."""
        rid = att.intent.report_id
        settled = self.ledger.finish(att, result)
        if settled.outcome == "reconciled":
            self.outcome.reconciled.append((rid, settled.voucher))
            self.outcome.posted.append((rid, settled.voucher))
            self.tell(rid, "reconciled", settled.voucher)
        elif settled.outcome == "unknown":
            self.outcome.unknown.append(rid)
            self.tell(rid, "unknown", None, settled.message)
        elif settled.outcome == "failed":
            self.outcome.failed.append((rid, settled.message))
            self.tell(rid, "failed", None, settled.message)
        else:
            self.outcome.posted.append((rid, settled.voucher))
            self.tell(rid, "posted", settled.voucher)

    def post_one(self, att: Attempt) -> Voucher | BaseException:
        return self.ledger.request(att)


def post_plan(
    plan: Plan,
    ifs: VoucherPoster,
    store: Store,
    audit: AuditLog,
    *,
    progress: Callable[[PostProgress], None] | None = None,
    concurrency: int = 1,
    batch_size: int = 0,
    batch_parts: int = 1000,
    seen: tuple[date, Mapping[str, str]] | None = None,
) -> PostOutcome:
    """Post every voucher of the plan, unchanged, once. A business rejection fails that report
    and the run goes on; an auth or reachability failure stops it (raised after the outcome of
    every voucher in flight is recorded).

    Each voucher's intent is committed before its request goes out, whatever the path:
    - `batch_size` > 0: `$batch` requests of up to that many vouchers and `batch_parts`
      requests (a voucher is its rows plus 2), one change set each (`ifs` must have
      `post_vouchers_batch`); a lost answer is resolved voucher by voucher;
    - `concurrency` > 1: up to that many single POSTs in flight, so the pipe stays full up to
      the rate limit (the client's limiter paces them; its connection pool bounds them too);
    - otherwise one POST after another.

    `seen`: what this cycle read of IFS's vouchers just before (console/flows/holdings.py),
    so the pre-post lookup does not read the same again.
    """
    poster = _Poster(plan, ifs, store, audit, progress)
    poster.look_up(plan.vouchers, seen)
    if poster.crash_hook:
        # The test hook stands for a kill right after one POST returns: one at a time, so
        # exactly one voucher is posted in IFS and unrecorded here.
        concurrency, batch_size = 1, 0
    if batch_size > 0:
        _post_batches(poster, plan.vouchers, batch_size, batch_parts)
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
        inflight: dict[Future[Voucher | BaseException], Attempt] = {}

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


def batches_of(
    vouchers: Sequence[PlannedVoucher], batch_size: int, batch_parts: int
) -> list[Sequence[PlannedVoucher]]:
    """The vouchers cut into `$batch` requests, in order: at most `batch_size` vouchers and
    `batch_parts` requests each (a voucher's change set is its temporary voucher, its rows
    and CreateVoucher). A voucher bigger than that goes alone (IFS says why it refuses)."""
    out: list[Sequence[PlannedVoucher]] = []
    start, parts = 0, 0
    for i, pv in enumerate(vouchers):
        need = len(pv.rows) + 2
        if i > start and (i - start >= batch_size or parts + need > batch_parts):
            out.append(vouchers[start:i])
            start, parts = i, 0
        parts += need
    if start < len(vouchers):
        out.append(vouchers[start:])
    return out


def _post_batches(
    poster: _Poster, vouchers: Sequence[PlannedVoucher], batch_size: int, batch_parts: int
) -> None:
    send = getattr(poster.ifs, "post_vouchers_batch", None)
    if send is None:
        raise TypeError("posting in batches needs an IFS client with post_vouchers_batch")
    for chunk in batches_of(vouchers, batch_size, batch_parts):
        attempts = [a for a in map(poster.begin, chunk) if a]
        if not attempts:
            continue
        results: list[Voucher | BaseException]
        try:
            answers = send([a.intent.body for a in attempts])
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
    pending = sorted(
        {p.report_id for p in store.ledger_entries(kinds=("accrual",), unlabelled=True)}
    )
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


def posted_coding(pv: PlannedVoucher) -> list[dict[str, Any]]:
    """The account and code parts each Expensify line is posted with, kept in the intent's
    audit event: the report's detail shows them once it is posted (views.posted_coding)."""
    return [
        {"tx": r.source.transaction_id, "account": r.account, "parts": dict(r.code_parts)}
        for r in pv.rows
        if r.source.kind == "line" and r.source.transaction_id
    ]


def _tell(progress: Callable[[PostProgress], None] | None, event: PostProgress) -> None:
    if progress is not None:
        progress(event)


def planned_ids(vouchers: Sequence[PlannedVoucher]) -> list[str]:
    return [v.report_id for v in vouchers]
