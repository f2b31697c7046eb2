"""The Expensify Integration Server simulator, as a client would see it.

The main paths run over real HTTP on loopback (uvicorn); the rest through httpx's ASGI
transport, which exercises the same app in-process.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from console.expensify.models import ExportReport, ExportTransaction
from console.sim.dataset import parse_dataset
from console.sim.expensify_app import (
    ENDPOINT,
    RATE_LIMITED_MESSAGE,
    RECONCILIATION_TEMPLATE_PATH,
    ExpensifySim,
    ExpensifySimSettings,
)
from console.sim.export_render import export_model, render_export
from tests.conftest import serve_asgi as serve
from tests.sim.conftest_expensify import (
    CREDS,
    SECRET,
    TEMPLATE,
    USER,
    dataset,
    export_ids,
    export_job,
    form,
    job,
    post,
    raw_dataset,
)

FILE_NAME = re.compile(
    r"export[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.json"
)
ALL_STATES = "OPEN,SUBMITTED,APPROVED,REIMBURSED,ARCHIVED"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sim() -> ExpensifySim:
    return ExpensifySim(dataset(), ExpensifySimSettings.fast())


@pytest.fixture
async def client(sim: ExpensifySim) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://expensify.test") as c:
        yield c


@pytest.fixture
def live(sim: ExpensifySim) -> Iterator[str]:
    with serve(sim.app) as url:
        yield url


def _error(resp: httpx.Response) -> tuple[int, str]:
    body = resp.json()
    return body["responseCode"], body["responseMessage"]


FILE_NOT_FOUND = {"responseMessage": "File not found"}  # as real clients record it
# Set on a report by the client after reading it, never sent by Expensify.
CLIENT_FIELDS = {"approvalZone", "approvedUTC", "approvedFrom"}


# ------------------------------------------------------------------ over real HTTP
async def test_export_then_download_over_loopback(sim: ExpensifySim, live: str) -> None:
    async with httpx.AsyncClient(base_url=live, timeout=10) as c:
        desc = export_job({"reportIDList": "R1,R3"}, input={"reportState": "APPROVED,REIMBURSED"})
        name = await post(c, desc, template=TEMPLATE)
        assert name.status_code == 200
        assert name.headers["content-type"].startswith("text/plain")
        assert FILE_NAME.fullmatch(name.text)

        got = await post(c, job("download", fileName=name.text, fileSystem="integrationServer"))
        assert got.status_code == 200 and got.headers["content-type"] == "application/json"

    rows = json.loads(got.content)
    assert [r["reportID"] for r in rows] == ["R1", "R3"]
    # The export is exactly what export.ftl renders for those reports...
    d = dataset().expensify
    chosen = [r for r in d.reports if r.reportID in ("R1", "R3")]
    assert got.text == render_export(export_model(chosen, d.policies))
    # ...and carries exactly the fields the client's models read.
    for row in rows:
        read = set(ExportReport.model_fields) - {"transactions"} - CLIENT_FIELDS
        assert set(row) - {"transactions"} == read
        for t in row["transactions"]:
            assert set(t) == set(ExportTransaction.model_fields)
    r1 = ExportReport.model_validate(rows[0])
    assert r1.status == "Approved" and r1.policyName == "Acme US" and r1.total == 11845
    assert r1.submitterName == "Ann Zürich" and r1.managerEmail == "boss@acme.example"
    assert rows[0]["transactions"][0]["merchant"] == "Barnes &amp; Noble"  # served verbatim
    assert rows[0]["transactions"][0]["categoryGlCode"] == "6110"  # from the policy
    assert rows[0]["transactions"][1]["merchant"] == "McDonald's"
    assert rows[0]["transactions"][1]["cardNumber"] == "4111XXXXXXXX1111"
    assert rows[0]["transactions"][1]["reimbursable"] is False
    assert rows[0]["transactions"][1]["modifiedAmount"] is None
    assert (
        rows[1]["status"] == "Reimbursed"
        and rows[1]["transactions"][0]["currencyConversionRate"] == "1.08"
    )


async def test_multipart_body_over_loopback(live: str) -> None:
    async with httpx.AsyncClient(base_url=live, timeout=10) as c:
        files = {
            "requestJobDescription": (None, json.dumps(export_job({"reportIDList": "R2"}))),
            "template": (None, TEMPLATE.encode()),
        }
        name = await c.post(ENDPOINT, files=files)
        assert FILE_NAME.fullmatch(name.text), name.text
        got = await c.post(
            ENDPOINT,
            files={
                "requestJobDescription": (None, json.dumps(job("download", fileName=name.text)))
            },
        )
    assert [r["reportID"] for r in got.json()] == ["R2"]


async def test_a_list_of_faults_with_one_bad_spec_adds_none(client: httpx.AsyncClient) -> None:
    good = {"fault": "status", "status": 503, "count": 1}
    bad = await client.post("/__sim/faults", json=[good, {"fault": "explode"}])
    assert bad.status_code == 400 and bad.json()["error"].startswith("invalid fault: ")
    assert (await client.get("/__sim/faults")).json() == []
    assert (await client.post("/__sim/faults", json=[good])).status_code == 200
    assert [f["fault"] for f in (await client.get("/__sim/faults")).json()] == ["status"]


async def test_injected_status_and_request_counting_over_loopback(live: str) -> None:
    async with httpx.AsyncClient(base_url=live, timeout=10) as c:
        spec = {
            "fault": "status",
            "status": 503,
            "retry_after": 2,
            "count": 1,
            "route": "ExpensifyIntegrations",
        }
        assert (await c.post("/__sim/faults", json=spec)).status_code == 200
        desc = job("get", inputSettings={"type": "policyList"})
        first = await post(c, desc)
        assert first.status_code == 503 and first.headers["retry-after"] == "2"
        assert first.json()["responseCode"] == 503 and "responseMessage" in first.json()
        second = await post(c, desc)
        assert second.status_code == 200 and second.json()["responseCode"] == 200

        counts = (await c.get("/__sim/requests")).json()
        assert counts["total"] == 2  # control routes are not counted
        assert {(r["status"], r["count"]) for r in counts["by_route"]} == {(503, 1), (200, 1)}
        assert all(r["path"] == ENDPOINT for r in counts["by_route"])
        faults = (await c.get("/__sim/faults")).json()
        assert faults[0]["fired"] == 1

        await c.post("/__sim/requests/reset")
        assert (await c.get("/__sim/requests")).json() == {"total": 0, "by_route": []}


async def test_drop_after_acts_but_the_client_never_hears(sim: ExpensifySim, live: str) -> None:
    async with httpx.AsyncClient(base_url=live, timeout=10) as c:
        await c.post("/__sim/faults", json=[{"fault": "drop-after", "count": 1}])
        desc = export_job(
            {"reportIDList": "R1"}, onFinish=[{"actionName": "markAsExported", "label": "sync"}]
        )
        with pytest.raises(httpx.TransportError):
            await post(c, desc, template=TEMPLATE)
        # The unknown-outcome case: the export ran and marked the report anyway.
        assert sim.labels("R1") == ["sync"]
        assert (await c.get("/__sim/reports")).json()[0]["labels"] == ["sync"]


# ------------------------------------------------------------------ filters
async def test_report_id_and_policy_filters(client: httpx.AsyncClient) -> None:
    assert await export_ids(client, export_job({"reportIDList": " R3 ,R1"})) == ["R1", "R3"]
    ids = await export_ids(
        client, export_job({"startDate": "2026-01-01", "policyIDList": "POL-EU"})
    )
    assert ids == ["R3"]


async def test_report_state_defaults_to_all_and_filters_when_given(
    client: httpx.AsyncClient,
) -> None:
    assert await export_ids(client, export_job({"startDate": "2026-01-01"})) == [
        "R1",
        "R2",
        "R3",
        "R4",
        "R5",
    ]
    ids = await export_ids(
        client, export_job({"startDate": "2026-01-01"}, input={"reportState": "SUBMITTED"})
    )
    assert ids == ["R4"]
    resp = await post(
        client,
        export_job({"startDate": "2026-01-01"}, input={"reportState": "APPROVED,DONE"}),
        template=TEMPLATE,
    )
    assert _error(resp) == (
        410,
        "Report state 'DONE' is not supported; use OPEN, SUBMITTED, APPROVED, REIMBURSED, ARCHIVED",
    )


async def test_start_and_end_dates_use_the_later_of_submitted_and_created(
    client: httpx.AsyncClient,
) -> None:
    # R2 was created 2026-10-01 but submitted 2026-11-01: the later date counts.
    assert "R2" not in await export_ids(client, export_job({"startDate": "2026-11-02"}))
    assert "R2" in await export_ids(client, export_job({"startDate": "2026-11-01"}))  # inclusive
    ids = await export_ids(client, export_job({"startDate": "2026-10-30", "endDate": "2026-11-01"}))
    assert ids == ["R1", "R2"]  # R1 submitted 10-30, R2 11-01: both ends inclusive


async def test_approved_after_excludes_the_day_itself(client: httpx.AsyncClient) -> None:
    states = {"reportState": "APPROVED,REIMBURSED"}
    # R2 was approved on 2026-11-03: a filter on that day drops it, the day before keeps it.
    assert await export_ids(client, export_job({"approvedAfter": "2026-11-03"}, input=states)) == [
        "R3",
        "R5",
    ]
    # It only applies to approved reports: the submitted R4 passes when its state is asked for.
    assert await export_ids(client, export_job({"approvedAfter": "2026-11-03"})) == [
        "R3",
        "R4",
        "R5",
    ]
    assert await export_ids(client, export_job({"approvedAfter": "2026-11-02"}, input=states)) == [
        "R2",
        "R3",
        "R5",
    ]


async def test_limit_is_a_string(client: httpx.AsyncClient) -> None:
    assert await export_ids(
        client, export_job({"startDate": "2026-01-01"}, input={"limit": "2"})
    ) == ["R1", "R2"]
    resp = await post(
        client, export_job({"startDate": "2026-01-01"}, input={"limit": 2}), template=TEMPLATE
    )
    assert _error(resp)[0] == 410 and "limit" in _error(resp)[1]


async def test_a_date_or_id_filter_is_required_and_dates_are_checked(
    client: httpx.AsyncClient,
) -> None:
    resp = await post(client, export_job({"policyIDList": "POL-US"}), template=TEMPLATE)
    assert resp.status_code == 200
    assert _error(resp) == (
        410,
        "One of the filters 'reportIDList', 'startDate' or 'approvedAfter' is required",
    )
    resp = await post(client, export_job({"startDate": "16-01-01"}), template=TEMPLATE)
    assert _error(resp) == (410, "Malformed date '16-01-01'. Expected format is yyyy-MM-dd")
    resp = await post(client, export_job({"approvedAfter": "2026-02-30"}), template=TEMPLATE)
    assert _error(resp) == (410, "Malformed date '2026-02-30'. Expected format is yyyy-MM-dd")


async def test_end_date_is_required_when_the_start_is_over_a_year_back(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_CONSOLE_AS_OF", "2026-11-30")
    missing = (410, "Required parameter 'endDate' is missing")
    for key in ("startDate", "approvedAfter"):
        # 366 days back needs an endDate; 365 days back does not.
        resp = await post(client, export_job({key: "2025-11-29"}), template=TEMPLATE)
        assert _error(resp) == missing, key
        assert "R1" in await export_ids(client, export_job({key: "2025-11-30"}))
        ids = await export_ids(client, export_job({key: "2025-11-29", "endDate": "2026-12-01"}))
        assert "R1" in ids
    # Either one far back is enough, even beside a recent one or a reportIDList.
    flt = {"startDate": "2026-11-01", "approvedAfter": "2020-01-01", "reportIDList": "R1"}
    assert _error(await post(client, export_job(flt), template=TEMPLATE)) == missing
    # "Today" is the simulator's as-of day: a later one ages the same filter out.
    monkeypatch.setenv("ML_CONSOLE_AS_OF", "2027-11-02")
    resp = await post(client, export_job({"startDate": "2026-11-01"}), template=TEMPLATE)
    assert _error(resp) == missing


async def test_employee_email_exports_from_that_account() -> None:
    raw = raw_dataset()
    us, eu = raw["expensify"]["policies"]
    us["employees"] += [
        {"email": "admin@acme.example", "role": "admin"},
        {"email": "bob@acme.example", "submitsTo": "ann@acme.example"},
    ]
    eu["employees"] = [{"email": "ann@acme.example", "submitsTo": "eu-boss@acme.example"}]
    raw["expensify"]["reports"] += [
        {"reportID": "R6", "policyID": "POL-US", "accountEmail": "bob@acme.example",
         "status": "APPROVED", "submitted": "2026-11-05 09:00:00"},
        {"reportID": "R7", "policyID": "POL-EU", "accountEmail": "ann@acme.example",
         "status": "APPROVED", "submitted": "2026-11-05 09:00:00"},
        {"reportID": "R8", "policyID": "POL-US", "accountEmail": "ann@acme.example",
         "status": "OPEN", "created": "2026-11-05 09:00:00"},
    ]  # fmt: skip
    sim = ExpensifySim(parse_dataset(raw), ExpensifySimSettings.fast())
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://e") as c:

        async def seen_by(account: str) -> list[str]:
            desc = export_job({"startDate": "2026-01-01"}, input={"employeeEmail": account})
            return await export_ids(c, desc)

        # Not a submitter filter: an account sees what it submitted and what is submitted to
        # it (the employee list's submitsTo), in any policy; OPEN reports never.
        assert await seen_by("ann@acme.example") == ["R1", "R6", "R7"]
        assert await seen_by("ANN@acme.example ") == ["R1", "R6", "R7"]
        assert await seen_by("boss@acme.example") == ["R1"]
        assert await seen_by("eu-boss@acme.example") == ["R7"]
        assert await seen_by("bob@acme.example") == ["R6"]
        # The owner and an admin of a policy see every report of it, and only of it.
        assert await seen_by("cfo@acme.example") == ["R1", "R2", "R4", "R5", "R6"]
        assert await seen_by("admin@acme.example") == ["R1", "R2", "R4", "R5", "R6"]
        assert await seen_by("nobody@acme.example") == []
        # Other filters still apply on top.
        desc = export_job(
            {"startDate": "2026-01-01", "policyIDList": "POL-EU"},
            input={"employeeEmail": "ann@acme.example"},
        )
        assert await export_ids(c, desc) == ["R7"]
        desc = export_job(
            {"startDate": "2026-01-01"},
            input={"employeeEmail": "ann@acme.example", "reportState": "OPEN,APPROVED"},
        )
        assert _error(await post(c, desc, template=TEMPLATE)) == (
            410,
            "OPEN reports cannot be exported with 'employeeEmail'",
        )


async def test_mark_as_exported_then_filter_on_the_label(
    sim: ExpensifySim, client: httpx.AsyncClient
) -> None:
    flt = {"approvedAfter": "2026-10-01", "markedAsExported": "ml-console"}
    states = {"reportState": "APPROVED"}
    mark = [{"actionName": "markAsExported", "label": "ml-console"}]
    # R5 already carries the label, so only R1 and R2 are new.
    assert await export_ids(client, export_job(flt, input=states, onFinish=mark)) == ["R1", "R2"]
    assert sim.labels("R1") == ["ml-console"] and sim.labels("R2") == ["ml-console"]
    assert sim.labels("R4") == []
    assert await export_ids(client, export_job(flt, input=states, onFinish=mark)) == []


async def test_test_flag_skips_on_finish(sim: ExpensifySim, client: httpx.AsyncClient) -> None:
    on_finish = [
        {"actionName": "markAsExported", "label": "L"},
        {"actionName": "email", "recipients": "ops@acme.example", "message": "done"},
    ]
    await export_ids(client, export_job({"reportIDList": "R1"}, onFinish=on_finish, test="true"))
    assert sim.labels("R1") == []
    assert (await client.get("/__sim/emails")).json() == []

    ids = await export_ids(
        client, export_job({"reportIDList": "R1"}, onFinish=on_finish, test="false")
    )
    assert ids == ["R1"] and sim.labels("R1") == ["L"]
    [mail] = (await client.get("/__sim/emails")).json()
    assert mail["recipients"] == "ops@acme.example" and mail["reportIDs"] == ["R1"]
    assert FILE_NAME.fullmatch(mail["filenames"][0])
    assert SECRET not in json.dumps(mail)


async def test_export_job_validation(client: httpx.AsyncClient) -> None:
    desc = export_job({"reportIDList": "R1"})
    desc["onReceive"] = {"immediateResponse": ["returnFile"]}
    assert _error(await post(client, desc, template=TEMPLATE))[0] == 410
    desc = export_job({"reportIDList": "R1"})
    desc["outputSettings"] = {"fileExtension": "csv"}
    code, msg = _error(await post(client, desc, template=TEMPLATE))
    assert code == 410 and "not rendered by the simulator" in msg
    code, msg = _error(await post(client, export_job({"reportIDList": "R1"})))
    assert (code, msg) == (410, "Required parameter 'template' is missing")
    desc = export_job({"reportIDList": "R1"}, onFinish=[{"actionName": "markAsExported"}])
    assert _error(await post(client, desc, template=TEMPLATE))[0] == 410


async def test_foreign_template_is_refused_but_line_endings_do_not_matter(
    client: httpx.AsyncClient,
) -> None:
    desc = export_job({"reportIDList": "R1"})
    foreign = "<#list reports as r>${r.reportID}</#list>"
    code, msg = _error(await post(client, desc, template=foreign))
    assert code == 410 and "export.ftl" in msg
    edited = TEMPLATE.replace('"merchant"', '"vendor"')
    assert _error(await post(client, desc, template=edited))[0] == 410
    crlf = "\r\n".join(line + "  " for line in TEMPLATE.split("\n")) + "\r\n\r\n"
    assert FILE_NAME.fullmatch((await post(client, desc, template=crlf)).text)


# ------------------------------------------------------------------ download
async def test_download_not_ready_then_ready_and_unknown_files(client: httpx.AsyncClient) -> None:
    """Recorded shape (the default): `{"responseMessage": "File not found"}`, no responseCode,
    for a file not written yet and for one that does not exist alike."""
    await client.post("/__sim/settings", json={"download_not_ready": 2})
    name = (await post(client, export_job({"reportIDList": "R2"}), template=TEMPLATE)).text
    dl = job("download", fileName=name)
    for _ in range(2):
        answer = await post(client, dl)
        assert answer.status_code == 200 and answer.json() == FILE_NOT_FOUND
    assert [r["reportID"] for r in (await post(client, dl)).json()] == ["R2"]
    assert [r["reportID"] for r in (await post(client, dl)).json()] == ["R2"]  # stays downloadable

    assert (await post(client, job("download", fileName="exportnope.json"))).json() == (
        FILE_NOT_FOUND
    )
    other = {"partnerUserID": "other@example.com", "partnerUserSecret": "x"}
    assert (await post(client, job("download", other, fileName=name))).json() == FILE_NOT_FOUND
    # An export file is not on the reconciliation file system.
    on_reconciliation = job("download", fileName=name, fileSystem="reconciliation")
    assert (await post(client, on_reconciliation)).json() == FILE_NOT_FOUND


async def test_reconciliation_files_are_served_on_the_configured_file_system(
    client: httpx.AsyncClient,
) -> None:
    recon = job(
        "reconciliation",
        inputSettings={"type": "Unreported", "startDate": "2026-11-01", "endDate": "2026-11-30",
                       "domain": "acme.example", "feed": "export_all_feeds"},
        outputSettings={"fileExtension": "json"},
    )  # fmt: skip
    template = RECONCILIATION_TEMPLATE_PATH.read_text(encoding="utf-8")
    for served_on, answers in (
        ("reconciliation", {"reconciliation"}),
        ("integrationServer", {"integrationServer"}),
        ("either", {"reconciliation", "integrationServer"}),
    ):
        await client.post("/__sim/settings", json={"reconciliation_file_system": served_on})
        name = (await post(client, recon, template=template)).json()["filename"]
        for system in ("reconciliation", "integrationServer"):
            got = await post(client, job("download", fileName=name, fileSystem=system))
            if system in answers:
                assert isinstance(got.json(), list), (served_on, system)
            else:
                assert got.json() == FILE_NOT_FOUND, (served_on, system)
    # Real clients ask for Unreported or All; "Reported" is not confirmed and refused.
    reported = copy.deepcopy(recon)
    reported["inputSettings"]["type"] = "Reported"
    assert _error(await post(client, reported, template=template))[0] == 410


async def test_download_errors_in_the_alternative_shapes(client: httpx.AsyncClient) -> None:
    await client.post(
        "/__sim/settings", json={"download_not_ready": 2, "error_shapes": "alternative"}
    )
    name = (await post(client, export_job({"reportIDList": "R2"}), template=TEMPLATE)).text
    dl = job("download", fileName=name)
    for _ in range(2):
        code, msg = _error(await post(client, dl))
        assert code == 404 and "not ready" in msg
    assert [r["reportID"] for r in (await post(client, dl)).json()] == ["R2"]
    code, msg = _error(await post(client, job("download", fileName="exportnope.json")))
    assert code == 410 and "exportnope.json" in msg
    bad = job("download", fileName=name, fileSystem="sftp")
    assert _error(await post(client, bad))[0] == 410


async def test_file_systems_and_reconciliation_scopes_in_both_error_shapes(
    client: httpx.AsyncClient,
) -> None:
    template = RECONCILIATION_TEMPLATE_PATH.read_text(encoding="utf-8")
    recon = job(
        "reconciliation",
        inputSettings={"type": "All", "startDate": "2026-11-01", "endDate": "2026-11-30",
                       "domain": "acme.example"},
    )  # fmt: skip
    name = (await post(client, recon, template=template)).json()["filename"]
    export = (await post(client, export_job({"reportIDList": "R2"}), template=TEMPLATE)).text
    # fileSystem defaults to integrationServer, which serves exports, not reconciliation files.
    assert (await post(client, job("download", fileName=name))).json() == FILE_NOT_FOUND
    assert (await post(client, job("download", fileName=export))).json()[0]["reportID"] == "R2"
    got = await post(client, job("download", fileName=name, fileSystem="reconciliation"))
    assert got.status_code == 200 and isinstance(got.json(), list)
    # Any other file system is malformed, whatever the error shape.
    sftp = job("download", fileName=name, fileSystem="sftp")
    assert _error(await post(client, sftp)) == (410, "Argument 'fileSystem' is malformed: 'sftp'")

    await client.post("/__sim/settings", json={"error_shapes": "alternative"})
    wrong = job("download", fileName=name, fileSystem="integrationServer")
    assert _error(await post(client, wrong)) == (410, f"File '{name}' was not found")
    wrong = job("download", fileName=export, fileSystem="reconciliation")
    assert _error(await post(client, wrong)) == (410, f"File '{export}' was not found")
    assert _error(await post(client, sftp)) == (410, "Argument 'fileSystem' is malformed: 'sftp'")

    # Scopes: Unreported and All only ("Reported" is not confirmed), in either shape.
    for shape in ("alternative", "recorded"):
        await client.post("/__sim/settings", json={"error_shapes": shape})
        for kind in ("Reported", "unreported", None):
            desc = copy.deepcopy(recon)
            desc["inputSettings"]["type"] = kind
            code, msg = _error(await post(client, desc, template=template))
            assert code == 410, (shape, kind)
            assert msg.startswith("Argument 'inputSettings.type' is missing or malformed")
        for kind in ("Unreported", "All"):
            desc = copy.deepcopy(recon)
            desc["inputSettings"]["type"] = kind
            assert (await post(client, desc, template=template)).json()["responseCode"] == 200


async def test_not_ready_answers_exactly_in_each_shape(client: httpx.AsyncClient) -> None:
    await client.post("/__sim/settings", json={"download_not_ready": 1})
    name = (await post(client, export_job({"reportIDList": "R2"}), template=TEMPLATE)).text
    first = await post(client, job("download", fileName=name))
    assert first.status_code == 200 and first.json() == FILE_NOT_FOUND
    assert "responseCode" not in first.json()
    await client.post("/__sim/settings", json={"error_shapes": "alternative"})
    name = (await post(client, export_job({"reportIDList": "R2"}), template=TEMPLATE)).text
    first = await post(client, job("download", fileName=name))
    assert first.status_code == 200
    assert first.json() == {
        "responseCode": 404,
        "responseMessage": f"File '{name}' is not ready yet; try again shortly",
    }


# ------------------------------------------------------------------ get (policies)
async def test_policy_list(client: httpx.AsyncClient) -> None:
    body = (await post(client, job("get", inputSettings={"type": "policyList"}))).json()
    assert body["responseCode"] == 200
    assert body["policyList"][0] == {
        "id": "POL-US",
        "name": "Acme US",
        "type": "corporate",
        "role": "admin",
        "owner": "cfo@acme.example",
        "outputCurrency": "USD",
        "approvalMode": "BASIC",  # newer responses carry it (Nango); OPTIONAL: Submit and Close
    }
    assert [p["outputCurrency"] for p in body["policyList"]] == ["USD", "EUR"]
    admin = (
        await post(client, job("get", inputSettings={"type": "policyList", "adminOnly": True}))
    ).json()
    assert [p["id"] for p in admin["policyList"]] == ["POL-US"]


async def test_policy_getter_levels_and_flat_tags(client: httpx.AsyncClient) -> None:
    fields = ["categories", "tags", "employees", "reportFields", "tax"]
    desc = job(
        "get",
        inputSettings={"type": "policy", "policyIDList": ["POL-US", "POL-EU"], "fields": fields},
    )
    body = (await post(client, desc)).json()
    assert body["responseCode"] == 200
    us, eu = body["policyInfo"]["POL-US"], body["policyInfo"]["POL-EU"]
    assert us["categories"][0] == {
        "name": "Airfare",
        "enabled": True,
        "glCode": "6110",
        "payrollCode": "P1",
    }
    assert us["categories"][1]["enabled"] is False
    assert us["tags"] == [
        {"name": "Cost Center", "tags": [{"name": "New Lab", "enabled": True, "glCode": "CC-410"}]},
        {
            "name": "Project",
            "tags": [
                {"name": "Apollo", "enabled": True, "glCode": "PR-1"},
                {"name": "Gemini", "enabled": False, "glCode": "PR-2"},
            ],
        },
    ]
    assert eu["tags"] == [
        {"name": "Berlin", "enabled": True, "glCode": "CC-500"},
        {"name": "Berlin:Apollo", "enabled": True, "glCode": "PR-1"},
    ]
    assert us["employees"] == [
        {
            "email": "ann@acme.example",
            "role": "user",
            "submitsTo": "boss@acme.example",
            "employeeID": "E1",
        }
    ]
    assert us["reportFields"] == [{"name": "Trip", "type": "dropdown", "values": ["A", "B"]}]
    assert us["tax"] == {} and eu["tax"]["default"] == "r1"


async def test_policy_getter_errors(client: httpx.AsyncClient) -> None:
    desc = job("get", inputSettings={"type": "policy", "fields": ["categories"]})
    assert _error(await post(client, desc)) == (410, "Required parameter 'policyIDList' is missing")
    desc = job(
        "get", inputSettings={"type": "policy", "policyIDList": ["POL-US"], "fields": ["budgets"]}
    )
    code, msg = _error(await post(client, desc))
    assert code == 410 and "'budgets'" in msg
    desc = job(
        "get", inputSettings={"type": "policy", "policyIDList": ["NOPE"], "fields": ["tags"]}
    )
    # Recorded: 410 naming no policy; the alternative shape: 404 naming it.
    assert _error(await post(client, desc)) == (410, "Policy not found")
    await client.post("/__sim/settings", json={"error_shapes": "alternative"})
    code, msg = _error(await post(client, desc))
    assert code == 404 and "'NOPE'" in msg


# ------------------------------------------------------------------ update (report status)
async def test_report_status_update_reimburses_approved_reports_only(
    sim: ExpensifySim, client: httpx.AsyncClient
) -> None:
    desc = job(
        "update",
        inputSettings={
            "type": "reportStatus",
            "status": "REIMBURSED",
            "filters": {"reportIDList": "R1"},
        },
    )
    assert (await post(client, desc)).json() == {"responseCode": 200, "reportIDs": ["R1"]}
    assert sim.report("R1").status == "REIMBURSED" and sim.report("R1").reimbursed

    desc["inputSettings"]["filters"]["reportIDList"] = "R2,R4,R404"
    body = (await post(client, desc)).json()
    assert body["responseCode"] == 207 and body["reportIDs"] == ["R2"]
    assert [s["reportID"] for s in body["skippedReports"]] == ["R4"]
    assert [f["reportID"] for f in body["failedReports"]] == ["R404"]
    assert sim.report("R4").status == "SUBMITTED"

    desc["inputSettings"]["status"] = "APPROVED"
    assert _error(await post(client, desc)) == (410, "Status 'APPROVED' is not supported")


async def test_report_status_update_all_skipped_is_200_and_numeric_ids_are_numbers(
    sim: ExpensifySim, client: httpx.AsyncClient
) -> None:
    for rid in ("1234567", "7654321"):
        new = {"reportID": rid, "policyID": "POL-US", "status": "APPROVED",
               "approved": "2026-11-10 10:00:00"}  # fmt: skip
        assert (await client.post("/__sim/reports", json=new)).status_code == 200

    def update(ids: str) -> dict[str, object]:
        filters = {"reportIDList": ids}
        return job(
            "update",
            inputSettings={"type": "reportStatus", "status": "REIMBURSED", "filters": filters},
        )

    # Every report skipped (none done, none failed): 200, as a real run was observed answering.
    body = (await post(client, update("R4,R3"))).json()
    assert body == {
        "responseCode": 200,
        "reportIDs": [],
        "skippedReports": [
            {"reportID": "R4", "reason": "Report is SUBMITTED; only Approved reports can be "
                                         "Reimbursed"},
            {"reportID": "R3", "reason": "Report is REIMBURSED; only Approved reports can be "
                                         "Reimbursed"},
        ],
    }  # fmt: skip
    # All-digit IDs come back as JSON numbers, others as strings.
    body = (await post(client, update("1234567,R1"))).json()
    assert body == {"responseCode": 200, "reportIDs": [1234567, "R1"]}
    assert sim.report("1234567").status == "REIMBURSED"
    # A mix of done and skipped stays 207; skipped plus failed with none done too.
    body = (await post(client, update("7654321,1234567"))).json()
    assert body["responseCode"] == 207 and body["reportIDs"] == [7654321]
    assert [s["reportID"] for s in body["skippedReports"]] == ["1234567"]
    assert body["failedReports"] == []
    body = (await post(client, update("R4,R404"))).json()
    assert body["responseCode"] == 207 and body["reportIDs"] == []
    assert [f["reportID"] for f in body["failedReports"]] == ["R404"]
    # The status updater's shapes do not depend on error_shapes.
    await client.post("/__sim/settings", json={"error_shapes": "alternative"})
    assert (await post(client, update("R4"))).json()["responseCode"] == 200


# ------------------------------------------------------------------ credentials, limits, parsing
async def test_bad_credentials(sim: ExpensifySim, client: httpx.AsyncClient) -> None:
    desc = job(
        "get",
        {"partnerUserID": USER, "partnerUserSecret": "wrong"},
        inputSettings={"type": "policyList"},
    )
    resp = await post(client, desc)
    assert resp.status_code == 200 and resp.json() == {
        "responseCode": 401,
        "responseMessage": "Authentication error",
    }
    assert "wrong" not in resp.text
    unknown = job(
        "get",
        {"partnerUserID": "who@x", "partnerUserSecret": SECRET},
        inputSettings={"type": "policyList"},
    )
    assert _error(await post(client, unknown))[0] == 401
    no_creds = {"type": "get", "inputSettings": {"type": "policyList"}}
    assert _error(await post(client, no_creds))[0] == 401

    assert (await client.post("/__sim/settings", json={"auth_error_code": 407})).json()[
        "auth_error_code"
    ] == 407
    assert _error(await post(client, desc))[0] == 407
    bad = await client.post("/__sim/settings", json={"auth_error_code": 200})
    assert bad.status_code == 400 and "auth_error_code" in bad.json()["error"]


async def test_new_settings_are_set_through_the_settings_route(
    client: httpx.AsyncClient,
) -> None:
    now = (await client.get("/__sim/settings")).json()
    assert now["reconciliation_file_system"] == "reconciliation"
    assert now["error_shapes"] == "recorded"
    for change in (
        {"reconciliation_file_system": "integrationServer"},
        {"reconciliation_file_system": "either"},
        {"error_shapes": "alternative"},
        {"reconciliation_file_system": "reconciliation", "error_shapes": "recorded"},
    ):
        after = (await client.post("/__sim/settings", json=change)).json()
        assert after == {**now, **after} and {k: after[k] for k in change} == change
        assert (await client.get("/__sim/settings")).json() == after
    for bad in ({"reconciliation_file_system": "sftp"}, {"error_shapes": "real"}):
        resp = await client.post("/__sim/settings", json=bad)
        assert resp.status_code == 400 and next(iter(bad)) in resp.json()["error"]
    assert (await client.get("/__sim/settings")).json() == now


async def test_rate_limit_5_per_10s_and_20_per_60s() -> None:
    clock = FakeClock()
    sim = ExpensifySim(dataset(), ExpensifySimSettings(), clock=clock)
    desc = job("get", inputSettings={"type": "policyList"})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url="http://e"
    ) as c:
        for _ in range(5):
            assert (await post(c, desc)).status_code == 200
        limited = await post(c, desc)
        assert limited.status_code == 429
        assert limited.json() == {"responseCode": 429, "responseMessage": RATE_LIMITED_MESSAGE}
        # Another partner has its own budget.
        other = job(
            "get",
            {"partnerUserID": "other@example.com", "partnerUserSecret": "x"},
            inputSettings={"type": "policyList"},
        )
        assert (await post(c, other)).status_code == 200

        # 6 counted so far (the refused one too). Spread the rest so no 10 s window fills.
        clock.now += 10.5
        for _ in range(4):
            assert (await post(c, desc)).status_code == 200
        clock.now += 10.5
        for _ in range(5):
            assert (await post(c, desc)).status_code == 200
        clock.now += 10.5
        for _ in range(5):
            assert (await post(c, desc)).status_code == 200
        clock.now += 10.5
        assert (await post(c, desc)).status_code == 429  # 20 in the last 60 s
        clock.now += 20  # the first six fall out of the minute
        assert (await post(c, desc)).status_code == 200

        # Control routes are never rate-limited.
        for _ in range(30):
            assert (await c.get("/__sim/reports")).status_code == 200
        # Rate limiting can be switched off at runtime.
        await c.post("/__sim/settings", json={"rate_limit": False})
        for _ in range(30):
            assert (await post(c, desc)).status_code == 200


async def test_malformed_job_descriptions_name_the_problem(client: httpx.AsyncClient) -> None:
    code, msg = _error(await post(client, '{"type": "get", "credentials": {'))
    assert (
        code == 500
        and msg.startswith("requestJobDescription is not valid JSON:")
        and "line 1" in msg
    )
    code, msg = _error(await client.post(ENDPOINT, data={"template": TEMPLATE}))
    assert (code, msg) == (500, "Required parameter 'requestJobDescription' is missing")
    assert _error(await post(client, "[1, 2]"))[0] == 500
    assert _error(await post(client, job("delete"))) == (
        410,
        "Argument 'type' is missing or malformed",
    )
    assert _error(await post(client, {"credentials": CREDS})) == (
        410,
        "Argument 'type' is missing or malformed",
    )


async def test_lenient_json_as_expensifys_own_script_sent_it(client: httpx.AsyncClient) -> None:
    creds = f"{{'partnerUserID':'{USER}','partnerUserSecret':'{SECRET}',}}"
    text = (
        "{'type':'get','credentials':" + creds + ","
        "'inputSettings':{'type':'policyList','note':'it\\'s \"fine\"'},}"
    )
    body = (await client.post(ENDPOINT, data=form(text))).json()
    assert body["responseCode"] == 200 and len(body["policyList"]) == 2


# ------------------------------------------------------------------ control routes
async def test_add_and_reapprove_reports(sim: ExpensifySim, client: httpx.AsyncClient) -> None:
    new = {
        "reportID": "R9",
        "policyID": "POL-US",
        "status": "APPROVED",
        "created": "2026-11-10",
        "approved": "2026-11-10 10:00:00",
        "transactionList": [{"transactionID": "T9", "amount": 42}],
    }
    resp = await client.post("/__sim/reports", json=new)
    assert resp.json() == {"reportID": "R9", "created": True, "labels": []}
    assert "R9" in await export_ids(client, export_job({"approvedAfter": "2026-11-09"}))

    # Re-approval: same reportID replaces it; labels are kept unless clearLabels.
    mark = [{"actionName": "markAsExported", "label": "ml-console"}]
    await export_ids(client, export_job({"reportIDList": "R9"}, onFinish=mark))
    again = {
        **new,
        "approved": "2026-11-12 08:00:00",
        "transactionList": [{"transactionID": "T9", "amount": 50}],
    }
    resp = await client.post("/__sim/reports", json=again)
    assert resp.json() == {"reportID": "R9", "created": False, "labels": ["ml-console"]}
    assert sim.report("R9").approved == "2026-11-12 08:00:00"
    resp = await client.post("/__sim/reports", json={**again, "clearLabels": True})
    assert resp.json()["labels"] == [] and sim.labels("R9") == []

    listed = {r["reportID"]: r for r in (await client.get("/__sim/reports")).json()}
    assert listed["R9"] == {
        "reportID": "R9",
        "policyID": "POL-US",
        "status": "APPROVED",
        "approved": "2026-11-12 08:00:00",
        "reimbursed": None,
        "labels": [],
    }
    assert listed["R5"]["labels"] == ["ml-console"]

    bad = await client.post("/__sim/reports", json={"reportID": "R10", "status": "APPROVED"})
    assert bad.status_code == 400 and "policyID" in bad.json()["error"]
    bad = await client.post("/__sim/reports", content=b"{nope")
    assert bad.status_code == 400


async def test_fault_routes_and_control_routes_are_never_faulted(client: httpx.AsyncClient) -> None:
    resp = await client.post("/__sim/faults", json={"fault": "status", "status": 500})
    assert resp.status_code == 200 and resp.json()[0]["status"] == 500
    assert (await client.get("/__sim/reports")).status_code == 200  # not faulted
    resp = await post(client, job("get", inputSettings={"type": "policyList"}))
    assert resp.status_code == 500 and resp.json()["responseCode"] == 500
    assert (await client.delete("/__sim/faults")).json() == []
    assert (await post(client, job("get", inputSettings={"type": "policyList"}))).status_code == 200

    bad = await client.post("/__sim/faults", json={"fault": "explode"})
    assert bad.status_code == 400 and "fault" in bad.json()["error"]
    assert (await client.get("/__sim/requests")).json()["total"] == 2


async def test_stored_files_are_bounded(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("console.sim.expensify_app.MAX_STORED_FILES", 2)
    names = [
        (await post(client, export_job({"reportIDList": "R2"}), template=TEMPLATE)).text
        for _ in range(3)
    ]
    assert (await post(client, job("download", fileName=names[0]))).json() == FILE_NOT_FOUND
    for name in names[1:]:
        assert (await post(client, job("download", fileName=name))).json()[0]["reportID"] == "R2"
