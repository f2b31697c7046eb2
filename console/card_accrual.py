"""Card spend not yet reported: its accrual at close, and the accrual's reversal.

`ml-console close --period P --accrue-card-spend` builds, per company, ONE balanced voucher of
the period's accruable card spend (the close's "card spend not yet reported" section,
console/close.py): a row per expense account, code parts and card currency (a refund-heavy
group credits its account), and one row per card currency on `posting.card_clearing_account`
that offsets them in both currencies. Accounting amounts are the section's, each expense
converted at IFS's rate on the period's last day and rounded half-up to the cent, so the
voucher's total is the section's total to the cent. Dated the period's last day, voucher type
as report vouchers; `ReferenceNumber` `CARD:{period}:{company}` (no version: a period is
accrued once per company). Without `--confirm` it is shown and nothing is posted.

A closed period is refused, not moved as `closed_period = "next-open"` moves a report: an
accrual dated in the next period would be reversed a period late, leaving that period
carrying the spend twice over.

Spend that changes after the accrual was posted is never re-accrued: the command says how far
the posted accrual is from the current figure and leaves it (a top-up voucher is out of scope).

The reversal, `CARD-REV:{period}:{company}`, mirrors the accrual as IFS holds it (read back,
every row's sides swapped, console.reversal.mirror), dated the first day of the next period,
posted when `close --accrue-card-spend --confirm` or `close --reverse-card-spend --confirm` runs
on or after that day (`Engine.today`: the as-of date when one is set), never before. Where that
day's period is closed it moves to the first day of the next open period (an accrual must be
reversed; the move is shown).

Exactly once, as report vouchers (design.md §4): the intent is committed in the store before
the POST; IFS is looked up by reference before the first POST (another installation, or a
restored state file, may have posted it) and after an unknown outcome; an intent a crash left
without outcome is looked up before anything else is posted. All under the posting lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from console import reference
from console.audit import AuditLog
from console.close import (
    ACCRUAL_IN_DOUBT,
    ACCRUAL_NONE,
    ACCRUAL_POSTED,
    ACCRUAL_REVERSED,
    CardAccrualState,
    CardSpendLine,
    CardSpendSection,
    ClosePeriod,
)
from console.ifs.models import Voucher, VoucherRow
from console.ledger import Intent, Ledger, VoucherSender, voucher_label
from console.money import fmt_decimal, row_sides
from console.plan import RowVoucher, UnbalancedVoucher, row_pieces, trim_text
from console.reference import REFERENCE_MAX
from console.reversal import mirror, next_period_start
from console.store import LedgerEntry, Store

if TYPE_CHECKING:
    from console.config import PostingConfig
    from console.validate import CompanyReference, IfsReference

ZERO = Decimal("0.00")
KIND_ACCRUAL = "accrual"
KIND_REVERSAL = "reversal"
PREFIX = "CARD"  # both references start so: one IFS read per company finds them

# Audit event types per kind: (intent committed, posted, failed).
LEDGER_KINDS = ("card-accrual", "card-reversal")

# Outcomes of one voucher in a run.
POSTED = "posted"
ALREADY = "already-posted"
RECONCILED = "reconciled"  # the answer was lost; IFS holds it: recorded, not posted again
UNKNOWN = "unknown"
FAILED = "failed"


def accrual_reference(period: str, company: str) -> str:
    return reference.Reference("card-accrual", period=period, company=company).encode()


def reversal_reference(period: str, company: str) -> str:
    return reference.Reference("card-reversal", period=period, company=company).encode()


# ---------------------------------------------------------------- the voucher


@dataclass(frozen=True)
class CardVoucher(RowVoucher):
    """An accrual of a period's unreported card spend in one company, or its reversal."""

    kind: str  # KIND_ACCRUAL or KIND_REVERSAL
    period: str  # the accrued period, YYYY-MM
    currency: str  # the company's accounting currency
    amount: Decimal  # what the accrual's expense rows debit, net (accounting currency)
    transaction_ids: tuple[str, ...] = ()  # the card expenses accrued (accrual only)
    accrual_reference: str = ""  # reversal only
    accrual_voucher: str = ""
    moved_from: date | None = None  # reversal due in a closed period: moved from this day

    def balance_problem(self) -> str:
        """ "" when debits equal credits in the accounting currency and in each row currency
        and no amount is negative; else what is wrong."""
        d, c = self.totals()
        if d != c:
            return f"accounting debit {d} != credit {c}"
        by_currency: dict[str, Decimal] = {}
        for r in self.rows:
            for v in (r.CurrencyDebetAmount, r.CurrencyCreditAmount, r.DebetAmount, r.CreditAmount):
                if v is not None and v < 0:
                    return f"row {r.RowNo} has a negative amount"
            net = (r.CurrencyDebetAmount or ZERO) - (r.CurrencyCreditAmount or ZERO)
            by_currency[r.CurrencyCode] = by_currency.get(r.CurrencyCode, ZERO) + net
        off = {cur: net for cur, net in by_currency.items() if net}
        return f"currency amounts do not balance: {off}" if off else ""

    def render_lines(self) -> list[str]:
        sign = "+" if self.kind == KIND_ACCRUAL else "~"
        head = f"{sign} {self.kind} {self.reference}"
        if self.kind == KIND_ACCRUAL:
            head += f" ({len(self.transaction_ids)} card expense(s))"
        else:
            head += f" of {self.accrual_reference} ({self.accrual_voucher or 'voucher'})"
        out = self.render_head(head, self.moved_from)
        out.append(
            f"  {'#':>3} {'account':<10} {'code parts':<24} {'cur':<4} {'rate':>10} "
            f"{'cur debit':>14} {'cur credit':>14} {'debit':>14} {'credit':>14}  text"
        )
        for r in self.rows:
            parts = " ".join(f"{k[-1]}={v}" for k, v in _code_parts(r)) or "-"
            out.append(
                f"  {r.RowNo or '':>3} {r.Account:<10} {parts:<24} {r.CurrencyCode:<4} "
                f"{format(r.CurrencyRate, 'f'):>10} {fmt_decimal(r.CurrencyDebetAmount):>14} "
                f"{fmt_decimal(r.CurrencyCreditAmount):>14} {fmt_decimal(r.DebetAmount):>14} "
                f"{fmt_decimal(r.CreditAmount):>14}  {r.Text}"
            )
        d, c = self.totals()
        out.append(
            f"  {'':>3} {'balance':<10} {'':<24} {'':<4} {'':>10} {'':>14} {'':>14} "
            f"{fmt_decimal(d):>14} {fmt_decimal(c):>14}  {self.currency}"
        )
        return out

    def to_json(self) -> dict[str, Any]:
        d, c = self.totals()
        return {
            "kind": self.kind,
            "period": self.period,
            "company": self.company,
            "referenceNumber": self.reference,
            "voucherDate": self.voucher_date.isoformat(),
            "accountingPeriod": self.period_label,
            "currency": self.currency,
            "amount": format(self.amount, "f"),
            "debit": format(d, "f"),
            "credit": format(c, "f"),
            "transactionIDs": list(self.transaction_ids),
            "accrualReference": self.accrual_reference or None,
            "movedFrom": self.moved_from.isoformat() if self.moved_from else None,
            "body": _plain(self.to_ifs_body()),
        }


