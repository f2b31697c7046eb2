"""Accrual reversals, watching posted reports and changes after posting, end to end: the real
command against the small world's simulators (period 2026-11 open, 2026-12 open)."""

from __future__ import annotations

import copy
from collections import Counter
from decimal import Decimal
from typing import Any

from tests.conftest import small_dataset_raw
from tests.e2e.conftest import sim_get, sim_post

DEC_1 = {"ML_CONSOLE_AS_OF": "2026-12-01"}
NOV_30 = {"ML_CONSOLE_AS_OF": "2026-11-30"}


def vouchers(sims: Any) -> list[dict[str, Any]]:
    return sim_get(sims.ifs_url, "/__sim/vouchers")


def refs(sims: Any, prefix: str) -> Counter[str]:
    return Counter(
        v["ReferenceNumber"].split(":")[1]
        for v in vouchers(sims)
        if v["ReferenceNumber"].startswith(prefix)
    )


def raw_report(rid: str) -> dict[str, Any]:
    return copy.deepcopy(
        next(r for r in small_dataset_raw()["expensify"]["reports"] if r["reportID"] == rid)
    )


def test_reversal_posts_once_on_first_day_of_next_period(small_console, small_sims):
    code, s, err = small_console.auto(env=NOV_30)
    assert code == 3, err  # 90000004 is held in the small world
    assert s["posted"] == 3 and s["reversals"] == []
    code, s, err = small_console.auto(env=DEC_1)
    assert [r["reportID"] for r in s["reversals"]] == ["90000001", "90000002", "90000003"], err
    rev = {
        v["ReferenceNumber"]: v
        for v in vouchers(small_sims)
        if v["ReferenceNumber"].startswith("REV:")
    }
    exp = {
        v["ReferenceNumber"]: v
        for v in vouchers(small_sims)
        if v["ReferenceNumber"].startswith("EXP:")
    }
    r1 = next(v for k, v in rev.items() if k.startswith("REV:90000001:"))
    a1 = next(v for k, v in exp.items() if k.startswith("EXP:90000001:"))
    assert r1["ReferenceNumber"].split(":")[2] == a1["ReferenceNumber"].split(":")[2]
    assert str(r1["VoucherDate"])[:10] == "2026-12-01"
    # Mirror: debits and credits swapped row by row.
    assert [(r["Account"], r.get("CreditAmount")) for r in r1["VoucherRowArray"]] == [
        (r["Account"], r.get("DebetAmount")) for r in a1["VoucherRowArray"]
    ]
    # 90000002 mixes card and reimbursable lines: only the accrued-expenses part is reversed.
    r2 = next(v for k, v in rev.items() if k.startswith("REV:90000002:"))
    assert "2940" not in {r["Account"] for r in r2["VoucherRowArray"]}
    assert refs(small_sims, "REV:") == Counter(["90000001", "90000002", "90000003"])
    before = refs(small_sims, "REV:")
    code, s, err = small_console.auto(env=DEC_1)
    assert s["reversals"] == [] and refs(small_sims, "REV:") == before  # exactly once
    audit = small_console.run("audit", "export").stdout
    assert '"reversal-planned"' in audit and '"reversal-posted"' in audit


def test_on_reimbursement_mode_follows_expensify(small_console, small_sims):
    small_console.write_config(posting={"reversal": {"2930": "on-reimbursement"}})
    small_console.auto(env=DEC_1)
    assert refs(small_sims, "REV:") == Counter()
    report = raw_report("90000001")
    report.update(status="REIMBURSED", reimbursed="2026-11-20 09:00:00")
    sim_post(small_sims.expensify_url, "/__sim/reports", report)
    _code, s, err = small_console.auto()
    assert [r["reportID"] for r in s["reversals"]] == ["90000001"], err
    rev = next(v for v in vouchers(small_sims) if v["ReferenceNumber"].startswith("REV:"))
    assert str(rev["VoucherDate"])[:10] == "2026-11-20"
    small_console.auto()
    assert refs(small_sims, "REV:") == Counter(["90000001"])


def test_changed_report_waits_for_confirmation_then_posts_once(small_console, small_sims):
    small_console.auto(env=NOV_30)
    report = raw_report("90000001")
    report["transactionList"][0]["amount"] = 50000
    report["transactionList"][0]["convertedAmount"] = 50000
    sim_post(small_sims.expensify_url, "/__sim/reports", report)
    code, s, _err = small_console.auto(env=NOV_30)
    assert code == 3
    assert {"reportID": "90000001", "reason": "changed-after-posting:90000001"} in s["held_reports"]
    assert refs(small_sims, "EXP:")["90000001"] == 1
    proc = small_console.run("--auto", "--dry-run", env=NOV_30)
    assert "CHANGED AFTER POSTING report 90000001" in proc.stdout
    assert "reversal REV:90000001:" in proc.stdout and "new accrual EXP:90000001:" in proc.stdout
    code, s, _err = small_console.auto(env=NOV_30)
    assert code == 3 and refs(small_sims, "EXP:")["90000001"] == 1  # --auto never confirms
    proc = small_console.run("replay", "90000001", "--confirm-change", env=NOV_30)
    assert proc.returncode in (0, 3), proc.stderr
    assert refs(small_sims, "REV:")["90000001"] == 1
    assert refs(small_sims, "EXP:")["90000001"] == 2
    debits = {
        Decimal(str(r["DebetAmount"]))
        for v in vouchers(small_sims)
        if v["ReferenceNumber"].startswith("EXP:90000001:")
        for r in v["VoucherRowArray"]
        if r.get("DebetAmount") is not None
    }
    assert Decimal("500") in debits  # the new version's amount
    code, s, _err = small_console.auto(env=NOV_30)
    assert not any(h["reason"].startswith("changed-after") for h in s["held_reports"])
    assert refs(small_sims, "REV:")["90000001"] == 1 and refs(small_sims, "EXP:")["90000001"] == 2
    # Month end: the old accrual is reversed already, the new one gets its own reversal.
    small_console.auto(env=DEC_1)
    rev = [
        v["ReferenceNumber"]
        for v in vouchers(small_sims)
        if v["ReferenceNumber"].startswith("REV:90000001:")
    ]
    assert len(rev) == 2 and len(set(rev)) == 2


