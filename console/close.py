"""Period close: the tie-out of Expensify's approved spend against what IFS holds.

For one accounting period, per company, expense account and cost centre:

    approved in Expensify + moved in  =  in IFS (read back) + held + excluded + moved out
                                         + difference

where every report behind a non-zero difference, and every report whose voucher does not match
Expensify, is listed as *unexplained*. Nothing here trusts local state for what was posted: the
vouchers come from IFS; local state only says why a report is not posted (held, excluded).

`tie_out(inputs)` is pure. `read_close_inputs(engine, period)` does the reading (Expensify
re-read by approval window, IFS vouchers by reference prefix, the store for holds and
exclusions) and is the only function here that does I/O.

Amounts are Decimal in major units (as IFS holds them): the company's accounting currency in the
account table, the report currency in the per-report list and the currency summary.

Company-card spend not yet on any report (Expensify's reconciliation export) is a separate
section, `CardSpendSection`: what an accrual of it would debit (expense account and cost
centre, mapped as reports are) and credit (the card clearing account). It never enters the
equation above, so it cannot make the tie-out balanced or unbalanced.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from console import reference
from console.coding import EmployeeBalance
from console.currency import CurrencyRule, rule_for
from console.expensify.models import ExportReport, ExportTransaction, PolicyInfo
from console.expensify.reconciliation import CardSpend, Unreadable
from console.ifs.models import Voucher, VoucherRow
from console.ledger import voucher_label
from console.mapping import Hold, MappingOverrides, PostingRules, map_report
from console.money import fmt_decimal, minor_to_decimal, round_cents

ZERO = Decimal("0.00")
SOURCE_EXPENSIFY = "expensify"
SOURCE_LOCAL = "local"

# Column names of the tie-out (CSV, JSON and the HTML report use them too).
APPROVED = "approved"
MOVED_IN = "moved_in"
IN_IFS = "in_ifs"
HELD = "held"
EXCLUDED = "excluded"
MOVED_OUT = "moved_out"
COLUMNS = (APPROVED, MOVED_IN, IN_IFS, HELD, EXCLUDED, MOVED_OUT)

_PERIOD_RE = re.compile(r"^(\d{4})-(\d{1,2})$")


def _json_amount(v: Decimal | None) -> str | None:
    """An amount in the JSON of the close: exact decimal text, or null."""
    return None if v is None else format(v, "f")


# ---------------------------------------------------------------------------- inputs


@dataclass(frozen=True, order=True)
class ClosePeriod:
    """An IFS accounting period: `2026-11` is AccountingYear 2026, AccountingPeriod 11."""

    year: int
    period: int

    @classmethod
    def parse(cls, text: str) -> ClosePeriod:
        m = _PERIOD_RE.match(text.strip())
        if not m or not 1 <= int(m.group(2)) <= 99:
            raise ValueError(f"not a period: {text!r} (write YYYY-MM, e.g. 2026-11)")
        return cls(int(m.group(1)), int(m.group(2)))

    @property
    def label(self) -> str:
        return f"{self.year}-{self.period:02d}"

    def calendar_month(self) -> tuple[date, date]:
        """The calendar month of the same number: the window when IFS does not know it."""
        if not 1 <= self.period <= 12:
            raise ValueError(f"period {self.label} is not a calendar month")
        first = date(self.year, self.period, 1)
        nxt = date(self.year + (self.period == 12), self.period % 12 + 1, 1)
        return first, nxt - timedelta(days=1)


@dataclass(frozen=True)
class ExpectedLine:
    """One Expensify line as the tie-out expects it in IFS."""

    transaction_id: str
    account: str  # the mapped account, or "?{category}" when unmapped
    cost_centre: str
    amount: Decimal  # report currency, signed (a refund is negative): the gross
    # Of which the recoverable tax IFS posts to its tax account (console/tax.py), signed.
    tax: Decimal = ZERO


@dataclass(frozen=True)
class ApprovedReport:
    """A report Expensify holds as approved (or reimbursed) in the period."""

    report_id: str
    employee: str
    report_name: str
    company: str  # "" when its policy has no company
    currency: str
    company_currency: str
    approved: date
    lines: tuple[ExpectedLine, ...]
    rate: Decimal | None = None  # IFS's rate for the approval date (1 in company currency)
    # IFS's rule on that date (ConvFactor, inverted, decimals; console/currency.py), where known.
    currency_rule: CurrencyRule | None = None

    @property
    def total(self) -> Decimal:
        return sum((ln.amount for ln in self.lines), ZERO)


@dataclass(frozen=True)
class LocalState:
    """What this console knows about one report (why it is not posted, if it is not)."""

    report_id: str
    status: str
    reason: str = ""
    exclusion_reason: str = ""
    approved: str = ""
    posted_vouchers: tuple[str, ...] = ()  # labels of postings recorded as posted
    adopted_references: tuple[str, ...] = ()  # references of postings not made by us


@dataclass(frozen=True)
class CompanyWindow:
    company: str
    currency: str
    date_from: date
    date_until: date
    known_to_ifs: bool  # False: IFS has no such period; the calendar month was used


# Where the card spend section came from.
CARDS_READ = "read"
CARDS_UNAVAILABLE = "unavailable"  # Expensify's reconciliation export could not be read
CARDS_NOT_READ = "not-read"  # nothing to ask for (no card domain), or the local copy stood in


@dataclass(frozen=True)
class CardSpendLine:
    """One company-card expense not yet on a report, as an accrual would book it."""

    transaction_id: str
    card_id: str
    card_name: str
    owner: str
    posted: str
    merchant: str
    category: str
    tag: str
    policy_id: str
    company: str  # "" when the card holder belongs to no configured policy
    company_currency: str
    currency: str  # the card's (transaction) currency
    amount: Decimal  # card currency, spend sign (a refund is negative)
    account: str  # the mapped expense account; "" when unmapped
    code_parts: tuple[tuple[str, str], ...]  # (letter, value) for code parts B..J
    cost_centre: str
    rate: Decimal | None  # IFS's rate on the voucher date (1 in company currency)
    accounting: Decimal | None  # company currency; None when it cannot be accrued
    reason: str = ""  # why it cannot be accrued: "" when it can (machine-readable codes)
    message: str = ""  # the same for people

    @property
    def accruable(self) -> bool:
        return not self.reason and self.accounting is not None


@dataclass
class CardSpendRow:
    """Accruable card spend per (company, account, cost centre), company currency."""

    company: str
    currency: str
    account: str
    cost_centre: str
    amount: Decimal = ZERO
    count: int = 0


# Where a company's card-spend accrual of the period stands (console/card_accrual.py).
ACCRUAL_NONE = "not-accrued"
ACCRUAL_IN_DOUBT = "in-doubt"  # an intent without a known outcome, not found in IFS yet
ACCRUAL_POSTED = "accrued"
ACCRUAL_REVERSED = "reversed"


@dataclass(frozen=True)
class CardAccrualState:
    """One company's card-spend accrual of the period: read back from IFS by reference, the
    store saying only what is in doubt. `difference` is the current accruable figure minus
    what the posted accrual debits: the console never re-accrues it by itself."""

    company: str
    currency: str
    reference: str
    state: str  # ACCRUAL_NONE, ACCRUAL_IN_DOUBT, ACCRUAL_POSTED or ACCRUAL_REVERSED
    current: Decimal  # the accruable total now
    voucher: str = ""  # the accrual's voucher label
    accrued: Decimal | None = None  # what the posted accrual debits (company currency)
    reversal_reference: str = ""
    reversal_voucher: str = ""
    reversal_date: date | None = None  # the reversal's voucher date, or when it is due
    note: str = ""

    @property
    def difference(self) -> Decimal | None:
        return None if self.accrued is None else self.current - self.accrued

    def describe(self) -> str:
        """One line for people: not accrued / accrued as voucher N / reversed as voucher M /
        differs by X."""
        if self.state == ACCRUAL_NONE:
            text = "not accrued"
        elif self.state == ACCRUAL_IN_DOUBT:
            text = f"{self.reference} in doubt (posted or not: run the accrual again to look it up)"
        else:
            text = f"accrued as voucher {self.voucher} ({self.accrued:,.2f} {self.currency})"
            if self.state == ACCRUAL_REVERSED:
                text += f"; reversed as voucher {self.reversal_voucher} on {self.reversal_date}"
            elif self.reversal_date is not None:
                text += f"; reversal due {self.reversal_date}"
            diff = self.difference
            if diff:
                text += (
                    f"; differs from the current figure by {diff:+,.2f} {self.currency} "
                    "(left as posted: not re-accrued)"
                )
        return text + (f"; {self.note}" if self.note else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "company": self.company,
            "currency": self.currency,
            "reference": self.reference,
            "state": self.state,
            "current": _json_amount(self.current),
            "voucher": self.voucher or None,
            "accrued": _json_amount(self.accrued),
            "difference": _json_amount(self.difference),
            "reversalReference": self.reversal_reference,
            "reversalVoucher": self.reversal_voucher or None,
            "reversalDate": self.reversal_date.isoformat() if self.reversal_date else None,
            "note": self.note,
            "description": self.describe(),
        }


@dataclass(frozen=True)
class CardSpendSection:
    """Card spend not yet reported, for the period: separate from the tie-out."""

    status: str  # CARDS_READ, CARDS_UNAVAILABLE or CARDS_NOT_READ
    note: str
    clearing_account: str
    voucher_dates: Mapping[str, date]  # company -> the period's last day (the accrual date)
    lines: tuple[CardSpendLine, ...] = ()
    unreadable: tuple[Unreadable, ...] = ()
    accruals: tuple[CardAccrualState, ...] = ()  # per configured company, when read

    @property
    def accruable(self) -> list[CardSpendLine]:
        return [ln for ln in self.lines if ln.accruable]

    @property
    def not_accruable(self) -> list[CardSpendLine]:
        return [ln for ln in self.lines if not ln.accruable]

    def rows(self) -> list[CardSpendRow]:
        out: dict[tuple[str, str, str], CardSpendRow] = {}
        for ln in self.accruable:
            key = (ln.company, ln.account, ln.cost_centre)
            row = out.get(key)
            if row is None:
                row = out[key] = CardSpendRow(ln.company, ln.company_currency, *key[1:])
            row.amount += ln.accounting or ZERO
            row.count += 1
        return sorted(out.values(), key=lambda r: (r.company, r.account, r.cost_centre))

    def totals(self) -> dict[tuple[str, str], Decimal]:
        """(company, company currency) -> the accruable total."""
        out: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
        for r in self.rows():
            out[(r.company, r.currency)] += r.amount
        return dict(out)

    def not_accruable_totals(self) -> dict[str, Decimal]:
        """Card currency -> the total that cannot be accrued (unmapped, no rate, no company)."""
        out: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for ln in self.not_accruable:
            out[ln.currency] += ln.amount
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "note": self.note,
            "inTieOut": False,
            "clearingAccount": self.clearing_account,
            "voucherDates": {c: d.isoformat() for c, d in sorted(self.voucher_dates.items())},
            "rows": [
                {
                    "company": r.company,
                    "currency": r.currency,
                    "account": r.account,
                    "costCentre": r.cost_centre,
                    "amount": _json_amount(r.amount),
                    "count": r.count,
                }
                for r in self.rows()
            ],
            "totals": [
                {"company": c, "currency": cur, "amount": _json_amount(v)}
                for (c, cur), v in sorted(self.totals().items())
            ],
            "notAccruable": [
                {"currency": cur, "amount": _json_amount(v)}
                for cur, v in self.not_accruable_totals().items()
            ],
            "lines": [
                {
                    "transactionID": ln.transaction_id,
                    "cardID": ln.card_id,
                    "cardName": ln.card_name,
                    "owner": ln.owner,
                    "posted": ln.posted,
                    "merchant": ln.merchant,
                    "category": ln.category,
                    "tag": ln.tag,
                    "company": ln.company,
                    "currency": ln.currency,
                    "amount": _json_amount(ln.amount),
                    "account": ln.account,
                    "costCentre": ln.cost_centre,
                    "rate": _json_amount(ln.rate),
                    "accounting": _json_amount(ln.accounting),
                    "accruable": ln.accruable,
                    "reason": ln.reason,
                    "message": ln.message,
                }
                for ln in self.lines
            ],
            "unreadable": [{"where": u.where, "reason": u.reason} for u in self.unreadable],
            "accruals": [a.to_json() for a in self.accruals],
        }


@dataclass(frozen=True)
class CloseInputs:
    period: ClosePeriod
    windows: Mapping[str, CompanyWindow]
    approved: Sequence[ApprovedReport]
    vouchers: Sequence[Voucher]  # read back from IFS, every period
    local: Mapping[str, LocalState]
    credit_accounts: frozenset[str]
    cost_centre_code_part: str = "B"
    source: str = SOURCE_EXPENSIFY
    source_note: str = ""
    read_at: str = ""
    card_spend: CardSpendSection | None = None


# ---------------------------------------------------------------------------- result


@dataclass
class KeyRow:
    """One (company, account, cost centre) line of the tie-out, accounting currency."""

    company: str
    currency: str
    account: str
    cost_centre: str
    amounts: dict[str, Decimal] = field(default_factory=lambda: {c: ZERO for c in COLUMNS})
    # Of each column's gross, the recoverable tax (IFS's tax rows for this account's rows):
    # net = amount - tax (console/tax.py).
    tax: dict[str, Decimal] = field(default_factory=lambda: {c: ZERO for c in COLUMNS})

    def net(self, column: str) -> Decimal:
        return self.amounts[column] - self.tax[column]

    @property
    def difference(self) -> Decimal:
        a = self.amounts
        return (a[APPROVED] + a[MOVED_IN]) - (a[IN_IFS] + a[HELD] + a[EXCLUDED] + a[MOVED_OUT])


@dataclass
class TaxRow:
    """One account's tax in the tie-out: gross = net + tax, as approved and in IFS."""

    company: str
    currency: str
    account: str
    gross: dict[str, Decimal] = field(default_factory=lambda: {APPROVED: ZERO, IN_IFS: ZERO})
    tax: dict[str, Decimal] = field(default_factory=lambda: {APPROVED: ZERO, IN_IFS: ZERO})

    def net(self, column: str) -> Decimal:
        return self.gross[column] - self.tax[column]

    def to_json(self) -> dict[str, Any]:
        return {
            "company": self.company,
            "currency": self.currency,
            "account": self.account,
            **{
                f"{what}{'Approved' if c == APPROVED else 'InIfs'}": _json_amount(value)
                for c in (APPROVED, IN_IFS)
                for what, value in (
                    ("net", self.net(c)),
                    ("tax", self.tax[c]),
                    ("gross", self.gross[c]),
                )
            },
        }


