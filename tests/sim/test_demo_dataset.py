"""The demo dataset: deterministic, loadable, realistic, and with exactly the attention cases
DEMO_ATTENTION names (checked against the IFS side of the data, not against the generator)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from console import clock
from console.sim.dataset import Company, Dataset, DatasetError, Policy, load_dataset, parse_dataset
from console.sim.demo import (
    DEMO_ATTENTION,
    DEMO_EXPENSIFY_SECRET,
    DEMO_EXPENSIFY_USER_ID,
    DEMO_IFS_CLIENT_ID,
    DEMO_IFS_SECRET,
    DEMO_POLICY_SC,
    DEMO_POSTING,
    DEMO_REALM,
    DEMO_SC_REPORTS,
    build_demo_dataset,
    demo_attention,
    demo_dataset,
    dumps_dataset,
    in_progress_count,
)

FETCHED = ("APPROVED", "REIMBURSED")
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- an independent checker
def reasons_for(report: Any, policy: Policy, company: Company) -> set[str]:
    """The design.md §4 reasons this report would be held for, derived from the data alone."""
    voucher_date = date.fromisoformat(report.approved[:10])
    reasons: set[str] = set()
    values = {(v.CodePart, v.CodePartValue): v for v in company.code_part_values}

    def check(part: str, value: str) -> None:
        found = values.get((part, value))
        if found is None:
            reasons.add(f"missing-dimension:{part}:{value}")
        elif not found.ValidFrom <= voucher_date <= found.ValidUntil:
            reasons.add(f"invalid-dimension:{part}:{value}")

    categories = {c.name: c for c in policy.categories}
    levels = [(level.name, {t.name: t for t in level.tags}) for level in policy.tags]
    part_by_level = DEMO_POSTING["code_part_by_tag_level"]
    for line in report.transactionList:
        category = categories.get(line.category)
        if category is None or not category.glCode:
            reasons.add(f"unmapped-category:{line.category}")
        else:
            check("A", category.glCode)
        names = line.tag.split(":")
        assert len(names) == len(levels), f"{report.reportID}: tag {line.tag!r} misses a level"
        for (level, tags), name in zip(levels, names, strict=True):
            tag = tags.get(name)
            if tag is None or not tag.glCode:
                reasons.add(f"unmapped-tag:{level}:{name}")
            else:
                check(part_by_level[level], tag.glCode)
    for account in (
        DEMO_POSTING["accrued_expenses_account"],
        DEMO_POSTING["card_clearing_account"],
    ):
        check("A", account)
    period = [p for p in company.periods if p.DateFrom <= voucher_date <= p.DateUntil]
    assert len(period) == 1, f"{report.reportID}: no single period for {voucher_date}"
    if period[0].PeriodStatus != "Open":
        reasons.add(f"closed-period:{period[0].AccountingYear}-{period[0].AccountingPeriod:02d}")
    if report.currency != company.CurrencyCode:
        rates = [
            r
            for r in company.currency_rates
            if r.CurrencyCode == report.currency and r.ValidFrom <= voucher_date
        ]
        if not rates:
            reasons.add(f"missing-rate:{report.currency}:{voucher_date}")
    return reasons


def held_reports(dataset: Dataset) -> dict[str, set[str]]:
    company_by_id = {c.Company: c for c in dataset.ifs.companies}
    policies = {p.id: p for p in dataset.expensify.policies}
    held: dict[str, set[str]] = {}
    for report in dataset.expensify.reports:
        if report.status not in FETCHED:
            continue
        company = company_by_id[DEMO_POSTING["company_by_policy"][report.policyID]]
        reasons = reasons_for(report, policies[report.policyID], company)
        if reasons:
            held[report.reportID] = reasons
    return held


def expected(attention: list[dict[str, str]]) -> dict[str, set[str]]:
    return {a["reportID"]: {a["reason"]} for a in attention}


@pytest.fixture(scope="module")
def tiny_raw() -> dict[str, Any]:
    return build_demo_dataset(reports=20)


@pytest.fixture(scope="module")
def demo(demo_raw: dict[str, Any]) -> Dataset:
    return parse_dataset(demo_raw, "demo")


def all_lines(raw: dict[str, Any]) -> list[dict[str, Any]]:
    return [ln for r in raw["expensify"]["reports"] for ln in r["transactionList"]]


# ---------------------------------------------------------------- determinism
def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(demo_raw: dict[str, Any]) -> None:
    again = build_demo_dataset()
    assert dumps_dataset(again) == dumps_dataset(demo_raw)
    other = build_demo_dataset(7)
    assert dumps_dataset(other) != dumps_dataset(demo_raw)
    assert len(other["expensify"]["reports"]) == len(demo_raw["expensify"]["reports"])


def test_cli_writes_the_same_dataset_twice_and_it_loads(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "console.sim.demo", "--reports", "40", "--seed", "11"]
    first = subprocess.run(cmd, capture_output=True, check=True, cwd=ROOT, timeout=60)
    second = subprocess.run(cmd, capture_output=True, check=True, cwd=ROOT, timeout=60)
    assert first.stdout == second.stdout
    # The world as of the console's today: the month before closing, today's in progress.
    today = clock.today()
    period = clock.previous_period(today)
    built = build_demo_dataset(11, reports=40, period=period, as_of=today, submit_and_close=True)
    assert first.stdout == (dumps_dataset(built) + "\n").encode()
    path = tmp_path / "demo.json"
    path.write_bytes(first.stdout)
    loaded = load_dataset(path)
    in_progress = in_progress_count(40, period, today)
    assert sum(r.status in FETCHED for r in loaded.expensify.reports) == 40 + in_progress
    closed = [r for r in loaded.expensify.reports if r.policyID == DEMO_POLICY_SC]
    assert len(closed) == DEMO_SC_REPORTS
    assert all(r.status == "ARCHIVED" and not r.approved and r.submitted for r in closed)
    [sc] = [p for p in loaded.expensify.policies if p.id == DEMO_POLICY_SC]
    assert sc.approvalMode == "OPTIONAL"
    assert held_reports(loaded) == expected(demo_attention(period))
    fixed = subprocess.run([*cmd, "--period", "2026-11"], capture_output=True, check=True,
                           cwd=ROOT, timeout=60)  # fmt: skip
    assert fixed.stdout == (dumps_dataset(build_demo_dataset(11, reports=40)) + "\n").encode()


def test_too_few_reports_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 20"):
        build_demo_dataset(reports=10)


# ---------------------------------------------------------------- shape
def test_demo_dataset_is_parsed_and_fresh_each_call() -> None:
    a, b = demo_dataset(reports=20), demo_dataset(reports=20)
    assert isinstance(a, Dataset)
    a.expensify.reports[0].exportLabels.append("ml-console")
    assert b.expensify.reports[0].exportLabels == []


def test_credentials_match_the_constants(demo: Dataset) -> None:
    cred = demo.expensify.credentials[0]
    assert (cred.partnerUserID, cred.partnerUserSecret) == (
        DEMO_EXPENSIFY_USER_ID,
        DEMO_EXPENSIFY_SECRET,
    )
    client = demo.ifs.clients[0]
    assert (client.client_id, client.client_secret) == (DEMO_IFS_CLIENT_ID, DEMO_IFS_SECRET)
    assert demo.ifs.realm == DEMO_REALM
    assert demo.ifs.token_lifetime_s == 3600


def test_a_month_of_approved_reports_and_some_that_must_not_be_fetched(demo: Dataset) -> None:
    states = Counter(r.status for r in demo.expensify.reports)
    assert states["APPROVED"] + states["REIMBURSED"] == 600
    assert 5 <= states["REIMBURSED"] <= 60
    assert states["OPEN"] >= 5 and states["SUBMITTED"] >= 5
    for r in demo.expensify.reports:
        if r.status in ("OPEN", "SUBMITTED"):
            assert r.approved is None
        else:
            assert r.approved is not None
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", r.approved)
            assert r.submitted <= r.approved and r.created <= r.submitted
    november = {r.approved[:10] for r in demo.expensify.reports if r.approved}
    assert len({d for d in november if d.startswith("2026-11")}) >= 20  # spread over the month
    ids = [r.reportID for r in demo.expensify.reports]
    assert len(set(ids)) == len(ids) and all(i.isdigit() for i in ids)
    txn_ids = [t.transactionID for r in demo.expensify.reports for t in r.transactionList]
    assert len(set(txn_ids)) == len(txn_ids)


def test_firm_of_150_people_in_two_policies_one_usd_company(demo: Dataset) -> None:
    us, eu, jp = demo.expensify.policies
    assert (us.id, us.outputCurrency, eu.id, eu.outputCurrency) == (
        "POL-US",
        "USD",
        "POL-EU",
        "EUR",
    )
    # The Tokyo desk: one US employee is also a member of the JPY workspace.
    assert (jp.id, jp.outputCurrency) == ("POL-JP", "JPY")
    assert {e.email for e in jp.employees} <= {e.email for e in us.employees}
    emails = [e.email for p in (us, eu) for e in p.employees]
    assert len(emails) == 150 and len(set(emails)) == 150
    assert all(re.fullmatch(r"[a-z0-9.]+@calderfinch\.example", e) for e in emails)
    assert any(not e.firstName.isascii() or not e.lastName.isascii() for p in demo.expensify.policies for e in p.employees)  # fmt: skip
    everyone = set(emails)
    for p in demo.expensify.policies:
        assert all(e.submitsTo in everyone for e in p.employees)
        assert p.owner in everyone
        assert [level.name for level in p.tags] == ["Cost Center", "Project"]
    assert {r.accountEmail for r in demo.expensify.reports} <= everyone
    assert DEMO_POSTING["company_by_policy"] == {"POL-US": "10", "POL-EU": "10", "POL-JP": "10"}
    (company,) = demo.ifs.companies
    assert (company.Company, company.CurrencyCode) == ("10", "USD")
    assert [v.VoucherType for v in company.voucher_types] == [DEMO_POSTING["voucher_type"]]
    statuses = {(p.AccountingYear, p.AccountingPeriod): p.PeriodStatus for p in company.periods}
    assert statuses == {
        (2026, 9): "Open",
        (2026, 10): "Closed",
        (2026, 11): "Open",
        (2026, 12): "Open",
    }
    eur = sorted(
        (r.ValidFrom, r.CurrencyRate) for r in company.currency_rates if r.CurrencyCode == "EUR"
    )
    assert (date(2026, 11, 1), Decimal("1.0842")) in eur
    assert sum(r.currency == "EUR" for r in demo.expensify.reports) >= 100


def test_line_counts_and_long_reports(demo: Dataset) -> None:
    counts = [len(r.transactionList) for r in demo.expensify.reports]
    long = [c for c in counts if c >= 40]
    assert 3 <= len(long) <= 12
    assert all(1 <= c <= 12 for c in counts if c < 40)
    assert Counter(min(c, 13) for c in counts)[1] >= 20  # plenty of one-line reports too


def test_lines_the_sync_must_handle_are_all_there(demo_raw: dict[str, Any]) -> None:
    lines = all_lines(demo_raw)
    assert all(type(ln["amount"]) is int and type(ln["convertedAmount"]) is int for ln in lines)
    refunds = [ln for ln in lines if ln["amount"] < 0]
    zeros = [ln for ln in lines if ln["amount"] == 0]
    card = [ln for ln in lines if not ln["reimbursable"]]
    assert len(refunds) >= 10 and len(zeros) >= 10
    assert all(ln["convertedAmount"] < 0 for ln in refunds)
    assert 0.1 < len(card) / len(lines) < 0.5
    for ln in card:
        assert ln["cardID"].isdigit()
        assert re.fullmatch(r"\d{6}X{6}\d{4}", ln["cardNumber"])  # masked, never a full PAN
    foreign = [
        (r, ln)
        for r in demo_raw["expensify"]["reports"]
        for ln in r["transactionList"]
        if ln["currency"] != r["currency"]
    ]
    assert {ln["currency"] for _, ln in foreign} >= {"GBP", "CHF", "JPY", "EUR", "USD"}
    for _, ln in foreign:
        rate = Decimal(str(ln["currencyConversionRate"]))
        expected_cents = Decimal(ln["amount"]) * rate
        assert abs(ln["convertedAmount"] - expected_cents) <= max(1, abs(expected_cents) / 1000)
    merchants = {ln["merchant"] for ln in lines}
    assert {"Barnes &amp; Noble", "AT&amp;T", "McDonald's"} <= merchants
    assert any("Zürich" in m for m in merchants)
    assert any("Café" in m for m in merchants)
    assert any("東京" in m for m in merchants)
    totals = [sum(ln["convertedAmount"] for ln in r["transactionList"]) for r in demo_raw["expensify"]["reports"]]  # fmt: skip
    assert any(t < 0 for t in totals), "a report whose total is negative"
    assert any(ln["comment"] and '"' in ln["comment"] for ln in lines)


def test_mileage_carries_its_units_and_billable_lines_their_project(
    demo_raw: dict[str, Any],
) -> None:
    """Distance lines say how far (Expensify's `units`, the row's Quantity where the account
    demands one), and every billable line names the client project it is billed to, as the
    demo's billable_project_code_part requires (console/line_coding.py)."""
    lines = all_lines(demo_raw)
    mileage = [ln for ln in lines if ln["category"] == "Mileage"]
    assert mileage and all(ln["units"]["unit"] in ("km", "mi") for ln in mileage)
    for ln in mileage:
        count = Decimal(ln["units"]["count"])
        assert ln["merchant"].startswith(f"{count} {ln['units']['unit']} @")
    billable = [ln for ln in lines if ln["billable"]]
    assert len(billable) >= 20 and DEMO_POSTING["billable_project_code_part"] == "C"
    # A project tag on each (the second tag level): none is held as billable-without-project.
    assert all(len(ln["tag"].split(":")) == 2 and ln["tag"].split(":")[1] for ln in billable)


