"""`ml-console status [--json]` for monitors: the real command on a real state file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from console.alerts import health, human_age
from console.exitcodes import ExitCode
from console.store import Store
from tests.e2e.conftest import make_console


def status_json(console) -> tuple[int, dict]:
    proc = console.run("status", "--json")
    return proc.returncode, json.loads(proc.stdout)


def test_nothing_synced_yet_is_stale(tmp_path, small_sims):
    console = make_console(tmp_path, small_sims)
    code, data = status_json(console)
    assert code == ExitCode.STALE == 8
    assert data["stale"] is True and data["last_cycle"] is None


def test_after_a_cycle_status_is_fresh_with_held_counts_and_oldest_wait(tmp_path, small_sims):
    console = make_console(tmp_path, small_sims)
    code, _summary, err = console.auto()
    assert code == 3, err
    code, data = status_json(console)
    assert code == 0, data
    assert data["stale"] is False
    assert data["today"] == "2026-11-30" and data["as_of"] == "2026-11-30"  # suite's as-of
    last = data["last_cycle"]
    assert last["mode"] == "sync" and last["ok"] is True and last["held"] == 1
    assert last["posted"] == 3
    assert data["last_success"]["id"] == last["id"]
    assert data["held"] == 1 and data["failed"] == 0
    assert data["held_by_reason"] == {"missing-dimension:B:CC-410": 1}
    assert data["reports"]["posted"] == 3
    wait = data["oldest_wait"]
    assert wait["reportID"] == "90000004" and wait["reason"] == "missing-dimension:B:CC-410"
    proc = console.run("status")
    assert proc.returncode == 0
    assert "last successful sync: #1" in proc.stdout
    assert "held: 1 (missing-dimension:B:CC-410 1)" in proc.stdout
    assert "oldest wait: report 90000004" in proc.stdout


def test_stale_when_the_last_success_is_older_than_stale_after(tmp_path, small_sims):
    console = make_console(tmp_path, small_sims)
    console.write_config(alerts={"stale_after": "30m"})
    long_ago = datetime(2026, 11, 1, 6, tzinfo=UTC)
    with Store(console.home / "state.sqlite3", clock=lambda: long_ago) as st:
        st.finish_run(st.start_run("auto", "sync"), {"posted": 2})
        # A failed run and a dry run after it are not successes.
        st.finish_run(st.start_run("auto", "sync"), {"error": "ifs: unreachable"})
        st.finish_run(st.start_run("auto", "dry-run"), {})
    code, data = status_json(console)
    assert code == ExitCode.STALE, data
    assert data["stale"] is True and data["stale_after_s"] == 1800
    assert data["last_success"]["id"] == 1
    assert data["last_cycle"]["mode"] == "dry-run"
    proc = console.run("status")
    assert proc.returncode == 8 and "stale: YES" in proc.stdout


def test_a_bad_config_is_exit_2(tmp_path, small_sims):
    console = make_console(tmp_path, small_sims)
    (console.home / "config.toml").write_text('[alerts]\nstale_after = "soon"\n')
    proc = console.run("status", "--json")
    assert proc.returncode == 2
    assert "stale_after" in proc.stderr


def test_health_with_an_injected_clock(tmp_path):
    t0 = datetime(2026, 11, 30, 8, tzinfo=UTC)
    with Store(tmp_path / "s.sqlite3", clock=lambda: t0) as st:
        st.finish_run(st.start_run("auto", "sync"), {"posted": 1})
        fresh = health(st, 7200, now=t0 + timedelta(minutes=90))
        stale = health(st, 7200, now=t0 + timedelta(hours=3))
    assert not fresh.stale and fresh.last_success["age_s"] == 5400
    assert stale.stale and stale.last_cycle["age_s"] == 3 * 3600
    assert human_age(5400) == "90m" and human_age(None) == "never"
