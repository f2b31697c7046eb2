"""Fetch stage: approved reports from Expensify into the store.

One export per cycle: APPROVED and REIMBURSED reports approved after the cursor (which overlaps
the last poll by a day, since Expensify's approvedAfter excludes the day itself), excluding
reports that carry our export label. The label and the store's content hash keep the overlap
from posting anything twice. One policy read per cycle for the configured policies.

The store keeps each report as the client parsed it, with its text re-escaped exactly as
Expensify serves it, so that reading it back through the same model yields the same text
(no double unescaping of a literal `&amp;`).
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from console.audit import AuditLog, Event
from console.errors import AuthError, ConsoleError
from console.expensify.models import ExportReport, MalformedReport, PolicyInfo
from console.report_hash import content_hash, legacy_content_hash
from console.store import LineRecord, ReportRecord, Store, crash_point

if TYPE_CHECKING:
    from typing import Unpack

    from console.expensify.client import ExportFilters

MALFORMED_KEY = "__malformed__"
_REPORT_TEXT = ("reportName", "policyName", "submitterName")
_LINE_TEXT = ("merchant", "modifiedMerchant", "comment", "category", "tag")


class ExpensifyReader(Protocol):
    """The parts of ExpensifyClient the fetch uses."""

    def export_items(
        self, **filters: Unpack[ExportFilters]
    ) -> Iterator[ExportReport | MalformedReport]: ...

    def export_report_ids(self, **filters: Unpack[ExportFilters]) -> list[str]: ...

    def export_reports_by_id(
        self,
        report_ids: Sequence[str],
        *,
        states: Sequence[str] = ("APPROVED", "REIMBURSED"),
        exclude_label: str | None = None,
    ) -> Iterator[ExportReport | MalformedReport]: ...

    def get_policies(self, policy_ids: Sequence[str]) -> dict[str, PolicyInfo]: ...


# reportState of a report closed on submission (the web UI's "Closed").
CLOSED_STATES = ("ARCHIVED",)
# The cursor key of the day the last sweep for reports approved before the cursor ran.
LATE_SWEEP = "expensify.late_sweep"


@dataclass
class FetchOutcome:
    """What one poll brought in."""

    approved_after: date
    fetched: list[str] = field(default_factory=list)  # every report ID the export returned
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    changed_after_post: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    # Configured policies the credentials do not see: their reports cannot be synced.
    unseen_policies: list[str] = field(default_factory=list)
    policies: dict[str, PolicyInfo] = field(default_factory=dict)
    cursor_moved_to: date | None = None
    # Reports approved before the poll window, found by the daily sweep and fetched now.
    late: list[str] = field(default_factory=list)
    # Lines for the cycle's summary (each said once).
    notices: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.fetched)


def dump_report(report: ExportReport) -> dict[str, Any]:
    """The report as JSON data, text escaped back to Expensify's form (see module doc)."""
    raw = report.model_dump(mode="json")
    for key in _REPORT_TEXT:
        if isinstance(raw.get(key), str):
            raw[key] = html.escape(raw[key], quote=False)
    for tx in raw.get("transactions", []):
        for key in _LINE_TEXT:
            if isinstance(tx.get(key), str):
                tx[key] = html.escape(tx[key], quote=False)
    return raw


def load_report(raw: dict[str, Any]) -> ExportReport | MalformedReport:
    """A stored report back as the model (or as the malformed report it was)."""
    if MALFORMED_KEY in raw:
        return MalformedReport(
            reportID=str(raw.get("reportID", "")),
            what=str(raw[MALFORMED_KEY]),
            raw=raw.get("raw") or {},
        )
    return ExportReport.model_validate(raw)


def report_record(report: ExportReport) -> ReportRecord:
    lines = tuple(
        LineRecord(
            transaction_id=tx.transactionID,
            merchant=tx.display_merchant,
            category=tx.category,
            tag=tx.tag,
            amount_minor=tx.posted_amount,
            currency=report.currency or tx.currency,
            reimbursable=tx.reimbursable,
            created=tx.expense_date,
            comment=tx.comment,
        )
        for tx in report.transactions
    )
    return ReportRecord(
        report_id=report.reportID,
        policy_id=report.policyID,
        employee=report.accountEmail,
        report_name=report.reportName,
        approved=report.approved,
        currency=report.currency,
        total_minor=sum(ln.amount_minor for ln in lines),
        content_hash=content_hash(report),
        raw=dump_report(report),
        lines=lines,
        legacy_hash=legacy_content_hash(report),
    )


