"""The issue's "Done when" list, driving the real `ml-console` command against the simulators.

Test-only hook used here: ML_CONSOLE_TEST_CRASH_AFTER_POST=1 makes the console exit with 137
right after a voucher POST returns, before the outcome is committed (as a SIGKILL would).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal

import pytest

from console import clock, money
from console.sim.dataset import load_dataset
from console.sim.demo import (
    DEMO_ATTENTION,
    DEMO_EXPORT_LABEL,
    demo_attention,
    demo_dataset,
)
from console.store import PostingLock
from tests.conftest import SMALL_ATTENTION, SMALL_FETCHABLE, write_demo_world
from tests.e2e.conftest import SECRETS, make_console, sim_get, sim_post

LABEL = DEMO_EXPORT_LABEL


def vouchers(sims) -> list[dict]:
    import httpx

    return money.loads(httpx.get(sims.ifs_url + "/__sim/vouchers", timeout=30).content)


def labels(sims) -> dict[str, list[str]]:
    return {r["reportID"]: r["labels"] for r in sim_get(sims.expensify_url, "/__sim/reports")}


def requests_by(url: str) -> Counter:
    out: Counter = Counter()
    for row in sim_get(url, "/__sim/requests")["by_route"]:
        out[(row["method"], row["path"], row["status"])] += row["count"]
    return out


def dec(v) -> Decimal:
    return Decimal(str(v)) if v is not None else Decimal(0)


def assert_balanced(v: dict) -> None:
    rows = v["VoucherRowArray"]
    assert sum(dec(r.get("CurrencyDebetAmount")) for r in rows) == sum(
        dec(r.get("CurrencyCreditAmount")) for r in rows
    ), v["ReferenceNumber"]
    assert sum(dec(r.get("DebetAmount")) for r in rows) == sum(
        dec(r.get("CreditAmount")) for r in rows
    ), v["ReferenceNumber"]


def report_of(v: dict) -> str:
    return v["ReferenceNumber"].split(":")[1]


def test_demo_posts_once_holds_attention_and_leaves_clean_traces(tmp_path, sims, demo_raw):
    console = make_console(tmp_path, sims)
    code, first, err = console.auto()
    assert code == 3, err  # held reports need attention
    assert sorted(first["held_reports"], key=lambda h: h["reportID"]) == DEMO_ATTENTION
    fetchable = {
        r["reportID"]
        for r in demo_raw["expensify"]["reports"]
        if r["status"] in ("APPROVED", "REIMBURSED")
    }
    held = {h["reportID"] for h in DEMO_ATTENTION}
    assert first["fetched"] == len(fetchable)
    posted_ids = {v["reportID"] for v in first["vouchers"]}
    assert first["posted"] == len(posted_ids) == len(fetchable - held)
    in_ifs = vouchers(sims)
    assert Counter(report_of(v) for v in in_ifs) == Counter(posted_ids)  # each exactly once

    # Every voucher balances in both currencies; voucher date = approval date.
    approved = {r["reportID"]: (r["approved"] or "")[:10] for r in demo_raw["expensify"]["reports"]}
    for v in in_ifs:
        assert_balanced(v)
        assert str(v["VoucherDate"])[:10] == approved[report_of(v)]
        # HTML entities never reach IFS.
        for text in [v.get("Text", "")] + [r.get("Text", "") for r in v["VoucherRowArray"]]:
            assert "&amp;" not in text and "&#" not in text and "&lt;" not in text

    # The export label is on every posted report and on no held one.
    lab = labels(sims)
    assert all(LABEL in lab[rid] for rid in posted_ids)
    assert not any(LABEL in lab[rid] for rid in held)

    # A second run posts nothing.
    code, second, err = console.auto()
    assert code == 3, err
    assert second["posted"] == 0 and second["vouchers"] == []
    assert len(vouchers(sims)) == len(in_ifs)
    assert sorted(second["held_reports"], key=lambda h: h["reportID"]) == DEMO_ATTENTION

    # The audit trail verifies.
    proc = console.run("audit", "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "intact" in proc.stdout

    # `held --json` says how long each report has been held.
    proc = console.run("held", "--json")
    items = json.loads(proc.stdout)
    assert {i["reportID"] for i in items} == held
    assert all(i["held_since"] and i["held_for_s"] >= 0 for i in items)

    # Secrets appear nowhere under the home folder, in any output or log line.
    log_file = console.home / "logs" / "ml-console.log"
    assert log_file.exists() and log_file.stat().st_mode & 0o077 == 0
    for line in log_file.read_text().splitlines():
        json.loads(line)  # structured
    for path in console.home.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in blob, path
    for text in console.outputs:
        for secret in SECRETS:
            assert secret not in text


def test_fixing_the_missing_cost_centre_posts_the_held_report_next_cycle(small_console, small_sims):
    code, first, _ = small_console.auto()
    assert code == 3
    assert first["held_reports"] == SMALL_ATTENTION
    sim_post(
        small_sims.ifs_url,
        "/__sim/code-part-values",
        {
            "Company": "10",
            "CodePart": "B",
            "CodePartValue": "CC-410",
            "Description": "New Lab",
            "ValidFrom": "2020-01-01",
            "ValidUntil": "2099-12-31",
        },
    )
    code, second, err = small_console.auto()
    assert code == 0, err
    assert second["vouchers"] == [
        {"reportID": "90000004", "voucher": second["vouchers"][0]["voucher"]}
    ]
    assert second["held"] == 0 and second["held_reports"] == []
    assert LABEL in labels(small_sims)["90000004"]
    assert Counter(report_of(v) for v in vouchers(small_sims)) == Counter(SMALL_FETCHABLE)


def test_eur_report_in_usd_company_is_converted_at_the_ifs_rate(small_console, small_sims):
    small_console.auto()
    (v,) = [v for v in vouchers(small_sims) if report_of(v) == "90000003"]
    rate = Decimal("1.0842")  # the small world's EUR rate valid on the approval date
    assert_balanced(v)
    assert str(v["VoucherDate"])[:10] == "2026-11-10"
    for row in v["VoucherRowArray"]:
        assert row["CurrencyCode"] == "EUR"
        assert dec(row["CurrencyRate"]) == rate
    debit_rows = [r for r in v["VoucherRowArray"] if r.get("CurrencyDebetAmount")]
    for r in debit_rows:
        expected = (dec(r["CurrencyDebetAmount"]) * rate).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP
        )
        assert dec(r["DebetAmount"]) == expected


def test_dry_run_changes_nothing_in_either_system(small_console, small_sims):
    before_labels = labels(small_sims)
    proc = small_console.run("--auto", "--dry-run")
    assert proc.returncode == 3, proc.stderr
    assert "90000001" in proc.stdout and "CC-410" in proc.stdout  # the plan, with the hold
    proc = small_console.run("--auto", "--dry-run", "--json")
    summary = json.loads(proc.stdout)  # JSON alone on stdout
    assert summary["dry_run"] is True and summary["posted"] == 0
    assert vouchers(small_sims) == []
    assert labels(small_sims) == before_labels
    posts = [
        k
        for k in requests_by(small_sims.ifs_url)
        if k[0] == "POST" and "VoucherEntryAssistantHandling" in k[1]
    ]
    assert posts == []  # no voucher batch, no temporary voucher
    assert sim_get(small_sims.ifs_url, "/__sim/temp-vouchers") == []
    db = sqlite3.connect(small_console.home / "state.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM cursor").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM audit_events WHERE type='dry-run'").fetchone()[0] == 2
    db.close()
    # ...and the real run afterwards posts everything postable.
    _code, summary, _ = small_console.auto()
    assert summary["posted"] == 3


def test_audit_verify_names_the_tampered_event(small_console):
    small_console.auto()
    assert small_console.run("audit", "verify").returncode == 0
    db = sqlite3.connect(small_console.home / "state.sqlite3")
    seq = db.execute("SELECT seq FROM audit_events WHERE type='posted' ORDER BY seq").fetchone()[0]
    db.execute("UPDATE audit_events SET summary = 'posted nothing' WHERE seq = ?", (seq,))
    db.commit()
    db.close()
    proc = small_console.run("audit", "verify")
    assert proc.returncode == 3
    assert f"event {seq}" in proc.stdout
    proc = small_console.run("audit", "export", "--format", "csv")
    assert proc.returncode == 0 and proc.stdout.startswith("seq,")


def test_dropped_connection_after_commit_posts_nothing_twice(small_console, small_sims):
    sim_post(
        small_sims.ifs_url,
        "/__sim/faults",
        {
            "route": r"VoucherEntryAssistantHandling\.svc/\$batch",
            "method": "POST",
            "fault": "drop-after",
            "count": 2,
        },
    )
    code, summary, err = small_console.auto()
    assert code == 3, err
    in_ifs = Counter(report_of(v) for v in vouchers(small_sims))
    assert in_ifs == Counter(["90000001", "90000002", "90000003"])  # each once
    assert summary["posted"] == 3
    assert sim_get(small_sims.ifs_url, "/__sim/faults")[0]["fired"] == 2
    code, again, _ = small_console.auto()
    assert again["posted"] == 0
    assert Counter(report_of(v) for v in vouchers(small_sims)) == in_ifs
    assert all(LABEL in labels(small_sims)[r] for r in in_ifs)


def test_crash_between_post_and_commit_is_recovered_without_duplicate(small_console, small_sims):
    proc = small_console.run("--auto", "--json", env={"ML_CONSOLE_TEST_CRASH_AFTER_POST": "1"})
    assert proc.returncode == 137
    assert len(vouchers(small_sims)) == 1  # posted in IFS, not recorded locally
    assert not any(LABEL in v for v in labels(small_sims).values())
    code, _summary, err = small_console.auto()
    assert code == 3, err
    assert Counter(report_of(v) for v in vouchers(small_sims)) == Counter(
        ["90000001", "90000002", "90000003"]
    )
    db = sqlite3.connect(small_console.home / "state.sqlite3")
    assert (
        db.execute("SELECT COUNT(*) FROM audit_events WHERE type='reconciled'").fetchone()[0] == 1
    )
    db.close()
    assert all(LABEL in labels(small_sims)[r] for r in ("90000001", "90000002", "90000003"))


def test_request_counts_grow_with_reports_not_lines(tmp_path, small_sims, sims):
    small = make_console(tmp_path / "small", small_sims)
    _, s, _ = small.auto()
    demo = make_console(tmp_path / "demo", sims)
    _, d, _ = demo.auto()
    # Expensify: a small constant per cycle (policy read, export, download, label).
    assert s["requests"]["expensify"] == d["requests"]["expensify"] <= 5
    # IFS: the fixed reads plus one POST per voucher, whatever the number of lines.
    fixed = s["requests"]["ifs"] - s["posted"]
    assert d["requests"]["ifs"] - d["posted"] == fixed
    # A second cycle: no posts, constant requests.
    _, s2, _ = small.auto()
    assert s2["requests"]["expensify"] <= 5


@pytest.mark.slow
def test_real_rate_limits_two_back_to_back_runs_see_no_429(tmp_path, small_dataset):
    from console.sim.server import SimServers

    with SimServers(small_dataset) as real:  # real limits: Expensify 5/10s 20/60s, IFS 1000/min
        console = make_console(tmp_path, real)
        for _ in range(2):
            code, _summary, err = console.auto()
            assert code == 3, err
        statuses = [k[2] for k in requests_by(real.expensify_url)]
        statuses += [k[2] for k in requests_by(real.ifs_url)]
        assert 429 not in statuses


def test_bad_config_key_is_named_exit_2(small_console):
    cfg = small_console.home / "config.toml"
    cfg.write_text(cfg.read_text().replace("\n[posting]\n", "\n[posting]\nvoucher_typo = 1\n", 1))
    proc = small_console.run("--auto", "--json")
    assert proc.returncode == 2
    assert "voucher_typo" in proc.stderr and proc.stdout == ""


def test_missing_credential_exit_2(small_console):
    assert small_console.run("credentials", "delete", "ifs").returncode == 0
    proc = small_console.run("--auto", "--json")
    assert proc.returncode == 2
    assert "credentials set ifs" in proc.stderr


def test_revoked_key_exit_4_without_retry_loop(small_console, small_sims):
    small_console.set_credentials(expensify_secret="revoked-secret-value")
    proc = small_console.run("--auto", "--json")
    assert proc.returncode == 4, proc.stderr
    sent = sum(n for (m, p, _s), n in requests_by(small_sims.expensify_url).items() if m == "POST")
    assert sent <= 3  # the first request, and one re-read of the keyring: no loop
    assert "revoked-secret-value" not in proc.stderr + proc.stdout


def test_unreachable_service_exit_5_after_bounded_retries(small_console):
    import socket

    # Bound but never listening: connections are refused, and no parallel test can take the
    # port while this socket holds it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        small_console.write_config(ifs={"url": f"http://127.0.0.1:{port}"})
        proc = small_console.run("--auto", "--json", timeout=180)
    assert proc.returncode == 5, proc.stderr
    assert "unreachable" in proc.stderr


def test_malformed_report_is_held_while_the_rest_post(small_console, small_sims):
    sim_post(
        small_sims.expensify_url,
        "/__sim/reports",
        {
            "reportID": "90000009",
            "policyID": "POL-US",
            "reportName": "No currency",
            "accountEmail": "ana.lee@small.example",
            "currency": "",
            "status": "APPROVED",
            "created": "2026-11-03 08:00:00",
            "submitted": "2026-11-03 18:00:00",
            "approved": "2026-11-04 09:00:00",
            "transactionList": [
                {
                    "transactionID": "7000000000000000099",
                    "merchant": "X",
                    "amount": 100,
                    "category": "Meals",
                    "categoryGlCode": "6130",
                    "tag": "Advisory:Apollo",
                    "created": "2026-11-03",
                }
            ],
        },
    )
    code, summary, _ = small_console.auto()
    assert code == 3
    reasons = {h["reportID"]: h["reason"] for h in summary["held_reports"]}
    assert reasons["90000009"].startswith("malformed:")
    assert summary["posted"] == 3


def test_second_run_waits_then_exits_6_naming_the_lock_holder(small_console):
    lock = PostingLock(str(small_console.home / "state.sqlite3") + ".lock", "operator-ann")
    lock.acquire()
    try:
        proc = small_console.run("--auto", "--json")
    finally:
        lock.release()
    assert proc.returncode == 6
    assert "operator-ann" in proc.stderr


def _demo_auto_holds_what_the_world_needs(tmp_path, dataset, *data_args: str) -> None:
    """`ml-console demo --auto --json` (simulators on their real limits) holds exactly the
    world's attention cases and posts the rest."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "console.commands.main", "demo", "--auto", "--json", "--keep",
         str(tmp_path / "demo"), *data_args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    summary = json.loads(proc.stdout)
    # The demo closes the month before the suite's day (tests/conftest.py: SUITE_AS_OF).
    closing = clock.previous_period(clock.today())
    assert summary["as_of"] == clock.today().isoformat()
    # Besides the dataset's attention cases, a report whose every line is zero is held
    # (zero-amount:{lines}, console/report_checks.py): the generator makes one now and then.
    zero = [
        {"reportID": r.reportID, "reason": f"zero-amount:{len(r.transactionList)}"}
        for r in dataset.expensify.reports
        if r.status in ("APPROVED", "REIMBURSED")
        and all(line.amount == 0 for line in r.transactionList)
    ]
    expected = sorted(demo_attention(closing) + zero, key=lambda h: h["reportID"])
    assert sorted(summary["held_reports"], key=lambda h: h["reportID"]) == expected
    assert summary["posted"] > 0


