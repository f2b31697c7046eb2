"""Adopt as a flow on a session: read the proposal (vouchers IFS already holds, matched
to reports) and record the confirmed links in the posting ledger. Matching is
console/adopt.py's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import partial

from console import coding
from console.adopt import (
    AdoptLink,
    AdoptProposal,
    propose,
)
from console.close import report_of_reference
from console.config import default_approved_after
from console.expensify.models import ExportReport
from console.ifs.models import Voucher
from console.session import Session


def read_proposal(session: Session) -> tuple[AdoptProposal, dict[str, ExportReport]]:
    """Re-read Expensify (approved and reimbursed since the configured start) and every
    voucher of each configured company, then match."""
    settings = session.settings
    posting = settings.posting
    first = settings.expensify.approved_after or default_approved_after(session.today())
    start = first - timedelta(days=1)  # Expensify excludes the day
    result = session.track(
        "expensify",
        lambda: session.expensify.export_reports(
            approved_after=start,
            states=("APPROVED", "REIMBURSED"),
            policy_ids=list(posting.company_by_policy) or None,
        ),
    )
    reports = {r.reportID: r for r in result.reports}
    vouchers: list[Voucher] = []
    for company in sorted(set(posting.company_by_policy.values())):
        # Every voucher of the company: a manual process's references are not ours.
        vouchers.extend(
            session.track("ifs", partial(session.ifs.vouchers_with_prefix, "", company))
        )
    statuses = {rid: s for rid in reports if (s := session.store.report_status(rid)) is not None}
    for v in vouchers:
        rid = report_of_reference(v.ReferenceNumber)
        if rid is not None and rid not in statuses:
            status = session.store.report_status(rid)
            if status is not None:
                statuses[rid] = status
    proposal = propose(
        reports.values(),
        vouchers,
        company_by_policy=posting.company_by_policy,
        credit_accounts=frozenset(
            {posting.accrued_expenses_account, *coding.clearing_accounts(posting)}
        ),
        local_status=statuses,
    )
    return proposal, reports


def record_links(
    session: Session, links: Sequence[AdoptLink], reports: Mapping[str, ExportReport]
) -> int:
    """Record each link (report row, posting "posted", `adopted` event), under the posting
    lock, one transaction per link. Returns how many were recorded."""
    from console.audit import digest
    from console.fetch import report_record

    recorded = 0
    with session.lock:
        for link in links:
            report = reports[link.report_id]
            with session.store.transaction():
                status = session.store.report_status(link.report_id)
                if status in ("posted", "posting", "excluded"):
                    continue  # changed since the proposal was read
                if status is None:
                    session.store.upsert_reports([report_record(report)])
                # The ledger's own primitives, in one transaction: intent and outcome
                # "posted" land together, so no half-adopted report is ever visible.
                entry_id = session.store.ledger_intent(
                    kind="accrual",
                    reference=link.reference,
                    company=link.company,
                    body_digest=digest({"adopted": link.voucher, "reference": link.reference})
                    or "",
                    report_id=link.report_id,
                    version=link.version,
                    voucher_date=link.voucher_date,
                )
                session.store.ledger_outcome(entry_id, "posted", voucher_no=link.voucher)
                session.audit.record(
                    "adopted",
                    f"voucher {link.voucher} already in IFS linked to report {link.report_id} "
                    f"by {link.how} ({link.why}); it is never posted again",
                    report_id=link.report_id,
                    voucher=link.voucher,
                    data={
                        "reference": link.reference,
                        "how": link.how,
                        "why": link.why,
                        "company": link.company,
                    },
                )
            recorded += 1
    return recorded
