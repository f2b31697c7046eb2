"""Console: first paint and a 1,000-row scroll of Pending and Audit, 1k vs 10k rows, from
bench/tui_bench.py (the TUI engineer's) when it is there."""

from __future__ import annotations

import asyncio
import importlib
import tempfile
from pathlib import Path

from bench.rows import Row


def run(quick: bool = False) -> list[Row]:
    if quick:
        return [
            Row(
                "Console first paint / scroll",
                "not measured in --quick",
                "<= 3x",
                None,
                "1,000-row scrolls take minutes here: run the full bench",
            )
        ]
    try:
        tui = importlib.import_module("bench.tui_bench")
    except ImportError as exc:
        return [
            Row(
                "Console first paint / scroll",
                "not measured",
                "<= 3x",
                None,
                f"bench/tui_bench.py unavailable: {exc}",
            )
        ]
    sizes = (1000, 10_000)
    results: dict[tuple[str, int], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            store = tui.seed(Path(tmp) / f"state-{n}.sqlite3", n)
            for mode, table in (("pending", "#pending-table"), ("audit", "#audit-table")):
                results[(mode, n)] = asyncio.run(tui.measure(store, mode, table))
            store.close()
    rows = []
    for mode in ("pending", "audit"):
        (fp1, sc1), (fp2, sc2) = results[(mode, sizes[0])], results[(mode, sizes[1])]
        for what, a, b in (("first paint", fp1, fp2), ("1,000-row scroll", sc1, sc2)):
            ratio = b / a
            rows.append(
                Row(
                    f"Console {mode}: {what}, 10k vs 1k rows",
                    f"{ratio:.2f}x ({a * 1000:.0f} -> {b * 1000:.0f} ms)",
                    "<= 3x",
                    ratio <= 3,
                    "bench/tui_bench.py",
                )
            )
    return rows
