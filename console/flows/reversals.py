"""Accrual reversals and changes after posting, as flows on a session: the re-read of
posted and held reports before planning (`watch`), what a cycle adds to its plan (the
reversals due today, the changes after posting), the posting of due reversals, and the
operator's confirmation of a change. The planning itself is console/reversal.py's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from typing import Any

from console.errors import ConsoleError
from console.expensify.models import ExportReport
from console.fetch import load_report, report_record
from console.flows.results import CycleSummary
from console.ledger import VoucherSender
from console.mapping import map_report
from console.plan import Plan, plan_voucher
from console.reversal import (
    CAUSE_CHANGED,
    FAILED_PREFIX,
    PlannedReversal,
    ReversalOutcome,
    ReversalPlan,
    WatchOutcome,
    change_reversal,
    due_reversals,
    post_reversals,
    watch_posted,
)
from console.session import Session
from console.store import ChangeRow
from console.validate import IfsReference, validate


def review_additions(session: Session, plan: Plan, reader: VoucherSender | None = None) -> Plan:
    """The plan with the reversals due today and every report changed after posting beside
    it (reversal of the old accrual, accrual of the new version). Reads only; the accruals
    due are read back through `reader` (default: the IFS client)."""
    today = session.today()
    reference = session.reference()
    posting = session.settings.posting
    ifs = reader if reader is not None else session.ifs
    due: ReversalPlan = session.track(
        "ifs", lambda: due_reversals(ifs, session.store, reference, posting, today)
    )
    changes = [
        preview_change(session, change, reference, today)
        for change in session.store.report_changes(("open", "confirmed"))
    ]
    return replace(plan, reversals=due.reversals, changes=changes)


def watch(session: Session, priority: Sequence[str]) -> WatchOutcome:
    """A cycle's step before planning: re-read posted and held reports by ID (those a poll
    just saw changed after posting first; console/reversal.py `watch_posted`)."""
    return session.track(
        "expensify",
        lambda: watch_posted(session.expensify, session.store, session.audit, priority=priority),
    )


def prepare(
    session: Session,
    plan: Plan,
    dry_run: bool,
    reader: VoucherSender | None = None,
) -> Plan:
    """A cycle's step after planning: settle reversal intents left open, then add what
    `review_additions` adds."""
    if not dry_run:
        session.track("ifs", lambda: session.ledger().reconcile(kinds=("reversal",)))
    return review_additions(session, plan, reader)


def preview_change(
    session: Session, change: ChangeRow, reference: IfsReference, today: date
) -> dict[str, Any]:
    """The reversal of the old accrual and the accrual of the new version, side by side."""
    posting = session.settings.posting
    reversal = session.track(
        "ifs",
        lambda: change_reversal(session.ifs, session.store, reference, posting, change, today),
    )
    out: dict[str, Any] = {
        "reportID": change.report_id,
        "kind": change.kind,
        "reversal": reversal if isinstance(reversal, PlannedReversal) else None,
        "accrual": None,
        "holds": [reversal] if isinstance(reversal, str) else [],
    }
    if change.kind == CAUSE_CHANGED and change.new_raw:
        report = load_report(change.new_raw)
        if isinstance(report, ExportReport):
            mapped = map_report(report, session.policies(), posting, session.overrides())
            validated = validate(mapped, reference, posting, today=today)
            if validated.holds:
                out["holds"] += [h.code for h in validated.holds]
            else:
                out["accrual"] = plan_voucher(validated, posting)
    return out


def post_due(session: Session, plan: Plan, summary: CycleSummary) -> None:
    """Post the plan's scheduled reversals (under the posting lock) into the summary."""
    if not plan.reversals:
        return
    with session.lock:
        done: ReversalOutcome = session.track(
            "ifs",
            lambda: post_reversals(plan.reversals, session.ifs, session.store, session.audit),
        )
    into_summary(done, summary)


def reverse_for_change(session: Session, report_id: str) -> tuple[ChangeRow, ReversalOutcome]:
    """The operator's confirmation of a change after posting, first half: record it and
    reverse what is left of the old accrual. The caller holds the cycle and posting locks and
    then (changed) posts the new version as a new accrual."""
    change = session.store.report_change(report_id)
    if change is None or change.state not in ("open", "confirmed"):
        raise ConsoleError(f"report {report_id} has no change after posting to confirm")
    if change.state == "open":
        session.store.set_change_state(report_id, "confirmed", session.actor)
        session.audit.record(
            "change-confirmed",
            f"confirmed: reverse {change.accrual_reference}"
            + (" and post the new version" if change.kind == CAUSE_CHANGED else ""),
            report_id=report_id,
            data={"kind": change.kind, "accrual": change.accrual_reference},
        )
    reference = session.reference(refresh=True)
    today = session.today()
    session.track("ifs", lambda: session.ledger().reconcile(kinds=("reversal",)))
    planned = session.track(
        "ifs",
        lambda: change_reversal(
            session.ifs, session.store, reference, session.settings.posting, change, today
        ),
    )
    if isinstance(planned, str):
        raise ConsoleError(f"the reversal of {change.accrual_reference} waits: {planned}")
    done = ReversalOutcome()
    if planned is not None:
        done = session.track(
            "ifs", lambda: post_reversals([planned], session.ifs, session.store, session.audit)
        )
        if done.unknown or done.failed:
            raise ConsoleError(
                f"the reversal of {change.accrual_reference} did not post; the new version"
                " waits (run the confirmation again)"
            )
    if change.kind == CAUSE_CHANGED:
        report = load_report(change.new_raw)
        if isinstance(report, ExportReport):
            session.store.replace_report_content(report_record(report))
    return change, done


def into_summary(done: ReversalOutcome, summary: CycleSummary) -> None:
    summary.reversals += [
        {"reportID": rid, "reference": ref, "voucher": v} for rid, ref, v in done.posted
    ]
    summary.unknown += done.unknown
    summary.failed_reports += [
        {"reportID": rid, "reason": f"{FAILED_PREFIX}{msg}"} for rid, msg in done.failed
    ]