def test_amounts_are_plausible(demo_raw: dict[str, Any]) -> None:
    ranges = {"Airfare": (13000, 170000), "Meals": (700, 13500), "Telecom": (4000, 14000)}
    for r in demo_raw["expensify"]["reports"]:
        if r["currency"] == "JPY":
            continue  # the Tokyo report, in yen: its own test
        for ln in r["transactionList"]:
            if ln["category"] in ranges and ln["amount"] > 0:
                low, high = ranges[ln["category"]]
                # EUR reports convert at about 0.92; allow that on both ends.
                assert low * 0.85 <= ln["convertedAmount"] <= high * 1.1, ln


# ---------------------------------------------------------------- attention
def test_attention_is_exactly_as_listed(demo: Dataset) -> None:
    assert held_reports(demo) == expected(DEMO_ATTENTION)
    reasons = Counter(a["reason"] for a in DEMO_ATTENTION)
    assert reasons == {
        "missing-dimension:B:CC-410": 3,
        "invalid-dimension:B:CC-150": 2,
        "unmapped-category:Team Offsite": 2,
        "closed-period:2026-10": 2,
    }
    by_id = {r.reportID: r for r in demo.expensify.reports}
    assert all(by_id[a["reportID"]].status == "APPROVED" for a in DEMO_ATTENTION)


