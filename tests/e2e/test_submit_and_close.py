"""A Submit-and-Close workspace: its reports close on submission and are never approved, so
an approvedAfter poll never sees them. The console reads each policy's approval mode from the
policy list (once a day), fetches such a policy's closed reports by submission window, and
posts them dated by their submission; a configured policy the credentials cannot see is named
in every cycle's warnings instead of being skipped in silence."""

from __future__ import annotations

import copy
import json
from typing import Any

from console.sim.dataset import parse_dataset
from console.sim.server import SimServers
from tests.conftest import small_dataset_raw
from tests.e2e.conftest import make_console, sim_get

SC = "POL-SC"


def _world() -> dict[str, Any]:
    raw = small_dataset_raw()
    policies = raw["expensify"]["policies"]
    us = next(p for p in policies if p["id"] == "POL-US")
    policies.append(
        {**copy.deepcopy(us), "id": SC, "name": "Field team", "approvalMode": "OPTIONAL"}
    )
    closed = copy.deepcopy(
        next(r for r in raw["expensify"]["reports"] if r["reportID"] == "90000001")
    )
    closed.update(
        reportID="90000070", policyID=SC, reportName="Site visit", status="ARCHIVED",
        created="2026-11-18 08:00:00", submitted="2026-11-20 17:45:00", approved=None,
    )  # fmt: skip
    for n, line in enumerate(closed["transactionList"]):
        line["transactionID"] = f"70000000000000007{n:02d}"
    # An open report of the same workspace, and one closed before the window: never posted.
    draft = copy.deepcopy(closed)
    draft.update(reportID="90000071", status="OPEN", submitted="")
    for n, line in enumerate(draft["transactionList"]):
        line["transactionID"] = f"70000000000000008{n:02d}"
    raw["expensify"]["reports"] += [closed, draft]
    return raw


def test_closed_reports_of_a_submit_and_close_policy_post_dated_by_submission(tmp_path):
    with SimServers(parse_dataset(_world(), "submit-and-close world"), fast=True) as sims:
        console = make_console(tmp_path, sims)
        posting = {
            "company_by_policy": {"POL-US": "10", "POL-EU": "10", SC: "10", "POL-GONE": "10"}
        }
        console.write_config(posting=posting)
        code, first, err = console.auto()
        assert code == 3, err  # 90000004 of the small world is held
        posted = {v["reportID"] for v in first["vouchers"]}
        assert posted == {"90000001", "90000002", "90000003", "90000070"}
        [voucher] = [
            v
            for v in sim_get(sims.ifs_url, "/__sim/vouchers")
            if v["ReferenceNumber"].startswith("EXP:90000070:")
        ]
        assert voucher["VoucherDate"] == "2026-11-20"  # its submission: it was never approved
        # policy list, policies, export, download, closed export, closed download, label
        assert first["requests"]["expensify"] == 7
        assert any("POL-GONE" in w and "not visible" in w for w in first["warnings"]), first
        labels = {r["reportID"]: r["labels"] for r in sim_get(sims.expensify_url, "/__sim/reports")}
        assert "ml-console" in labels["90000070"] and labels["90000071"] == []

        # The same day again: the approval modes are not read again; nothing posts twice, and
        # the invisible policy is named again.
        code, second, err = console.auto()
        assert second["posted"] == 0 and second["requests"]["expensify"] <= 7, err
        # Its re-read finds it "Closed", as it has been since its submission: not a report
        # sent back after posting (no reversal to confirm).
        assert [h["reportID"] for h in second["held_reports"]] == ["90000004"], second
        assert any("POL-GONE" in w for w in second["warnings"])
        info = console.run("info").stdout
        assert f"{SC}       Submit and Close: closed reports, by submission date" in info
        assert "POL-GONE     NOT VISIBLE" in info
        assert "POL-US       approved and reimbursed reports" in info
        held = json.loads(console.run("held", "--json").stdout)
        assert "90000070" not in json.dumps(held)

        # The month ties out with the closed report in it, read back by submission window.
        close = console.run("close", "--period", "2026-11", "--json")
        assert close.returncode == 0, close.stderr
        tie = json.loads(close.stdout)
        assert tie["unexplained"] == []
        reports = {r["reportID"]: r for r in tie["reports"]}
        assert reports["90000070"]["disposition"] == "posted"
