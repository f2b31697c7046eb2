"""`ml-console adopt [--confirm] [--json]`: link vouchers IFS already holds for Expensify reports.

A first run after a manual process (or after another installation of ml-console) must not post
history again. Adopt reads the approved reports from Expensify (from the configured start) and
every voucher of each configured IFS company, and proposes links:

- by reference: a voucher whose ReferenceNumber is `EXP:{reportID}:…`;
- by rule, for vouchers of a manual process: same company, voucher date = approval date, the
  voucher's expense total = the report's total in the report currency, and the report ID or
  the employee's e-mail in the voucher's (or a row's) Text.

A report or a voucher that matches more than once is ambiguous and never linked. Without
--confirm nothing is written (a dry run). With --confirm each link is recorded, under the
posting lock, as a posting with outcome "posted" plus an `adopted` audit event: the engine
treats the report as posted (never posts it again) and labels it in Expensify on its next cycle.

Exit codes: 0 done (or nothing to adopt), 3 ambiguous matches were left for the operator,
2 configuration, 4 authentication, 5 unreachable, 6 the posting lock is held.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, TextIO

from console.close import report_of_reference
from console.config import default_approved_after
from console.errors import ConsoleError
from console.exitcodes import ExitCode
from console.expensify.models import ExportReport
from console.ifs.models import Voucher
from console.ledger import voucher_label
from console.money import minor_to_decimal
from console.reference import parse as parse_reference

if TYPE_CHECKING:
    from console.sync import Engine

ZERO = Decimal("0.00")
BY_REFERENCE = "reference"
BY_RULE = "rule"


@dataclass(frozen=True)
class AdoptLink:
    report_id: str
    company: str
    voucher: str  # Company/VoucherType/Year/No
    reference: str
    version: str
    how: str  # reference | rule
    why: str
    voucher_date: str
    approved: str
    amount: Decimal  # the report's total, report currency
    currency: str


@dataclass(frozen=True)
class Ambiguous:
    report_id: str
    vouchers: tuple[str, ...]
    why: str


@dataclass
class AdoptProposal:
    links: list[AdoptLink] = field(default_factory=list)
    ambiguous: list[Ambiguous] = field(default_factory=list)
    already_linked: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (report, why)
    reports_read: int = 0
    vouchers_read: int = 0

    def to_json(self, *, confirmed: bool, recorded: int) -> dict[str, Any]:
        return {
            "confirmed": confirmed,
            "recorded": recorded,
            "reports_read": self.reports_read,
            "vouchers_read": self.vouchers_read,
            "links": [
                {
                    "reportID": lk.report_id,
                    "company": lk.company,
                    "voucher": lk.voucher,
                    "reference": lk.reference,
                    "how": lk.how,
                    "why": lk.why,
                    "voucherDate": lk.voucher_date,
                    "approved": lk.approved,
                    "amount": format(lk.amount, "f"),
                    "currency": lk.currency,
                }
                for lk in self.links
            ],
            "ambiguous": [
                {"reportID": a.report_id, "vouchers": list(a.vouchers), "why": a.why}
                for a in self.ambiguous
            ],
            "already_linked": self.already_linked,
            "skipped": [{"reportID": r, "why": w} for r, w in self.skipped],
        }


# ------------------------------------------------------------------------------ matching


def _expense_total(v: Voucher, credit_accounts: frozenset[str]) -> tuple[Decimal, str]:
    """(report-currency net of the expense rows, currency): what the voucher accrued."""
    total = ZERO
    currency = ""
    for row in v.VoucherRowArray:
        currency = currency or row.CurrencyCode
        if row.Account in credit_accounts:
            continue
        total += (row.CurrencyDebetAmount or ZERO) - (row.CurrencyCreditAmount or ZERO)
    return total, currency


def _texts(v: Voucher) -> str:
    return "\n".join([v.Text or "", *(r.Text or "" for r in v.VoucherRowArray)]).lower()


def propose(
    reports: Iterable[ExportReport],
    vouchers: Iterable[Voucher],
    *,
    company_by_policy: Mapping[str, str],
    credit_accounts: frozenset[str],
    local_status: Mapping[str, str],
) -> AdoptProposal:
    """The links adopt would record. Pure. `local_status`: report ID → status in the store."""
    out = AdoptProposal()
    by_id = {r.reportID: r for r in reports}
    all_vouchers = list(vouchers)
    out.reports_read, out.vouchers_read = len(by_id), len(all_vouchers)

    by_reference: dict[str, list[Voucher]] = defaultdict(list)
    manual: list[Voucher] = []
    for v in all_vouchers:
        rid = report_of_reference(v.ReferenceNumber)
        if rid is not None:
            by_reference[rid].append(v)
        else:
            manual.append(v)

    # Rule candidates: report → vouchers and voucher → reports, to refuse ambiguity both ways.
    rule_hits: dict[str, list[tuple[Voucher, str]]] = defaultdict(list)
    voucher_hits: dict[str, list[str]] = defaultdict(list)
    index: dict[tuple[str, str], list[ExportReport]] = defaultdict(list)
    for r in by_id.values():
        company = company_by_policy.get(r.policyID)
        if company and r.approved_date:
            index[(company, r.approved_date)].append(r)
    for v in manual:
        total, currency = _expense_total(v, credit_accounts)
        text = _texts(v)
        for r in index.get((v.Company, v.VoucherDate.isoformat()), []):
            report_total = minor_to_decimal(sum(t.posted_amount for t in r.transactions))
            if report_total != total or (currency and currency != r.currency):
                continue
            if r.reportID.lower() in text:
                why = "same date and total; report ID in the voucher text"
            elif r.accountEmail and r.accountEmail.lower() in text:
                why = "same date and total; employee in the voucher text"
            else:
                continue
            rule_hits[r.reportID].append((v, why))
            voucher_hits[voucher_label(v)].append(r.reportID)

    for rid in sorted(set(by_id) | set(by_reference) | set(rule_hits)):
        report = by_id.get(rid)
        status = local_status.get(rid)
        if status == "posted":
            out.already_linked.append(rid)
            continue
        ref_vouchers = by_reference.get(rid, [])
        rules = rule_hits.get(rid, [])
        if not ref_vouchers and not rules:
            continue
        if report is None:
            out.skipped.append(
                (rid, "voucher in IFS, but Expensify did not list the report as approved")
            )
            continue
        if status in ("excluded", "posting"):
            out.skipped.append((rid, f"the report is {status} here; not adopted"))
            continue
        candidates = [(v, BY_REFERENCE, "ReferenceNumber names the report") for v in ref_vouchers]
        if not candidates:
            candidates = [(v, BY_RULE, why) for v, why in rules]
        shared = [
            v
            for v, how, _ in candidates
            if how == BY_RULE and len(voucher_hits[voucher_label(v)]) > 1
        ]
        if len(candidates) > 1 or shared:
            out.ambiguous.append(
                Ambiguous(
                    rid,
                    tuple(voucher_label(v) for v, _, _ in candidates),
                    "several vouchers match this report"
                    if len(candidates) > 1
                    else "this voucher matches several reports",
                )
            )
            continue
        v, how, why = candidates[0]
        reference = v.ReferenceNumber or ""
        parsed = parse_reference(reference) if how == BY_REFERENCE else None
        version = parsed.version if parsed is not None else "adopted"
        out.links.append(
            AdoptLink(
                report_id=rid,
                company=v.Company,
                voucher=voucher_label(v),
                reference=reference,
                version=version,
                how=how,
                why=why,
                voucher_date=v.VoucherDate.isoformat(),
                approved=report.approved_date,
                amount=minor_to_decimal(sum(t.posted_amount for t in report.transactions)),
                currency=report.currency,
            )
        )
    return out


# ------------------------------------------------------------------------------ reading


def read_proposal(engine: Engine) -> tuple[AdoptProposal, dict[str, ExportReport]]:
    """Re-read Expensify (approved and reimbursed since the configured start) and every
    voucher of each configured company, then match."""
    settings = engine.settings
    posting = settings.posting
    first = settings.expensify.approved_after or default_approved_after(engine.today())
    start = first - timedelta(days=1)  # Expensify excludes the day
    result = engine.track(
        "expensify",
        lambda: engine.expensify.export_reports(
            approved_after=start,
            states=("APPROVED", "REIMBURSED"),
            policy_ids=list(posting.company_by_policy) or None,
        ),
    )
    reports = {r.reportID: r for r in result.reports}
    vouchers: list[Voucher] = []
    for company in sorted(set(posting.company_by_policy.values())):
        # Every voucher of the company: a manual process's references are not ours.
        vouchers.extend(engine.track("ifs", partial(engine.ifs.vouchers_with_prefix, "", company)))
    statuses = {rid: s for rid in reports if (s := engine.store.report_status(rid)) is not None}
    for v in vouchers:
        rid = report_of_reference(v.ReferenceNumber)
        if rid is not None and rid not in statuses:
            status = engine.store.report_status(rid)
            if status is not None:
                statuses[rid] = status
    proposal = propose(
        reports.values(),
        vouchers,
        company_by_policy=posting.company_by_policy,
        credit_accounts=frozenset(
            {posting.accrued_expenses_account, posting.card_clearing_account}
        ),
        local_status=statuses,
    )
    return proposal, reports


def record_links(
    engine: Engine, links: Sequence[AdoptLink], reports: Mapping[str, ExportReport]
) -> int:
    """Record each link (report row, posting "posted", `adopted` event), under the posting
    lock, one transaction per link. Returns how many were recorded."""
    from console.audit import digest
    from console.fetch import report_record

    recorded = 0
    with engine.lock:
        for link in links:
            report = reports[link.report_id]
            with engine.store.transaction():
                status = engine.store.report_status(link.report_id)
                if status in ("posted", "posting", "excluded"):
                    continue  # changed since the proposal was read
                if status is None:
                    engine.store.upsert_reports([report_record(report)])
                # The ledger's own primitives, in one transaction: intent and outcome
                # "posted" land together, so no half-adopted report is ever visible.
                entry_id = engine.store.ledger_intent(
                    kind="accrual",
                    reference=link.reference,
                    company=link.company,
                    body_digest=digest({"adopted": link.voucher, "reference": link.reference})
                    or "",
                    report_id=link.report_id,
                    version=link.version,
                    voucher_date=link.voucher_date,
                )
                engine.store.ledger_outcome(entry_id, "posted", voucher_no=link.voucher)
                engine.audit.record(
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


# ------------------------------------------------------------------------------ command


def render_text(p: AdoptProposal, *, confirmed: bool, recorded: int) -> str:
    out = [
        f"Adopt: {len(p.links)} link(s) proposed, {len(p.ambiguous)} ambiguous, "
        f"{len(p.already_linked)} already linked ({p.reports_read} approved report(s) in "
        f"Expensify, {p.vouchers_read} voucher(s) in IFS)"
    ]
    if p.links:
        out.append(f"  {'report':<12} {'voucher':<22} {'how':<9} {'date':<10} {'amount':>14}  why")
        for lk in p.links:
            out.append(
                f"  {lk.report_id:<12} {lk.voucher:<22} {lk.how:<9} {lk.voucher_date:<10} "
                f"{lk.amount:>14,.2f} {lk.currency}  {lk.why}"
            )
    for a in p.ambiguous:
        out.append(f"  ? {a.report_id}: {a.why}: {', '.join(a.vouchers)} (not linked)")
    for rid, why in p.skipped:
        out.append(f"  - {rid}: {why}")
    if confirmed:
        out.append(f"Recorded {recorded} link(s); they are labelled in Expensify on the next sync.")
    elif p.links:
        out.append("Dry run: nothing recorded. Run `ml-console adopt --confirm` to record these.")
    return "\n".join(out) + "\n"


def run_adopt_command(
    args: argparse.Namespace,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    opener: Callable[[], Any] | None = None,
) -> int:
    import json

    from console.auto import exit_code_for, open_engine
    from console.close_cmd import _actor

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    confirm = bool(getattr(args, "confirm", False))
    try:
        engine = (opener or (lambda: open_engine(actor=_actor())))()
    except ConsoleError as exc:
        print(f"ml-console: {exc}", file=err)
        return int(exit_code_for(exc))
    recorded = 0
    try:
        proposal, reports = read_proposal(engine)
        if confirm and proposal.links:
            recorded = record_links(engine, proposal.links, reports)
    except ConsoleError as exc:
        print(f"ml-console: {exc}", file=err)
        return int(exit_code_for(exc))
    finally:
        engine.close()
    if getattr(args, "adopt_json", False):
        out.write(json.dumps(proposal.to_json(confirmed=confirm, recorded=recorded)) + "\n")
    else:
        out.write(render_text(proposal, confirmed=confirm, recorded=recorded))
    out.flush()
    for a in proposal.ambiguous:
        print(
            f"ml-console: ambiguous: report {a.report_id}: {a.why} ({', '.join(a.vouchers)})",
            file=err,
        )
    return int(ExitCode.ATTENTION if proposal.ambiguous else ExitCode.OK)