def _code_parts(row: VoucherRow) -> list[tuple[str, str]]:
    names = ("CodeB", "CodeC", "CodeD", "CodeE", "CodeF", "CodeG", "CodeH", "CodeI", "CodeJ")
    return [(n, v) for n in names if (v := getattr(row, n))]


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------- planning the accrual


def _row(
    row_no: int,
    account: str,
    code_parts: Iterable[tuple[str, str]],
    currency: str,
    rate: Decimal,
    cur: Decimal,
    acc: Decimal,
    text: str,
) -> VoucherRow:
    cur_debit, cur_credit, debit, credit = row_sides(cur, acc)
    return VoucherRow(
        RowNo=row_no,
        Account=account,
        **{f"Code{letter}": value for letter, value in code_parts},
        CurrencyCode=currency,
        CurrencyRate=rate,
        CurrencyDebetAmount=cur_debit,
        CurrencyCreditAmount=cur_credit,
        DebetAmount=debit,
        CreditAmount=credit,
        Text=text,
    )


def accrual_rows(
    lines: Sequence[CardSpendLine], clearing_account: str, period: str
) -> tuple[VoucherRow, ...]:
    """The rows of one company's accrual: per (account, code parts, card currency) the net of
    its expenses, then per card currency the clearing row that offsets them. Pure."""
    groups: dict[tuple[str, tuple[tuple[str, str], ...], str], list[Any]] = {}
    rates: dict[str, Decimal] = {}
    for ln in lines:
        if ln.accounting is None or ln.rate is None:
            raise ValueError(f"card expense {ln.transaction_id} cannot be accrued: {ln.reason}")
        g = groups.setdefault((ln.account, ln.code_parts, ln.currency), [ZERO, ZERO, 0])
        g[0] += ln.amount
        g[1] += ln.accounting
        g[2] += 1
        rates.setdefault(ln.currency, ln.rate)
    rows: list[VoucherRow] = []
    nets: dict[str, tuple[Decimal, Decimal, int]] = {}
    for (account, parts, currency), (cur, acc, n) in sorted(groups.items()):
        text = trim_text(f"Card spend {period} not yet reported: {n} expense(s)")
        for c, a in row_pieces(cur, acc):
            rows.append(_row(len(rows) + 1, account, parts, currency, rates[currency], c, a, text))
        before = nets.get(currency, (ZERO, ZERO, 0))
        nets[currency] = (before[0] + cur, before[1] + acc, before[2] + n)
    for currency, (cur, acc, n) in sorted(nets.items()):
        text = trim_text(f"Card spend {period} not yet reported, {currency}: {n} expense(s)")
        for c, a in row_pieces(-cur, -acc):
            rows.append(
                _row(len(rows) + 1, clearing_account, (), currency, rates[currency], c, a, text)
            )
    return tuple(rows)


