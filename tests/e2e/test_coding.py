"""Issue 16's coding over the simulators: what dates a voucher (`posting.voucher_date`) and
the employee on the accrued-expenses row (`posting.employee_id_field`), driving the real
`ml-console` command. The suite's day is 2026-11-30 (tests/conftest.py)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from console.sim.dataset import parse_dataset
from console.sim.server import SimServers
from tests.conftest import small_dataset_raw
from tests.e2e.conftest import make_console, sim_get

ANA, JOSE, KIM = "ana.lee@small.example", "jose.nunez@small.example", "kim.park@small.example"


def _world() -> dict[str, Any]:
    """The small world, where Ana's employee ID (E1001) is a code part G value in IFS, José's
    (E2002) is not, and Kim (a new report of POL-US, 90000006) has none; and a
    Submit-and-Close policy whose report 90000070 was never approved."""
    raw = small_dataset_raw()
    policies = raw["expensify"]["policies"]
    us = next(p for p in policies if p["id"] == "POL-US")
    eu = next(p for p in policies if p["id"] == "POL-EU")
    us["employees"][0]["employeeID"] = "E1001"
    us["employees"][0]["customField2"] = "CC-100"  # Ana's home cost centre
    us["employees"].append({"email": KIM, "role": "user", "submitsTo": ANA})
    eu["employees"][0]["employeeID"] = "E2002"
    policies.append(
        {**copy.deepcopy(us), "id": "POL-SC", "name": "Field team", "approvalMode": "OPTIONAL"}
    )
    reports = raw["expensify"]["reports"]
    first = next(r for r in reports if r["reportID"] == "90000001")
    kim = copy.deepcopy(first)
    kim.update(reportID="90000006", accountEmail=KIM, reportName="Kim's trip")
    closed = copy.deepcopy(first)
    closed.update(
        reportID="90000070", policyID="POL-SC", status="ARCHIVED", approved=None,
        created="2026-11-18 08:00:00", submitted="2026-11-20 17:45:00",
    )  # fmt: skip
    for n, (r, prefix) in enumerate(((kim, "60"), (closed, "70"))):
        for m, line in enumerate(r["transactionList"]):
            line["transactionID"] = f"70000000000000{prefix}{n}{m:02d}"
            line["created"] = f"2026-11-{14 + m}"
    # Kim's report names its project in a report field; one line has no tag at all.
    kim["customField"] = {"Project_Code": "PRJ-1001"}
    kim["transactionList"][0]["tag"] = "Advisory"
    kim["transactionList"][1]["tag"] = ""
    closed["transactionList"][1]["tag"] = ":Apollo"  # no cost centre on this line
    reports += [kim, closed]
    company = raw["ifs"]["companies"][0]
    company["code_part_values"].append(
        {
            "CodePart": "G",
            "CodePartValue": "E1001",
            "Description": "Ana Lee",
            "ValidFrom": "2020-01-01",
            "ValidUntil": "2099-12-31",
        }
    )
    return raw


@pytest.fixture(scope="module")
def world_sims():
    """For dry runs only: they change nothing in either simulator."""
    with SimServers(parse_dataset(_world(), "coding world"), fast=True) as sims:
        yield sims


@pytest.fixture
def fresh_sims():
    """For tests that post."""
    with SimServers(parse_dataset(_world(), "coding world"), fast=True) as sims:
        yield sims


POSTING = {"company_by_policy": {"POL-US": "10", "POL-EU": "10", "POL-SC": "10"}}


def _dry_run(console, **posting: Any) -> dict[str, Any]:
    console.write_config(posting={**POSTING, **posting})
    proc = console.run("--auto", "--dry-run", "--json")
    assert proc.returncode in (0, 3), proc.stderr
    return json.loads(proc.stdout)["plan"]


def _voucher(plan: dict[str, Any], report_id: str) -> dict[str, Any]:
    [voucher] = [v for v in plan["vouchers"] if v["reportID"] == report_id]
    return voucher


@pytest.mark.parametrize(
    ("voucher_date", "approved_report", "closed_report"),
    [
        ("approved", "2026-11-03", "2026-11-20"),  # never approved: its submission
        ("approval", "2026-11-03", "2026-11-20"),  # the name before issue 16
        ("submitted", "2026-11-02", "2026-11-20"),
        ("last-expense", "2026-11-02", "2026-11-15"),  # a closed report too: its expenses
        ("exported", "2026-11-30", "2026-11-30"),  # the console's day (the suite's as-of)
    ],
)
def test_voucher_date_follows_the_configured_moment(
    tmp_path, world_sims, voucher_date, approved_report, closed_report
):
    console = make_console(tmp_path, world_sims)
    plan = _dry_run(console, voucher_date=voucher_date)
    assert _voucher(plan, "90000001")["body"]["VoucherDate"] == approved_report
    assert _voucher(plan, "90000070")["body"]["VoucherDate"] == closed_report


def test_an_exported_date_moves_with_the_day_the_console_posts(tmp_path, fresh_sims):
    """Under "exported" a report planned one day and posted the next is dated the day it is
    posted, not the day it was first planned."""
    console = make_console(tmp_path, fresh_sims)
    console.write_config(posting={**POSTING, "voucher_date": "exported"})
    env = {"ML_CONSOLE_AS_OF": "2026-11-29"}
    first = console.run("--auto", "--dry-run", "--json", env=env)
    plan = json.loads(first.stdout)["plan"]
    assert _voucher(plan, "90000001")["body"]["VoucherDate"] == "2026-11-29", first.stderr
    code, _summary, err = console.auto()
    assert code == 3, err
    posted = [
        v
        for v in sim_get(fresh_sims.ifs_url, "/__sim/vouchers")
        if v["ReferenceNumber"].startswith("EXP:90000001:")
    ]
    assert [v["VoucherDate"] for v in posted] == ["2026-11-30"]


def test_without_an_employee_field_the_liability_names_no_employee(tmp_path, world_sims):
    console = make_console(tmp_path, world_sims)
    plan = _dry_run(console)
    rows = _voucher(plan, "90000001")["body"]["VoucherRowArray"]
    [accrued] = [r for r in rows if r["Account"] == "2930"]
    assert accrued.keys().isdisjoint({"CodeG", "PartyTypeId"})
    assert not [h for h in plan["held"] if h["reason"].startswith("missing-employee-id")]


def test_the_accrued_expenses_row_carries_the_employee_in_a_code_part(tmp_path, fresh_sims):
    console = make_console(tmp_path, fresh_sims)
    console.write_config(
        posting={
            **POSTING,
            "employee_id_field": "employeeCustomField1",
            "employee_code_part": "G",
        }
    )
    proc = console.run("--auto", "--dry-run")
    # The dry run shows the employee on the credit row.
    assert any(
        "2930" in line and "G=E1001" in line and "reimbursable" in line
        for line in proc.stdout.splitlines()
    ), proc.stdout
    code, summary, err = console.auto()
    assert code == 3, err
    assert {v["reportID"] for v in summary["vouchers"]} == {"90000001", "90000002", "90000070"}
    in_ifs = {
        v["ReferenceNumber"].split(":")[1]: v
        for v in sim_get(fresh_sims.ifs_url, "/__sim/vouchers")
    }
    rows = in_ifs["90000001"]["VoucherRowArray"]
    [accrued] = [r for r in rows if r["Account"] == "2930"]
    assert accrued["CodeG"] == "E1001" and accrued["CreditAmount"] == 505.60
    assert all(r.get("CodeG") is None for r in rows if r["Account"] != "2930")
    # A card report's clearing row owes the card issuer: no employee there; its refund
    # (reimbursable, negative) debits 2930 for Ana.
    card = in_ifs["90000002"]["VoucherRowArray"]
    assert [r.get("CodeG") for r in card if r["Account"] == "2940"] == [None]
    assert [(r.get("CodeG"), r["DebetAmount"]) for r in card if r["Account"] == "2930"] == [
        ("E1001", 12.0)
    ]

    held = {h["reportID"]: h for h in json.loads(console.run("held", "--json").stdout)}
    assert held["90000006"]["reason"] == f"missing-employee-id:{KIM}"
    assert "Custom Field 1" in held["90000006"]["message"]
    assert held["90000003"]["reason"] == "missing-dimension:G:E2002"

    # The close lists what 2930 owes each employee, from the vouchers read back from IFS:
    # Ana's two accruals less her refund.
    proc = console.run("close", "--period", "2026-11", "--json")
    assert proc.returncode in (0, 3), proc.stderr
    assert json.loads(proc.stdout)["accruedByEmployee"] == [
        {"company": "10", "employee": "E1001", "currency": "USD", "balance": "999.20"}
    ]
    text = console.run("close", "--period", "2026-11").stdout
    assert "Accrued expenses per employee at the end of 2026-11" in text
    assert any("E1001" in line and "999.20" in line for line in text.splitlines())


def test_the_accrued_expenses_row_carries_the_employee_as_its_party(tmp_path, fresh_sims):
    console = make_console(tmp_path, fresh_sims)
    console.write_config(
        posting={**POSTING, "employee_id_field": "employeeCustomField1", "employee_on": "party"}
    )
    code, summary, err = console.auto()
    assert code == 3, err
    posted = {v["reportID"] for v in summary["vouchers"]}
    assert {"90000001", "90000003"} <= posted and "90000006" not in posted
    in_ifs = {
        v["ReferenceNumber"].split(":")[1]: v
        for v in sim_get(fresh_sims.ifs_url, "/__sim/vouchers")
    }
    for rid, employee in (("90000001", "E1001"), ("90000003", "E2002")):
        rows = in_ifs[rid]["VoucherRowArray"]
        assert [r.get("PartyTypeId") for r in rows if r["Account"] == "2930"] == [employee]
        assert all(r.get("CodeG") is None for r in rows)


def test_code_parts_come_from_report_fields_and_employee_defaults(tmp_path, world_sims):
    """Tag first, then the report field, then the employee's default: Kim's untagged line
    takes its project from the report field, and its cost centre from nobody (Kim has no
    default); Ana's line without a cost centre takes her default; tagged lines keep their
    tags."""
    console = make_console(tmp_path, world_sims)
    console.write_config(
        posting={
            **POSTING,
            "code_part_by_report_field": {"Project_Code": "C"},
            "code_part_by_employee_field": {"employeeCustomField2": "B"},
        }
    )
    proc = console.run("--auto", "--dry-run")
    assert "(C from report field Project_Code)" in proc.stdout, proc.stdout
    plan = _dry_run(
        console,
        code_part_by_report_field={"Project_Code": "C"},
        code_part_by_employee_field={"employeeCustomField2": "B"},
    )
    kim = _voucher(plan, "90000006")
    rows = {r["Text"].split()[0]: r for r in kim["body"]["VoucherRowArray"]}
    tagged, untagged = sorted(t for t in rows if t.startswith("7000"))
    assert (rows[tagged]["CodeB"], rows[tagged]["CodeC"]) == ("CC-100", "PRJ-1001")
    assert "CodeB" not in rows[untagged] and rows[untagged]["CodeC"] == "PRJ-1001"
    froms = {s["transactionID"]: s.get("codePartsFrom") for s in kim["sources"]}
    assert froms[tagged] == {"C": "report field Project_Code"}
    # Ana's closed report: the line without a cost centre takes her default.
    closed = _voucher(plan, "90000070")
    [line] = [r for r in closed["sources"] if r.get("codePartsFrom")]
    assert line["codePartsFrom"] == {"B": "employee default employeeCustomField2"}
    [row] = [r for r in closed["body"]["VoucherRowArray"] if r["RowNo"] == line["RowNo"]]
    assert (row["CodeB"], row["CodeC"]) == ("CC-100", "PRJ-1001")
    # Ana's first report: both code parts from its tags; nothing from elsewhere.
    ana = _voucher(plan, "90000001")
    assert all(s.get("codePartsFrom") is None for s in ana["sources"])


def test_the_demo_world_codes_client_visits_to_their_engagement(console):
    """The demo's client-billable reports carry an Engagement report field; the demo config
    books it to code part D, a value IFS knows (the demo month's tie-out, per account and
    cost centre, is unchanged: tests/close/test_close_e2e.py)."""
    proc = console.run("--auto", "--dry-run", "--json")
    assert proc.returncode == 3, proc.stderr
    plan = json.loads(proc.stdout)["plan"]
    engaged = [
        (v, s)
        for v in plan["vouchers"]
        for s in v["sources"]
        if (s.get("codePartsFrom") or {}).get("D") == "report field Engagement"
    ]
    assert len({v["reportID"] for v, _ in engaged}) >= 20
    # A report field is the report's: every line of a report has the same engagement.
    by_report: dict[str, set[str]] = {}
    for v, s in engaged:
        [row] = [r for r in v["body"]["VoucherRowArray"] if r["RowNo"] == s["RowNo"]]
        by_report.setdefault(v["reportID"], set()).add(row["CodeD"])
    assert all(len(codes) == 1 and next(iter(codes)).startswith("ENG-1") for codes in
               by_report.values())  # fmt: skip
    # No report is held for an engagement IFS lacks.
    assert not [h for h in plan["held"] if ":D:" in h["reason"]]