def stand_in_report_id(raw: dict[str, Any]) -> str:
    """A stable local ID for an export entry without a usable reportID, so it is held and
    listed like any other broken report instead of vanishing. Derived from the entry's content,
    it is the same on every poll; `noid-` can never be a real Expensify ID (those are digits),
    and a held malformed report is never posted or labelled."""
    canonical = json.dumps(raw, sort_keys=True, default=str, ensure_ascii=False)
    return "noid-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


def malformed_record(bad: MalformedReport) -> ReportRecord:
    raw = bad.raw if isinstance(bad.raw, dict) else {}
    text = repr(sorted(raw.items()))[:4000]
    report_id = bad.reportID or stand_in_report_id(raw)
    return ReportRecord(
        report_id=report_id,
        policy_id=str(raw.get("policyID", "")),
        employee=str(raw.get("accountEmail", "")),
        report_name=str(raw.get("reportName", "")),
        approved=str(raw.get("approved", "")),
        currency=str(raw.get("currency", "")),
        total_minor=0,
        content_hash="malformed:" + hashlib.sha256(f"{bad.what}{text}".encode()).hexdigest(),
        raw={"reportID": report_id, MALFORMED_KEY: bad.what, "raw": raw},
    )


def poll_start(store: Store, configured: date) -> date:
    """approvedAfter for this poll: a day before the last poll (or before the configured
    start on the first poll, so that the configured day itself is included)."""
    cursor = store.cursor()
    last = date.fromisoformat(cursor) if cursor else None
    start = (last or configured) - timedelta(days=1)
    return max(start, configured - timedelta(days=1))


@dataclass(frozen=True, slots=True)
class _Fetched:
    """What the fetched event of one stored report says (the record itself is gone by then)."""

    report_id: str
    lines: int
    total_minor: int
    currency: str
    transaction_ids: tuple[str, ...]
    content_hash: str
    approved: str


def fetch(
    client: ExpensifyReader,
    store: Store,
    audit: AuditLog,
    *,
    configured_start: date,
    export_label: str,
    policy_ids: Sequence[str],
    now: datetime,
    dry_run: bool = False,
    closed_policy_ids: Sequence[str] = (),
) -> FetchOutcome:
    """Poll once, upsert what came back in one transaction, and (unless dry run) move the
    cursor to today. The policy read comes first so a refused key fails before the export.

    Reports of `closed_policy_ids` (Submit-and-Close workspaces) are never approved: they
    come from a second export of closed reports by submission window (`startDate`, which is
    inclusive, so the window overlaps the last poll by a day like approvedAfter), each
    taking its submission as its moment (ExportReport.as_accrued).

    The export is stored a report at a time as it is parsed (readable reports in file
    order, then the malformed ones), so only one report is alive as objects at a time."""
    approved_after = poll_start(store, configured_start)
    policies = client.get_policies(list(policy_ids)) if policy_ids else {}
    approving = [p for p in policy_ids if p not in set(closed_policy_ids)]
    items: Iterable[ExportReport | MalformedReport] = ()
    if approving or not policy_ids:  # no policy configured: every policy the key sees
        items = client.export_items(
            approved_after=approved_after,
            states=("APPROVED", "REIMBURSED"),
            exclude_label=export_label,
            policy_ids=approving or None,
        )
    if closed_policy_ids:
        closed = client.export_items(
            start_date=approved_after,
            states=CLOSED_STATES,
            exclude_label=export_label,
            policy_ids=list(closed_policy_ids),
        )
        items = itertools.chain(items, closed)
    outcome = FetchOutcome(approved_after=approved_after, policies=policies)
    crash_point("fetched")

    first_poll = store.cursor() is None
    with store.transaction():
        _store_items(items, store, audit, outcome)
        if not dry_run:
            today = now.date()
            old = store.cursor()
            if old is None or date.fromisoformat(old) < today:
                store.set_cursor(today.isoformat())
                outcome.cursor_moved_to = today
            if first_poll:
                # The first poll's window starts at the configured start: nothing approved
                # since then can be behind it, so today's check is done.
                store.set_cursor(today.isoformat(), LATE_SWEEP)
    if not dry_run and not first_poll and (approving or not policy_ids):
        sweep_late(
            client,
            store,
            audit,
            outcome,
            configured_start=configured_start,
            export_label=export_label,
            policy_ids=approving,
            today=now.date(),
        )
    return outcome


def store_reread(reports: Iterable[ExportReport], store: Store, audit: AuditLog) -> list[str]:
    """Held reports read again by ID (the watch's export, console/reversal.py): one Expensify
    changed since is stored as changed, pending evaluation again (its `fetched` event says
    so); an unchanged one stays held. Returns the changed reports' IDs."""
    outcome = FetchOutcome(approved_after=date.min)
    with store.transaction():
        _store_items(reports, store, audit, outcome)
    return outcome.changed