@dataclass
class CurrencyRow:
    """Totals of one report currency that differs from its company's, in that currency."""

    company: str
    currency: str
    amounts: dict[str, Decimal] = field(default_factory=lambda: {c: ZERO for c in COLUMNS})


@dataclass(frozen=True)
class ReportLine:
    """One report's place in the tie-out."""

    report_id: str
    company: str
    employee: str
    approved: str
    disposition: str  # posted | moved-out | moved-in | held | excluded | nothing | unexplained
    reason: str
    currency: str
    company_currency: str
    approved_amount: Decimal | None  # report currency; None: not approved in the period
    ifs_amount: Decimal | None  # report currency, what IFS holds for it (None: nothing)
    approved_accounting: Decimal | None
    ifs_accounting: Decimal | None
    vouchers: tuple[str, ...] = ()

    @property
    def explained(self) -> bool:
        return self.disposition != "unexplained"


@dataclass(frozen=True)
class TieOut:
    period: ClosePeriod
    windows: Mapping[str, CompanyWindow]
    rows: list[KeyRow]
    currencies: list[CurrencyRow]
    reports: list[ReportLine]
    source: str
    source_note: str
    read_at: str
    unconverted: dict[tuple[str, str], Decimal]  # (company, currency) → held without a rate
    cost_centre_code_part: str
    # Card spend not yet on a report: shown beside the tie-out, never part of it.
    card_spend: CardSpendSection | None = None
    # ReferenceNumbers IFS holds on more than one voucher (reference → voucher labels): two
    # installations posting at the same instant, or a voucher entered again by hand.
    held_twice: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The accrued-expenses balance per employee at the period's end (console/coding.py),
    # beside the tie-out; empty unless posting.employee_id_field is set.
    accrued_by_employee: tuple[EmployeeBalance, ...] = ()

    @property
    def unexplained(self) -> list[ReportLine]:
        return [r for r in self.reports if not r.explained]

    @property
    def balanced(self) -> bool:
        return not self.unexplained and all(r.difference == 0 for r in self.rows)

    def totals(self) -> dict[tuple[str, str], dict[str, Decimal]]:
        """Per (company, currency): each column and the difference."""
        out: dict[tuple[str, str], dict[str, Decimal]] = {}
        for r in self.rows:
            t = out.setdefault((r.company, r.currency), {c: ZERO for c in (*COLUMNS, "diff")})
            for c in COLUMNS:
                t[c] += r.amounts[c]
            t["diff"] += r.difference
        return out

    def by_account(self, column: str = IN_IFS) -> list[tuple[str, str, Decimal]]:
        """(company, account, amount) of one column, largest first (for charts)."""
        sums: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
        for r in self.rows:
            sums[(r.company, r.account)] += r.amounts[column]
        return sorted(((c, a, v) for (c, a), v in sums.items() if v), key=lambda t: -t[2])

    def by_cost_centre(self, column: str = IN_IFS) -> list[tuple[str, str, Decimal]]:
        sums: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
        for r in self.rows:
            sums[(r.company, r.cost_centre)] += r.amounts[column]
        return sorted(((c, k, v) for (c, k), v in sums.items() if v), key=lambda t: -t[2])

    def held_by_reason(self) -> list[tuple[str, int, dict[str, Decimal]]]:
        """(reason kind, report count, {report currency: amount}) of held reports."""
        groups: dict[str, tuple[list[str], dict[str, Decimal]]] = {}
        for r in self.reports:
            if r.disposition != "held":
                continue
            kind = r.reason.split(":", 1)[0] or "held"
            ids, amounts = groups.setdefault(kind, ([], defaultdict(lambda: ZERO)))
            ids.append(r.report_id)
            amounts[r.currency] += r.approved_amount or ZERO
        return sorted(
            ((k, len(ids), dict(a)) for k, (ids, a) in groups.items()), key=lambda t: -t[1]
        )

    def tax_by_account(self) -> list[TaxRow]:
        """Per company and account with any tax: net, tax and gross as approved in Expensify
        and as read back from IFS (the tax is what IFS posts to its tax accounts for the
        account's rows, console/tax.py). Empty where no voucher carries tax."""
        sums: dict[tuple[str, str, str], TaxRow] = {}
        for r in self.rows:
            if not any(r.tax.values()):
                continue
            key = (r.company, r.currency, r.account)
            row = sums.setdefault(key, TaxRow(r.company, r.currency, r.account))
            for column in (APPROVED, IN_IFS):
                row.gross[column] += r.amounts[column]
                row.tax[column] += r.tax[column]
        return [sums[k] for k in sorted(sums)]

    def to_json(self) -> dict[str, Any]:
        taxed = self.tax_by_account()
        return {
            "period": self.period.label,
            # Only where a line carries tax (console/tax.py): net, tax and gross per account.
            **({"taxByAccount": [t.to_json() for t in taxed]} if taxed else {}),
            "balanced": self.balanced,
            "source": self.source,
            "sourceNote": self.source_note,
            "readAt": self.read_at,
            "costCentreCodePart": self.cost_centre_code_part,
            "windows": [
                {
                    "company": w.company,
                    "currency": w.currency,
                    "from": w.date_from.isoformat(),
                    "until": w.date_until.isoformat(),
                    "knownToIfs": w.known_to_ifs,
                }
                for w in self.windows.values()
            ],
            "rows": [
                {
                    "company": r.company,
                    "currency": r.currency,
                    "account": r.account,
                    "costCentre": r.cost_centre,
                    **{c: _json_amount(r.amounts[c]) for c in COLUMNS},
                    "difference": _json_amount(r.difference),
                }
                for r in self.rows
            ],
            "totals": [
                {
                    "company": company,
                    "currency": currency,
                    **{c: _json_amount(t[c]) for c in COLUMNS},
                    "difference": _json_amount(t["diff"]),
                }
                for (company, currency), t in sorted(self.totals().items())
            ],
            "reportCurrencies": [
                {
                    "company": c.company,
                    "currency": c.currency,
                    **{k: _json_amount(c.amounts[k]) for k in COLUMNS},
                }
                for c in self.currencies
            ],
            "unconverted": [
                {"company": c, "currency": cur, "amount": _json_amount(v)}
                for (c, cur), v in sorted(self.unconverted.items())
            ],
            "reports": [
                {
                    "reportID": r.report_id,
                    "company": r.company,
                    "employee": r.employee,
                    "approved": r.approved,
                    "disposition": r.disposition,
                    "reason": r.reason,
                    "currency": r.currency,
                    "companyCurrency": r.company_currency,
                    "approvedAmount": _json_amount(r.approved_amount),
                    "ifsAmount": _json_amount(r.ifs_amount),
                    "approvedAccounting": _json_amount(r.approved_accounting),
                    "ifsAccounting": _json_amount(r.ifs_accounting),
                    "vouchers": list(r.vouchers),
                }
                for r in self.reports
            ],
            "unexplained": [
                {"reportID": r.report_id, "reason": r.reason} for r in self.unexplained
            ],
            "cardSpend": self.card_spend.to_json() if self.card_spend is not None else None,
            "heldTwice": {ref: list(labels) for ref, labels in self.held_twice.items()},
            **(
                {"accruedByEmployee": [b.to_json() for b in self.accrued_by_employee]}
                if self.accrued_by_employee
                else {}
            ),
        }


