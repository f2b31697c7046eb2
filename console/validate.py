"""Validate stage: is a mapped report postable into IFS as it stands today?

Everything is checked against `IfsReference`, a frozen snapshot of IFS read once per cycle (one
paged read per entity set), with dictionary and bisect look-ups only: no request per line, no
quadratic step. Pure: no I/O.

Checks, each a hold code of design.md §4 (a report with any hold is held whole; the first hold
is its primary reason, all are kept):
- malformed input (``malformed:{what}``), see `MALFORMED_*` below;
- the mapping's own problems (unknown policy, unmapped category or tag);
- the voucher date (the approval day) lies in an open accounting period; a closed one holds the
  report (``closed-period:YYYY-PP``) unless the posting config says ``closed_period =
  "next-open"``, which moves it to the first day of the next open period and records the move;
- every account and code part value exists in the company (``missing-dimension``) and is valid
  on the voucher date (``invalid-dimension``), the two credit accounts included;
- a currency rate exists where the report currency is not the company's (``missing-rate``).

Field lengths: descriptive text (voucher and row ``Text``) is truncated with an ellipsis by the
plan, never held. What would corrupt or untrace the ledger is held: an amount beyond IFS's
numeric range, a transaction ID too long to fit a row's Text whole, a report ID too long for
the ReferenceNumber.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from console import code_sources, coding, line_coding, tax
from console.currency import CurrencyBook, CurrencyRule
from console.expensify.models import MalformedReport
from console.ifs.models import AccountingPeriod, CodePartValue, CurrencyRate
from console.mapping import Hold, MappedLine, MappedReport, PostingRules
from console.reference import REFERENCE_MAX, fits, max_report_id_length

TEXT_MAX = 200  # IFS voucher and voucher row Text
# 15 significant digits: IFS NUMBER holds more, but its web client and every JSON consumer
# that reads numbers as doubles keep 15 exactly. 9,999,999,999,999.99 is far beyond any expense.
MAX_AMOUNT_MINOR = 10**15 - 1

NEXT_OPEN = "next-open"


# ---------------------------------------------------------------- the IFS snapshot


@dataclass(frozen=True)
class CompanyReference:
    company: str
    currency: str
    code_parts: Mapping[tuple[str, str], CodePartValue]
    # Ordinary periods only (a period inside a longer one, like IFS's year-end period, is
    # dropped), sorted by DateFrom and so non-overlapping: a bisect finds a date's period.
    periods: tuple[AccountingPeriod, ...]
    period_starts: tuple[date, ...]
    # For each index into `periods`, the index of the first open period after it (or -1).
    next_open: tuple[int, ...]
    # currency → (ValidFrom dates ascending, rates in the same order)
    rates: Mapping[str, tuple[tuple[date, ...], tuple[Decimal, ...]]]
    # The same rates as IFS quotes them (ConvFactor, inverted) and the currencies' decimals.
    book: CurrencyBook = field(default_factory=CurrencyBook)

    def code_part_value(self, code_part: str, value: str) -> CodePartValue | None:
        return self.code_parts.get((code_part, value))

    def period_index(self, day: date) -> int:
        i = bisect.bisect_right(self.period_starts, day) - 1
        if i >= 0 and self.periods[i].DateUntil >= day:
            return i
        return -1

    def period_on(self, day: date) -> AccountingPeriod | None:
        i = self.period_index(day)
        return self.periods[i] if i >= 0 else None

    def next_open_period(self, day: date) -> AccountingPeriod | None:
        """The first open period starting after `day`'s period (or after `day`)."""
        i = self.period_index(day)
        if i >= 0:
            j = self.next_open[i]
            return self.periods[j] if j >= 0 else None
        k = bisect.bisect_right(self.period_starts, day)
        while k < len(self.periods):  # bounded by the number of periods
            if self.periods[k].is_open:
                return self.periods[k]
            k += 1
        return None

    def rate_on(self, currency: str, day: date) -> Decimal | None:
        """IFS's rate with the latest ValidFrom on or before `day`."""
        entry = self.rates.get(currency)
        if entry is None:
            return None
        dates, values = entry
        i = bisect.bisect_right(dates, day) - 1
        return values[i] if i >= 0 else None


def _ordinary_periods(periods: Iterable[AccountingPeriod]) -> list[AccountingPeriod]:
    ordered = sorted(periods, key=lambda p: (p.DateFrom, -(p.DateUntil.toordinal())))
    kept: list[AccountingPeriod] = []
    for p in ordered:
        if kept and p.DateUntil <= kept[-1].DateUntil:
            continue  # contained in the previous, longer period (e.g. a year-end period)
        kept.append(p)
    return kept


