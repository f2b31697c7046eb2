"""IFS's own rules before posting, driving the real `ml-console` against the simulators:
per-account demands (AccountsHandling's ReqCodeB…J, ReqQuantity, ReqText), a period's
status for the console's user group (UserGroupPerPeriodHandling), and vouchers that IFS
updates to the general ledger between posting and the lookup that settles an unknown
outcome (issue #13).

Each world is the small world (tests/conftest.py) with what the test needs added to its
dataset; the console runs as on SUITE_AS_OF (2026-11-30), the reports are approved in
November 2026.
"""

from __future__ import annotations

import contextlib
import copy
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from console import money
from console.sim.dataset import parse_dataset
from console.sim.demo import DEMO_EXPORT_LABEL
from tests.conftest import SMALL_ATTENTION, small_dataset_raw
from tests.e2e.conftest import Console, make_console, sim_get, sim_post
from tests.e2e.test_restored_state import backup, restore

LABEL = DEMO_EXPORT_LABEL
SMALL_POSTED = ["90000001", "90000002", "90000003"]  # the small world's postable reports


def vouchers(sims: Any) -> list[dict[str, Any]]:
    return list(money.loads(httpx.get(sims.ifs_url + "/__sim/vouchers", timeout=30).content))


def posted_reports(sims: Any) -> Counter[str]:
    return Counter(v["ReferenceNumber"].split(":")[1] for v in vouchers(sims))


def labels(sims: Any) -> dict[str, list[str]]:
    return {r["reportID"]: r["labels"] for r in sim_get(sims.expensify_url, "/__sim/reports")}


def reasons(summary: dict[str, Any]) -> dict[str, str]:
    return {h["reportID"]: h["reason"] for h in summary["held_reports"]}


@pytest.fixture
def serve_world() -> Iterator[Any]:
    """Starts the simulators on a dataset (a raw dict); stops them after the test."""
    from console.sim.server import SimServers

    with contextlib.ExitStack() as stack:

        def serve(raw: dict[str, Any]) -> SimServers:
            return stack.enter_context(SimServers(parse_dataset(raw, "test world"), fast=True))

        yield serve


# ---------------------------------------------------------------- per-account demands
# (category, account, demand on the account in IFS, merchant, tag)
DEMAND_CASES = {
    "90000011": ("Mobile", "6250", {"ReqCodeB": "M"}, "Verizon Wireless", ""),
    "90000012": ("Training", "6260", {"ReqCodeC": "S"}, "Coursera", "Advisory:Apollo"),
    "90000013": ("Fuel", "6270", {"ReqQuantity": "M"}, "Shell", "Advisory:Internal"),
    "90000014": ("Gifts", "6280", {"ReqText": "M"}, "Tiffany & Co", "Advisory:Internal"),
}
DEMAND_HOLDS = {
    "90000011": "code-part-demand:6250:B:mandatory",  # no cost centre on the line
    "90000012": "code-part-demand:6260:C:blocked",  # a project on an account that blocks it
    "90000013": "account-demand:6270:quantity",  # Expensify carries no quantity
}


def demands_world() -> dict[str, Any]:
    """The small world plus four accounts with IFS demands and one report on each."""
    raw = small_dataset_raw()
    company = raw["ifs"]["companies"][0]
    template = next(r for r in raw["expensify"]["reports"] if r["reportID"] == "90000001")
    for n, (rid, (category, account, demand, merchant, tag)) in enumerate(
        DEMAND_CASES.items(), start=1
    ):
        company["code_part_values"].append(
            {"CodePart": "A", "CodePartValue": account, "Description": category, **demand}
        )
        for policy in raw["expensify"]["policies"]:
            if all(c["name"] != category for c in policy["categories"]):
                policy["categories"].append({"name": category, "glCode": account, "enabled": True})
        report = copy.deepcopy(template)
        line = dict(template["transactionList"][0])
        line.update(
            transactionID=f"70000000000000001{n:02d}",
            merchant=merchant,
            amount=1000 * n,
            convertedAmount=1000 * n,
            category=category,
            categoryGlCode=account,
            tag=tag,
        )
        report.update(
            reportID=rid,
            reportName=f"Report {rid}",
            approved=f"2026-11-1{n} 09:00:00",
            transactionList=[line],
        )
        raw["expensify"]["reports"].append(report)
    return raw