# ---------------------------------------------------------------------------- computation


def report_of_reference(text: str | None) -> str | None:
    """The report an accrual's ReferenceNumber names (console.reference parses it)."""
    return reference.report_of(text)


@dataclass(frozen=True)
class _Amounts:
    """Expense rows of a voucher (or expected lines) summed per (account, cost centre)."""

    currency: dict[tuple[str, str], Decimal]
    accounting: dict[tuple[str, str], Decimal]
    # Of `accounting`, the recoverable tax per key (IFS posts it to its tax account).
    tax: dict[tuple[str, str], Decimal] = field(default_factory=dict)

    @property
    def currency_total(self) -> Decimal:
        return sum(self.currency.values(), ZERO)

    @property
    def accounting_total(self) -> Decimal:
        return sum(self.accounting.values(), ZERO)


def _net(debit: Decimal | None, credit: Decimal | None) -> Decimal:
    return (debit or ZERO) - (credit or ZERO)


def _is_balancing(row: VoucherRow, credit_accounts: frozenset[str]) -> bool:
    codes = (row.CodeB, row.CodeC, row.CodeD, row.CodeE, row.CodeF, row.CodeG, row.CodeH)
    return row.Account in credit_accounts and not any(codes) and not row.CodeI and not row.CodeJ


def _voucher_amounts(
    vouchers: Iterable[Voucher], credit_accounts: frozenset[str], cc_letter: str
) -> _Amounts:
    cur: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    acc: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    tax: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for v in vouchers:
        for row in v.VoucherRowArray:
            # IFS's own tax rows count with the expense row they belong to (its TaxAmount).
            if row.AutoTaxVouEntry or _is_balancing(row, credit_accounts):
                continue
            key = (row.Account, getattr(row, f"Code{cc_letter}", None) or "")
            cur[key] += _net(row.CurrencyDebetAmount, row.CurrencyCreditAmount)
            acc[key] += _net(row.DebetAmount, row.CreditAmount)
            if row.OptionalCode and (row.TaxAmount or row.CurrencyTaxAmount):
                cur[key] += row.CurrencyTaxAmount or ZERO
                acc[key] += row.TaxAmount or ZERO
                tax[key] += row.TaxAmount or ZERO
    return _Amounts(dict(cur), dict(acc), dict(tax))


