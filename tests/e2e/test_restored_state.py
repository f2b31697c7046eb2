"""Exactly once does not rest on the state file alone: a state file restored from a backup
(taken while a report was held, restored after it posted) or a home whose state was lost
posts nothing IFS already holds — accruals and reversals — and records what it found."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from console import reference
from console.credentials import IfsCredentials
from console.ifs.client import IfsClient
from console.sim.demo import DEMO_IFS_CLIENT_ID, DEMO_IFS_SECRET, DEMO_REALM
from tests.close.test_close_e2e import ifs_vouchers
from tests.conftest import sim_control

DEC_1 = {"ML_CONSOLE_AS_OF": "2026-12-01"}


def backup(home: Path, name: str) -> Path:
    target = home.parent / name
    with sqlite3.connect(home / "state.sqlite3") as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def restore(home: Path, copy: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (home / f"state.sqlite3{suffix}").unlink(missing_ok=True)
    with sqlite3.connect(copy) as src, sqlite3.connect(home / "state.sqlite3") as dst:
        src.backup(dst)


def per_kind(sims: Any) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for v in ifs_vouchers(sims):
        parsed = reference.parse(v["ReferenceNumber"])
        if parsed is not None:
            out[(parsed.kind, parsed.report_id)] += 1
    return out


def test_a_restored_state_file_posts_nothing_twice(small_console, small_sims):
    code, summary, err = small_console.auto()
    assert code == 3 and summary["posted"] == 3, err  # 90000004 held: CC-410 not in IFS
    held_copy = backup(small_console.home, "while-held.sqlite3")

    # The cost centre is created in IFS; the held report posts.
    sim_control(small_sims.ifs_url, "code-part-values", "POST", {
        "Company": "10", "CodePart": "B", "CodePartValue": "CC-410",
        "Description": "New Lab", "ValidFrom": "2020-01-01", "ValidUntil": "2099-12-31",
    })  # fmt: skip
    code, summary, err = small_console.auto()
    assert code == 0 and summary["posted"] == 1, err
    code, summary, err = small_console.auto(env=DEC_1)  # every accrual reversed once
    assert len(summary["reversals"]) == 4, err
    before = per_kind(small_sims)
    assert set(before.values()) == {1} and len(before) == 8

    # The backup from before comes back: the state knows none of that.
    restore(small_console.home, held_copy)
    code, summary, err = small_console.auto(env=DEC_1)
    assert code == 0, err
    assert summary["posted"] == 0 and summary["reversals"] == [], summary
    assert per_kind(small_sims) == before  # nothing posted twice
    audit = small_console.run("audit", "export").stdout
    # Found by the cycle's read of what IFS holds (a new day: the check is due) and recorded,
    # each voucher with its event, before anything was planned.
    assert audit.count("but the state did not know it") == 1 + 4, audit  # 90000004, reversals
    assert small_console.run("audit", "verify").returncode == 0


def delete_state(home: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (home / f"state.sqlite3{suffix}").unlink(missing_ok=True)


def test_a_deleted_state_forgets_no_due_reversal(small_console, small_sims):
    """The accruals of November are posted and labelled; the state is lost; on 1 December
    the reversals due are derived from what IFS holds and posted, once each."""
    code, summary, err = small_console.auto()
    assert summary["posted"] == 3, err
    delete_state(small_console.home)

    code, summary, err = small_console.auto(env=DEC_1)
    assert code == 3, err  # 90000004 is still held: CC-410 is not in IFS
    assert summary["posted"] == 0, summary
    assert sorted(r["reportID"] for r in summary["reversals"]) == [
        "90000001", "90000002", "90000003",
    ]  # fmt: skip
    assert any("did not know" in w for w in summary["warnings"]), summary["warnings"]
    counts = per_kind(small_sims)
    assert set(counts.values()) == {1} and len(counts) == 6  # 3 accruals, 3 reversals

    code, summary, err = small_console.auto(env=DEC_1)  # nothing more to do
    assert summary["posted"] == 0 and summary["reversals"] == [], summary
    assert per_kind(small_sims) == counts
    assert small_console.run("audit", "verify").returncode == 0


def test_every_cycle_reports_a_reference_ifs_holds_twice(small_console, small_sims):
    """A second installation (its own home) posting the same reports at the same instant
    cannot be prevented without a lock in IFS: it is reported, by every cycle of either."""
    code, summary, err = small_console.auto()
    assert summary["posted"] == 3, err
    voucher = next(v for v in ifs_vouchers(small_sims) if v["ReferenceNumber"].startswith("EXP:"))
    ref = voucher["ReferenceNumber"]
    # The other installation's voucher, posted as if at the same instant (no lookup between).
    post_again(small_sims, voucher)
    delete_state(small_console.home)  # a new day for the check: the next cycle reads IFS

    for _ in range(2):
        code, summary, err = small_console.auto()
        assert code in (0, 3), err
        said = [w for w in summary["warnings"] if ref in w and "2 times" in w]
        assert said, summary["warnings"]
    assert "held-twice" in small_console.run("audit", "export").stdout


ROW_FIELDS = (
    "Account", "CodeB", "CodeC", "CodeD", "CodeE", "CodeF", "CodeG", "CodeH", "CodeI",
    "CurrencyCode", "CurrencyRate", "CurrencyDebetAmount", "CurrencyCreditAmount",
    "DebetAmount", "CreditAmount", "Text",
)  # fmt: skip


def post_again(sims: Any, voucher: dict[str, Any]) -> None:
    """POST the same voucher through IFS's API as another installation would."""
    creds = IfsCredentials(client_id=DEMO_IFS_CLIENT_ID, client_secret=SecretStr(DEMO_IFS_SECRET))
    client = IfsClient(sims.ifs_url, DEMO_REALM, lambda: creds)
    body = {k: voucher[k] for k in ("Company", "VoucherType", "VoucherDate", "ReferenceNumber")}
    body["VoucherRowArray"] = [
        {k: r[k] for k in ROW_FIELDS if r.get(k) is not None} for r in voucher["VoucherRowArray"]
    ]
    try:
        client.post_voucher(body)
    finally:
        client.close()
