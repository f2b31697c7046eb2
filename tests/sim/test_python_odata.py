"""A third-party OData v4 client (python-odata, from PyPI) against the IFS simulator.

It reflects the `$metadata` of every projection the simulator serves (IFS Cloud 21R1's own
names, console/sim/ifs_model.py) into entity classes, and queries code part values and
accounts over real HTTP on loopback, following the server's `@odata.nextLink` pages by
itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from odata import ODataService

from console.sim import ifs_model as im
from console.sim.dataset import parse_dataset
from console.sim.ifs_app import IfsSim, IfsSimSettings
from tests.sim.test_ifs_sim import ODATA, TOKEN, FakeClock, serve, small_dataset

Reflect = Callable[[str], Any]


@pytest.fixture
def service() -> Iterator[tuple[IfsSim, Reflect]]:
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

        def reflect(projection: str) -> Any:
            return ODataService(
                f"{url}{ODATA}/{projection}.svc/",
                reflect_entities=True,
                session=session,
                quiet_progress=True,
            )

        yield sim, reflect


def test_python_odata_reflects_the_metadata(service: tuple[IfsSim, Reflect]) -> None:
    """Every projection's `$metadata` reflects into the entity sets, keys, attributes and
    navigations of IFS's model, and the voucher assistant's bound actions with their
    IfsApp-qualified names."""
    _, reflect = service
    for projection in im.PROJECTIONS.values():
        odata_service = reflect(projection.name)
        assert set(odata_service.entities) == set(projection.sets), projection.name
        for set_name, entity in projection.sets.items():
            schema = odata_service.entities[set_name].__odata_schema__
            props = {p["name"]: p for p in schema["properties"]}
            assert set(props) == set(entity.names), (projection.name, set_name)
            keys = {p["name"] for p in schema["properties"] if p["is_primary_key"]}
            assert keys == set(entity.key), (projection.name, set_name)
            navs = {n["name"]: n["type"] for n in schema["navigation_properties"]}
            assert navs == {
                n.name: (
                    f"Collection({projection.namespace}.{n.target})"
                    if n.collection
                    else f"{projection.namespace}.{n.target}"
                )
                for n in entity.navigations
            }
    assistant = reflect("VoucherEntryAssistantHandling")
    schema = assistant.entities["VoucherSet"].__odata_schema__
    props = {p["name"]: p["type"] for p in schema["properties"]}
    assert props["Objkey"] == "Edm.String" and props["VoucherDate"] == "Edm.Date"
    assert props["VoucherNo"] == "Edm.Int32"
    actions = {type(a).__dict__["name"]: a for a in assistant.actions.values()}
    assert set(actions) == {
        "IfsApp.VoucherEntryAssistantHandling.VoucherEntry_CreateVoucher",
        "IfsApp.VoucherEntryAssistantHandling.VoucherEntry_RemoveTempVoucher",
    }
    create = actions["IfsApp.VoucherEntryAssistantHandling.VoucherEntry_CreateVoucher"]
    assert type(create).return_type.__name__ == "IntegerProperty"  # the voucher number
    rows = reflect("VoucherRowsAnalysis").entities["VoucherRowSet"].__odata_schema__
    row_types = {p["name"]: p["type"] for p in rows["properties"]}
    assert row_types["CurrencyDebetAmount"] == "Edm.Decimal" and "CodeJ" in row_types


def test_python_odata_queries_code_part_values_across_pages(
    service: tuple[IfsSim, Reflect],
) -> None:
    sim, reflect = service
    odata_service = reflect("CodeBHandling")
    CodeB = odata_service.entities["CodeBSet"]
    query = odata_service.query(CodeB).filter(CodeB.Company == "10").order_by(CodeB.CodeB.asc())
    got = [(v.CodeB, v.Description, str(v.ValidUntil)) for v in query]
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
        if r["path"].endswith("/CodeBHandling.svc/CodeBSet") and r["status"] == 200
    ]
    assert sum(r["count"] for r in pages) == 3


def test_python_odata_escapes_quotes_the_simulator_understands(
    service: tuple[IfsSim, Reflect],
) -> None:
    _, reflect = service
    code_b = reflect("CodeBHandling")
    CodeB = code_b.entities["CodeBSet"]
    query = code_b.query(CodeB).filter(CodeB.Description == "O'Brien's team")
    assert [v.CodeB for v in query] == ["CC-500"]
    accounts = reflect("AccountsHandling")
    Account = accounts.entities["AccountSet"]
    found = accounts.query(Account).filter(Account.Company == "10")
    assert sorted(v.Account for v in found) == ["2930", "6110", "6120", "6999"]
