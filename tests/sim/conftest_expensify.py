"""Helpers for the Expensify simulator tests (imported explicitly, not a pytest conftest)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from console.sim.dataset import Dataset, parse_dataset
from console.sim.expensify_app import ENDPOINT
from console.sim.export_render import TEMPLATE_PATH

USER = "api_user@example.com"
SECRET = "s3cr3t-partner-secret"
CREDS = {"partnerUserID": USER, "partnerUserSecret": SECRET}
TEMPLATE = TEMPLATE_PATH.read_text(encoding="utf-8")


def _tx(tid: str, amount: int, **kw: Any) -> dict[str, Any]:
    return {"transactionID": tid, "amount": amount, "created": "2026-11-01", **kw}


def raw_dataset() -> dict[str, Any]:
    """A small world: two policies (one EUR for a USD company), reports in every state."""
    return {
        "expensify": {
            "credentials": [
                CREDS,
                {"partnerUserID": "other@example.com", "partnerUserSecret": "x"},
            ],
            "policies": [
                {
                    "id": "POL-US",
                    "name": "Acme US",
                    "owner": "cfo@acme.example",
                    "categories": [
                        {"name": "Airfare", "glCode": "6110", "payrollCode": "P1"},
                        {"name": "Meals", "glCode": "6120", "enabled": False},
                    ],
                    "tags": [
                        {"name": "Cost Center", "tags": [{"name": "New Lab", "glCode": "CC-410"}]},
                        {
                            "name": "Project",
                            "tags": [
                                {"name": "Apollo", "glCode": "PR-1"},
                                {"name": "Gemini", "glCode": "PR-2", "enabled": False},
                            ],
                        },
                    ],
                    "employees": [
                        {
                            "email": "ann@acme.example",
                            "role": "user",
                            "submitsTo": "boss@acme.example",
                            "firstName": "Ann",
                            "lastName": "Zürich",
                            "employeeID": "E1",
                        }
                    ],
                    "reportFields": [{"name": "Trip", "type": "dropdown", "values": ["A", "B"]}],
                },
                {
                    "id": "POL-EU",
                    "name": "Acme EU",
                    "outputCurrency": "EUR",
                    "role": "user",
                    "tagShape": "flat",
                    "tags": [
                        {"name": "Cost Center", "tags": [{"name": "Berlin", "glCode": "CC-500"}]},
                        {"name": "Project", "tags": [{"name": "Apollo", "glCode": "PR-1"}]},
                    ],
                    "tax": {
                        "name": "VAT",
                        "default": "r1",
                        "rates": [{"rateID": "r1", "name": "Std", "rate": 19}],
                    },
                },
            ],
            "reports": [
                {
                    "reportID": "R1",
                    "policyID": "POL-US",
                    "reportName": "Trip to 東京",
                    "accountEmail": "ann@acme.example",
                    "status": "APPROVED",
                    "created": "2026-10-28 09:00:00",
                    "submitted": "2026-10-30 10:00:00",
                    "approved": "2026-11-02 14:22:10",
                    "transactionList": [
                        _tx(
                            "T1",
                            12345,
                            merchant="Barnes &amp; Noble",
                            category="Airfare",
                            tag="New Lab:Apollo",
                        ),
                        _tx(
                            "T2",
                            -500,
                            merchant="McDonald's",
                            category="Meals",
                            reimbursable=False,
                            cardID="C9",
                            cardNumber="4111XXXXXXXX1111",
                        ),
                    ],
                },
                {
                    "reportID": "R2",
                    "policyID": "POL-US",
                    "status": "APPROVED",
                    "created": "2026-10-01 09:00:00",
                    "submitted": "2026-11-01 08:00:00",
                    "approved": "2026-11-03 09:00:00",
                    "transactionList": [_tx("T3", 0, merchant="Zero")],
                },
                {
                    "reportID": "R3",
                    "policyID": "POL-EU",
                    "currency": "EUR",
                    "status": "REIMBURSED",
                    "created": "2026-11-04",
                    "submitted": "2026-11-04 12:00:00",
                    "approved": "2026-11-05 09:00:00",
                    "reimbursed": "2026-11-06 09:00:00",
                    "transactionList": [
                        _tx(
                            "T4",
                            1000,
                            currency="EUR",
                            convertedAmount=1000,
                            currencyConversionRate="1.08",
                        )
                    ],
                },
                {
                    "reportID": "R4",
                    "policyID": "POL-US",
                    "status": "SUBMITTED",
                    "created": "2026-11-02",
                    "submitted": "2026-11-02 12:00:00",
                },
                {
                    "reportID": "R5",
                    "policyID": "POL-US",
                    "status": "APPROVED",
                    "created": "2026-11-03",
                    "submitted": "2026-11-03 12:00:00",
                    "approved": "2026-11-04 00:00:01",
                    "exportLabels": ["ml-console"],
                },
            ],
        }
    }


def dataset() -> Dataset:
    return parse_dataset(raw_dataset())


def job(kind: str, creds: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    return {"type": kind, "credentials": creds or CREDS, **kw}


def export_job(filters: dict[str, Any], **kw: Any) -> dict[str, Any]:
    input_settings = {"type": "combinedReportData", "filters": filters}
    input_settings.update(kw.pop("input", {}))
    return job(
        "file",
        onReceive={"immediateResponse": ["returnRandomFileName"]},
        inputSettings=input_settings,
        outputSettings={"fileExtension": "json"},
        **kw,
    )


def form(description: dict[str, Any] | str, **extra: str) -> dict[str, str]:
    text = description if isinstance(description, str) else json.dumps(description)
    return {"requestJobDescription": text, **extra}


async def post(
    client: httpx.AsyncClient, description: dict[str, Any] | str, **extra: str
) -> httpx.Response:
    return await client.post(ENDPOINT, data=form(description, **extra))


async def export_ids(client: httpx.AsyncClient, description: dict[str, Any]) -> list[str]:
    """Run an export job, download the file and return the exported reportIDs in order."""
    name = await post(client, description, template=TEMPLATE)
    assert name.status_code == 200 and name.headers["content-type"].startswith("text/plain"), (
        name.text
    )
    got = await post(client, job("download", fileName=name.text, fileSystem="integrationServer"))
    return [r["reportID"] for r in json.loads(got.content)]
