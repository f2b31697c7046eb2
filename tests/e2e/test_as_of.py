"""Time is an input: a slice of the suite (end to end, crash, adopt, request budget) at three
as-of days, each with its demo world built relative to that day (the month before closing,
the day's own month in progress):

- mid-period: the closing month's accrual reversals are due, this month's are not yet;
- the first day of the next period: the day reversals fall due, nothing of the month yet;
- a year after that: far beyond the calendar the suite was written in. Where a day is later
  than the machine's date, the console runs under libfaketime with the machine's clock set
  to that day (a future as-of date alone is refused for posting, which is tested too).

The real `ml-console` runs as a subprocess; the checks count what they mean: one accrual per
report, at most one reversal per accrual, never a ReferenceNumber twice.
"""

from __future__ import annotations

import glob
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from console import clock
from console.ifs.needs import projections, tenant_needs
from console.sim.demo import CLOSED_OFFICE, build_demo_dataset, demo_attention, in_progress_count
from tests.chaos.harness import (
    World,
    ledger_counts,
    reference_kind,
    verify_world,
    vouchers,
    world_from,
)
from tests.e2e.conftest import make_console

MID_PERIOD = date(2026, 11, 16)
FIRST_OF_NEXT = date(2026, 12, 1)
A_YEAR_LATER = date(2027, 12, 1)
DAYS = [MID_PERIOD, FIRST_OF_NEXT, A_YEAR_LATER]
REPORTS = 40
CRASH_ENV = "ML_CONSOLE_TEST_CRASH_AT"
# IFS requests per posted voucher in a cycle, beyond the cycle's few reference reads.
BUDGET_PER_VOUCHER = 1.1
REVERSAL_REQUESTS = 2
# The reference reads (accounts, code parts B–J in one $batch, periods and their status per
# user group, rate types and rates in one $batch) and the pre-post lookups (hold table and
# GL) of a cycle, and the check before its first posting: each projection's $metadata, once
# per process (every `--auto` here is a process of its own).
PREFLIGHT = len(projections(tenant_needs()))
CYCLE_READS = 12 + PREFLIGHT


def _libfaketime() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    return found[0] if found else None


def machine_env(day: date) -> dict[str, str]:
    """The console's environment for `day`: the as-of date, and where that day has not come
    yet on this machine, the machine's clock faked to it. (The one place the real date is
    read: it decides whether to fake, never what is checked.)"""
    env = {"ML_CONSOLE_AS_OF": day.isoformat()}
    if day > date.today():
        lib = _libfaketime()
        if lib is None:
            pytest.skip("libfaketime is missing (Debian package faketime; `make test` installs it)")
        env.update(LD_PRELOAD=lib, FAKETIME=f"@{day.isoformat()} 09:00:00")
    return env


def world_for(day: date) -> tuple[dict[str, Any], str]:
    period = clock.previous_period(day)
    return build_demo_dataset(reports=REPORTS, period=period, as_of=day), period


def use_console(world: World, tmp_path: Path, day: date) -> None:
    """A console home on this world, working as of `day`, first poll from its default."""
    world.console = make_console(tmp_path, world.sims)
    world.console.env.update(machine_env(day))
    world.console.write_config(
        expensify={"approved_after": None, "limit_10s": 1000, "limit_60s": 6000}
    )


def accruals_due_for_reversal(all_vouchers: list[dict[str, Any]], day: date) -> set[str]:
    """Accruals dated before `day`'s month with a reimbursable credit (2930), whose reversal
    (`next-period-start`) is due on `day`; card-only accruals are never reversed."""
    first = clock.month_start(day).isoformat()
    return {
        str(v["ReferenceNumber"])
        for v in all_vouchers
        if reference_kind(v) == "EXP"
        and str(v["VoucherDate"]) < first
        and any(row["Account"] == "2930" for row in v["VoucherRowArray"])
    }


def coded_to(
    all_vouchers: list[dict[str, Any]], references: set[str], cost_centre: str
) -> set[str]:
    """The accruals among `references` with a row on `cost_centre`."""
    return {
        str(v["ReferenceNumber"])
        for v in all_vouchers
        if str(v["ReferenceNumber"]) in references
        and any(row.get("CodeB") == cost_centre for row in v["VoucherRowArray"])
    }


def reversed_accruals(all_vouchers: list[dict[str, Any]]) -> set[str]:
    """The accrual references IFS holds a reversal (`REV:`) for."""
    return {
        "EXP:" + str(v["ReferenceNumber"]).split(":", 1)[1]
        for v in all_vouchers
        if reference_kind(v) == "REV"
    }


