"""Plan stage: the exact vouchers a cycle would post (design.md §4), as data.

The plan is what `--dry-run` prints and what the post step executes unchanged. Pure: no I/O.

Per report, one voucher in its company:
- one row per non-zero line on the mapped expense account and code parts: a positive line
  debits it, a negative line (a refund) credits it; zero lines are skipped and listed;
- one balancing row per credit account: the accrued-expenses account for reimbursable lines,
  the card clearing account for card lines; it credits the group's net, or debits it where the
  net is negative;
- FX: accounting amount = currency amount × IFS rate, rounded half-up to the cent per row; a
  credit row's accounting amount is the sum of the rounded rows it balances, so both currencies
  balance exactly. Rounding can leave a group whose currency net is zero with a cent in the
  accounting currency: its balancing row then carries 0.00 in the currency and the cent in the
  accounting currency (and in the rarer case where the two nets have opposite signs, two rows
  on the credit account, one per currency, so that no side is ever negative);
- rows are in a canonical order (expense rows by transactionID, then the accrued and card
  rows), so a reordered export is the same voucher with the same version.

``ReferenceNumber`` = ``EXP:{reportID}:{version}``; version = the first 8 hex digits of a
SHA-256 over a canonical JSON of what is posted (company, voucher type, date, period and every
row with its amounts, rate, code parts and Text), not of volatile fields (header Text).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal, TypedDict

from console import code_sources, coding, line_coding, reference, tax
from console.currency import line_amounts, rule_for
from console.expensify.models import ExportReport
from console.ifs.models import CODE_PARTS, Voucher, VoucherRow
from console.mapping import Hold, MappedLine, PostingRules
from console.money import fmt_decimal, minor_to_decimal, row_sides
from console.reference import VERSION_LENGTH
from console.report_hash import content_hash
from console.validate import TEXT_MAX, ValidatedReport

ZERO = Decimal("0.00")
ONE = Decimal(1)

CREDIT_REIMBURSABLE = "reimbursable"
CREDIT_CARD = "card"


class UnbalancedVoucher(AssertionError):
    """A planned voucher does not balance: a bug in the planner, never posted."""


def trim_text(text: str, limit: int = TEXT_MAX) -> str:
    """One line, at most `limit` characters, an ellipsis where it was cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


@dataclass(frozen=True, slots=True)
class RowSource:
    """Where a row comes from: an Expensify line, or the report's balancing total."""

    kind: Literal["line", "credit", "tax"]  # "tax": the row IFS adds itself (console/tax.py)
    report_id: str
    transaction_id: str = ""
    credit_for: str = ""  # "reimbursable" or "card", on credit rows
    # (code part, where its value came from) where that is not the line's tag: a report
    # field, an employee default, the employee on the liability (console/code_sources.py).
    parts_from: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class PlannedRow:
    row_no: int
    account: str
    code_parts: tuple[tuple[str, str], ...]  # (letter, value), letters ascending
    currency_code: str
    currency_rate: Decimal
    currency_debit: Decimal | None
    currency_credit: Decimal | None
    debit: Decimal | None
    credit: Decimal | None
    text: str
    source: RowSource
    tax: tax.RowTax | None = None  # the tax code and IFS's tax fields of an expense row
    # IFS row fields beyond code parts and amounts, as (name, value): the employee as the
    # row's party (console/coding.py).
    fields: tuple[tuple[str, Any], ...] = ()
    # Why the row's Text is not as configured (a receipt link that did not fit), for the dry run.
    note: str = ""

    @property
    def ifs_generated(self) -> bool:
        """IFS adds this row itself (its tax row): shown and balanced, never sent."""
        return self.source.kind == "tax"

    @property
    def account_label(self) -> str:
        # IFS's tax row: the account is IFS's (posting control AP1 for the code).
        return self.account or (f"tax:{self.tax.code}" if self.tax else "")

    def to_ifs(self) -> dict[str, Any]:
        body: dict[str, Any] = {"RowNo": self.row_no, "Account": self.account}
        for letter, value in self.code_parts:
            body[f"Code{letter}"] = value
        body.update(
            CurrencyCode=self.currency_code,
            CurrencyRate=self.currency_rate,
            CurrencyDebetAmount=self.currency_debit,
            CurrencyCreditAmount=self.currency_credit,
            DebetAmount=self.debit,
            CreditAmount=self.credit,
            Text=self.text,
        )
        if self.tax is not None:
            body.update(self.tax.to_ifs())
        body.update(self.fields)
        return body

    @property
    def net(self) -> Decimal:
        """Accounting-currency amount, debit positive."""
        return (self.debit or ZERO) - (self.credit or ZERO)

    @property
    def currency_net(self) -> Decimal:
        return (self.currency_debit or ZERO) - (self.currency_credit or ZERO)


@dataclass(frozen=True, slots=True)
class SkippedLine:
    transaction_id: str
    merchant: str
    reason: str = "zero amount"