def _voucher_rate(vouchers: Sequence[Voucher]) -> Decimal | None:
    for v in vouchers:
        for row in v.VoucherRowArray:
            return row.CurrencyRate
    return None


def _expected_amounts(
    report: ApprovedReport, rate: Decimal | None, *, posted: bool = False
) -> _Amounts:
    """Per key, the report-currency net and (with a rate) the accounting net, per line as the
    planner does: by IFS's rule where known (each currency to its decimals), else half-up to
    the cent. `posted`: `rate` is a voucher's CurrencyRate, as IFS quotes it."""
    rule = report.currency_rule
    if rate is not None:
        # The rule the planner converts by (rule_for: IFS's, else the rate to the cent).
        rule = rule_for(rule, report.currency, report.company_currency, rate)
        if posted:
            rule = replace(rule, rate=rate)
    cur: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    acc: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    tax: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for ln in report.lines:
        amount = ln.amount if rule is None else rule.transaction_amount(ln.amount)
        if amount == 0:
            continue
        key = (ln.account, ln.cost_centre)
        cur[key] += amount
        if rate is None or rule is None:
            continue
        # Net and tax are converted each, as the planner converts the row and its tax (the
        # net being the rounded gross less the rounded tax).
        line_tax = rule.transaction_amount(ln.tax)
        converted_tax = rule.accounting_amount(line_tax)
        acc[key] += rule.accounting_amount(amount - line_tax) + converted_tax
        tax[key] += converted_tax
    if rate is None:
        return _Amounts(dict(cur), {})
    return _Amounts(dict(cur), dict(acc), dict(tax))


