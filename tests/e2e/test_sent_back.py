"""A held report sent back to its submitter in Expensify (Open again) is not approved any more:
fixing what held it in IFS must not post it. It stays held as `sent-back:open` until it is
approved again, then posts once. The real command against the small world's simulators."""

from __future__ import annotations

import json
from collections import Counter

from tests.e2e.conftest import sim_post
from tests.e2e.test_watch_unreadable import raw_report, refs

HELD = "90000004"  # the small world holds it: cost centre CC-410 is not in IFS


def test_a_held_report_sent_back_in_expensify_waits_for_its_next_approval(
    small_console, small_sims
):
    code, s, err = small_console.auto()
    assert code == 3 and {h["reportID"] for h in s["held_reports"]} == {HELD}, err

    # The submitter takes it back in Expensify; meanwhile the cost centre is created in IFS.
    taken_back = raw_report(HELD)
    taken_back.update(status="OPEN", approved=None)
    sim_post(small_sims.expensify_url, "/__sim/reports", taken_back)
    code, s, err = small_console.auto()
    assert code == 3, err
    sim_post(
        small_sims.ifs_url,
        "/__sim/code-part-values",
        {"Company": "10", "CodePart": "B", "CodePartValue": "CC-410", "Description": "New Lab"},
    )
    code, s, err = small_console.auto()
    assert code == 3 and s["posted"] == 0, (s, err)
    assert {h["reportID"]: h["reason"] for h in s["held_reports"]} == {HELD: "sent-back:open"}
    held = json.loads(small_console.run("held", "--json").stdout)
    assert [h["reportID"] for h in held] == [HELD]
    assert "sent back to its submitter" in held[0]["message"]
    # An operator's replay re-checks it and still does not post it.
    replay = small_console.run("replay", HELD)
    assert replay.returncode == 3, (replay.stdout, replay.stderr)
    assert refs(small_sims, "EXP:")[HELD] == 0

    # Approved again: the poll fetches it, and it posts once.
    again = raw_report(HELD)
    again.update(approved="2026-11-30 09:30:00")
    sim_post(small_sims.expensify_url, "/__sim/reports", again)
    code, s, err = small_console.auto()
    assert code == 0 and [v["reportID"] for v in s["vouchers"]] == [HELD], (s, err)
    code, s, err = small_console.auto()
    assert code == 0 and s["posted"] == 0, err
    assert refs(small_sims, "EXP:") == Counter(["90000001", "90000002", "90000003", HELD])