@dataclass(frozen=True, slots=True)
class VoucherHeader:
    """What every voucher this console posts has above its rows, and what follows from it:
    its period label and its POST body. Subclasses add their fields (constructed by keyword)."""

    company: str
    voucher_type: str
    voucher_date: date
    accounting_year: int
    accounting_period: int
    text: str

    @property
    def period_label(self) -> str:
        return f"{self.accounting_year}-{self.accounting_period:02d}"

    def ifs_body(self, reference: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The JSON body of the POST to VoucherSet (Decimals stay Decimal: console.money)."""
        return voucher_body(
            self.company,
            self.voucher_type,
            self.voucher_date,
            self.accounting_year,
            self.accounting_period,
            reference,
            self.text,
            rows,
        )


@dataclass(frozen=True, slots=True)
class PlannedVoucher(VoucherHeader):
    report_id: str
    report_name: str
    employee: str
    version: str
    currency: str
    company_currency: str
    rate: Decimal
    rows: tuple[PlannedRow, ...]
    skipped_lines: tuple[SkippedLine, ...] = ()
    moved_from: date | None = None
    moved_from_period: str = ""
    content_hash: str = ""
    # The approval time and zone, for a report approved within a day of its period's edge
    # (where the time zone decides the period); empty otherwise.
    approval_note: str = ""
    # How IFS quotes the rate ('0.665 USD per 100 JPY'; console/currency.py) and each
    # currency's decimals, for display.
    rate_note: str = ""
    currency_decimals: int = 2
    accounting_decimals: int = 2

    @property
    def reference_number(self) -> str:
        return reference.accrual(self.report_id, self.version)

    def to_ifs_body(self) -> dict[str, Any]:
        return self.ifs_body(self.reference_number, [row.to_ifs() for row in self.sent_rows])

    @property
    def sent_rows(self) -> tuple[PlannedRow, ...]:
        """The rows the POST carries: all but those IFS adds itself (its tax rows)."""
        return tuple(r for r in self.rows if not r.ifs_generated)

    def to_voucher(self) -> Voucher:
        return Voucher(
            Company=self.company,
            VoucherType=self.voucher_type,
            AccountingYear=self.accounting_year,
            AccountingPeriod=self.accounting_period,
            VoucherDate=self.voucher_date,
            ReferenceNumber=self.reference_number,
            Text=self.text,
            VoucherRowArray=[VoucherRow(**row.to_ifs()) for row in self.sent_rows],
        )

    def totals(self) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """(currency debit, currency credit, debit, credit) over all rows."""
        cd = sum((r.currency_debit or ZERO for r in self.rows), ZERO)
        cc = sum((r.currency_credit or ZERO for r in self.rows), ZERO)
        d = sum((r.debit or ZERO for r in self.rows), ZERO)
        c = sum((r.credit or ZERO for r in self.rows), ZERO)
        return cd, cc, d, c

    def check_balance(self) -> None:
        cd, cc, d, c = self.totals()
        if cd != cc or d != c:
            raise UnbalancedVoucher(
                f"voucher for report {self.report_id} does not balance: currency {cd} / {cc}, "
                f"accounting {d} / {c}"
            )


def approval_note(report: ExportReport, period_from: date, period_until: date) -> str:
    """'2026-12-01 00:30:00 Europe/Berlin (Expensify: 2026-11-30 23:30:00 UTC)' when the
    approval falls on its period's first or last day, where the zone decides the period."""
    day = report.approved[:10]
    if day not in (period_from.isoformat(), period_until.isoformat()):
        return ""
    zone = report.approvalZone or "UTC"
    note = f"{report.approved} {zone}"
    if report.approvedUTC:
        note += f" (Expensify: {report.approvedUTC} UTC)"
    return note


@dataclass(frozen=True)
class HeldReport:
    report_id: str
    report_name: str
    employee: str
    holds: tuple[Hold, ...]

    @property
    def reason(self) -> str:
        return self.holds[0].code

    @property
    def message(self) -> str:
        return self.holds[0].message


@dataclass(frozen=True)
class SkippedReport:
    report_id: str
    report_name: str
    reason: str
    skipped_lines: tuple[SkippedLine, ...] = ()


# ---------------------------------------------------------------- planning one voucher


def _side(amount: Decimal) -> tuple[Decimal | None, Decimal | None]:
    """(debit, credit) for a signed amount, debit positive; the unused side None."""
    return (amount, None) if amount >= 0 else (None, -amount)


def voucher_body(
    company: str,
    voucher_type: str,
    voucher_date: date,
    accounting_year: int,
    accounting_period: int,
    reference: str,
    text: str,
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """A VoucherSet POST body: the header IFS needs and the rows inline (design.md §3), the one
    shape every voucher this console posts (accrual or reversal) goes out in."""
    return {
        "Company": company,
        "VoucherType": voucher_type,
        "VoucherDate": voucher_date.isoformat(),
        "AccountingYear": accounting_year,
        "AccountingPeriod": accounting_period,
        "ReferenceNumber": reference,
        "Text": text,
        "VoucherRowArray": rows,
    }


@dataclass(frozen=True)
class RowVoucher(VoucherHeader):
    """What a voucher made of IFS VoucherRow models shares (an accrual reversal, a card
    accrual): its header, reference and rows, its POST body and its totals. Subclasses add
    their own fields (constructed by keyword)."""

    reference: str
    rows: tuple[VoucherRow, ...]

    def to_ifs_body(self) -> dict[str, Any]:
        rows = [r.model_dump(mode="python", exclude_none=True) for r in self.rows]
        return self.ifs_body(self.reference, rows)

    def render_head(self, title: str, moved_from: date | None) -> list[str]:
        """The first lines of the dry-run text: the title, the header and a moved date."""
        out = [
            title,
            f"  company {self.company}  type {self.voucher_type}  date {self.voucher_date}  "
            f"period {self.period_label}",
        ]
        if moved_from is not None:
            out.append(f"  ! MOVED: due {moved_from} in a closed period; dated {self.voucher_date}")
        return out

    def totals(self) -> tuple[Decimal, Decimal]:
        """(debit, credit) in the accounting currency, with the tax rows IFS adds for rows
        that carry a tax code (console/tax.py)."""
        d = sum((r.DebetAmount or ZERO for r in self.rows), ZERO)
        c = sum((r.CreditAmount or ZERO for r in self.rows), ZERO)
        for r in self.rows:
            if r.OptionalCode and r.TaxAmount and not r.AutoTaxVouEntry:
                d, c = (d + r.TaxAmount, c) if r.TaxAmount > 0 else (d, c - r.TaxAmount)
        return d, c


def _parts_from(line: MappedLine) -> tuple[tuple[str, str], ...]:
    """Where the line's code parts came from, for those not from its tag."""
    return tuple(
        (letter, code_sources.describe(kind))
        for letter, (kind, _value) in sorted(line.code_part_sources.items())
        if not kind.startswith("tag:")
    )


def _line_text(line: MappedLine) -> str:
    tid = line.transaction_id
    merchant = " ".join(line.transaction.display_merchant.split())
    room = TEXT_MAX - len(tid) - 1
    if not merchant or room < 2:
        return tid  # the transaction ID is kept whole: it is the trace back to Expensify
    return f"{tid} {trim_text(merchant, room)}"


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def _version(
    company: str,
    voucher_type: str,
    day: date,
    year: int,
    period: int,
    rows: Sequence[PlannedRow],
    salt: str,
) -> str:
    posted = {
        "Company": company,
        "VoucherType": voucher_type,
        "VoucherDate": day.isoformat(),
        "AccountingYear": year,
        "AccountingPeriod": period,
        "Rows": [row.to_ifs() for row in rows if not row.ifs_generated],
    }
    if salt:
        posted["Salt"] = salt
    text = json.dumps(_canonical(posted), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:VERSION_LENGTH]


def row_pieces(cur: Decimal, acc: Decimal) -> list[tuple[Decimal, Decimal]]:
    """Signed (currency, accounting) amounts, debit positive, as rows on one side each:
    rounding can leave a net of zero in one currency and a cent in the other, or (rarer) nets
    of opposite signs, which then take a row each so that no amount is negative."""
    if cur == 0 and acc == 0:
        return []
    if cur == 0 or acc == 0 or (cur > 0) == (acc > 0):
        return [(cur, acc)]
    return [(cur, ZERO), (ZERO, acc)]


def _balancing_rows(
    currency_net: Decimal, accounting_net: Decimal
) -> list[tuple[Decimal, Decimal]]:
    """The rows that offset a group's nets."""
    return row_pieces(-currency_net, -accounting_net)


def _next_row_no(rows: Sequence[PlannedRow]) -> int:
    """The next RowNo the POST carries (IFS numbers its own tax rows)."""
    return sum(1 for r in rows if not r.ifs_generated) + 1


class _Amounts(TypedDict):
    currency_debit: Decimal | None
    currency_credit: Decimal | None
    debit: Decimal | None
    credit: Decimal | None


def _on_side(debit: bool, cur: Decimal, acc: Decimal) -> _Amounts:
    """A row's four amount fields with the currency and accounting amounts, as magnitudes,
    on one side: the debit side if `debit`, else the credit side."""
    cur, acc = abs(cur), abs(acc)
    if debit:
        return _Amounts(currency_debit=cur, currency_credit=None, debit=acc, credit=None)
    return _Amounts(currency_debit=None, currency_credit=cur, debit=None, credit=acc)


def _ifs_tax_row(
    row_tax: tax.RowTax, currency: str, rate: Decimal, rid: str, transaction_id: str
) -> PlannedRow:
    """The tax row IFS adds for an expense row with a tax code (AutoTaxVouEntry): on the
    side of the tax, to the account IFS's posting control gives the code. Numbered 0: IFS
    numbers it."""
    debit = row_tax.tax > 0 or (row_tax.tax == 0 and row_tax.currency_tax > 0)
    return PlannedRow(
        row_no=0,
        account="",
        code_parts=(),
        currency_code=currency,
        currency_rate=rate,
        **_on_side(debit, row_tax.currency_tax, row_tax.tax),
        text=f"{transaction_id} tax {row_tax.code} (IFS adds this row)",
        source=RowSource("tax", rid, transaction_id=transaction_id),
        tax=row_tax,
    )


def plan_voucher(
    validated: ValidatedReport,
    posting: PostingRules,
    *,
    version_salt: str = "",
    shared: dict[Any, Any] | None = None,
) -> PlannedVoucher:
    """The voucher of one valid report. Raises ValueError for a held report.

    `shared`: equal accounts, code parts and currency codes of rows are kept once in it,
    across the vouchers of a plan (a plan of 10,000 reports has some 90,000 rows, mostly
    repeating a few dozen of these)."""
    share: dict[Any, Any] = {} if shared is None else shared
    mapped = validated.mapped
    if validated.holds or mapped is None:
        raise ValueError(f"report {validated.report_id} is held and cannot be planned")
    if (
        mapped.company is None
        or validated.voucher_date is None
        or validated.period is None
        or validated.rate is None
        or validated.company_currency is None
    ):
        raise ValueError(f"report {validated.report_id} was not fully validated")
    report = mapped.report
    rid = report.reportID
    currency = share.setdefault(mapped.currency, mapped.currency)
    # IFS's rules (console/currency.py): the rate as IFS quotes it goes on the rows.
    rule = rule_for(validated.currency_rule, currency, validated.company_currency, validated.rate)
    rate = rule.rate

    lines = sorted(
        (line for line in mapped.lines if line.amount_minor != 0),
        key=lambda line: line.transaction_id,
    )
    skipped = [
        SkippedLine(line.transaction_id, line.transaction.display_merchant)
        for line in mapped.lines
        if line.amount_minor == 0
    ]

    rows: list[PlannedRow] = []
    nets: dict[tuple[bool, str], tuple[Decimal, Decimal]] = {}

    def to_accounting(amount: Decimal) -> Decimal:
        # Tax and base convert by the rule the rows convert by (IFS's rounding).
        return line_amounts(rule, amount)[1]

    def to_major(minor: int) -> Decimal:
        return rule.transaction_amount(minor_to_decimal(minor))

    for line in lines:
        line_tax = line.tax if line.tax is not None and line.tax.code else None
        row_tax: tax.RowTax | None = None
        if line_tax is not None:
            # With a tax code the row posts the net; IFS posts the recoverable tax
            # (console/tax.py). Net = gross - tax, each rounded to the currency's decimals
            # first, so that expense + tax = gross exactly (a fraction of a yen rounds once).
            row_tax = tax.row_tax(line_tax, to_major, to_accounting)
            signed_currency = to_major(line_tax.gross_minor) - row_tax.currency_tax
            signed_accounting = rule.accounting_amount(signed_currency)
        else:
            signed_currency, signed_accounting = line_amounts(
                rule, minor_to_decimal(line.amount_minor)
            )
        taxed = row_tax is not None and bool(row_tax.currency_tax or row_tax.tax)
        if signed_currency == 0 and signed_accounting == 0 and not taxed:
            # Hundredths of a currency that has none (a fraction of a yen): nothing to post.
            merchant = line.transaction.display_merchant
            reason = f"rounds to zero in {currency} ({rule.decimals} decimals)"
            skipped.append(SkippedLine(line.transaction_id, merchant, reason))
            continue
        debit_line = line.amount_minor > 0  # zero lines are skipped above
        currency_magnitude = signed_currency if debit_line else -signed_currency
        cd, cc = (currency_magnitude, None) if debit_line else (None, currency_magnitude)
        magnitude = signed_accounting if debit_line else -signed_accounting
        d, c = (magnitude, None) if debit_line else (None, magnitude)
        if line.account is None:
            raise ValueError(f"line {line.transaction_id} has no account")
        code_parts = tuple(sorted(line.code_parts.items()))
        # Beyond code parts (console/line_coding.py): a billable line's activity, the units
        # where the account demands a quantity, the receipt on the Text.
        row_fields = line.row_fields
        quantity = line_coding.quantity_of(line.transaction)
        if quantity is not None and line.account in validated.quantity_accounts:
            row_fields = (*row_fields, (line_coding.QUANTITY_FIELD, quantity))
        text = line_coding.row_text(
            line.transaction, posting, TEXT_MAX, _line_text(line), trim_text
        )
        rows.append(
            PlannedRow(
                row_no=_next_row_no(rows),
                account=share.setdefault(line.account, line.account),
                code_parts=share.setdefault(code_parts, code_parts),
                currency_code=currency,
                currency_rate=rate,
                currency_debit=cd,
                currency_credit=cc,
                debit=d,
                credit=c,
                text=text.text,
                source=RowSource(
                    "line",
                    rid,
                    transaction_id=line.transaction_id,
                    parts_from=_parts_from(line),
                ),
                tax=row_tax,
                fields=row_fields,
                note=text.note,
            )
        )
        if row_tax is not None and taxed:
            rows.append(_ifs_tax_row(row_tax, currency, rate, rid, line.transaction_id))
            signed_currency += row_tax.currency_tax
            signed_accounting += row_tax.tax
        group = coding.credit_account(posting, line)  # (reimbursable, account): per card
        cur_net, acc_net = nets.get(group, (ZERO, ZERO))
        nets[group] = (cur_net + signed_currency, acc_net + signed_accounting)

    employee = coding.liability(mapped, posting)  # on the accrued-expenses row, when set
    for reimbursable, account in sorted(nets, key=lambda k: (not k[0], k[1])):
        credit_for = CREDIT_REIMBURSABLE if reimbursable else CREDIT_CARD
        label = "reimbursable expenses" if reimbursable else "company card expenses"
        credit_parts: tuple[tuple[str, str], ...] = ()
        credit_fields: tuple[tuple[str, Any], ...] = ()
        credit_from: tuple[tuple[str, str], ...] = ()
        if reimbursable and employee is not None:
            credit_parts, credit_fields = employee.code_parts(), employee.row_fields()
            credit_from = tuple(
                (name, f"employee {employee.field}") for name, _ in (*credit_parts, *credit_fields)
            )
        for cur, acc in _balancing_rows(*nets[(reimbursable, account)]):
            # The card accrual's rule: the side follows the currency amount; a currency-zero
            # rounding row follows the accounting amount.
            cur_debit, cur_credit, debit, credit = row_sides(cur, acc)
            rows.append(
                PlannedRow(
                    row_no=_next_row_no(rows),
                    account=account,
                    code_parts=credit_parts,
                    currency_code=currency,
                    currency_rate=rate,
                    currency_debit=cur_debit,
                    currency_credit=cur_credit,
                    debit=debit,
                    credit=credit,
                    text=trim_text(f"Expensify {rid} {label}"),
                    source=RowSource("credit", rid, credit_for=credit_for, parts_from=credit_from),
                    fields=credit_fields,
                )
            )

    period = validated.period
    version = _version(
        mapped.company,
        posting.voucher_type,
        validated.voucher_date,
        period.AccountingYear,
        period.AccountingPeriod,
        rows,
        version_salt,
    )
    name = f" {report.reportName}" if report.reportName else ""
    who = f" — {report.accountEmail}" if report.accountEmail else ""
    voucher = PlannedVoucher(
        report_id=rid,
        report_name=report.reportName,
        employee=report.accountEmail,
        company=mapped.company,
        voucher_type=posting.voucher_type,
        voucher_date=validated.voucher_date,
        accounting_year=period.AccountingYear,
        accounting_period=period.AccountingPeriod,
        version=version,
        text=trim_text(f"Expensify {rid}{name}{who}"),
        currency=currency,
        company_currency=validated.company_currency,
        rate=rate,
        rows=tuple(rows),
        skipped_lines=tuple(skipped),
        moved_from=validated.moved_from,
        moved_from_period=validated.moved_from_period,
        content_hash=content_hash(report),
        approval_note=approval_note(report, period.DateFrom, period.DateUntil),
        rate_note=rule.describe() if not rule.same_currency else "",
        currency_decimals=rule.decimals,
        accounting_decimals=rule.accounting_decimals,
    )
    voucher.check_balance()
    for row in voucher.rows:
        for amount in (row.currency_debit, row.currency_credit, row.debit, row.credit):
            if amount is not None and amount < 0:
                raise UnbalancedVoucher(f"negative amount on a row of report {rid}")
    return voucher


# ---------------------------------------------------------------- the cycle's plan


def cost_centre_code_part(posting: PostingRules) -> str:
    """The code part letter of the cost centre: the "Cost Center" level's, else B."""
    for level, letter in posting.code_part_by_tag_level.items():
        if level.strip().lower() in ("cost center", "cost centre"):
            return letter
    return "B"


@dataclass(frozen=True)
class AccountTotal:
    company: str
    currency: str
    key: str  # account or cost centre ("" for rows without one)
    debit: Decimal
    credit: Decimal

    @property
    def net(self) -> Decimal:
        return self.debit - self.credit


def _totals(vouchers: Iterable[PlannedVoucher], key_of: Any) -> list[AccountTotal]:
    sums: dict[tuple[str, str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    for v in vouchers:
        for row in v.rows:
            key = key_of(row)
            if key is None:
                continue
            s = sums[(v.company, v.company_currency, key)]
            s[0] += row.debit or ZERO
            s[1] += row.credit or ZERO
    return [AccountTotal(c, cur, k, d, cr) for (c, cur, k), (d, cr) in sorted(sums.items())]


@dataclass(frozen=True)
class Plan:
    vouchers: list[PlannedVoucher]
    held: list[HeldReport]
    skipped: list[SkippedReport]
    cost_centre_code_part: str = "B"
    voucher_by_report: dict[str, PlannedVoucher] = field(default_factory=dict)
    # Filled by the engine (console/reversal.py): reversals due this cycle (PlannedReversal)
    # and reports changed after posting, each as {"reportID", "kind", "reversal", "accrual",
    # "holds"} — the reversal of the old accrual beside the new one, awaiting confirmation.
    reversals: list[Any] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)

    def totals_by_account(self) -> list[AccountTotal]:
        """Accounting-currency debit and credit per (company, account)."""
        return _totals(self.vouchers, lambda row: row.account_label)

    def totals_by_cost_centre(self) -> list[AccountTotal]:
        """Accounting-currency debit and credit per (company, cost centre), expense rows only."""
        letter = self.cost_centre_code_part
        return _totals(
            self.vouchers,
            lambda row: dict(row.code_parts).get(letter, "") if row.source.kind == "line" else None,
        )

    # -------------------------------------------------------------- the dry run's diff

    def render_text(self) -> str:
        out: list[str] = []
        out.append(
            f"Plan: {len(self.vouchers)} voucher(s) to post, {len(self.held)} report(s) held, "
            f"{len(self.skipped)} skipped"
        )
        for v in self.vouchers:
            out.append("")
            name = f"  {v.report_name}" if v.report_name else ""
            who = f" — {v.employee}" if v.employee else ""
            out.append(f"+ report {v.report_id}{name}{who}")
            out.append(
                f"  voucher {v.reference_number}  company {v.company}  type {v.voucher_type}  "
                f"date {v.voucher_date}  period {v.period_label}"
            )
            if v.currency != v.company_currency:
                quoted = f" ({v.rate_note})" if v.rate_note else ""
                out.append(
                    f"  currency {v.currency} → {v.company_currency} at rate {v.rate}{quoted}"
                )
            else:
                out.append(f"  currency {v.currency} (rate 1)")
            if v.moved_from is not None:
                out.append(
                    f"  ! MOVED: approved {v.moved_from} in closed period "
                    f"{v.moved_from_period}; posted {v.voucher_date} in period {v.period_label}"
                )
            if v.approval_note:
                out.append(f"  approval {v.approval_note}")
            out.append(
                f"  {'#':>3} {'account':<10} {'code parts':<24} {'cur debit':>14} "
                f"{'cur credit':>14} {'debit':>14} {'credit':>14}  text"
            )
            for row in v.rows:
                parts = " ".join(f"{k}={val}" for k, val in (*row.code_parts, *row.fields)) or "-"
                no = "ifs" if row.ifs_generated else str(row.row_no)
                out.append(
                    f"  {no:>3} {row.account_label:<10} {parts:<24} "
                    f"{fmt_decimal(row.currency_debit, decimals=v.currency_decimals):>14} "
                    f"{fmt_decimal(row.currency_credit, decimals=v.currency_decimals):>14} "
                    f"{fmt_decimal(row.debit, decimals=v.accounting_decimals):>14} "
                    f"{fmt_decimal(row.credit, decimals=v.accounting_decimals):>14}  {row.text}"
                    + _tax_note(row)
                )
                if row.source.parts_from:
                    came = ", ".join(f"{k} from {where}" for k, where in row.source.parts_from)
                    out.append(f"  {'':>3} {'':<10} ({came})")
                if row.note:
                    out.append(f"  {'':>3} {'':<10} ({row.note})")
            cd, cc, d, c = v.totals()
            cur_dp, acc_dp = v.currency_decimals, v.accounting_decimals
            out.append(
                f"  {'':>3} {'balance':<10} {'':<24} {fmt_decimal(cd, decimals=cur_dp):>14} "
                f"{fmt_decimal(cc, decimals=cur_dp):>14} "
                f"{fmt_decimal(d, decimals=acc_dp):>14} "
                f"{fmt_decimal(c, decimals=acc_dp):>14}  {v.currency} / {v.company_currency}"
            )
            for s in v.skipped_lines:
                out.append(f"  (skipped line {s.transaction_id} {s.merchant}: {s.reason})")
        for h in self.held:
            out.append("")
            name = f"  {h.report_name}" if h.report_name else ""
            who = f" — {h.employee}" if h.employee else ""
            out.append(f"! HELD report {h.report_id}{name}{who}: {h.reason}")
            for hold in h.holds:
                out.append(f"    {hold.code}: {hold.message}")
        for sk in self.skipped:
            out.append("")
            out.append(f"- skipped report {sk.report_id}  {sk.report_name}: {sk.reason}")
        if self.reversals:
            out.append("")
            out.append(f"Reversals: {len(self.reversals)} voucher(s) to post")
            for rv in self.reversals:
                out.extend(rv.render_lines())
        for ch in self.changes:
            out.append("")
            out.append(
                f"! CHANGED AFTER POSTING report {ch['reportID']} ({ch['kind']}): held until"
                f" confirmed (ml-console replay {ch['reportID']} --confirm-change)"
            )
            if ch.get("reversal") is not None:
                out.extend("  " + line for line in ch["reversal"].render_lines())
            else:
                out.append("    (old accrual already reversed: no reversal needed)")
            new_voucher = ch.get("accrual")
            if new_voucher is not None:
                out.append(
                    f"  + new accrual {new_voucher.reference_number} date"
                    f" {new_voucher.voucher_date} period {new_voucher.period_label}"
                )
                for row in new_voucher.rows:
                    out.append(
                        f"    {row.row_no:>3} {row.account:<10} {fmt_decimal(row.debit):>14} "
                        f"{fmt_decimal(row.credit):>14}  {row.text}"
                    )
            for code in ch.get("holds", []):
                out.append(f"    new version held: {code}")
        by_account = self.totals_by_account()
        if by_account:
            out.append("")
            out.append("Totals per account (accounting currency)")
            out.extend(self._total_lines(by_account, "account"))
            out.append("")
            out.append(f"Totals per cost centre (code part {self.cost_centre_code_part})")
            out.extend(self._total_lines(self.totals_by_cost_centre(), "cost centre"))
        return "\n".join(out) + "\n"

    @staticmethod
    def _total_lines(totals: list[AccountTotal], what: str) -> list[str]:
        lines = [f"  {'company':<8} {what:<14} {'debit':>16} {'credit':>16} {'net':>16}"]
        for t in totals:
            lines.append(
                f"  {t.company:<8} {t.key or '(none)':<14} {fmt_decimal(t.debit):>16} "
                f"{fmt_decimal(t.credit):>16} {fmt_decimal(t.net):>16} {t.currency}"
            )
        return lines

    # -------------------------------------------------------------- exports

    def to_json(self) -> dict[str, Any]:
        """The whole plan as JSON-ready data; Decimals as exact strings."""
        data: dict[str, Any] = _canonical(
            {
                "vouchers": [
                    {
                        "reportID": v.report_id,
                        "reportName": v.report_name,
                        "employee": v.employee,
                        "referenceNumber": v.reference_number,
                        "version": v.version,
                        "contentHash": v.content_hash,
                        "currency": v.currency,
                        "companyCurrency": v.company_currency,
                        "rate": v.rate,
                        "movedFrom": v.moved_from.isoformat() if v.moved_from else None,
                        "movedFromPeriod": v.moved_from_period or None,
                        "approval": v.approval_note or None,
                        "body": v.to_ifs_body(),
                        "sources": [
                            {
                                "RowNo": r.row_no,
                                "kind": r.source.kind,
                                "transactionID": r.source.transaction_id or None,
                                "creditFor": r.source.credit_for or None,
                                **_tax_json(r),
                                # where a code part is not from the tag (absent otherwise)
                                **(
                                    {"codePartsFrom": dict(r.source.parts_from)}
                                    if r.source.parts_from
                                    else {}
                                ),
                                **({"note": r.note} if r.note else {}),
                            }
                            for r in v.rows
                        ],
                        "skippedLines": [
                            {"transactionID": s.transaction_id, "reason": s.reason}
                            for s in v.skipped_lines
                        ],
                    }
                    for v in self.vouchers
                ],
                "held": [
                    {
                        "reportID": h.report_id,
                        "reportName": h.report_name,
                        "reason": h.reason,
                        "message": h.message,
                        "holds": [{"code": x.code, "message": x.message} for x in h.holds],
                    }
                    for h in self.held
                ],
                "skipped": [{"reportID": s.report_id, "reason": s.reason} for s in self.skipped],
                "reversals": [rv.to_json() for rv in self.reversals],
                "changes": [
                    {
                        "reportID": ch["reportID"],
                        "kind": ch["kind"],
                        "reversal": ch["reversal"].to_json() if ch.get("reversal") else None,
                        "newAccrual": (
                            ch["accrual"].reference_number if ch.get("accrual") else None
                        ),
                        "holds": list(ch.get("holds", [])),
                    }
                    for ch in self.changes
                ],
                "totals": {
                    "byAccount": [_total_json(t, "account") for t in self.totals_by_account()],
                    "byCostCentre": [
                        _total_json(t, "costCentre") for t in self.totals_by_cost_centre()
                    ],
                    "costCentreCodePart": self.cost_centre_code_part,
                },
            }
        )
        return data

    CSV_COLUMNS = (
        "status",
        "reportID",
        "referenceNumber",
        "company",
        "voucherDate",
        "period",
        "rowNo",
        "account",
        *(f"Code{c}" for c in CODE_PARTS),
        "currency",
        "rate",
        "currencyDebit",
        "currencyCredit",
        "debit",
        "credit",
        "transactionID",
        "PartyTypeId",
        "text",
        "reason",
        "message",
        "taxCode",
        "currencyTax",
        "tax",
        "ifsGenerated",
        # Row fields beyond code parts (console/line_coding.py), last so earlier columns stay.
        "Quantity",
        "ProjectActivityId",
    )

    def to_csv(self) -> str:
        """One row per voucher row, one per held report (status "held"), one per skip."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for v in self.vouchers:
            for r in v.rows:
                record: dict[str, Any] = {
                    "status": "planned",
                    "reportID": v.report_id,
                    "referenceNumber": v.reference_number,
                    "company": v.company,
                    "voucherDate": v.voucher_date.isoformat(),
                    "period": v.period_label,
                    "rowNo": r.row_no,
                    "account": r.account,
                    "currency": r.currency_code,
                    "rate": format(r.currency_rate, "f"),
                    "currencyDebit": _plain(r.currency_debit),
                    "currencyCredit": _plain(r.currency_credit),
                    "debit": _plain(r.debit),
                    "credit": _plain(r.credit),
                    "transactionID": r.source.transaction_id,
                    "text": r.text,
                }
                if r.tax is not None:
                    record["taxCode"] = r.tax.code
                    if not r.ifs_generated:
                        record["currencyTax"] = _plain(r.tax.currency_tax)
                        record["tax"] = _plain(r.tax.tax)
                if r.ifs_generated:
                    record["ifsGenerated"] = "true"
                for letter, value in r.code_parts:
                    record[f"Code{letter}"] = value
                record.update((k, v) for k, v in r.fields if k in self.CSV_COLUMNS)
                writer.writerow(record)
        for h in self.held:
            writer.writerow(
                {
                    "status": "held",
                    "reportID": h.report_id,
                    "reason": h.reason,
                    "message": h.message,
                }
            )
        for s in self.skipped:
            writer.writerow({"status": "skipped", "reportID": s.report_id, "reason": s.reason})
        return buf.getvalue()


def _tax_json(row: PlannedRow) -> dict[str, Any]:
    """A row's tax in the plan's JSON `sources` (nothing for a row without a tax code)."""
    if row.tax is None:
        return {}
    if row.ifs_generated:  # not in the body: its amounts are here
        return {
            "taxCode": row.tax.code,
            "ifsGenerated": True,
            "debit": row.debit,
            "credit": row.credit,
            "currencyDebit": row.currency_debit,
            "currencyCredit": row.currency_credit,
        }
    return {"taxCode": row.tax.code, "currencyTax": row.tax.currency_tax, "tax": row.tax.tax}


def _tax_note(row: PlannedRow) -> str:
    """`  [tax S25: 20.00 on 80.00]` after an expense row with a tax code."""
    if row.tax is None or row.ifs_generated:
        return ""
    t = row.tax
    return f"  [tax {t.code}: {fmt_decimal(t.currency_tax)} on {fmt_decimal(t.currency_base)}]"


def _plain(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def _total_json(t: AccountTotal, key_name: str) -> dict[str, Any]:
    return {
        "company": t.company,
        "currency": t.currency,
        key_name: t.key,
        "debit": t.debit,
        "credit": t.credit,
        "net": t.net,
    }


class PlanBuilder:
    """A plan built one validated report at a time, so that a caller evaluating reports one
    by one can drop each report's models as soon as its voucher is planned."""

    def __init__(
        self, posting: PostingRules, *, version_salts: dict[str, str] | None = None
    ) -> None:
        self.posting = posting
        self.salts = version_salts or {}
        self.vouchers: list[PlannedVoucher] = []
        self.held: list[HeldReport] = []
        self.skipped: list[SkippedReport] = []
        self._shared: dict[Any, Any] = {}  # see plan_voucher

    def add(self, v: ValidatedReport) -> None:
        """Plan one report: its voucher, its holds, or its skip (every line zero)."""
        if v.holds:
            self.held.append(HeldReport(v.report_id, v.report_name, v.employee, tuple(v.holds)))
            return
        voucher = plan_voucher(
            v, self.posting, version_salt=self.salts.get(v.report_id, ""), shared=self._shared
        )
        if not voucher.rows:
            self.skipped.append(
                SkippedReport(
                    v.report_id,
                    v.report_name,
                    "nothing to post: every line is zero",
                    voucher.skipped_lines,
                )
            )
            return
        self.vouchers.append(voucher)

    def plan(self) -> Plan:
        return Plan(
            vouchers=self.vouchers,
            held=self.held,
            skipped=self.skipped,
            cost_centre_code_part=cost_centre_code_part(self.posting),
            voucher_by_report={v.report_id: v for v in self.vouchers},
        )


def build_plan(
    validated_reports: Iterable[ValidatedReport],
    posting: PostingRules,
    *,
    version_salts: dict[str, str] | None = None,
) -> Plan:
    """The cycle's plan: a voucher per valid report, every held report with its holds, and
    reports with nothing to post (every line zero) as skipped."""
    builder = PlanBuilder(posting, version_salts=version_salts)
    for v in validated_reports:
        builder.add(v)
    return builder.plan()
