"""Property: for ANY report, the planned voucher balances exactly in both currencies.

Random lines (positive, negative, zero and huge cents), mixed reimbursable and card lines, the
company's own currency or a foreign one at a random rate 0.0001–10000 with up to 6 decimals.

Decision on line order: the export does not promise one, so a reordered report is the SAME
content; the planner sorts rows canonically, and the voucher (body and version) is identical
under any permutation of the lines. Tested below.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from console.mapping import map_report
from console.plan import PlannedVoucher, plan_voucher
from console.validate import MAX_AMOUNT_MINOR, ValidatedReport, validate

from .engine_world import POLICIES, Posting, line, period, rate, reference, report

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
POSTING = Posting()
PERIOD = period(2026, 11)

amounts = st.one_of(
    st.integers(-20, 20),  # a few cents: where per-row rounding differences show
    st.integers(-10_000, 10_000),
    st.just(0),
    st.integers(-(10**13), 10**13),  # huge: beyond any expense, still exact
)
lines_st = st.one_of(
    st.lists(st.tuples(amounts, st.booleans()), min_size=1, max_size=25),
    # Only a few cents per line: rounding per row can then leave the two currencies' nets
    # apart, even of opposite signs.
    st.lists(st.tuples(st.integers(-12, 12), st.booleans()), min_size=2, max_size=12),
)
rates = st.one_of(
    st.sampled_from([Decimal(x) for x in ("0.5", "1.5", "0.25", "0.3333", "1.005", "2.5")]),
    st.integers(100, 10**10).map(lambda n: Decimal(n).scaleb(-6).normalize()),
)
currencies = st.sampled_from(["USD", "EUR"])


def build(spec: list[tuple[int, bool]], currency: str, fx: Decimal, order: list[int]):
    lines = [
        line(f"T{i:03d}", amount, reimbursable=reimb, currency=currency)
        for i, (amount, reimb) in enumerate(spec)
    ]
    rep = report([lines[i] for i in order], currency=currency)
    mapped = map_report(rep, POLICIES, POSTING)
    # Planned directly (the planner's arithmetic over any amounts); validate's range check is
    # exercised by the pipeline property below.
    validated = ValidatedReport(
        report_id=rep.reportID,
        mapped=mapped,
        holds=[],
        company_currency="USD",
        voucher_date=date(2026, 11, 3),
        period=PERIOD,
        rate=fx if currency != "USD" else Decimal(1),
    )
    return plan_voucher(validated, POSTING)


def check_voucher(v: PlannedVoucher, spec: list[tuple[int, bool]], currency: str, fx: Decimal):
    rate_used = fx if currency != "USD" else Decimal(1)
    cd, cc, d, c = v.totals()
    assert cd == cc and d == c  # balances exactly in both currencies

    nonzero = [(a, r) for a, r in spec if a != 0]
    line_rows = [r for r in v.rows if r.source.kind == "line"]
    assert len(line_rows) == len(nonzero)
    assert len(v.skipped_lines) == len(spec) - len(nonzero)

    for row in v.rows:
        assert row.currency_code == currency and row.currency_rate == rate_used
        amounts_ = (row.currency_debit, row.currency_credit, row.debit, row.credit)
        assert all(a is None or (a >= 0 and a == a.quantize(CENT)) for a in amounts_)
        # One side per row, the same side in both currencies; never a zero row.
        debit_side = row.currency_debit is not None
        assert (row.currency_credit is None) == debit_side
        assert (row.debit is not None) == debit_side and (row.credit is None) == debit_side
        assert row.currency_net != 0 or row.net != 0

    for row in line_rows:
        cur = abs(row.currency_net)
        assert abs(row.net) == (cur * rate_used).quantize(CENT, rounding=ROUND_HALF_UP)

    # Expense rows net of refunds = the report's net, in the report currency.
    net_minor = sum(a for a, _ in spec)
    assert sum((r.currency_net for r in line_rows), ZERO) == Decimal(net_minor).scaleb(-2)

    # Each credit account balances exactly the rounded rows of its group.
    by_tid = {f"T{i:03d}": reimb for i, (_a, reimb) in enumerate(spec)}
    for group, account in ((True, "2930"), (False, "2940")):
        group_rows = [r for r in line_rows if by_tid[r.source.transaction_id] is group]
        credit_rows = [r for r in v.rows if r.source.kind == "credit" and r.account == account]
        assert sum((r.net for r in credit_rows), ZERO) == -sum((r.net for r in group_rows), ZERO)
        assert sum((r.currency_net for r in credit_rows), ZERO) == -sum(
            (r.currency_net for r in group_rows), ZERO
        )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=lines_st, currency=currencies, fx=rates, data=st.data())
def test_any_report_plans_a_balanced_voucher_stable_under_line_order(spec, currency, fx, data):
    order = list(range(len(spec)))
    v = build(spec, currency, fx, order)
    check_voucher(v, spec, currency, fx)

    shuffled = data.draw(st.permutations(order))
    again = build(spec, currency, fx, shuffled)
    assert again.version == v.version
    assert again.to_ifs_body() == v.to_ifs_body()


@settings(max_examples=150, deadline=None)
@given(spec=lines_st, fx=rates)
# Rare for random search, so pinned: the currency net (+0.01) and the accounting net (-0.01) of
# one group have opposite signs, and zero-currency rounding rows.
@example(spec=[(10, True), (-3, True), (-3, True), (-3, True)], fx=Decimal("0.5"))
@example(spec=[(3, False), (3, False), (3, False), (-9, False)], fx=Decimal("0.5"))
def test_pipeline_either_holds_out_of_range_or_plans_balanced(spec, fx):
    lines = [
        line(f"T{i:03d}", amount, reimbursable=reimb, currency="EUR")
        for i, (amount, reimb) in enumerate(spec)
    ]
    rep = report(lines, currency="EUR")
    ref = reference(rates=[rate("EUR", date(2026, 1, 1), str(fx))])
    validated = validate(map_report(rep, POLICIES, POSTING), ref, POSTING)
    total_abs = sum(abs(a) for a, _ in spec)
    if total_abs > MAX_AMOUNT_MINOR or total_abs * fx > MAX_AMOUNT_MINOR:
        assert [h.code for h in validated.holds] == ["malformed:amount-out-of-range"]
        return
    assert validated.ok, validated.holds
    v = plan_voucher(validated, POSTING)
    check_voucher(v, spec, "EUR", fx)
    biggest = max((a for r in v.rows for a in (r.debit, r.credit) if a is not None), default=ZERO)
    assert biggest * 100 <= MAX_AMOUNT_MINOR
