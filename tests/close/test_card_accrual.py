"""`ml-console close --accrue-card-spend` / `--reverse-card-spend`, end to end: the real command
against the simulators (the demo world's 30 unreported November card expenses), exactly once
whatever fails, and where each accrual stands in every close output."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

from console.sim.demo import UNMAPPED_CATEGORY
from console.store import Store
from tests.close.helpers import FAST_EXPENSIFY
from tests.close.test_card_spend import _expected_card_total
from tests.conftest import sim_control
from tests.e2e.conftest import Console, make_console

D = Decimal
ACCRUAL = "CARD:2026-11:10"
REVERSAL = "CARD-REV:2026-11:10"
NOV_30 = {"ML_CONSOLE_AS_OF": "2026-11-30"}
DEC_1 = {"ML_CONSOLE_AS_OF": "2026-12-01"}


def fast_console(tmp_path, sims) -> Console:
    console = make_console(tmp_path, sims)
    console.write_config(expensify=FAST_EXPENSIFY)
    return console


def card_vouchers(sims) -> dict[str, list[dict[str, Any]]]:
    """IFS's vouchers whose reference starts with CARD, by reference."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in sim_control(sims.ifs_url, "vouchers"):
        if str(v.get("ReferenceNumber") or "").startswith("CARD"):
            out[v["ReferenceNumber"]].append(v)
    return dict(out)