def test_demo_command_runs_one_headless_cycle(tmp_path):
    # A smaller demo world (the bundled one's people, policies and attention cases, 60
    # reports of the closing month): ~120 vouchers, within IFS's limit of a minute.
    world = write_demo_world(tmp_path, 60)
    _demo_auto_holds_what_the_world_needs(tmp_path, load_dataset(world), "--data", str(world))


@pytest.mark.chaos
def test_demo_command_runs_one_headless_cycle_on_the_bundled_world(tmp_path):
    # ~1,160 vouchers on the suite's day: the IFS client paces itself for about a minute.
    _demo_auto_holds_what_the_world_needs(tmp_path, demo_dataset())


def test_every_loop_runs_cycles_and_stops_cleanly_on_sigterm(small_console):
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "console.commands.main", "--home", str(small_console.home), "--auto",
         "--json", "--every", "1s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=small_console.env,
    )  # fmt: skip
    try:
        lines = []
        deadline = time.monotonic() + 60
        while len(lines) < 2 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line:
                lines.append(json.loads(line))
        assert len(lines) == 2
        assert lines[0]["posted"] == 3 and lines[1]["posted"] == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("zone", "day", "period"),
    [
        ("UTC", "2026-11-30", "2026-11"),
        ("Europe/Berlin", "2026-12-01", "2026-12"),  # east of UTC: already the next day there
        ("America/New_York", "2026-11-30", "2026-11"),
    ],
)
def test_the_workspace_time_zone_decides_the_approval_day(
    small_console, small_sims, zone, day, period
):
    """Expensify's `approved` (UTC) is read in `expensify.timezone`: a report approved at
    23:30 UTC on a month's last day is in the next month's period in Berlin. The dry run
    shows the time and zone for a report approved on its period's first or last day."""
    sim_post(
        small_sims.expensify_url,
        "/__sim/reports",
        {
            "reportID": "90000077",
            "policyID": "POL-US",
            "reportName": "Late approval",
            "accountEmail": "ana.lee@small.example",
            "currency": "USD",
            "status": "APPROVED",
            "created": "2026-11-29 08:00:00",
            "submitted": "2026-11-30 18:00:00",
            "approved": "2026-11-30 23:30:00",
            "transactionList": [
                {
                    "transactionID": "7000000000000000777",
                    "merchant": "Night train",
                    "amount": 12300,
                    "currency": "USD",
                    "convertedAmount": 12300,
                    "category": "Airfare",
                    "categoryGlCode": "6110",
                    "tag": "Advisory:Apollo",
                    "created": "2026-11-29",
                    "reimbursable": True,
                }
            ],
        },
    )
    small_console.write_config(expensify={"timezone": zone})
    proc = small_console.run("--auto", "--dry-run", "--json")
    assert proc.returncode == 3, proc.stderr
    [voucher] = [
        v for v in json.loads(proc.stdout)["plan"]["vouchers"] if v["reportID"] == "90000077"
    ]
    assert voucher["body"]["VoucherDate"] == day
    assert (
        f"{voucher['body']['AccountingYear']}-{voucher['body']['AccountingPeriod']:02d}" == period
    )
    assert zone in voucher["approval"]
    if zone != "UTC":
        assert "(Expensify: 2026-11-30 23:30:00 UTC)" in voucher["approval"]
    text = small_console.run("--auto", "--dry-run").stdout
    assert f"approval {voucher['approval']}" in text
    code, posted, err = small_console.auto()
    assert code == 3 and "90000077" in {v["reportID"] for v in posted["vouchers"]}, err
    [in_ifs] = [
        v
        for v in sim_get(small_sims.ifs_url, "/__sim/vouchers")
        if v["ReferenceNumber"].startswith("EXP:90000077:")
    ]
    assert in_ifs["VoucherDate"] == day


