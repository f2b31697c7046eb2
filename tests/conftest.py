"""Fixtures shared by every test suite: the demo and a small world, and both simulators
served over real HTTP on loopback.

- `demo_raw` (session): the raw demo dataset dict. Read-only: copy.deepcopy it to change it.
- `small_dataset`: a small hand-made Dataset (see `small_dataset_raw`), fresh per test.
- `sims` / `small_sims`: `SimServers` over a fresh copy of the demo / small dataset, fast
  settings (no rate limits, no latency), `.expensify_url`, `.ifs_url`, `.expensify`, `.ifs`.
- `sim_control(url, path, method="GET", json=None)`: call a `/__sim/` control route; also
  importable as `from tests.conftest import sim_control`.

Both worlds use the demo's credentials, realm, policies and accounts, so
`console.sim.demo.DEMO_POSTING` configures the console for either. Simulator modules are
imported inside the fixtures so a suite that does not use them never pays for (or breaks on)
them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from console import money
from console.sim.dataset import Dataset, parse_dataset
from console.sim.demo import build_demo_dataset, dataset_with_demo_logins

if TYPE_CHECKING:
    from console.sim.server import SimServers

# Every test runs on one fixed day, whatever the calendar says: the hand-made worlds and the
# demo world of the fixtures approve their reports in November 2026, and this is that
# month's last day (everything approved, no reversal due yet). The console processes the
# tests start inherit it. Tests of another day set ML_CONSOLE_AS_OF themselves, and
# tests/e2e/test_as_of.py builds its worlds relative to three other days.
SUITE_AS_OF = "2026-11-30"
os.environ["ML_CONSOLE_AS_OF"] = SUITE_AS_OF

# The console's Expensify limits for a simulator on its fast settings, which enforces none:
# pacing to Expensify's real 5 requests per 10 s would make every cycle after the first wait
# ~9 s for nothing. Tests of the real limits serve the simulator on its default settings
# and keep the console's defaults.
FAST_EXPENSIFY_LIMITS = {"limit_10s": 1000, "limit_60s": 6000}

# The reports of the small world that must be held, with their reasons (design.md §4).
SMALL_ATTENTION = [{"reportID": "90000004", "reason": "missing-dimension:B:CC-410"}]
# Reports of the small world the sync fetches (APPROVED or REIMBURSED).
SMALL_FETCHABLE = ["90000001", "90000002", "90000003", "90000004"]


def _txn(tid: str, merchant: str, amount: int, category: str, gl: str, tag: str, **extra: Any):
    line = {
        "transactionID": tid,
        "merchant": merchant,
        "amount": amount,
        "currency": "USD",
        "convertedAmount": amount,
        "currencyConversionRate": 1,
        "category": category,
        "categoryGlCode": gl,
        "tag": tag,
        "created": "2026-11-02",
        "reimbursable": True,
        "billable": False,
        "comment": "",
    }
    line.update(extra)
    return line


def small_dataset_raw() -> dict[str, Any]:
    """One IFS company "10" (USD) fed by a USD policy and a EUR policy (and the demo's JPY
    policy, with no reports); five reports:
    90000001 plain USD, 90000002 card + refund + zero line, 90000003 EUR with a CHF line,
    90000004 tagged with a cost centre IFS lacks (held), 90000005 OPEN (never fetched)."""
    forever = {"ValidFrom": "2020-01-01", "ValidUntil": "2099-12-31"}
    categories = [
        {"name": "Airfare", "glCode": "6110", "enabled": True},
        {"name": "Lodging", "glCode": "6120", "enabled": True},
        {"name": "Meals", "glCode": "6130", "enabled": True},
        {"name": "Telecom", "glCode": "6240", "enabled": True},
        {"name": "Team Offsite", "glCode": "", "enabled": True},
    ]
    tags = [
        {
            "name": "Cost Center",
            "tags": [
                {"name": "Advisory", "glCode": "CC-100", "enabled": True},
                {"name": "New Lab", "glCode": "CC-410", "enabled": True},
            ],
        },
        {
            "name": "Project",
            "tags": [
                {"name": "Internal", "glCode": "PRJ-0000", "enabled": True},
                {"name": "Apollo", "glCode": "PRJ-1001", "enabled": True},
            ],
        },
    ]

    def policy(pid: str, currency: str, owner: str, staff: list[str]) -> dict[str, Any]:
        return {
            "id": pid,
            "name": f"Small Co {currency}",
            "outputCurrency": currency,
            "owner": owner,
            "categories": categories,
            "tags": tags,
            "employees": [
                {"email": e, "role": "admin" if e == owner else "user", "submitsTo": owner}
                for e in staff
            ],
        }

    def report(rid: str, pid: str, email: str, currency: str, approved: str | None, lines):
        return {
            "reportID": rid,
            "policyID": pid,
            "reportName": f"Report {rid}",
            "accountEmail": email,
            "currency": currency,
            "status": "APPROVED" if approved else "OPEN",
            "created": "2026-11-01 09:00:00",
            "submitted": "2026-11-02 17:30:00" if approved else "",
            "approved": approved,
            "exportLabels": [],
            "transactionList": lines,
        }

    us, eu = "ana.lee@small.example", "jose.nunez@small.example"
    advisory = "Advisory:Apollo"
    reports = [
        report("90000001", "POL-US", us, "USD", "2026-11-03 10:15:00", [
            _txn("7000000000000000001", "Delta Air Lines", 48210, "Airfare", "6110", advisory),
            _txn("7000000000000000002", "McDonald's", 2350, "Meals", "6130", advisory),
        ]),
        report("90000002", "POL-US", us, "USD", "2026-11-05 16:40:12", [
            _txn("7000000000000000003", "Omni Parker House", 61200, "Lodging", "6120", advisory,
                 reimbursable=False, cardID="41234567", cardNumber="485932XXXXXX4821"),
            _txn("7000000000000000004", "AT&amp;T", 8999, "Telecom", "6240", "Advisory:Internal",
                 reimbursable=False, cardID="41234567", cardNumber="485932XXXXXX4821"),
            _txn("7000000000000000005", "Barnes &amp; Noble", -1200, "Meals", "6130", advisory,
                 comment="Refund: overcharge"),
            _txn("7000000000000000006", "Hotel breakfast", 0, "Meals", "6130", advisory,
                 comment="Complimentary breakfast"),
        ]),
        report("90000003", "POL-EU", eu, "EUR", "2026-11-10 08:05:59", [
            _txn("7000000000000000007", "Café de Flore", 4550, "Meals", "6130", advisory,
                 currency="EUR", convertedAmount=4550),
            _txn("7000000000000000008", "Hotel Schweizerhof Zürich", 31000, "Lodging", "6120",
                 advisory, currency="CHF", convertedAmount=32367, currencyConversionRate=1.0441),
        ]),
        report("90000004", "POL-US", us, "USD", "2026-11-12 11:00:00", [
            _txn("7000000000000000009", "東京タクシー", 5400, "Meals", "6130", "New Lab:Internal"),
        ]),
        report("90000005", "POL-US", us, "USD", None, [
            _txn("7000000000000000010", "Lakeside Lodge", 99000, "Team Offsite", "", advisory),
        ]),
    ]  # fmt: skip
    accounts = [("6110", "Airfare"), ("6120", "Lodging"), ("6130", "Meals"), ("6240", "Telecom"),
                ("2930", "Accrued expenses"), ("2940", "Corporate card clearing")]  # fmt: skip
    values = [
        {"CodePart": "A", "CodePartValue": a, "Description": d, **forever} for a, d in accounts
    ]
    values += [
        {"CodePart": "B", "CodePartValue": "CC-100", "Description": "Advisory", **forever},
        {"CodePart": "C", "CodePartValue": "PRJ-0000", "Description": "Internal", **forever},
        {"CodePart": "C", "CodePartValue": "PRJ-1001", "Description": "Apollo", **forever},
    ]
    periods = [
        {"AccountingYear": 2026, "AccountingPeriod": m, "DateFrom": f"2026-{m:02d}-01",
         "DateUntil": f"2026-{m:02d}-{d}", "PeriodStatus": "Closed" if m == 10 else "Open"}
        for m, d in ((10, 31), (11, 30), (12, 31))
    ]  # fmt: skip
    return dataset_with_demo_logins(
        policies=[
            policy("POL-US", "USD", us, [us]),
            policy("POL-EU", "EUR", eu, [eu]),
            # The demo's Tokyo desk (DEMO_POSTING maps it): no reports here.
            policy("POL-JP", "JPY", us, [us]),
        ],
        reports=reports,
        companies=[
            {
                "Company": "10",
                "Name": "Small Co",
                "CurrencyCode": "USD",
                "code_part_values": values,
                "periods": periods,
                "currency_rates": [
                    {"CurrencyCode": "EUR", "ValidFrom": "2026-11-01", "CurrencyRate": 1.0842}
                ],
                "voucher_types": [{"VoucherType": "X"}],
            }
        ],
    )


def write_demo_world(folder: Path, reports: int) -> Path:
    """The demo world as `ml-console demo` builds it for the console's today (the closing
    month and the current one so far), with `reports` reports of the closing month instead
    of the bundled 600: the same people, policies, accounts and reports needing attention.
    Written as a dataset file for `ml-console demo --data`."""
    from console import clock
    from console.sim.demo import dumps_dataset

    today = clock.today()
    raw = build_demo_dataset(
        reports=reports, period=clock.previous_period(today), as_of=today, submit_and_close=True
    )
    path = folder / f"demo-world-{reports}.json"
    path.write_text(dumps_dataset(raw), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def demo_raw() -> dict[str, Any]:
    """The raw demo dataset (default seed and size). Shared: never mutate it."""
    return build_demo_dataset()


@pytest.fixture
def small_dataset() -> Dataset:
    return parse_dataset(small_dataset_raw(), "small dataset")


def _serve(dataset: Dataset) -> Iterator[SimServers]:
    from console.sim.server import SimServers

    with SimServers(dataset, fast=True) as servers:
        yield servers


@pytest.fixture
def sims(demo_raw: dict[str, Any]) -> Iterator[SimServers]:
    """Both simulators over a fresh copy of the demo dataset, fast settings, real HTTP."""
    yield from _serve(parse_dataset(demo_raw, "demo dataset"))


@pytest.fixture
def small_sims(small_dataset: Dataset) -> Iterator[SimServers]:
    """Both simulators over the small dataset, fast settings, real HTTP."""
    yield from _serve(small_dataset)


def sim_control(url: str, path: str, method: str = "GET", json: Any = None) -> Any:
    """Call a simulator's /__sim/ route (path with or without the prefix); the JSON answer
    (numbers with fractions as Decimal). Fails the test on an HTTP error, showing the body."""
    if not path.startswith("/__sim/"):
        path = "/__sim/" + path.lstrip("/")
    response = httpx.request(method, url.rstrip("/") + path, json=json, timeout=10)
    if response.status_code >= 400:
        raise AssertionError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
    return money.loads(response.content) if response.content else None


@pytest.fixture(name="sim_control")
def _sim_control_fixture() -> Any:
    return sim_control


@contextlib.contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Serve one ASGI app with uvicorn on a free loopback port in a thread; yields its base
    URL. For suites that build a simulator themselves (SimServers serves both at once)."""
    import threading
    import time

    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="sim-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
