"""VAT end to end, driving the real `ml-console` against the simulators (issue #16, tax).

The small world (tests/conftest.py) plus IFS tax codes (posting control AP1 → account 2640),
an account that demands a tax code, and three reports in November 2026:
- 90000021 (EUR policy): a meal with 20 % VAT and a zero-rated flight: the voucher carries
  the meal's net with IFS's tax code, IFS adds the tax row to 2640, the credit is the gross;
- 90000022 (EUR policy): an Expensify tax code the config does not map: `unmapped-tax:VAT25`;
- 90000023 (US policy): a conference fee on 6250, where IFS demands a tax code and the line
  has none: `account-demand:6250:tax`.
The rest of the batch posts; once the mapping and the account are fixed, both held reports
post, each exactly once.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from console.sim.dataset import parse_dataset
from console.sim.demo import DEMO_POSTING
from tests.conftest import SMALL_ATTENTION, small_dataset_raw
from tests.e2e.conftest import make_console, sim_post
from tests.e2e.test_ifs_demands import (
    LABEL,
    SMALL_POSTED,
    labels,
    posted_reports,
    reasons,
    vouchers,
)


@pytest.fixture
def serve_world() -> Iterator[Any]:
    """Starts the simulators on a dataset (a raw dict); stops them after the test."""
    from console.sim.server import SimServers

    with contextlib.ExitStack() as stack:
        yield lambda raw: stack.enter_context(
            SimServers(parse_dataset(raw, "tax world"), fast=True)
        )


TAX_HOLDS = {"90000022": "unmapped-tax:VAT25", "90000023": "account-demand:6250:tax"}


def vat_line(tid: str, merchant: str, gross: int, tax: int, code: str, category: str, gl: str):
    return {
        "transactionID": tid,
        "merchant": merchant,
        "amount": gross,
        "currency": "EUR",
        "convertedAmount": gross,
        "category": category,
        "categoryGlCode": gl,
        "tag": "Advisory:Apollo",
        "created": "2026-11-14",
        "reimbursable": True,
        "taxAmount": tax,
        "taxCode": code,
        "taxName": "VAT",
        "taxRateName": f"{code} rate",
    }


def tax_world() -> dict[str, Any]:
    raw = small_dataset_raw()
    company = raw["ifs"]["companies"][0]
    forever = {"ValidFrom": "2020-01-01", "ValidUntil": "2099-12-31"}
    company["code_part_values"] += [
        {"CodePart": "A", "CodePartValue": "2640", "Description": "Input VAT", **forever},
        {
            "CodePart": "A",
            "CodePartValue": "6250",
            "Description": "Conference fees",
            "TaxCodeMandatory": True,
            **forever,
        },
    ]
    company["tax_codes"] = [
        {"FeeCode": "S20", "FeeRate": 20, "Account": "2640"},
        {"FeeCode": "S25", "FeeRate": 25, "Account": "2640"},
        {"FeeCode": "Z0", "FeeRate": 0, "Account": "2640"},
    ]
    for policy in raw["expensify"]["policies"]:
        policy["categories"].append({"name": "Conference Fees", "glCode": "6250", "enabled": True})
    template = next(r for r in raw["expensify"]["reports"] if r["reportID"] == "90000003")
    us_template = next(r for r in raw["expensify"]["reports"] if r["reportID"] == "90000001")
    meal = vat_line("7000000000000000211", "Le Procope", 12000, 2000, "VAT20", "Meals", "6130")
    flight = vat_line("7000000000000000212", "Air France", 31000, 0, "VAT0", "Airfare", "6110")
    odd = vat_line("7000000000000000221", "Kiosk", 2500, 500, "VAT25", "Meals", "6130")
    fee = dict(us_template["transactionList"][0])
    fee.update(
        transactionID="7000000000000000231",
        merchant="Money20/20",
        amount=49900,
        convertedAmount=49900,
        category="Conference Fees",
        categoryGlCode="6250",
    )
    for rid, base, lines, day in (
        ("90000021", template, [meal, flight], "14"),
        ("90000022", template, [odd], "15"),
        ("90000023", us_template, [fee], "16"),
    ):
        report = copy.deepcopy(base)
        report.update(
            reportID=rid,
            reportName=f"Report {rid}",
            approved=f"2026-11-{day} 09:00:00",
            transactionList=lines,
        )
        raw["expensify"]["reports"].append(report)
    return raw


def test_a_vat_report_posts_net_and_tax_and_the_tax_holds_post_once_fixed(
    tmp_path: Path, serve_world: Any
) -> None:
    sims = serve_world(tax_world())
    console = make_console(tmp_path, sims)
    posting = {
        **DEMO_POSTING,
        "tax_code_by_policy": {"POL-EU": {"VAT20": "S20", "VAT0": "Z0"}},
    }
    console.write_config(posting=posting)
    code, first, err = console.auto()
    assert code == 3, err
    assert reasons(first) == {**TAX_HOLDS, **{h["reportID"]: h["reason"] for h in SMALL_ATTENTION}}
    assert posted_reports(sims) == Counter([*SMALL_POSTED, "90000021"])

    # The VAT voucher, as IFS holds it: the meal's net with its tax code, IFS's own tax row
    # on the tax account, the zero-rated flight with its code, the gross on accrued expenses.
    (vat,) = [v for v in vouchers(sims) if v["ReferenceNumber"].split(":")[1] == "90000021"]
    rows = {(r["Account"], bool(r.get("AutoTaxVouEntry"))): r for r in vat["VoucherRowArray"]}
    # In EUR (the report's currency; the company books USD at IFS's rate 1.0842):
    meal = rows[("6130", False)]
    assert (meal["CurrencyDebetAmount"], meal["OptionalCode"]) == (Decimal("100.00"), "S20")
    assert meal["TaxDirection"] == "TaxReceived"
    assert (meal["CurrencyTaxAmount"], meal["TaxAmount"]) == (Decimal("20.00"), Decimal("21.68"))
    assert meal["CurrencyTaxBaseAmount"] == Decimal("100.00")
    tax_row = rows[("2640", True)]
    assert (tax_row["CurrencyDebetAmount"], tax_row["OptionalCode"]) == (Decimal("20.00"), "S20")
    flight = rows[("6110", False)]
    assert (flight["CurrencyDebetAmount"], flight["OptionalCode"]) == (Decimal("310.00"), "Z0")
    credit = rows[("2930", False)]
    assert credit["CurrencyCreditAmount"] == Decimal("430.00")
    # Balanced in USD to the cent, IFS's tax row included: 108.42 + 21.68 + 336.10.
    assert credit["CreditAmount"] == Decimal("466.20")
    assert len(vat["VoucherRowArray"]) == 4  # no tax row for the zero rate

    # The console says what is wrong and how to fix it.
    held = console.run("held")
    assert "Expensify tax code 'VAT25' (VAT25 rate), which has no IFS tax code" in held.stdout
    assert "requires a tax code on account 6250" in held.stdout
    assert not any(LABEL in labels(sims)[rid] for rid in TAX_HOLDS)

    # The mapping is added, and IFS's administrator lifts the account's tax demand.
    posting["tax_code_by_expensify"] = {"VAT25": "S25"}
    console.write_config(posting=posting)
    sim_post(
        sims.ifs_url,
        "/__sim/code-part-values",
        {"Company": "10", "CodePart": "A", "CodePartValue": "6250", "Description": "Conference"},
    )
    code, second, err = console.auto()
    assert code == 3, err  # 90000004 still waits for its cost centre
    assert sorted(v["reportID"] for v in second["vouchers"]) == sorted(TAX_HOLDS)
    code, third, err = console.auto()
    assert third["vouchers"] == []
    assert posted_reports(sims) == Counter([*SMALL_POSTED, "90000021", *TAX_HOLDS])  # each once
    assert all(LABEL in labels(sims)[rid] for rid in TAX_HOLDS)
    (kiosk,) = [v for v in vouchers(sims) if v["ReferenceNumber"].split(":")[1] == "90000022"]
    amounts = sorted(
        (r["Account"], r.get("CurrencyDebetAmount") or -r["CurrencyCreditAmount"])
        for r in kiosk["VoucherRowArray"]
    )
    assert amounts == [
        ("2640", Decimal("5.00")),
        ("2930", Decimal("-25.00")),
        ("6130", Decimal("20.00")),
    ]

    # The tie-out: per account net + tax = gross, as approved and as IFS holds it.
    proc = console.run("close", "--period", "2026-11", "--json")
    assert proc.returncode in (0, 3), proc.stderr
    close = json.loads(proc.stdout)
    meals = next(r for r in close["taxByAccount"] if r["account"] == "6130")
    # 20.00 + 5.00 EUR of VAT at IFS's rate 1.0842: 21.68 + 5.42 USD.
    assert Decimal(meals["taxInIfs"]) == Decimal(meals["taxApproved"]) == Decimal("27.10")
    assert Decimal(meals["netInIfs"]) + Decimal(meals["taxInIfs"]) == Decimal(meals["grossInIfs"])
    assert meals["grossInIfs"] == meals["grossApproved"]
    assert (
        "Tax per account: net + tax = gross" in console.run("close", "--period", "2026-11").stdout
    )


@pytest.mark.parametrize(
    "approved",
    [
        # Approved on the console's today: the poll reads it again (its window overlaps the
        # last poll by a day), with the same approval day before and after the fix.
        "2026-11-30 08:00:00",
        # Approved weeks ago: only the re-read of held reports by ID sees the fix.
        "2026-11-15 09:00:00",
    ],
)
def test_a_tax_change_in_expensify_is_seen_before_and_after_posting(
    tmp_path: Path, serve_world: Any, approved: str
) -> None:
    """The tax is part of what a voucher is made from: a held report whose tax code is fixed in
    Expensify posts with the new code, and a posted report whose tax changes is held for the
    operator's confirmation, not left as posted with the old tax."""
    world = tax_world()
    held = next(r for r in world["expensify"]["reports"] if r["reportID"] == "90000022")
    held["approved"] = approved
    sims = serve_world(world)
    console = make_console(tmp_path, sims)
    console.write_config(
        posting={**DEMO_POSTING, "tax_code_by_policy": {"POL-EU": {"VAT20": "S20", "VAT0": "Z0"}}}
    )
    code, first, err = console.auto()
    assert reasons(first)["90000022"] == "unmapped-tax:VAT25", err
    assert posted_reports(sims)["90000021"] == 1

    by_id = {r["reportID"]: copy.deepcopy(r) for r in world["expensify"]["reports"]}
    # The submitter fixes the held report's rate in Expensify (25 % → 20 %, 4.17 of 25.00)...
    odd = by_id["90000022"]
    odd["transactionList"][0].update(taxAmount=417, taxCode="VAT20", taxRateName="VAT20 rate")
    sim_post(sims.expensify_url, "/__sim/reports", odd)
    # ...and the posted VAT report's meal is re-receipted with less tax, same gross.
    vat = by_id["90000021"]
    vat["transactionList"][0]["taxAmount"] = 1500
    sim_post(sims.expensify_url, "/__sim/reports", vat)

    code, second, err = console.auto()
    assert code == 3, err
    assert [v["reportID"] for v in second["vouchers"]] == ["90000022"], err
    assert reasons(second)["90000021"] == "changed-after-posting:90000021"
    assert posted_reports(sims)["90000021"] == 1  # held, not posted again
    (kiosk,) = [v for v in vouchers(sims) if v["ReferenceNumber"].split(":")[1] == "90000022"]
    assert {r["OptionalCode"] for r in kiosk["VoucherRowArray"] if r["Account"] == "6130"} == {
        "S20"
    }
