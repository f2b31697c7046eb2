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

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from console.close import report_of_reference
from console.expensify.models import ExportReport
from console.ifs.models import Voucher
from console.ledger import voucher_label
from console.money import minor_to_decimal
from console.reference import parse as parse_reference

if TYPE_CHECKING:
    pass

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


# ------------------------------------------------------------------------------ command
