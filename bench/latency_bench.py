"""Approval to ledger: `ml-console --auto --every 1m` over a simulated day.

The loop is the command's own (console/commands/auto.py `_loop`: a fresh engine per cycle,
`run_once`, the alerts hook), driven on a simulated clock: the engine's clock, the Expensify
client's request limiter (5 per 10 s, 20 per 60 s, its window kept in the state file) and
the wait between cycles all read one virtual time, so a day passes in a few minutes and
nothing waits for real. Reports are approved in the Expensify simulator (POST /__sim/reports)
at random moments of the day; a report's latency is the simulated time from its approval to
the end of the cycle that put its voucher in IFS. The share of Expensify's request budget is
the loop's requests (the simulator's log) over the 20 a minute the day allows.

    .venv/bin/python -m bench.latency_bench [--hours 24]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import random
import statistics
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from bench.rows import Row
from bench.world import as_of, settings_for
from console.commands.auto import _loop
from console.credentials import ExpensifyCredentials, IfsCredentials
from console.expensify.client import ExpensifyClient
from console.flows.cycle import Engine
from console.ifs.client import IfsClient
from console.sim.dataset import parse_dataset
from console.sim.demo import (
    DEMO_EXPENSIFY_SECRET,
    DEMO_EXPENSIFY_USER_ID,
    DEMO_IFS_CLIENT_ID,
    DEMO_IFS_SECRET,
    DEMO_REALM,
    build_demo_dataset,
)
from console.sim.expensify_app import ExpensifySimSettings
from console.sim.ifs_app import IfsSimSettings
from console.sim.server import SimServers
from console.store import Store

DAY = "2026-11-30"
EVERY_S = 60.0
APPROVALS_PER_HOUR = 4
BUDGET_PER_MIN = 20  # Expensify: 20 requests per 60 s (and 5 per 10 s)
TARGET_P95_S = 120.0
TARGET_SHARE = 0.10


class VirtualClock:
    """Epoch seconds that move only when someone waits."""

    def __init__(self, start: datetime) -> None:
        self.t = start.timestamp()
        self.lock = threading.Lock()

    def now(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.t += max(0.0, seconds)


def _approvals(hours: float, seed: int = 15) -> list[float]:
    """Seconds into the day; none in its last 5 minutes (the day ends before their cycle)."""
    rng = random.Random(seed)
    n = max(1, int(hours * APPROVALS_PER_HOUR))
    return sorted(rng.uniform(0, hours * 3600 - 300) for _ in range(n))


def _template(raw: dict[str, Any]) -> dict[str, Any]:
    """A demo report that posts as it is (reimbursable lines, mapped, in the open period)."""
    from console.sim.demo import _ATTENTION_IDS

    for report in raw["expensify"]["reports"]:
        if report["reportID"] not in _ATTENTION_IDS and report.get("currency") == "USD":
            return dict(report)
    raise RuntimeError("the demo has no plain USD report")


def _approved(template: dict[str, Any], n: int, at: datetime) -> dict[str, Any]:
    report = copy.deepcopy(template)
    rid = f"7{n:07d}"
    report.update(
        reportID=rid,
        reportName=f"Latency {n}",
        status="APPROVED",
        approved=at.strftime("%Y-%m-%d %H:%M:%S"),
        exportLabels=[],
    )
    for i, tx in enumerate(report["transactionList"]):
        tx["transactionID"] = f"{rid}-{i}"
    return report


def measure(hours: float = 24.0) -> dict[str, Any]:
    raw = build_demo_dataset(reports=40)
    template = _template(raw)
    start = datetime.fromisoformat(f"{DAY}T00:00:00+00:00")
    clock = VirtualClock(start)
    end = clock.t + hours * 3600
    approve_at = [clock.t + s for s in _approvals(hours)]
    pending: dict[str, float] = {}
    latencies: list[float] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(as_of(DAY))
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ml-latency-")))
        sims = stack.enter_context(
            SimServers(
                parse_dataset(raw, "demo (40 reports)"),
                expensify_settings=ExpensifySimSettings.fast(),
                ifs_settings=IfsSimSettings.fast(),
            )
        )
        settings = settings_for(sims)
        state = home / "state.sqlite3"

        def opener() -> Engine:
            store = Store(state)
            exp = ExpensifyClient(
                sims.expensify_url,
                lambda: ExpensifyCredentials(
                    DEMO_EXPENSIFY_USER_ID, SecretStr(DEMO_EXPENSIFY_SECRET)
                ),
                window=store,
                limit_10s=settings.expensify.limit_10s,
                limit_60s=settings.expensify.limit_60s,
                clock=clock.now,
                sleep=clock.sleep,
            )
            ifs = IfsClient(
                sims.ifs_url,
                DEMO_REALM,
                lambda: IfsCredentials(DEMO_IFS_CLIENT_ID, SecretStr(DEMO_IFS_SECRET)),
            )
            return Engine(
                settings, store, None, actor="auto", clock=clock.wall, expensify=exp, ifs=ifs
            )

        watcher = Store(state)
        stack.callback(watcher.close)
        counts: dict[str, int] = {}

        def expensify_requests() -> int:
            snap = httpx.get(sims.expensify_url + "/__sim/requests", timeout=30).json()
            return int(snap["total"])

        cycles = [0]

        def wait(stop: threading.Event, seconds: float) -> bool:
            cycles[0] += 1
            if cycles[0] == 1:  # the month already approved is posted: the day starts now
                counts["start"] = expensify_requests()
                clock.t = max(clock.t, start.timestamp())
            for rid, approved in list(pending.items()):
                if watcher.report_status(rid) == "posted":
                    latencies.append(clock.t - approved)
                    del pending[rid]
            clock.sleep(seconds)
            while approve_at and approve_at[0] <= clock.t:
                at = approve_at.pop(0)
                n = len(latencies) + len(pending) + 1
                report = _approved(template, n, datetime.fromtimestamp(at, UTC))
                httpx.post(
                    sims.expensify_url + "/__sim/reports", json=report, timeout=30
                ).raise_for_status()
                pending[report["reportID"]] = at
            # The day is over once every report approved in it is posted (or half an
            # hour later): the loop's requests are counted over that whole time.
            return (clock.t >= end and not pending) or clock.t >= end + 1800 or stop.is_set()

        args = argparse.Namespace(dry_run=False, json=False, every=EVERY_S)
        _loop(args, EVERY_S, io.StringIO(), io.StringIO(), opener, wait=wait)
        spent = expensify_requests() - counts.get("start", 0)
    minutes = (clock.t - start.timestamp()) / 60
    return {
        "latencies": latencies,
        "unposted": len(pending),
        "unposted_at": sorted(pending.values()),
        "end": end,
        "cycles": cycles[0],
        "requests": spent,
        "share": spent / (BUDGET_PER_MIN * minutes),
        "hours": hours,
        "minutes": minutes,
    }


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run(quick: bool = False, hours: float | None = None) -> list[Row]:
    m = measure(hours or (6.0 if quick else 24.0))
    lat: list[float] = m["latencies"]
    p50, p95 = _p(lat, 50), _p(lat, 95)
    share = float(m["share"])
    note = (
        f"{len(lat)} reports approved over {m['hours']:g} simulated h ({m['cycles']} cycles of "
        f"--every 1m), {m['unposted']} not posted by the end; Expensify {m['requests']} "
        f"requests in {m['minutes']:.0f} min = {m['requests'] / m['minutes']:.2f}/min of the "
        f"20/min budget; slowest {max(lat, default=0):.0f} s (polls skipped to stay in the "
        "share)"
    )
    return [
        Row(
            "Approval to ledger, --every 1m: p50 / p95",
            f"{p50:.0f} s / {p95:.0f} s",
            f"p95 <= {TARGET_P95_S:.0f} s",
            bool(lat) and p95 <= TARGET_P95_S and m["unposted"] == 0,
            note,
        ),
        Row(
            "Share of Expensify's request budget (--every 1m)",
            f"{share:.1%}",
            f"<= {TARGET_SHARE:.0%}",
            share <= TARGET_SHARE,
            "policies kept 15 min, posted reports re-read every 30 min, labelled only "
            "when something posted; a cycle past expensify.loop_share (10%) of the last "
            "hour skips its poll",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=24.0)
    args = parser.parse_args(argv)
    for row in run(hours=args.hours):
        print(row)


if __name__ == "__main__":
    main()
