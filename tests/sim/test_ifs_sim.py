"""The IFS Cloud simulator over real HTTP on loopback (uvicorn), and in-process for the rest.

Vouchers are made as IFS Cloud 21R1's voucher entry assistant makes them (design.md §3,
reference/ifs-cloud.md §0): a temporary voucher (`VoucherEntryAssistantHandling.svc/
VoucherSet`), its rows (`…/VoucherPostingArray`), then the bound action CreateVoucher with
the temporary voucher's ETag in `If-Match`; either request by request or as one `$batch`
change set. A business rule is answered at the step where IFS checks it.
"""

from __future__ import annotations

import base64
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from console import money
from console.ifs import batch as batch_wire
from console.sim.dataset import parse_dataset
from console.sim.ifs_app import IfsSim, IfsSimSettings
from console.sim.odata import form_etag
from tests.conftest import serve_asgi as serve

ODATA = "/main/ifsapplications/projection/v1"
ACCOUNTS = f"{ODATA}/AccountsHandling.svc/AccountSet"
CODE_B = f"{ODATA}/CodeBHandling.svc/CodeBSet"
PERIODS = f"{ODATA}/UserGroupPerPeriodHandling.svc/AccountingPeriodSet"
ASSISTANT = f"{ODATA}/VoucherEntryAssistantHandling.svc"
TEMP = f"{ASSISTANT}/VoucherSet"  # temporary vouchers
CREATE = "IfsApp.VoucherEntryAssistantHandling.VoucherEntry_CreateVoucher"
REMOVE = "IfsApp.VoucherEntryAssistantHandling.VoucherEntry_RemoveTempVoucher"
HOLD = f"{ODATA}/VoucherHandling.svc/VoucherSet"  # vouchers not yet in the GL
HOLD_ROWS = f"{ODATA}/VoucherRowsAnalysis.svc/VoucherRowSet"
GL_ROWS = f"{ODATA}/GLVoucherRowsAnalysis.svc/GenLedVoucherRowSet"  # assumed (GENLED)
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
                        # IFS's per-account demands: a cost centre and a text are
                        # mandatory on 6120, a project (CodeC) is blocked on 2930.
                        {
                            "CodePart": "A",
                            "CodePartValue": "6120",
                            "Description": "Hotels",
                            "ReqCodeB": "M",
                            "ReqText": "M",
                        },
                        {
                            "CodePart": "A",
                            "CodePartValue": "2930",
                            "Description": "Accrued",
                            "ReqCodeC": "S",
                        },
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


def split(body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A voucher as the assistant takes it: the temporary voucher's header (the voucher text
    is VoucherText2) and its rows (each carrying the ReferenceNumber)."""
    header = {
        k: v for k, v in body.items() if k not in ("VoucherRowArray", "ReferenceNumber", "Text")
    }
    if body.get("Text"):
        header["VoucherText2"] = body["Text"]
    reference = body.get("ReferenceNumber")
    rows = [
        dict(r) | ({"ReferenceNumber": reference} if reference else {})
        for r in body.get("VoucherRowArray", [])
    ]
    return header, rows


@dataclass
class Posted:
    """How far a voucher got: the last step sent ("header", "row n" or "create"), its
    answer, and the temporary voucher's answer (None when the header was refused)."""

    step: str
    response: httpx.Response
    temp: httpx.Response | None = None

    @property
    def entity(self) -> str:
        assert self.temp is not None
        return str(self.temp.headers["Location"])


def post_voucher(
    client: httpx.Client, auth: dict[str, str], body: dict[str, Any], *, create: bool = True
) -> Posted:
    """The voucher request by request: header, rows, then (unless `create` is false)
    CreateVoucher with the temporary voucher's ETag in If-Match."""
    header, rows = split(body)
    temp = client.post(TEMP, **post_json(header, auth))
    if temp.status_code != 201:
        return Posted("header", temp)
    entity = temp.headers["Location"]
    r = temp
    for n, row in enumerate(rows, start=1):
        r = client.post(f"{entity}/VoucherPostingArray", **post_json(row, auth))
        if r.status_code != 201:
            return Posted(f"row {n}", r, temp)
    if not create:
        return Posted("rows", r, temp)
    match = {"If-Match": temp.headers["ETag"]}
    return Posted("create", client.post(f"{entity}/{CREATE}", **post_json({}, auth | match)), temp)


async def apost_voucher(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]
) -> Posted:
    """`post_voucher` in-process (ASGI transport), with the temporary voucher's ETag."""
    header, rows = split(body)
    temp = await client.post(TEMP, **post_json(header, auth))
    if temp.status_code != 201:
        return Posted("header", temp)
    entity = temp.headers["Location"]
    for n, row in enumerate(rows, start=1):
        r = await client.post(f"{entity}/VoucherPostingArray", **post_json(row, auth))
        if r.status_code != 201:
            return Posted(f"row {n}", r, temp)
    match = {"If-Match": temp.headers["ETag"]}
    return Posted(
        "create", await client.post(f"{entity}/{CREATE}", **post_json({}, auth | match)), temp
    )


def change_set(body: dict[str, Any]) -> tuple[bytes, str]:
    """The voucher as one `$batch` change set: the temporary voucher (Content-ID 1), its rows
    on `$1/VoucherPostingArray`, CreateVoucher on `$1` with `If-Match: $1`."""
    header, rows = split(body)
    requests = [("VoucherSet", header, "")]
    requests += [("$1/VoucherPostingArray", row, "") for row in rows]
    requests.append((f"$1/{CREATE}", {}, "If-Match: $1\r\n"))
    text = "--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n"
    for n, (target, payload, extra) in enumerate(requests, start=1):
        data = money.dumps(payload)
        text += (
            f"--cs\r\nContent-Type: application/http\r\nContent-ID: {n}\r\n\r\n"
            f"POST {target} HTTP/1.1\r\nContent-Type: application/json\r\n{extra}\r\n{data}\r\n"
        )
    text += "--cs--\r\n--b--\r\n"
    return text.encode("utf-8"), "multipart/mixed; boundary=b"


