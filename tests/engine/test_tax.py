"""Tax on Expensify lines → IFS tax codes (console/tax.py): what the voucher carries.

The expense row posts the net with IFS's tax fields (OptionalCode, TaxDirection, tax and base
in both currencies); IFS adds the tax row itself, so the plan shows that row and balances with
it but never sends it. Non-recoverable tax stays in the expense; exempt accounts post gross.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from console.config import PostingConfig
from console.mapping import map_report
from console.plan import Plan, PlannedVoucher, plan_voucher
from console.validate import ValidatedReport

from .engine_world import POLICIES, Posting, cpv, line, period, reference, report, run

ZERO = Decimal("0.00")


def TaxPosting(**keys: Any) -> PostingConfig:
    return Posting(
        **{
            "tax_code_by_expensify": {"VAT20": "S20", "VAT0": "Z0", "VAT10": "R10"},
            "non_recoverable_tax_codes": ["R10"],
            **keys,
        }
    )


def vat_line(tid: str, gross: int, tax: int, code: str = "VAT20", **kw: object) -> dict:
    return line(tid, gross, taxAmount=tax, taxCode=code, taxName="VAT 20%", **kw)


def plan(rep, posting: TaxPosting | None = None, rate: str = "1") -> PlannedVoucher:
    posting = posting or TaxPosting()
    mapped = map_report(rep, POLICIES, posting)
    assert not mapped.problems, mapped.problems
    validated = ValidatedReport(
        report_id=rep.reportID,
        mapped=mapped,
        holds=[],
        company_currency="USD",
        voucher_date=date(2026, 11, 3),
        period=period(2026, 11),
        rate=Decimal(rate),
    )
    return plan_voucher(validated, posting)


def test_a_vat_line_posts_its_net_with_the_tax_code_and_ifs_adds_the_tax_row() -> None:
    v = plan(report([vat_line("T1", 12000, 2000)]))
    expense, ifs_tax, credit = v.rows
    assert (expense.account, expense.debit) == ("6110", Decimal("100.00"))
    assert expense.to_ifs()["OptionalCode"] == "S20"
    assert expense.to_ifs()["TaxDirection"] == "TaxReceived"
    assert expense.to_ifs()["TaxAmount"] == Decimal("20.00")
    assert expense.to_ifs()["TaxBaseAmount"] == Decimal("100.00")
    assert ifs_tax.ifs_generated and ifs_tax.debit == Decimal("20.00")
    assert (credit.account, credit.credit) == ("2930", Decimal("120.00"))
    # The POST carries the expense and the credit row; IFS adds the tax row itself.
    body_rows = v.to_ifs_body()["VoucherRowArray"]
    assert [r["Account"] for r in body_rows] == ["6110", "2930"]
    assert [r["RowNo"] for r in body_rows] == [1, 2]
    assert "[tax S20: 20.00 on 100.00]" in _text(v)


def _text(v: PlannedVoucher) -> str:
    return Plan([v], [], []).render_text()


def test_non_recoverable_tax_stays_in_the_expense_and_exempt_accounts_post_gross() -> None:
    v = plan(report([vat_line("T1", 11000, 1000, code="VAT10")]))
    expense, credit = v.rows
    assert expense.debit == Decimal("110.00") and credit.credit == Decimal("110.00")
    assert expense.to_ifs()["OptionalCode"] == "R10"
    assert expense.to_ifs()["TaxAmount"] == ZERO  # IFS's code is 0 % deductible
    assert expense.to_ifs()["TaxBaseAmount"] == Decimal("100.00")

    exempt = TaxPosting(tax_exempt_accounts=["6110"])
    v = plan(report([vat_line("T1", 12000, 2000)]), exempt)
    expense, credit = v.rows
    assert expense.debit == Decimal("120.00") and "OptionalCode" not in expense.to_ifs()


def test_a_report_without_tax_posts_exactly_as_before() -> None:
    rep = report([line("T1", 12345)])
    with_tax_config, without = plan(rep), plan(rep, Posting())  # type: ignore[arg-type]
    assert with_tax_config.to_ifs_body() == without.to_ifs_body()
    assert with_tax_config.version == without.version


def test_a_refund_with_tax_credits_net_and_tax() -> None:
    v = plan(report([vat_line("T1", 12000, 2000), vat_line("T2", -6000, -1000)]))
    refund = next(r for r in v.rows if r.source.transaction_id == "T2" and not r.ifs_generated)
    assert refund.credit == Decimal("50.00")
    assert refund.to_ifs()["TaxAmount"] == Decimal("-10.00")  # signed like the row, as IFS wants
    cd, cc, d, c = v.totals()
    assert d == c and cd == cc


def test_unmapped_tax_codes_hold_the_report_with_the_code() -> None:
    held = run(report([vat_line("T1", 12000, 2000, code="VAT25")]), TaxPosting())
    assert [h.code for h in held.holds] == ["unmapped-tax:VAT25"]
    assert "tax_code_by_expensify" in held.holds[0].message
    no_code = run(report([vat_line("T1", 12000, 2000, code="")]), TaxPosting())
    assert [h.code for h in no_code.holds] == ["unmapped-tax:(none)"]
    # A per-policy table maps it, and "" names the code of lines without one.
    policy = TaxPosting(tax_code_by_policy={"POL-US": {"VAT25": "S25", "": "E0"}})
    assert run(report([vat_line("T1", 12500, 2500, code="VAT25")]), policy).ok
    assert run(report([vat_line("T1", 12000, 2000, code="")]), policy).ok


def test_an_account_that_demands_a_tax_code_holds_a_row_without_one() -> None:
    demanding = cpv("A", "6110")
    demanding = demanding.model_copy(update={"TaxCodeMandatory": True})
    dims = [d for d in reference().companies["10"].code_parts.values() if d.CodePartValue != "6110"]
    ref = reference(dimensions=[*dims, demanding])
    held = run(report([line("T1", 5000)]), TaxPosting(), ref)
    assert [h.code for h in held.holds] == ["account-demand:6110:tax"]
    assert "requires a tax code on account 6110" in held.holds[0].message
    # With a tax code on the line, the demand is met.
    assert run(report([vat_line("T1", 6000, 1000)]), TaxPosting(), ref).ok
    # A default code for lines without tax meets it too.
    assert run(report([line("T1", 5000)]), TaxPosting(default_tax_code="E0"), ref).ok


def test_an_account_that_blocks_tax_codes_holds_a_row_with_one() -> None:
    blocking = cpv("A", "6110").model_copy(update={"TaxHandlingValue": "Blocked"})
    dims = [d for d in reference().companies["10"].code_parts.values() if d.CodePartValue != "6110"]
    held = run(report([vat_line("T1", 6000, 1000)]), TaxPosting(), reference([*dims, blocking]))
    assert [h.code for h in held.holds] == ["account-demand:6110:tax-blocked"]


def test_tax_larger_than_the_line_is_held_as_malformed() -> None:
    held = run(report([vat_line("T1", 1000, 1000)]), TaxPosting())
    assert [h.code for h in held.holds] == ["malformed:tax-exceeds-amount"]


def test_the_config_refuses_empty_codes_naming_the_key() -> None:
    with pytest.raises(ValidationError, match="tax_code_by_expensify: the Expensify tax code"):
        PostingConfig(tax_code_by_expensify={"VAT20": " "})
    with pytest.raises(ValidationError, match="longer than IFS's 20 characters"):
        PostingConfig(tax_code_by_policy={"POL-EU": {"VAT20": "X" * 21}})
    with pytest.raises(ValidationError, match="an entry is empty"):
        PostingConfig(tax_exempt_accounts=[""])
    ok = PostingConfig(tax_code_by_policy={"POL-EU": {"": "E0", "VAT20": "S20"}})
    assert ok.tax_code_by_policy["POL-EU"][""] == "E0"


# ---------------------------------------------------------------- property

tax_lines = st.lists(
    st.tuples(
        st.integers(-(10**9), 10**9).filter(lambda n: n != 0),  # gross, cents
        st.integers(0, 99),  # tax as a share of the gross, percent
        st.sampled_from(["VAT20", "VAT0", "VAT10", ""]),
        st.booleans(),  # reimbursable
    ),
    min_size=1,
    max_size=15,
)
rates = st.one_of(
    st.just("1"),
    st.integers(100, 10**9).map(lambda n: str(Decimal(n).scaleb(-6).normalize())),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tax_lines, rates)
def test_any_report_with_tax_balances_and_expense_plus_tax_is_gross(spec, fx) -> None:
    lines = []
    for i, (gross, share, code, reimb) in enumerate(spec):
        tax = (abs(gross) * share // 100) * (1 if gross > 0 else -1)
        lines.append(vat_line(f"T{i:03d}", gross, tax, code=code, reimbursable=reimb))
    currency = "USD" if fx == "1" else "EUR"
    rep = report(
        [{**ln, "currency": currency} for ln in lines],
        currency=currency,
    )
    posting = TaxPosting(default_tax_code="E0")
    v = plan(rep, posting, fx)
    cd, cc, d, c = v.totals()
    assert cd == cc and d == c  # balanced, IFS's tax rows included, in both currencies
    for row in v.rows:
        for amount in (row.currency_debit, row.currency_credit, row.debit, row.credit):
            assert amount is None or amount >= 0
    for i, (gross, _share, _code, _reimb) in enumerate(spec):
        tid = f"T{i:03d}"
        mine = [r for r in v.rows if r.source.transaction_id == tid]
        # Expense + tax = gross, per line, in the report currency.
        assert sum((r.currency_net for r in mine), ZERO) == Decimal(gross).scaleb(-2)
        expense = next(r for r in mine if not r.ifs_generated)
        if expense.tax is not None:
            fields = expense.to_ifs()
            if fields["OptionalCode"] == "R10":  # non-recoverable: the gross stays in the expense
                assert fields["CurrencyTaxAmount"] == ZERO
                assert expense.currency_net == Decimal(gross).scaleb(-2)
            else:  # IFS's base is the row's net, its tax the rest, both signed like the row
                assert fields["CurrencyTaxBaseAmount"] == expense.currency_net
            assert fields["CurrencyTaxAmount"] * expense.currency_net >= 0
    assert [r["RowNo"] for r in v.to_ifs_body()["VoucherRowArray"]] == list(
        range(1, len(v.sent_rows) + 1)
    )


def test_the_dry_run_screen_shows_the_tax_code_and_ifs_tax_rows() -> None:
    from screens.dryrun import PLAN_COLUMNS, plan_rows

    v = plan(report([vat_line("T1", 12000, 2000), line("T2", 5000)]))
    assert "tax" in [c.key for c in PLAN_COLUMNS]
    cells = [
        (r.cells["row"].plain, r.cells["account"].plain, r.cells["tax"].plain)
        for r in plan_rows(Plan([v], [], []))
        if r.cells
    ]
    assert cells == [
        ("1", "6110", "S20"),
        ("ifs", "tax:S20", "S20"),  # IFS's own tax row, its account per its posting control
        ("2", "6110", ""),
        ("3", "2930", ""),
    ]
