"""Validate stage: every rule of design.md §4 that holds a report, with its exact code."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from console.expensify.models import ExportReport, ExportTransaction, MalformedReport
from console.ifs.models import AccountingPeriod
from console.mapping import map_report
from console.validate import IfsReference, validate, validate_all, validate_malformed

from .engine_world import (
    DIMENSIONS,
    POLICIES,
    Posting,
    codes,
    cpv,
    line,
    period,
    rate,
    reference,
    report,
    run,
)


def test_valid_report_has_no_holds_and_the_approval_day_as_voucher_date():
    v = run(report())
    assert v.ok and v.holds == []
    assert v.voucher_date == date(2026, 11, 3)
    assert v.period is not None and v.period.label == "2026-11"
    assert v.rate == Decimal(1)
    assert v.company_currency == "USD"
    assert v.moved_from is None


def test_missing_cost_centre_is_held_with_a_sentence_for_people():
    ref = reference([d for d in DIMENSIONS if d.CodePartValue != "CC-410"])
    v = run(report(), ref=ref)
    assert codes(v) == ["missing-dimension:B:CC-410"]
    msg = v.holds[0].message
    assert "Cost Center CC-410 (code part B) does not exist in IFS company 10" in msg
    assert "remap the tag 'New Lab'" in msg
    assert "R00123" in msg and "T1" in msg


def test_missing_account_is_held():
    ref = reference([d for d in DIMENSIONS if d.CodePartValue != "6110"])
    v = run(report(), ref=ref)
    assert codes(v) == ["missing-dimension:A:6110"]
    assert "remap the category 'Airfare'" in v.holds[0].message


def test_dimension_outside_its_validity_on_the_voucher_date_is_invalid():
    dims = [d for d in DIMENSIONS if d.CodePartValue != "PRJ-1"]
    dims.append(cpv("C", "PRJ-1", (date(2020, 1, 1), date(2026, 10, 31))))
    v = run(report(), ref=reference(dims))
    assert codes(v) == ["invalid-dimension:C:PRJ-1"]
    assert "2026-10-31" in v.holds[0].message
    # Valid up to and including its last day.
    ok = run(report(approved="2026-10-31 09:00:00"), ref=reference(dims))
    assert ok.ok


def test_credit_accounts_are_validated_for_the_groups_in_use():
    no_card = reference([d for d in DIMENSIONS if d.CodePartValue != "2940"])
    assert run(report([line("T1", 100)]), ref=no_card).ok  # only reimbursable lines
    v = run(report([line("T1", 100, reimbursable=False)]), ref=no_card)
    assert codes(v) == ["missing-dimension:A:2940"]
    assert "card_clearing_account" in v.holds[0].message
    no_accrued = reference([d for d in DIMENSIONS if d.CodePartValue != "2930"])
    assert codes(run(report(), ref=no_accrued)) == ["missing-dimension:A:2930"]


def test_closed_period_is_held_by_default():
    periods = [period(2026, 10), period(2026, 11, "Closed"), period(2026, 12)]
    v = run(report(), ref=reference(periods=periods))
    assert codes(v) == ["closed-period:2026-11"]
    assert "next-open" in v.holds[0].message


def test_closed_period_moves_to_next_open_period_where_config_says_so():
    periods = [period(2026, 11, "Closed"), period(2026, 12, "Closed"), period(2027, 1)]
    v = run(report(), Posting(closed_period="next-open"), ref=reference(periods=periods))
    assert v.ok
    assert v.voucher_date == date(2027, 1, 1)
    assert v.period is not None and v.period.label == "2027-01"
    assert v.moved_from == date(2026, 11, 3)
    assert v.moved_to == date(2027, 1, 1)
    assert v.moved_from_period == "2026-11"


def test_next_open_without_a_later_open_period_still_holds():
    periods = [period(2026, 10), period(2026, 11, "Closed")]
    v = run(report(), Posting(closed_period="next-open"), ref=reference(periods=periods))
    assert codes(v) == ["closed-period:2026-11"]


def test_moved_voucher_checks_dimensions_and_rates_on_the_new_date():
    periods = [period(2026, 11, "Closed"), period(2026, 12)]
    dims = [d for d in DIMENSIONS if d.CodePartValue != "CC-410"]
    dims.append(cpv("B", "CC-410", (date(2020, 1, 1), date(2026, 11, 30))))
    v = run(report(), Posting(closed_period="next-open"), ref=reference(dims, periods))
    assert codes(v) == ["invalid-dimension:B:CC-410"]


def test_no_period_for_the_date_is_a_closed_period_hold():
    v = run(report(approved="2031-02-03 10:00:00"))
    assert codes(v) == ["closed-period:2031-02"]
    assert "no accounting period" in v.holds[0].message


def test_year_end_period_inside_december_does_not_shadow_december():
    year_end = AccountingPeriod(
        Company="10",
        AccountingYear=2026,
        AccountingPeriod=13,
        DateFrom=date(2026, 12, 31),
        DateUntil=date(2026, 12, 31),
        PeriodStatus="Closed",
    )
    ref = reference(periods=[period(2026, 12), year_end])
    v = run(report(approved="2026-12-31 18:00:00"), ref=ref)
    assert v.ok and v.period is not None and v.period.AccountingPeriod == 12


def test_foreign_currency_uses_the_latest_rate_on_or_before_the_voucher_date():
    eur = [line("T1", 10000, currency="EUR")]
    assert run(report(eur, currency="EUR")).rate == Decimal("1.08")
    assert run(report(eur, currency="EUR", approved="2026-10-31 23:59:59")).rate == Decimal("1.05")
    assert run(report(eur, currency="EUR", approved="2026-11-01 00:00:01")).rate == Decimal("1.08")


def test_missing_rate_is_held_never_one_to_one():
    v = run(report([line("T1", 10000, currency="GBP")], currency="GBP"))
    assert codes(v) == ["missing-rate:GBP:2026-11-03"]
    assert v.rate is None
    before_first = run(
        report([line("T1", 1, currency="EUR")], currency="EUR", approved="2026-09-30")
    )
    assert codes(before_first) == ["missing-rate:EUR:2026-09-30"]


def test_non_positive_rate_is_treated_as_missing():
    ref = reference(rates=[rate("EUR", date(2026, 1, 1), "0")])
    v = run(report([line("T1", 1, currency="EUR")], currency="EUR"), ref=ref)
    assert codes(v) == ["missing-rate:EUR:2026-11-03"]


def test_company_unknown_to_ifs_is_held_naming_the_policy():
    v = run(report(), Posting(company_by_policy={"POL-US": "99"}))
    assert codes(v) == ["unknown-policy:POL-US"]
    assert "99" in v.holds[0].message


def test_malformed_reports_are_held_with_what_is_wrong():
    assert codes(run(report(approved=""))) == ["malformed:approved-date-missing"]
    assert codes(run(report(approved="yesterday"))) == ["malformed:approved-date"]
    assert codes(run(report([]))) == ["malformed:empty-report"]
    dup = run(report([line("T1", 1), line("T1", 2)]))
    assert codes(dup) == ["malformed:duplicate-transaction-id"]
    assert "T1" in dup.holds[0].message
    assert codes(run(report(currency=""))) == ["malformed:currency-missing"]
    assert codes(run(report(currency="dollars"))) == ["malformed:currency"]
    assert codes(run(report([line("", 5)]))) == ["malformed:transaction-id-missing"]
    long_id = run(report(reportID="R" * 60))
    assert codes(long_id) == ["malformed:report-id-too-long"]


def test_absurd_amounts_beyond_ifs_range_are_held():
    # A single line beyond the range never becomes a model: the client reads it as malformed.
    with pytest.raises(ValidationError, match="out of range"):
        report([line("T1", 10**15)])
    # Lines the model accepts (up to 10**14 cents each) can still sum beyond IFS's 15 digits.
    many = run(report([line(f"T{i}", 10**14) for i in range(11)]))
    assert codes(many) == ["malformed:amount-out-of-range"]
    at_limit = run(report([*(line(f"T{i}", 10**14) for i in range(9)), line("T9", 10**14 - 1)]))
    assert at_limit.ok


def test_amount_beyond_range_after_conversion_is_held():
    ref = reference(rates=[rate("EUR", date(2026, 1, 1), "10000")])
    v = run(report([line("T1", 10**12, currency="EUR")], currency="EUR"), ref=ref)
    assert codes(v) == ["malformed:amount-out-of-range"]


def test_non_integer_amount_is_held():
    tx = ExportTransaction.model_construct(
        transactionID="T1",
        amount=1,
        convertedAmount=Decimal("1.5"),
        category="Airfare",
        tag="New Lab:Apollo",
        reimbursable=True,
        currency="USD",
        merchant="",
        modifiedMerchant="",
    )
    rep = ExportReport.model_construct(
        reportID="R1",
        policyID="POL-US",
        currency="USD",
        approved="2026-11-03",
        transactions=[tx],
        reportName="",
        accountEmail="",
        policyName="",
    )
    v = validate(map_report(rep, POLICIES, Posting()), reference(), Posting())
    assert "malformed:amount-not-integer" in codes(v)


def test_line_in_another_currency_without_converted_amount_is_held():
    tx = line("T1", 5000, currency="EUR")
    del tx["convertedAmount"]
    v = run(report([tx]))
    assert codes(v) == ["malformed:unconverted-amount"]


def test_a_report_carries_all_its_holds_the_first_being_its_reason():
    ref = reference([d for d in DIMENSIONS if d.CodePartValue not in ("CC-410", "PRJ-1")], rates=[])
    rep = report(
        [line("T1", 100, currency="EUR"), line("T2", 5, category="Uncoded", categoryGlCode="")],
        currency="EUR",
    )
    v = run(rep, ref=ref)
    assert not v.ok
    assert set(codes(v)) == {
        "unmapped-category:Uncoded",
        "missing-dimension:B:CC-410",
        "missing-dimension:C:PRJ-1",
        "missing-rate:EUR:2026-11-03",
    }
    assert v.primary_hold == v.holds[0]
    assert len(codes(v)) == len(set(codes(v)))


def test_malformed_export_objects_are_held():
    v = validate_malformed(MalformedReport(reportID="R9", what="transactions-not-a-list"))
    assert codes(v) == ["malformed:transactions-not-a-list"]
    assert "R9" in v.holds[0].message
    out = validate_all([], reference(), Posting(), [MalformedReport(reportID="R8", what="x")])
    assert [x.report_id for x in out] == ["R8"]


def test_reference_lookups_are_per_company():
    ref = IfsReference.build(
        {"10": "USD", "20": "EUR"},
        [*DIMENSIONS, cpv("A", "9999", company="20")],
        [period(2026, 11), period(2026, 11, "Closed", company="20")],
        [rate("EUR", date(2026, 1, 1), "1.1"), rate("USD", date(2026, 1, 1), "0.9", company="20")],
    )
    c10, c20 = ref.company("10"), ref.company("20")
    assert c10 is not None and c20 is not None
    assert c10.code_part_value("A", "9999") is None
    assert c20.code_part_value("A", "9999") is not None
    assert c20.period_on(date(2026, 11, 5)).PeriodStatus == "Closed"  # type: ignore[union-attr]
    assert c20.rate_on("USD", date(2026, 11, 5)) == Decimal("0.9")
    assert c10.rate_on("USD", date(2026, 11, 5)) is None
    assert ref.company("30") is None
