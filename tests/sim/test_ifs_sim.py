"""The IFS Cloud simulator over real HTTP on loopback (uvicorn), and in-process for the rest."""

from __future__ import annotations

import base64
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from console import money
from console.sim.dataset import parse_dataset
from console.sim.ifs_app import IfsSim, IfsSimSettings
from tests.conftest import serve_asgi as serve

ODATA = "/main/ifsapplications/projection/v1"
CPV = f"{ODATA}/AccountingCodePartValueHandling.svc/CodePartValueSet"
PERIODS = f"{ODATA}/AccountingPeriodHandling.svc/AccountingPeriodSet"
VOUCHERS = f"{ODATA}/ManualVoucherHandling.svc/VoucherSet"
TEMPLATE = f"{ODATA}/ManualVoucherHandling.svc/JournalTemplateSet(Company='10',VoucherType='X')"
TOKEN = "/auth/realms/acme/protocol/openid-connect/token"
T0 = 1_793_000_000.0  # 2026-10-25, a fixed moment for the fake clock


def small_dataset(extra_b_values: int = 0) -> dict[str, Any]:
    b_values = [
        {"CodePart": "B", "CodePartValue": "CC-100", "Description": "Head office"},
        {
            "CodePart": "B",
            "CodePartValue": "CC-410",
            "Description": "New Lab",
            "ValidUntil": "2026-10-31",
        },
        {"CodePart": "B", "CodePartValue": "CC-500", "Description": "O'Brien's team"},
    ]
    b_values += [
        {"CodePart": "B", "CodePartValue": f"CC-9{i:03d}", "Description": f"Extra {i}"}
        for i in range(extra_b_values)
    ]
    return {
        "ifs": {
            "realm": "acme",
            "clients": [{"client_id": "ml-console", "client_secret": "s3cret"}],
            "token_lifetime_s": 300,
            "companies": [
                {
                    "Company": "10",
                    "CurrencyCode": "USD",
                    "code_part_values": [
                        {"CodePart": "A", "CodePartValue": "6110", "Description": "Airfare"},
                        {"CodePart": "A", "CodePartValue": "6120", "Description": "Hotels"},
                        {"CodePart": "A", "CodePartValue": "2930", "Description": "Accrued"},
                        {
                            "CodePart": "A",
                            "CodePartValue": "6999",
                            "Description": "Old account",
                            "ValidUntil": "2025-12-31",
                        },
                        {"CodePart": "C", "CodePartValue": "APOLLO", "Description": "Apollo"},
                        *b_values,
                    ],
                    "periods": [
                        {
                            "AccountingYear": 2026,
                            "AccountingPeriod": 10,
                            "DateFrom": "2026-10-01",
                            "DateUntil": "2026-10-31",
                            "PeriodStatus": "Closed",
                        },
                        {
                            "AccountingYear": 2026,
                            "AccountingPeriod": 11,
                            "DateFrom": "2026-11-01",
                            "DateUntil": "2026-11-30",
                            "PeriodStatus": "Open",
                        },
                    ],
                    "currency_rates": [
                        {"CurrencyCode": "EUR", "ValidFrom": "2026-11-01", "CurrencyRate": "1.08"}
                    ],
                    "voucher_types": [{"VoucherType": "X", "Description": "Accruals"}],
                },
                {"Company": "20", "CurrencyCode": "EUR", "voucher_types": [{"VoucherType": "X"}]},
            ],
        }
    }


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_sim(clock: FakeClock | None = None, **settings: Any) -> IfsSim:
    base = IfsSimSettings.fast().model_dump() | settings
    return IfsSim(
        parse_dataset(small_dataset(), "test"),
        IfsSimSettings(**base),
        clock=clock or FakeClock(),
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def live(clock: FakeClock) -> Iterator[tuple[IfsSim, httpx.Client]]:
    sim = make_sim(clock)
    with serve(sim.app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield sim, client


@pytest.fixture
async def asgi(clock: FakeClock) -> AsyncIterator[tuple[IfsSim, httpx.AsyncClient]]:
    sim = make_sim(clock)
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ifs.test") as client:
        yield sim, client


def token_form(secret: str = "s3cret") -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": "ml-console",
        "client_secret": secret,
        "scope": "openid microprofile-jwt",
    }


def bearer(client: httpx.Client) -> dict[str, str]:
    r = client.post(TOKEN, data=token_form())
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def abearer(client: httpx.AsyncClient) -> dict[str, str]:
    r = await client.post(TOKEN, data=token_form())
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def origin(client: httpx.Client) -> str:
    return str(client.base_url).rstrip("/")


def jwt_part(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def voucher(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Company": "10",
        "VoucherType": "X",
        "VoucherDate": "2026-11-03",
        "AccountingYear": 2026,
        "AccountingPeriod": 11,
        "ReferenceNumber": "EXP:R1:abc123",
        "Text": "Report R1 — Zoë Ångström",
        "VoucherRowArray": [
            {
                "Account": "6110",
                "CodeB": "CC-100",
                "CodeC": "APOLLO",
                "CurrencyCode": "USD",
                "CurrencyRate": 1,
                "CurrencyDebetAmount": Decimal("123.45"),
                "DebetAmount": Decimal("123.45"),
                "Text": "T1",
            },
            {
                "Account": "6120",
                "CodeB": "CC-500",
                "CurrencyCode": "USD",
                "CurrencyRate": 1,
                "CurrencyDebetAmount": Decimal("0.10"),
                "DebetAmount": Decimal("0.10"),
                "Text": "T2",
            },
            {
                "Account": "2930",
                "CurrencyCode": "USD",
                "CurrencyRate": 1,
                "CurrencyCreditAmount": Decimal("123.55"),
                "CreditAmount": Decimal("123.55"),
                "Text": "R1",
            },
        ],
    }
    body.update(overrides)
    return body


def post_json(body: Any, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "content": money.dumps(body),
        "headers": headers | {"Content-Type": "application/json"},
    }


def template_etag(client: httpx.Client, auth: dict[str, str]) -> str:
    r = client.get(TEMPLATE, headers=auth)
    assert r.status_code == 200, r.text
    return r.json()["@odata.etag"]


def assert_ifs_error(r: httpx.Response, status: int, code: str, *fragments: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    for fragment in fragments:
        assert fragment in err["message"], err["message"]


# ================================================================ over real HTTP (uvicorn)
def test_token_is_keycloak_shaped_and_expires_on_the_clock(
    live: tuple[IfsSim, httpx.Client], clock: FakeClock
) -> None:
    _, client = live
    r = client.post(TOKEN, data=token_form())
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300 and body["refresh_expires_in"] == 0
    assert body["not-before-policy"] == 0 and body["scope"] == "openid microprofile-jwt"
    header, claims = jwt_part(body["access_token"], 0), jwt_part(body["access_token"], 1)
    assert header["alg"] == "RS256" and header["typ"] == "JWT" and header["kid"]
    assert claims["iss"] == f"{origin(client)}/auth/realms/acme"
    assert claims["aud"] == ["acme", "account"] and claims["azp"] == "ml-console"
    assert claims["typ"] == "Bearer" and claims["exp"] - claims["iat"] == 300
    assert claims["jti"]
    auth = {"Authorization": f"Bearer {body['access_token']}"}

    assert client.get(CPV, headers=auth).status_code == 200
    clock.advance(299)
    assert client.get(CPV, headers=auth).status_code == 200
    clock.advance(1)
    r = client.get(CPV, headers=auth)
    assert_ifs_error(r, 401, "UNAUTHORIZED", "expired")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")

    second = client.post(TOKEN, data=token_form()).json()["access_token"]
    assert second != body["access_token"]
    assert client.get(CPV, headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_revoking_tokens_invalidates_every_outstanding_token(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    _, client = live
    first, second = bearer(client), bearer(client)
    assert client.post("/__sim/tokens/revoke").json() == {"revoked": 2}
    for auth in (first, second):
        assert_ifs_error(client.get(CPV, headers=auth), 401, "UNAUTHORIZED")
    assert client.get(CPV, headers=bearer(client)).status_code == 200


def test_token_endpoint_refuses_bad_clients_as_keycloak_does(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    _, client = live
    r = client.post(TOKEN, data=token_form("wrong"))
    assert r.status_code == 401
    assert r.json() == {
        "error": "unauthorized_client",
        "error_description": "Invalid client or Invalid client credentials",
    }
    r = client.post(TOKEN, data={**token_form(), "client_id": "someone-else"})
    assert r.status_code == 401
    wrong_realm = client.post(TOKEN.replace("acme", "other"), data=token_form())
    assert wrong_realm.status_code == 404
    r = client.post(TOKEN, data={**token_form(), "grant_type": "password"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    # HTTP Basic client authentication is accepted too.
    r = client.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        auth=("ml-console", "s3cret"),
    )
    assert r.status_code == 200 and r.json()["access_token"]


def test_odata_without_a_bearer_token_is_401(live: tuple[IfsSim, httpx.Client]) -> None:
    _, client = live
    assert_ifs_error(client.get(CPV), 401, "UNAUTHORIZED")
    assert_ifs_error(
        client.get(CPV, headers={"Authorization": "Bearer not-a-token"}), 401, "UNAUTHORIZED"
    )


def test_metadata_is_edmx_with_keys_whatever_the_accept_header(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    _, client = live
    auth = bearer(client) | {"Accept": "application/json"}
    r = client.get(f"{ODATA}/ManualVoucherHandling.svc/$metadata", headers=auth)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/xml")
    doc = ET.fromstring(r.content)
    ns = {
        "edmx": "http://docs.oasis-open.org/odata/ns/edmx",
        "edm": "http://docs.oasis-open.org/odata/ns/edm",
    }
    schema = doc.find("edmx:DataServices/edm:Schema", ns)
    assert schema is not None and schema.get("Namespace") == "IfsApp.ManualVoucherHandling"
    voucher_type = schema.find("edm:EntityType[@Name='Voucher']", ns)
    assert voucher_type is not None
    keys = [p.get("Name") for p in voucher_type.findall("edm:Key/edm:PropertyRef", ns)]
    assert keys == ["Company", "VoucherType", "AccountingYear", "VoucherNo"]
    types = {p.get("Name"): p.get("Type") for p in voucher_type.findall("edm:Property", ns)}
    assert types["VoucherDate"] == "Edm.Date" and types["VoucherNo"] == "Edm.Int32"
    nav = voucher_type.find("edm:NavigationProperty[@Name='VoucherRowArray']", ns)
    assert nav is not None
    assert nav.get("Type") == "Collection(IfsApp.ManualVoucherHandling.VoucherRow)"
    row_type = schema.find("edm:EntityType[@Name='VoucherRow']", ns)
    assert row_type is not None
    row_types = {p.get("Name"): p.get("Type") for p in row_type.findall("edm:Property", ns)}
    assert row_types["CurrencyDebetAmount"] == "Edm.Decimal" and "CodeJ" in row_types
    sets = [s.get("Name") for s in schema.findall("edm:EntityContainer/edm:EntitySet", ns)]
    assert sets == ["JournalTemplateSet", "VoucherSet"]

    service = client.get(f"{ODATA}/AccountingCodePartValueHandling.svc/", headers=auth).json()
    assert [s["name"] for s in service["value"]] == ["CodePartValueSet"]


def test_paging_follows_an_absolute_next_link_until_exhausted(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    _, client = live
    assert client.post("/__sim/settings", json={"server_page_size": 2}).status_code == 200
    auth = bearer(client)
    params = {
        "$filter": "Company eq '10' and CodePart ne 'C'",
        "$orderby": "CodePart desc,CodePartValue",
        "$select": "CodePart,CodePartValue",
        "$count": "true",
    }
    r = client.get(CPV, params=params, headers=auth)
    assert r.status_code == 200
    page = r.json()
    assert page["@odata.count"] == 7
    assert page["@odata.context"].endswith("$metadata#CodePartValueSet(CodePart,CodePartValue)")
    seen: list[tuple[str, str]] = []
    for _ in range(10):
        seen += [(row["CodePart"], row["CodePartValue"]) for row in page["value"]]
        assert all(set(row) >= {"@odata.etag"} for row in page["value"])
        assert "Description" not in page["value"][0]
        link = page.get("@odata.nextLink")
        if link is None:
            break
        assert link.startswith(origin(client) + CPV + "?")
        assert "%24skip=" in link or "$skip=" in link
        page = httpx.get(link, headers=auth).json()  # absolute: no base URL needed
    assert seen == [
        ("B", "CC-100"),
        ("B", "CC-410"),
        ("B", "CC-500"),
        ("A", "2930"),
        ("A", "6110"),
        ("A", "6120"),
        ("A", "6999"),
    ]


def test_top_skip_and_the_top_limit(live: tuple[IfsSim, httpx.Client]) -> None:
    _, client = live
    auth = bearer(client)
    r = client.get(
        CPV, params={"$orderby": "CodePartValue", "$skip": "1", "$top": "2"}, headers=auth
    )
    assert [row["CodePartValue"] for row in r.json()["value"]] == ["6110", "6120"]
    assert "@odata.nextLink" not in r.json()
    assert_ifs_error(
        client.get(CPV, params={"$top": "5001"}, headers=auth), 500, "ODP_QUERY_LIMIT_EXCEEDED"
    )
    assert client.get(CPV, params={"$top": "5000"}, headers=auth).status_code == 200


def test_clear_messages_for_malformed_filter_and_unknown_resources(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    _, client = live
    auth = bearer(client)
    r = client.get(CPV, params={"$filter": "Company eq '10' andd CodePart eq 'A'"}, headers=auth)
    assert_ifs_error(r, 400, "ODP_URI_SYNTAX_ERROR", "'andd'", "position 17")
    r = client.get(CPV, params={"$filter": "Cost eq 1"}, headers=auth)
    assert_ifs_error(r, 400, "ODP_PROPERTY_NOTFOUND", "'Cost'", "AccountingCodePartValue")
    r = client.get(f"{ODATA}/AccountingCodePartValueHandling.svc/CodePartValues", headers=auth)
    assert_ifs_error(r, 404, "ODP_RESOURCE_NOTFOUND", "'CodePartValues'", "CodePartValueSet")
    r = client.get(f"{ODATA}/VoucherEntryHandling.svc/VoucherSet", headers=auth)
    assert_ifs_error(r, 404, "ODP_RESOURCE_NOTFOUND", "'VoucherEntryHandling'")


def test_voucher_post_creates_sequential_vouchers_queryable_by_reference(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    sim, client = live
    auth = bearer(client)
    etag = template_etag(client, auth)
    r = client.post(VOUCHERS, **post_json(voucher(), auth | {"If-Match": etag}))
    assert r.status_code == 201, r.text
    created = money.loads(r.text)
    assert created["VoucherNo"] == 1 and created["AccountingPeriod"] == 11
    assert created["@odata.etag"].startswith('W/"')
    assert r.headers["Location"] == (
        f"{origin(client)}{VOUCHERS}(Company='10',VoucherType='X',AccountingYear=2026,VoucherNo=1)"
    )
    rows = created["VoucherRowArray"]
    assert [row["RowNo"] for row in rows] == [1, 2, 3]
    assert rows[0]["CurrencyDebetAmount"] == Decimal("123.45")
    assert rows[2]["CreditAmount"] == Decimal("123.55") and rows[2]["DebetAmount"] is None
    assert '"CreditAmount": 123.55' in r.text  # an exact JSON number, not a string

    # No idempotency: the same ReferenceNumber again is a second voucher.
    again = client.post(VOUCHERS, **post_json(voucher(), auth | {"If-Match": etag}))
    assert again.status_code == 201 and again.json()["VoucherNo"] == 2
    assert template_etag(client, auth) == etag  # a POST does not change the template

    found = client.get(
        VOUCHERS, params={"$filter": "ReferenceNumber eq 'EXP:R1:abc123'"}, headers=auth
    ).json()["value"]
    assert [v["VoucherNo"] for v in found] == [1, 2]
    held = sim.vouchers()
    assert len(held) == 2 and held[0]["Text"] == "Report R1 — Zoë Ångström"
    assert held[0]["VoucherRowArray"][1]["CodeB"] == "CC-500"
    assert client.get("/__sim/vouchers").json()[1]["VoucherNo"] == 2

    key = "(Company='10',VoucherType='X',AccountingYear=2026,VoucherNo=1)"
    one = client.get(VOUCHERS + key, headers=auth)
    assert one.status_code == 200 and one.json()["ReferenceNumber"] == "EXP:R1:abc123"
    row_page = client.get(
        VOUCHERS + key + "/VoucherRowArray",
        params={"$filter": "CreditAmount ne null"},
        headers=auth,
    ).json()
    assert [row["Account"] for row in row_page["value"]] == ["2930"]
    expanded = client.get(VOUCHERS, params={"$expand": "VoucherRowArray"}, headers=auth).json()
    assert len(expanded["value"][0]["VoucherRowArray"]) == 3
    missing = client.get(VOUCHERS + key.replace("=1)", "=99)"), headers=auth)
    assert_ifs_error(missing, 404, "ODP_RESOURCE_NOTFOUND", "VoucherNo=99")


def test_if_match_missing_stale_star_and_the_real_tenant_variant(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    sim, client = live
    auth = bearer(client)
    r = client.post(VOUCHERS, **post_json(voucher(), auth))
    assert_ifs_error(r, 428, "ODP_MISSING_PRECONDITION", "If-Match")
    old = template_etag(client, auth)
    edited = client.post("/__sim/templates/edit", json={"Company": "10", "VoucherType": "X"})
    assert edited.status_code == 200
    new = template_etag(client, auth)
    assert new != old and edited.json()["@odata.etag"] == new
    r = client.post(VOUCHERS, **post_json(voucher(), auth | {"If-Match": old}))
    assert_ifs_error(r, 412, "ODP_PRECONDITION_FAILED", "another user")
    assert sim.vouchers() == []
    assert (
        client.post(VOUCHERS, **post_json(voucher(), auth | {"If-Match": new})).status_code == 201
    )
    assert (
        client.post(VOUCHERS, **post_json(voucher(), auth | {"If-Match": "*"})).status_code == 201
    )
    assert client.post("/__sim/settings", json={"require_if_match": False}).status_code == 200
    assert client.post(VOUCHERS, **post_json(voucher(), auth)).status_code == 201
    assert len(sim.vouchers()) == 3


def test_drop_after_commits_the_voucher_but_the_client_sees_a_dropped_connection(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    sim, client = live
    auth = bearer(client)
    etag = template_etag(client, auth)
    fault = {"route": "VoucherSet", "method": "POST", "fault": "drop-after", "count": 1}
    assert client.post("/__sim/faults", json=fault).status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(VOUCHERS, **post_json(voucher(), auth | {"If-Match": etag}))
    assert [v["ReferenceNumber"] for v in sim.vouchers()] == ["EXP:R1:abc123"]
    # The client's recovery path: look the reference up before retrying.
    found = client.get(
        VOUCHERS, params={"$filter": "ReferenceNumber eq 'EXP:R1:abc123'"}, headers=auth
    )
    assert [v["VoucherNo"] for v in found.json()["value"]] == [1]
    assert client.get("/__sim/faults").json()[0]["fired"] == 1


def test_rate_limit_answers_429_with_retry_after_on_the_clock(clock: FakeClock) -> None:
    sim = make_sim(clock, rate_limit_per_minute=3)
    with serve(sim.app) as url, httpx.Client(base_url=url) as client:
        auth = bearer(client)  # the token call counts too
        assert client.get(CPV, headers=auth).status_code == 200
        clock.advance(20)
        assert client.get(CPV, headers=auth).status_code == 200
        clock.advance(10)
        r = client.get(CPV, headers=auth)
        assert_ifs_error(r, 429, "TOO_MANY_REQUESTS", "3 requests per minute")
        assert r.headers["Retry-After"] == "30"  # the token call leaves the window at T0+60
        assert client.get("/__sim/requests").status_code == 200  # control: never limited
        clock.advance(30)  # the token call and the first GET (both at T0) leave the window
        assert client.get(CPV, headers=auth).status_code == 200
        assert client.get(CPV, headers=auth).status_code == 200
        r = client.get(CPV, headers=auth)
        assert r.status_code == 429 and r.headers["Retry-After"] == "20"  # T0+20 leaves at T0+80
        client.post("/__sim/settings", json={"rate_limit_per_minute": None})
        assert client.get(CPV, headers=auth).status_code == 200


def test_control_routes_are_not_counted_and_reset(live: tuple[IfsSim, httpx.Client]) -> None:
    _, client = live
    auth = bearer(client)
    client.get(CPV, headers=auth)
    client.get(CPV, headers=auth)
    client.get("/__sim/vouchers")
    snap = client.get("/__sim/requests").json()
    assert snap["total"] == 3
    assert {"method": "GET", "path": CPV, "status": 200, "count": 2} in snap["by_route"]
    assert client.post("/__sim/requests/reset").status_code == 200
    assert client.get("/__sim/requests").json() == {
        "total": 0,
        "by_route": [],
        "batch": {"batches": 0, "by_status": {}, "change_sets_failed": 0, "parts": 0},
    }


def test_injected_500_can_carry_mi_modified_error(live: tuple[IfsSim, httpx.Client]) -> None:
    _, client = live
    auth = bearer(client)
    client.post(
        "/__sim/faults",
        json={"route": "CodePartValueSet", "fault": "status", "status": 500, "count": 2},
    )
    assert client.post("/__sim/next-error-code", json={"code": "MI_MODIFIED_ERROR"}).json() == {
        "queued": 1
    }
    r = client.get(CPV, headers=auth)
    assert r.status_code == 500
    assert r.json() == {
        "error": {"code": "MI_MODIFIED_ERROR", "message": "Service metadata already modified."}
    }
    assert_ifs_error(client.get(CPV, headers=auth), 500, "ODP_INTERNAL_ERROR", "injected")
    assert client.get(CPV, headers=auth).status_code == 200
    assert client.delete("/__sim/faults").status_code == 200
    assert client.get("/__sim/faults").json() == []


# ================================================================ in-process (ASGI transport)
async def post_voucher(
    client: httpx.AsyncClient, auth: dict[str, str], body: Any
) -> httpx.Response:
    return await client.post(VOUCHERS, **post_json(body, auth | {"If-Match": "*"}))


def rows_with(index: int, **changes: Any) -> list[dict[str, Any]]:
    rows = voucher()["VoucherRowArray"]
    rows[index] = {k: v for k, v in (rows[index] | changes).items() if v is not None}
    return rows


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        (
            voucher(VoucherRowArray=rows_with(2, CurrencyCreditAmount=Decimal("123.50"))),
            "VOUCHER_NOT_BALANCED",
            "Voucher is not balanced in transaction currency",
        ),
        (
            voucher(VoucherRowArray=rows_with(2, CreditAmount=Decimal("123.54"))),
            "VOUCHER_NOT_BALANCED",
            "Voucher is not balanced: debet 123.55 USD, credit 123.54 USD",
        ),
        (
            voucher(VoucherRowArray=rows_with(0, Account="9999")),
            "ACCOUNT_NOTEXIST",
            "Account 9999 does not exist in company 10",
        ),
        (
            voucher(VoucherRowArray=rows_with(0, Account="6999")),
            "ACCOUNT_NOTVALID",
            "Account 6999 is not valid on 2026-11-03",
        ),
        (
            voucher(VoucherRowArray=rows_with(0, CodeB="CC-410")),
            "CODE_PART_VALUE_NOTVALID",
            "Code part value CC-410 (CodeB) is not valid on 2026-11-03",
        ),
        (
            voucher(VoucherRowArray=rows_with(1, CodeB="CC-999")),
            "CODE_PART_VALUE_NOTEXIST",
            "Code part value CC-999 (CodeB) does not exist in company 10",
        ),
        (
            voucher(VoucherRowArray=rows_with(1, CodeC="CC-100")),
            "CODE_PART_VALUE_NOTEXIST",
            "Code part value CC-100 (CodeC) does not exist",
        ),
        (
            voucher(VoucherDate="2026-10-15", AccountingPeriod=10),
            "PERIOD_CLOSED",
            "Accounting period 2026-10 is closed",
        ),
        (
            voucher(VoucherDate="2026-10-15"),
            "PERIOD_MISMATCH",
            "Voucher date 2026-10-15 is not in accounting period 2026-11",
        ),
        (
            voucher(VoucherDate="2027-01-05", AccountingYear=None, AccountingPeriod=None),
            "PERIOD_NOTEXIST",
            "No accounting period in company 10 contains 2027-01-05",
        ),
        (voucher(Company="99"), "COMPANY_NOTEXIST", "Company 99 does not exist"),
        (
            voucher(VoucherType="Z"),
            "VOUCHER_TYPE_NOTEXIST",
            "Voucher type Z does not exist in company 10",
        ),
        (
            voucher(VoucherRowArray=rows_with(0, CreditAmount=Decimal("1"))),
            "ROW_AMOUNT_INVALID",
            "Row 1 must have exactly one of debet and credit accounting amount",
        ),
        (
            voucher(VoucherRowArray=rows_with(1, CurrencyDebetAmount=None)),
            "ROW_AMOUNT_INVALID",
            "Row 2 must have exactly one of debet and credit currency amount",
        ),
        (
            voucher(VoucherRowArray=rows_with(0, CurrencyCode="EUR", CurrencyRate=None)),
            "CURRENCY_RATE_MISSING",
            "Currency rate is missing for EUR on row 1",
        ),
        (voucher(VoucherDate=None), "FIELD_MANDATORY", "Field VoucherDate is mandatory"),
        (voucher(VoucherRowArray=[]), "FIELD_MANDATORY", "VoucherRowArray"),
        (
            voucher(VoucherRowArray=rows_with(0, CurrencyDebitAmount=Decimal(1))),
            "ODP_DESERIALIZATION_ERROR",
            "Property 'CurrencyDebitAmount' does not exist on VoucherRow (row 1)",
        ),
        (voucher(VoucherNo=5), "ODP_DESERIALIZATION_ERROR", "VoucherNo is assigned"),
        (
            voucher(VoucherDate="03/11/2026"),
            "ODP_DESERIALIZATION_ERROR",
            "VoucherDate must be a date yyyy-mm-dd",
        ),
        (
            voucher(VoucherRowArray=rows_with(0, DebetAmount="123.45")),
            "ODP_DESERIALIZATION_ERROR",
            "DebetAmount must be a number",
        ),
    ],
)
async def test_business_errors_answer_400_and_create_nothing(
    asgi: tuple[IfsSim, httpx.AsyncClient], body: dict[str, Any], code: str, fragment: str
) -> None:
    sim, client = asgi
    auth = await abearer(client)
    body = {k: v for k, v in body.items() if v is not None}
    r = await post_voucher(client, auth, body)
    assert_ifs_error(r, 400, code, fragment)
    assert sim.vouchers() == []


async def test_a_rejected_voucher_leaves_no_rows_and_uses_no_number(
    asgi: tuple[IfsSim, httpx.AsyncClient],
) -> None:
    sim, client = asgi
    auth = await abearer(client)
    # Two good rows and a bad third: nothing of it is kept.
    bad = voucher(VoucherRowArray=rows_with(2, Account="9999"))
    assert (await post_voucher(client, auth, bad)).status_code == 400
    assert sim.vouchers() == []
    good = await post_voucher(client, auth, voucher())
    assert good.status_code == 201 and good.json()["VoucherNo"] == 1
    assert len(sim.vouchers()[0]["VoucherRowArray"]) == 3


async def test_voucher_post_needs_json_content_type(
    asgi: tuple[IfsSim, httpx.AsyncClient],
) -> None:
    _, client = asgi
    auth = await abearer(client)
    r = await client.post(
        VOUCHERS, content=money.dumps(voucher()), headers=auth | {"Content-Type": "text/plain"}
    )
    assert_ifs_error(r, 400, "ODP_DESERIALIZATION_ERROR", "application/json")
    r = await client.post(
        VOUCHERS, content=b"{not json", headers=auth | {"Content-Type": "application/json"}
    )
    assert_ifs_error(r, 400, "ODP_DESERIALIZATION_ERROR", "not valid JSON")


async def test_foreign_currency_voucher_balances_in_both_currencies(
    asgi: tuple[IfsSim, httpx.AsyncClient],
) -> None:
    sim, client = asgi
    auth = await abearer(client)
    rows = [
        {
            "Account": "6110",
            "CurrencyCode": "EUR",
            "CurrencyRate": Decimal("1.08"),
            "CurrencyDebetAmount": Decimal("10.01"),
            "DebetAmount": Decimal("10.81"),
        },
        {
            "Account": "6120",
            "CurrencyCode": "EUR",
            "CurrencyRate": Decimal("1.08"),
            "CurrencyDebetAmount": Decimal("10.01"),
            "DebetAmount": Decimal("10.81"),
        },
        {
            "Account": "2930",
            "CurrencyCode": "EUR",
            "CurrencyRate": Decimal("1.08"),
            "CurrencyCreditAmount": Decimal("20.02"),
            "CreditAmount": Decimal("21.62"),
        },
    ]
    r = await post_voucher(client, auth, voucher(VoucherRowArray=rows))
    assert r.status_code == 201, r.text
    assert sim.vouchers()[0]["VoucherRowArray"][2]["CreditAmount"] == Decimal("21.62")


async def test_control_routes_change_the_world(asgi: tuple[IfsSim, httpx.AsyncClient]) -> None:
    sim, client = asgi
    auth = await abearer(client)
    # A new dimension, as an IFS admin would create it, is served and usable at once.
    added = await client.post(
        "/__sim/code-part-values",
        json={"Company": "10", "CodePart": "B", "CodePartValue": "CC-777", "Description": "New"},
    )
    assert added.status_code == 200 and added.json()["ValidUntil"] == "2099-12-31"
    found = await client.get(CPV, params={"$filter": "CodePartValue eq 'CC-777'"}, headers=auth)
    assert [v["Description"] for v in found.json()["value"]] == ["New"]
    # Updating an expired one makes it valid again (and changes its ETag).
    before = (
        await client.get(CPV, params={"$filter": "CodePartValue eq 'CC-410'"}, headers=auth)
    ).json()
    await client.post(
        "/__sim/code-part-values",
        json={
            "Company": "10",
            "CodePart": "B",
            "CodePartValue": "CC-410",
            "ValidUntil": "2027-12-31",
        },
    )
    after = (
        await client.get(CPV, params={"$filter": "CodePartValue eq 'CC-410'"}, headers=auth)
    ).json()
    assert after["value"][0]["@odata.etag"] != before["value"][0]["@odata.etag"]
    ok = await post_voucher(client, auth, voucher(VoucherRowArray=rows_with(0, CodeB="CC-410")))
    assert ok.status_code == 201, ok.text

    # Closing a period makes it refuse vouchers.
    closed = await client.post(
        "/__sim/periods",
        json={
            "Company": "10",
            "AccountingYear": 2026,
            "AccountingPeriod": 11,
            "PeriodStatus": "Closed",
        },
    )
    assert closed.status_code == 200 and closed.json()["PeriodStatus"] == "Closed"
    r = await post_voucher(client, auth, voucher())
    assert_ifs_error(r, 400, "PERIOD_CLOSED", "Accounting period 2026-11 is closed")
    served = await client.get(PERIODS, params={"$filter": "PeriodStatus eq 'Closed'"}, headers=auth)
    assert len(served.json()["value"]) == 2

    rate = await client.post(
        "/__sim/currency-rates",
        json={
            "Company": "10",
            "CurrencyCode": "GBP",
            "ValidFrom": "2026-11-01",
            "CurrencyRate": 1.2675,
        },
    )
    assert rate.status_code == 200
    rates = await client.get(
        f"{ODATA}/CurrencyRateHandling.svc/CurrencyRateSet",
        params={"$filter": "CurrencyCode eq 'GBP'"},
        headers=auth,
    )
    assert '"CurrencyRate": 1.2675' in rates.text

    bad = await client.post("/__sim/settings", json={"max_top": 0})
    assert bad.status_code == 400 and "max_top" in bad.json()["error"]
    unknown = await client.post("/__sim/settings", json={"colour": "red"})
    assert unknown.status_code == 400 and "colour" in unknown.json()["error"]
    assert (await client.post("/__sim/code-part-values", json={"Company": "77"})).status_code == 404
    bad_fault = await client.post("/__sim/faults", json={"fault": "explode"})
    assert bad_fault.status_code == 400 and "fault" in bad_fault.json()["error"]
    assert len(sim.vouchers()) == 1


async def test_int_deployment_and_latency_setting(
    asgi: tuple[IfsSim, httpx.AsyncClient],
) -> None:
    sim, client = asgi
    auth = await abearer(client)
    r = await client.get(CPV.replace("/main/", "/int/"), headers=auth)
    assert r.status_code == 200 and r.json()["@odata.context"].startswith("http://ifs.test/int/")
    sim.settings = sim.settings.model_copy(update={"latency_ms": 30})
    started = time.monotonic()
    await client.get(CPV, headers=auth)
    assert time.monotonic() - started >= 0.03


def test_filter_with_dates_escaped_quotes_and_functions_over_http(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    _, client = live
    auth = bearer(client)

    def values(expr: str) -> list[str]:
        r = client.get(CPV, params={"$filter": expr, "$orderby": "CodePartValue"}, headers=auth)
        assert r.status_code == 200, r.text
        return [row["CodePartValue"] for row in r.json()["value"]]

    assert values("ValidUntil lt 2026-11-03") == ["6999", "CC-410"]
    assert values("ValidUntil ge 2026-11-03 and CodePart eq 'B'") == ["CC-100", "CC-500"]
    assert values("Description eq 'O''Brien''s team'") == ["CC-500"]
    assert values("startswith(CodePartValue,'CC-') and not endswith(CodePartValue,'00')") == [
        "CC-410"
    ]
    assert values("tolower(Description) eq 'airfare' or CodePart eq 'C'") == ["6110", "APOLLO"]


async def test_unknown_routes_and_methods_answer_ifs_style_errors(
    asgi: tuple[IfsSim, httpx.AsyncClient],
) -> None:
    _, client = asgi
    auth = await abearer(client)
    assert_ifs_error(await client.get("/nothing/here"), 404, "ODP_RESOURCE_NOTFOUND")
    r = await client.patch(TEMPLATE, json={"Description": "x"}, headers=auth)
    assert_ifs_error(r, 405, "ODP_METHOD_NOT_ALLOWED", "PATCH")
    r = await client.get(f"{ODATA}/ManualVoucherHandling.svc/VoucherSet/Nope", headers=auth)
    assert_ifs_error(r, 404, "ODP_RESOURCE_NOTFOUND")
    r = await client.get(TEMPLATE.replace("VoucherType='X'", "Nope='X'"), headers=auth)
    assert_ifs_error(r, 400, "ODP_URI_SYNTAX_ERROR", "'Nope' is not a key of JournalTemplateSet")
