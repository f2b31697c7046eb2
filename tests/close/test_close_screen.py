"""The Close screen mounted in a tiny app over a real Engine and the simulators."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console
from textual.app import App

from console.close import ClosePeriod
from console.store import AuditFilter
from screens.close import CloseScreen, bar
from tests.close.helpers import engine_on

NOVEMBER = ClosePeriod(2026, 11)


class CloseApp(App[None]):
    def __init__(self, engine: Any, period: ClosePeriod) -> None:
        super().__init__()
        self.engine = engine
        self.period = period

    def on_mount(self) -> None:
        self.push_screen(CloseScreen(self.engine, self.period))


@pytest.fixture
def synced_engine(tmp_path, small_sims):
    engine = engine_on(small_sims, tmp_path / "tui")
    summary = engine.run_cycle()
    assert summary.posted == 3 and summary.held == 1
    yield engine
    engine.close()


async def wait_for_tie(pilot: Any) -> CloseScreen:
    screen = pilot.app.screen
    assert isinstance(screen, CloseScreen)
    # The tie-out re-reads Expensify, whose client paces itself (5 requests per 10 s): wait on
    # the worker itself rather than a wall-clock budget, then let its result land.
    for _ in range(20):  # bounded: the worker may start a moment after the screen mounts
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if screen.tie is not None or screen.error:
            break
    return screen


async def test_close_screen_ties_out_in_a_worker_and_charts_the_month(synced_engine):
    app = CloseApp(synced_engine, NOVEMBER)
    async with app.run_test(size=(150, 45)) as pilot:
        screen = await wait_for_tie(pilot)
        assert screen.error == ""
        assert screen.tie is not None and screen.tie.balanced
        state = str(screen.query_one("#close-state").render())
        assert "BALANCED" in state
        # The tie-out is itself on the audit trail, with its result.
        (event,) = synced_engine.store.audit_page(AuditFilter(types=("tie-out",)))
        assert event.data["period"] == "2026-11" and event.data["balanced"] is True
        assert event.response_digest
        table = screen.query_one("#close-table")
        assert table.row_count == len(screen.tie.rows) + 1  # + the company total
        chart = str(screen.query_one("#close-chart-body").render())
        assert "Accrued in IFS by account" in chart and "6120" in chart
        await pilot.press("b")
        assert "by cost centre" in str(screen.query_one("#close-chart-body").render())
        await pilot.press("b")
        held_chart = str(screen.query_one("#close-chart-body").render())
        assert "Still held" in held_chart and "missing-dimension" in held_chart
        console = Console(record=True, width=150)
        console.print(screen._reports_table(screen.tie))
        listed = console.export_text()
        assert "90000004" in listed and "missing-dimension:B:CC-410" in listed
        # Another period: nothing approved in December.
        await pilot.press("right_square_bracket")
        screen = await wait_for_tie(pilot)
        assert screen.period == ClosePeriod(2026, 12)
        assert screen.tie is not None and screen.tie.reports == []


def test_bar_is_proportional_in_eighths():
    from decimal import Decimal

    assert bar(Decimal(10), Decimal(10), 4) == "████"
    assert bar(Decimal(5), Decimal(10), 4) == "██"
    assert bar(Decimal(1), Decimal(16), 4) == "▎"  # a quarter cell
    assert bar(Decimal(0), Decimal(10), 4) == ""


def test_close_screen_snapshot(synced_engine, snap_compare):
    app = CloseApp(synced_engine, NOVEMBER)

    async def run_before(pilot: Any) -> None:
        screen = await wait_for_tie(pilot)
        # The chart sizes itself to its pane and the table its columns to their content: let
        # layout settle, then draw the chart again at the final width, so the picture does not
        # depend on how fast the worker came back.
        await pilot.pause()
        screen._render_chart()
        screen.query_one("#close-table").refresh(layout=True)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(150, 45), run_before=run_before)
