"""CI's template-breaking report: the real `ml-console --auto` against both simulators over
loopback HTTP, the Expensify simulator on its DEFAULT template behaviour (a report the
template stops on fails the whole export job, as real FreeMarker does). The report is held
naming what is wrong; every other report posts."""

from __future__ import annotations

import copy
import json

import pytest

from tests.conftest import SMALL_ATTENTION, sim_control, small_dataset_raw
from tests.e2e.conftest import make_console, sim_get
from tests.evidence.test_export_isolation import broken_report


@pytest.fixture
def default_sims(small_dataset):
    """The Expensify simulator on its default settings, rate limits included (IFS fast)."""
    from console.sim.expensify_app import ExpensifySimSettings
    from console.sim.ifs_app import IfsSimSettings
    from console.sim.server import SimServers

    with SimServers(
        small_dataset,
        expensify_settings=ExpensifySimSettings(),
        ifs_settings=IfsSimSettings.fast(),
    ) as servers:
        yield servers


def test_a_template_breaking_report_is_held_and_the_rest_post(tmp_path, default_sims):
    small_sims = default_sims
    small_console = make_console(tmp_path, small_sims)
    settings = sim_control(small_sims.expensify_url, "/__sim/settings")
    assert settings["template_errors"] == "fail" and settings["rate_limit"]  # the defaults
    sim_control(small_sims.expensify_url, "/__sim/reports", "POST", broken_report("91000001"))

    code, summary, err = small_console.auto()
    assert code == 3, err
    assert summary["posted"] == 3
    held = {h["reportID"]: h["reason"] for h in summary["held_reports"]}
    assert set(held) == {"91000001", *(a["reportID"] for a in SMALL_ATTENTION)}
    reason = held["91000001"]
    assert reason.startswith("malformed:export-template:")
    assert "transactionList" in reason
    in_ifs = sim_get(small_sims.ifs_url, "/__sim/vouchers")
    refs = {v["ReferenceNumber"].split(":")[1] for v in in_ifs}
    assert refs == {"90000001", "90000002", "90000003"}

    # The hold queue says which report and what the export said.
    proc = small_console.run("held", "--json")
    items = {i["reportID"]: i for i in json.loads(proc.stdout)}
    assert "91000001" in items["91000001"]["message"]
    assert "transactionList" in items["91000001"]["message"]

    # Within Expensify's rate limits: the simulator never had to answer 429.
    log = sim_control(small_sims.expensify_url, "/__sim/requests")
    assert not [r for r in log["by_route"] if r["status"] == 429], log

    # The next cycle posts nothing twice and still holds it.
    code, again, err = small_console.auto()
    assert "posted" in again, (code, again, err)
    assert again["posted"] == 0, err
    assert "91000001" in {h["reportID"] for h in again["held_reports"]}

    # Fixed in Expensify with no new approval (same approval date, outside the next poll's
    # window): the watch reads it alone, stores it as changed, and it posts in that cycle.
    fixed = broken_report("91000001")["report"]
    line = copy.deepcopy(small_dataset_raw()["expensify"]["reports"][0]["transactionList"][0])
    fixed["transactionList"] = [{**line, "transactionID": "7910000000000000001"}]
    sim_control(small_sims.expensify_url, "/__sim/reports", "POST", fixed)
    code, third, err = small_console.auto()
    assert [v["reportID"] for v in third["vouchers"]] == ["91000001"], (third, err)
    assert "91000001" not in {h["reportID"] for h in third["held_reports"]}
