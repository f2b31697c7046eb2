"""TUI benchmark: first paint and a 1,000-row scroll of Pending and Audit at 1k/10k/100k rows.

Seeds a state file directly (reports through Store.upsert_reports, events through AuditLog),
opens the real app headless (App.run_test) on it and times:
- first paint: from app start until the table has counted its rows and drawn the first page;
- scroll: 1,000 cursor moves down, each followed by a frame (pilot.pause()); printed per row
  (milliseconds per move; the pilot's own round trip is part of it).
Ratios are against the 1k figure of the same screen: a virtual view should stay near 1x.

    .venv/bin/python -m bench.tui_bench [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from console.audit import AuditLog, Event
from console.store import LineRecord, ReportRecord, Store


class BenchEngine:
    """Just enough engine for the screens to read the store (no services)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def status(self) -> None:
        return None


def seed(path: Path, n: int) -> Store:
    store = Store(path)
    batch = 5000
    for start in range(0, n, batch):
        records = []
        for i in range(start, min(n, start + batch)):
            rid = f"{50000000 + i}"
            records.append(
                ReportRecord(
                    report_id=rid,
                    policy_id="POL-US",
                    employee=f"employee{i % 500}@bench.example",
                    report_name=f"Report {rid}",
                    approved=f"2026-11-{1 + i % 28:02d} 10:00:00",
                    currency="USD",
                    total_minor=1000 + i,
                    content_hash=f"h{i}",
                    raw={"reportID": rid},
                    lines=(
                        LineRecord(transaction_id=f"T{i}", merchant="ACME", amount_minor=1000 + i),
                    ),
                )
            )
        store.upsert_reports(records)
    audit = AuditLog(store, "bench")
    for start in range(0, n, batch):
        audit.record_many(
            Event(type="fetched", report_id=f"{50000000 + i}", summary=f"event {i}")
            for i in range(start, min(n, start + batch))
        )
    return store


async def measure(store: Store, mode: str, table_id: str) -> tuple[float, float]:
    from screens.app import MlConsoleApp
    from screens.vtable import VirtualTable

    app = MlConsoleApp(engine=BenchEngine(store), status_interval=None)
    started = time.perf_counter()
    async with app.run_test(size=(160, 48)) as pilot:
        if mode != "pending":
            await pilot.press({"audit": "5"}[mode])
        table = app.screen.query_one(table_id, VirtualTable)
        for _ in range(10_000):  # bounded wait for the count and first page
            if table.loaded_once and table.row_at(0) is not None:
                break
            await pilot.pause(0.001)
        await pilot.pause()
        first_paint = time.perf_counter() - started
        t0 = time.perf_counter()
        for _ in range(1000):
            table.action_cursor(1)
            await pilot.pause()
        scroll = time.perf_counter() - t0
        await app.workers.wait_for_complete()
    return first_paint, scroll


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[tuple[str, int], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            store = seed(Path(tmp) / f"state-{n}.sqlite3", n)
            for mode, table_id in (("pending", "#pending-table"), ("audit", "#audit-table")):
                results[(mode, n)] = asyncio.run(measure(store, mode, table_id))
            store.close()
    print(
        f"{'screen':<8} {'rows':>8} {'first paint':>12} {'x base':>7} {'1k scroll':>10} {'x base':>7}"
    )
    for mode in ("pending", "audit"):
        base = results[(mode, sizes[0])]
        for n in sizes:
            fp, sc = results[(mode, n)]
            print(
                f"{mode:<8} {n:>8,} {fp * 1000:>10.0f}ms {fp / base[0]:>6.2f}x "
                f"{sc:>14.1f}ms {sc / base[1]:>6.2f}x"
            )


if __name__ == "__main__":
    main()
