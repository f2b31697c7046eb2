"""Property: under ANY of IFS's currency rules, the voucher balances exactly in both currencies,
each to its own number of decimals.

A rule is a rate quoted per 1, 100 or 1000 units (ConvFactor), plain or inverted (the
company's accounting currency marked Inverted), with 0, 2 or 3 decimals in the report's
currency and in the accounting currency. Amounts are Expensify's hundredths (docs/currency.md).
The expected amounts are computed here independently, with exact fractions.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from console.currency import CurrencyRule
from console.ifs.models import CurrencyRate
from console.mapping import map_report
from console.plan import PlannedVoucher, plan_voucher
from console.validate import MAX_AMOUNT_MINOR, ValidatedReport, validate

from .engine_world import POLICIES, Posting, line, period, reference, report
from .test_tax import TaxPosting

ZERO = Decimal(0)
POSTING = Posting()
PERIOD = period(2026, 11)

amounts = st.one_of(
    st.integers(-300, 300),  # fractions of a yen, a few cents: where rounding shows
    st.integers(-(10**7), 10**7),
    st.just(0),
)
lines_st = st.lists(st.tuples(amounts, st.booleans()), min_size=1, max_size=20)
rates = st.one_of(
    st.sampled_from([Decimal(x) for x in ("0.6650", "1.2710", "3.2573", "0.3", "150.25")]),
    st.integers(1, 10**9).map(lambda n: Decimal(n).scaleb(-6).normalize()),
)
rules = st.builds(
    CurrencyRule,
    currency=st.just("JPY"),
    accounting_currency=st.just("USD"),
    rate=rates,
    conv_factor=st.sampled_from([Decimal(1), Decimal(100), Decimal(1000)]),
    inverted=st.booleans(),
    decimals=st.sampled_from([0, 2, 3]),
    accounting_decimals=st.sampled_from([0, 2, 3]),
)


def _round(value: Fraction, decimals: int) -> Fraction:
    """Half away from zero, as Oracle's ROUND."""
    scaled = abs(value) * 10**decimals
    whole = int(scaled)
    if scaled - whole >= Fraction(1, 2):
        whole += 1
    return Fraction(whole if value >= 0 else -whole, 10**decimals)


def expected_row(amount_minor: int, rule: CurrencyRule) -> tuple[Fraction, Fraction]:
    """(currency, accounting) of a line by IFS's Calc_Amount, in exact arithmetic."""
    cur = _round(Fraction(amount_minor, 100), rule.decimals)
    rate, factor = Fraction(rule.rate), Fraction(rule.conv_factor)
    acc = cur * factor / rate if rule.inverted else cur * rate / factor
    return cur, _round(acc, rule.accounting_decimals)


def plan(spec: list[tuple[int, bool]], rule: CurrencyRule) -> PlannedVoucher:
    lines = [
        line(f"T{i:03d}", amount, reimbursable=reimb, currency="JPY")
        for i, (amount, reimb) in enumerate(spec)
    ]
    return plan_jpy(lines, rule)


def plan_jpy(lines: list[dict], rule: CurrencyRule, posting: Posting = POSTING) -> PlannedVoucher:
    """The voucher of a JPY report into company 10 (USD) under `rule`, validated as IFS's."""
    rep = report(lines, currency="JPY")
    mapped = map_report(rep, POLICIES, posting)
    assert not mapped.problems, mapped.problems
    validated = ValidatedReport(
        report_id=rep.reportID,
        mapped=mapped,
        holds=[],
        company_currency="USD",
        voucher_date=date(2026, 11, 3),
        period=PERIOD,
        rate=rule.unit_rate,
        currency_rule=rule,
    )
    return plan_voucher(validated, posting)


def _has_decimals(value: Decimal | None, decimals: int) -> bool:
    return value is None or value == value.quantize(Decimal(1).scaleb(-decimals))


def check(v: PlannedVoucher, spec: list[tuple[int, bool]], rule: CurrencyRule) -> None:
    cd, cc, d, c = v.totals()
    assert cd == cc and d == c  # balanced exactly in both currencies

    for row in v.rows:
        assert row.currency_rate == rule.rate  # the rate as IFS quotes it
        assert _has_decimals(row.currency_debit, rule.decimals)
        assert _has_decimals(row.currency_credit, rule.decimals)
        assert _has_decimals(row.debit, rule.accounting_decimals)
        assert _has_decimals(row.credit, rule.accounting_decimals)
        assert all(
            a is None or a >= 0
            for a in (row.currency_debit, row.currency_credit, row.debit, row.credit)
        )
        assert row.currency_net != 0 or row.net != 0  # never an empty row

    # Each expense row is IFS's own conversion of its line; a line that rounds to nothing
    # in the currency is skipped and says so.
    by_tid = {r.source.transaction_id: r for r in v.rows if r.source.kind == "line"}
    skipped = {s.transaction_id: s.reason for s in v.skipped_lines}
    for i, (amount, _reimb) in enumerate(spec):
        tid = f"T{i:03d}"
        cur, acc = expected_row(amount, rule)
        if amount == 0 or cur == 0:
            assert tid in skipped and tid not in by_tid
            continue
        row = by_tid[tid]
        assert Fraction(row.currency_net) == cur and Fraction(row.net) == acc

    # The balancing rows carry the rounding: each group's credit is the sum of its rows.
    reimb_of = {f"T{i:03d}": reimb for i, (_a, reimb) in enumerate(spec)}
    for group, account in ((True, "2930"), (False, "2940")):
        rows = [r for tid, r in by_tid.items() if reimb_of[tid] is group]
        credit = [r for r in v.rows if r.source.kind == "credit" and r.account == account]
        assert sum((r.net for r in credit), ZERO) == -sum((r.net for r in rows), ZERO)
        assert sum((r.currency_net for r in credit), ZERO) == -sum(
            (r.currency_net for r in rows), ZERO
        )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=lines_st, rule=rules)
