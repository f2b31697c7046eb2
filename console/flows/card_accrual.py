"""The card-spend accrual as flows on a session: each company's accrual of a period read
back from IFS, the accrual run of a close (planned, and posted once confirmed), and the
reversals due in a sync cycle. The planning and posting steps are console/card_accrual.py's.
"""

from __future__ import annotations

from datetime import date
from functools import partial
from typing import TYPE_CHECKING

from console.close import (
    ACCRUAL_POSTED,
    ACCRUAL_REVERSED,
    CARDS_READ,
    CardAccrualState,
    CardSpendSection,
    ClosePeriod,
)
from console.flows.results import CycleSummary
from console.ledger import LIVE
from console.money import fmt_decimal
from console.reversal import FAILED_PREFIX
from console.session import Session
from console.store import Store

if TYPE_CHECKING:
    from console.validate import IfsReference
from console.card_accrual import (
    FAILED,
    LEDGER_KINDS,
    POSTED,
    PREFIX,
    RECONCILED,
    UNKNOWN,
    ZERO,
    CardAccrualRun,
    CardPostResult,
    CardVoucher,
    accrual_reference,
    accrual_state,
    plan_card_accruals,
    plan_card_reversal,
    post_card_voucher,
    reversal_due,
    reversal_reference,
)


def read_accrual_states(
    session: Session, section: CardSpendSection, period: ClosePeriod, reference: IfsReference
) -> list[CardAccrualState]:
    """Each configured company's accrual of the period, read back from IFS (one read per
    company: every voucher whose reference starts with CARD)."""
    from functools import partial

    totals = section.totals()
    out: list[CardAccrualState] = []
    for company in sorted(section.voucher_dates):
        cref = reference.company(company)
        currency = cref.currency if cref is not None else ""
        current = sum((v for (c, _cur), v in totals.items() if c == company), ZERO)
        vouchers = session.track("ifs", partial(session.ifs.vouchers_with_prefix, PREFIX, company))
        refs = (accrual_reference(period.label, company), reversal_reference(period.label, company))
        rows = [r for ref in refs for r in session.store.ledger_entries(reference=ref)]
        out.append(
            accrual_state(
                company,
                currency,
                current,
                period,
                vouchers,
                rows,
                section.clearing_account,
                reversal_due(cref, period.label),
            )
        )
    return out


def run_card_accrual(
    session: Session,
    section: CardSpendSection,
    period: ClosePeriod,
    *,
    accrue: bool,
    reverse: bool,
    confirm: bool,
) -> CardAccrualRun:
    """Plan (and with `confirm`, post) the period's card accruals and every card reversal due
    today. `section` is the close's card spend section of `period`, states included."""
    today = session.today()
    reference = session.reference()
    posting = session.settings.posting
    run = CardAccrualRun(period.label, confirm, today, accrue, reverse)
    if accrue:
        if section.status != CARDS_READ:
            run.unavailable = section.note
        else:
            plan = plan_card_accruals(section, period, reference, posting)
            # Accrued before: shown with any difference, whatever the plan says now (nothing
            # to accrue, or a period closed since), and never planned again.
            accrued = {
                s.company: s
                for s in section.accruals
                if s.state in (ACCRUAL_POSTED, ACCRUAL_REVERSED)
            }
            run.existing = list(accrued.values())
            run.accruals = [cv for cv in plan.vouchers if cv.company not in accrued]
            run.refused = [(c, why) for c, why in plan.refused if c not in accrued]
            run.nothing = [c for c in plan.nothing if c not in accrued]
    if not confirm:
        run.reversals, run.waiting = _due_reversals(session, reference, today)
        session.audit.record(
            "dry-run",
            f"card spend {period.label}: {len(run.accruals)} accrual(s) and "
            f"{len(run.reversals)} reversal(s) would be posted",
            data={
                "period": period.label,
                "accruals": [cv.reference for cv in run.accruals],
                "reversals": [cv.reference for cv in run.reversals],
                "refused": [{"company": c, "reason": why} for c, why in run.refused],
            },
        )
        _record_differences(session, run)
        return run
    with session.cycle_lock, session.lock:
        session.ensure_tenant()
        session.track("ifs", lambda: session.ledger().reconcile(kinds=LEDGER_KINDS))
        for cv in run.accruals:
            run.results.append(
                session.track(
                    "ifs",
                    partial(post_card_voucher, cv, session.ifs, session.store, session.audit),
                )
            )
        # After the accruals: one posted late (on or after its reversal day) is reversed now.
        run.reversals, run.waiting = _due_reversals(session, reference, today)
        for rv in run.reversals:
            run.results.append(
                session.track(
                    "ifs",
                    partial(post_card_voucher, rv, session.ifs, session.store, session.audit),
                )
            )
    _record_differences(session, run)
    return run


def _record_differences(session: Session, run: CardAccrualRun) -> None:
    for s in run.differing:
        session.audit.record(
            "card-accrual-differs",
            f"{s.reference} (voucher {s.voucher}) accrued {fmt_decimal(s.accrued, s.currency)};"
            f" the card spend is now {fmt_decimal(s.current, s.currency)}"
            f" ({s.difference:+,.2f}): left as posted, not re-accrued",
            voucher=s.voucher,
            data=s.to_json(),
        )


def _due_reversals(
    session: Session, reference: IfsReference, today: date
) -> tuple[list[CardVoucher], list[tuple[str, str]]]:
    """Reversals due today of every posted card accrual not yet reversed (any period), and
    those that wait with the reason (or the day they are due)."""
    store: Store = session.store
    due: list[CardVoucher] = []
    waiting: list[tuple[str, str]] = []
    for row in store.ledger_entries(kinds=("card-accrual",), outcomes=("posted",)):
        rref = reversal_reference(row.period, row.company)
        if store.ledger_entries(reference=rref, outcomes=LIVE):
            continue  # reversed (or in doubt: looked up before anything is posted)
        cref = reference.company(row.company)
        day = reversal_due(cref, row.period)
        if day is not None and today < day:
            waiting.append((rref, f"due {day}"))
            continue  # not due: no need to read the accrual back
        found = session.track("ifs", partial(session.ifs.find_vouchers, row.reference, row.company))
        if not found:
            waiting.append((rref, f"the accrual {row.reference} is not in IFS"))
            continue
        planned = plan_card_reversal(found[0], row, cref, today)
        if isinstance(planned, str):
            waiting.append((rref, planned or "not due yet"))
        else:
            due.append(planned)
    return due, waiting


def reverse_due_in_cycle(session: Session, summary: CycleSummary) -> None:
    """Post the card reversals due today into a (posting) cycle's summary. A confirmed card
    accrual is reversed on schedule by `--auto` too, not only when someone runs close again.
    Reads only the state file unless a card accrual is posted and its reversal is due."""
    if not session.store.ledger_entries(kinds=("card-accrual",), outcomes=LIVE):
        return
    session.track("ifs", lambda: session.ledger().reconcile(kinds=LEDGER_KINDS))
    due, _waiting = _due_reversals(session, session.reference(), session.today())
    for rv in due:
        r: CardPostResult = session.track(
            "ifs", partial(post_card_voucher, rv, session.ifs, session.store, session.audit)
        )
        if r.outcome in (POSTED, RECONCILED):
            summary.reversals.append(
                {"reportID": "", "reference": rv.reference, "voucher": r.label}
            )
        elif r.outcome == UNKNOWN:
            summary.unknown.append(rv.reference)
        elif r.outcome == FAILED:
            summary.failed_reports.append(
                {"reportID": rv.reference, "reason": f"{FAILED_PREFIX}{r.message}"}
            )
