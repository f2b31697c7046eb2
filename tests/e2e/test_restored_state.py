"""Exactly once does not rest on the state file alone: a state file restored from a backup
(taken while a report was held, restored after it posted) or a home whose state was lost
posts nothing IFS already holds — accruals and reversals — and records what it found."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from console import reference
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
    assert "already in IFS as voucher" in audit
    assert small_console.run("audit", "verify").returncode == 0
