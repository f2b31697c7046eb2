"""Company-card spend not yet on a report: the simulator's reconciliation job, the client's
reading of it, and the close's separate "card spend not yet reported" section (JSON, text, CSV,
HTML), which never changes the approved-report tie-out."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest

from console.close import (
    CARDS_READ,
    CardSpendSection,
    ClosePeriod,
    CompanyWindow,
    card_spend_lines,
    tie_out,
)
from console.close_report import render_csv, render_html, render_text
from console.config import PostingConfig
from console.errors import ProtocolError
from console.expensify import reconciliation
from console.expensify.models import PolicyCategory, PolicyEmployee, PolicyInfo
from console.expensify.reconciliation import (
    CardSpend,
    parse_reconciliation,
    reconciliation_template,
)
from console.flows.close import read_close_inputs
from console.mapping import NO_OVERRIDES
from console.money import loads
from console.sim.demo import (
    DEMO_CARD_SPEND,
    DEMO_DOMAIN,
    DEMO_EXPENSIFY_SECRET,
    DEMO_EXPENSIFY_USER_ID,
    DEMO_POSTING,
    UNMAPPED_CATEGORY,
)
from console.sim.expensify_app import ENDPOINT
from tests.close.helpers import FAST_EXPENSIFY, engine_on
from tests.conftest import sim_control
from tests.e2e.conftest import make_console

NOVEMBER = ClosePeriod(2026, 11)
CREDS = {"partnerUserID": DEMO_EXPENSIFY_USER_ID, "partnerUserSecret": DEMO_EXPENSIFY_SECRET}
D = Decimal


def post_job(url: str, job: dict[str, Any], template: str | None = None) -> httpx.Response:
    form = {"requestJobDescription": json.dumps({**job, "credentials": CREDS})}
    if template is not None:
        form["template"] = template
    return httpx.post(url + ENDPOINT, data=form, timeout=30)


def reconcile(url: str, **settings: Any) -> Any:
    """Run a reconciliation job with the shipped template and download its file."""
    inp = {"type": "Unreported", "startDate": "2026-11-01", "endDate": "2026-11-30",
           "domain": DEMO_DOMAIN, "feed": "export_all_feeds", **settings}  # fmt: skip
    answer = post_job(url, {"type": "reconciliation", "inputSettings": inp,
                            "outputSettings": {"fileExtension": "json"}},
                      reconciliation_template())  # fmt: skip
    body = answer.json()
    assert answer.status_code == 200 and body["responseCode"] == 200, body
    assert body["filename"].startswith("is_reconciliation_")
    download = {"type": "download", "fileName": body["filename"], "fileSystem": "reconciliation"}
    return loads(post_job(url, download).content)


def expenses(cards: Any) -> dict[str, tuple[dict, dict, dict]]:
    return {
        e["transactionID"]: (card, report, e)
        for card in cards
        for report in card["reports"]
        for e in report["transactions"]
    }


def card_raw(demo_raw: dict[str, Any]) -> list[dict[str, Any]]:
    return demo_raw["expensify"]["cardTransactions"]


# ---------------------------------------------------------------- the simulator


def test_reconciliation_job_serves_unreported_card_spend_with_the_inverted_sign(sims, demo_raw):
    cards = reconcile(sims.expensify_url)
    got = expenses(cards)
    in_window = [
        t for t in card_raw(demo_raw) if t["reportID"] == 0 and t["posted"] <= "2026-11-30"
    ]
    assert len(in_window) == DEMO_CARD_SPEND
    # Unreported only, November only: the next month's and the deleted expense stay out.
    assert set(got) == {t["transactionID"] for t in in_window}
    for t in in_window:
        card, report, e = got[t["transactionID"]]
        assert report["reportID"] == "0" and e["reportID"] == "0"
        assert card["cardID"] == t["cardID"] and card["owner"] == t["owner"]
        # Served exactly as the reconciliation data holds it: a purchase is negative.
        assert e["originalAmount"] == t["amount"] and e["amountModified"] is False
        assert e["merchant"] == t["merchant"]  # entities verbatim, as Expensify serves them
        assert e["reimbursable"] is False
    refunds = [e for _, _, e in got.values() if e["originalAmount"] > 0]
    assert len(refunds) == 1 and "Refund" in refunds[0]["comment"]
    assert any("&amp;" in e["merchant"] for _, _, e in got.values())

    # All: the unreported ones and the card lines on reports, the sign inverted against the
    # report export's. (Real clients use Unreported and All only.)
    every = expenses(reconcile(sims.expensify_url, type="All"))
    assert set(got) <= set(every)
    # (a deleted expense, on report -1, is in All too: it is no report's line)
    reported = {tid: v for tid, v in every.items() if int(v[1]["reportID"]) > 0}
    report_lines = {
        ln["transactionID"]: ln
        for r in demo_raw["expensify"]["reports"]
        for ln in r["transactionList"]
        if ln.get("cardID") and "2026-11-01" <= ln["created"] <= "2026-11-30"
    }
    assert reported and set(reported) == set(report_lines)
    some = next(iter(reported))
    assert reported[some][2]["originalAmount"] == -report_lines[some]["amount"]
    assert reported[some][1]["reportID"] != "0"

    # Another domain's cards, another feed: nothing.
    assert reconcile(sims.expensify_url, domain="other.example") == []
    assert reconcile(sims.expensify_url, feed="no-such-feed") == []
    vcf = expenses(reconcile(sims.expensify_url, feed="vcf"))
    assert vcf and all(card["bank"] == "vcf" for card, _, _ in vcf.values())


def test_reconciliation_job_refuses_what_it_does_not_render(sims):
    url = sims.expensify_url
    inp = {"type": "Unreported", "startDate": "2026-11-01", "endDate": "2026-11-30",
           "domain": DEMO_DOMAIN}  # fmt: skip
    job = {"type": "reconciliation", "inputSettings": inp}
    other = post_job(url, job, "<#list cards as card, reports></#list>").json()
    assert other["responseCode"] == 410 and "reconciliation.ftl" in other["responseMessage"]
    assert post_job(url, job).json()["responseCode"] == 410  # no template
    bad_type = {**job, "inputSettings": {**inp, "type": "Everything"}}
    assert (
        "Unreported" in post_job(url, bad_type, reconciliation_template()).json()["responseMessage"]
    )
    no_end = {**job, "inputSettings": {k: v for k, v in inp.items() if k != "endDate"}}
    assert post_job(url, no_end, reconciliation_template()).json()["responseCode"] == 410
    bad_date = {**job, "inputSettings": {**inp, "startDate": "01/11/2026"}}
    answer = post_job(url, bad_date, reconciliation_template()).json()
    assert "Expected format is yyyy-MM-dd" in answer["responseMessage"]


# ---------------------------------------------------------------- the client's reading


def test_parse_turns_the_sign_round_unescapes_and_lists_what_it_cannot_read():
    content = json.dumps(
        [
            {"cardID": "42", "cardName": "Visa &amp; Co", "bank": "vcf", "owner": "a@x.example",
             "reports": [{"reportID": "0", "transactions": [
                 {"transactionID": "t1", "reportID": "0", "merchant": "Barnes &amp; Noble",
                  "originalAmount": -12345, "modifiedAmount": 0, "amountModified": False,
                  "currency": "usd", "posted": "2026-11-03", "category": "Meals &amp; Drinks"},
                 {"transactionID": "t2", "originalAmount": -500, "modifiedAmount": -450,
                  "amountModified": True, "currency": "USD", "posted": "2026-11-04"},
                 {"transactionID": "t3", "originalAmount": 2000, "currency": "USD",
                  "posted": "2026-11-05"},
                 {"transactionID": "t4", "originalAmount": "12.50", "currency": "USD",
                  "posted": "2026-11-05"},
                 {"transactionID": "t5", "originalAmount": 100, "currency": "USD",
                  "posted": "5 Nov"},
             ]}]},
            {"cardName": "no ID"},
        ]
    ).encode()  # fmt: skip
    result = parse_reconciliation(content, file_name="f.json")
    by_id = {s.transaction_id: s for s in result.spends}
    assert set(by_id) == {"t1", "t2", "t3"}
    assert by_id["t1"].amount_minor == 12345 and by_id["t1"].currency == "USD"
    assert by_id["t1"].merchant == "Barnes & Noble" and by_id["t1"].category == "Meals & Drinks"
    assert by_id["t1"].card_name == "Visa & Co" and by_id["t1"].report_id == "0"
    assert by_id["t2"].amount_minor == 450  # the edited amount, sign turned round
    assert by_id["t3"].amount_minor == -2000  # a refund
    assert all(isinstance(s.amount_minor, int) for s in result.spends)
    unreadable = {u.where: u.reason for u in result.unreadable}
    assert (
        "card 42, expense t4" in unreadable
        and "originalAmount" in unreadable["card 42, expense t4"]
    )
    assert "posted" in unreadable["card 42, expense t5"]
    assert "card #2" in unreadable
    with pytest.raises(ProtocolError, match="not a JSON array"):
        parse_reconciliation(b'{"responseCode": 500}')


# ---------------------------------------------------------------- the mapping, pure


def _spend(tid: str, cents: int, **kw: Any) -> CardSpend:
    base = dict(card_id="1", card_name="Visa", bank="vcf", owner="ann@x.example",
                masked_pan="", transaction_id=tid, report_id="0", policy_id="", amount_minor=cents,
                currency="USD", posted=date(2026, 11, 10), merchant="m", category="Meals",
                tag="", comment="")  # fmt: skip
    base.update(kw)
    return CardSpend(**base)  # type: ignore[arg-type]


def test_card_spend_lines_map_convert_and_keep_every_unaccruable_expense_with_its_reason():
    policies = {
        "P": PolicyInfo(
            id="P",
            categories=[PolicyCategory(name="Meals", glCode="6130"),
                        PolicyCategory(name="Offsite", glCode="")],
            employees=[PolicyEmployee(email="Ann@X.example")],
        )
    }  # fmt: skip
    posting = PostingConfig.model_validate({**DEMO_POSTING, "company_by_policy": {"P": "10"}})
    windows = {"10": CompanyWindow("10", "USD", date(2026, 11, 1), date(2026, 11, 30), True)}
    rates = {("10", "EUR", date(2026, 11, 30)): D("1.0868")}
    lines = card_spend_lines(
        [
            _spend("usd", 1999),
            _spend("eur", 1005, currency="EUR"),  # 10.05 EUR * 1.0868 = 10.92234 -> 10.92
            _spend("refund", -500),
            _spend("offsite", 7000, category="Offsite"),
            _spend("chf", 100, currency="CHF"),
            _spend("stranger", 300, owner="bob@elsewhere.example"),
            _spend("december", 100, posted=date(2026, 12, 1)),
            _spend("reported", 100, report_id="51000001"),
            _spend("deleted", 100, report_id="-1"),
        ],
        policies=policies,
        posting=posting,
        overrides=NO_OVERRIDES,
        windows=windows,
        rate_on=lambda company, currency, day: rates.get((company, currency, day)),
        cc_letter="B",
    )
    by_id = {ln.transaction_id: ln for ln in lines}
    assert set(by_id) == {"usd", "eur", "refund", "offsite", "chf", "stranger"}
    assert by_id["usd"].account == "6130" and by_id["usd"].accounting == D("19.99")
    assert by_id["eur"].accounting == D("10.92") and by_id["eur"].rate == D("1.0868")
    assert by_id["refund"].accounting == D("-5.00")
    assert by_id["offsite"].reason == "unmapped-category:Offsite"
    assert by_id["offsite"].accounting is None and "GL account" in by_id["offsite"].message
    assert by_id["chf"].reason == "missing-rate:CHF:2026-11-30"
    assert by_id["stranger"].reason == "unknown-card-holder:bob@elsewhere.example"
    section = CardSpendSection(CARDS_READ, "", "2940", {"10": date(2026, 11, 30)}, tuple(lines))
    assert section.totals() == {("10", "USD"): D("25.91")}  # 19.99 + 10.92 - 5.00
    assert section.not_accruable_totals() == {"CHF": D("1.00"), "USD": D("73.00")}


# ---------------------------------------------------------------- the close, end to end


def _expected_card_total(demo_raw: dict[str, Any]) -> tuple[Decimal, set[str]]:
    """From the dataset alone: the accruable November total in USD (EUR at IFS's latest rate on
    the period's last day, rounded half-up per expense) and the unmapped expenses."""
    [company] = demo_raw["ifs"]["companies"]
    eur = max(
        (r for r in company["currency_rates"]
         if r["CurrencyCode"] == "EUR" and r["ValidFrom"] <= "2026-11-30"),
        key=lambda r: r["ValidFrom"],
    )  # fmt: skip
    rate = D(str(eur["CurrencyRate"]))
    gl = {
        c["name"]: c["glCode"] for p in demo_raw["expensify"]["policies"] for c in p["categories"]
    }
    total, unmapped = D(0), set()
    for t in card_raw(demo_raw):
        if t["reportID"] != 0 or not "2026-11-01" <= t["posted"] <= "2026-11-30":
            continue
        if not gl.get(t["category"]):
            unmapped.add(t["transactionID"])
            continue
        amount = D(-t["amount"]) / 100
        if t["currency"] == "EUR":
            magnitude = (abs(amount) * rate).quantize(D("0.01"), ROUND_HALF_UP)
            amount = magnitude if amount >= 0 else -magnitude
        total += amount
    return total, unmapped


def test_close_shows_card_spend_separately_to_the_cent_in_every_output(tmp_path, sims, demo_raw):
    console = make_console(tmp_path, sims)
    console.write_config(expensify=FAST_EXPENSIFY)
    code, _summary, err = console.auto()
    assert code == 3, err
    csv_path, html_path = tmp_path / "close.csv", tmp_path / "close.html"
    proc = console.run(
        "close", "--period", "2026-11", "--json", "--csv", str(csv_path), "--html", str(html_path)
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["balanced"] is True  # card spend is not part of the tie-out
    cards = data["cardSpend"]
    assert cards["status"] == "read" and cards["inTieOut"] is False
    assert cards["clearingAccount"] == "2940" and cards["voucherDates"] == {"10": "2026-11-30"}
    expected, unmapped = _expected_card_total(demo_raw)
    [total] = cards["totals"]
    assert (total["company"], total["currency"]) == ("10", "USD")
    assert D(total["amount"]) == expected
    assert sum(D(r["amount"]) for r in cards["rows"]) == expected
    assert sum(r["count"] for r in cards["rows"]) == DEMO_CARD_SPEND - len(unmapped)
    # Unmapped categories are listed with the reason, not dropped.
    blocked = {ln["transactionID"]: ln for ln in cards["lines"] if not ln["accruable"]}
    assert set(blocked) == unmapped and len(unmapped) == 2
    reasons = sorted(ln["reason"] for ln in blocked.values())
    assert reasons == ["unmapped-category:", f"unmapped-category:{UNMAPPED_CATEGORY}"]
    assert len(cards["lines"]) == DEMO_CARD_SPEND
    # The approved tie-out is the same with or without the section.
    [tie_total] = data["totals"]
    assert D(tie_total["difference"]) == 0 and D(tie_total["approved"]) != expected

    text = console.run("close", "--period", "2026-11")
    assert text.returncode == 0
    section = text.stdout[text.stdout.index("Card spend not yet reported") :]
    assert f"{expected:,.2f}" in section and "2940" in section
    for tid in unmapped:
        assert tid in section
    assert f"unmapped-category:{UNMAPPED_CATEGORY}" in section

    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert sum(D(r["cardSpend"]) for r in rows if r["kind"] == "card-spend") == expected
    lines = [r for r in rows if r["kind"] == "card-expense"]
    assert {r["transactionID"] for r in lines if r["reason"]} == unmapped
    assert all(r["in_ifs"] == "" for r in lines)  # never in a tie-out column
    page = html_path.read_text(encoding="utf-8")
    assert 'id="card-spend"' in page and f"{expected:,.2f}" in page
    assert "Lakeside Lodge &amp; Retreat" in page  # unescaped once, escaped for HTML


def test_an_unreadable_reconciliation_is_shown_and_leaves_the_tie_out_alone(
    tmp_path, small_sims, monkeypatch
):
    engine = engine_on(small_sims, tmp_path / "e")
    try:
        engine.run_cycle()
        inputs = read_close_inputs(engine, NOVEMBER)
        before = tie_out(inputs)
        assert before.card_spend is not None and before.card_spend.status == CARDS_READ
        assert before.card_spend.lines == ()  # the small world has no unreported card spend
        # The export fails (a template the simulator does not render): the section says so;
        # the tie-out's figures do not move.
        monkeypatch.setattr(reconciliation, "reconciliation_template", lambda: "<#-- other -->")
        after = tie_out(read_close_inputs(engine, NOVEMBER))
        assert after.card_spend is not None and after.card_spend.status == "unavailable"
        assert "reconciliation.ftl" in after.card_spend.note
        assert after.balanced == before.balanced and after.totals() == before.totals()
        assert "not read:" in render_text(after) and "card-spend" not in render_csv(after)
        assert "Card spend not yet reported" in render_html(after)
    finally:
        engine.close()


async def test_close_screen_lists_card_spend_in_its_own_section(tmp_path, sims, demo_raw):
    from textual.app import App

    from screens.close import CloseScreen
    from tests.close.test_close_screen import wait_for_tie

    engine = engine_on(sims, tmp_path / "tui")

    class CloseApp(App[None]):
        def on_mount(self) -> None:
            self.push_screen(CloseScreen(engine, NOVEMBER))

    expected, unmapped = _expected_card_total(demo_raw)
    try:
        async with CloseApp().run_test(size=(150, 50)) as pilot:
            screen = await wait_for_tie(pilot)
            assert screen.error == "" and screen.tie is not None
            section = str(screen.query_one("#close-cards").render())
            assert "Card spend not yet reported" in section
            assert f"{expected:,.2f} USD" in section and "2026-11-30" in section
            assert f"unmapped-category:{UNMAPPED_CATEGORY}" in section
            text = str(screen._card_spend_text(screen.tie))
            assert all(tid in text for tid in unmapped)
            for _ in range(3):
                await pilot.press("b")
            chart = str(screen.query_one("#close-chart-body").render())
            assert "Card spend not yet reported, by account" in chart
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("served_on", "tried", "learned"),
    [
        ("reconciliation", 1, "reconciliation"),  # as real clients download it
        ("integrationServer", 2, "integrationServer"),  # an older tenant: asked there next
        ("either", 1, "reconciliation"),
    ],
)
def test_the_client_downloads_card_files_where_real_clients_do(sims, served_on, tried, learned):
    from pydantic import SecretStr

    from console.credentials import ExpensifyCredentials
    from console.expensify.client import ExpensifyClient

    sim_control(sims.expensify_url, "settings", "POST", {"reconciliation_file_system": served_on})
    creds = ExpensifyCredentials(DEMO_EXPENSIFY_USER_ID, SecretStr(DEMO_EXPENSIFY_SECRET))
    with ExpensifyClient(sims.expensify_url, lambda: creds, limit_10s=100, limit_60s=600) as c:
        window = {"start": date(2026, 11, 1), "end": date(2026, 11, 30), "domains": [DEMO_DOMAIN]}
        first = reconciliation.export_card_spend(c, **window)
        assert len(first.spends) == DEMO_CARD_SPEND
        assert c.requests_made == 1 + tried  # the job, then a download per file system tried
        assert c.reconciliation_file_system == learned
        again = reconciliation.export_card_spend(c, **window)
        assert again.spends == first.spends
        assert c.requests_made == 1 + tried + 2  # the file system that served is asked first
