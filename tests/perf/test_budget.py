"""Expensify's request budget (20 a minute) under `--every 1m`: the policies are kept between
cycles, a cycle that posts nothing labels nothing, posted reports are re-read every half
hour, and a scheduled cycle past `expensify.loop_share` of the last hour skips its poll. The
latency and share figures are `make bench`'s (bench/latency_bench.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bench.world import World, as_of, demo, world
from console import session
from console.flows import cycle
from console.flows.cycle import Engine

DAY = "2026-11-30"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def epoch(self) -> float:
        return self.now.timestamp()

    def sleep(self, seconds: float) -> None:
        """The Expensify client's limiter waits on this clock, not for real."""
        self.now += timedelta(seconds=max(0.0, seconds))


@pytest.fixture
def loop_world() -> Iterator[tuple[World, Clock]]:
    clock = Clock()
    with as_of(DAY), world(demo(30)) as w:
        w.engine.clock = clock
        w.expensify.clock, w.expensify.sleep = clock.epoch, clock.sleep
        w.engine.run_cycle(scheduled=True)  # the month already approved: posted
        yield w, clock


def expensify_jobs(w: World) -> Counter[str]:
    """Requests the Expensify simulator logged, by kind of job."""
    snap = httpx.get(w.sims.expensify_url + "/__sim/requests", timeout=30).json()
    return Counter({r["path"]: r["count"] for r in snap["by_route"]})


def next_engine(w: World, clock: Clock) -> Engine:
    """What `--every` does each cycle: a fresh engine on the same state file."""
    e = w.engine
    return Engine(
        e.settings, e.store, None, actor="auto", clock=clock, expensify=e.expensify, ifs=e.ifs
    )


def test_an_idle_scheduled_cycle_spends_only_its_poll(loop_world) -> None:
    w, clock = loop_world
    before = w.expensify_requests()
    clock.now += timedelta(minutes=1)
    summary = next_engine(w, clock).run_cycle(scheduled=True)
    assert summary.posted == 0
    # export and download; no policy read (kept), no label (nothing posted), no re-read of
    # the posted reports (read 1 minute ago).
    assert w.expensify_requests() - before == 2
    assert summary.requests["expensify"] == 2


def test_the_policies_are_read_again_after_their_time(loop_world) -> None:
    w, clock = loop_world
    e = next_engine(w, clock)
    e.policies()
    before = w.expensify_requests()
    clock.now += timedelta(seconds=60)
    next_engine(w, clock).policies()
    assert w.expensify_requests() == before, "kept policies read again within their time"
    clock.now += timedelta(seconds=session.POLICY_TTL_S)
    next_engine(w, clock).policies()
    assert w.expensify_requests() == before + 1


def test_posted_reports_are_re_read_every_half_hour_in_a_loop_and_always_on_sync(
    loop_world,
) -> None:
    w, clock = loop_world
    before = w.expensify_requests()
    clock.now += timedelta(seconds=cycle.WATCH_EVERY_S + 1)
    next_engine(w, clock).run_cycle(scheduled=True)
    assert w.expensify_requests() - before > 2, "the half-hourly re-read did not happen"
    before = w.expensify_requests()
    clock.now += timedelta(minutes=1)
    next_engine(w, clock).run_cycle()  # the operator's sync: reads everything
    assert w.expensify_requests() - before >= 4


def test_a_scheduled_cycle_past_the_loop_share_skips_its_poll(loop_world) -> None:
    w, clock = loop_world
    e = w.engine
    allowed = e.settings.expensify.loop_share * e.settings.expensify.limit_60s * 60
    spent = 0
    for _ in range(int(allowed)):  # far more cycles than the share allows in an hour
        clock.now += timedelta(minutes=1)
        spent += next_engine(w, clock).run_cycle(scheduled=True).requests["expensify"]
        if clock.now - datetime(2026, 11, 30, 8, 0, tzinfo=UTC) >= timedelta(hours=1):
            break
    hour = sum(n for _t, n in next_engine(w, clock)._spend())
    assert hour <= allowed, f"{hour} requests in the last hour, {allowed:.0f} allowed"
    clock.now += timedelta(seconds=1)
    before = w.expensify_requests()
    next_engine(w, clock).run_cycle()  # the operator's sync always polls
    assert w.expensify_requests() - before >= 2