# JPY per 100 at 0.6650 USD: ¥1,500 is 9.975 USD, a half cent, rounded away from zero.
@example(
    spec=[(150000, True), (-150000, True), (150000, False)],
    rule=CurrencyRule("JPY", "USD", Decimal("0.6650"), Decimal(100), decimals=0),
)
# A fraction of a yen (Expensify's hundredths) rounds to nothing and is skipped.
@example(spec=[(40, True), (250, True)], rule=CurrencyRule("JPY", "USD", Decimal(1), decimals=0))
def test_any_rule_plans_a_voucher_balanced_to_each_currencys_decimals(spec, rule):
    check(plan(spec, rule), spec, rule)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=lines_st,
    rate=rates,
    factor=st.sampled_from([Decimal(1), Decimal(100), Decimal(1000)]),
    inverted=st.booleans(),
    decimals=st.sampled_from([0, 2, 3]),
    accounting_decimals=st.sampled_from([0, 2, 3]),
)
def test_the_rule_read_from_ifs_is_the_one_planned(
    spec, rate, factor, inverted, decimals, accounting_decimals
):
    """Through validate: IFS's CurrencyRate row (with both currencies' CurrencyRounding from
    the CurrencyCodeRef references) becomes the rule the voucher is planned with."""
    ifs_rate = CurrencyRate(
        Company="10",
        CurrencyCode="JPY",
        ValidFrom=date(2026, 1, 1),
        CurrencyRate=rate,
        ConvFactor=factor,
        Inverted=inverted,
        RefCurrencyCode="USD",
        CurrencyRounding=decimals,
        RefCurrencyRounding=accounting_decimals,
    )
    lines = [
        line(f"T{i:03d}", amount, reimbursable=reimb, currency="JPY")
        for i, (amount, reimb) in enumerate(spec)
    ]
    rep = report(lines, currency="JPY")
    validated = validate(map_report(rep, POLICIES, POSTING), reference(rates=[ifs_rate]), POSTING)
    unit_rate = factor / rate if inverted else rate / factor
    if sum(abs(a) for a, _ in spec) * unit_rate > MAX_AMOUNT_MINOR:
        # Beyond what IFS can hold in the accounting currency: held, never planned.
        assert [h.code for h in validated.holds] == ["malformed:amount-out-of-range"]
        return
    assert validated.ok, validated.holds
    rule = validated.currency_rule
    assert rule == CurrencyRule("JPY", "USD", rate, factor, inverted, decimals, accounting_decimals)
    check(plan_voucher(validated, POSTING), spec, rule)


# ---------------------------------------------------------------- tax under any currency rule

taxed_lines = st.lists(
    st.tuples(
        st.one_of(st.integers(-300, 300), st.integers(-(10**7), 10**7)).filter(bool),  # gross
        st.integers(0, 99),  # tax as a share of the gross, percent
        st.sampled_from(["VAT20", "VAT10", "VAT0", ""]),  # VAT10 (R10) is non-recoverable
        st.booleans(),  # reimbursable
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=taxed_lines, rule=rules)
@example(spec=[(50, 50, "VAT20", True), (50, 50, "VAT20", True)], rule=CurrencyRule(
    "JPY", "USD", Decimal("0.6650"), Decimal(100), False, 0, 2))  # fmt: skip
def test_any_taxed_report_under_any_rule_balances_and_net_plus_tax_is_gross(spec, rule):
    """Expense + tax = gross per line in the report currency to its decimals, and the voucher
    (IFS's tax rows included) balances exactly in both currencies."""
    lines = []
    for i, (gross, share, code, reimb) in enumerate(spec):
        tax = (abs(gross) * share // 100) * (1 if gross > 0 else -1)
        lines.append(
            line(
                f"T{i:03d}",
                gross,
                reimbursable=reimb,
                currency="JPY",
                taxAmount=tax,
                taxCode=code,
                taxName="VAT",
            )
        )
    v = plan_jpy(lines, rule, TaxPosting(default_tax_code="E0"))
    cd, cc, d, c = v.totals()
    assert cd == cc and d == c
    for row in v.rows:
        for amount in (row.currency_debit, row.currency_credit):
            assert _has_decimals(amount, rule.decimals) and (amount is None or amount >= 0)
        for amount in (row.debit, row.credit):
            assert _has_decimals(amount, rule.accounting_decimals)
            assert amount is None or amount >= 0
    for i, (gross, _share, _code, _reimb) in enumerate(spec):
        mine = [r for r in v.rows if r.source.transaction_id == f"T{i:03d}"]
        if not mine:  # a fraction of a yen: skipped, said in the plan
            assert Fraction(expected_row(gross, rule)[0]) == 0
            continue
        posted = sum((r.currency_net for r in mine), ZERO)
        assert Fraction(posted) == expected_row(gross, rule)[0], (gross, posted)
