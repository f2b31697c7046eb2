"""The state file: schema, permissions, batching, read models, the posting lock."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys

import pytest

from console.errors import LockHeld
from console.store import (
    _MIGRATIONS,
    SCHEMA_VERSION,
    EvaluationRecord,
    HoldRecord,
    LineRecord,
    PostingLock,
    ReportRecord,
    Store,
)


def _report(
    rid: str, *, h: str = "h1", total: int = 1000, employee: str = "ann@x.com"
) -> ReportRecord:
    return ReportRecord(
        report_id=rid,
        policy_id="POL-US",
        employee=employee,
        report_name=f"Trip {rid}",
        approved="2026-11-03 14:22:10",
        currency="USD",
        total_minor=total,
        content_hash=h,
        raw={"reportID": rid},
        lines=(LineRecord(transaction_id=f"T{rid}", amount_minor=total, currency="USD"),),
    )


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "state" / "state.sqlite3")
    yield s
    s.close()


def test_state_file_is_private_and_migrated(tmp_path, store):
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700
    assert store.schema_version == SCHEMA_VERSION
    # reopening does not re-run migrations
    again = Store(store.path)
    assert again.schema_version == SCHEMA_VERSION
    again.close()


def test_upsert_classifies_new_changed_unchanged_and_keeps_posted(store):
    r = store.upsert_reports([_report("1"), _report("2")])
    assert r.new == ["1", "2"]
    r = store.upsert_reports([_report("1"), _report("2", h="h2")])
    assert r.unchanged == ["1"] and r.changed == ["2"]
    store.set_status("1", "posted")
    r = store.upsert_reports([_report("1", h="other")])
    assert r.changed_after_post == ["1"]
    assert store.report_status("1") == "posted"


def test_a_version_one_hash_that_still_matches_is_upgraded_not_a_change(store):
    """A state written before hash version 2: its reports are not all changes after posting."""
    from dataclasses import replace

    store.upsert_reports([_report("1", h="a" * 64), _report("2", h="b" * 64)])
    store.set_status("1", "posted")
    fetched = {
        rid: replace(_report(rid, h=f"v2:{rid}"), legacy_hash=old, raw={"reportID": rid, "n": 2})
        for rid, old in (("1", "a" * 64), ("2", "b" * 64))
    }
    r = store.upsert_reports(fetched.values())
    assert r.unchanged == ["1", "2"] and not r.changed and not r.changed_after_post
    assert store.content_hash("1") == "v2:1" and store.report_status("1") == "posted"
    # The posted report keeps what it was posted from; the pending one takes the new content.
    assert store.report_raw("1") == {"reportID": "1"}
    assert store.report_raw("2") == {"reportID": "2", "n": 2}
    # From here on version 2 is the baseline: a change version 1 did not see is a change.
    r = store.upsert_reports([replace(fetched["1"], content_hash="v2:other")])
    assert r.changed_after_post == ["1"]


def test_ten_thousand_reports_upsert_in_one_batch_and_page(store):
    # Speed is measured by `make bench` (cost growth), not timed here.
    store.upsert_reports(_report(str(i)) for i in range(10_000))
    assert store.count_reports() == 10_000
    page = store.pending_reports(offset=100, limit=50)
    assert len(page) == 50


def test_filters_and_pages_in_sql(store):
    store.upsert_reports(
        [_report("1", employee="ann@x.com"), _report("2", employee="bob@x.com"), _report("3")]
    )
    assert [r.report_id for r in store.search_reports("bob")] == ["2"]
    assert store.count_reports(status="pending") == 3
    assert store.count_search_reports("100%_") == 0  # LIKE wildcards are literal


def test_hold_queue_keeps_first_held_and_groups(store):
    clock = iter(
        [
            "2026-11-01T00:00:00Z",
            "2026-11-02T00:00:00Z",
            "2026-11-03T00:00:00Z",
            "2026-11-04T00:00:00Z",
        ]
    )
    store.now = lambda: next(clock)  # type: ignore[method-assign]
    store.upsert_reports([_report("1", total=500), _report("2", total=700)])
    code = "missing-dimension:B:CC-999"
    ev = [
        EvaluationRecord("1", "10", (HoldRecord(code, "Cost centre CC-999 does not exist"),)),
        EvaluationRecord("2", "10", (HoldRecord(code, "Cost centre CC-999 does not exist"),)),
    ]
    out = store.apply_evaluations(ev)
    assert sorted(out["newly_held"]) == ["1", "2"]
    store.apply_evaluations(ev[:1])
    (group,) = store.hold_groups()
    assert group.code == code and group.value == "B:CC-999" and group.company == "10"
    assert group.report_ids == ["1", "2"]
    assert group.total_by_currency == {"USD": 1200}
    assert group.oldest_first_held == "2026-11-02T00:00:00Z"
    out = store.apply_evaluations([EvaluationRecord("1", "10")])
    assert out["released"] == ["1"]
    assert store.report_status("1") == "ready"
    assert [h.report_id for h in store.holds()] == ["2"]


def test_ledger_intent_then_outcome(store):
    store.upsert_reports([_report("1")])
    pid = store.ledger_intent(
        kind="accrual", reference="EXP:1:0000abcd", company="10", body_digest="d" * 64,
        report_id="1", version="0000abcd",
    )  # fmt: skip
    assert [p.id for p in store.ledger_entries(outcomes=("intent", "unknown"))] == [pid]
    assert store.report_status("1") == "posting"
    store.ledger_outcome(pid, "posted", voucher_no="42")
    assert store.ledger_entries(outcomes=("intent", "unknown")) == []
    assert store.report_status("1") == "posted"
    assert [p.report_id for p in store.ledger_entries(unlabelled=True)] == ["1"]
    store.mark_labelled(["1"])
    assert store.ledger_entries(unlabelled=True) == []
    # A reversal's outcome leaves its report's status alone.
    rid = store.ledger_intent(
        kind="reversal", reference="REV:1:0000abcd", company="10", body_digest="e" * 64,
        report_id="1", accrual_reference="EXP:1:0000abcd", groups=("reimbursable",),
    )  # fmt: skip
    store.ledger_outcome(rid, "failed", error="IFS: period closed")
    assert store.report_status("1") == "posted"
    assert store.posted_accrual("1").voucher_no == "42"
    with pytest.raises(ValueError, match="unknown voucher kind"):
        store.ledger_intent(kind="refund", reference="X", company="10", body_digest="")


def test_a_version_3_state_file_moves_its_three_tables_into_the_ledger(tmp_path):
    """Homes written before the one ledger keep every intent and outcome, in order."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    for statements in _MIGRATIONS[:3]:
        for statement in statements:
            db.execute(statement)
    db.execute("PRAGMA user_version = 3")
    db.execute(
        "INSERT INTO postings (report_id, reference, version, company, body_digest, intent_at,"
        " outcome, voucher_no, posted_at, labelled_at) VALUES ('R:1', 'EXP:R:1:0000abcd',"
        " '0000abcd', '10', 'a', '2026-11-03T10:00:00Z', 'posted', '10/X/2026/1',"
        " '2026-11-03T10:00:01Z', '2026-11-03T10:00:02Z')"
    )
    db.execute(
        "INSERT INTO reversals (report_id, accrual_reference, reference, groups, cause, company,"
        " voucher_date, body_digest, intent_at, outcome) VALUES ('R:1', 'EXP:R:1:0000abcd',"
        " 'REV:R:1:0000abcd', 'reimbursable', 'next-period-start', '10', '2026-12-01', 'b',"
        " '2026-12-01T08:00:00Z', 'unknown')"
    )
    db.execute(
        "INSERT INTO card_accruals (period, company, kind, reference, voucher_date, amount,"
        " currency, body_digest, intent_at, outcome, voucher_no) VALUES ('2026-11', '10',"
        " 'accrual', 'CARD:2026-11:10', '2026-11-30', '12.50', 'USD', 'c',"
        " '2026-11-30T18:00:00Z', 'posted', '10/X/2026/2')"
    )
    db.commit()
    db.close()
    store = Store(path)
    try:
        assert store.schema_version == SCHEMA_VERSION
        entries = store.ledger_entries()
        assert [(e.kind, e.reference, e.outcome) for e in entries] == [
            ("accrual", "EXP:R:1:0000abcd", "posted"),
            ("card-accrual", "CARD:2026-11:10", "posted"),
            ("reversal", "REV:R:1:0000abcd", "unknown"),
        ]
        accrual, card, reversal = entries
        assert accrual.labelled_at == "2026-11-03T10:00:02Z" and accrual.version == "0000abcd"
        assert card.period == "2026-11" and card.amount == "12.50"
        assert reversal.groups == "reimbursable" and reversal.accrual_reference.startswith("EXP:")
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert "ledger" in tables and not tables & {"postings", "reversals", "card_accruals"}