def test_every_other_report_posts_valid_on_its_approval_date(demo: Dataset) -> None:
    # The same check, the other way round: nothing else would be held. CC-150 is used before
    # it expired and the mid-month project only from its start, so dates really matter.
    held = held_reports(demo)
    values = {(v.CodePart, v.CodePartValue): v for v in demo.ifs.companies[0].code_part_values}
    assert ("B", "CC-410") not in values and values[("B", "CC-150")].ValidUntil == date(
        2026, 11, 10
    )
    used_cc150 = [
        r
        for r in demo.expensify.reports
        if r.status in FETCHED
        and r.reportID not in held
        and any(t.tag.startswith("Hartford Office:") for t in r.transactionList)
    ]
    assert used_cc150 and all(r.approved and r.approved[:10] <= "2026-11-10" for r in used_cc150)


def test_traps_in_unfetched_reports(demo: Dataset) -> None:
    unfetched = [r for r in demo.expensify.reports if r.status not in FETCHED]
    assert any(t.category == "Team Offsite" for r in unfetched for t in r.transactionList)


@pytest.mark.parametrize(("seed", "reports", "period"), [(7, 60, "2026-11"), (99, 1200, "2027-03")])
def test_attention_holds_for_other_seeds_sizes_and_periods(
    seed: int, reports: int, period: str
) -> None:
    dataset = parse_dataset(build_demo_dataset(seed, reports=reports, period=period))
    assert sum(r.status in FETCHED for r in dataset.expensify.reports) == reports
    attention = demo_attention(period)
    assert held_reports(dataset) == expected(attention)
    assert "closed-period:2027-02" in {a["reason"] for a in demo_attention("2027-03")}