def test_account_demands_hold_their_report_and_post_once_fixed(
    tmp_path: Path, serve_world: Any
) -> None:
    sims = serve_world(demands_world())
    console = make_console(tmp_path, sims)
    code, first, err = console.auto()
    assert code == 3, err
    expected = {**DEMAND_HOLDS, **{h["reportID"]: h["reason"] for h in SMALL_ATTENTION}}
    assert reasons(first) == expected
    # The rest of the batch posts: the small world's three, and the report on an account
    # that demands a text (every row the console posts carries one).
    assert posted_reports(sims) == Counter([*SMALL_POSTED, "90000014"])
    (gift,) = [v for v in vouchers(sims) if v["ReferenceNumber"].split(":")[1] == "90000014"]
    gift_row = next(r for r in gift["VoucherRowArray"] if r["Account"] == "6280")
    assert gift_row["Text"].startswith("7000000000000000104")
    held = {h["reportID"] for h in first["held_reports"]}
    assert not any(LABEL in labels(sims)[rid] for rid in held)
    # The console says what IFS demands and how to fix it.
    proc = console.run("held")
    assert "requires code part B on account 6250" in proc.stdout
    assert "blocks code part C on account 6260" in proc.stdout
    assert "requires a quantity on account 6270" in proc.stdout

    # IFS's administrator relaxes each demand; the next cycle posts those reports once.
    for category, account, _demand, _merchant, _tag in list(DEMAND_CASES.values())[:3]:
        sim_post(
            sims.ifs_url,
            "/__sim/code-part-values",
            {"Company": "10", "CodePart": "A", "CodePartValue": account, "Description": category},
        )
    code, second, err = console.auto()
    assert code == 3, err  # 90000004 is still held for its missing cost centre
    assert reasons(second) == {h["reportID"]: h["reason"] for h in SMALL_ATTENTION}
    assert sorted(v["reportID"] for v in second["vouchers"]) == sorted(DEMAND_HOLDS)
    assert posted_reports(sims) == Counter([*SMALL_POSTED, *DEMAND_CASES])  # each once
    assert all(LABEL in labels(sims)[rid] for rid in DEMAND_CASES)
    code, third, err = console.auto()
    assert third["posted"] == 0 and third["vouchers"] == [], err
    assert posted_reports(sims) == Counter([*SMALL_POSTED, *DEMAND_CASES])


# ---------------------------------------------------------------- periods per user group
def user_group_world() -> dict[str, Any]:
    """November 2026 is open, except for the voucher user group AC (the console's default),
    for which it is closed; the group GL2 has no status of its own (the period's: open)."""
    raw = small_dataset_raw()
    raw["ifs"]["companies"][0]["user_groups"] = [
        {
            "UserGroup": "AC",
            "periods": [{"AccountingYear": 2026, "AccountingPeriod": 11, "PeriodStatus": "Closed"}],
        },
        {"UserGroup": "GL2"},
    ]
    return raw


def test_a_period_closed_for_the_consoles_user_group_only_holds_until_the_group_changes(
    tmp_path: Path, serve_world: Any
) -> None:
    sims = serve_world(user_group_world())
    console = make_console(tmp_path, sims)
    code, first, err = console.auto()
    assert code == 3 and first["posted"] == 0, err
    # Held as a closed period, though the period is open for other user groups.
    assert reasons(first) == {
        "90000001": "closed-period:2026-11",
        "90000002": "closed-period:2026-11",
        "90000003": "closed-period:2026-11",
        "90000004": "closed-period:2026-11",
    }
    assert vouchers(sims) == []
    assert sim_get(sims.ifs_url, "/__sim/temp-vouchers") == []

    # The console posts as a user group for which November is open.
    console.write_config(ifs={"user_group": "GL2"})
    code, second, err = console.auto()
    assert code == 3, err
    assert reasons(second) == {h["reportID"]: h["reason"] for h in SMALL_ATTENTION}
    assert posted_reports(sims) == Counter(SMALL_POSTED)  # each once
    assert {v["UserGroup"] for v in vouchers(sims)} == {"GL2"}
    code, third, err = console.auto()
    assert third["posted"] == 0, err
    assert posted_reports(sims) == Counter(SMALL_POSTED)


