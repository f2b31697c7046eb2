"""The Expensify Integration Server simulator, as a client would see it.

The main paths run over real HTTP on loopback (uvicorn); the rest through httpx's ASGI
transport, which exercises the same app in-process.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from console.expensify.models import ExportReport, ExportTransaction
from console.sim.expensify_app import (
    ENDPOINT,
    RATE_LIMITED_MESSAGE,
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
        assert set(row) - {"transactions"} == set(ExportReport.model_fields) - {"transactions"}
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
    await client.post("/__sim/settings", json={"download_not_ready": 2})
    name = (await post(client, export_job({"reportIDList": "R2"}), template=TEMPLATE)).text
    dl = job("download", fileName=name)
    for _ in range(2):
        code, msg = _error(await post(client, dl))
        assert code == 404 and "not ready" in msg
    assert [r["reportID"] for r in (await post(client, dl)).json()] == ["R2"]
    assert [r["reportID"] for r in (await post(client, dl)).json()] == ["R2"]  # stays downloadable

    code, msg = _error(await post(client, job("download", fileName="exportnope.json")))
    assert code == 410 and "exportnope.json" in msg
    other = {"partnerUserID": "other@example.com", "partnerUserSecret": "x"}
    assert _error(await post(client, job("download", other, fileName=name)))[0] == 410


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
    assert _error(await post(client, desc))[0] == 404


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
    assert _error(await post(client, job("download", fileName=names[0])))[0] == 410
    for name in names[1:]:
        assert (await post(client, job("download", fileName=name))).json()[0]["reportID"] == "R2"
