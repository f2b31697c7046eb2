"""Outside data on every output: a category `ESC[2J` must not clear the operator's terminal,
NUL never reaches an output, report IDs like `@SUM(1+1)` and merchants starting `=HYPERLINK(`
never run in a spreadsheet, HTML escapes everything; data stays exact in JSON."""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from console.sim.dataset import parse_dataset
from console.textsafe import csv_cell, json_text, visible, visible_text
from tests.conftest import _serve, small_dataset_raw
from tests.e2e.conftest import Console, make_console

ESC_CATEGORY = "\x1b[2J<b>Wiped</b>\x00Out"
FORMULA_ID = "@SUM(1+1)"
MERCHANT = '=HYPERLINK("http://evil.example/?x","click me")'
EMPLOYEE_NAME = "Mallory \x1b]0;owned\x07 \x9b31m"
# What may never reach an output: ESC, NUL, BEL, the 8-bit CSI.
RAW = re.compile(r"[\x00\x07\x1b\x9b]")


def hostile_raw() -> dict[str, Any]:
    raw = small_dataset_raw()
    reports = raw["expensify"]["reports"]
    first = next(r for r in reports if r["reportID"] == "90000001")
    formula = copy.deepcopy(first)
    formula["reportID"] = FORMULA_ID
    formula["reportName"] = "=1+2"
    for i, line in enumerate(formula["transactionList"]):
        line["transactionID"] = f"71000000000000000{i:02d}"
        line["merchant"] = MERCHANT
    held = copy.deepcopy(first)
    held["reportID"] = "90000077"
    held["reportName"] = "Report \x1b[2J\x00"
    held["transactionList"] = [copy.deepcopy(first["transactionList"][0])]
    held["transactionList"][0].update(
        transactionID="7200000000000000001", category=ESC_CATEGORY, categoryGlCode=""
    )
    reports += [formula, held]
    return raw


@pytest.fixture
def hostile(tmp_path) -> Iterator[Console]:
    for sims in _serve(parse_dataset(hostile_raw(), "hostile small dataset")):
        console = make_console(tmp_path, sims)
        code, summary, err = console.auto()
        assert code == 3, err
        held = {h["reportID"]: h["reason"] for h in summary["held_reports"]}
        assert held["90000077"] == f"unmapped-category:{ESC_CATEGORY}", summary
        assert FORMULA_ID in {v["reportID"] for v in summary["vouchers"]}, summary
        yield console


def clean(*texts: str) -> None:
    for text in texts:
        assert not RAW.search(text), repr(text)


def test_held_shows_the_escape_visibly_and_json_keeps_the_exact_value(hostile):
    proc = hostile.run("held")
    assert proc.returncode in (0, 3)
    clean(proc.stdout, proc.stderr)
    assert "unmapped-category:\\x1b[2J<b>Wiped</b>\\x00Out" in proc.stdout
    as_json = hostile.run("held", "--json")
    clean(as_json.stdout)
    held = {h["reportID"]: h for h in json.loads(as_json.stdout)}
    assert held["90000077"]["reason"] == f"unmapped-category:{ESC_CATEGORY}"