def _period_of(v: Voucher) -> ClosePeriod:
    return ClosePeriod(v.AccountingYear, v.AccountingPeriod)


class _Builder:
    def __init__(self, inputs: CloseInputs) -> None:
        self.inputs = inputs
        self.rows: dict[tuple[str, str, str], KeyRow] = {}
        self.currencies: dict[tuple[str, str], CurrencyRow] = {}
        self.unconverted: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
        self.reports: list[ReportLine] = []

    def currency_of(self, company: str) -> str:
        w = self.inputs.windows.get(company)
        return w.currency if w else ""

    def add(
        self,
        company: str,
        column: str,
        amounts: _Amounts,
        report_currency: str,
    ) -> None:
        company_currency = self.currency_of(company)
        for (account, cc), value in amounts.accounting.items():
            row = self.rows.get((company, account, cc))
            if row is None:
                row = KeyRow(company, company_currency, account, cc)
                self.rows[(company, account, cc)] = row
            row.amounts[column] += value
            row.tax[column] += amounts.tax.get((account, cc), ZERO)
        if not amounts.accounting and amounts.currency and report_currency != company_currency:
            self.unconverted[(company, report_currency)] += amounts.currency_total
        if report_currency and report_currency != company_currency:
            c = self.currencies.get((company, report_currency))
            if c is None:
                c = CurrencyRow(company, report_currency)
                self.currencies[(company, report_currency)] = c
            c.amounts[column] += amounts.currency_total


