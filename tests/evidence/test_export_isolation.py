"""One report that breaks the export template never blocks the others: the Expensify client
isolates it by exporting halves (reportIDList), over real HTTP against the simulator with its
default template behaviour (the whole job fails, as real FreeMarker does)."""

from __future__ import annotations

from datetime import date

import pytest

from console.errors import Unreachable
from console.expensify.client import ExpensifyClient
from console.expensify.models import ExportReport, MalformedReport
from tests.clients.conftest import FakeTime, exp_creds, expensify  # noqa: F401
from tests.conftest import SMALL_FETCHABLE

OCT_1 = date(2026, 10, 1)


def client(sim) -> ExpensifyClient:
    t = FakeTime()
    return ExpensifyClient(sim.url, exp_creds, clock=t.clock, sleep=t.sleep)


def broken_report(rid: str, **changes) -> dict:
    report = {
        "reportID": rid,
        "policyID": "POL-US",
        "reportName": f"Broken {rid}",
        "accountEmail": "ana.lee@small.example",
        "currency": "USD",
        "status": "APPROVED",
        "created": "2026-11-01 09:00:00",
        "submitted": "2026-11-02 17:30:00",
        "approved": "2026-11-04 10:00:00",
        "transactionList": "not a list",  # FreeMarker stops: #list over a string
    }
    report.update(changes)
    return {"raw": True, "report": report}


def test_the_default_simulator_fails_the_whole_export(expensify):  # noqa: F811
    assert expensify.settings()["template_errors"] == "fail"


@pytest.mark.parametrize("bad", [["91000001"], ["91000001", "91000002"]])
def test_culprits_are_isolated_and_the_rest_is_read(expensify, bad):  # noqa: F811
    for rid in bad:
        expensify.post("/__sim/reports", broken_report(rid))
    c = client(expensify)
    items = list(c.export_items(approved_after=OCT_1))
    good = sorted(i.reportID for i in items if isinstance(i, ExportReport))
    held = {i.reportID: i.what for i in items if isinstance(i, MalformedReport)}
    assert good == SMALL_FETCHABLE
    assert sorted(held) == bad
    for what in held.values():
        assert what.startswith("export-template:")
        assert "transactionList" in what  # the error the export gave
    # Every request went through the client (and its limiter): bounded, logged.
    assert c.requests_made == expensify.requests()["total"] <= 2 * (2 + 2 * 2 * 3)


def test_a_culprit_without_a_report_id_is_held_under_a_stand_in(expensify):  # noqa: F811
    """The IDs cannot name it, so no reportIDList export holds it: every listed report is
    read, and the failure comes back as one unidentified malformed entry (never a good
    report held in its place)."""
    nameless = broken_report("x")
    del nameless["report"]["reportID"]
    expensify.post("/__sim/reports", nameless)
    items = list(client(expensify).export_items(approved_after=OCT_1))
    assert sorted(i.reportID for i in items if isinstance(i, ExportReport)) == SMALL_FETCHABLE
    [bad] = [i for i in items if isinstance(i, MalformedReport)]
    assert bad.reportID == "" and bad.what.startswith("export-template-unidentified:")


def test_html_502_then_a_cut_body_on_the_export_job_is_retried(expensify):  # noqa: F811
    expensify.fault(fault="html", count=1)
    expensify.fault(fault="malformed-json", count=1)  # the next answer: a cut JSON body
    c = client(expensify)
    items = list(c.export_items(approved_after=OCT_1))
    assert sorted(i.reportID for i in items) == SMALL_FETCHABLE
    assert c.requests_made == 4  # two broken answers, the job, the download


def test_a_cut_body_that_never_ends_is_unreachable_not_a_crash(expensify):  # noqa: F811
    expensify.fault(fault="malformed-json")
    with pytest.raises(Unreachable, match="did not answer with a file name") as info:
        client(expensify).export_reports(approved_after=OCT_1)
    assert info.value.exit_code == 5