def test_audit_export_csv_neutralises_formulas_and_jsonl_stays_exact(hostile, tmp_path):
    out = tmp_path / "audit.csv"
    proc = hostile.run("audit", "export", "--format", "csv", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    clean(text)
    rows = list(csv.DictReader(io.StringIO(text)))
    ids = {r["report_id"] for r in rows}
    assert f"'{FORMULA_ID}" in ids and FORMULA_ID not in ids
    assert all(not cell.startswith(("=", "+", "@")) for r in rows for cell in r.values())
    lines = hostile.run("audit", "export")
    clean(lines.stdout)
    events = [json.loads(line) for line in lines.stdout.splitlines()]
    assert FORMULA_ID in {e["report_id"] for e in events}


def test_close_report_text_csv_and_html(hostile, tmp_path):
    csv_path, html_path = tmp_path / "close.csv", tmp_path / "close.html"
    proc = hostile.run(
        "close", "--period", "2026-11", "--csv", str(csv_path), "--html", str(html_path)
    )
    assert proc.returncode in (0, 3), proc.stderr
    clean(proc.stdout, proc.stderr)
    assert "\\x1b[2J<b>Wiped</b>\\x00Out" in proc.stdout
    text = csv_path.read_text(encoding="utf-8")
    clean(text)
    rows = list(csv.DictReader(io.StringIO(text)))
    reports = {r["reportID"]: r for r in rows if r["kind"] == "report"}
    assert f"'{FORMULA_ID}" in reports and FORMULA_ID not in reports
    assert "'unmapped-category:" not in text  # only cells a spreadsheet would run change
    assert reports["90000077"]["reason"] == "unmapped-category:\\x1b[2J<b>Wiped</b>\\x00Out"
    negative = [r["difference"] for r in rows if r["difference"].startswith("-")]
    assert all(re.fullmatch(r"-\d+\.\d+", v) for v in negative)  # numbers stay numbers
    page = html_path.read_text(encoding="utf-8")
    clean(page)
    assert "<td>unmapped-category:\\x1b[2J&lt;b&gt;Wiped&lt;/b&gt;\\x00Out</td>" in page
    assert "<b>" not in page
    as_json = hostile.run("close", "--period", "2026-11", "--json")
    clean(as_json.stdout)
    data = json.loads(as_json.stdout)
    assert FORMULA_ID in json.dumps(data)


def test_dry_run_diff_status_and_info_show_controls_visibly(hostile):
    dry = hostile.run("--auto", "--dry-run")
    clean(dry.stdout, dry.stderr)
    status = hostile.run("status")
    clean(status.stdout, status.stderr)
    assert "\\x1b[2J<b>Wiped</b>\\x00Out" in status.stdout  # the held-by-reason counts
    hostile.write_config(operator={"name": "ops \x1b[2J"})
    info = hostile.run("info")
    clean(info.stdout, info.stderr)


# ------------------------------------------------------------------ the core functions


def test_visible_matches_the_tui():
    from screens.literal import sanitize

    for text in (ESC_CATEGORY, EMPLOYEE_NAME, "tab\tnew\nline\rcr", "del\x7f", "ok é 東京"):
        assert visible(text) == sanitize(text)
    assert visible("a\x00b") == "a\\x00b"
    assert visible_text("one\x1b[2J\ntwo\x00") == "one\\x1b[2J\ntwo\\x00"


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        (FORMULA_ID, "'@SUM(1+1)"),
        (MERCHANT, "'" + MERCHANT),
        ("+1-555-0100 call", "'+1-555-0100 call"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("\t=1", "' =1"),
        ("\r=1", "'⏎=1"),
        ("＝1+1", "'＝1+1"),
        ("-12.50", "-12.50"),
        ("+7", "+7"),
        (Decimal("-12.50"), "-12.50"),
        (-3, "-3"),
        ("Delta Air Lines", "Delta Air Lines"),
        ("a\x00b", "a\\x00b"),
        (None, ""),
    ],
)
def test_csv_cell(cell, shown):
    assert csv_cell(cell) == shown


def test_json_text_is_the_same_json_without_raw_controls():
    value = {"name": EMPLOYEE_NAME + "\x7f", "n": 1}
    text = json_text(value)
    clean(text)
    assert "\x7f" not in text and json.loads(text) == value


def test_close_csv_neutralises_a_card_merchant_and_keeps_negative_amounts_numbers():
    from datetime import date

    from console.close import CARDS_READ, CardSpendLine, CardSpendSection, ClosePeriod, TieOut
    from console.close_report import render_csv, render_html

    line = CardSpendLine(
        transaction_id="@SUM(1+1)", card_id="41234567", card_name="Corporate Visa",
        owner="ana.lee@small.example", posted="2026-11-20", merchant=MERCHANT,
        category=ESC_CATEGORY, tag="", policy_id="POL-US", company="10",
        company_currency="USD", currency="USD", amount=Decimal("-12.50"), account="6130",
        code_parts=(), cost_centre="CC-100", rate=Decimal(1), accounting=Decimal("-12.50"),
    )  # fmt: skip
    section = CardSpendSection(CARDS_READ, "read", "2940", {"10": date(2026, 11, 30)}, (line,))
    tie = TieOut(
        period=ClosePeriod(2026, 11), windows={}, rows=[], currencies=[], reports=[],
        source="expensify", source_note="", read_at="2026-11-30T08:00:00Z", unconverted={},
        cost_centre_code_part="B", card_spend=section,
    )  # fmt: skip
    text = render_csv(tie)
    clean(text)
    [row] = [r for r in csv.DictReader(io.StringIO(text)) if r["kind"] == "card-expense"]
    assert row["merchant"] == "'" + MERCHANT
    assert row["transactionID"] == "'@SUM(1+1)"
    assert row["cardAmount"] == row["cardSpend"] == "-12.50"  # a number, not text
    assert row["category"] == "\\x1b[2J<b>Wiped</b>\\x00Out"
    # Not accruable (no account): the HTML lists it, merchant escaped, quotes included.
    section = CardSpendSection(
        CARDS_READ, "read", "2940", {"10": date(2026, 11, 30)},
        (dataclasses.replace(line, account="", accounting=None, reason="unmapped-category:x"),),
    )  # fmt: skip
    page = render_html(dataclasses.replace(tie, card_spend=section))
    clean(page)
    assert "<td>=HYPERLINK(&quot;http://evil.example/?x&quot;,&quot;click me&quot;)</td>" in page