def test_rejected_after_approval_is_reversed_on_confirmation(small_console, small_sims):
    small_console.auto(env=NOV_30)
    report = raw_report("90000001")
    report["status"] = "REJECTED"
    sim_post(small_sims.expensify_url, "/__sim/reports", report)
    code, s, _ = small_console.auto(env=NOV_30)
    assert code == 3
    assert {"reportID": "90000001", "reason": "changed-after-posting:90000001"} in s["held_reports"]
    proc = small_console.run("replay", "90000001", "--confirm-change", env=NOV_30)
    assert proc.returncode in (0, 3), proc.stderr
    rev = [v for v in vouchers(small_sims) if v["ReferenceNumber"].startswith("REV:90000001:")]
    assert len(rev) == 1 and str(rev[0]["VoucherDate"])[:10] == "2026-11-03"
    code, s, _ = small_console.auto(env=DEC_1)
    assert refs(small_sims, "REV:")["90000001"] == 1 and refs(small_sims, "EXP:")["90000001"] == 1
    assert not any(h["reportID"] == "90000001" for h in s["held_reports"])


def test_unknown_outcome_on_reversal_is_reconciled(small_console, small_sims):
    small_console.auto(env=NOV_30)
    sim_post(
        small_sims.ifs_url,
        "/__sim/faults",
        {
            "route": "VoucherEntryAssistantHandling",
            "method": "POST",
            "fault": "drop-after",
            "count": 1,
        },
    )
    _code, _s, err = small_console.auto(env=DEC_1)
    small_console.auto(env=DEC_1)
    counts = refs(small_sims, "REV:")
    assert counts["90000001"] == 1 and counts["90000002"] == 1, err
    assert all(n == 1 for n in counts.values())
    audit = small_console.run("audit", "export").stdout
    assert "found in IFS for REV:" in audit


def test_reversal_refused_by_ifs_fails_the_run_and_is_retried(small_console, small_sims):
    small_console.auto(env=NOV_30)
    sim_post(
        small_sims.ifs_url,
        "/__sim/faults",
        {
            "route": "VoucherEntryAssistantHandling",
            "method": "POST",
            "fault": "status",
            "status": 400,
            "count": 1,
        },
    )
    code, s, err = small_console.auto(env=DEC_1)
    refused = [f for f in s["failed_reports"] if f["reason"].startswith("reversal: ")]
    assert len(refused) == 1 and s["failed"] >= 1, s  # never a quiet exit 0
    assert code == 3, err
    assert len(s["reversals"]) == 2
    # The next cycle posts the refused one; every accrual is reversed exactly once.
    code, s, err = small_console.auto(env=DEC_1)
    assert [r["reportID"] for r in s["reversals"]] == [refused[0]["reportID"]], s
    assert not [f for f in s["failed_reports"] if f["reason"].startswith("reversal: ")]
    assert refs(small_sims, "REV:") == Counter(["90000001", "90000002", "90000003"])


def test_a_kill_at_every_step_of_a_reversal_posts_it_once(small_console, small_sims):
    """The posting ledger's exactly-once, proved for reversals as the crash suite proves it for
    accruals and test_card_accrual for card vouchers: SIGKILL after the intent is committed,
    after IFS answered (outcome not recorded), and after the outcome; then clean cycles."""
    small_console.auto(env=NOV_30)
    kills = []
    for point in ("reversal-intent", "reversal-post:2", "reversal-posted"):
        proc = small_console.run(
            "--auto", "--json", env={**DEC_1, "ML_CONSOLE_TEST_CRASH_AT": point}
        )
        kills.append(proc.returncode)
    assert kills == [-9, -9, -9]
    for _ in range(2):
        code, _s, err = small_console.auto(env=DEC_1)
        assert code == 3, err  # 90000004 stays held
    assert refs(small_sims, "REV:") == Counter(["90000001", "90000002", "90000003"])
    audit = small_console.run("audit", "export").stdout
    assert "found in IFS for REV:" in audit  # the answer lost at the kill was looked up
    assert small_console.run("audit", "verify").returncode == 0
