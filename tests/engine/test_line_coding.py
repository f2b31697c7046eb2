"""console/line_coding.py through the stages: billable lines to their project and activity,
the quantity of distance and per-diem lines, and the receipt on the expense row."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from console.config import PostingConfig
from console.ifs.models import CodePartValue
from console.mapping import MappingOverrides, MappingRule
from console.plan import build_plan, plan_voucher
from console.validate import TEXT_MAX

from .engine_world import ALWAYS, DIMENSIONS, Posting, codes, cpv, line, reference, report, run


def BillPosting(**keys: Any) -> PostingConfig:
    return Posting(**{"billable_project_code_part": "C", **keys})


def _expense_row(v, tid="T1"):
    [row] = [r for r in v.rows if r.source.transaction_id == tid and r.source.kind == "line"]
    return row


# ---------------------------------------------------------------- billable lines


def test_a_billable_line_takes_the_project_of_the_report_field_it_is_billed_to():
    posting = BillPosting(billable_project_from="report:Client_Project")
    ref = reference([*DIMENSIONS, cpv("C", "PRJ-77")])
    rep = report(
        [line("T1", 10000, billable=True), line("T2", 2500)],
        reportFields={"Client_Project": "PRJ-77"},
    )
    validated = run(rep, posting, ref)
    assert validated.ok, validated.holds
    v = plan_voucher(validated, posting)
    # The billable line is booked to the client's project; the other keeps its tag's.
    assert dict(_expense_row(v, "T1").code_parts)["C"] == "PRJ-77"
    assert dict(_expense_row(v, "T2").code_parts)["C"] == "PRJ-1"
    assert ("C", "report field Client_Project") in _expense_row(v, "T1").source.parts_from


def test_a_billable_line_without_a_project_is_held_with_what_to_set():
    posting = BillPosting()
    rep = report([line("T1", 10000, billable=True, tag="New Lab")])
    v = run(rep, posting)
    assert codes(v) == ["billable-without-project"]
    assert "T1" in v.holds[0].message and "billable" in v.holds[0].message
    # The same line not billable posts as before, with no project.
    assert run(report([line("T1", 10000, tag="New Lab")]), posting).ok


def test_a_billable_project_is_validated_like_every_code_part_value():
    posting = BillPosting(billable_project_from="report:Client_Project")
    rep = report([line("T1", 10000, billable=True)], reportFields={"Client_Project": "PRJ-404"})
    v = run(rep, posting)
    assert codes(v) == ["missing-dimension:C:PRJ-404"]
    assert "report field Client_Project" in v.holds[0].message
    # The operator can map the value, as any report field value.
    rules = MappingOverrides.from_rules(
        [MappingRule("", "report-field:Client_Project", "PRJ-404", "PRJ-1")]
    )
    assert run(rep, posting, overrides=rules).ok


def test_the_activity_goes_on_the_row_as_ifs_s_activity_number():
    posting = BillPosting(billable_activity_from="report:Activity")
    rep = report([line("T1", 10000, billable=True)], reportFields={"Activity": "1042"})
    validated = run(rep, posting)
    v = plan_voucher(validated, posting)
    row = _expense_row(v)
    assert row.to_ifs()["ProjectActivityId"] == 1042 and row.to_ifs()["CodeC"] == "PRJ-1"
    plan = build_plan([validated], posting)
    assert "ProjectActivityId=1042" in plan.render_text()
    assert plan.to_csv().splitlines()[1].endswith(",1042")
    # No activity, or one that is not IFS's sequence number: held.
    assert codes(run(report([line("T1", 10000, billable=True)]), posting)) == [
        "billable-without-activity"
    ]
    bad = report([line("T1", 10000, billable=True)], reportFields={"Activity": "Design"})
    assert codes(run(bad, posting)) == ["invalid-activity:Design"]


def test_a_project_from_a_tag_level_uses_that_tag_s_code():
    # The Region level is not booked for other lines; billable lines bill its code.
    posting = BillPosting(billable_project_code_part="D", billable_project_from="tag:Region")
    ref = reference([*DIMENSIONS, cpv("D", "EM")])
    rep = report([line("T1", 10000, billable=True, tag="New Lab:Apollo:EMEA")])
    v = plan_voucher(run(rep, posting, ref), posting)
    assert dict(_expense_row(v).code_parts)["D"] == "EM"
    assert codes(run(report([line("T1", 10000, billable=True)]), posting, ref)) == [
        "billable-without-project"
    ]


def test_billing_settings_are_checked_and_off_by_default():
    assert PostingConfig().billable_project_code_part == ""
    assert PostingConfig().receipt_on_row == ""
    with pytest.raises(ValidationError, match="B to J"):
        PostingConfig(billable_project_code_part="A")
    with pytest.raises(ValidationError, match="tag:<level>"):
        PostingConfig(billable_project_from="Project")
    assert PostingConfig(billable_project_from="tag:Project").billable_project_from == "tag:Project"
    # Off: a billable line posts exactly as before.
    rep = report([line("T1", 10000, billable=True)])
    before = plan_voucher(run(rep, Posting()), Posting())
    off = BillPosting(billable_project_code_part="")
    assert plan_voucher(run(rep, off), off).version == before.version


# ---------------------------------------------------------------- quantity


QUANTITY_6120 = CodePartValue(
    Company="10",
    CodePart="A",
    CodePartValue="6120",
    ValidFrom=ALWAYS[0],
    ValidUntil=ALWAYS[1],
    ReqQuantity="Mandatory",
)
QUANTITY_REF = reference([d for d in DIMENSIONS if d.CodePartValue != "6120"] + [QUANTITY_6120])


def _mileage(tid: str, count: str | None) -> dict[str, object]:
    units = {"unitsCount": Decimal(count), "unitsUnit": "mi"} if count else {}
    return line(tid, 2948, category="Meals", merchant="Distance", **units)


def test_an_account_demanding_a_quantity_posts_the_units_count():
    rep = report([_mileage("T1", "44"), line("T2", 10000)])
    validated = run(rep, Posting(), QUANTITY_REF)
    assert validated.ok, validated.holds
    v = plan_voucher(validated, Posting())
    assert _expense_row(v, "T1").to_ifs()["Quantity"] == Decimal("44")
    # Only the account that demands it gets a quantity.
    assert "Quantity" not in _expense_row(v, "T2").to_ifs()
    csv_row = build_plan([validated], Posting()).to_csv().splitlines()[1]
    assert csv_row.endswith(",44,")


def test_only_a_line_without_units_holds_on_such_an_account():
    rep = report([_mileage("T1", "12.5"), _mileage("T2", None)])
    v = run(rep, Posting(), QUANTITY_REF)
    assert codes(v) == ["account-demand:6120:quantity"]
    assert "T2" in v.holds[0].message and "no units" in v.holds[0].message


def test_units_on_an_account_without_the_demand_change_nothing():
    rep = report([_mileage("T1", "44")])
    plain = report([_mileage("T1", None)])
    assert (
        plan_voucher(run(rep, Posting()), Posting()).version
        == plan_voucher(run(plain, Posting()), Posting()).version
    )


# ---------------------------------------------------------------- the receipt


URL = "https://www.expensify.com/receipts/w_3b5c0a1d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b.jpg"


def test_the_receipt_link_goes_on_the_row_whole_and_the_merchant_gives_way():
    posting = BillPosting(billable_project_code_part="", receipt_on_row="url")
    long_merchant = "A restaurant with a very long name " * 6
    rep = report([line("T1", 10000, merchant=long_merchant, receiptURL=URL, receiptID="R1")])
    v = plan_voucher(run(rep, posting), posting)
    text = _expense_row(v).text
    assert text.startswith("T1 A restaurant") and text.endswith(" " + URL)
    assert len(text) <= TEXT_MAX and "…" in text
    assert _expense_row(v).note == ""


def test_a_receipt_link_too_long_is_posted_as_the_receipt_s_id_and_said_so():
    posting = BillPosting(billable_project_code_part="", receipt_on_row="url")
    long_url = "https://receipts.example/" + "x" * 200
    rep = report([line("T1", 10000, receiptURL=long_url, receiptID="R-991")])
    validated = run(rep, posting)
    v = plan_voucher(validated, posting)
    assert _expense_row(v).text == "T1 Merchant T1 receipt R-991"
    assert "posted as receipt R-991" in _expense_row(v).note
    assert "does not fit" in build_plan([validated], posting).render_text()


def test_receipts_off_or_by_id():
    rep = report([line("T1", 10000, receiptURL=URL, receiptID="R1")])
    off = BillPosting(billable_project_code_part="")
    assert _expense_row(plan_voucher(run(rep, off), off)).text == "T1 Merchant T1"
    by_id = BillPosting(billable_project_code_part="", receipt_on_row="id")
    assert _expense_row(plan_voucher(run(rep, by_id), by_id)).text == "T1 Merchant T1 receipt R1"
