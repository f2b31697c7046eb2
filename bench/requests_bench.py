"""Request budget: IFS requests per posted accrual (single POSTs; `$batch` counted as one
request and as its parts) over the demo dataset, requests per reversal on their own row (the
next period's first cycle), and Expensify requests per cycle."""

from __future__ import annotations

from bench.rows import Row
from bench.world import REVERSALS_DUE, as_of, demo, world
from console.sim.expensify_app import ExpensifySimSettings


def run(quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    dataset = demo()
    with world(dataset, concurrency=4) as w:
        s = w.engine.run_cycle()
        per = w.ifs_requests() / max(1, s.posted)
        rows.append(
            Row(
                "IFS requests / posted accrual (single POSTs)",
                f"{per:.3f} ({w.ifs_requests()} for {s.posted})",
                "<= 1.1",
                per <= 1.1 and not s.reversals,
                "demo dataset, one cycle incl. token, tenant check, reference reads; no reversal due",
            )
        )
        # The next period's first day: the month's accruals are reversed, nothing else posts.
        before = w.ifs_requests()
        with as_of(REVERSALS_DUE):
            r = w.engine.run_cycle()
        spent = w.ifs_requests() - before
        tried = len(r.reversals) + len(r.failed_reports)
        per_rev = spent / max(1, tried)
        rows.append(
            Row(
                "IFS requests / reversal (next period's first cycle)",
                f"{per_rev:.3f} ({spent} for {len(r.reversals)} posted, "
                f"{len(r.failed_reports)} refused)",
                "<= 2.1",
                per_rev <= 2.1 and r.posted == 0,
                "each reads its accrual back (it mirrors what IFS holds), then posts",
            )
        )
    with world(dataset, batch=True, batch_size=50) as w:
        s = w.engine.run_cycle()
        total = w.ifs_requests()
        stats = w.sims.ifs.batch_stats
        as_parts = total - stats.batches + stats.parts
        per_one = total / max(1, s.posted)
        per_parts = as_parts / max(1, s.posted)
        rows.append(
            Row(
                "IFS requests / posted accrual ($batch as 1)",
                f"{per_one:.3f} ({total} for {s.posted})",
                "<= 0.05",
                per_one <= 0.05,
                f"batch_size 50: {stats.batches} batches",
            )
        )
        rows.append(
            Row(
                "IFS requests / posted accrual ($batch as parts)",
                f"{per_parts:.3f} ({as_parts} for {s.posted})",
                "<= 0.05 (if the tenant counts parts)",
                per_parts <= 0.05,
                "a tenant counting parts leaves the budget of single POSTs (~1.0)",
            )
        )
    # Expensify: real limits on (5 per 10 s, 20 per 60 s); two sizes, same count, no 429.
    counts = []
    throttled = 0
    for n in (60, 600):
        with world(demo(n), expensify_sim=ExpensifySimSettings()) as w:
            w.engine.run_cycle()
            snap = w.sims.expensify.requests.snapshot()
            counts.append(snap["total"])
            throttled += sum(r["count"] for r in snap["by_route"] if r["status"] == 429)
    rows.append(
        Row(
            "Expensify requests / cycle (60 vs 600 reports)",
            f"{counts[0]} vs {counts[1]}, {throttled} x 429",
            "constant, <= 5 per 10 s",
            counts[0] == counts[1] <= 5 and throttled == 0,
            "policy list (a day's first cycle), policy read, export, download, label",
        )
    )
    return rows