def _next_open_indexes(periods: list[AccountingPeriod]) -> tuple[int, ...]:
    out = [-1] * len(periods)
    nxt = -1
    for i in range(len(periods) - 1, -1, -1):
        out[i] = nxt
        if periods[i].is_open:
            nxt = i
    return tuple(out)


@dataclass(frozen=True)
class IfsReference:
    """What IFS holds, read once per cycle; per company."""

    companies: Mapping[str, CompanyReference]

    def company(self, company: str) -> CompanyReference | None:
        return self.companies.get(company)

    @classmethod
    def build(
        cls,
        currency_by_company: Mapping[str, str],
        code_part_values: Iterable[CodePartValue] = (),
        periods: Iterable[AccountingPeriod] = (),
        rates: Iterable[CurrencyRate] = (),
    ) -> IfsReference:
        values: dict[str, dict[tuple[str, str], CodePartValue]] = {
            c: {} for c in currency_by_company
        }
        for v in code_part_values:
            values.setdefault(v.Company, {})[(v.CodePart, v.CodePartValue)] = v
        period_lists: dict[str, list[AccountingPeriod]] = {c: [] for c in currency_by_company}
        for p in periods:
            period_lists.setdefault(p.Company, []).append(p)
        rates = list(rates)  # read twice: the unit rates below and the CurrencyBook
        rate_lists: dict[str, dict[str, dict[date, Decimal]]] = {}
        for r in rates:
            rate_lists.setdefault(r.Company, {}).setdefault(r.CurrencyCode, {})[r.ValidFrom] = (
                r.unit_rate
            )
        books = CurrencyBook.build(rates)
        companies: dict[str, CompanyReference] = {}
        for company, currency in currency_by_company.items():
            ordinary = _ordinary_periods(period_lists.get(company, []))
            company_rates = {
                code: (tuple(sorted(by_day)), tuple(by_day[d] for d in sorted(by_day)))
                for code, by_day in rate_lists.get(company, {}).items()
            }
            companies[company] = CompanyReference(
                company=company,
                currency=currency,
                code_parts=values.get(company, {}),
                periods=tuple(ordinary),
                period_starts=tuple(p.DateFrom for p in ordinary),
                next_open=_next_open_indexes(ordinary),
                rates=company_rates,
                book=books.get(company, CurrencyBook()),
            )
        return cls(companies)


# ---------------------------------------------------------------- the result


@dataclass(frozen=True)
class ValidatedReport:
    report_id: str
    mapped: MappedReport | None
    holds: list[Hold]
    company_currency: str | None = None
    voucher_date: date | None = None
    period: AccountingPeriod | None = None
    rate: Decimal | None = None
    # How amounts convert and round (console.currency); None where `rate` is.
    currency_rule: CurrencyRule | None = None
    # Set when a closed period moved the voucher (closed_period = "next-open").
    moved_from: date | None = None
    moved_to: date | None = None
    moved_from_period: str = ""
    report_name: str = ""
    employee: str = ""
    # Accounts IFS demands a quantity on: their expense rows post the line's units.
    quantity_accounts: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        return not self.holds

    @property
    def primary_hold(self) -> Hold | None:
        return self.holds[0] if self.holds else None


def validate_malformed(malformed: MalformedReport) -> ValidatedReport:
    """A report the client could not read at all: held as ``malformed:{what}``."""
    what = malformed.what or "unreadable"
    code = what if what.startswith("malformed:") else f"malformed:{what}"
    return ValidatedReport(
        report_id=malformed.reportID,
        mapped=None,
        holds=[
            Hold(
                code,
                f"Report {malformed.reportID or '(no ID)'} could not be read from the Expensify "
                f"export ({what}); correct it in Expensify, then it is read again next cycle.",
            )
        ],
    )


# ---------------------------------------------------------------- checks


def _is_currency_code(code: str) -> bool:
    return len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()


