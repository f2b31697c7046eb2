"""The audit chain: append, verify, and name the first tampered event."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest

from console.audit import AuditLog, Event, digest, redact
from console.store import AuditFilter, Store


@pytest.fixture
def log(tmp_path):
    store = Store(tmp_path / "state.sqlite3")
    log = AuditLog(store, actor="ann")
    log.record_many(
        Event(type="fetched", summary=f"report {i}", report_id=str(i), data={"n": i})
        for i in range(1, 11)
    )
    yield log
    store.close()


def _sql(log: AuditLog, statement: str, *params) -> None:
    conn = sqlite3.connect(log.store.path)
    conn.execute(statement, params)
    conn.commit()
    conn.close()


def test_intact_chain_verifies(log):
    result = log.verify()
    assert result.ok and result.checked == 10


def test_edited_event_is_named(log):
    _sql(log, "UPDATE audit_events SET summary = 'nothing to see' WHERE seq = 4")
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 4 and "edited" in result.problem


def test_deleted_event_is_named(log):
    _sql(log, "DELETE FROM audit_events WHERE seq = 6")
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 6


def test_deleted_newest_events_are_detected(log):
    _sql(log, "DELETE FROM audit_events WHERE seq >= 9")
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 9


def test_reordered_events_are_named(log):
    # swap the contents of 3 and 5, hashes included: each still hashes to itself
    conn = sqlite3.connect(log.store.path)
    rows = {r[0]: r[1:] for r in conn.execute("SELECT * FROM audit_events WHERE seq IN (3, 5)")}
    cols = [d[1] for d in conn.execute("PRAGMA table_info(audit_events)")][1:]
    sets = ", ".join(f"{c} = ?" for c in cols)
    conn.execute(f"UPDATE audit_events SET {sets} WHERE seq = 3", rows[5])
    conn.execute(f"UPDATE audit_events SET {sets} WHERE seq = 5", rows[3])
    conn.commit()
    conn.close()
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 3


def test_secrets_are_redacted_before_digest_and_storage(log):
    job = {"type": "file", "credentials": {"partnerUserID": "u", "partnerUserSecret": "s3cr3t"}}
    same_but_other_secret = {
        "type": "file",
        "credentials": {"partnerUserID": "u", "partnerUserSecret": "other"},
    }
    assert digest(json.dumps(job)) == digest(same_but_other_secret)
    row = log.record("fetched", data={"job": job})
    assert "s3cr3t" not in json.dumps(row.data)
    assert redact(job)["credentials"]["partnerUserSecret"] == "[redacted]"


def test_export_jsonl_and_csv_and_filtered_pages(log):
    out = io.StringIO()
    assert log.export(out, "jsonl", report_id="3") == 1
    assert json.loads(out.getvalue())["report_id"] == "3"
    out = io.StringIO()
    assert log.export(out, "csv") == 10
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["seq"] == "1" and rows[-1]["type"] == "fetched"
    page = log.store.audit_page(AuditFilter(), limit=4)
    assert [e.seq for e in page] == [10, 9, 8, 7]
    more = log.store.audit_page(AuditFilter(), before_seq=page[-1].seq, limit=4)
    assert [e.seq for e in more] == [6, 5, 4, 3]
    assert log.store.audit_count(AuditFilter(text="report 1")) == 2  # 1 and 10


def test_filter_by_transaction_id_matches_that_transaction_only(log):
    log.record("fetched", report_id="R1", transaction_ids=["T1", "T2"])
    log.record("fetched", report_id="R2", transaction_ids=["T12"])
    log.record("posted", report_id="R1", voucher="42", transaction_ids=["T1"])
    hits = log.store.audit_page(AuditFilter(transaction_id="T1"))
    assert [(r.report_id, r.type) for r in hits] == [("R1", "posted"), ("R1", "fetched")]
    # Free text finds a transaction too, and `%`/`_` are literal, not wildcards.
    assert {r.report_id for r in log.store.audit_page(AuditFilter(text="T12"))} == {"R2"}
    assert log.store.audit_page(AuditFilter(text="T_2")) == []
