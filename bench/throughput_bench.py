"""Throughput at the limit: the IFS simulator with 80 ms latency per request and 1000
requests a minute; posted reports per minute against the ceiling (limit / requests per
report), and the 429s seen (target: none).

The client's limiter is a sliding window, so any 60 s holds at most its limit: the full run
measures one whole 60 s window from the first request (no extrapolation). `--quick` measures
20 s and extrapolates x3, which a sliding window flatters (it lets the first burst through):
indicative only."""

from __future__ import annotations

import threading
import time

from bench.rows import Row
from bench.world import demo, world
from console.post import PostProgress
from console.sim.ifs_app import IfsSimSettings

LIMIT = 1000
CLIENT_LIMIT = 990
CONCURRENCY = 4


def run(quick: bool = False) -> list[Row]:
    window_s = 20.0 if quick else 60.0
    reports = 500 if quick else 1150
    settings = IfsSimSettings(rate_limit_per_minute=LIMIT, latency_ms=80)
    stamps: list[float] = []
    lock = threading.Lock()

    def progress(p: PostProgress) -> None:
        if p.outcome in ("posted", "reconciled"):
            with lock:
                stamps.append(time.monotonic())

    with world(
        demo(reports),
        ifs_sim=settings,
        concurrency=CONCURRENCY,
        requests_per_minute=CLIENT_LIMIT,
    ) as w:
        t0 = time.monotonic()
        before = w.ifs_requests()
        w.engine.fetch()
        evaluations = w.engine.evaluate()
        plan = w.engine.plan(evaluations=evaluations)
        if quick:
            # Stop feeding new vouchers once the window is over.
            plan.vouchers[:] = plan.vouchers[: int(CLIENT_LIMIT * window_s / 60) + 50]
        w.engine.post(plan, progress=progress)
        in_window = sum(1 for t in stamps if t - t0 <= window_s)
        requests = w.ifs_requests() - before
        posted = len(stamps)
        by = w.ifs_requests_by()
        throttled = sum(r["count"] for r in by if r["status"] == 429)
    per_report = requests / max(1, posted)
    ceiling = LIMIT / per_report
    per_minute = in_window * 60.0 / window_s
    share = per_minute / ceiling
    note = (
        f"{in_window} posted in {window_s:g} s from the first request"
        + (" x3 (indicative: burst)" if quick else "")
        + f"; client limit {CLIENT_LIMIT}/min, concurrency {CONCURRENCY}, "
        f"{per_report:.3f} req/report"
    )
    return [
        Row(
            "Posted reports / min at 80 ms, 1000/min",
            f"{per_minute:.0f} ({share:.0%} of ceiling {ceiling:.0f})",
            ">= 90% of ceiling",
            None if quick else share >= 0.9,
            note,
        ),
        Row("429s while posting at the limit", str(throttled), "0", throttled == 0, ""),
    ]
