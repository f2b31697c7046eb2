"""The audit chain's signed checkpoints: a rewritten chain (every hash and the head
recomputed) no longer verifies, deleted checkpoints leave the tail unproven, and the
signing key never leaves the keyring."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from keyrings.alt.file import PlaintextKeyring

from console import audit as audit_module
from console.audit import AuditLog, Event
from console.audit_keys import KEY_ENTRY, AuditKeys
from console.evidence_check import chain_hash, fingerprint
from console.secrets import KEYRING_SERVICE
from console.store import Store


def throwaway_keyring(tmp_path: Path) -> PlaintextKeyring:
    kr = PlaintextKeyring()
    kr.file_path = str(tmp_path / "keyring.cfg")
    return kr


@pytest.fixture
def keyring_backend(tmp_path):
    return throwaway_keyring(tmp_path)


@pytest.fixture
def log(tmp_path, keyring_backend, monkeypatch):
    """32 events with a checkpoint after every 5th, and one at the end (seal)."""
    monkeypatch.setattr(audit_module, "CHECKPOINT_EVERY", 5)
    store = Store(tmp_path / "state.sqlite3")
    log = AuditLog(store, actor="ann", keys=AuditKeys(keyring_backend))
    log.record_many(
        Event(type="fetched", summary=f"report {i}", report_id=str(i), data={"n": i})
        for i in range(1, 27)
    )
    log.seal()
    yield log
    store.close()


def _types(log: AuditLog) -> dict[int, str]:
    return {r["seq"]: r["type"] for r in log.store.iter_audit_rows()}


def rewrite(path: Path, seq: int, summary: str) -> None:
    """What an adversary with write access to the file does: edit one event, then recompute
    every hash after it and the stored chain head, so the plain hash chain holds again."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    conn.execute("UPDATE audit_events SET summary = ? WHERE seq = ?", (summary, seq))
    _rechain(conn)
    conn.commit()
    conn.close()


def _rechain(conn: sqlite3.Connection) -> None:
    """Number the events 1, 2, ... again (closing any gap) and recompute every hash."""
    prev = "0" * 64
    last = 0
    for new_seq, row in enumerate(
        conn.execute("SELECT * FROM audit_events ORDER BY seq").fetchall(), 1
    ):
        d = dict(row)
        old_seq = d["seq"]
        d["seq"] = new_seq
        d["prev_hash"] = prev
        d["hash"] = chain_hash(prev, d)
        conn.execute(
            "UPDATE audit_events SET seq = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (new_seq, d["prev_hash"], d["hash"], old_seq),
        )
        prev, last = d["hash"], new_seq
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('audit_head', ?)", (f"{last}:{prev}",)
    )


def test_checkpoints_every_n_events_and_at_the_end(log):
    types = _types(log)
    checkpoints = [s for s, t in types.items() if t == "checkpoint"]
    # after events 5, 10, ... (a checkpoint takes a seq too), and one sealing the end
    assert checkpoints == [6, 11, 16, 21, 26, 31, 33]
    result = log.verify()
    assert result.ok and result.signed_through == 33 and result.unproven_from is None
    assert "intact and signed" in result.describe()
    assert log.seal() is None  # the newest event is a checkpoint already: nothing to sign


def test_rewritten_chain_names_the_first_mis_signed_checkpoint(log):
    rewrite(log.store.path, 8, "report 8: nothing to see")
    # The plain hash chain and its head are consistent again...
    hashes_only = AuditLog(log.store, "ann").verify()
    assert hashes_only.ok
    # ...but the checkpoint after the rewritten event no longer signs the chain.
    result = log.verify()
    assert not result.ok
    assert result.bad_checkpoint == 11 and result.signed_through == 6
    assert result.unproven_from == 7
    text = result.describe()
    assert "unproven from event 7" in text and "checkpoint at event 11" in text
    assert "rewritten" in text