@dataclass
class CardPlan:
    vouchers: list[CardVoucher] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (company, why)
    nothing: list[str] = field(default_factory=list)  # companies with nothing to accrue


def _refusal(
    company: str, day: date, period: ClosePeriod, cref: CompanyReference | None, clearing: str
) -> str:
    """Why this company's accrual cannot be posted ("" when it can)."""
    if cref is None:
        return f"company {company} is not in IFS's reference data"
    found = cref.period_on(day)
    if found is None or (found.AccountingYear, found.AccountingPeriod) != (
        period.year,
        period.period,
    ):
        return f"IFS company {company} has no accounting period {period.label} ending {day}"
    if not found.is_open:
        return (
            f"period {period.label} of company {company} is {found.PeriodStatus.lower()} in IFS;"
            f" the accrual is dated {day} and is not moved to a later period (its reversal "
            "would then fall a period late); reopen the period in IFS to accrue"
        )
    value = cref.code_part_value("A", clearing)
    if value is None or not value.valid_on(day):
        return (
            f"the card clearing account {clearing} is not a valid account of IFS company "
            f"{company} on {day}; fix posting.card_clearing_account or IFS"
        )
    ref = accrual_reference(period.label, company)
    if len(reversal_reference(period.label, company)) > REFERENCE_MAX:
        return f"{ref}: the company ID is too long for IFS's {REFERENCE_MAX}-character reference"
    return ""


