"""Fixtures for the client tests: the real simulators served by uvicorn on loopback.

The clients talk real HTTP to them. Where a test needs minutes of rate-limit or token time,
the simulator and the client share a FakeTime: the client's sleeps advance the shared clock,
so a three-minute steady state runs in well under a second.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from console import clock
from console.credentials import ExpensifyCredentials, IfsCredentials
from console.sim.dataset import parse_dataset
from console.sim.demo import DEMO_EXPENSIFY_SECRET, DEMO_EXPENSIFY_USER_ID
from tests.conftest import serve_asgi as serve

IFS_CLIENT_ID = "ml-console"
IFS_SECRET = "ifs-s3cret-VALUE-9f2c"
EXP_USER = DEMO_EXPENSIFY_USER_ID
EXP_SECRET = DEMO_EXPENSIFY_SECRET
N_COST_CENTRES = 230


class FakeTime:
    """A clock that only moves when someone sleeps on it (thread-safe)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def clock(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, seconds
        with self._lock:
            self.slept.append(seconds)
            self._now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


def ifs_world(*, token_lifetime_s: int = 3600) -> dict[str, Any]:
    today = clock.today()
    values = [{"CodePart": "A", "CodePartValue": a} for a in ("2930", "2940", "6110", "6120")]
    values += [
        {"CodePart": "B", "CodePartValue": f"CC-{n:03d}", "Description": f"Cost centre {n}"}
        for n in range(N_COST_CENTRES)
    ]
    values.append({"CodePart": "C", "CodePartValue": "O'HARE", "Description": "Airport project"})
    periods = []
    for offset in (-1, 0, 1):
        first = (today.replace(day=1) + timedelta(days=32 * offset)).replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        periods.append(
            {
                "AccountingYear": first.year,
                "AccountingPeriod": first.month,
                "DateFrom": first.isoformat(),
                "DateUntil": last.isoformat(),
            }
        )
    return {
        "realm": "acme",
        "clients": [{"client_id": IFS_CLIENT_ID, "client_secret": IFS_SECRET}],
        "token_lifetime_s": token_lifetime_s,
        "companies": [
            {
                "Company": "10",
                "CurrencyCode": "USD",
                "code_part_values": values,
                "periods": periods,
                "currency_rates": [
                    {"CurrencyCode": "EUR", "ValidFrom": "2020-01-01", "CurrencyRate": "1.08"},
                    {"CurrencyCode": "GBP", "ValidFrom": "2020-01-01", "CurrencyRate": "1.27"},
                ],
                "voucher_types": [{"VoucherType": "X"}],
            }
        ],
    }


def ifs_creds(secret: str = IFS_SECRET) -> IfsCredentials:
    return IfsCredentials(client_id=IFS_CLIENT_ID, client_secret=SecretStr(secret))


def exp_creds(secret: str = EXP_SECRET) -> ExpensifyCredentials:
    return ExpensifyCredentials(partner_user_id=EXP_USER, partner_user_secret=SecretStr(secret))


@dataclass
class Sim:
    """A running simulator: its object, base URL and a control-route client."""

    sim: Any
    url: str
    control: httpx.Client

    def requests(self) -> dict[str, Any]:
        return self.control.get("/__sim/requests").json()

    def count(self, *, path_contains: str = "", method: str = "", status: int | None = None) -> int:
        return sum(
            r["count"]
            for r in self.requests()["by_route"]
            if path_contains in r["path"]
            and (not method or r["method"] == method)
            and (status is None or r["status"] == status)
        )

    def fault(self, **spec: Any) -> None:
        response = self.control.post("/__sim/faults", json=spec)
        assert response.status_code == 200, response.text

    def settings(self, **values: Any) -> dict[str, Any]:
        response = self.control.post("/__sim/settings", json=values)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: Any) -> Any:
        response = self.control.post(path, json=body)
        assert response.status_code == 200, response.text
        return response.json()


@contextlib.contextmanager
def running_ifs(clock: Any = time.time, **settings: Any) -> Iterator[Sim]:
    from console.sim.ifs_app import IfsSim, IfsSimSettings

    dataset = parse_dataset({"ifs": ifs_world()})
    sim = IfsSim(dataset, IfsSimSettings.fast().model_copy(update=settings), clock=clock)
    with serve(sim.app) as url, httpx.Client(base_url=url, timeout=10) as control:
        yield Sim(sim, url, control)


@pytest.fixture
def ifs() -> Iterator[Sim]:
    with running_ifs() as sim:
        yield sim


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def expensify_world(*, flat_tags_for: str | None = None) -> dict[str, Any]:
    """The shared small world's Expensify side (tests/conftest.py); optionally one policy
    answers its tags in the flat `Parent:Child` shape."""
    from tests.conftest import small_dataset_raw

    world = small_dataset_raw()["expensify"]
    for policy in world["policies"]:
        if policy["id"] == flat_tags_for:
            policy["tagShape"] = "flat"
    return world


@contextlib.contextmanager
def running_expensify(
    clock: Any = time.monotonic, *, flat_tags_for: str | None = None, **settings: Any
) -> Iterator[Sim]:
    from console.sim.expensify_app import ExpensifySim, ExpensifySimSettings

    dataset = parse_dataset({"expensify": expensify_world(flat_tags_for=flat_tags_for)})
    sim = ExpensifySim(
        dataset, ExpensifySimSettings.fast().model_copy(update=settings), clock=clock
    )
    with serve(sim.app) as url, httpx.Client(base_url=url, timeout=10) as control:
        yield Sim(sim, url, control)


@pytest.fixture
def expensify() -> Iterator[Sim]:
    with running_expensify() as sim:
        yield sim