def tie_out(inputs: CloseInputs) -> TieOut:
    """The tie-out of one period. Pure."""
    b = _Builder(inputs)
    credit = inputs.credit_accounts
    cc = inputs.cost_centre_code_part
    period = inputs.period

    by_report: dict[str, list[Voucher]] = defaultdict(list)
    by_label = {voucher_label(v): v for v in inputs.vouchers}
    for v in inputs.vouchers:
        rid = report_of_reference(v.ReferenceNumber)
        if rid is not None:
            by_report[rid].append(v)
    # Vouchers this console adopted from a manual process carry no EXP: reference.
    for known in inputs.local.values():
        for label in known.posted_vouchers:
            adopted = by_label.get(label)
            if adopted is not None and adopted not in by_report[known.report_id]:
                by_report[known.report_id].append(adopted)

    approved_ids = {r.report_id for r in inputs.approved}
    for report in sorted(inputs.approved, key=lambda r: (r.company, r.approved, r.report_id)):
        b.reports.append(_tie_report(b, report, by_report.get(report.report_id, []), credit, cc))

    # IFS vouchers in the period for reports not approved in it.
    for rid, vouchers in sorted(by_report.items()):
        if rid in approved_ids:
            continue
        here = [v for v in vouchers if _period_of(v) == period]
        if not here:
            continue
        company = here[0].Company
        if company not in inputs.windows:
            continue  # a company this console does not sync
        amounts = _voucher_amounts(here, credit, cc)
        state = inputs.local.get(rid)
        currency = here[0].VoucherRowArray[0].CurrencyCode if here[0].VoucherRowArray else ""
        company_currency = b.currency_of(company)
        window = inputs.windows[company]
        approved_day = day_of(state.approved) if state else None
        moved_in = (
            state is not None
            and approved_day is not None
            and approved_day < window.date_from
            and len(vouchers) == 1
            and state.status == "posted"
        )
        labels = tuple(voucher_label(v) for v in here)
        if moved_in and state is not None:
            b.add(company, MOVED_IN, amounts, currency)
            b.add(company, IN_IFS, amounts, currency)
            reason = f"approved {state.approved[:10]} in an earlier period, posted in this one"
            disposition = "moved-in"
        else:
            b.add(company, IN_IFS, amounts, currency)
            disposition = "unexplained"
            if state is None:
                reason = "voucher in IFS for a report this console does not know"
            elif approved_day is not None and window.date_from <= approved_day:
                reason = (
                    f"voucher in IFS, but Expensify no longer lists the report as approved "
                    f"in this period (local status {state.status})"
                )
            else:
                reason = (
                    f"voucher in IFS in this period for a report approved "
                    f"{state.approved[:10] or 'at an unknown date'} (local status {state.status})"
                )
            if len(vouchers) > 1:
                reason += f"; {len(vouchers)} vouchers carry this report"
        b.reports.append(
            ReportLine(
                report_id=rid,
                company=company,
                employee="",
                approved=state.approved[:10] if state else "",
                disposition=disposition,
                reason=reason,
                currency=currency,
                company_currency=company_currency,
                approved_amount=None,
                ifs_amount=amounts.currency_total,
                approved_accounting=None,
                ifs_accounting=amounts.accounting_total,
                vouchers=labels,
            )
        )

    rows = sorted(b.rows.values(), key=lambda r: (r.company, r.account, r.cost_centre))
    return TieOut(
        period=period,
        windows=inputs.windows,
        rows=rows,
        currencies=sorted(b.currencies.values(), key=lambda c: (c.company, c.currency)),
        reports=b.reports,
        source=inputs.source,
        source_note=inputs.source_note,
        read_at=inputs.read_at,
        unconverted=dict(b.unconverted),
        cost_centre_code_part=cc,
        card_spend=inputs.card_spend,
        held_twice=held_twice(inputs.vouchers),
    )


def held_twice(vouchers: Iterable[Voucher]) -> dict[str, tuple[str, ...]]:
    """Each reference of ours on more than one voucher (reference → voucher labels)."""
    labels: dict[str, set[str]] = defaultdict(set)
    for v in vouchers:
        if reference.parse(v.ReferenceNumber) is not None:
            labels[v.ReferenceNumber].add(voucher_label(v))
    return {ref: tuple(sorted(ls)) for ref, ls in sorted(labels.items()) if len(ls) > 1}


# Display statuses of a closed (Submit-and-Close) report, whose submission dates its accrual.
ACCRUED_CLOSED = ("CLOSED", "ARCHIVED")