def _parse_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _malformed(mapped: MappedReport) -> list[Hold]:
    report = mapped.report
    rid = report.reportID
    holds: list[Hold] = []

    def add(what: str, sentence: str, tx_id: str = "") -> None:
        holds.append(Hold(f"malformed:{what}", f"Report {rid or '(no ID)'}: {sentence}", tx_id))

    if not rid:
        add("report-id-missing", "the export has no report ID; it cannot be traced in IFS.")
    elif not fits(rid):
        add(
            "report-id-too-long",
            f"its ID has {len(rid)} characters; IFS's ReferenceNumber holds"
            f" {REFERENCE_MAX}, which leaves {max_report_id_length()} for a report ID"
            " (the reference is never cut: a cut one would name another report).",
        )
    if not report.transactions:
        add("empty-report", "it has no expense lines; there is nothing to post.")
    currency = mapped.currency
    if not currency:
        add("currency-missing", "the export does not say the report's currency.")
    elif not _is_currency_code(currency):
        add("currency", f"'{currency}' is not an ISO currency code.")
    if not report.approved:
        add("approved-date-missing", "the export has no approval date, which is the voucher date.")
    elif _parse_day(report.approved) is None:
        add("approved-date", f"the approval date '{report.approved}' is not a date.")

    seen: set[str] = set()
    for tx in report.transactions:
        tid = tx.transactionID
        if not tid:
            add("transaction-id-missing", "an expense line has no transaction ID.")
        elif tid in seen:
            add(
                "duplicate-transaction-id",
                f"the transaction ID {tid} appears twice; each line must be posted once.",
                tid,
            )
        elif len(tid) > TEXT_MAX:
            add("transaction-id-too-long", f"transaction ID {tid[:20]}… does not fit a row.", tid)
        seen.add(tid)
        amount = tx.posted_amount
        if not isinstance(amount, int) or isinstance(amount, bool):
            add("amount-not-integer", f"line {tid} has amount {amount!r}, not whole cents.", tid)
        elif abs(amount) > MAX_AMOUNT_MINOR:
            add(
                "amount-out-of-range",
                f"line {tid} has amount {amount} cents, beyond what IFS can hold.",
                tid,
            )
        elif (
            tx.convertedAmount is None
            and tx.currency
            and currency
            and tx.currency != currency
            and amount != 0
        ):
            add(
                "unconverted-amount",
                f"line {tid} is in {tx.currency} but has no amount converted to the report "
                f"currency {currency}; posting it as {currency} would be wrong.",
                tid,
            )
    return holds


def _line_where(report_id: str, line: MappedLine) -> str:
    merchant = line.transaction.display_merchant
    return f"Report {report_id}, line {line.transaction_id}" + (
        f" ({merchant})" if merchant else ""
    )


def _dimension_name(code_part: str, mapped: MappedReport) -> str:
    if code_part == "A":
        return "Account"
    return mapped.level_by_code_part.get(code_part, "Code part value")


def _check_dimension(
    code_part: str,
    value: str,
    day: date,
    ref: CompanyReference,
    where: str,
    name: str,
    fix: str,
    tx_id: str,
) -> Hold | None:
    found = ref.code_part_value(code_part, value)
    if found is None:
        return Hold(
            f"missing-dimension:{code_part}:{value}",
            f"{where}: {name} {value} (code part {code_part}) does not exist in IFS company "
            f"{ref.company}; create it in IFS or {fix}.",
            tx_id,
        )
    if not found.valid_on(day):
        return Hold(
            f"invalid-dimension:{code_part}:{value}",
            f"{where}: {name} {value} (code part {code_part}) is valid in IFS company "
            f"{ref.company} only from {found.ValidFrom} to {found.ValidUntil}, not on the "
            f"voucher date {day}; extend its validity in IFS or {fix}.",
            tx_id,
        )
    return None


def _demand_holds(
    company: CompanyReference,
    account: str,
    given: set[str],
    where: str,
    tid: str,
    holds: list[Hold],
    tax_code: str = "",
    quantity_by_line: bool = False,
) -> set[str]:
    """Holds for what IFS demands of `account`'s rows (AccountsHandling's ReqCodeB…J,
    ReqQuantity), given the code parts a row carries. Returns {account} once checked.
    `quantity_by_line`: an expense line's quantity is checked per line (its units)."""
    found = company.code_part_value("A", account)
    if found is None:
        return set()
    for letter, demand in sorted(found.demands.items()):
        if demand == "Mandatory" and letter not in given:
            holds.append(
                Hold(
                    f"code-part-demand:{account}:{letter}:mandatory",
                    f"{where}: IFS company {company.company} requires code part {letter} on "
                    f"account {account}, and this row has none; map a tag to code part "
                    f"{letter} or change the account's code part demands in IFS.",
                    tid,
                )
            )
        elif demand == "Blocked" and letter in given:
            holds.append(
                Hold(
                    f"code-part-demand:{account}:{letter}:blocked",
                    f"{where}: IFS company {company.company} blocks code part {letter} on "
                    f"account {account}, and this row carries one; remove that tag mapping "
                    "for this account or change the account's code part demands in IFS.",
                    tid,
                )
            )
    if found.ReqQuantity == "Mandatory" and not quantity_by_line:
        holds.append(
            Hold(
                f"account-demand:{account}:quantity",
                f"{where}: IFS company {company.company} requires a quantity on account "
                f"{account}, which an expense does not carry; post it to another account.",
                tid,
            )
        )
    holds.extend(
        Hold(*h) for h in tax.demand_holds(company.company, found, account, tax_code, where, tid)
    )
    # A text demand (ReqText) is always met: every row the console posts carries a Text.
    return {account}