@pytest.mark.parametrize(
    ("approval_date", "voucher_date", "day"),
    [
        ("last-approver", "approval", "2026-12-01"),
        ("first-approver", "approval", "2026-11-27"),
        ("approved", "approval", "2026-11-28"),
        ("last-approver", "submission", "2026-11-26"),
        ("last-approver", "last-expense", "2026-11-24"),
    ],
)
def test_with_several_approval_levels_the_chosen_approver_dates_the_accrual(
    small_console, small_sims, approval_date, voucher_date, day
):
    """Expensify exports each approval level with its date; which one `approved` holds is
    undocumented. `expensify.approval_date` chooses (the last approver by default), and
    `posting.voucher_date` may date vouchers by submission or last expense instead."""
    sim_post(
        small_sims.expensify_url,
        "/__sim/reports",
        {
            "reportID": "90000078",
            "policyID": "POL-US",
            "reportName": "Two levels",
            "accountEmail": "ana.lee@small.example",
            "currency": "USD",
            "status": "APPROVED",
            "created": "2026-11-25 08:00:00",
            "submitted": "2026-11-26 18:00:00",
            "approved": "2026-11-28 12:00:00",
            "approvers": [
                {"email": "lead@small.example", "date": "2026-11-27 09:15:00"},
                {"email": "cfo@small.example", "date": "2026-12-01 08:30:00"},
            ],
            "transactionList": [
                {
                    "transactionID": "7000000000000000788",
                    "merchant": "Conference",
                    "amount": 45000,
                    "currency": "USD",
                    "convertedAmount": 45000,
                    "category": "Airfare",
                    "categoryGlCode": "6110",
                    "tag": "Advisory:Apollo",
                    "created": "2026-11-24",
                    "reimbursable": True,
                }
            ],
        },
    )
    small_console.write_config(
        expensify={"approval_date": approval_date}, posting={"voucher_date": voucher_date}
    )
    proc = small_console.run("--auto", "--dry-run", "--json")
    assert proc.returncode == 3, proc.stderr
    plan = json.loads(proc.stdout)["plan"]
    [voucher] = [v for v in plan["vouchers"] if v["reportID"] == "90000078"]
    assert voucher["body"]["VoucherDate"] == day