def day_of(text: str) -> date | None:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _tie_report(
    b: _Builder,
    report: ApprovedReport,
    vouchers: list[Voucher],
    credit: frozenset[str],
    cc: str,
) -> ReportLine:
    inputs = b.inputs
    period = inputs.period
    state = inputs.local.get(report.report_id)
    company = report.company
    here = [v for v in vouchers if _period_of(v) == period]
    elsewhere = [v for v in vouchers if _period_of(v) != period]
    problems: list[str] = []
    note = ""

    if vouchers:
        rate = _voucher_rate(vouchers)
        expected = _expected_amounts(report, rate, posted=True)
        posted = _voucher_amounts(vouchers, credit, cc)
        if len(vouchers) > 1:
            problems.append(
                f"{len(vouchers)} vouchers in IFS for this report: "
                + ", ".join(voucher_label(v) for v in vouchers)
            )
        ours = set(state.posted_vouchers) if state else set()
        foreign = [voucher_label(v) for v in vouchers if voucher_label(v) not in ours]
        if foreign and len(vouchers) == 1:
            problems.append(
                f"voucher {', '.join(foreign)} in IFS was not posted or adopted by this console "
                f"(local status {state.status if state else 'unknown: never fetched'})"
            )
        voucher_currency = (
            vouchers[0].VoucherRowArray[0].CurrencyCode
            if (vouchers[0].VoucherRowArray)
            else report.currency
        )
        if voucher_currency != report.currency:
            problems.append(
                f"Expensify approved it in {report.currency}, IFS holds it in {voucher_currency}"
            )
        elif len(vouchers) == 1 and posted.currency_total != expected.currency_total:
            problems.append(
                f"Expensify approved {fmt_decimal(expected.currency_total, report.currency)}, IFS "
                f"voucher {voucher_label(vouchers[0])} holds "
                f"{fmt_decimal(posted.currency_total, report.currency)}"
            )
        elif len(vouchers) == 1 and posted.currency != expected.currency:
            # Same total, another split: the ledger's classification stands (mapping changed
            # after posting); the approved amounts follow the voucher's accounts.
            note = "; posted under other accounts or cost centres than the current mapping"
            expected = posted
        elif len(vouchers) == 1 and posted.accounting != expected.accounting:
            problems.append(
                "accounting amounts differ: expected "
                f"{fmt_decimal(expected.accounting_total, report.company_currency)}"
                f" at rate {rate}, IFS holds "
                f"{fmt_decimal(posted.accounting_total, report.company_currency)}"
            )
        b.add(company, APPROVED, expected, report.currency)
        if here:
            here_amounts = _voucher_amounts(here, credit, cc)
            b.add(company, IN_IFS, here_amounts, report.currency)
        if elsewhere:
            b.add(company, MOVED_OUT, _voucher_amounts(elsewhere, credit, cc), report.currency)
        if problems:
            disposition, reason = "unexplained", "; ".join(problems)
        elif here:
            disposition = "posted"
            reason = f"voucher {voucher_label(here[0])}{note}"
        else:
            target = _period_of(elsewhere[0]).label
            disposition = "moved-out"
            reason = f"posted in period {target} (voucher {voucher_label(elsewhere[0])}){note}"
        return _report_line(report, disposition, reason, expected, posted, vouchers)

    expected = _expected_amounts(report, report.rate)
    b.add(company, APPROVED, expected, report.currency)
    status = state.status if state else ""
    if status == "held":
        disposition, reason = "held", state.reason if state else ""
        b.add(company, HELD, expected, report.currency)
    elif status == "excluded":
        disposition = "excluded"
        reason = (state.exclusion_reason or state.reason) if state else ""
        b.add(company, EXCLUDED, expected, report.currency)
    elif all(ln.amount == 0 for ln in report.lines):
        disposition, reason = "nothing", "nothing to post: every line is zero"
    elif state is None:
        disposition = "unexplained"
        reason = "approved in Expensify, not yet fetched by this console: no voucher, no hold"
    elif status == "posted":
        disposition = "unexplained"
        reason = (
            f"recorded as posted ({', '.join(state.posted_vouchers) or 'no voucher number'}) "
            "but no voucher for it in IFS"
        )
    else:
        disposition = "unexplained"
        reason = f"approved in Expensify, no voucher in IFS, not held or excluded (status {status})"
        if state.reason:
            reason += f": {state.reason}"
    return _report_line(report, disposition, reason, expected)


def _report_line(
    report: ApprovedReport,
    disposition: str,
    reason: str,
    expected: _Amounts,
    posted: _Amounts | None = None,
    vouchers: Sequence[Voucher] = (),
) -> ReportLine:
    """An approved report's line: what was approved, and what IFS holds for it (`posted`,
    None when IFS holds no voucher for it)."""
    return ReportLine(
        report_id=report.report_id,
        company=report.company,
        employee=report.employee,
        approved=report.approved.isoformat(),
        disposition=disposition,
        reason=reason,
        currency=report.currency,
        company_currency=report.company_currency,
        approved_amount=report.total,
        ifs_amount=None if posted is None else posted.currency_total,
        approved_accounting=expected.accounting_total if expected.accounting else None,
        ifs_accounting=None if posted is None else posted.accounting_total,
        vouchers=tuple(voucher_label(v) for v in vouchers),
    )