def content_id_of(step: str, rows: int) -> str:
    """The Content-ID a failing step has in `change_set`."""
    if step == "header":
        return "1"
    if step == "create":
        return str(rows + 2)
    return str(int(step.split()[1]) + 1)


def older(etag: str) -> str:
    """The same record's ETag one version back: what a client holds once someone else has
    changed the record (IFS's ETag is base64 of `W/"<objid>:<objversion>"`)."""
    inner = base64.b64decode(etag[3:-1]).decode("ascii")
    objid, version = inner[3:-1].rsplit(":", 1)
    return form_etag(objid, datetime.strptime(version, "%Y%m%d%H%M%S") - timedelta(seconds=1))


def row_set_vouchers(client: httpx.Client, auth: dict[str, str], rows: str, ref: str) -> list[int]:
    """The voucher numbers whose rows in `rows` carry this ReferenceNumber."""
    r = client.get(rows, params={"$filter": f"ReferenceNumber eq '{ref}'"}, headers=auth)
    assert r.status_code == 200, r.text
    return sorted({row["VoucherNo"] for row in r.json()["value"]})


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

    assert client.get(ACCOUNTS, headers=auth).status_code == 200
    clock.advance(299)
    assert client.get(ACCOUNTS, headers=auth).status_code == 200
    clock.advance(1)
    r = client.get(ACCOUNTS, headers=auth)
    assert_ifs_error(r, 401, "UNAUTHORIZED", "expired")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")

    second = client.post(TOKEN, data=token_form()).json()["access_token"]
    assert second != body["access_token"]
    assert client.get(ACCOUNTS, headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_revoking_tokens_invalidates_every_outstanding_token(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    _, client = live
    first, second = bearer(client), bearer(client)
    assert client.post("/__sim/tokens/revoke").json() == {"revoked": 2}
    for auth in (first, second):
        assert_ifs_error(client.get(ACCOUNTS, headers=auth), 401, "UNAUTHORIZED")
    assert client.get(ACCOUNTS, headers=bearer(client)).status_code == 200


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
    assert_ifs_error(client.get(ACCOUNTS), 401, "UNAUTHORIZED")
    assert_ifs_error(
        client.get(ACCOUNTS, headers={"Authorization": "Bearer not-a-token"}), 401, "UNAUTHORIZED"
    )


EDM = {
    "edmx": "http://docs.oasis-open.org/odata/ns/edmx",
    "edm": "http://docs.oasis-open.org/odata/ns/edm",
}


def _schema(client: httpx.Client, auth: dict[str, str], projection: str) -> ET.Element:
    r = client.get(f"{ODATA}/{projection}.svc/$metadata", headers=auth)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/xml")
    schema = ET.fromstring(r.content).find("edmx:DataServices/edm:Schema", EDM)
    assert schema is not None and schema.get("Namespace") == f"IfsApp.{projection}"
    return schema


def _entity_type(schema: ET.Element, name: str) -> tuple[list[str], dict[str, str]]:
    et = schema.find(f"edm:EntityType[@Name='{name}']", EDM)
    assert et is not None, name
    keys = [str(p.get("Name")) for p in et.findall("edm:Key/edm:PropertyRef", EDM)]
    types = {str(p.get("Name")): str(p.get("Type")) for p in et.findall("edm:Property", EDM)}
    return keys, types


def test_metadata_is_edmx_with_keys_whatever_the_accept_header(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    _, client = live
    auth = bearer(client) | {"Accept": "application/json"}
    schema = _schema(client, auth, "VoucherEntryAssistantHandling")
    keys, types = _entity_type(schema, "VoucherEntry")
    assert keys == ["Objkey"]  # a temporary voucher, keyed as IFS keys a virtual
    assert types["VoucherDate"] == "Edm.Date" and types["VoucherNo"] == "Edm.Int32"
    nav = schema.find("edm:EntityType[@Name='VoucherEntry']/edm:NavigationProperty", EDM)
    assert nav is not None and nav.get("Name") == "VoucherPostingArray"
    assert nav.get("Type") == "Collection(IfsApp.VoucherEntryAssistantHandling.VoucherPosting)"
    _, row_types = _entity_type(schema, "VoucherPosting")
    assert row_types["CurrencyDebetAmount"] == "Edm.Decimal" and "CodeJ" in row_types
    actions = {str(a.get("Name")): a for a in schema.findall("edm:Action", EDM)}
    assert set(actions) == {"VoucherEntry_CreateVoucher", "VoucherEntry_RemoveTempVoucher"}
    create = actions["VoucherEntry_CreateVoucher"]
    assert create.get("IsBound") == "true"
    returns = create.find("edm:ReturnType", EDM)
    assert returns is not None and returns.get("Type") == "Edm.Int32"  # the voucher number
    sets = [s.get("Name") for s in schema.findall("edm:EntityContainer/edm:EntitySet", EDM)]
    assert sets == ["VoucherSet"]

    hold = _schema(client, auth, "VoucherHandling")
    keys, _ = _entity_type(hold, "VoucherEntry")
    assert keys == ["Company", "AccountingYear", "VoucherType", "VoucherNo"]
    service = client.get(f"{ODATA}/AccountsHandling.svc/", headers=auth).json()
    assert [s["name"] for s in service["value"]] == ["AccountSet"]


def test_paging_follows_an_absolute_next_link_until_exhausted(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    _, client = live
    assert client.post("/__sim/settings", json={"server_page_size": 2}).status_code == 200
    auth = bearer(client)
    params = {
        "$filter": "Company eq '10' and Account ne '6120'",
        "$orderby": "ValidUntil desc,Account",
        "$select": "Account,ValidUntil",
        "$count": "true",
    }
    r = client.get(ACCOUNTS, params=params, headers=auth)
    assert r.status_code == 200
    page = r.json()
    assert page["@odata.count"] == 3
    assert page["@odata.context"].endswith("$metadata#AccountSet(Account,ValidUntil)")
    seen: list[tuple[str, str]] = []
    for _ in range(10):
        seen += [(row["Account"], row["ValidUntil"]) for row in page["value"]]
        assert all(set(row) >= {"@odata.etag"} for row in page["value"])
        assert "Description" not in page["value"][0]
        link = page.get("@odata.nextLink")
        if link is None:
            break
        assert link.startswith(origin(client) + ACCOUNTS + "?")
        assert "%24skip=" in link or "$skip=" in link
        page = httpx.get(link, headers=auth).json()  # absolute: no base URL needed
    assert seen == [("2930", "2099-12-31"), ("6110", "2099-12-31"), ("6999", "2025-12-31")]


def test_top_skip_and_the_top_limit(live: tuple[IfsSim, httpx.Client]) -> None:
    _, client = live
    auth = bearer(client)
    r = client.get(
        ACCOUNTS, params={"$orderby": "Account", "$skip": "1", "$top": "2"}, headers=auth
    )
    assert [row["Account"] for row in r.json()["value"]] == ["6110", "6120"]
    assert "@odata.nextLink" not in r.json()
    assert_ifs_error(
        client.get(ACCOUNTS, params={"$top": "5001"}, headers=auth),
        500,
        "ODP_QUERY_LIMIT_EXCEEDED",
    )
    assert client.get(ACCOUNTS, params={"$top": "5000"}, headers=auth).status_code == 200


def test_clear_messages_for_malformed_filter_and_unknown_resources(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    _, client = live
    auth = bearer(client)
    r = client.get(
        ACCOUNTS, params={"$filter": "Company eq '10' andd Account eq 'A'"}, headers=auth
    )
    assert_ifs_error(r, 400, "ODP_URI_SYNTAX_ERROR", "'andd'", "position 17")
    r = client.get(ACCOUNTS, params={"$filter": "Cost eq 1"}, headers=auth)
    assert_ifs_error(r, 400, "ODP_PROPERTY_NOTFOUND", "'Cost'", "Account")
    r = client.get(f"{ODATA}/AccountsHandling.svc/Accounts", headers=auth)
    assert_ifs_error(r, 404, "ODP_RESOURCE_NOTFOUND", "'Accounts'", "AccountSet")
    # The projections of the old invented API do not exist in IFS, nor here.
    for invented in ("ManualVoucherHandling", "AccountingCodePartValueHandling"):
        r = client.get(f"{ODATA}/{invented}.svc/VoucherSet", headers=auth)
        assert_ifs_error(r, 404, "ODP_RESOURCE_NOTFOUND", f"'{invented}'")


def test_filter_with_dates_escaped_quotes_and_functions_over_http(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    _, client = live
    auth = bearer(client)

    def values(entity_set: str, key: str, expr: str) -> list[str]:
        r = client.get(entity_set, params={"$filter": expr, "$orderby": key}, headers=auth)
        assert r.status_code == 200, r.text
        return [row[key] for row in r.json()["value"]]

    assert values(ACCOUNTS, "Account", "ValidUntil lt 2026-11-03") == ["6999"]
    assert values(CODE_B, "CodeB", "ValidUntil lt 2026-11-03") == ["CC-410"]
    assert values(CODE_B, "CodeB", "ValidUntil ge 2026-11-03 and Company eq '10'") == [
        "CC-100",
        "CC-500",
    ]
    assert values(CODE_B, "CodeB", "Description eq 'O''Brien''s team'") == ["CC-500"]
    assert values(CODE_B, "CodeB", "startswith(CodeB,'CC-') and not endswith(CodeB,'00')") == [
        "CC-410"
    ]
    assert values(
        ACCOUNTS, "Account", "tolower(Description) eq 'airfare' or Account eq '2930'"
    ) == [
        "2930",
        "6110",
    ]
    assert values(ACCOUNTS, "Account", "ReqCodeB eq 'Mandatory'") == ["6120"]


def test_voucher_post_creates_sequential_vouchers_queryable_by_reference(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    """The voucher entry assistant's flow, request by request: a temporary voucher whose
    year and period IFS fills in, its rows, then CreateVoucher, which answers the number
    of the voucher now in the hold table."""
    sim, client = live
    auth = bearer(client)
    posted = post_voucher(client, auth, voucher(), create=False)
    assert posted.temp is not None and posted.temp.status_code == 201, posted.temp
    temp = posted.temp.json()
    assert temp["AccountingYear"] == 2026 and temp["AccountingPeriod"] == 11
    assert temp["UserGroup"] == "AC" and temp["VoucherNo"] is None
    etag = posted.temp.headers["ETag"]
    assert temp["@odata.etag"].startswith('W/"') and temp["@odata.etag"] == etag
    assert posted.entity == f"{origin(client)}{TEMP}(Objkey='{temp['Objkey']}')"
    rows = client.get(f"{posted.entity}/VoucherPostingArray", headers=auth).json()["value"]
    assert [row["RowNo"] for row in rows] == [1, 2, 3]
    assert all(row["TransCode"] == "MANUAL" and row["VoucherType"] == "X" for row in rows)
    assert all(row["ReferenceNumber"] == "EXP:R1:abc123" for row in rows)
    assert sim.vouchers() == []  # a temporary voucher is not a voucher yet
    created = client.post(f"{posted.entity}/{CREATE}", **post_json({}, auth | {"If-Match": etag}))
    assert created.status_code == 200, created.text
    assert created.json()["value"] == 1
    assert client.get(TEMP, headers=auth).json()["value"] == []  # it became the voucher

    # No idempotency: the same ReferenceNumber again is a second voucher.
    again = post_voucher(client, auth, voucher())
    assert again.response.json()["value"] == 2

    assert row_set_vouchers(client, auth, HOLD_ROWS, "EXP:R1:abc123") == [1, 2]
    held = sim.vouchers()
    assert len(held) == 2 and held[0]["Text"] == "Report R1 — Zoë Ångström"
    assert held[0]["VoucherRowArray"][1]["CodeB"] == "CC-500"
    assert held[0]["VoucherRowArray"][2]["CreditAmount"] == Decimal("123.55")
    assert held[0]["VoucherRowArray"][2]["DebetAmount"] is None
    assert client.get("/__sim/vouchers").json()[1]["VoucherNo"] == 2

    key = "(Company='10',AccountingYear=2026,VoucherType='X',VoucherNo=1)"
    one = client.get(HOLD + key, headers=auth)
    assert one.status_code == 200 and one.json()["VoucherText2"] == "Report R1 — Zoë Ångström"
    assert one.json()["VoucherStatus"] == "Approved"
    row_page = client.get(
        HOLD + key + "/VoucherRowArray",
        params={"$filter": "CreditAmount ne null"},
        headers=auth,
    )
    assert [row["Account"] for row in row_page.json()["value"]] == ["2930"]
    assert '"CreditAmount": 123.55' in row_page.text  # an exact JSON number, not a string
    expanded = client.get(HOLD, params={"$expand": "VoucherRowArray"}, headers=auth).json()
    assert len(expanded["value"][0]["VoucherRowArray"]) == 3
    missing = client.get(HOLD + key.replace("=1)", "=99)"), headers=auth)
    assert_ifs_error(missing, 404, "ODP_RESOURCE_NOTFOUND", "VoucherNo=99")


def test_if_match_missing_stale_star_and_the_real_tenant_variant(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    """Replaces the journal template's ETag (an invented API): CreateVoucher is a bound
    action on the temporary voucher and takes that voucher's ETag in If-Match."""
    sim, client = live
    auth = bearer(client)
    made = post_voucher(client, auth, voucher(), create=False)
    assert made.temp is not None
    etag, action = made.temp.headers["ETag"], f"{made.entity}/{CREATE}"
    r = client.post(action, **post_json({}, auth))
    assert_ifs_error(r, 428, "ODP_MISSING_PRECONDITION", "If-Match")
    r = client.post(action, **post_json({}, auth | {"If-Match": older(etag)}))
    assert_ifs_error(r, 412, "ODP_PRECONDITION_FAILED", "another user")
    other = post_voucher(client, auth, voucher(), create=False)
    assert other.temp is not None
    r = client.post(action, **post_json({}, auth | {"If-Match": other.temp.headers["ETag"]}))
    assert_ifs_error(r, 412, "ODP_PRECONDITION_FAILED")
    assert sim.vouchers() == [] and len(sim.temp_vouchers()) == 2  # nothing created
    r = client.post(action, **post_json({}, auth | {"If-Match": etag}))
    assert r.status_code == 200 and r.json()["value"] == 1
    star = client.post(f"{other.entity}/{CREATE}", **post_json({}, auth | {"If-Match": "*"}))
    assert star.status_code == 200 and star.json()["value"] == 2
    # A tenant that does not insist on If-Match (the simulator's real-tenant variant).
    assert client.post("/__sim/settings", json={"require_if_match": False}).status_code == 200
    assert post_voucher(client, auth, voucher(), create=False).temp is not None
    (left,) = sim.temp_vouchers()
    action = f"{origin(client)}{TEMP}(Objkey='{left['Objkey']}')/{CREATE}"
    assert client.post(action, **post_json({}, auth)).status_code == 200
    assert len(sim.vouchers()) == 3 and sim.temp_vouchers() == []


def test_drop_after_commits_the_voucher_but_the_client_sees_a_dropped_connection(
    live: tuple[IfsSim, httpx.Client],
) -> None:
    sim, client = live
    auth = bearer(client)
    fault = {"route": "_CreateVoucher$", "method": "POST", "fault": "drop-after", "count": 1}
    assert client.post("/__sim/faults", json=fault).status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        post_voucher(client, auth, voucher())
    assert [v["ReferenceNumber"] for v in sim.vouchers()] == ["EXP:R1:abc123"]
    assert sim.temp_vouchers() == []  # CreateVoucher ran: the temporary voucher is gone
    # The client's recovery path: look the reference up before retrying, in the hold table
    # and, once IFS has updated the voucher to the general ledger, in the GL.
    assert row_set_vouchers(client, auth, HOLD_ROWS, "EXP:R1:abc123") == [1]
    assert row_set_vouchers(client, auth, GL_ROWS, "EXP:R1:abc123") == []
    assert client.post("/__sim/update-gl").json() == {"updated": 1}
    assert row_set_vouchers(client, auth, HOLD_ROWS, "EXP:R1:abc123") == []
    assert row_set_vouchers(client, auth, GL_ROWS, "EXP:R1:abc123") == [1]
    assert client.get(HOLD, headers=auth).json()["value"] == []
    assert client.get("/__sim/faults").json()[0]["fired"] == 1


def test_drop_after_a_change_set_commits_it_whole(live: tuple[IfsSim, httpx.Client]) -> None:
    """The same fault on a `$batch`: IFS committed the whole change set (one voucher, no
    temporary voucher) and the client only sees the connection drop."""
    sim, client = live
    auth = bearer(client)
    fault = {"route": r"\$batch", "method": "POST", "fault": "drop-after", "count": 1}
    assert client.post("/__sim/faults", json=fault).status_code == 200
    body, content_type = change_set(voucher())
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(
            f"{ASSISTANT}/$batch", content=body, headers=auth | {"Content-Type": content_type}
        )
    assert [len(v["VoucherRowArray"]) for v in sim.vouchers()] == [3]
    assert sim.temp_vouchers() == []
    assert row_set_vouchers(client, auth, HOLD_ROWS, "EXP:R1:abc123") == [1]


def test_rate_limit_answers_429_with_retry_after_on_the_clock(clock: FakeClock) -> None:
    sim = make_sim(clock, rate_limit_per_minute=3)
    with serve(sim.app) as url, httpx.Client(base_url=url) as client:
        auth = bearer(client)  # the token call counts too
        assert client.get(ACCOUNTS, headers=auth).status_code == 200
        clock.advance(20)
        assert client.get(ACCOUNTS, headers=auth).status_code == 200
        clock.advance(10)
        r = client.get(ACCOUNTS, headers=auth)
        assert_ifs_error(r, 429, "TOO_MANY_REQUESTS", "3 requests per minute")
        assert r.headers["Retry-After"] == "30"  # the token call leaves the window at T0+60
        assert client.get("/__sim/requests").status_code == 200  # control: never limited
        clock.advance(30)  # the token call and the first GET (both at T0) leave the window
        assert client.get(ACCOUNTS, headers=auth).status_code == 200
        assert client.get(ACCOUNTS, headers=auth).status_code == 200
        r = client.get(ACCOUNTS, headers=auth)
        assert r.status_code == 429 and r.headers["Retry-After"] == "20"  # T0+20 leaves at T0+80
        client.post("/__sim/settings", json={"rate_limit_per_minute": None})
        assert client.get(ACCOUNTS, headers=auth).status_code == 200


def test_control_routes_are_not_counted_and_reset(live: tuple[IfsSim, httpx.Client]) -> None:
    _, client = live
    auth = bearer(client)
    client.get(ACCOUNTS, headers=auth)
    client.get(ACCOUNTS, headers=auth)
    client.get("/__sim/vouchers")
    client.get("/__sim/temp-vouchers")
    client.post("/__sim/update-gl")
    snap = client.get("/__sim/requests").json()
    assert snap["total"] == 3
    assert {"method": "GET", "path": ACCOUNTS, "status": 200, "count": 2} in snap["by_route"]
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
        json={"route": "AccountSet", "fault": "status", "status": 500, "count": 2},
    )
    assert client.post("/__sim/next-error-code", json={"code": "MI_MODIFIED_ERROR"}).json() == {
        "queued": 1
    }
    r = client.get(ACCOUNTS, headers=auth)
    assert r.status_code == 500
    assert r.json() == {
        "error": {"code": "MI_MODIFIED_ERROR", "message": "Service metadata already modified."}
    }
    assert_ifs_error(client.get(ACCOUNTS, headers=auth), 500, "ODP_INTERNAL_ERROR", "injected")
    assert client.get(ACCOUNTS, headers=auth).status_code == 200
    assert client.delete("/__sim/faults").status_code == 200
    assert client.get("/__sim/faults").json() == []


# ================================================================ in-process (ASGI transport)
def rows_with(index: int, **changes: Any) -> list[dict[str, Any]]:
    rows = voucher()["VoucherRowArray"]
    rows[index] = {k: v for k, v in (rows[index] | changes).items() if v is not None}
    return rows


async def abatch(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]
) -> list[batch_wire.PartAnswer | list[batch_wire.PartAnswer]]:
    wire, content_type = change_set(body)
    r = await client.post(
        f"{ASSISTANT}/$batch", content=wire, headers=auth | {"Content-Type": content_type}
    )
    assert r.status_code == 200, r.text
    return batch_wire.parse_batch_answer(r.content, r.headers["content-type"])


# (body, the step IFS refuses it at, error code, a fragment of IFS's message)
BUSINESS_ERRORS = [
    (
        voucher(VoucherRowArray=rows_with(2, CurrencyCreditAmount=Decimal("123.50"))),
        "create",
        "VOUCHER_NOT_BALANCED",
        "Voucher is not balanced in transaction currency",
    ),
    (
        voucher(VoucherRowArray=rows_with(2, CreditAmount=Decimal("123.54"))),
        "create",
        "VOUCHER_NOT_BALANCED",
        "Voucher is not balanced: debet 123.55 USD, credit 123.54 USD",
    ),
    (
        voucher(VoucherRowArray=rows_with(0, Account="9999")),
        "create",
        "ACCOUNT_NOTEXIST",
        "Account 9999 does not exist in company 10",
    ),
    (
        voucher(VoucherRowArray=rows_with(0, Account="6999")),
        "create",
        "ACCOUNT_NOTVALID",
        "Account 6999 is not valid on 2026-11-03",
    ),
    (
        voucher(VoucherRowArray=rows_with(0, CodeB="CC-410")),
        "create",
        "CODE_PART_VALUE_NOTVALID",
        "Code part value CC-410 (CodeB) is not valid on 2026-11-03",
    ),
    (
        voucher(VoucherRowArray=rows_with(1, CodeB="CC-999")),
        "create",
        "CODE_PART_VALUE_NOTEXIST",
        "Code part value CC-999 (CodeB) does not exist in company 10",
    ),
    (
        voucher(VoucherRowArray=rows_with(1, CodeC="CC-100")),
        "create",
        "CODE_PART_VALUE_NOTEXIST",
        "Code part value CC-100 (CodeC) does not exist",
    ),
    (
        voucher(VoucherRowArray=rows_with(1, CodeB=None)),
        "create",
        "CODE_PART_MANDATORY",
        "Code part CodeB is mandatory for account 6120 (row 2)",
    ),
    (
        voucher(VoucherRowArray=rows_with(2, CodeC="APOLLO")),
        "create",
        "CODE_PART_BLOCKED",
        "Code part CodeC is blocked for account 2930 (row 3)",
    ),
    (
        voucher(VoucherRowArray=rows_with(1, Text=None)),
        "create",
        "TEXT_MANDATORY",
        "Text is mandatory for account 6120 (row 2)",
    ),
    (
        voucher(VoucherDate="2026-10-15", AccountingPeriod=10),
        "create",
        "PERIOD_CLOSED",
        "Accounting period 2026-10 is closed for user group AC",
    ),
    (
        voucher(VoucherDate="2026-10-15"),
        "header",
        "PERIOD_MISMATCH",
        "Voucher date 2026-10-15 is not in accounting period 2026-11",
    ),
    (
        voucher(VoucherDate="2027-01-05", AccountingYear=None, AccountingPeriod=None),
        "header",
        "PERIOD_NOTEXIST",
        "No accounting period in company 10 contains 2027-01-05",
    ),
    (voucher(Company="99"), "header", "COMPANY_NOTEXIST", "Company 99 does not exist"),
    (
        voucher(VoucherType="Z"),
        "header",
        "VOUCHER_TYPE_NOTEXIST",
        "Voucher type Z does not exist in company 10",
    ),
    (
        voucher(VoucherRowArray=rows_with(0, CreditAmount=Decimal("1"))),
        "create",
        "ROW_AMOUNT_INVALID",
        "Row 1 must have exactly one of debet and credit accounting amount",
    ),
    (
        voucher(VoucherRowArray=rows_with(1, CurrencyDebetAmount=None)),
        "create",
        "ROW_AMOUNT_INVALID",
        "Row 2 must have exactly one of debet and credit currency amount",
    ),
    (
        voucher(VoucherRowArray=rows_with(0, CurrencyCode="EUR", CurrencyRate=None)),
        "create",
        "CURRENCY_RATE_MISSING",
        "Currency rate is missing for EUR on row 1",
    ),
    # IFS fills in a missing voucher date (today); company and voucher type it cannot.
    (voucher(VoucherType=None), "header", "FIELD_MANDATORY", "Field VoucherType is mandatory"),
    (
        voucher(VoucherRowArray=rows_with(0, Account=None)),
        "create",
        "FIELD_MANDATORY",
        "Field Account is mandatory (row 1)",
    ),
    (voucher(VoucherRowArray=[]), "create", "FIELD_MANDATORY", "The voucher has no rows"),
    (
        voucher(VoucherRowArray=rows_with(0, CurrencyDebitAmount=Decimal(1))),
        "row 1",
        "ODP_DESERIALIZATION_ERROR",
        "Property 'CurrencyDebitAmount' does not exist on VoucherPosting",
    ),
    (voucher(VoucherNo=5), "header", "ODP_DESERIALIZATION_ERROR", "VoucherNo is set by IFS"),
    (
        voucher(VoucherDate="03/11/2026"),
        "header",
        "ODP_DESERIALIZATION_ERROR",
        "VoucherDate must be a date yyyy-mm-dd",
    ),
    (
        voucher(VoucherRowArray=rows_with(0, DebetAmount="123.45")),
        "row 1",
        "ODP_DESERIALIZATION_ERROR",
        "DebetAmount must be a number",
    ),
]


@pytest.mark.parametrize(("body", "step", "code", "fragment"), BUSINESS_ERRORS)
async def test_business_errors_answer_400_and_create_nothing(
    asgi: tuple[IfsSim, httpx.AsyncClient],
    body: dict[str, Any],
    step: str,
    code: str,
    fragment: str,
) -> None:
    """Each rule is answered with an IFS-style 400 at the step of the assistant's flow where
    IFS checks it (the temporary voucher, a row, or CreateVoucher), and no voucher exists.
    In one `$batch` change set the same error rolls the whole change set back: not even a
    temporary voucher remains of it."""
    sim, client = asgi
    auth = await abearer(client)
    body = {k: v for k, v in body.items() if v is not None}
    posted = await apost_voucher(client, auth, body)
    assert posted.step == step
    assert_ifs_error(posted.response, 400, code, fragment)
    assert sim.vouchers() == []
    # Request by request, a temporary voucher the user may still correct stays (unless its
    # header was refused); it is not a voucher.
    left = sim.temp_vouchers()
    assert len(left) == (0 if step == "header" else 1)

    (answer,) = await abatch(client, auth, body)
    assert not isinstance(answer, list)
    assert answer.status == 400
    assert answer.content_id == content_id_of(step, len(body["VoucherRowArray"]))
    assert batch_wire.error_of(answer)[0] == code and fragment in batch_wire.error_of(answer)[1]
    assert sim.vouchers() == []
    assert sim.temp_vouchers() == left  # the change set left nothing


async def test_a_rejected_voucher_leaves_no_rows_and_uses_no_number(
    asgi: tuple[IfsSim, httpx.AsyncClient],
) -> None:
    sim, client = asgi
    auth = await abearer(client)
    # Two good rows and a bad third: CreateVoucher refuses it, nothing of it is a voucher.
    bad = voucher(VoucherRowArray=rows_with(2, Account="9999"))
    posted = await apost_voucher(client, auth, bad)
    assert posted.step == "create" and posted.response.status_code == 400
    assert sim.vouchers() == []
    # The temporary voucher with its three rows is removed with its ETag.
    (temp,) = sim.temp_vouchers()
    assert len(temp["VoucherPostingArray"]) == 3
    assert posted.temp is not None
    removed = await client.post(
        f"{posted.entity}/{REMOVE}",
        **post_json({}, auth | {"If-Match": posted.temp.headers["ETag"]}),
    )
    assert removed.status_code == 204 and sim.temp_vouchers() == []
    (answer,) = await abatch(client, auth, bad)  # in a change set: rolled back whole
    assert not isinstance(answer, list) and answer.status == 400
    assert sim.vouchers() == [] and sim.temp_vouchers() == []
    good = await apost_voucher(client, auth, voucher())
    assert good.response.status_code == 200 and good.response.json()["value"] == 1
    assert len(sim.vouchers()[0]["VoucherRowArray"]) == 3
    (answer,) = await abatch(client, auth, voucher())
    assert isinstance(answer, list) and money.loads(answer[-1].body)["value"] == 2


async def test_voucher_post_needs_json_content_type(
    asgi: tuple[IfsSim, httpx.AsyncClient],
) -> None:
    sim, client = asgi
    auth = await abearer(client)
    header, rows = split(voucher())
    r = await client.post(
        TEMP, content=money.dumps(header), headers=auth | {"Content-Type": "text/plain"}
    )
    assert_ifs_error(r, 400, "ODP_DESERIALIZATION_ERROR", "application/json")
    r = await client.post(
        TEMP, content=b"{not json", headers=auth | {"Content-Type": "application/json"}
    )
    assert_ifs_error(r, 400, "ODP_DESERIALIZATION_ERROR", "not valid JSON")
    assert sim.temp_vouchers() == []
    temp = await client.post(TEMP, **post_json(header, auth))
    assert temp.status_code == 201
    r = await client.post(
        f"{temp.headers['Location']}/VoucherPostingArray",
        content=money.dumps(rows[0]),
        headers=auth | {"Content-Type": "text/plain"},
    )
    assert_ifs_error(r, 400, "ODP_DESERIALIZATION_ERROR", "application/json")
    (left,) = sim.temp_vouchers()
    assert left["VoucherPostingArray"] == []


def eur_rows(credit: str = "21.62") -> list[dict[str, Any]]:
    debit = {
        "CurrencyCode": "EUR",
        "CurrencyRate": Decimal("1.08"),
        "CurrencyDebetAmount": Decimal("10.01"),
        "DebetAmount": Decimal("10.81"),
        "Text": "Hotel",
        "CodeB": "CC-100",
    }
    return [
        {"Account": "6110", **debit},
        {"Account": "6120", **debit},
        {
            "Account": "2930",
            "CurrencyCode": "EUR",
            "CurrencyRate": Decimal("1.08"),
            "CurrencyCreditAmount": Decimal("20.02"),
            "CreditAmount": Decimal(credit),
        },
    ]


async def test_foreign_currency_voucher_balances_in_both_currencies(
    asgi: tuple[IfsSim, httpx.AsyncClient],
) -> None:
    sim, client = asgi
    auth = await abearer(client)
    # Balanced in EUR (20.02) but not in the company's USD: 21.62 against 21.61.
    off = await apost_voucher(client, auth, voucher(VoucherRowArray=eur_rows("21.61")))
    assert off.step == "create"
    assert_ifs_error(off.response, 400, "VOUCHER_NOT_BALANCED", "debet 21.62 USD, credit 21.61 USD")
    posted = await apost_voucher(client, auth, voucher(VoucherRowArray=eur_rows()))
    assert posted.response.status_code == 200, posted.response.text
    (stored,) = sim.vouchers()
    assert stored["VoucherRowArray"][2]["CreditAmount"] == Decimal("21.62")
    assert stored["VoucherRowArray"][2]["CurrencyCreditAmount"] == Decimal("20.02")
    assert {r["CurrencyCode"] for r in stored["VoucherRowArray"]} == {"EUR"}


async def test_control_routes_change_the_world(asgi: tuple[IfsSim, httpx.AsyncClient]) -> None:
    sim, client = asgi
    auth = await abearer(client)
    # A new dimension, as an IFS admin would create it, is served and usable at once.
    added = await client.post(
        "/__sim/code-part-values",
        json={"Company": "10", "CodePart": "B", "CodePartValue": "CC-777", "Description": "New"},
    )
    assert added.status_code == 200 and added.json()["ValidUntil"] == "2099-12-31"
    found = await client.get(CODE_B, params={"$filter": "CodeB eq 'CC-777'"}, headers=auth)
    assert [v["Description"] for v in found.json()["value"]] == ["New"]
    # Updating an expired one makes it valid again (and changes its ETag).
    before = (
        await client.get(CODE_B, params={"$filter": "CodeB eq 'CC-410'"}, headers=auth)
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
    after = (await client.get(CODE_B, params={"$filter": "CodeB eq 'CC-410'"}, headers=auth)).json()
    assert after["value"][0]["@odata.etag"] != before["value"][0]["@odata.etag"]
    ok = await apost_voucher(client, auth, voucher(VoucherRowArray=rows_with(0, CodeB="CC-410")))
    assert ok.response.status_code == 200, ok.response.text

    # Closing a period makes CreateVoucher refuse vouchers; its status per user group says so.
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
    r = await apost_voucher(client, auth, voucher())
    assert_ifs_error(r.response, 400, "PERIOD_CLOSED", "Accounting period 2026-11 is closed")
    groups = await client.get(
        f"{PERIODS}(AccountingYear=2026,AccountingPeriod=11,Company='10')/DetailUserGroups",
        params={"$filter": "UserGroup eq 'AC' and LedgerId eq '00'"},
        headers=auth,
    )
    assert [g["PeriodStatus"] for g in groups.json()["value"]] == ["Closed"]
    # Open for the console's user group only: the others still see it closed.
    mine = await client.post(
        "/__sim/periods",
        json={
            "Company": "10",
            "AccountingYear": 2026,
            "AccountingPeriod": 11,
            "UserGroup": "AC",
            "PeriodStatus": "Open",
        },
    )
    assert mine.json() == {"UserGroup": "AC", "PeriodStatus": "Open"}
    r = await apost_voucher(client, auth, voucher())
    assert r.response.status_code == 200, r.response.text

    rate = await client.post(
        "/__sim/currency-rates",
        json={
            "Company": "10",
            "CurrencyCode": "GBP",
            "ValidFrom": "2026-11-01",
            "CurrencyRate": 1.2675,
            "ConvFactor": 1,
        },
    )
    assert rate.status_code == 200
    rates = await client.get(
        f"{ODATA}/CurrencyRatesHandling.svc/CurrencyRateSet",
        params={"$filter": "CurrencyCode eq 'GBP'"},
        headers=auth,
    )
    assert '"CurrencyRate": 1.2675' in rates.text and '"ConvFactor": 1' in rates.text

    # IFS's "Update GL": the vouchers leave the hold table for the general ledger.
    assert (await client.post("/__sim/update-gl")).json() == {"updated": 2}
    assert (await client.get(HOLD, headers=auth)).json()["value"] == []
    gl = (await client.get(GL_ROWS, headers=auth)).json()["value"]
    assert sorted({row["VoucherNo"] for row in gl}) == [1, 2]
    assert all(v["in_gl"] for v in sim.vouchers())

    bad = await client.post("/__sim/settings", json={"max_top": 0})
    assert bad.status_code == 400 and "max_top" in bad.json()["error"]
    unknown = await client.post("/__sim/settings", json={"colour": "red"})
    assert unknown.status_code == 400 and "colour" in unknown.json()["error"]
    assert (await client.post("/__sim/code-part-values", json={"Company": "77"})).status_code == 404
    bad_fault = await client.post("/__sim/faults", json={"fault": "explode"})
    assert bad_fault.status_code == 400 and "fault" in bad_fault.json()["error"]
    bad_break = await client.post("/__sim/batch-break", json={"after_parts": -1})
    assert bad_break.status_code == 400
    assert len(sim.vouchers()) == 2


async def test_int_deployment_and_latency_setting(
    asgi: tuple[IfsSim, httpx.AsyncClient],
) -> None:
    sim, client = asgi
    auth = await abearer(client)
    r = await client.get(ACCOUNTS.replace("/main/", "/int/"), headers=auth)
    assert r.status_code == 200 and r.json()["@odata.context"].startswith("http://ifs.test/int/")
    sim.settings = sim.settings.model_copy(update={"latency_ms": 30})
    started = time.monotonic()
    await client.get(ACCOUNTS, headers=auth)
    assert time.monotonic() - started >= 0.03


async def test_unknown_routes_and_methods_answer_ifs_style_errors(
    asgi: tuple[IfsSim, httpx.AsyncClient],
) -> None:
    _, client = asgi
    auth = await abearer(client)
    account = f"{ACCOUNTS}(Company='10',Account='6110')"
    assert_ifs_error(await client.get("/nothing/here"), 404, "ODP_RESOURCE_NOTFOUND")
    r = await client.patch(account, json={"Description": "x"}, headers=auth)
    assert_ifs_error(r, 405, "ODP_METHOD_NOT_ALLOWED", "PATCH")
    r = await client.post(ACCOUNTS, **post_json({"Company": "10"}, auth))
    assert_ifs_error(r, 405, "ODP_METHOD_NOT_ALLOWED", "POST")
    r = await client.get(f"{TEMP}/Nope", headers=auth)
    assert_ifs_error(r, 404, "ODP_RESOURCE_NOTFOUND")
    r = await client.get(account.replace("Account=", "Nope="), headers=auth)
    assert_ifs_error(r, 400, "ODP_URI_SYNTAX_ERROR", "'Nope' is not a key of AccountSet")
    header, _ = split(voucher())
    temp = (await client.post(TEMP, **post_json(header, auth))).headers["Location"]
    r = await client.post(
        f"{temp}/IfsApp.VoucherEntryAssistantHandling.VoucherEntry_Explode",
        **post_json({}, auth | {"If-Match": "*"}),
    )
    assert_ifs_error(r, 404, "ODP_RESOURCE_NOTFOUND", "not a bound action")
    r = await client.get(f"{temp}/{CREATE}", headers=auth)
    assert_ifs_error(r, 405, "ODP_METHOD_NOT_ALLOWED", "POST only")
    gone = f"{TEMP}(Objkey='0000')/{CREATE}"
    r = await client.post(gone, **post_json({}, auth | {"If-Match": "*"}))
    assert_ifs_error(r, 404, "ODP_RESOURCE_NOTFOUND", "Objkey='0000'")
