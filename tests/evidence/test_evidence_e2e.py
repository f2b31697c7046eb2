"""Audit evidence end to end, through the real `ml-console` command: the chain of a real
cycle is signed, `audit verify` catches a rewritten chain, and a period's evidence bundle
verifies on a machine with no keyring, no state file and no console config."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

from keyrings.alt.file import PlaintextKeyring

from console.audit_keys import KEY_ENTRY
from console.secrets import KEYRING_SERVICE
from tests.e2e.conftest import SECRETS
from tests.evidence.test_signed_chain import _rechain


def auditor_env(tmp_path: Path) -> dict[str, str]:
    """A process that cannot reach any keyring and has no console home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_CONSOLE_")}
    env.update(
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        ML_CONSOLE_HOME=str(tmp_path / "no-home"),
        XDG_DATA_HOME=str(tmp_path / "no-data"),
    )
    return env


def run_as_auditor(tmp_path: Path, *args: str, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=auditor_env(tmp_path),
        cwd=cwd,
    )


def test_cycle_is_signed_and_a_rewrite_is_caught(small_console):
    code, _summary, err = small_console.auto()
    assert code == 3, err  # the small world holds one report
    proc = small_console.run("audit", "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "intact and signed" in proc.stdout
    # A command outside a cycle signs its own events when it ends.
    assert small_console.run("exclude", "90000004", "--reason", "duplicate").returncode == 0
    proc = small_console.run("audit", "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    db = sqlite3.connect(small_console.home / "state.sqlite3")
    db.row_factory = sqlite3.Row
    seq = db.execute("SELECT seq FROM audit_events WHERE type='posted' ORDER BY seq").fetchone()[0]
    first_cp = db.execute(
        "SELECT MIN(seq) FROM audit_events WHERE type='checkpoint' AND seq > ?", (seq,)
    ).fetchone()[0]
    db.execute("UPDATE audit_events SET voucher = 'X-1' WHERE seq = ?", (seq,))
    _rechain(db)  # every hash and the head recomputed: the plain chain holds again
    db.commit()
    db.close()
    proc = small_console.run("audit", "verify")
    assert proc.returncode == 3
    assert f"checkpoint at event {first_cp}" in proc.stdout
    assert "unproven from event" in proc.stdout


def test_evidence_bundle_verifies_with_only_the_public_key(small_console, tmp_path):
    code, summary, err = small_console.auto()
    assert code == 3, err
    posted = {v["reportID"]: v["voucher"] for v in summary["vouchers"]}
    assert posted

    key = small_console.run("audit", "key")
    assert key.returncode == 0, key.stderr
    assert key.stdout.startswith("fingerprint: SHA256:")
    fp = key.stdout.split()[1]
    key_file = tmp_path / "auditor" / "audit-key.pem"
    key_file.parent.mkdir()
    key_file.write_text(key.stdout)

    bundle = tmp_path / "out" / "nov.zip"
    proc = small_console.run(
        "audit", "export", "--evidence", "--period", "2026-11", "--out", str(bundle)
    )
    assert proc.returncode == 0, proc.stderr
    assert zipfile.is_zipfile(bundle)

    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        blobs = {n: zf.read(n) for n in names}
    assert {"manifest.json", "events.jsonl", "checkpoints.json", "vouchers.json",
            "public_key.pem", "verify_evidence.py", "README.txt"} <= names  # fmt: skip
    vouchers = json.loads(blobs["vouchers.json"])
    assert {v["report_id"]: v["voucher_no"] for v in vouchers if v["kind"] == "accrual"} == posted
    for v in vouchers:
        assert v["plan_hash"] and v["planned_by"] == "auto" and v["confirmed_by"] == "auto"
        assert v["run"] == "sync"
    assert json.loads(blobs["manifest.json"])["public_key"]["fingerprint"] == fp

    # Secrets never in the bundle: the services' secrets, nor the signing key.
    seed = ""
    for f in (tmp_path / "keyring").rglob("*.cfg"):
        kr = PlaintextKeyring()
        kr.file_path = str(f)
        stored = kr.get_password(KEYRING_SERVICE, KEY_ENTRY)
        if stored:
            seed = json.loads(stored)["private_key"]
    assert seed, "the signing key is in the test's keyring"
    for blob in blobs.values():
        for secret in (*SECRETS, seed):
            assert secret.encode() not in blob

    # An auditor: no keyring, no state, no config; only the bundle and the public key.
    proc = run_as_auditor(
        tmp_path, "-m", "console.commands.main", "audit", "verify",
        "--evidence", str(bundle), "--public-key", str(key_file),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verified" in proc.stdout and fp in proc.stdout

    # With plain Python and the checker shipped inside the bundle.
    unpacked = tmp_path / "auditor" / "bundle"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(unpacked)
    proc = run_as_auditor(
        tmp_path, "verify_evidence.py", ".", "--public-key", str(key_file), cwd=unpacked
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # A tampered bundle (an event edited, its hashes recomputed) does not verify.
    lines = (unpacked / "events.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    target = next(r for r in rows if r["type"] == "posted")
    target["voucher"] = "FORGED-1"
    from console.evidence_check import chain_hash

    prev = rows[0]["prev_hash"]
    for r in rows:
        r["prev_hash"] = prev
        r["hash"] = chain_hash(prev, r)
        prev = r["hash"]
    (unpacked / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = run_as_auditor(
        tmp_path, "verify_evidence.py", ".", "--public-key", str(key_file), cwd=unpacked
    )
    assert proc.returncode == 3
    assert "NOT verified" in proc.stdout
