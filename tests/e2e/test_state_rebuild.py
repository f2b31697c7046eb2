"""`ml-console state rebuild`: the local state made again from IFS and Expensify after it was
lost or damaged — what was posted, labelled and reversed — with what it could not know said;
a healthy state is not replaced without --force."""

from __future__ import annotations

import json
import random

from console.exitcodes import ExitCode
from tests.e2e.test_restored_state import DEC_1, delete_state, per_kind


def test_a_healthy_state_is_not_replaced_without_force(small_console):
    code, summary, err = small_console.auto()
    assert code == 3 and summary["posted"] == 3, err
    proc = small_console.run("state", "rebuild")
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert "is healthy: nothing to rebuild" in proc.stderr and "--force" in proc.stderr
    assert small_console.run("held").returncode == 3  # the state is untouched: 90000004 held

    proc = small_console.run("state", "rebuild", "--force", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["recorded"] == {"accrual": 3} and result["labelled"] == 3
    kept = result["setAside"]
    assert len(kept) >= 1 and all(".replaced-" in p for p in kept)
    assert (small_console.home / kept[0].rsplit("/", 1)[1]).exists()


def test_a_deleted_state_is_rebuilt_and_the_reversals_follow_once(small_console, small_sims):
    code, summary, err = small_console.auto()
    assert summary["posted"] == 3, err
    code, summary, err = small_console.auto(env=DEC_1)  # 3 reversals
    assert len(summary["reversals"]) == 3, err
    before = per_kind(small_sims)
    delete_state(small_console.home)

    proc = small_console.run("state", "rebuild", "--json", env=DEC_1)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["recorded"] == {"accrual": 3, "reversal": 3}, result
    assert result["labelled"] == 3 and result["toLabel"] == 0
    assert "audit trail before the rebuild" in proc.stderr  # what it could not know
    assert "mapping rules" in proc.stderr

    code, summary, err = small_console.auto(env=DEC_1)
    assert code == 3, err  # 90000004 is held again, fetched afresh
    assert summary["posted"] == 0 and summary["reversals"] == [], summary
    assert per_kind(small_sims) == before  # nothing posted twice
    assert small_console.run("audit", "verify").returncode == 0
    assert '"state-rebuilt"' in small_console.run("audit", "export").stdout


def test_a_damaged_state_is_rebuilt_and_the_due_reversals_post(small_console, small_sims):
    code, summary, err = small_console.auto()
    assert summary["posted"] == 3, err
    state = small_console.home / "state.sqlite3"
    size = state.stat().st_size
    with state.open("r+b") as fh:
        fh.seek(size // 2)
        fh.write(random.Random(14).randbytes(8192))
    proc = small_console.run("--auto", "--json", env=DEC_1)
    assert proc.returncode == 7 and "ml-console state rebuild" in proc.stderr, proc.stderr

    proc = small_console.run("state", "rebuild", env=DEC_1)
    assert proc.returncode == 0, proc.stderr
    assert "rebuilding: the state file" in proc.stderr and "is damaged" in proc.stderr
    code, summary, err = small_console.auto(env=DEC_1)
    assert code == 3, err  # 90000004 is held again
    assert sorted(r["reportID"] for r in summary["reversals"]) == [
        "90000001", "90000002", "90000003",
    ]  # fmt: skip
    counts = per_kind(small_sims)
    assert set(counts.values()) == {1} and len(counts) == 6
