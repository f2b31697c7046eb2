"""The TUI benchmark's engine stand-in keeps up with the screens: when the screens moved to
the search API (Engine.find_*) and the stand-in did not, `make bench` stopped on an empty
table."""

from __future__ import annotations

from pathlib import Path

from bench import tui_bench


async def test_the_bench_scrolls_real_rows_on_both_screens(tmp_path: Path) -> None:
    store = tui_bench.seed(tmp_path / "state.sqlite3", 60, 60)
    for mode, table_id in tui_bench.TABLES.items():
        m = await tui_bench.measure_detail(store, mode, table_id, moves=20)
        assert m.moves == 20 and m.scroll > 0, mode