@pytest.mark.parametrize("day", DAYS, ids=[d.isoformat() for d in DAYS])
def test_a_period_close_on_any_day(tmp_path, day):
    raw, period = world_for(day)
    in_progress = in_progress_count(REPORTS, period, day)
    assert in_progress == (0 if day.day == 1 else REPORTS * (day.day - 1) // 31)
    with world_from(tmp_path / "world", raw) as world:
        world.expected_held = {a["reportID"]: a["reason"] for a in demo_attention(period)}
        use_console(world, tmp_path / "first", day)

        # The closing month's reports and this month's so far: posted once through crashes.
        for spec in ("intent:2", "post:3", "posted:2"):
            proc = world.console.run("--auto", "--json", env={CRASH_ENV: spec})
            assert proc.returncode in (-9, 3), proc.stderr
        code, first, err = world.console.auto()
        assert code == 3, err  # the demo's attention reports stay held
        assert first["as_of"] == day.isoformat()
        assert {h["reportID"] for h in first["held_reports"]} == set(world.expected_held)
        assert any(f"closed-period:{clock.previous_period(clock.month_start(day, -1))}" in h["reason"]
                   for h in first["held_reports"])  # fmt: skip
        verify_world(world).assert_clean()
        accruals, references = ledger_counts(vouchers(world.sims))
        assert set(accruals) == world.postable and set(references.values()) == {1}

        # Reversals due on `day`: exactly those of the closing month, each once (a cycle
        # after a crash posts those of the reports posted before it already).
        due = accruals_due_for_reversal(vouchers(world.sims), day)
        assert due, "the closing month has reimbursable accruals"
        expired = coded_to(vouchers(world.sims), due, CLOSED_OFFICE[0])
        code, second, err = world.console.auto()
        assert code == 3 and second["posted"] == 0, err
        assert reversed_accruals(vouchers(world.sims)) == due - expired
        # Accruals on the cost centre closed mid-month cannot be reversed into it on the 1st:
        # IFS refuses, and the run says so every cycle (never a quiet exit 0).
        refused = [f for f in second["failed_reports"] if f["reason"].startswith("reversal: ")]
        assert len(refused) == len(expired)
        assert all(CLOSED_OFFICE[0] in f["reason"] for f in refused), refused
        # A reversal reads its accrual back (it mirrors what IFS holds) and posts: 2 requests.
        tried = len(second["reversals"]) + len(refused)
        assert second["requests"]["ifs"] <= REVERSAL_REQUESTS * tried + CYCLE_READS

        # Nothing is left to do, and nothing is posted twice.
        code, third, err = world.console.auto()
        assert code == 3 and third["posted"] == 0 and third["reversals"] == [], err
        # Only the refused reversals are tried again.
        assert third["requests"]["ifs"] <= CYCLE_READS + REVERSAL_REQUESTS * len(expired)
        verdict = verify_world(world)
        verdict.assert_clean()
        assert verdict.duplicates == 0 and verdict.lost == 0


@pytest.mark.parametrize("day", DAYS, ids=[d.isoformat() for d in DAYS])
def test_adopt_and_the_request_budget_on_any_day(tmp_path, day):
    raw, _period = world_for(day)
    with world_from(tmp_path / "world", raw) as world:
        world.expected_held = {
            a["reportID"]: a["reason"] for a in demo_attention(clock.previous_period(day))
        }
        use_console(world, tmp_path / "first", day)
        code, first, err = world.console.auto()
        assert code == 3, err
        posted = first["posted"]
        assert posted == len(world.postable)
        # Accruals only in a first cycle: one POST each, beyond a few reference reads.
        assert first["reversals"] == []
        assert first["requests"]["ifs"] <= posted * BUDGET_PER_VOUCHER + CYCLE_READS

        # A new installation (state lost, or a manual process before) adopts what IFS holds,
        # then posts no accrual again; the reversals due are posted once.
        use_console(world, tmp_path / "second", day)
        adopt = world.console.run("adopt", "--confirm", "--json")
        assert adopt.returncode == 0, adopt.stderr
        code, after, err = world.console.auto()
        assert code == 3 and after["posted"] == 0, err
        due = accruals_due_for_reversal(vouchers(world.sims), day)
        expired = coded_to(vouchers(world.sims), due, CLOSED_OFFICE[0])
        assert reversed_accruals(vouchers(world.sims)) == due - expired
        verify_world(world).assert_clean()


def test_a_future_as_of_date_looks_ahead_but_posts_nothing(tmp_path):
    """An as-of date later than the machine's date: a dry run shows the plan, a posting run
    is refused with exit 2 and IFS receives nothing."""
    day = max(A_YEAR_LATER, date.today() + timedelta(days=400))
    raw, _period = world_for(day)
    with world_from(tmp_path / "world", raw) as world:
        world.console.env["ML_CONSOLE_AS_OF"] = day.isoformat()
        world.console.write_config(expensify={"approved_after": None})
        dry = world.console.run("--auto", "--dry-run", "--json")
        assert dry.returncode == 3, dry.stderr  # held reports in the plan; nothing posted
        refused = world.console.run("--auto", "--json")
        assert refused.returncode == 2
        assert "later than this machine's date" in refused.stderr and "--dry-run" in refused.stderr
        assert vouchers(world.sims) == []
        info = world.console.run("info")
        assert f"as of        {day.isoformat()}" in info.stdout and "nothing will be posted" in (
            info.stdout
        )
