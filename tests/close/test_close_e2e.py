"""`ml-console close` end to end: the real command against the simulators (tests/e2e's harness:
its own --home and an isolated keyring)."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
from collections import Counter
from decimal import Decimal
from html.parser import HTMLParser

import httpx

from console import money
from console.sim.demo import DEMO_ATTENTION
from tests.close.helpers import FAST_EXPENSIFY, planned_vouchers, post_by_hand
from tests.conftest import sim_control, small_dataset_raw
from tests.e2e.conftest import Console, make_console


def fast_console(tmp_path, sims):
    console = make_console(tmp_path, sims)
    console.write_config(expensify=FAST_EXPENSIFY)
    return console


def ifs_vouchers(sims) -> list[dict]:
    return money.loads(httpx.get(sims.ifs_url + "/__sim/vouchers", timeout=30).content)


def expense_net(vouchers: list[dict], period: int) -> Decimal:
    """Accounting net of every expense row (not the 2930/2940 balancing rows) in a period."""
    total = Decimal(0)
    for v in vouchers:
        if v["AccountingPeriod"] != period:
            continue
        for r in v["VoucherRowArray"]:
            if r["Account"] in ("2930", "2940"):
                continue
            total += Decimal(str(r.get("DebetAmount") or 0)) - Decimal(
                str(r.get("CreditAmount") or 0)
            )
    return total


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1


def test_demo_month_ties_out_to_the_cent_with_csv_and_html(tmp_path, sims):
    console = fast_console(tmp_path, sims)
    code, summary, err = console.auto()
    assert code == 3, err  # the demo's attention reports are held
    csv_path, html_path = tmp_path / "close.csv", tmp_path / "out" / "close.html"
    proc = console.run(
        "close", "--period", "2026-11", "--json", "--csv", str(csv_path), "--html", str(html_path)
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["balanced"] is True and data["unexplained"] == []
    assert data["source"] == "expensify"
    # The demo's European VAT ties out too: net + tax per account, the tax posted by IFS.
    taxed = {(t["currency"], t["account"]): t for t in data["taxByAccount"]}
    assert any(Decimal(t["taxInIfs"]) > 0 for t in taxed.values()), taxed
    for t in taxed.values():
        for side in ("Approved", "InIfs"):
            net, tax, gross = (Decimal(t[f"{k}{side}"]) for k in ("net", "tax", "gross"))
            assert net + tax == gross
    [total] = data["totals"]
    approved, in_ifs, held = (Decimal(total[k]) for k in ("approved", "in_ifs", "held"))
    # held + posted = approved, to the cent; and "in IFS" is what IFS holds, not local state.
    assert approved == in_ifs + held
    assert Decimal(total["difference"]) == 0
    assert in_ifs == expense_net(ifs_vouchers(sims), 11)
    held_ids = {r["reportID"] for r in data["reports"] if r["disposition"] == "held"}
    november_attention = {
        h["reportID"] for h in DEMO_ATTENTION if not h["reason"].startswith("closed-period")
    }
    assert held_ids == november_attention
    posted = [r for r in data["reports"] if r["disposition"] == "posted"]
    assert len(posted) == len({v["reportID"] for v in summary["vouchers"]})
    for r in posted:
        assert r["approvedAmount"] == r["ifsAmount"]
        assert r["approvedAccounting"] == r["ifsAccounting"]

    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    tie_rows = [r for r in rows if r["kind"] == "tie-out"]
    assert sum(Decimal(r["in_ifs"]) for r in tie_rows) == in_ifs
    assert {r["reportID"] for r in rows if r["kind"] == "report"} >= held_ids
    page = html_path.read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(page)
    assert parser.tags["svg"] >= 3 and parser.tags["table"] >= 2
    assert "Balanced" in page and "2026-11" in page
    for rid in held_ids:
        assert rid in page


def test_unexplained_differences_are_named_and_exit_3(tmp_path, small_sims):
    # Built before the console labels anything (a fetch skips labelled reports).
    planned = planned_vouchers(small_sims, tmp_path / "other", ["90000001"])
    console = fast_console(tmp_path, small_sims)
    code, _summary, err = console.auto()
    assert code == 3, err  # 90000004 held
    text = console.run("close", "--period", "2026-11")
    assert text.returncode == 0, text.stderr
    assert "BALANCED" in text.stdout and "90000004" in text.stdout

    # 1. Someone posts a voucher by hand with an EXP: reference for a report never posted here.
    body = planned["90000001"].to_ifs_body()
    body["ReferenceNumber"] = "EXP:93333333:0badf00d"
    post_by_hand(small_sims, tmp_path / "other", body)
    # 2. A posted report is re-approved in Expensify with a different amount.
    report = copy.deepcopy(
        next(r for r in small_dataset_raw()["expensify"]["reports"] if r["reportID"] == "90000003")
    )
    report["transactionList"][0]["amount"] += 1000
    report["transactionList"][0]["convertedAmount"] += 1000
    sim_control(small_sims.expensify_url, "reports", "POST", report)

    proc = console.run("close", "--period", "2026-11", "--json")
    assert proc.returncode == 3, proc.stderr
    data = json.loads(proc.stdout)
    unexplained = {u["reportID"]: u["reason"] for u in data["unexplained"]}
    assert set(unexplained) == {"93333333", "90000003"}
    assert "does not know" in unexplained["93333333"]
    assert "379.17 EUR" in unexplained["90000003"] and "369.17 EUR" in unexplained["90000003"]
    assert "report 93333333" in proc.stderr and "report 90000003" in proc.stderr
    [total] = data["totals"]
    assert Decimal(total["difference"]) != 0


def test_close_without_config_or_with_a_bad_period_is_a_usage_error(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_CONSOLE_")}
    console = Console(home, "http://127.0.0.1:9", "http://127.0.0.1:9", env)
    bad = console.run("close", "--period", "November")
    assert bad.returncode == 2 and "YYYY-MM" in bad.stderr and bad.stdout == ""
    missing = console.run("close", "--period", "2026-11")
    assert missing.returncode == 2 and "config" in missing.stderr and missing.stdout == ""
