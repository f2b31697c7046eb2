"""Crash consistency: the real `ml-console --auto` SIGKILLed at chosen and at random moments,
restarted until a cycle completes, then the end state is proved (tests/chaos/harness.py,
`verify_world`): every postable report in IFS exactly once, held reports held, local state
agrees with IFS, labels only on posted reports, the audit chain verifies.

Exact moments use the engine's test-only hook ML_CONSOLE_TEST_CRASH_AT (console/store/base.py):
in-migration, fetched, intent (intent committed, POST not sent), post (POST answered, outcome
not committed), posted, label (label set in Expensify, not recorded). Random moments are a
SIGKILL from outside after a random delay, with a little latency on the voucher POST so the
kills land across fetch, posting and labelling.

CI: 6 placed kills + 14 random ones. `make chaos`: hundreds, over many cycles that each get new
reports to post.
"""

from __future__ import annotations

import calendar
import copy
import itertools
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from typing import Any

import pytest

from console import clock
from tests.chaos.harness import World, add_fault, demo_world, record, sim_json, verify_world

POINTS = ("in-migration", "fetched", "intent", "post", "posted", "label")
CRASH_ENV = "ML_CONSOLE_TEST_CRASH_AT"
_new_ids = itertools.count(1)


def run_auto(world: World, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return world.console.run("--auto", "--json", env=env, timeout=120)


def start_auto(world: World) -> subprocess.Popen[str]:
    c = world.console
    return subprocess.Popen(
        [sys.executable, "-m", "console.commands.main", "--home", str(c.home), "--auto", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=c.env,
    )


def finish_cleanly(world: World, limit: int = 5) -> subprocess.CompletedProcess[str]:
    """Run cycles until one completes (exit 0 or 3); bounded."""
    for _ in range(limit):
        proc = run_auto(world)
        if proc.returncode in (0, 3):
            return proc
    raise AssertionError(f"no cycle completed in {limit} tries: {proc.returncode} {proc.stderr}")


def add_reports(world: World, n: int, rng: random.Random) -> None:
    """New reports approved just now (so the next poll, which starts a day before the last,
    sees them), cloned from postable ones, so the next cycle has work to do."""
    now = clock.now()  # the suite's day, whatever the calendar says
    ensure_open_period(world, now.date())
    sources = [
        r for r in world.raw["expensify"]["reports"] if r["reportID"] in sorted(world.postable)
    ]
    for _ in range(n):
        k = next(_new_ids)
        report: dict[str, Any] = copy.deepcopy(rng.choice(sources))
        report["reportID"] = f"{59000000 + k}"
        report["exportLabels"] = []
        report["approved"] = now.strftime("%Y-%m-%d %H:%M:%S")
        for j, line in enumerate(report["transactionList"]):
            line["transactionID"] = f"79{k:09d}{j:04d}"
        sim_json(world.sims.expensify_url, "/__sim/reports", "POST", report)
        world.raw["expensify"]["reports"].append(report)


def ensure_open_period(world: World, day: date) -> None:
    last = calendar.monthrange(day.year, day.month)[1]
    for company in world.raw["ifs"]["companies"]:
        sim_json(world.sims.ifs_url, "/__sim/periods", "POST", {
            "Company": company["Company"], "AccountingYear": day.year,
            "AccountingPeriod": day.month, "DateFrom": f"{day:%Y-%m}-01",
            "DateUntil": f"{day:%Y-%m}-{last:02d}", "PeriodStatus": "Open",
        })  # fmt: skip


def placed_kills(world: World, specs: list[str]) -> Counter[str]:
    """Run with each crash spec in turn; each must die by SIGKILL (or finish, if the point
    was not reached because nothing was left to do there)."""
    kills: Counter[str] = Counter()
    for spec in specs:
        proc = run_auto(world, env={CRASH_ENV: spec})
        if proc.returncode == -signal.SIGKILL:
            kills[spec.split(":")[0]] += 1
        else:
            assert proc.returncode in (0, 3), f"{spec}: exit {proc.returncode}: {proc.stderr}"
    return kills


def random_kills(world: World, n: int, rng: random.Random, max_delay_s: float) -> int:
    """SIGKILL `--auto` after a random delay, n times (a run that finishes first is simply a
    completed cycle, and new reports are added so the next one has work)."""
    kills = 0
    for _ in range(n):
        proc = start_auto(world)
        time.sleep(rng.uniform(0.05, max_delay_s))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=120)
        if proc.returncode not in (-signal.SIGKILL, 0, 3):
            raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
        if proc.returncode in (0, 3):
            add_reports(world, 3, rng)
    return kills


def cycle_seconds(world: World) -> float:
    start = time.monotonic()
    finish_cleanly(world)
    return time.monotonic() - start


def test_placed_kills_at_every_crash_point_then_recovery(tmp_path):
    """One kill at each named point (6 kills), then a clean cycle: nothing lost, no duplicate."""
    with demo_world(tmp_path, reports=40) as world:
        # in-migration first (a fresh home), then the rest, each a bit further along.
        specs = ["in-migration", "fetched", "intent:2", "post:3", "posted:2", "label"]
        kills = placed_kills(world, specs)
        assert sum(kills.values()) == 6, kills  # every point was reached and killed there
        finish_cleanly(world)
        verdict = verify_world(world)
        record("crash", "placed (CI)", kills=6, cycles=1, posted=verdict.posted,
               duplicates=verdict.duplicates, lost=verdict.lost)  # fmt: skip
        verdict.assert_clean()


def test_random_sigkills_then_recovery(tmp_path):
    """14 SIGKILLs at random moments from outside, then a clean cycle."""
    rng = random.Random(6)
    with demo_world(tmp_path, reports=40) as world:
        add_fault(world.sims.ifs_url, route="VoucherEntryAssistantHandling", method="POST", fault="latency",
                  latency_ms=15)  # fmt: skip
        # A run that finishes before its kill is just a completed cycle: keep going until 14
        # kills have landed mid-run (bounded), so the figure does not depend on machine speed.
        kills = attempts = 0
        while kills < 14 and attempts < 40:
            kills += random_kills(world, 1, rng, max_delay_s=1.0)
            attempts += 1
        finish_cleanly(world)
        verdict = verify_world(world)
        record("crash", "random (CI)", kills=kills, attempts=attempts, posted=verdict.posted,
               duplicates=verdict.duplicates, lost=verdict.lost)  # fmt: skip
        verdict.assert_clean()
        assert kills == 14, f"only {kills} of {attempts} runs were still going when killed"


@pytest.mark.chaos
@pytest.mark.timeout(3600)
def test_hundreds_of_kills_over_many_cycles(tmp_path):
    """Rounds of placed and random kills; between rounds new reports arrive. The end state is
    proved after every round."""
    rng = random.Random(2026)
    total_kills: Counter[str] = Counter()
    with demo_world(tmp_path, reports=60) as world:
        add_fault(world.sims.ifs_url, route="VoucherEntryAssistantHandling", method="POST", fault="latency",
                  latency_ms=10)  # fmt: skip
        total_kills += placed_kills(world, ["in-migration"])
        span = cycle_seconds(world)
        # A placed kill at a point a cycle never reaches that often, or a random one that comes
        # after the cycle finished, kills nothing: keep going until 200 kills (bounded rounds).
        round_no = 0
        while sum(total_kills.values()) < 200 and round_no < 40:
            round_no += 1
            add_reports(world, 8, rng)
            specs = [f"{rng.choice(POINTS[1:])}:{rng.randint(1, 4)}" for _ in range(6)]
            total_kills += placed_kills(world, specs)
            add_reports(world, 8, rng)
            total_kills["random"] += random_kills(world, 8, rng, max_delay_s=max(0.5, span))
            finish_cleanly(world)
            verdict = verify_world(world, audit=round_no % 5 == 0)
            verdict.assert_clean()
        verdict = verify_world(world)
        record("crash", "placed+random (chaos)", kills=sum(total_kills.values()), cycles=round_no,
               posted=verdict.posted, duplicates=verdict.duplicates, lost=verdict.lost,
               **{f"kills_at_{k}": v for k, v in total_kills.items()})  # fmt: skip
        verdict.assert_clean()
        assert sum(total_kills.values()) >= 200
