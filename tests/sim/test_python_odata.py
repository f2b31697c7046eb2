"""A third-party OData v4 client (python-odata, from PyPI) against the IFS simulator.

It reflects the simulator's `$metadata` into entity classes and queries CodePartValueSet over
real HTTP on loopback, following the server's `@odata.nextLink` pages by itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from odata import ODataService

from console.sim.dataset import parse_dataset
from console.sim.ifs_app import IfsSim, IfsSimSettings
from tests.sim.test_ifs_sim import ODATA, TOKEN, FakeClock, serve, small_dataset


@pytest.fixture
def service() -> Iterator[tuple[IfsSim, Any]]:
    # A small page size so the client has to follow several nextLinks.
    settings = IfsSimSettings.fast().model_copy(update={"server_page_size": 3})
    sim = IfsSim(
        parse_dataset(small_dataset(extra_b_values=5), "test"), settings, clock=FakeClock()
    )
    with serve(sim.app) as url, requests.Session() as session:
        token = session.post(
            url + TOKEN,
            data={
                "grant_type": "client_credentials",
                "client_id": "ml-console",
                "client_secret": "s3cret",
            },
            timeout=10,
        ).json()["access_token"]
        session.headers["Authorization"] = f"Bearer {token}"
        odata_service = ODataService(
            f"{url}{ODATA}/AccountingCodePartValueHandling.svc/",
            reflect_entities=True,
            session=session,
            quiet_progress=True,
        )
        yield sim, odata_service


def test_python_odata_reflects_the_metadata(service: tuple[IfsSim, Any]) -> None:
    _, odata_service = service
    assert set(odata_service.entities) == {"CodePartValueSet"}
    entity = odata_service.entities["CodePartValueSet"]
    schema = entity.__odata_schema__["properties"]
    keys = [p["name"] for p in schema if p["is_primary_key"]]
    assert keys == ["Company", "CodePart", "CodePartValue"]


def test_python_odata_queries_code_part_values_across_pages(service: tuple[IfsSim, Any]) -> None:
    sim, odata_service = service
    CodePartValue = odata_service.entities["CodePartValueSet"]
    query = (
        odata_service.query(CodePartValue)
        .filter(CodePartValue.Company == "10")
        .filter(CodePartValue.CodePart == "B")
        .order_by(CodePartValue.CodePartValue.asc())
    )
    got = [(v.CodePartValue, v.Description, v.ValidUntil) for v in query]
    expected_b = [
        (v["CodePartValue"], v.get("Description", ""), v.get("ValidUntil", "2099-12-31"))
        for v in small_dataset(extra_b_values=5)["ifs"]["companies"][0]["code_part_values"]
        if v["CodePart"] == "B"
    ]
    assert got == sorted(expected_b)
    assert len(got) == 8  # more than two pages of 3: the client followed the nextLinks
    pages = [
        r
        for r in sim.requests.snapshot()["by_route"]
        if r["path"].endswith("/CodePartValueSet") and r["status"] == 200
    ]
    assert sum(r["count"] for r in pages) == 3


def test_python_odata_escapes_quotes_the_simulator_understands(
    service: tuple[IfsSim, Any],
) -> None:
    _, odata_service = service
    CodePartValue = odata_service.entities["CodePartValueSet"]
    query = odata_service.query(CodePartValue).filter(CodePartValue.Description == "O'Brien's team")
    assert [v.CodePartValue for v in query] == ["CC-500"]
    accounts = odata_service.query(CodePartValue).filter(CodePartValue.CodePart == "A")
    assert sorted(v.CodePartValue for v in accounts) == ["2930", "6110", "6120", "6999"]