def test_checkpoint_with_forged_fields_is_mis_signed(log):
    """The adversary also rewrites the checkpoint to sign the new hash: the signature fails."""
    conn = sqlite3.connect(log.store.path)
    conn.row_factory = sqlite3.Row
    conn.execute("UPDATE audit_events SET summary = 'forged' WHERE seq = 13")
    _rechain(conn)
    row = dict(conn.execute("SELECT * FROM audit_events WHERE seq = 16").fetchone())
    data = json.loads(row["data"])
    data["signed_hash"] = row["prev_hash"]
    conn.execute("UPDATE audit_events SET data = ? WHERE seq = 16", (json.dumps(data),))
    _rechain(conn)
    conn.commit()
    conn.close()
    result = log.verify()
    assert result.bad_checkpoint == 16 and result.unproven_from == 12
    assert "mis-signed" in result.describe()


def test_deleted_last_checkpoints_leave_the_tail_unproven(log):
    conn = sqlite3.connect(log.store.path)
    conn.row_factory = sqlite3.Row
    # The last two checkpoints go; the events after the one before them are renumbered.
    conn.execute("DELETE FROM audit_events WHERE seq IN (31, 33)")
    _rechain(conn)
    conn.commit()
    conn.close()
    result = log.verify()
    assert not result.ok and result.bad_checkpoint is None
    assert result.signed_through == 26 and result.unproven_from == 27
    assert "unproven from event 27" in result.describe()


def test_a_checkpoint_signed_by_another_key_proves_nothing(log, tmp_path):
    other = AuditKeys(throwaway_keyring(tmp_path / "other"))
    other_key = other.public_key(create=True)
    result = log.verify(other_key)
    assert not result.ok and result.bad_checkpoint == 6 and result.unproven_from == 1
    assert fingerprint(other_key) in result.describe()


def test_no_key_in_the_keyring_proves_nothing(tmp_path, keyring_backend):
    store = Store(tmp_path / "state.sqlite3")
    AuditLog(store, "ann").record("fetched", "report 1")  # written without a key
    result = AuditLog(store, "ann", keys=AuditKeys(keyring_backend)).verify()
    assert not result.ok and result.unproven_from == 1
    assert "no audit signing key" in result.describe()
    # A command that only reads signs nothing (and never waits for the write lock)...
    log = AuditLog(store, "ann", keys=AuditKeys(keyring_backend))
    assert log.seal() is None
    # ...the next one that writes, with a keyring, signs everything before it too.
    log.record("fetched", "report 2")
    assert log.seal() is not None
    assert log.verify().ok
    store.close()


def test_the_private_key_stays_in_the_keyring(log, keyring_backend):
    stored = json.loads(keyring_backend.get_password(KEYRING_SERVICE, KEY_ENTRY))
    seed = stored["private_key"]
    assert stored["algorithm"] == "Ed25519"
    blob = b"".join(p.read_bytes() for p in log.store.path.parent.glob("state.sqlite3*"))
    assert seed.encode() not in blob
    for row in log.store.iter_audit_rows():
        assert seed not in json.dumps(row)


class BrokenKeyring(PlaintextKeyring):
    def get_password(self, service, username):
        raise RuntimeError("vault locked")


def test_a_failing_keyring_never_undoes_the_events(tmp_path, monkeypatch):
    """Signing fails: the events (a voucher's outcome among them, in real cycles) are still
    written; the problem is said, and the next checkpoint that can be signed proves them."""
    monkeypatch.setattr(audit_module, "CHECKPOINT_EVERY", 5)
    store = Store(tmp_path / "state.sqlite3")
    broken = AuditLog(store, "ann", keys=AuditKeys(BrokenKeyring()))
    broken.record_many(Event(type="fetched", summary=f"r{i}") for i in range(12))
    assert broken.seal() is None
    assert "not signed" in broken.seal_problem and "RuntimeError" in broken.seal_problem
    assert [r["type"] for r in store.iter_audit_rows()] == ["fetched"] * 12
    working = AuditLog(store, "ann", keys=AuditKeys(throwaway_keyring(tmp_path)))
    working.record("fetched", "r12")
    assert working.seal() is not None
    assert working.verify().ok
    store.close()