def _store_items(
    items: Iterable[ExportReport | MalformedReport],
    store: Store,
    audit: AuditLog,
    outcome: FetchOutcome,
    *,
    late: bool = False,
) -> None:
    """Upsert what an export brought (readable reports in file order, then the malformed
    ones) with their audit events, in the caller's transaction; fill `outcome`."""
    fetched: list[_Fetched] = []
    statuses: dict[str, str] = {}

    def records() -> Iterator[ReportRecord]:
        malformed: list[ReportRecord] = []
        for item in items:
            if isinstance(item, MalformedReport):
                malformed.append(malformed_record(item))
                continue
            statuses[item.reportID] = item.status.upper()
            record = report_record(item)
            fetched.append(_summary(record))
            yield record
        outcome.malformed += [r.report_id for r in malformed]
        for record in malformed:
            fetched.append(_summary(record))
            yield record

    up = store.upsert_reports(records())
    store.note_read_status(statuses)  # a report read approved is no longer sent back
    outcome.fetched += [f.report_id for f in fetched]
    outcome.new += up.new
    outcome.changed += up.changed
    outcome.unchanged += up.unchanged
    outcome.changed_after_post += up.changed_after_post
    new_ids, changed_ids = set(up.new), set(up.changed)  # membership per report: no scans
    events = (
        Event(
            type="fetched",
            report_id=f.report_id,
            summary=(
                f"{'new' if f.report_id in new_ids else 'changed'} report "
                f"{f.report_id}: {f.lines} line(s), {f.total_minor} {f.currency}"
            ),
            transaction_ids=list(f.transaction_ids),
            data={"content_hash": f.content_hash, "approved": f.approved},
        )
        for f in fetched
        if f.report_id in new_ids or f.report_id in changed_ids
    )
    late_events = (
        Event(
            type="fetched-late",
            report_id=f.report_id,
            summary=_late_line(f, outcome.approved_after),
            data={"approved": f.approved, "poll_window_after": outcome.approved_after},
        )
        for f in (fetched if late else ())
    )
    audit.append(
        itertools.chain(
            events,
            late_events,
            (
                Event(
                    type="changed-after-post",
                    report_id=rid,
                    summary=(
                        f"report {rid} changed in Expensify after it was posted; not reposted"
                    ),
                )
                for rid in up.changed_after_post
            ),
        )
    )
    if late:
        outcome.late += [f.report_id for f in fetched]
        outcome.notices += [_late_line(f, outcome.approved_after) for f in fetched]


def _late_line(f: _Fetched, window_after: date) -> str:
    approved = f"approved {f.approved[:10]}" if f.approved else "with no approval date"
    return (
        f"report {f.report_id} ({approved}) was approved before the poll window (after "
        f"{window_after.isoformat()}) and never fetched: found by the daily check for such "
        "reports and fetched now"
    )


def sweep_late(
    client: ExpensifyReader,
    store: Store,
    audit: AuditLog,
    outcome: FetchOutcome,
    *,
    configured_start: date,
    export_label: str,
    policy_ids: Sequence[str],
    today: date,
) -> None:
    """Once a day: fetch the unlabelled approved reports the store has never seen (see the
    module doc). Two requests when nothing is missing. A failure leaves a notice and the
    check runs again next cycle; it never fails the cycle."""
    if store.cursor(LATE_SWEEP) == today.isoformat():
        return
    try:
        ids = client.export_report_ids(
            start_date=configured_start,
            states=("APPROVED", "REIMBURSED"),
            exclude_label=export_label,
            policy_ids=list(policy_ids) or None,
        )
        missing = [rid for rid in ids if store.report_status(rid) is None]
        items = client.export_reports_by_id(missing, exclude_label=export_label) if missing else ()
        with store.transaction():
            _store_items(items, store, audit, outcome, late=True)
            store.set_cursor(today.isoformat(), LATE_SWEEP)
    except AuthError:
        raise
    except ConsoleError as exc:
        outcome.notices.append(
            "the daily check for reports approved before the poll window could not run "
            f"({exc}); it runs again next cycle"
        )


def _summary(record: ReportRecord) -> _Fetched:
    return _Fetched(
        record.report_id,
        len(record.lines),
        record.total_minor,
        record.currency,
        tuple(ln.transaction_id for ln in record.lines),
        record.content_hash,
        record.approved,
    )
