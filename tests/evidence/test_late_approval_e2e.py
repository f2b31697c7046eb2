"""A report approved before the poll cursor (so approvedAfter never returns it) is found by
the daily check, reported once (a summary line and a `fetched-late` audit event) and then
handled like any other report: the real command against both simulators over HTTP."""

from __future__ import annotations

import copy
import sqlite3

from tests.conftest import sim_control, small_dataset_raw


def late_report() -> dict:
    report = copy.deepcopy(small_dataset_raw()["expensify"]["reports"][0])
    report["reportID"] = "92000001"
    report["reportName"] = "Approved early, seen late"
    report["approved"] = "2026-11-06 10:00:00"
    for i, tx in enumerate(report["transactionList"]):
        tx["transactionID"] = f"72000000000000000{i:02d}"
    return report


def test_report_approved_before_the_cursor_is_reported_once(small_console, small_sims):
    # Five cycles: the client's limiter at the simulator's (fast) pace, not Expensify's.
    small_console.write_config(expensify={"limit_10s": 100, "limit_60s": 600})
    day1, day2, day3 = ({"ML_CONSOLE_AS_OF": d} for d in ("2026-11-20", "2026-11-21", "2026-11-22"))
    code, first, err = small_console.auto(env=day1)
    assert code == 3, err
    assert first["posted"] == 3
    assert not any("before the poll window" in w for w in first["warnings"])

    # Approved on the 6th, visible to the API only now: behind the cursor (the 20th).
    sim_control(small_sims.expensify_url, "/__sim/reports", "POST", late_report())

    code, second, err = small_console.auto(env=day2)
    assert code == 3, err
    lines = [w for w in second["warnings"] if "92000001" in w]
    assert len(lines) == 1 and "before the poll window" in lines[0]
    assert {v["reportID"] for v in second["vouchers"]} == {"92000001"}

    # Said once: not again the same day, nor the next.
    for env in (day2, day3):
        code, again, err = small_console.auto(env=env)
        assert not any("92000001" in w for w in again["warnings"]), again["warnings"]
        assert again["posted"] == 0
    db = sqlite3.connect(small_console.home / "state.sqlite3")
    events = db.execute("SELECT report_id FROM audit_events WHERE type = 'fetched-late'").fetchall()
    db.close()
    assert events == [("92000001",)]