# ---------------------------------------------------------------- the hold table and the GL
def _audit_count(console: Console, event: str) -> int:
    with sqlite3.connect(console.home / "state.sqlite3") as db:
        row = db.execute("SELECT COUNT(*) FROM audit_events WHERE type = ?", (event,)).fetchone()
    return int(row[0])


def test_vouchers_updated_to_the_gl_before_the_lookup_are_found_not_posted_again(
    tmp_path: Path, serve_world: Any
) -> None:
    """IFS updates every voucher to the GL as soon as it is created, and the answer to the
    first posting is lost after IFS committed it: the lookup by ReferenceNumber finds the
    voucher in the GL's rows (no longer in the hold table), and nothing is posted twice —
    neither then, nor in the next cycle, nor from a state file restored from a backup taken
    before a voucher was posted (the read before posting searches the GL too)."""
    sims = serve_world(small_dataset_raw())
    sim_post(sims.ifs_url, "/__sim/settings", {"gl_update_delay_s": 0})
    route = r"VoucherEntryAssistantHandling\.svc/\$batch"
    sim_post(
        sims.ifs_url,
        "/__sim/faults",
        {"route": route, "method": "POST", "fault": "drop-after", "count": 1},
    )
    console = make_console(tmp_path, sims)
    code, first, err = console.auto()
    assert code == 3, err
    assert first["posted"] == len(SMALL_POSTED) and first["failed"] == 0
    assert posted_reports(sims) == Counter(SMALL_POSTED)
    assert all(v["in_gl"] for v in vouchers(sims))
    assert sim_get(sims.ifs_url, "/__sim/faults")[0]["fired"] == 1
    assert _audit_count(console, "reconciled") == 1  # the lost answer, found in the GL
    held_copy = backup(console.home, "while-held.sqlite3")  # 90000004 held: no CC-410

    sim_post(
        sims.ifs_url,
        "/__sim/code-part-values",
        {"Company": "10", "CodePart": "B", "CodePartValue": "CC-410", "Description": "New Lab"},
    )
    code, second, err = console.auto()
    assert code == 0 and second["posted"] == 1, err
    everything = Counter([*SMALL_POSTED, "90000004"])
    assert posted_reports(sims) == everything
    assert all(v["in_gl"] for v in vouchers(sims))

    restore(console.home, held_copy)  # the state knows nothing of 90000004's voucher
    code, third, err = console.auto()
    assert code == 0 and third["posted"] == 0, err
    assert posted_reports(sims) == everything  # each once
    # Found in the GL by the cycle's check of what IFS holds (the newest voucher of ours is
    # one the restored state does not know), recorded before anything was planned.
    exported = console.run("audit", "export").stdout
    assert "90000004" in exported and "but the state did not know it" in exported


def test_a_crash_before_the_local_commit_is_reconciled_from_the_gl(
    tmp_path: Path, serve_world: Any
) -> None:
    """The console dies right after IFS created a voucher; IFS's GL update runs before the
    console is started again, which finds the voucher in the GL and posts nothing twice."""
    sims = serve_world(small_dataset_raw())
    console = make_console(tmp_path, sims)
    proc = console.run("--auto", "--json", env={"ML_CONSOLE_TEST_CRASH_AFTER_POST": "1"})
    assert proc.returncode == 137, proc.stderr
    assert len(vouchers(sims)) == 1
    assert sim_post(sims.ifs_url, "/__sim/update-gl", {}) == {"updated": 1}
    code, summary, err = console.auto()
    assert code == 3, err
    assert summary["posted"] == len(SMALL_POSTED) - 1  # the third was found, not posted
    assert posted_reports(sims) == Counter(SMALL_POSTED)  # each once
    assert _audit_count(console, "reconciled") == 1
    assert all(LABEL in labels(sims)[rid] for rid in SMALL_POSTED)
