"""TUI benchmark: first paint and a 1,000-row scroll of Pending and Audit, 1k rows up to 100k
reports (Pending) and 200k audit events (Audit).

Seeds a state file directly (reports through Store.upsert_reports, events through AuditLog),
opens the real app headless (App.run_test) on it and times:
- first paint: from app start until the table has counted its rows and drawn the first page;
- scroll: 1,000 cursor moves down, each followed by a frame (pilot.pause());
- worst frame: the slowest single move of the scroll (a frozen frame shows up here).
Ratios are against the 1k figure of the same screen: a virtual view should stay near 1x.

    .venv/bin/python -m bench.tui_bench            # quick: 1k and 10k rows
    .venv/bin/python -m bench.tui_bench --full     # Pending to 100k, Audit to 200k (slow)
    .venv/bin/python -m bench.tui_bench --sizes 1000,50000

`sizes_for(full)` gives the sizes per screen; `run_sizes()` seeds and measures them (what
bench/tui_rows.py can call for `python -m bench` in full mode).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from console import views
from console.audit import AuditLog, Event
from console.store import LineRecord, ReportRecord, Store


class BenchEngine(views.ListQueries):
    """Just enough engine for the Pending and Audit screens over the seeded store (no
    services): the list queries are the Engine's own (console.views.ListQueries)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def status(self) -> None:
        return None

    def policy_sync_states(self) -> dict[str, str]:
        return {}


QUICK_SIZES: dict[str, tuple[int, ...]] = {"pending": (1000, 10_000), "audit": (1000, 10_000)}
FULL_SIZES: dict[str, tuple[int, ...]] = {
    "pending": (1000, 10_000, 100_000),
    "audit": (1000, 10_000, 200_000),
}
TABLES = {"pending": "#pending-table", "audit": "#audit-table"}


def sizes_for(full: bool) -> dict[str, tuple[int, ...]]:
    """Rows per screen: quick stays at 1k/10k; full adds 100k reports and 200k audit events."""
    return dict(FULL_SIZES if full else QUICK_SIZES)


def seed(path: Path, n: int, events: int | None = None) -> Store:
    """`n` reports and `events` audit events (default: as many as reports)."""
    events = n if events is None else events
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
    for start in range(0, events, batch):
        audit.record_many(
            Event(type="fetched", report_id=f"{50000000 + i % max(1, n)}", summary=f"event {i}")
            for i in range(start, min(events, start + batch))
        )
    return store


@dataclass(frozen=True)
class Measurement:
    first_paint: float  # seconds
    scroll: float  # seconds for all moves
    worst_frame: float  # seconds, the slowest single move
    moves: int


async def measure(store: Store, mode: str, table_id: str) -> tuple[float, float]:
    """(first paint, 1,000-move scroll) in seconds."""
    m = await measure_detail(store, mode, table_id)
    return m.first_paint, m.scroll


async def measure_detail(store: Store, mode: str, table_id: str, moves: int = 1000) -> Measurement:
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
        worst = 0.0
        for _ in range(moves):
            m0 = time.perf_counter()
            table.action_cursor(1)
            await pilot.pause()
            worst = max(worst, time.perf_counter() - m0)
        scroll = time.perf_counter() - t0
        assert table.cursor_row == min(moves, table.total - 1), "the cursor did not follow"
        await app.workers.wait_for_complete()
    return Measurement(first_paint, scroll, worst, moves)


def run_sizes(
    sizes: Mapping[str, Sequence[int]], folder: Path | None = None
) -> dict[tuple[str, int], Measurement]:
    """Seeds one state file per size (reports for Pending, events for Audit; 1k of the other)
    and measures each screen at its sizes."""
    results: dict[tuple[str, int], Measurement] = {}
    every = sorted({n for ns in sizes.values() for n in ns})
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        for n in every:
            reports = n if n in sizes.get("pending", ()) else min(n, 1000)
            events = n if n in sizes.get("audit", ()) else min(n, 1000)
            store = seed(Path(tmp) / f"state-{n}.sqlite3", reports, events)
            try:
                for mode, ns in sizes.items():
                    if n in ns:
                        results[(mode, n)] = asyncio.run(measure_detail(store, mode, TABLES[mode]))
            finally:
                store.close()
    return results


def table(
    sizes: Mapping[str, Sequence[int]], results: Mapping[tuple[str, int], Measurement]
) -> str:
    out = [
        f"{'screen':<8} {'rows':>8} {'first paint':>12} {'x base':>7} {'1k scroll':>10} "
        f"{'x base':>7} {'worst frame':>12}"
    ]
    for mode, ns in sizes.items():
        base = results[(mode, ns[0])]
        for n in ns:
            m = results[(mode, n)]
            out.append(
                f"{mode:<8} {n:>8,} {m.first_paint * 1000:>10.0f}ms "
                f"{m.first_paint / base.first_paint:>6.2f}x {m.scroll * 1000:>8.0f}ms "
                f"{m.scroll / base.scroll:>6.2f}x {m.worst_frame * 1000:>10.1f}ms"
            )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--full", action="store_true", help="Pending to 100k reports, Audit to 200k events"
    )
    parser.add_argument("--sizes", default="", help="the same sizes for both screens: 1000,10000")
    parser.add_argument(
        "--only", choices=sorted(TABLES), default=None, help="measure one screen only"
    )
    args = parser.parse_args()
    sizes = sizes_for(args.full)
    if args.sizes:
        custom = tuple(int(s) for s in args.sizes.split(","))
        sizes = {mode: custom for mode in TABLES}
    if args.only:
        sizes = {args.only: sizes[args.only]}
    print(table(sizes, run_sizes(sizes)))


if __name__ == "__main__":
    main()