def plan_card_accruals(
    section: CardSpendSection,
    period: ClosePeriod,
    reference: IfsReference,
    posting: PostingConfig,
) -> CardPlan:
    """One voucher per company with accruable card spend in the section. Pure."""
    plan = CardPlan()
    by_company: dict[str, list[CardSpendLine]] = {}
    for ln in section.accruable:
        by_company.setdefault(ln.company, []).append(ln)
    for company in sorted(section.voucher_dates):
        lines = by_company.get(company, [])
        day = section.voucher_dates[company]
        cref = reference.company(company)
        if not lines:
            plan.nothing.append(company)
            continue
        why = _refusal(company, day, period, cref, posting.card_clearing_account)
        if why or cref is None:
            plan.refused.append((company, why))
            continue
        rows = accrual_rows(lines, posting.card_clearing_account, period.label)
        if not rows:
            plan.nothing.append(company)  # refunds cancel purchases exactly
            continue
        voucher = CardVoucher(
            kind=KIND_ACCRUAL,
            period=period.label,
            company=company,
            voucher_type=posting.voucher_type,
            voucher_date=day,
            accounting_year=period.year,
            accounting_period=period.period,
            reference=accrual_reference(period.label, company),
            text=trim_text(
                f"Accrual of company-card spend not yet reported in Expensify, {period.label} "
                f"({len(lines)} expenses)"
            ),
            currency=cref.currency,
            amount=sum((ln.accounting or ZERO for ln in lines), ZERO),
            rows=rows,
            transaction_ids=tuple(sorted(ln.transaction_id for ln in lines)),
        )
        problem = voucher.balance_problem()
        if problem:  # a bug here, never posted
            raise UnbalancedVoucher(f"{voucher.reference} does not balance: {problem}")
        plan.vouchers.append(voucher)
    return plan


# ---------------------------------------------------------------- planning the reversal


def reversal_due(cref: CompanyReference | None, period: str) -> date | None:
    """The first day of the period after `period` (YYYY-MM) in IFS, or None."""
    if cref is None:
        return None
    p = ClosePeriod.parse(period)
    return next_period_start(cref, p.year, p.period)


def plan_card_reversal(
    accrual: Voucher,
    row: LedgerEntry,
    cref: CompanyReference | None,
    today: date,
) -> CardVoucher | str:
    """The reversal of a posted card accrual (as IFS holds it), or why it waits: "" when it
    is simply not due yet."""
    if cref is None:
        return f"company {row.company} is not in IFS's reference data"
    due = next_period_start(cref, accrual.AccountingYear, accrual.AccountingPeriod)
    if due is None:
        return (
            f"IFS has no period after {accrual.AccountingYear}-{accrual.AccountingPeriod:02d} "
            f"in company {row.company}"
        )
    if today < due:
        return ""
    target = cref.period_on(due)
    day, moved = due, None
    if target is None or not target.is_open:
        target = cref.next_open_period(due)
        if target is None:
            return f"no open period in IFS company {row.company} on or after {due}"
        day, moved = target.DateFrom, due
        if day > today:
            return ""  # moved into a period that has not begun
    return CardVoucher(
        kind=KIND_REVERSAL,
        period=row.period,
        company=row.company,
        voucher_type=accrual.VoucherType,
        voucher_date=day,
        accounting_year=target.AccountingYear,
        accounting_period=target.AccountingPeriod,
        reference=reversal_reference(row.period, row.company),
        text=trim_text(
            f"Reversal of {accrual.ReferenceNumber}: company-card spend not yet reported, "
            f"{row.period}"
        ),
        currency=row.currency,
        amount=Decimal(row.amount),
        rows=mirror(accrual.VoucherRowArray),
        accrual_reference=row.reference,
        accrual_voucher=row.voucher_no or voucher_label(accrual),
        moved_from=moved,
    )


# ---------------------------------------------------------------- posting exactly once


@dataclass(frozen=True)
class CardPostResult:
    voucher: CardVoucher
    outcome: str  # POSTED, ALREADY, RECONCILED, UNKNOWN or FAILED
    label: str = ""
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.voucher.kind,
            "referenceNumber": self.voucher.reference,
            "company": self.voucher.company,
            "outcome": self.outcome,
            "voucher": self.label or None,
            "message": self.message,
        }