def test_bad_period_is_refused() -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        build_demo_dataset(period="November")


# ---------------------------------------------------------------- rejected variants
@pytest.mark.parametrize(
    ("where", "value", "named"),
    [
        (("expensify", "reports", 3, "transactionList", 0, "amount"), 12.5,
         "expensify.reports.3.transactionList.0.amount"),
        (("expensify", "reports", 3, "transactionList", 0, "amount"), "a lot",
         "expensify.reports.3.transactionList.0.amount"),
        (("expensify", "reports", 2, "status"), "PAID", "expensify.reports.2.status"),
        (("ifs", "companies", 0, "code_part_values", 4, "CodePart"), "Z",
         "ifs.companies.0.code_part_values.4.CodePart"),
        (("ifs", "companies", 0, "periods", 1, "DateFrom"), "1st of October",
         "ifs.companies.0.periods.1.DateFrom"),
        (("ifs", "token_lifetime_s"), "an hour", "ifs.token_lifetime_s"),
        (("expensify", "policies", 1, "categories"), {"Airfare": "6110"},
         "expensify.policies.1.categories"),
    ],
)  # fmt: skip
def test_bad_variants_are_rejected_naming_the_key(
    tiny_raw: dict[str, Any], where: tuple[Any, ...], value: Any, named: str
) -> None:
    bad = copy.deepcopy(tiny_raw)
    node: Any = bad
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    with pytest.raises(DatasetError) as info:
        parse_dataset(bad, "bad.json")
    assert named in str(info.value)
    assert str(info.value).startswith("bad.json")