# ---------------------------------------------------------------------------- card spend


def policy_of_card_holder(
    owner: str, policies: Mapping[str, PolicyInfo], policy_ids: Sequence[str]
) -> str | None:
    """The configured policy a card holder submits to: the first of `policy_ids` (config
    order) that lists them as an employee. An unreported expense has no policy of its own."""
    wanted = owner.strip().lower()
    for pid in policy_ids:
        info = policies.get(pid)
        if info is not None and any(e.email.strip().lower() == wanted for e in info.employees):
            return pid
    return None


def card_spend_lines(
    spends: Iterable[CardSpend],
    *,
    policies: Mapping[str, PolicyInfo],
    posting: PostingRules,
    overrides: MappingOverrides,
    windows: Mapping[str, CompanyWindow],
    rate_on: Callable[[str, str, date], Decimal | None],
    cc_letter: str,
    dimension_issue: Callable[[str, str, str, date], Hold | None] | None = None,
) -> list[CardSpendLine]:
    """Each unreported card expense of the windows, mapped as a report line is (console.mapping:
    category -> account, tags -> code parts) and converted at IFS's rate on its company's
    voucher date (the period's last day). An expense that cannot be accrued keeps its place
    with the reason. `rate_on(company, currency, day)` is IFS's rate or None;
    `dimension_issue(company, code_part, value, day)`, when given, is a Hold for a value IFS
    lacks or does not accept on that day (IFS would refuse the whole accrual voucher). Pure."""

    policy_ids = list(posting.company_by_policy)
    lines: list[CardSpendLine] = []
    for sp in sorted(spends, key=lambda x: (x.posted, x.transaction_id)):
        if sp.reported or sp.deleted:
            continue
        pid = sp.policy_id or policy_of_card_holder(sp.owner, policies, policy_ids) or ""
        company = posting.company_by_policy.get(pid, "") if pid else ""
        window = windows.get(company)
        if window is not None and not window.date_from <= sp.posted <= window.date_until:
            continue  # posted outside this company's period
        if window is None and not any(
            w.date_from <= sp.posted <= w.date_until for w in windows.values()
        ):
            continue
        amount = minor_to_decimal(sp.amount_minor)
        account, cost_centre = "", ""
        parts: tuple[tuple[str, str], ...] = ()
        rate: Decimal | None = None
        accounting: Decimal | None = None
        reasons: list[str] = []
        messages: list[str] = []
        if window is None:
            reasons.append(f"unknown-card-holder:{sp.owner}")
            messages.append(
                f"the card holder {sp.owner or '(none)'} is a member of no configured policy, "
                "so the expense has no IFS company"
            )
        else:
            tx = ExportTransaction(
                transactionID=sp.transaction_id,
                merchant=sp.merchant,
                amount=sp.amount_minor,
                currency=sp.currency,
                category=sp.category,
                tag=sp.tag,
                reimbursable=False,
            )
            report = ExportReport(
                reportID="0", policyID=pid, currency=sp.currency, transactions=[tx]
            )
            mapped = map_report(report, policies, posting, overrides).lines[0]
            account = mapped.account or ""
            parts = tuple(sorted(mapped.code_parts.items()))
            cost_centre = mapped.code_parts.get(cc_letter, "")
            for issue in mapped.issues:
                reasons.append(issue.code)
                messages.append(issue.message.replace("report 0, line", "card expense"))
            day = window.date_until
            if dimension_issue is not None and not reasons:
                wanted = ([("A", account)] if account else []) + list(parts)
                for letter, value in wanted:
                    hold = dimension_issue(company, letter, value, day)
                    if hold is not None:
                        reasons.append(hold.code)
                        messages.append(hold.message)
            rate = (
                Decimal(1) if sp.currency == window.currency else rate_on(company, sp.currency, day)
            )
            if rate is None:
                reasons.append(f"missing-rate:{sp.currency}:{day.isoformat()}")
                messages.append(f"IFS has no {sp.currency} rate on {day.isoformat()}")
            elif not reasons:
                magnitude = round_cents(abs(amount) * rate)
                accounting = magnitude if amount >= 0 else -magnitude
        lines.append(
            CardSpendLine(
                transaction_id=sp.transaction_id,
                card_id=sp.card_id,
                card_name=sp.card_name,
                owner=sp.owner,
                posted=sp.posted.isoformat(),
                merchant=sp.merchant,
                category=sp.category,
                tag=sp.tag,
                policy_id=pid,
                company=company if window is not None else "",
                company_currency=window.currency if window is not None else "",
                currency=sp.currency,
                amount=amount,
                account=account,
                code_parts=parts,
                cost_centre=cost_centre,
                rate=rate,
                accounting=accounting,
                reason="; ".join(reasons),
                message="; ".join(messages),
            )
        )
    return lines


def card_domains(policies: Mapping[str, PolicyInfo], policy_ids: Sequence[str]) -> list[str]:
    """The email domains of the configured policies' members: the card domains to ask the
    reconciliation export about (Expensify's domain control groups cards by email domain)."""
    domains: set[str] = set()
    for pid in policy_ids:
        info = policies.get(pid)
        for e in info.employees if info is not None else ():
            if "@" in e.email:
                domains.add(e.email.rsplit("@", 1)[1].strip().lower())
    return sorted(d for d in domains if d)


# ---------------------------------------------------------------------------- reading