def _intent(cv: CardVoucher) -> Intent:
    return Intent(
        kind="card-accrual" if cv.kind == KIND_ACCRUAL else "card-reversal",
        reference=cv.reference,
        company=cv.company,
        body=cv.to_ifs_body(),
        summary=f"posting {cv.reference} to company {cv.company} dated {cv.voucher_date}"
        f" ({len(cv.rows)} rows, {fmt_decimal(cv.amount)} {cv.currency})",
        period=cv.period,
        accrual_reference=cv.accrual_reference or "",
        voucher_date=cv.voucher_date.isoformat(),
        amount=format(cv.amount, "f"),
        currency=cv.currency,
        transaction_ids=tuple(cv.transaction_ids),
        data={"period": cv.period, "company": cv.company},
    )


def post_card_voucher(
    cv: CardVoucher, ifs: VoucherSender, store: Store, audit: AuditLog
) -> CardPostResult:
    """Post one card voucher once, through the posting ledger: never when the store or IFS
    already holds its reference; a lost answer looked up by reference, never retried blind.
    Raises AuthError/Unreachable (recorded as not posted: nothing reached IFS)."""
    ledger = Ledger(store, audit, ifs)
    live = ledger.live(cv.reference)
    if live is not None and live.outcome != "posted":
        ledger.reconcile(kinds=LEDGER_KINDS)
        live = ledger.live(cv.reference)
    if live is not None:
        return CardPostResult(cv, ALREADY, live.voucher_no or "")
    existing = ifs.find_vouchers(cv.reference, cv.company)
    if existing:
        # Posted by another installation, or before this state file was restored: adopt it.
        label = ledger.adopt_existing(_intent(cv), existing)
        return CardPostResult(cv, ALREADY, label, "found in IFS before posting")
    settled = ledger.send(_intent(cv))
    if settled.outcome == "reconciled":
        return CardPostResult(cv, RECONCILED, settled.voucher, settled.message)
    if settled.outcome == "unknown":
        return CardPostResult(
            cv,
            FAILED,
            "",
            f"{settled.message}; IFS does not hold it: not posted, run again to post",
        )
    if settled.outcome == "failed":
        return CardPostResult(cv, FAILED, "", settled.message)
    return CardPostResult(cv, POSTED, settled.voucher)


# ---------------------------------------------------------------- where each accrual stands


def accrual_state(
    company: str,
    currency: str,
    current: Decimal,
    period: ClosePeriod,
    vouchers: Sequence[Voucher],
    store_rows: Sequence[LedgerEntry],
    clearing_account: str,
    due: date | None,
) -> CardAccrualState:
    """One company's accrual of the period, from IFS's CARD vouchers of the company and the
    store's rows for its references. Pure."""
    ref = accrual_reference(period.label, company)
    rref = reversal_reference(period.label, company)
    accruals = [v for v in vouchers if v.ReferenceNumber == ref]
    reversals = [v for v in vouchers if v.ReferenceNumber == rref]
    base = CardAccrualState(
        company=company,
        currency=currency,
        reference=ref,
        state=ACCRUAL_NONE,
        current=current,
        reversal_reference=rref,
    )
    if not accruals:
        doubt = [r for r in store_rows if r.reference == ref and r.outcome in ("intent", "unknown")]
        if doubt:
            return replace(base, state=ACCRUAL_IN_DOUBT)
        posted = [r for r in store_rows if r.reference == ref and r.outcome == "posted"]
        if posted:
            return replace(
                base,
                note=f"recorded as posted as voucher {posted[-1].voucher_no}, but IFS does not"
                " hold it",
            )
        return base
    accrual = accruals[0]
    accrued = sum(
        ((r.CreditAmount or ZERO) - (r.DebetAmount or ZERO))
        for r in accrual.VoucherRowArray
        if r.Account == clearing_account
    )
    notes = []
    if len(accruals) > 1:
        notes.append(f"{len(accruals)} vouchers in IFS carry {ref}")
    if len(reversals) > 1:
        notes.append(f"{len(reversals)} vouchers in IFS carry {rref}")
    state = replace(
        base,
        state=ACCRUAL_REVERSED if reversals else ACCRUAL_POSTED,
        voucher=voucher_label(accrual),
        accrued=Decimal(accrued),
        reversal_voucher=voucher_label(reversals[0]) if reversals else "",
        reversal_date=reversals[0].VoucherDate if reversals else due,
        note="; ".join(notes),
    )
    return state