def _unique(holds: Iterable[Hold]) -> list[Hold]:
    seen: set[str] = set()
    out = []
    for h in holds:
        if h.code not in seen:
            seen.add(h.code)
            out.append(h)
    return out


def validate(
    mapped: MappedReport,
    ref: IfsReference,
    posting: PostingRules,
    *,
    today: date | None = None,
) -> ValidatedReport:
    """Check one mapped report against the IFS snapshot; every problem becomes a hold.
    `today`: the console's day, which dates the voucher under voucher_date = "exported"."""
    report = mapped.report
    rid = report.reportID
    holds = _malformed(mapped)
    holds.extend(mapped.problems)

    company = ref.company(mapped.company) if mapped.company else None
    if mapped.company and company is None:
        holds.append(
            Hold(
                f"unknown-policy:{report.policyID}",
                f"Report {rid}: policy {report.policyID} is mapped to IFS company "
                f"{mapped.company}, which was not found in IFS; fix company_by_policy.",
            )
        )
    approved = _parse_day(report.approved) if report.approved else None
    if company is None or approved is None:
        return ValidatedReport(
            report_id=rid,
            mapped=mapped,
            holds=_unique(holds),
            report_name=report.reportName,
            employee=report.accountEmail,
        )

    # Voucher date and period.
    day = coding.voucher_day(posting, approved, today)
    moved_from: date | None = None
    moved_from_period = ""
    period = company.period_on(day)
    if period is None:
        holds.append(
            Hold(
                f"closed-period:{day.year}-{day.month:02d}",
                f"Report {rid}: IFS company {company.company} has no accounting period for the "
                f"approval date {day}; open one in IFS.",
            )
        )
    elif not period.is_open:
        target = company.next_open_period(day) if posting.closed_period == NEXT_OPEN else None
        if target is None:
            hint = (
                "and there is no later open period"
                if posting.closed_period == NEXT_OPEN
                else 'reopen it in IFS, or set closed_period = "next-open" to post such '
                "reports into the next open period"
            )
            holds.append(
                Hold(
                    f"closed-period:{period.label}",
                    f"Report {rid}: approved on {day}, in IFS period {period.label} of company "
                    f"{company.company}, which is {period.PeriodStatus.lower()}; {hint}.",
                )
            )
        else:
            moved_from, moved_from_period = day, period.label
            day, period = target.DateFrom, target

    # Dimensions, each (code part, value) checked once per report.
    checked: set[tuple[str, str]] = set()
    groups: set[bool] = set()
    for line in mapped.lines:
        if line.amount_minor == 0:
            continue
        groups.add(line.reimbursable)
        where = _line_where(rid, line)
        tid = line.transaction_id
        if line.account and ("A", line.account) not in checked:
            checked.add(("A", line.account))
            h = _check_dimension(
                "A",
                line.account,
                day,
                company,
                where,
                "Account",
                f"remap the category '{line.transaction.category}'",
                tid,
            )
            if h:
                holds.append(h)
        for letter, value in line.code_parts.items():
            if (letter, value) in checked:
                continue
            checked.add((letter, value))
            kind, source = line.code_part_sources.get(letter, ("", value))
            h = _check_dimension(
                letter,
                value,
                day,
                company,
                where,
                _dimension_name(letter, mapped),
                f"remap the value '{source}' of the {code_sources.describe(kind)}"
                if kind and not kind.startswith("tag:")
                else f"remap the tag '{source}'",
                tid,
            )
            if h:
                holds.append(h)
    credit_groups = coding.credit_groups(mapped, posting)  # a clearing account per card
    for reimbursable, account in credit_groups:
        key, label = (
            ("accrued_expenses_account", "accrued-expenses")
            if reimbursable
            else ("card_clearing_account", "card clearing")
        )
        if account != getattr(posting, key):
            key = "card_clearing_account_by_card"
        if ("A", account) not in checked:
            checked.add(("A", account))
            h = _check_dimension(
                "A",
                account,
                day,
                company,
                f"Report {rid}",
                f"The {label} account",
                f"fix {key} in the posting config",
                "",
            )
            if h:
                holds.append(h)

    # The employee on the accrued-expenses row (console/coding.py): an ID there is, and, in
    # a code part, one IFS knows.
    employee = coding.liability(mapped, posting) if True in groups else None
    employee_parts: set[str] = set()
    if employee is not None:
        holds.extend(employee.holds)
        for letter, value in employee.code_parts():
            employee_parts.add(letter)
            h = _check_dimension(
                letter,
                value,
                day,
                company,
                f"Report {rid}",
                f"The employee ID of {report.accountEmail or 'the employee'}",
                f"correct {employee.field} in Expensify",
                "",
            )
            if h:
                holds.append(h)

    # IFS's demands per account: a code part it makes mandatory must be given, one it
    # blocks must not be, and a quantity it requires cannot come from Expensify.
    demanded: set[str] = set()
    quantity_accounts: set[str] = set()
    for line in mapped.lines:
        if line.amount_minor == 0 or not line.account:
            continue
        demanded.update(
            _demand_holds(
                company,
                line.account,
                set(line.code_parts),
                _line_where(rid, line),
                line.transaction_id,
                holds,
                line.tax.code if line.tax else "",
                quantity_by_line=True,
            )
        )
        # A quantity the account demands: the line's units (console/line_coding.py).
        found = company.code_part_value("A", line.account)
        if found is not None and found.ReqQuantity == "Mandatory":
            quantity_accounts.add(line.account)
            if line_coding.quantity_of(line.transaction) is None:
                holds.append(
                    Hold(
                        f"account-demand:{line.account}:quantity",
                        f"{_line_where(rid, line)}: IFS company {company.company} requires a"
                        f" quantity on account {line.account}, and this expense has no units"
                        " (only distance and per-diem expenses carry them); post it to another"
                        " account, or record it as a distance or per-diem expense.",
                        line.transaction_id,
                    )
                )
    for reimbursable, account in credit_groups:
        if account not in demanded:
            given = employee_parts if reimbursable else set()
            demanded.update(_demand_holds(company, account, given, f"Report {rid}", "", holds))

    # Currency rate: never a silent 1:1.
    currency = mapped.currency
    rate: Decimal | None = Decimal(1)
    if _is_currency_code(currency) and currency != company.currency:
        rate = company.rate_on(currency, day)
        if rate is None or rate <= 0:
            holds.append(
                Hold(
                    f"missing-rate:{currency}:{day.isoformat()}",
                    f"Report {rid} is in {currency} but IFS company {company.company} books "
                    f"{company.currency}, and IFS has no {currency} rate valid on {day}; "
                    f"enter one in IFS.",
                )
            )
            rate = None
    # Totals bound every row of the voucher, in both currencies.
    total_abs = sum(
        abs(line.amount_minor) for line in mapped.lines if isinstance(line.amount_minor, int)
    )
    if total_abs > MAX_AMOUNT_MINOR or (
        rate is not None and Decimal(total_abs) * rate > MAX_AMOUNT_MINOR
    ):
        holds.append(
            Hold(
                "malformed:amount-out-of-range",
                f"Report {rid}: its total ({total_abs} cents at rate {rate}) is beyond what "
                f"IFS can hold.",
            )
        )

    return ValidatedReport(
        report_id=rid,
        mapped=mapped,
        holds=_unique(holds),
        company_currency=company.currency,
        voucher_date=day,
        period=period,
        rate=rate,
        currency_rule=(
            company.book.rule_on(currency, company.currency, day) if rate is not None else None
        ),
        moved_from=moved_from,
        moved_to=day if moved_from else None,
        moved_from_period=moved_from_period,
        report_name=report.reportName,
        employee=report.accountEmail,
        quantity_accounts=frozenset(quantity_accounts),
    )


def validate_all(
    mapped_reports: Iterable[MappedReport],
    ref: IfsReference,
    posting: PostingRules,
    malformed: Iterable[MalformedReport] = (),
) -> list[ValidatedReport]:
    out = [validate(m, ref, posting) for m in mapped_reports]
    out.extend(validate_malformed(m) for m in malformed)
    return out
