"""IFS's currency rules end to end (issue #16), driving the real `ml-console` against the
simulators: a JPY report on a tenant that quotes JPY per 100 (ConvFactor 100, no decimals), a
KWD report (three decimals), and a USD report into a company whose accounting currency, GBP,
is quoted inverted. Each voucher is compared with the exact rows IFS receives.

The world is the small world (tests/conftest.py) plus two policies (KWD, and USD into the second company) and a second company.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from console import money
from console.sim.dataset import parse_dataset
from console.sim.demo import DEMO_POSTING
from tests.conftest import SMALL_ATTENTION, _txn, small_dataset_raw
from tests.e2e.conftest import make_console

JPY_REPORT, KWD_REPORT, INVERTED_REPORT = "90000021", "90000022", "90000023"
EMPLOYEE = "ana.lee@small.example"
TAG = "Advisory:Apollo"


def _policy_like(raw: dict[str, Any], pid: str, currency: str) -> dict[str, Any]:
    policy = copy.deepcopy(raw["expensify"]["policies"][0])
    policy.update(id=pid, name=f"Small Co {currency}", outputCurrency=currency)
    return policy


def _report(rid: str, pid: str, currency: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "reportID": rid,
        "policyID": pid,
        "reportName": f"Report {rid}",
        "accountEmail": EMPLOYEE,
        "currency": currency,
        "status": "APPROVED",
        "created": "2026-11-01 09:00:00",
        "submitted": "2026-11-02 17:30:00",
        "approved": "2026-11-16 10:00:00",
        "exportLabels": [],
        "transactionList": lines,
    }


def currency_world() -> dict[str, Any]:
    raw = small_dataset_raw()
    exp = raw["expensify"]
    exp["policies"] += [  # POL-JP (JPY) is the small world's already
        _policy_like(raw, "POL-KW", "KWD"),
        _policy_like(raw, "POL-UK", "USD"),
    ]
    jpy = {"currency": "JPY"}
    exp["reports"] += [
        # Expensify's amounts are hundredths in every currency: ¥1,500 is 150000.
        _report(JPY_REPORT, "POL-JP", "JPY", [
            _txn("7000000000000000021", "すし銀座", 150000, "Meals", "6130", TAG, **jpy,
                 convertedAmount=150000),
            _txn("7000000000000000022", "Tokyo MK Taxi", 150000, "Meals", "6130", TAG, **jpy,
                 convertedAmount=150000),
            # A USD expense on the JPY report: Expensify converts it to ¥1,500.47.
            _txn("7000000000000000023", "Starbucks Roppongi", 1003, "Meals", "6130", TAG,
                 convertedAmount=150047, currencyConversionRate=149.6),
            _txn("7000000000000000024", "Park Hyatt Tokyo", 4800000, "Lodging", "6120", TAG,
                 **jpy, convertedAmount=4800000, reimbursable=False, cardID="41234567",
                 cardNumber="485932XXXXXX4821"),
        ]),
        _report(KWD_REPORT, "POL-KW", "KWD", [
            _txn("7000000000000000025", "Al Hamra Café", 1234, "Meals", "6130", TAG,
                 currency="KWD", convertedAmount=1234),
            _txn("7000000000000000026", "Jumeirah Messilah", 25050, "Lodging", "6120", TAG,
                 currency="KWD", convertedAmount=25050),
        ]),
        _report(INVERTED_REPORT, "POL-UK", "USD", [
            _txn("7000000000000000027", "British Airways", 10000, "Airfare", "6110", TAG),
            _txn("7000000000000000028", "Dishoom", 4555, "Meals", "6130", TAG),
        ]),
    ]  # fmt: skip
    usd_company = raw["ifs"]["companies"][0]
    usd_company["currency_rates"] += [
        # 0.6650 USD for 100 JPY; 3.2573 USD for 1 KWD.
        {"CurrencyCode": "JPY", "ValidFrom": "2026-11-01", "CurrencyRate": Decimal("0.6650"),
         "ConvFactor": 100},
        {"CurrencyCode": "KWD", "ValidFrom": "2026-11-01", "CurrencyRate": Decimal("3.2573")},
    ]  # fmt: skip
    usd_company["currencies"] = [
        {"CurrencyCode": "JPY", "Decimals": 0, "ConvFactor": 100},
        {"CurrencyCode": "KWD", "Decimals": 3},
    ]
    gbp_company = copy.deepcopy(usd_company)
    gbp_company.update(
        Company="20",
        Name="Small Co UK",
        CurrencyCode="GBP",
        # GBP is quoted inverted: 1 GBP = 1.2710 USD.
        currencies=[{"CurrencyCode": "GBP", "Inverted": True}],
        currency_rates=[
            {"CurrencyCode": "USD", "ValidFrom": "2026-11-01", "CurrencyRate": Decimal("1.2710")}
        ],
    )
    raw["ifs"]["companies"].append(gbp_company)
    return raw


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    from console.sim.server import SimServers

    with contextlib.ExitStack() as stack:
        sims = stack.enter_context(
            SimServers(parse_dataset(currency_world(), "currency world"), fast=True)
        )
        console = make_console(tmp_path, sims)
        console.write_config(
            posting={
                "company_by_policy": {
                    **DEMO_POSTING["company_by_policy"],
                    "POL-JP": "10",
                    "POL-KW": "10",
                    "POL-UK": "20",
                },
                "currency_by_company": {"10": "USD", "20": "GBP"},
            }
        )
        yield sims, console


def _voucher(sims: Any, report_id: str) -> dict[str, Any]:
    vouchers = money.loads(httpx.get(sims.ifs_url + "/__sim/vouchers", timeout=30).content)
    (voucher,) = [v for v in vouchers if v["ReferenceNumber"].split(":")[1] == report_id]
    return dict(voucher)


def _texts(sims: Any, report_id: str) -> list[tuple[Any, ...]]:
    rows = _voucher(sims, report_id)["VoucherRowArray"]
    return [(r.get("CodeB"), r.get("CodeC"), r["Text"]) for r in rows]


def _rows(sims: Any, report_id: str) -> list[tuple[Any, ...]]:
    voucher = _voucher(sims, report_id)
    return [
        (
            r["Account"],
            r["CurrencyCode"],
            Decimal(r["CurrencyRate"]),
            r.get("CurrencyDebetAmount"),
            r.get("CurrencyCreditAmount"),
            r.get("DebetAmount"),
            r.get("CreditAmount"),
        )
        for r in voucher["VoucherRowArray"]
    ]


D = Decimal


def test_each_currency_posts_by_ifss_rules_and_balances_in_both(world: tuple[Any, Any]) -> None:
    sims, console = world
    code, summary, err = console.auto()
    assert code == 3, err  # the small world's one held report
    assert {h["reportID"]: h["reason"] for h in summary["held_reports"]} == {
        h["reportID"]: h["reason"] for h in SMALL_ATTENTION
    }
    assert {JPY_REPORT, KWD_REPORT, INVERTED_REPORT} <= {v["reportID"] for v in summary["vouchers"]}

    # JPY per 100 at 0.6650: ¥1,500 → 9.975 → 9.98 USD per row. The ¥1,500.47 Expensify
    # converted is posted as whole yen. The three rounded rows make 29.94 where ¥4,500 at
    # the rate is 29.925 (29.93): the balancing 2930 row carries that cent, as the sum of
    # the rows it balances. Rows are in transactionID order, then the credits.
    rate = D("0.6650")
    assert _rows(sims, JPY_REPORT) == [
        ("6130", "JPY", rate, D(1500), None, D("9.98"), None),
        ("6130", "JPY", rate, D(1500), None, D("9.98"), None),
        ("6130", "JPY", rate, D(1500), None, D("9.98"), None),
        ("6120", "JPY", rate, D(48000), None, D("319.20"), None),
        ("2930", "JPY", rate, None, D(4500), None, D("29.94")),
        ("2940", "JPY", rate, None, D(48000), None, D("319.20")),
    ]
    # As README's "A JPY voucher, row by row" shows it.
    assert _texts(sims, JPY_REPORT) == [
        ("CC-100", "PRJ-1001", "7000000000000000021 すし銀座"),
        ("CC-100", "PRJ-1001", "7000000000000000022 Tokyo MK Taxi"),
        ("CC-100", "PRJ-1001", "7000000000000000023 Starbucks Roppongi"),
        ("CC-100", "PRJ-1001", "7000000000000000024 Park Hyatt Tokyo"),
        (None, None, "Expensify 90000021 reimbursable expenses"),
        (None, None, "Expensify 90000021 company card expenses"),
    ]
    # KWD has three decimals: 12.340 × 3.2573 = 40.195 → 40.20; 250.500 → 815.95.
    rate = D("3.2573")
    assert _rows(sims, KWD_REPORT) == [
        ("6130", "KWD", rate, D("12.340"), None, D("40.20"), None),
        ("6120", "KWD", rate, D("250.500"), None, D("815.95"), None),
        ("2930", "KWD", rate, None, D("262.840"), None, D("856.15")),
    ]
    # GBP is quoted inverted (1 GBP = 1.2710 USD): 100.00 / 1.2710 = 78.678… → 78.68 GBP;
    # 45.55 / 1.2710 = 35.837… → 35.84.
    rate = D("1.2710")
    assert _rows(sims, INVERTED_REPORT) == [
        ("6110", "USD", rate, D("100.00"), None, D("78.68"), None),
        ("6130", "USD", rate, D("45.55"), None, D("35.84"), None),
        ("2930", "USD", rate, None, D("145.55"), None, D("114.52")),
    ]

    code, again, err = console.auto()
    assert again["posted"] == 0, err  # exactly once


def test_the_dry_run_shows_the_rate_as_ifs_quotes_it(world: tuple[Any, Any]) -> None:
    _sims, console = world
    proc = console.run("--auto", "--dry-run")
    assert proc.returncode == 3, proc.stderr
    out = proc.stdout
    assert "currency JPY → USD at rate 0.6650 (0.6650 USD per 100 JPY)" in out
    assert "currency KWD → USD at rate 3.2573 (3.2573 USD per 1 KWD)" in out
    assert "currency USD → GBP at rate 1.2710 (1.2710 USD per 1 GBP (inverted quotation))" in out
    # Amounts with each currency's decimals: whole yen, three decimals of KWD.
    rows = {ln.split()[-1]: ln.split() for ln in out.splitlines() if "70000000000000000" in ln}
    assert rows["Roppongi"][4:6] == ["1,500", "9.98"]
    assert rows["Café"][4:6] == ["12.340", "40.20"]


def test_one_batched_read_brings_the_rates_with_both_currencies_decimals(
    world: tuple[Any, Any],
) -> None:
    """The client's rate read: still one `$batch` per company (the request budget), and each
    rate carries its own currency's and the accounting currency's CurrencyRounding, read
    through the CurrencyCodeRef references, and whether the rate type is inverted."""
    from pydantic import SecretStr

    from console.credentials import IfsCredentials
    from console.ifs.client import IfsClient
    from console.sim.demo import DEMO_IFS_CLIENT_ID, DEMO_IFS_SECRET, DEMO_REALM

    sims, _console = world
    creds = IfsCredentials(client_id=DEMO_IFS_CLIENT_ID, client_secret=SecretStr(DEMO_IFS_SECRET))
    with IfsClient(sims.ifs_url, DEMO_REALM, lambda: creds) as client:
        client.token.get()
        before = client.requests_made
        usd = {r.CurrencyCode: r for r in client.currency_rates("10")}
        gbp = {r.CurrencyCode: r for r in client.currency_rates("20")}
        assert client.requests_made - before == 2  # one $batch per company
    jpy, kwd = usd["JPY"], usd["KWD"]
    assert (jpy.CurrencyRate, jpy.ConvFactor, jpy.CurrencyRounding) == (D("0.6650"), 100, 0)
    assert (kwd.ConvFactor, kwd.CurrencyRounding, kwd.RefCurrencyRounding) == (1, 3, 2)
    assert not jpy.Inverted and jpy.RefCurrencyCode == "USD"
    assert gbp["USD"].Inverted and gbp["USD"].RefCurrencyCode == "GBP"