def test_missing_required_key_is_named(tiny_raw: dict[str, Any], tmp_path: Path) -> None:
    bad = copy.deepcopy(tiny_raw)
    del bad["expensify"]["reports"][5]["reportID"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"expensify\.reports\.5\.reportID"):
        load_dataset(path)


def test_one_report_in_yen_on_a_tenant_quoting_yen_per_100(demo: Dataset) -> None:
    """Issue #16: the JPY report is in Expensify's hundredths of whole yen; IFS quotes JPY per
    100 (ConvFactor 100) with no decimals, and serves a three-decimal currency (KWD)."""
    (tokyo,) = [r for r in demo.expensify.reports if r.currency == "JPY"]
    assert tokyo.policyID == "POL-JP" and tokyo.status == "APPROVED"
    assert tokyo.approved[:7] == "2026-11"
    assert all(t.currency == "JPY" and t.amount % 100 == 0 for t in tokyo.transactionList)
    (company,) = demo.ifs.companies
    decimals = {c.CurrencyCode: (c.Decimals, c.ConvFactor) for c in company.currencies}
    assert decimals == {"JPY": (0, Decimal(100)), "KWD": (3, Decimal(1))}
    jpy = {r.ValidFrom: (r.CurrencyRate, r.ConvFactor) for r in company.currency_rates if r.CurrencyCode == "JPY"}  # fmt: skip
    assert jpy[date(2026, 11, 1)] == (Decimal("0.6650"), Decimal(100))
