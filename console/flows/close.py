"""The period close as a flow on a session: read the period's inputs (IFS vouchers by
reference prefix, Expensify's approved reports and card spend, the store's holds,
exclusions and postings) and tie them out. The tie-out itself is console/close.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from console import coding
from console.close import (
    ACCRUED_CLOSED,
    CARDS_NOT_READ,
    CARDS_READ,
    CARDS_UNAVAILABLE,
    SOURCE_EXPENSIFY,
    SOURCE_LOCAL,
    ApprovedReport,
    CardSpendSection,
    CloseInputs,
    ClosePeriod,
    CompanyWindow,
    ExpectedLine,
    LocalState,
    TieOut,
    card_domains,
    card_spend_lines,
    day_of,
    report_of_reference,
    tie_out,
)
from console.expensify.models import ExportReport, PolicyInfo
from console.flows.card_accrual import read_accrual_states
from console.ifs.models import Voucher
from console.ledger import voucher_label
from console.mapping import MappingOverrides
from console.money import minor_to_decimal
from console.session import Session
from console.validate import IfsReference


@dataclass(frozen=True)
class _Mapper:
    """What mapping an approved report or a card expense of this close takes, read once:
    the policies, the operator's overrides, each company's window in the period, IFS's
    reference data and the code part that holds the cost centre."""

    session: Session
    policies: Mapping[str, PolicyInfo]
    overrides: MappingOverrides
    windows: Mapping[str, CompanyWindow]
    reference: IfsReference
    cc_letter: str


def _read_card_spend(m: _Mapper, source: str, period: ClosePeriod) -> CardSpendSection:
    """The card spend section: Expensify's reconciliation export for the windows (unreported
    expenses), mapped. A failure to read it is shown, never fatal: it is not the tie-out."""
    from console.errors import ConfigError, ProtocolError, ServiceError, Unreachable
    from console.expensify.reconciliation import export_card_spend

    session, policies, windows, reference = m.session, m.policies, m.windows, m.reference
    posting = session.settings.posting
    dates = {c: w.date_until for c, w in windows.items()}
    clearing = posting.card_clearing_account

    def section(status: str, note: str, **kw: Any) -> CardSpendSection:
        return CardSpendSection(status, note, clearing, dates, **kw)

    if source != SOURCE_EXPENSIFY:
        return section(CARDS_NOT_READ, "Expensify could not be re-read; card spend not read")
    domains = card_domains(policies, list(posting.company_by_policy))
    if not domains:
        return section(CARDS_NOT_READ, "no card domain: the configured policies list no members")
    start = min(w.date_from for w in windows.values())
    until = max(w.date_until for w in windows.values())
    try:
        result = session.track(
            "expensify",
            lambda: export_card_spend(session.expensify, start=start, end=until, domains=domains),
        )
    except (Unreachable, ProtocolError, ServiceError, ConfigError) as exc:
        return section(CARDS_UNAVAILABLE, f"the card reconciliation export failed: {exc}")
    session.note_reconciliation_file_system()

    def rate_on(company: str, currency: str, day: date) -> Decimal | None:
        cref = reference.company(company)
        return cref.rate_on(currency, day) if cref is not None else None

    def dimension_issue(company: str, letter: str, value: str, day: date) -> Any:
        from console.validate import _check_dimension

        cref = reference.company(company)
        if cref is None:
            return None
        where = f"card expense on {day}"
        name = "Account" if letter == "A" else f"Code part {letter} value"
        return _check_dimension(letter, value, day, cref, where, name, "remap it", "")

    lines = card_spend_lines(
        result.spends,
        policies=policies,
        posting=posting,
        overrides=m.overrides,
        windows=windows,
        rate_on=rate_on,
        cc_letter=m.cc_letter,
        dimension_issue=dimension_issue,
    )
    note = f"unreported company-card expenses posted {start} to {until} ({', '.join(domains)})"
    read = section(CARDS_READ, note, lines=tuple(lines), unreadable=result.unreadable)
    # Where each company's accrual of this spend stands, read back from IFS.
    return replace(read, accruals=tuple(read_accrual_states(session, read, period, reference)))


def _approved_report(report: ExportReport, m: _Mapper) -> ApprovedReport | None:
    from console.mapping import map_report

    posting = m.session.settings.posting
    day = day_of(report.approved or "")
    if day is None:
        return None
    company = posting.company_by_policy.get(report.policyID, "")
    window = m.windows.get(company)
    if window is None or not window.date_from <= day <= window.date_until:
        return None
    mapped = map_report(report, m.policies, posting, m.overrides)
    lines = []
    for ml in mapped.lines:
        account = ml.account or f"?{ml.transaction.category or 'uncategorised'}"
        lines.append(
            ExpectedLine(
                transaction_id=ml.transaction_id,
                account=account,
                cost_centre=ml.code_parts.get(m.cc_letter, ""),
                amount=minor_to_decimal(ml.amount_minor),
                tax=minor_to_decimal(ml.tax.posted_tax_minor) if ml.tax else Decimal(0),
            )
        )
    cref = m.reference.company(company)
    rate: Decimal | None = None
    if report.currency == window.currency:
        rate = Decimal(1)
    elif cref is not None:
        rate = cref.rate_on(report.currency, day)
    return ApprovedReport(
        report_id=report.reportID,
        employee=report.accountEmail,
        report_name=report.reportName,
        company=company,
        currency=report.currency,
        company_currency=window.currency,
        approved=day,
        lines=tuple(lines),
        rate=rate,
        currency_rule=(
            cref.book.rule_on(report.currency, window.currency, day) if cref is not None else None
        ),
    )


def read_close_inputs(session: Session, period: ClosePeriod) -> CloseInputs:
    """Read everything the tie-out needs: IFS's periods, rates and vouchers (read back, every
    EXP: voucher of each configured company), Expensify's approved reports for the period's
    window (re-read; the local fetched copy only when Expensify cannot be reached), and the
    store's holds, exclusions and postings. Raises the clients' ConsoleErrors for IFS."""
    from console.errors import ProtocolError, Unreachable
    from console.fetch import CLOSED_STATES, load_report
    from console.plan import cost_centre_code_part

    settings = session.settings
    posting = settings.posting
    companies = sorted(set(posting.company_by_policy.values()))
    source, note = SOURCE_EXPENSIFY, ""
    try:
        policies = session.policies()
    except (Unreachable, ProtocolError) as exc:
        if getattr(exc, "service", "") != "expensify":
            raise
        # Expensify cannot be reached: the local copy stands in, and the report says so.
        session.go_on_without_policies()
        policies = {}
        source, note = SOURCE_LOCAL, f"Expensify could not be re-read ({exc})"
    reference = session.reference()

    windows: dict[str, CompanyWindow] = {}
    for company in companies:
        cref = reference.company(company)
        found = None
        if cref is not None:
            found = next(
                (
                    p
                    for p in cref.periods
                    if (p.AccountingYear, p.AccountingPeriod) == (period.year, period.period)
                ),
                None,
            )
        if found is not None:
            windows[company] = CompanyWindow(
                company, cref.currency if cref else "", found.DateFrom, found.DateUntil, True
            )
        else:
            first, last = period.calendar_month()
            windows[company] = CompanyWindow(
                company, cref.currency if cref else "", first, last, False
            )
    if not windows:
        raise ValueError("no company is configured (posting.company_by_policy is empty)")
    start = min(w.date_from for w in windows.values())
    until = max(w.date_until for w in windows.values())

    reports: list[ExportReport] = []
    if source == SOURCE_EXPENSIFY:
        try:
            result = session.track(
                "expensify",
                lambda: session.expensify.export_reports(
                    approved_after=start - timedelta(days=1),  # Expensify excludes the day
                    states=("APPROVED", "REIMBURSED"),
                    policy_ids=list(posting.company_by_policy) or None,
                ),
            )
            reports = list(result.reports)
            # Submit-and-Close policies: closed reports by submission window, as the sync.
            closed = [p for p, how in session.policy_sync_states().items() if how == "closed"]
            if closed:
                closed_result = session.track(
                    "expensify",
                    lambda: session.expensify.export_reports(
                        start_date=start, states=CLOSED_STATES, policy_ids=closed
                    ),
                )
                reports += list(closed_result.reports)
        except (Unreachable, ProtocolError) as exc:
            if getattr(exc, "service", "") != "expensify":
                raise
            source, note = SOURCE_LOCAL, f"Expensify could not be re-read ({exc})"
    if source == SOURCE_LOCAL:
        statuses = ("pending", "held", "ready", "posting", "posted", "failed", "excluded")
        for _rid, _status, raw in session.store.reports_raw(statuses):
            loaded = load_report(raw)
            if isinstance(loaded, ExportReport):
                reports.append(loaded)

    mapper = _Mapper(
        session,
        policies,
        MappingOverrides.from_store_rows(session.store.mapping_rules()),
        windows,
        reference,
        cost_centre_code_part(posting),
    )
    approved: list[ApprovedReport] = []
    for rep in reports:
        if rep.status and rep.status.upper() not in ("APPROVED", "REIMBURSED", *ACCRUED_CLOSED):
            continue
        day = day_of(rep.approved or "")
        if day is None or not start <= day <= until:
            continue
        ar = _approved_report(rep, mapper)
        if ar is not None:
            approved.append(ar)

    local: dict[str, LocalState] = {}
    adopted_companies: set[str] = set()
    vouchers: list[Voucher] = []
    ids = {a.report_id for a in approved}
    for company in companies:
        company_vouchers: list[Voucher] = session.track(
            "ifs", partial(session.ifs.vouchers_with_prefix, "EXP:", company)
        )
        vouchers.extend(company_vouchers)
        ids.update(rid for v in company_vouchers if (rid := report_of_reference(v.ReferenceNumber)))
    for rid in sorted(ids):
        detail = session.store.report_detail(rid)
        if detail is None:
            continue
        posted = [p for p in detail.postings if p.outcome == "posted"]
        adopted = tuple(p.reference for p in posted if not p.reference.startswith("EXP:"))
        if adopted:
            adopted_companies.update(p.company for p in posted)
        local[rid] = LocalState(
            report_id=rid,
            status=detail.report.status,
            reason=detail.report.reason,
            exclusion_reason=detail.exclusion.reason if detail.exclusion else "",
            approved=detail.report.approved,
            posted_vouchers=tuple(p.voucher_no for p in posted if p.voucher_no),
            adopted_references=adopted,
        )
    # Vouchers adopted from a manual process carry their own references: read those too.
    for company in sorted(adopted_companies & set(companies)):
        seen = {voucher_label(v) for v in vouchers}
        more: list[Voucher] = session.track(
            "ifs", partial(session.ifs.vouchers_with_prefix, "", company)
        )
        vouchers.extend(v for v in more if voucher_label(v) not in seen)

    card_spend = _read_card_spend(mapper, source, period)
    return CloseInputs(
        period=period,
        windows=windows,
        approved=approved,
        vouchers=vouchers,
        local=local,
        credit_accounts=frozenset(
            {posting.accrued_expenses_account, *coding.clearing_accounts(posting)}
        ),
        cost_centre_code_part=mapper.cc_letter,
        source=source,
        source_note=note,
        read_at=session.store.now(),
        card_spend=card_spend,
    )


def run_close(session: Session, period: ClosePeriod) -> TieOut:
    """Read and tie out one period (what `ml-console close` and the Close screen call). The
    result is itself an audit event: what was unexplained when, with a digest of the tie-out."""
    from console.audit import digest

    inputs = read_close_inputs(session, period)
    tie = tie_out(inputs)
    balances = coding.accrued_by_employee(
        inputs.vouchers,
        session.settings.posting,
        (period.year, period.period),
        {w.company: w.currency for w in inputs.windows.values()},
    )
    if balances:
        tie = replace(tie, accrued_by_employee=tuple(balances))
    unexplained = sorted({r.report_id for r in tie.unexplained})
    state = "balanced" if tie.balanced else f"{len(unexplained)} report(s) unexplained"
    session.audit.record(
        "tie-out",
        summary=f"tie-out {period.label}: {state}",
        response_digest=digest(tie.to_json()),
        data={
            "period": period.label,
            "balanced": tie.balanced,
            "unexplained": unexplained,
            # Beside the tie-out, not in it: what card spend was seen unreported, per company.
            "cardSpend": {
                f"{c}/{cur}": format(v, "f")
                for (c, cur), v in sorted(tie.card_spend.totals().items())
            }
            if tie.card_spend is not None
            else None,
        },
    )
    return tie
