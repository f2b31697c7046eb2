"""console/coding.py through the stages: the voucher date rule and the employee on the
accrued-expenses row, with their config."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from console.coding import accrued_by_employee
from console.config import PostingConfig, SettingsError, load_settings, resolve_paths
from console.ifs.models import Voucher, VoucherRow
from console.mapping import MappingOverrides, map_report
from console.plan import build_plan, plan_voucher
from console.validate import validate

from .engine_world import DIMENSIONS, POLICIES, Posting, codes, cpv, line, reference, report


def EmployeePosting(**keys: Any) -> PostingConfig:
    return Posting(
        **{
            "employee_id_field": "employeeCustomField1",
            "employee_on": "code-part",
            "employee_code_part": "G",
            "voucher_date": "approved",
            **keys,
        }
    )


WITH_EMPLOYEE = reference([*DIMENSIONS, cpv("G", "E1001")])


def _validated(rep, posting, ref=WITH_EMPLOYEE, today=None):
    return validate(map_report(rep, POLICIES, posting), ref, posting, today=today)


def test_old_voucher_date_names_still_load_and_new_ones_are_the_issue_s():
    assert PostingConfig().voucher_date == "approved"
    assert PostingConfig.model_validate({"voucher_date": "approval"}).voucher_date == "approved"
    assert PostingConfig.model_validate({"voucher_date": "submission"}).voucher_date == "submitted"
    assert PostingConfig.model_validate({"voucher_date": "exported"}).voucher_date == "exported"


def test_an_employee_field_without_a_place_for_it_is_refused(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    paths = resolve_paths(home, environ={})
    (home / "config.toml").write_text(
        '[posting]\nemployee_id_field = "employeeCustomField1"\nemployee_code_part = "A"\n'
    )
    with pytest.raises(SettingsError) as info:
        load_settings(paths, environ={})
    assert any("employee_code_part" in p and "B to J" in p for p in info.value.problems)
    (home / "config.toml").write_text('[posting]\nemployee_id_field = "employeeCustomField1"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(paths, environ={})
    assert any("employee_code_part is not" in p for p in info.value.problems)
    (home / "config.toml").write_text(
        '[posting]\nemployee_id_field = "employeeCustomField1"\nemployee_on = "party"\n'
    )
    assert load_settings(paths, environ={}).settings.posting.employee_on == "party"


def test_exported_dates_the_voucher_on_the_console_s_day():
    posting = EmployeePosting(employee_id_field="", voucher_date="exported")
    v = _validated(report(), posting, today=date(2026, 11, 27))
    assert v.voucher_date == date(2026, 11, 27) and v.period is not None
    assert v.period.AccountingPeriod == 11
    # Without a day (a caller that has none), the approval dates it.
    assert _validated(report(), posting).voucher_date == date(2026, 11, 3)


def test_the_employee_goes_on_the_accrued_row_only():
    posting = EmployeePosting()
    rep = report(
        [line("T1", 10000), line("T2", 2500, reimbursable=False)], employeeCustomField1="E1001"
    )
    v = plan_voucher(_validated(rep, posting), posting)
    by = {r.source.transaction_id or r.source.credit_for: r for r in v.rows}
    assert by["reimbursable"].code_parts == (("G", "E1001"),)
    assert by["card"].code_parts == () and by["T1"].code_parts == (("B", "CC-410"), ("C", "PRJ-1"))
    assert by["reimbursable"].to_ifs()["CodeG"] == "E1001"
    assert by["reimbursable"].credit == Decimal("100.00")


def test_the_employee_as_the_row_s_party_reaches_the_body_and_the_exports():
    posting = EmployeePosting(employee_on="party", employee_code_part="")
    rep = report(employeeCustomField1=4711)  # an ID the template printed as a number
    plan = build_plan([_validated(rep, posting, ref=reference())], posting)
    [v] = plan.vouchers
    [credit] = [r for r in v.rows if r.source.kind == "credit"]
    assert credit.to_ifs()["PartyTypeId"] == "4711" and "CodeG" not in credit.to_ifs()
    assert "PartyTypeId=4711" in plan.render_text()
    assert ",4711," in plan.to_csv()


def test_an_employee_without_an_id_holds_the_report_and_says_where_to_set_it():
    v = _validated(report(), EmployeePosting())
    assert codes(v) == ["missing-employee-id:ana.lopez@example.com"]
    assert "Custom Field 1" in v.holds[0].message
    # An ID IFS lacks in the employee code part is a missing dimension like any other.
    v = _validated(report(employeeCustomField1="E9999"), EmployeePosting())
    assert codes(v) == ["missing-dimension:G:E9999"]
    assert "employeeCustomField1" in v.holds[0].message
    # A report of card lines only owes the card issuer: no employee is needed.
    card_only = report([line("T1", 5000, reimbursable=False)])
    assert _validated(card_only, EmployeePosting()).ok


def test_without_an_employee_field_the_voucher_is_as_before():
    rep = report(employeeCustomField1="E1001")
    before = plan_voucher(_validated(rep, Posting()), Posting())
    off = EmployeePosting(employee_id_field="", employee_code_part="")
    after = plan_voucher(_validated(rep, off), off)
    assert before.version == after.version and before.rows == after.rows


SourcePosting = Posting


SOURCES = reference([*DIMENSIONS, cpv("C", "PRJ-2"), cpv("B", "CC-HOME"), cpv("C", "PRJ-HOME")])


def test_a_code_part_comes_from_the_tag_then_the_report_field_then_the_employee_default():
    posting = SourcePosting(
        code_part_by_report_field={"Project_Code": "C"},
        code_part_by_employee_field={"employeeCustomField2": "B"},
    )
    rep = report(
        [
            line("T1", 1000, tag="New Lab:Apollo"),  # both from the tag
            line("T2", 2000, tag="New Lab"),  # C from the report field
            line("T3", 3000, tag=""),  # C from the report field, B the employee's
        ],
        reportFields={"Project_Code": "PRJ-2"},
        employeeCustomField2="CC-HOME",
    )
    plan = build_plan([_validated(rep, posting, ref=SOURCES)], posting)
    [v] = plan.vouchers
    by = {r.source.transaction_id: r for r in v.rows if r.source.kind == "line"}
    assert by["T1"].code_parts == (("B", "CC-410"), ("C", "PRJ-1"))
    assert by["T1"].source.parts_from == ()
    assert by["T2"].code_parts == (("B", "CC-410"), ("C", "PRJ-2"))
    assert by["T2"].source.parts_from == (("C", "report field Project_Code"),)
    assert by["T3"].code_parts == (("B", "CC-HOME"), ("C", "PRJ-2"))
    assert dict(by["T3"].source.parts_from) == {
        "B": "employee default employeeCustomField2",
        "C": "report field Project_Code",
    }
    text = plan.render_text()
    assert (
        "(B from employee default employeeCustomField2, C from report field Project_Code)" in text
    )
    sources = plan.to_json()["vouchers"][0]["sources"]
    assert {"C": "report field Project_Code"} in [s.get("codePartsFrom") for s in sources]


def test_a_policy_s_own_sources_replace_the_tables_and_overrides_map_values():
    posting = SourcePosting(
        code_part_by_report_field={"Project_Code": "C"},
        code_part_sources_by_policy={"POL-US": {"employee:employeeCustomField2": "C"}},
    )
    rep = report(
        [line("T1", 1000, tag="New Lab")],
        reportFields={"Project_Code": "PRJ-2"},
        employeeCustomField2="home",
    )
    overrides = MappingOverrides(
        {("POL-US", "employee-field:employeeCustomField2", "home"): "PRJ-HOME"}
    )
    mapped = map_report(rep, POLICIES, posting, overrides)
    [mline] = mapped.lines
    assert mline.code_parts == {"B": "CC-410", "C": "PRJ-HOME"}
    assert mline.code_part_sources["C"] == ("employee-field:employeeCustomField2", "home")


def test_a_report_field_value_ifs_lacks_holds_the_report_naming_the_field():
    posting = SourcePosting(code_part_by_report_field={"Project_Code": "C"})
    rep = report([line("T1", 1000, tag="New Lab")], reportFields={"Project_Code": "PRJ-404"})
    v = _validated(rep, posting, ref=SOURCES)
    assert codes(v) == ["missing-dimension:C:PRJ-404"]
    assert "remap the value 'PRJ-404' of the report field Project_Code" in v.holds[0].message
    # No value (and no tag at that level): the code part stays empty, nothing is held.
    assert _validated(report([line("T1", 1000, tag="New Lab")]), posting, ref=SOURCES).ok


def test_source_tables_refuse_a_letter_outside_b_to_j_and_unknown_employee_fields():
    with pytest.raises(ValueError, match="B to J"):
        PostingConfig.model_validate({"code_part_by_report_field": {"Dept": "A"}})
    with pytest.raises(ValueError, match="not an employee field"):
        PostingConfig.model_validate({"code_part_by_employee_field": {"homeCC": "B"}})
    with pytest.raises(ValueError, match="report:<field>"):
        PostingConfig.model_validate({"code_part_sources_by_policy": {"P": {"Dept": "B"}}})
    ok = PostingConfig.model_validate(
        {"code_part_by_employee_field": {"employeeCustomField2": "b"}}
    )
    assert ok.code_part_by_employee_field == {"employeeCustomField2": "B"}


def _posted(period: int, rows: list[tuple[str, str, str | None, str | None]]) -> Voucher:
    return Voucher(
        Company="10",
        VoucherType="X",
        AccountingYear=2026,
        AccountingPeriod=period,
        VoucherDate=date(2026, period, 1),
        VoucherRowArray=[
            VoucherRow(
                Account=account,
                PartyTypeId=party or None,
                CurrencyCode="USD",
                CurrencyRate=Decimal(1),
                DebetAmount=Decimal(debit) if debit else None,
                CreditAmount=Decimal(credit) if credit else None,
            )
            for account, party, debit, credit in rows
        ],
    )


def test_the_accrued_balance_per_employee_counts_accruals_less_reversals_to_the_period():
    posting = EmployeePosting(employee_on="party", employee_code_part="")
    vouchers = [
        _posted(11, [("6110", "", "150.00", None), ("2930", "E1", None, "100.00"),
                     ("2930", "E2", None, "50.00")]),
        _posted(12, [("2930", "E1", "100.00", None), ("6110", "", None, "100.00")]),
        _posted(11, [("6110", "", "7.00", None), ("2930", "", None, "7.00")]),
    ]  # fmt: skip
    november = accrued_by_employee(vouchers, posting, (2026, 11), {"10": "USD"})
    assert [(b.employee, b.balance) for b in november] == [
        ("", Decimal("7.00")),
        ("E1", Decimal("100.00")),
        ("E2", Decimal("50.00")),
    ]
    december = accrued_by_employee(vouchers, posting, (2026, 12), {"10": "USD"})
    assert [(b.employee, b.balance) for b in december if b.employee] == [
        ("E1", Decimal("0.00")),
        ("E2", Decimal("50.00")),
    ]
    off = EmployeePosting(employee_id_field="")
    assert accrued_by_employee(vouchers, off, (2026, 12), {"10": "USD"}) == []


CardPosting = Posting


def test_each_card_credits_its_own_clearing_account_and_others_the_default():
    posting = CardPosting(card_clearing_account_by_card={"C-1": "2941"})
    rep = report(
        [
            line("T1", 1000, reimbursable=False, cardID="C-1"),
            line("T2", 2000, reimbursable=False, cardID="C-2"),
            line("T3", 500),
        ]
    )
    ref = reference([*DIMENSIONS, cpv("A", "2941")])
    v = plan_voucher(_validated(rep, posting, ref=ref), posting)
    credits = [(r.account, r.credit) for r in v.rows if r.source.kind == "credit"]
    assert credits == [
        ("2930", Decimal("5.00")),
        ("2940", Decimal("20.00")),
        ("2941", Decimal("10.00")),
    ]
    # A card account IFS lacks holds the report, naming the setting to fix.
    held = _validated(rep, posting)
    assert codes(held) == ["missing-dimension:A:2941"]
    assert "card_clearing_account_by_card" in held.holds[0].message
    # Without the table, one card row as before (same version).
    plain = plan_voucher(_validated(rep, Posting(), ref=ref), Posting())
    again = plan_voucher(_validated(rep, CardPosting(), ref=ref), CardPosting())
    assert plain.version == again.version
    assert [r.account for r in plain.rows if r.source.kind == "credit"] == ["2930", "2940"]