def close(console: Console, *flags: str, env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    proc = console.run("close", "--period", "2026-11", "--json", *flags, env=env)
    data = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, data, proc.stderr


def amount(row: dict[str, Any], side: str) -> Decimal:
    return D(str(row.get(side) or 0))


def assert_balanced(voucher: dict[str, Any]) -> None:
    rows = voucher["VoucherRowArray"]
    assert sum(amount(r, "DebetAmount") for r in rows) == sum(
        amount(r, "CreditAmount") for r in rows
    )
    for cur in {r["CurrencyCode"] for r in rows}:
        mine = [r for r in rows if r["CurrencyCode"] == cur]
        assert sum(amount(r, "CurrencyDebetAmount") for r in mine) == sum(
            amount(r, "CurrencyCreditAmount") for r in mine
        )
    for r in rows:
        for side in ("DebetAmount", "CreditAmount", "CurrencyDebetAmount", "CurrencyCreditAmount"):
            assert amount(r, side) >= 0


def expense_net(voucher: dict[str, Any], clearing: str = "2940") -> Decimal:
    return sum(
        (
            amount(r, "DebetAmount") - amount(r, "CreditAmount")
            for r in voucher["VoucherRowArray"]
            if r["Account"] != clearing
        ),
        D(0),
    )


def test_dry_run_prints_the_voucher_and_posts_nothing(tmp_path, sims, demo_raw):
    console = fast_console(tmp_path, sims)
    expected, unmapped = _expected_card_total(demo_raw)
    proc = console.run("close", "--period", "2026-11", "--accrue-card-spend", env=NOV_30)
    assert proc.returncode in (0, 3), proc.stderr  # reports not synced: the tie-out may say 3
    plan = proc.stdout[proc.stdout.index("Card spend accrual, period 2026-11") :]
    assert "DRY RUN: nothing posted; add --confirm to post" in plan
    assert f"+ accrual {ACCRUAL}" in plan and "date 2026-11-30" in plan
    assert f"{expected:,.2f}" in plan and "2940" in plan
    assert f"reversed as {REVERSAL}" in plan
    assert card_vouchers(sims) == {}

    _, data, _err = close(console, "--accrue-card-spend", env=NOV_30)
    [voucher] = data["cardAccrual"]["accruals"]
    assert data["cardAccrual"]["confirmed"] is False and data["cardAccrual"]["results"] == []
    body = voucher["body"]
    assert body["ReferenceNumber"] == ACCRUAL and body["VoucherDate"] == "2026-11-30"
    assert (body["Company"], body["VoucherType"]) == ("10", "X")
    assert D(voucher["amount"]) == expected and expense_net(body) == expected
    assert_balanced(body)
    assert len(voucher["transactionIDs"]) == 30 - len(unmapped)
    assert not set(voucher["transactionIDs"]) & unmapped
    [state] = data["cardSpend"]["accruals"]
    assert state["state"] == "not-accrued" and state["description"] == "not accrued"
    assert card_vouchers(sims) == {}
    verify = console.run("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_confirmed_accrual_posts_one_balanced_voucher_to_the_cent_and_a_rerun_posts_nothing(
    tmp_path, sims, demo_raw
):
    console = fast_console(tmp_path, sims)
    expected, _unmapped = _expected_card_total(demo_raw)
    _, data, err = close(console, "--accrue-card-spend", "--confirm", env=NOV_30)
    assert data["cardAccrual"]["confirmed"] is True, err
    [result] = data["cardAccrual"]["results"]
    assert result["outcome"] == "posted", result
    [posted] = card_vouchers(sims)[ACCRUAL]
    assert posted["VoucherDate"] == "2026-11-30" and posted["AccountingPeriod"] == 11
    assert_balanced(posted)
    assert expense_net(posted) == expected

    # The rows are the close section's lines grouped by account, code parts and currency.
    lines = [ln for ln in data["cardSpend"]["lines"] if ln["accruable"]]
    want: dict[tuple[str, str, str], Decimal] = defaultdict(lambda: D(0))
    for ln in lines:
        want[(ln["account"], ln["costCentre"], ln["currency"])] += D(ln["accounting"])
    got: dict[tuple[str, str, str], Decimal] = defaultdict(lambda: D(0))
    for r in posted["VoucherRowArray"]:
        if r["Account"] != "2940":
            key = (r["Account"], r.get("CodeB") or "", r["CurrencyCode"])
            got[key] += amount(r, "DebetAmount") - amount(r, "CreditAmount")
    assert dict(got) == {k: v for k, v in want.items()}
    clearing = [r for r in posted["VoucherRowArray"] if r["Account"] == "2940"]
    assert {r["CurrencyCode"] for r in clearing} == {"USD", "EUR"}  # one per card currency
    assert sum(amount(r, "CreditAmount") - amount(r, "DebetAmount") for r in clearing) == expected
    eur = [r for r in posted["VoucherRowArray"] if r["CurrencyCode"] == "EUR"]
    assert eur and all(D(str(r["CurrencyRate"])) != 1 for r in eur)

    [state] = data["cardSpend"]["accruals"]
    label = f"10/X/{posted['AccountingYear']}/{posted['VoucherNo']}"
    assert state["state"] == "accrued" and state["voucher"] == label
    assert D(state["accrued"]) == expected and D(state["difference"]) == 0
    assert state["reversalDate"] == "2026-12-01"
    # Not reversed before the next period's first day.
    assert data["cardAccrual"]["reversals"] == []
    assert {"reference": REVERSAL, "reason": "due 2026-12-01"} in data["cardAccrual"]["waiting"]

    again = console.run(
        "close", "--period", "2026-11", "--accrue-card-spend", "--confirm", env=NOV_30
    )
    assert again.returncode in (0, 3), again.stderr
    assert f"accrued as voucher {label}" in again.stdout
    assert "Card spend accrual" in again.stdout and f"+ accrual {ACCRUAL}" not in again.stdout
    assert len(card_vouchers(sims)[ACCRUAL]) == 1
    verify = console.run("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    events = console.run("audit", "export").stdout
    assert '"card-accrual-planned"' in events and '"card-accrual-posted"' in events


def test_a_lost_answer_is_looked_up_and_recorded_never_posted_twice(tmp_path, sims):
    console = fast_console(tmp_path, sims)
    sim_control(
        sims.ifs_url,
        "faults",
        "POST",
        {
            "fault": "drop-after",
            "route": "VoucherEntryAssistantHandling",
            "method": "POST",
            "count": 1,
        },
    )
    _, data, err = close(console, "--accrue-card-spend", "--confirm", env=NOV_30)
    [result] = data["cardAccrual"]["results"]
    assert result["outcome"] == "reconciled", (result, err)
    [posted] = card_vouchers(sims)[ACCRUAL]
    assert result["voucher"] == f"10/X/{posted['AccountingYear']}/{posted['VoucherNo']}"
    assert data["cardSpend"]["accruals"][0]["state"] == "accrued"
    events = console.run("audit", "export").stdout
    assert '"unknown-outcome"' in events and '"reconciled"' in events

    _, data, err = close(console, "--accrue-card-spend", "--confirm", env=NOV_30)
    assert data["cardAccrual"]["results"] == [], err
    assert len(card_vouchers(sims)[ACCRUAL]) == 1


def test_a_crash_after_the_post_and_a_crash_before_it_each_end_with_one_voucher(tmp_path, sims):
    console = fast_console(tmp_path, sims)
    flags = ("close", "--period", "2026-11", "--accrue-card-spend", "--confirm")
    # Killed after IFS answered, before the outcome was recorded: the voucher is in IFS.
    proc = console.run(*flags, env={**NOV_30, "ML_CONSOLE_TEST_CRASH_AT": "card-post"})
    assert proc.returncode != 0
    assert len(card_vouchers(sims)[ACCRUAL]) == 1
    _, data, err = close(console, "--accrue-card-spend", "--confirm", env=NOV_30)
    assert data["cardAccrual"]["results"] == [], err  # reconciled at the start: nothing to post
    assert data["cardSpend"]["accruals"][0]["state"] == "accrued"
    assert len(card_vouchers(sims)[ACCRUAL]) == 1

    # Killed with the reversal's intent committed, before its POST: not in IFS, so the next
    # run records it as not posted, then posts it once.
    proc = console.run(*flags, env={**DEC_1, "ML_CONSOLE_TEST_CRASH_AT": "card-intent"})
    assert proc.returncode != 0
    assert REVERSAL not in card_vouchers(sims)
    _, data, err = close(console, "--reverse-card-spend", "--confirm", env=DEC_1)
    assert [r["outcome"] for r in data["cardAccrual"]["results"]] == ["posted"], err
    assert len(card_vouchers(sims)[REVERSAL]) == 1


def test_the_reversal_waits_for_the_next_period_then_posts_once_mirroring_the_accrual(
    tmp_path, sims
):
    console = fast_console(tmp_path, sims)
    _, data, err = close(console, "--accrue-card-spend", "--confirm", env=NOV_30)
    assert data["cardAccrual"]["results"][0]["outcome"] == "posted", err

    _, data, err = close(console, "--reverse-card-spend", "--confirm", env=NOV_30)
    assert data["cardAccrual"]["results"] == [] and REVERSAL not in card_vouchers(sims), err

    dry = console.run("close", "--period", "2026-11", "--reverse-card-spend", env=DEC_1)
    assert f"~ reversal {REVERSAL} of {ACCRUAL}" in dry.stdout
    assert REVERSAL not in card_vouchers(sims)

    _, data, err = close(console, "--reverse-card-spend", "--confirm", env=DEC_1)
    [result] = data["cardAccrual"]["results"]
    assert result["outcome"] == "posted" and result["referenceNumber"] == REVERSAL, err
    [accrual] = card_vouchers(sims)[ACCRUAL]
    [reversal] = card_vouchers(sims)[REVERSAL]
    assert reversal["VoucherDate"] == "2026-12-01" and reversal["AccountingPeriod"] == 12
    assert_balanced(reversal)
    pairs = zip(accrual["VoucherRowArray"], reversal["VoucherRowArray"], strict=True)
    for a, r in pairs:
        assert (a["Account"], a.get("CodeB"), a["CurrencyCode"]) == (
            r["Account"],
            r.get("CodeB"),
            r["CurrencyCode"],
        )
        assert amount(a, "DebetAmount") == amount(r, "CreditAmount")
        assert amount(a, "CurrencyCreditAmount") == amount(r, "CurrencyDebetAmount")
    [state] = data["cardSpend"]["accruals"]
    rev_label = f"10/X/{reversal['AccountingYear']}/{reversal['VoucherNo']}"
    assert state["state"] == "reversed" and state["reversalVoucher"] == rev_label
    assert f"reversed as voucher {rev_label} on 2026-12-01" in state["description"]

    # Any later run, either flag: nothing more.
    for flag in ("--reverse-card-spend", "--accrue-card-spend"):
        _, data, err = close(console, flag, "--confirm", env=DEC_1)
        assert data["cardAccrual"]["results"] == [], err
    assert len(card_vouchers(sims)[REVERSAL]) == 1 and len(card_vouchers(sims)[ACCRUAL]) == 1


def test_an_accrual_posted_late_is_reversed_in_the_same_run(tmp_path, sims):
    console = fast_console(tmp_path, sims)
    _, data, err = close(console, "--accrue-card-spend", "--confirm", env=DEC_1)
    outcomes = [(r["kind"], r["outcome"]) for r in data["cardAccrual"]["results"]]
    assert outcomes == [("accrual", "posted"), ("reversal", "posted")], err
    assert card_vouchers(sims)[ACCRUAL][0]["VoucherDate"] == "2026-11-30"
    assert card_vouchers(sims)[REVERSAL][0]["VoucherDate"] == "2026-12-01"


def test_spend_that_changes_after_the_accrual_is_shown_with_the_difference_never_reaccrued(
    tmp_path, sims, demo_raw
):
    console = fast_console(tmp_path, sims)
    expected, _unmapped = _expected_card_total(demo_raw)
    _, data, err = close(console, "--accrue-card-spend", "--confirm", env=NOV_30)
    assert data["cardAccrual"]["results"][0]["outcome"] == "posted", err
    # The operator maps the category that had no account: that expense becomes accruable.
    with Store(console.home / "state.sqlite3") as store:
        store.save_mapping_rule("category", "", UNMAPPED_CATEGORY, {"target": "6160"}, "ann")
    newly = [
        ln
        for ln in data["cardSpend"]["lines"]
        if ln["reason"] == f"unmapped-category:{UNMAPPED_CATEGORY}"
    ]
    [extra] = newly
    proc = console.run(
        "close", "--period", "2026-11", "--accrue-card-spend", "--confirm", env=NOV_30
    )
    assert proc.returncode in (0, 3)
    difference = D(extra["amount"])
    assert f"differs from the current figure by {difference:+,.2f} USD" in proc.stdout
    assert "left as posted" in proc.stdout and "not re-accrued" in proc.stderr
    assert len(card_vouchers(sims)[ACCRUAL]) == 1

    _, data, err = close(console, env=NOV_30)
    [state] = data["cardSpend"]["accruals"]
    assert D(state["accrued"]) == expected and D(state["current"]) == expected + difference
    assert D(state["difference"]) == difference
    assert '"card-accrual-differs"' in console.run("audit", "export").stdout


def test_the_accrual_state_is_in_the_text_csv_and_html_reports(tmp_path, sims):
    console = fast_console(tmp_path, sims)
    _, data, err = close(console, "--accrue-card-spend", "--confirm", env=NOV_30)
    label = data["cardAccrual"]["results"][0]["voucher"]
    assert label, err
    csv_path, html_path = tmp_path / "close.csv", tmp_path / "close.html"
    proc = console.run(
        "close", "--period", "2026-11", "--csv", str(csv_path), "--html", str(html_path)
    )
    section = proc.stdout[proc.stdout.index("Card spend not yet reported") :]
    assert f"Company 10 accrual {ACCRUAL}: accrued as voucher {label}" in section
    assert "reversal due 2026-12-01" in section
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    [row] = [r for r in rows if r["kind"] == "card-accrual"]
    assert row["company"] == "10" and row["vouchers"] == label
    assert row["disposition"] == "accrued" and D(row["difference"]) == 0
    page = html_path.read_text(encoding="utf-8")
    assert f"accrued as voucher {label}" in page


def test_confirm_alone_is_a_usage_error(tmp_path, sims):
    console = fast_console(tmp_path, sims)
    proc = console.run("close", "--period", "2026-11", "--confirm")
    assert proc.returncode == 2 and "--accrue-card-spend" in proc.stderr


async def test_close_screen_shows_where_the_accrual_stands(tmp_path, sims, monkeypatch):
    from textual.app import App

    from console.close import ClosePeriod
    from console.flows.card_accrual import run_card_accrual
    from console.flows.close import run_close
    from screens.close import CloseScreen
    from tests.close.helpers import engine_on
    from tests.close.test_close_screen import wait_for_tie

    monkeypatch.setenv("ML_CONSOLE_AS_OF", "2026-12-01")
    november = ClosePeriod(2026, 11)
    engine = engine_on(sims, tmp_path / "tui")

    class CloseApp(App[None]):
        def on_mount(self) -> None:
            self.push_screen(CloseScreen(engine, november))

    try:
        section = run_close(engine, november).card_spend
        assert section is not None
        done = run_card_accrual(engine, section, november, accrue=True, reverse=False, confirm=True)
        labels = {r.voucher.reference: r.label for r in done.results if r.outcome == "posted"}
        assert set(labels) == {ACCRUAL, REVERSAL}
        async with CloseApp().run_test(size=(150, 50)) as pilot:
            screen = await wait_for_tie(pilot)
            assert screen.error == "" and screen.tie is not None
            text = str(screen._card_spend_text(screen.tie))
            assert f"company 10 accrual: accrued as voucher {labels[ACCRUAL]}" in text
            assert f"reversed as voucher {labels[REVERSAL]} on 2026-12-01" in text
    finally:
        engine.close()


def test_the_sync_cycle_posts_a_due_card_reversal_once(tmp_path, sims):
    """A confirmed accrual is reversed on schedule by `--auto` too, not only by close."""
    console = fast_console(tmp_path, sims)
    _, data, err = close(console, "--accrue-card-spend", "--confirm", env=NOV_30)
    assert data["cardAccrual"]["results"][0]["outcome"] == "posted", err
    # Nothing approved after this day: the cycles below have no reports to post, only the
    # reversal to mind.
    console.write_config(expensify={**FAST_EXPENSIFY, "approved_after": "2026-12-20"})
    _code, summary, err = console.auto(env=NOV_30)
    assert summary["reversals"] == [] and REVERSAL not in card_vouchers(sims), err
    _code, summary, err = console.auto(env=DEC_1)
    assert [r["reference"] for r in summary["reversals"]] == [REVERSAL], err
    _code, summary, err = console.auto(env=DEC_1)
    assert summary["reversals"] == [], err
    assert len(card_vouchers(sims)[REVERSAL]) == 1
    assert console.run("audit", "verify").returncode == 0


async def test_close_screen_posts_the_card_accrual_after_showing_it(tmp_path, sims, monkeypatch):
    """`p` on the Close screen: the exact voucher first, nothing posted; `n` cancels, `y` posts
    once, and the screen then shows where the accrual stands."""
    from textual.app import App

    from console.close import ClosePeriod
    from screens.close import CloseScreen
    from screens.widgets import ConfirmModal
    from tests.close.helpers import engine_on
    from tests.close.test_close_screen import wait_for_tie

    monkeypatch.setenv("ML_CONSOLE_AS_OF", "2026-11-30")
    engine = engine_on(sims, tmp_path / "tui-post")

    class CloseApp(App[None]):
        def on_mount(self) -> None:
            self.push_screen(CloseScreen(engine, ClosePeriod(2026, 11)))

    async def settle(pilot: Any) -> None:
        for _ in range(4):
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()

    try:
        async with CloseApp().run_test(size=(150, 50)) as pilot:
            screen = await wait_for_tie(pilot)
            await pilot.press("p")
            await settle(pilot)
            modal = pilot.app.screen
            assert isinstance(modal, ConfirmModal)
            shown = str(modal.query_one("#confirm-body").render())
            assert ACCRUAL in shown and "2940" in shown
            await pilot.press("n")
            await settle(pilot)
            assert ACCRUAL not in card_vouchers(sims)  # cancelled: nothing posted
            await pilot.press("p")
            await settle(pilot)
            await pilot.press("y")
            await settle(pilot)
            screen = await wait_for_tie(pilot)
            [voucher] = card_vouchers(sims)[ACCRUAL]
            assert_balanced(voucher)
            label = f"10/X/{voucher['AccountingYear']}/{voucher['VoucherNo']}"
            text = str(screen._card_spend_text(screen.tie))
            assert f"company 10 accrual: accrued as voucher {label}" in text
            # Asked again: nothing left to post, and it says why.
            await pilot.press("p")
            await settle(pilot)
            assert not isinstance(pilot.app.screen, ConfirmModal)
            assert len(card_vouchers(sims)[ACCRUAL]) == 1
    finally:
        engine.close()
