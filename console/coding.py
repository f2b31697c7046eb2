"""Coding beyond categories and tags (issue 16): what dates a voucher, and the employee on the
accrued-expenses row. Pure: no I/O. The map, validate and plan stages call in here through
small hooks, so that the rules live in one place.

What dates a voucher (`posting.voucher_date`):
- ``approved`` (the default): the approval (whose, `expensify.approval_date` says); a report
  closed without approval (a Submit-and-Close workspace) takes its submission;
- ``submitted``: the submission; ``last-expense``: the latest expense date on the report
  (both read by the Expensify client, ExportReport.as_accrued);
- ``exported``: the day the console plans and posts the voucher (the console's clock, so
  ``--as-of`` moves it), as Expensify's own "date of export" option does. A held report
  posted days later is dated the day it posts. The report must still be approved (or
  closed) to be posted at all.

The employee on the liability (`posting.employee_id_field`, off when empty): the
accrued-expenses row of a report with reimbursable lines names its employee, so the 2930
balance can be reconciled per employee. The ID is the report's employee field named in the
config (Expensify's Custom Field 1, which its employee ID fills, Custom Field 2, the payroll
ID or the user ID), carried either in a code part (`employee_on = "code-part"`,
`employee_code_part`), validated as any code part value, or as the row's party
(`employee_on = "party"`: IFS's Identity, `PartyTypeId`, on the voucher row). A report
whose employee has no ID (or one longer than IFS holds) is held as ``missing-employee-id``;
company-card lines credit the card clearing account, which owes the card issuer, and carry
no employee.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from console.ifs.models import Voucher, VoucherRow
from console.mapping import Hold, MappedLine, MappedReport

if TYPE_CHECKING:
    from console.config import PostingConfig

ZERO = Decimal("0.00")

EXPORTED = "exported"
# IFS's code part values and a voucher row's PartyTypeId are at most 20 characters.
EMPLOYEE_ID_MAX = 20
PARTY_FIELD = "PartyTypeId"

# Where each report-level employee field is set in Expensify, for the hold's message.
_FIELD_WHERE = {
    "employeeCustomField1": "the employee's Custom Field 1 (Employee ID) in the members list",
    "employeeCustomField2": "the employee's Custom Field 2 in the members list",
    "submitterPayrollID": "the employee's payroll ID in Expensify",
    "submitterUserID": "the employee's user ID in Expensify",
}


def voucher_day(posting: PostingConfig, approved: date, today: date | None) -> date:
    """The voucher date of a report whose moment (ExportReport.as_accrued) is `approved`:
    that day, or `today` where vouchers are dated by their export."""
    if posting.voucher_date == EXPORTED and today is not None:
        return today
    return approved


def dated_by_export(posting: PostingConfig) -> bool:
    """Whether the voucher date moves with the console's day (a plan of yesterday is stale)."""
    return posting.voucher_date == EXPORTED


@dataclass(frozen=True)
class Liability:
    """The employee on one report's accrued-expenses row."""

    employee_id: str  # "" when the report's employee has none (then `holds` says so)
    field: str  # the Expensify field it came from
    code_part: str  # the code part letter; "" when it goes to the row's party
    holds: tuple[Hold, ...] = ()

    def code_parts(self) -> tuple[tuple[str, str], ...]:
        if self.code_part and self.employee_id and not self.holds:
            return ((self.code_part, self.employee_id),)
        return ()

    def row_fields(self) -> tuple[tuple[str, Any], ...]:
        """IFS voucher row fields beyond code parts (the party)."""
        if not self.code_part and self.employee_id and not self.holds:
            return ((PARTY_FIELD, self.employee_id),)
        return ()


