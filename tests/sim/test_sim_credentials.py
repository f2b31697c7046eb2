"""`/__sim/credentials` on both simulators, over real HTTP on loopback: a simulator run as its
own process (`ml-console sim`) has its keys set, rotated and revoked through this route, and
the real protocol then refuses what the real system would refuse, in that system's shape.
No answer ever carries a secret, not even an error about a bad request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from console.sim.dataset import parse_dataset
from console.sim.expensify_app import ENDPOINT, ExpensifySim, ExpensifySimSettings
from console.sim.ifs_app import IfsSim, IfsSimSettings
from tests.conftest import serve_asgi as serve
from tests.sim.conftest_expensify import SECRET, USER, job, raw_dataset
from tests.sim.test_ifs_sim import ACCOUNTS, TOKEN, FakeClock, assert_ifs_error, small_dataset

NEW_EXP = "rotated-partner-secret-5e1d9a77"
NEW_IFS = "rotated-client-secret-0c4b2f18"
OTHER_ID, OTHER_SECRET = "reporting", "reporting-secret-77aa"
AUTH_ERROR = {"responseCode": 401, "responseMessage": "Authentication error"}
KEYCLOAK_REFUSAL = {
    "error": "unauthorized_client",
    "error_description": "Invalid client or Invalid client credentials",
}


def no_secret_in(response: httpx.Response, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in response.text, f"{response.request.url.path} echoed a secret"


# ================================================================ Expensify
@pytest.fixture
def expensify() -> Iterator[tuple[ExpensifySim, httpx.Client]]:
    # Real rate limits: the control route must stay outside them.
    sim = ExpensifySim(parse_dataset(raw_dataset()), ExpensifySimSettings(limit_10s=3))
    with serve(sim.app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield sim, client


def policy_list(client: httpx.Client, partner: str, secret: str) -> dict[str, Any]:
    creds = {"partnerUserID": partner, "partnerUserSecret": secret}
    description = json.dumps(job("get", creds, inputSettings={"type": "policyList"}))
    r = client.post(ENDPOINT, data={"requestJobDescription": description})
    assert r.status_code == 200, r.text  # Expensify answers job errors inside HTTP 200
    body: dict[str, Any] = r.json()
    return body


def exp_creds(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/__sim/credentials", json=body)


def test_expensify_lists_ids_and_whether_active_never_secrets(
    expensify: tuple[ExpensifySim, httpx.Client],
) -> None:
    _, client = expensify
    r = client.get("/__sim/credentials")
    assert r.status_code == 200
    assert r.json() == {
        "credentials": [
            {"partnerUserID": USER, "active": True},
            {"partnerUserID": "other@example.com", "active": True},
        ]
    }
    no_secret_in(r, SECRET)


def test_expensify_rotation_refuses_the_old_secret_as_expensify_does(
    expensify: tuple[ExpensifySim, httpx.Client],
) -> None:
    _, client = expensify
    assert policy_list(client, USER, SECRET)["responseCode"] == 200
    r = exp_creds(client, partnerUserID=USER, partnerUserSecret=NEW_EXP)
    assert r.status_code == 200
    assert r.json() == {"partnerUserID": USER, "active": True, "created": False}
    no_secret_in(r, NEW_EXP, SECRET)
    assert policy_list(client, USER, SECRET) == AUTH_ERROR
    assert policy_list(client, USER, NEW_EXP)["responseCode"] == 200
    # The other ID was not touched.
    assert policy_list(client, "other@example.com", "x")["responseCode"] == 200
    no_secret_in(client.get("/__sim/credentials"), NEW_EXP, SECRET)


def test_expensify_revoked_id_is_refused_whatever_secret_until_set_again(
    expensify: tuple[ExpensifySim, httpx.Client],
) -> None:
    _, client = expensify
    r = exp_creds(client, partnerUserID=USER, revoke=True)
    assert r.json() == {"partnerUserID": USER, "active": False}
    assert policy_list(client, USER, SECRET) == AUTH_ERROR
    listed = {
        c["partnerUserID"]: c["active"]
        for c in client.get("/__sim/credentials").json()["credentials"]
    }
    assert listed == {USER: False, "other@example.com": True}
    # A revoked ID gets a fresh secret (as regenerating it on the integrations page does).
    assert exp_creds(client, partnerUserID=USER, partnerUserSecret=NEW_EXP).json()["active"]
    assert policy_list(client, USER, SECRET) == AUTH_ERROR
    assert policy_list(client, USER, NEW_EXP)["responseCode"] == 200


def test_expensify_new_id_and_auth_error_code_setting(
    expensify: tuple[ExpensifySim, httpx.Client],
) -> None:
    _, client = expensify
    r = exp_creds(client, partnerUserID=OTHER_ID, partnerUserSecret=OTHER_SECRET)
    assert r.json() == {"partnerUserID": OTHER_ID, "active": True, "created": True}
    assert policy_list(client, OTHER_ID, OTHER_SECRET)["responseCode"] == 200
    client.post("/__sim/settings", json={"auth_error_code": 407})
    exp_creds(client, partnerUserID=OTHER_ID, revoke=True)
    assert policy_list(client, OTHER_ID, OTHER_SECRET) == {
        "responseCode": 407,
        "responseMessage": "Authentication error",
    }


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"partnerUserSecret": NEW_EXP}, 400, "partnerUserID"),
        ({"partnerUserID": USER, "partnerUserSecret": ""}, 400, "partnerUserSecret"),
        ({"partnerUserID": USER, "partnerUserSecret": [NEW_EXP]}, 400, "partnerUserSecret"),
        ({"partnerUserID": USER, "partnerUserSecret": NEW_EXP, "revoke": True}, 400, "not both"),
        ({"partnerUserID": USER, "partnerUserSecret": NEW_EXP, "scope": 1}, 400, "scope"),
        ({"partnerUserID": USER, "revoke": "yes"}, 400, "revoke"),
        ({"partnerUserID": "nobody@example.com", "revoke": True}, 404, "nobody@example.com"),
    ],
)
def test_expensify_bad_requests_are_refused_without_echoing_the_secret(
    expensify: tuple[ExpensifySim, httpx.Client], body: dict[str, Any], status: int, fragment: str
) -> None:
    _, client = expensify
    r = exp_creds(client, **body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]
    no_secret_in(r, NEW_EXP)
    assert policy_list(client, USER, SECRET)["responseCode"] == 200  # nothing changed


def test_expensify_control_route_is_not_counted_or_rate_limited(
    expensify: tuple[ExpensifySim, httpx.Client],
) -> None:
    _, client = expensify
    for i in range(10):  # the limiter allows 3 jobs per 10 s here
        assert exp_creds(client, partnerUserID=USER, partnerUserSecret=f"s-{i}").status_code == 200
        assert client.get("/__sim/credentials").status_code == 200
    assert client.get("/__sim/requests").json()["total"] == 0
    assert policy_list(client, USER, "s-9")["responseCode"] == 200


# ================================================================ IFS
@pytest.fixture
def ifs() -> Iterator[tuple[IfsSim, httpx.Client, FakeClock]]:
    raw = small_dataset()
    raw["ifs"]["clients"].append({"client_id": OTHER_ID, "client_secret": OTHER_SECRET})
    clock = FakeClock()
    sim = IfsSim(parse_dataset(raw, "test"), IfsSimSettings.fast(), clock=clock)
    with serve(sim.app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield sim, client, clock


def token(client: httpx.Client, client_id: str, secret: str) -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    return client.post(TOKEN, data={**form, "scope": "openid microprofile-jwt"})


def bearer_for(client: httpx.Client, client_id: str, secret: str) -> dict[str, str]:
    r = token(client, client_id, secret)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def ifs_creds(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/__sim/credentials", json=body)


def clients_listed(client: httpx.Client) -> dict[str, tuple[bool, int]]:
    r = client.get("/__sim/credentials")
    assert r.status_code == 200
    no_secret_in(r, "s3cret", OTHER_SECRET, NEW_IFS)
    return {c["client_id"]: (c["active"], c["tokens"]) for c in r.json()["clients"]}


def test_ifs_lists_clients_with_live_tokens_never_secrets(
    ifs: tuple[IfsSim, httpx.Client, FakeClock],
) -> None:
    _, client, clock = ifs
    assert clients_listed(client) == {"ml-console": (True, 0), OTHER_ID: (True, 0)}
    bearer_for(client, "ml-console", "s3cret")
    bearer_for(client, "ml-console", "s3cret")
    assert clients_listed(client) == {"ml-console": (True, 2), OTHER_ID: (True, 0)}
    clock.advance(301)  # the dataset's token lifetime is 300 s
    assert clients_listed(client) == {"ml-console": (True, 0), OTHER_ID: (True, 0)}


def test_ifs_rotation_refuses_the_old_secret_as_keycloak_does(
    ifs: tuple[IfsSim, httpx.Client, FakeClock],
) -> None:
    _, client, _clock = ifs
    before = bearer_for(client, "ml-console", "s3cret")
    r = ifs_creds(client, client_id="ml-console", client_secret=NEW_IFS)
    assert r.status_code == 200
    assert r.json() == {"client_id": "ml-console", "active": True, "created": False}
    no_secret_in(r, NEW_IFS, "s3cret")
    old = token(client, "ml-console", "s3cret")
    assert old.status_code == 401 and old.json() == KEYCLOAK_REFUSAL
    assert (
        client.get(ACCOUNTS, headers=bearer_for(client, "ml-console", NEW_IFS)).status_code == 200
    )
    # A token issued before the rotation is a signed JWT: valid until it expires.
    assert client.get(ACCOUNTS, headers=before).status_code == 200


def test_ifs_revoking_a_client_refuses_it_and_kills_only_its_tokens(
    ifs: tuple[IfsSim, httpx.Client, FakeClock],
) -> None:
    _, client, _clock = ifs
    mine = [bearer_for(client, "ml-console", "s3cret") for _ in range(2)]
    theirs = bearer_for(client, OTHER_ID, OTHER_SECRET)
    r = ifs_creds(client, client_id="ml-console", revoke=True)
    assert r.json() == {"client_id": "ml-console", "active": False, "tokens_revoked": 2}
    for auth in mine:
        assert_ifs_error(client.get(ACCOUNTS, headers=auth), 401, "UNAUTHORIZED")
    assert client.get(ACCOUNTS, headers=theirs).status_code == 200
    refused = token(client, "ml-console", "s3cret")
    assert refused.status_code == 401 and refused.json() == KEYCLOAK_REFUSAL
    assert clients_listed(client) == {"ml-console": (False, 0), OTHER_ID: (True, 1)}
    # Setting a secret again brings the client back.
    ifs_creds(client, client_id="ml-console", client_secret=NEW_IFS)
    assert (
        client.get(ACCOUNTS, headers=bearer_for(client, "ml-console", NEW_IFS)).status_code == 200
    )


def test_ifs_new_client(ifs: tuple[IfsSim, httpx.Client, FakeClock]) -> None:
    _, client, _clock = ifs
    r = ifs_creds(client, client_id="auditor", client_secret=NEW_IFS)
    assert r.json() == {"client_id": "auditor", "active": True, "created": True}
    assert client.get(ACCOUNTS, headers=bearer_for(client, "auditor", NEW_IFS)).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"client_secret": NEW_IFS}, 400, "client_id"),
        ({"client_id": "ml-console"}, 400, "client_secret"),
        ({"client_id": "ml-console", "client_secret": 12}, 400, "client_secret"),
        ({"client_id": "ml-console", "client_secret": NEW_IFS, "revoke": True}, 400, "not both"),
        ({"client_id": "ml-console", "secret": NEW_IFS}, 400, "secret"),
        ({"client_id": "ghost", "revoke": True}, 404, "ghost"),
    ],
)
def test_ifs_bad_requests_are_refused_without_echoing_the_secret(
    ifs: tuple[IfsSim, httpx.Client, FakeClock], body: dict[str, Any], status: int, fragment: str
) -> None:
    _, client, _clock = ifs
    r = ifs_creds(client, **body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]
    no_secret_in(r, NEW_IFS)
    assert token(client, "ml-console", "s3cret").status_code == 200  # nothing changed


def test_ifs_control_route_is_not_counted_faulted_or_rate_limited(
    ifs: tuple[IfsSim, httpx.Client, FakeClock],
) -> None:
    _, client, _clock = ifs
    client.post("/__sim/settings", json={"rate_limit_per_minute": 2})
    r = client.post(
        "/__sim/faults", json={"fault": "status", "route": "credentials", "status": 500}
    )
    assert r.status_code == 200, r.text
    for i in range(5):
        r = ifs_creds(client, client_id="ml-console", client_secret=f"s-{i}")
        assert r.status_code == 200, r.text
    assert client.get("/__sim/requests").json()["total"] == 0
    assert token(client, "ml-console", "s-4").status_code == 200