def test_exclusion_refused_for_posted(store):
    store.upsert_reports([_report("1"), _report("2")])
    store.set_status("2", "posted")
    assert store.exclude("1", "duplicate of 7", "ann") is True
    assert store.exclude("2", "late", "ann") is False
    assert store.report_status("1") == "excluded"
    assert store.exclusion("1").reason == "duplicate of 7"


def test_request_window_round_trip(store):
    store.save_window("partner", [1.5, 2.25])
    assert store.load_window("partner") == [1.5, 2.25]
    assert store.load_window("other") == []


def test_transaction_rolls_back_everything(store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.upsert_reports([_report("1")])
            raise RuntimeError("boom")
    assert store.count_reports() == 0


def test_the_error_that_ended_a_transaction_is_the_one_reported(store):
    """SQLite rolls back on its own after some errors (a full disk, an I/O error); the
    console's ROLLBACK then finds no transaction. The operator must see the first error."""
    with pytest.raises(RuntimeError, match="disk full"):
        with store.transaction():
            store.upsert_reports([_report("1")])
            store._conn.execute("ROLLBACK")  # what SQLite did by itself
            raise RuntimeError("disk full")
    assert store.count_reports() == 0


def test_posting_lock_names_the_holder_and_dies_with_it(tmp_path):
    lock_path = tmp_path / "state.sqlite3.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from console.store import PostingLock\n"
            f"l = PostingLock({str(lock_path)!r}, 'cron-job'); l.acquire()\n"
            "print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeld) as err:
            PostingLock(lock_path, "me", wait_s=0.2).acquire()
        assert f"pid {holder.pid}" in str(err.value) and "cron-job" in str(err.value)
        holder.kill()  # SIGKILL: the OS releases the flock
        holder.wait()
        with PostingLock(lock_path, "me", wait_s=2) as lock:
            assert lock.held
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