def liability(mapped: MappedReport, posting: PostingConfig) -> Liability | None:
    """The employee the report's accrued-expenses row carries, or None when the config names
    no employee field or the report has no reimbursable line to post."""
    field = posting.employee_id_field
    if not field:
        return None
    if not any(line.reimbursable and line.amount_minor != 0 for line in mapped.lines):
        return None
    on_party = posting.employee_on == "party"
    letter = "" if on_party else posting.employee_code_part
    report = mapped.report
    value = str(getattr(report, field, "") or "").strip()
    who = report.accountEmail or report.submitterName or "(no e-mail)"
    where = _FIELD_WHERE.get(field, field)
    if not value:
        hold = Hold(
            f"missing-employee-id:{who}",
            f"Report {report.reportID}: the accrued-expenses row names the employee"
            f" (posting.employee_id_field = {field}), and {who} has no ID there; set"
            f" {where}, and the report is read again next cycle.",
        )
        return Liability("", field, letter, (hold,))
    if len(value) > EMPLOYEE_ID_MAX:
        hold = Hold(
            f"missing-employee-id:{who}",
            f"Report {report.reportID}: the employee ID '{value[:EMPLOYEE_ID_MAX]}…' of {who}"
            f" ({field}) has {len(value)} characters; IFS holds {EMPLOYEE_ID_MAX}. Correct"
            f" {where}.",
        )
        return Liability(value, field, letter, (hold,))
    return Liability(value, field, letter)


# ---------------------------------------------------------------- the liability per employee


@dataclass(frozen=True)
class EmployeeBalance:
    """What the accrued-expenses account owes one employee at a period's end, from this
    console's vouchers read back from IFS (credits less debits, accounting currency)."""

    company: str
    employee: str  # "" for rows that name no employee (posted before the setting, or cards)
    currency: str
    balance: Decimal

    def to_json(self) -> dict[str, Any]:
        return {
            "company": self.company,
            "employee": self.employee or None,
            "currency": self.currency,
            "balance": format(self.balance, "f"),
        }


def employee_of_row(row: VoucherRow, posting: PostingConfig) -> str:
    """The employee a voucher row names, as posting.employee_on puts it there."""
    if posting.employee_on == "party":
        return row.PartyTypeId or ""
    letter = posting.employee_code_part
    return str(getattr(row, f"Code{letter}", None) or "") if letter else ""


def accrued_by_employee(
    vouchers: Iterable[Voucher],
    posting: PostingConfig,
    until: tuple[int, int],
    currency_of: Mapping[str, str],
) -> list[EmployeeBalance]:
    """The accrued-expenses balance per (company, employee) over every voucher up to and
    including period `until` (year, period): accruals credit it, their reversals debit it.
    Empty when the config names no employee field."""
    if not posting.employee_id_field:
        return []
    account = posting.accrued_expenses_account
    sums: dict[tuple[str, str], Decimal] = {}
    for v in vouchers:
        if (v.AccountingYear, v.AccountingPeriod) > until:
            continue
        for row in v.VoucherRowArray:
            if row.Account != account:
                continue
            key = (v.Company, employee_of_row(row, posting))
            net = (row.CreditAmount or ZERO) - (row.DebetAmount or ZERO)
            sums[key] = sums.get(key, ZERO) + net
    return [
        EmployeeBalance(company, employee, currency_of.get(company, ""), balance)
        for (company, employee), balance in sorted(sums.items())
    ]


# ---------------------------------------------------------------- a clearing account per card


def clearing_account(posting: PostingConfig, line: MappedLine) -> str:
    """The account a company-card line credits: its card's own clearing account
    (`posting.card_clearing_account_by_card`, keyed by Expensify's cardID or the card number
    as the export masks it), else `posting.card_clearing_account`."""
    by_card: Mapping[str, str] = posting.card_clearing_account_by_card
    tx = line.transaction
    for key in (tx.cardID, tx.cardNumber):
        if key and key in by_card:
            return by_card[key]
    return posting.card_clearing_account


def clearing_accounts(posting: PostingConfig) -> frozenset[str]:
    """Every account a card line may credit."""
    by_card: Mapping[str, str] = posting.card_clearing_account_by_card
    return frozenset({posting.card_clearing_account, *by_card.values()})


def credit_account(posting: PostingConfig, line: MappedLine) -> tuple[bool, str]:
    """(reimbursable, the account its voucher's balancing row credits) of a line."""
    if line.reimbursable:
        return True, posting.accrued_expenses_account
    return False, clearing_account(posting, line)


def credit_groups(mapped: MappedReport, posting: PostingConfig) -> list[tuple[bool, str]]:
    """The balancing rows a report's voucher has, in their order: the accrued-expenses
    account first, then each card clearing account by account."""
    keys = {credit_account(posting, line) for line in mapped.lines if line.amount_minor != 0}
    return sorted(keys, key=lambda k: (not k[0], k[1]))
