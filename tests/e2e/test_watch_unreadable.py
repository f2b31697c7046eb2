"""A posted report edited in Expensify so that it breaks the export template: the re-read of
posted reports (console/reversal.py `watch_posted`) goes on with the rest, the report is
reported once and re-read alone until it reads again, and nothing is reversed or posted
again because of it. The real command against the small world's simulators over HTTP, the
Expensify simulator failing the whole export on a template error (its default)."""

from __future__ import annotations

import copy
import json
from collections import Counter
from typing import Any

from tests.conftest import sim_control, small_dataset_raw
from tests.e2e.conftest import sim_get, sim_post
from tests.evidence.test_export_isolation import broken_report

BROKEN = "90000001"


def raw_report(rid: str) -> dict[str, Any]:
    return copy.deepcopy(
        next(r for r in small_dataset_raw()["expensify"]["reports"] if r["reportID"] == rid)
    )


def refs(sims: Any, prefix: str) -> Counter[str]:
    return Counter(
        v["ReferenceNumber"].split(":")[1]
        for v in sim_get(sims.ifs_url, "/__sim/vouchers")
        if v["ReferenceNumber"].startswith(prefix)
    )


def events(console: Any, kind: str) -> list[dict[str, Any]]:
    proc = console.run("audit", "export")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return [e for e in rows if e.get("type") == kind]


def expensify_requests(sims: Any) -> int:
    return int(sim_control(sims.expensify_url, "/__sim/requests")["total"])


def test_an_unreadable_posted_report_does_not_stop_the_cycle(small_console, small_sims):
    code, s, err = small_console.auto()
    assert code == 3, err  # 90000004 is held in the small world
    assert s["posted"] == 3
    exp_ref = next(
        v["ReferenceNumber"]
        for v in sim_get(small_sims.ifs_url, "/__sim/vouchers")
        if v["ReferenceNumber"].startswith(f"EXP:{BROKEN}:")
    )

    # In Expensify: 90000001 is edited so that the template stops on it, 90000002 is
    # reimbursed, and a new report is approved.
    sim_post(small_sims.expensify_url, "/__sim/reports", broken_report(BROKEN))
    reimbursed = raw_report("90000002")
    reimbursed.update(status="REIMBURSED", reimbursed="2026-11-20 09:00:00")
    sim_post(small_sims.expensify_url, "/__sim/reports", reimbursed)
    new = raw_report("90000003")
    new["reportID"] = "90000006"
    new.update(reportName="Second trip", approved="2026-11-30 08:00:00")
    for i, line in enumerate(new["transactionList"]):
        line["transactionID"] = f"71000000000000000{i:02d}"
    sim_post(small_sims.expensify_url, "/__sim/reports", new)

    code, s, err = small_console.auto()
    assert code == 3, err  # needs attention, not an unexpected error
    assert [v["reportID"] for v in s["vouchers"]] == ["90000006"], (s, err)
    held = {h["reportID"]: h["reason"] for h in s["held_reports"]}
    assert held[BROKEN].startswith("unreadable-after-posting:export-template:")
    assert BROKEN in err and exp_ref in err and "transactionList" in err
    assert [e["report_id"] for e in events(small_console, "reimbursed")] == ["90000002"]
    unreadable = events(small_console, "watch-unreadable")
    assert [e["report_id"] for e in unreadable] == [BROKEN]
    assert exp_ref in unreadable[0]["summary"] and "transactionList" in unreadable[0]["summary"]

    # The next cycle reads it alone (one export job, which fails) beside the usual re-read,
    # instead of isolating it again; it is not reported again.
    before = expensify_requests(small_sims)
    code, s, err = small_console.auto()
    assert code == 3, err
    assert BROKEN in {h["reportID"] for h in s["held_reports"]}
    spent = expensify_requests(small_sims) - before
    assert spent == s["requests"]["expensify"]
    # the poll (export, download), the re-read (export, download), the lone re-read (export)
    assert spent <= 5, spent
    assert len(events(small_console, "watch-unreadable")) == 1
    # `held`, where an operator looks after exit 3, names it with what to do.
    listed = small_console.run("held", "--json")
    assert listed.returncode == 3, listed.stderr
    [entry] = [h for h in json.loads(listed.stdout) if h["reportID"] == BROKEN]
    assert entry["reason"].startswith("unreadable-after-posting:") and exp_ref in entry["message"]

    # Fixed in Expensify with other content: read again, and held as changed after posting.
    fixed = raw_report(BROKEN)
    fixed["transactionList"][0]["amount"] = 50000
    fixed["transactionList"][0]["convertedAmount"] = 50000
    sim_post(small_sims.expensify_url, "/__sim/reports", fixed)
    code, s, err = small_console.auto()
    assert code == 3, err
    held = {h["reportID"]: h["reason"] for h in s["held_reports"]}
    assert held[BROKEN] == f"changed-after-posting:{BROKEN}"
    listed = json.loads(small_console.run("held", "--json").stdout)
    [entry] = [h for h in listed if h["reportID"] == BROKEN]
    assert entry["reason"] == held[BROKEN] and "--confirm-change" in entry["message"]
    assert BROKEN not in err
    assert [e["report_id"] for e in events(small_console, "watch-readable")] == [BROKEN]
    assert [e["report_id"] for e in events(small_console, "changed-after-post")] == [BROKEN]

    # Nothing was reversed or posted again because of it.
    assert refs(small_sims, "REV:") == Counter()
    assert refs(small_sims, "EXP:") == Counter(["90000001", "90000002", "90000003", "90000006"])
