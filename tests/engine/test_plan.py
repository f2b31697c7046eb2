"""Plan stage: the voucher of design.md §4, row by row, and the cycle's plan and its exports."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal

import pytest

from console import money
from console.mapping import Hold
from console.plan import UnbalancedVoucher, build_plan, plan_voucher
from console.validate import validate_malformed

from .engine_world import (
    DIMENSIONS,
    Posting,
    cpv,
    line,
    period,
    rate,
    reference,
    report,
    run,
    voucher,
)

D = Decimal


def rows_by(v):
    return {(r.source.transaction_id or r.source.credit_for): r for r in v.rows}


def test_one_debit_row_per_line_and_one_credit_row_per_credit_account():
    v = voucher(
        report(
            [
                line("T1", 12345),
                line("T2", 5000, category="Meals", tag="Sales"),
                line("T3", 2500, reimbursable=False),
            ]
        )
    )
    assert [r.source.kind for r in v.rows] == ["line", "line", "line", "credit", "credit"]
    r = rows_by(v)
    assert (r["T1"].account, r["T1"].code_parts) == ("6110", (("B", "CC-410"), ("C", "PRJ-1")))
    assert (r["T2"].account, r["T2"].code_parts) == ("6120", (("B", "CC-200"),))
    assert r["T1"].currency_debit == D("123.45") and r["T1"].currency_credit is None
    assert r["T1"].debit == D("123.45") and r["T1"].credit is None
    # Reimbursable lines are owed to the employee, card lines to the card clearing account.
    assert r["reimbursable"].account == "2930"
    assert r["reimbursable"].credit == D("173.45") and r["reimbursable"].debit is None
    assert r["card"].account == "2940"
    assert r["card"].credit == D("25.00")
    assert r["card"].code_parts == ()
    assert v.totals() == (D("198.45"), D("198.45"), D("198.45"), D("198.45"))


def test_refund_credits_the_expense_account():
    v = voucher(report([line("T1", 10000), line("T2", -2500)]))
    r = rows_by(v)
    assert r["T2"].account == "6110"
    assert r["T2"].currency_credit == D("25.00") and r["T2"].credit == D("25.00")
    assert r["T2"].currency_debit is None and r["T2"].debit is None
    assert r["reimbursable"].credit == D("75.00")


def test_negative_report_debits_the_credit_account():
    v = voucher(
        report([line("T1", -4000, reimbursable=False), line("T2", 1000, reimbursable=False)])
    )
    card = rows_by(v)["card"]
    assert card.debit == D("30.00") and card.currency_debit == D("30.00")
    assert card.credit is None and card.currency_credit is None


def test_zero_lines_are_skipped_but_listed():
    v = voucher(report([line("T1", 100), line("T0", 0)]))
    assert [r.source.transaction_id for r in v.rows if r.source.kind == "line"] == ["T1"]
    assert [s.transaction_id for s in v.skipped_lines] == ["T0"]
    assert (
        "skipped line T0"
        in build_plan([run(report([line("T1", 100), line("T0", 0)]))], Posting()).render_text()
    )


def test_group_netting_to_zero_has_no_credit_row():
    v = voucher(report([line("T1", 1000), line("T2", -1000), line("T3", 500, reimbursable=False)]))
    assert [r.source.credit_for for r in v.rows if r.source.kind == "credit"] == ["card"]


def test_report_of_only_zero_lines_is_skipped_not_posted():
    plan = build_plan([run(report([line("T0", 0)]))], Posting())
    assert plan.vouchers == [] and plan.held == []
    assert plan.skipped[0].report_id == "R00123"
    assert "every line is zero" in plan.skipped[0].reason


def test_foreign_currency_rows_convert_per_row_half_up_and_credits_sum_rounded_rows():
    # 1.08 × 0.05 = 0.054 → 0.05 per row; three rows → 0.15, not round(0.15 × 1.08) = 0.16.
    ref = reference(rates=[rate("EUR", date(2026, 1, 1), "1.085")])
    rep = report([line(f"T{i}", 5, currency="EUR") for i in range(3)], currency="EUR")
    v = voucher(rep, ref=ref)
    debits = [r for r in v.rows if r.source.kind == "line"]
    # 0.05 × 1.085 = 0.05425 → 0.05
    assert all(r.debit == D("0.05") for r in debits)
    credit = rows_by(v)["reimbursable"]
    assert credit.currency_credit == D("0.15") and credit.credit == D("0.15")
    assert all(r.currency_code == "EUR" and r.currency_rate == D("1.085") for r in v.rows)
    assert v.currency == "EUR" and v.company_currency == "USD" and v.rate == D("1.085")


def test_half_up_rounding_of_exact_halves():
    ref = reference(rates=[rate("EUR", date(2026, 1, 1), "1.5")])
    v = voucher(report([line("T1", 1, currency="EUR")], currency="EUR"), ref=ref)
    assert rows_by(v)["T1"].debit == D("0.02")  # 0.015 → 0.02, half-up (not banker's 0.02 / 0.01)
    v2 = voucher(
        report([line("T1", -1, currency="EUR"), line("T2", 10, currency="EUR")], currency="EUR"),
        ref=ref,
    )
    assert rows_by(v2)["T1"].credit == D("0.02")  # half-up away from zero for refunds too


def test_rounding_left_in_a_zero_currency_group_gets_a_row_so_both_currencies_balance():
    # +0.03 ×3 at 0.5 → 0.02 each (0.06); −0.09 → 0.05: currency nets 0, accounting 0.01.
    ref = reference(rates=[rate("EUR", date(2026, 1, 1), "0.5")])
    rep = report(
        [
            line("T1", 3, currency="EUR"),
            line("T2", 3, currency="EUR"),
            line("T3", 3, currency="EUR"),
            line("T4", -9, currency="EUR"),
        ],
        currency="EUR",
    )
    v = voucher(rep, ref=ref)
    credit = rows_by(v)["reimbursable"]
    assert credit.currency_credit == D("0.00") and credit.credit == D("0.01")
    v.check_balance()


def test_opposite_sign_rounding_splits_the_balancing_row_per_currency():
    # +0.10 → 0.05; −0.03 ×3 → −0.02 each: currency net +0.01, accounting net −0.01.
    ref = reference(rates=[rate("EUR", date(2026, 1, 1), "0.5")])
    rep = report(
        [
            line("T1", 10, currency="EUR"),
            line("T2", -3, currency="EUR"),
            line("T3", -3, currency="EUR"),
            line("T4", -3, currency="EUR"),
        ],
        currency="EUR",
    )
    v = voucher(rep, ref=ref)
    credits = [r for r in v.rows if r.source.kind == "credit"]
    assert len(credits) == 2
    assert (credits[0].currency_credit, credits[0].credit) == (D("0.01"), D("0.00"))
    assert (credits[1].currency_debit, credits[1].debit) == (D("0.00"), D("0.01"))
    v.check_balance()


def test_same_currency_rows_carry_rate_one_and_equal_amounts():
    v = voucher(report())
    for r in v.rows:
        assert r.currency_rate == D(1) and r.currency_code == "USD"
        assert (r.currency_debit, r.currency_credit) == (r.debit, r.credit)


def test_header_fields_and_reference_number():
    v = voucher(report())
    body = v.to_ifs_body()
    assert body["Company"] == "10"
    assert body["VoucherType"] == "X"
    assert body["VoucherDate"] == "2026-11-03"
    assert (body["AccountingYear"], body["AccountingPeriod"]) == (2026, 11)
    assert body["ReferenceNumber"] == f"EXP:R00123:{v.version}"
    assert len(v.version) == 8 and int(v.version, 16) >= 0
    assert body["Text"] == "Expensify R00123 Q4 Berlin trip — ana.lopez@example.com"
    row = body["VoucherRowArray"][0]
    assert set(row) >= {
        "Account",
        "CodeB",
        "CodeC",
        "CurrencyCode",
        "CurrencyRate",
        "CurrencyDebetAmount",
        "CurrencyCreditAmount",
        "DebetAmount",
        "CreditAmount",
        "Text",
    }
    assert row["CurrencyCreditAmount"] is None and row["CreditAmount"] is None
    assert isinstance(row["DebetAmount"], Decimal)
    # Serialised as exact JSON numbers by the shared money module.
    assert '"DebetAmount": 123.45' in money.dumps(body)
    assert v.to_voucher().VoucherRowArray[0].DebetAmount == D("123.45")


def test_texts_trace_rows_to_transactions_and_reports_and_fit_ifs():
    long_merchant = "Grand Hotel " * 40
    v = voucher(report([line("T-778899", 100, merchant=long_merchant)], reportName="N" * 300))
    r = rows_by(v)
    assert r["T-778899"].text.startswith("T-778899 Grand Hotel")
    assert len(r["T-778899"].text) == 200 and r["T-778899"].text.endswith("…")
    assert "R00123" in r["reimbursable"].text
    assert r["reimbursable"].source.report_id == "R00123"
    assert len(v.text) == 200 and v.text.startswith("Expensify R00123 NNN")


def test_merchant_html_entities_never_reach_ifs():
    v = voucher(report([line("T1", 100, merchant="Barnes &amp; Noble")]))
    assert rows_by(v)["T1"].text == "T1 Barnes & Noble"
    assert "&amp;" not in money.dumps(v.to_ifs_body())


def test_version_changes_with_posted_content_only():
    base = voucher(report([line("T1", 100), line("T2", 200)]))
    # Reordered lines are the same content: same rows, same version (decided and tested).
    swapped = voucher(report([line("T2", 200), line("T1", 100)]))
    assert swapped.version == base.version
    assert swapped.to_ifs_body() == base.to_ifs_body()
    # Volatile or header-only fields do not change it.
    assert voucher(report([line("T1", 100), line("T2", 200)], reportName="x")).version == (
        base.version
    )
    assert (
        voucher(report([line("T1", 100), line("T2", 200)], approved="2026-11-03 23:59:00")).version
        == base.version
    )
    # What is posted does.
    assert voucher(report([line("T1", 101), line("T2", 200)])).version != base.version
    assert voucher(report([line("T1", 100), line("T2", 200)], approved="2026-11-04")).version != (
        base.version
    )
    assert voucher(report([line("T1", 100, tag="Sales"), line("T2", 200)])).version != (
        base.version
    )
    assert (
        plan_voucher(
            run(report([line("T1", 100), line("T2", 200)])), Posting(), version_salt="2"
        ).version
        != base.version
    )


def test_moved_period_is_shown_in_the_plan():
    periods = [period(2026, 11, "Closed"), period(2026, 12)]
    posting = Posting(closed_period="next-open")
    v = run(report(), posting, ref=reference(periods=periods))
    plan = build_plan([v], posting)
    pv = plan.vouchers[0]
    assert pv.voucher_date == date(2026, 12, 1) and pv.accounting_period == 12
    assert pv.moved_from == date(2026, 11, 3)
    text = plan.render_text()
    assert "MOVED: approved 2026-11-03 in closed period 2026-11; posted 2026-12-01" in text
    assert plan.to_json()["vouchers"][0]["movedFrom"] == "2026-11-03"


def test_held_report_cannot_be_planned_and_appears_held_in_the_plan():
    ref = reference([d for d in DIMENSIONS if d.CodePartValue != "CC-410"])
    v = run(report(), ref=ref)
    with pytest.raises(ValueError, match="held"):
        plan_voucher(v, Posting())
    plan = build_plan([v, validate_malformed_r9()], Posting())
    assert plan.vouchers == []
    assert [(h.report_id, h.reason) for h in plan.held] == [
        ("R00123", "missing-dimension:B:CC-410"),
        ("R9", "malformed:bad"),
    ]
    text = plan.render_text()
    assert "HELD report R00123" in text and "missing-dimension:B:CC-410" in text
    assert "does not exist in IFS company 10" in text


def validate_malformed_r9():
    from console.expensify.models import MalformedReport

    return validate_malformed(MalformedReport(reportID="R9", what="bad"))


def two_report_plan():
    eur_ref = reference(
        [*DIMENSIONS, cpv("B", "CC-300")], rates=[rate("EUR", date(2026, 1, 1), "1.1")]
    )
    a = run(report([line("T1", 10000), line("T2", 2000, reimbursable=False, tag="Sales")]))
    b = run(
        report([line("E1", 5000, currency="EUR")], reportID="R00200", currency="EUR"), ref=eur_ref
    )
    return build_plan([a, b], Posting())


def test_totals_per_account_and_cost_centre():
    plan = two_report_plan()
    by_account = {t.key: (t.debit, t.credit) for t in plan.totals_by_account()}
    assert by_account["6110"] == (D("175.00"), D("0"))  # 100 + 20 + 55.00 (50 EUR × 1.1)
    assert by_account["2930"] == (D("0"), D("155.00"))
    assert by_account["2940"] == (D("0"), D("20.00"))
    by_cc = {t.key: t.net for t in plan.totals_by_cost_centre()}
    assert by_cc == {"CC-410": D("155.00"), "CC-200": D("20.00")}
    assert plan.cost_centre_code_part == "B"
    text = plan.render_text()
    assert "Totals per account" in text and "Totals per cost centre (code part B)" in text
    assert "currency EUR → USD at rate 1.1" in text


def test_cost_centre_letter_follows_the_cost_center_level():
    posting = Posting(code_part_by_tag_level={"Cost Center": "D", "Project": "C"})
    ref = reference([*DIMENSIONS, cpv("D", "CC-410")])
    plan = build_plan([run(report(), posting, ref=ref)], posting)
    assert plan.cost_centre_code_part == "D"
    assert {t.key for t in plan.totals_by_cost_centre()} == {"CC-410"}


def test_json_export_is_plain_json_with_exact_decimal_strings():
    plan = two_report_plan()
    data = json.loads(json.dumps(plan.to_json()))
    v = data["vouchers"][0]
    assert v["referenceNumber"].startswith("EXP:R00123:")
    assert v["body"]["VoucherRowArray"][0]["DebetAmount"] == "100.00"
    assert v["sources"][0] == {"RowNo": 1, "kind": "line", "transactionID": "T1", "creditFor": None}
    assert data["totals"]["byAccount"][0] == {
        "company": "10",
        "currency": "USD",
        "account": "2930",
        "debit": "0.00",
        "credit": "155.00",
        "net": "-155.00",
    }


def test_csv_export_has_a_row_per_voucher_row_and_per_held_report():
    plan = build_plan([run(report()), validate_malformed_r9()], Posting())
    rows = list(csv.DictReader(io.StringIO(plan.to_csv())))
    assert [r["status"] for r in rows] == ["planned", "planned", "held"]
    assert rows[0]["transactionID"] == "T1" and rows[0]["debit"] == "123.45"
    assert rows[0]["CodeB"] == "CC-410"
    assert rows[1]["account"] == "2930" and rows[1]["credit"] == "123.45"
    assert rows[2]["reason"] == "malformed:bad"


def test_balance_check_raises_on_an_unbalanced_voucher():
    import dataclasses

    v = voucher(report())
    broken = dataclasses.replace(v, rows=v.rows[:1])
    with pytest.raises(UnbalancedVoucher):
        broken.check_balance()


def test_plan_is_what_post_executes_unchanged():
    plan = build_plan([run(report())], Posting())
    again = build_plan([run(report())], Posting())
    assert plan.vouchers[0].to_ifs_body() == again.vouchers[0].to_ifs_body()
    assert plan.voucher_by_report["R00123"] is plan.vouchers[0]
    assert isinstance(Hold("a", "b"), Hold)