# ---------------------------------------------------------------- the close command's step


@dataclass
class CardAccrualRun:
    """What `close --accrue-card-spend` / `--reverse-card-spend` planned and did."""

    period: str
    confirmed: bool
    today: date
    accrue: bool
    reverse: bool
    unavailable: str = ""  # why the card spend could not be read (nothing accrued)
    accruals: list[CardVoucher] = field(default_factory=list)  # to post / posted
    refused: list[tuple[str, str]] = field(default_factory=list)
    nothing: list[str] = field(default_factory=list)
    existing: list[CardAccrualState] = field(default_factory=list)  # accrued before this run
    reversals: list[CardVoucher] = field(default_factory=list)  # due: to post / posted
    waiting: list[tuple[str, str]] = field(default_factory=list)  # (reference, why / due)
    results: list[CardPostResult] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        bad = any(r.outcome in (FAILED, UNKNOWN) for r in self.results)
        return bad or bool(self.refused) or bool(self.unavailable)

    @property
    def differing(self) -> list[CardAccrualState]:
        return [s for s in self.existing if s.difference]

    def render_text(self, how_to_post: str = "add --confirm to post") -> str:
        """The plan (or what was posted) as text; `how_to_post` tells a dry run's reader how to
        go on (the console passes its own key)."""
        mode = "posted" if self.confirmed else f"DRY RUN: nothing posted; {how_to_post}"
        out = [f"Card spend accrual, period {self.period} ({mode}; today {self.today})"]
        if self.unavailable:
            out.append(f"  ! card spend could not be read, nothing accrued: {self.unavailable}")
        for company in self.nothing:
            out.append(f"  company {company}: nothing to accrue")
        for company, why in self.refused:
            out.append(f"  ! company {company}: not accrued: {why}")
        for s in self.existing:
            out.append(f"  = company {s.company}: {s.reference} {s.describe()}")
            if s.difference:
                out.append(
                    f"    the posted accrual is {fmt_decimal(s.accrued)} {s.currency}, the current "
                    f"figure {fmt_decimal(s.current)} {s.currency}: it differs by "
                    f"{s.difference:+,.2f} {s.currency} and is left as posted (no top-up voucher"
                    " is made; book the difference by hand if it matters)"
                )
        results = {r.voucher.reference: r for r in self.results}
        for cv in self.accruals + self.reversals:
            out.append("")
            out.extend(cv.render_lines())
            if cv.kind == KIND_ACCRUAL:
                out.append(
                    f"  reversed as {reversal_reference(cv.period, cv.company)} on the next "
                    "period's first day"
                )
            r = results.get(cv.reference)
            if r is not None:
                out.append(f"  => {_describe_result(r)}")
        for ref, why in self.waiting:
            out.append(f"  reversal {ref} waits: {why}")
        return "\n".join(out) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "confirmed": self.confirmed,
            "today": self.today.isoformat(),
            "unavailable": self.unavailable or None,
            "accruals": [cv.to_json() for cv in self.accruals],
            "reversals": [cv.to_json() for cv in self.reversals],
            "refused": [{"company": c, "reason": why} for c, why in self.refused],
            "nothingToAccrue": list(self.nothing),
            "alreadyAccrued": [s.to_json() for s in self.existing],
            "waiting": [{"reference": ref, "reason": why} for ref, why in self.waiting],
            "results": [r.to_json() for r in self.results],
        }


def _describe_result(r: CardPostResult) -> str:
    if r.outcome == POSTED:
        return f"posted as voucher {r.label}"
    if r.outcome == ALREADY:
        return f"already in IFS as voucher {r.label}: not posted again"
    if r.outcome == RECONCILED:
        return f"the answer was lost; found in IFS as voucher {r.label}: recorded, not reposted"
    return f"{r.outcome.upper()}: {r.message}"


# ---------------------------------------------------------------- the sync cycle's step
