"""A report's drill-downs after the fact: its lines as they were posted (not "unknown, not
evaluated"), and its timeline on the console's clock."""

from __future__ import annotations

from typing import Any

from tests.tui.test_operator_flow import wait_until
from tests.tui.test_screens import SIZE, settle, table


def cells(pilot: Any, selector: str, *names: str) -> list[tuple[str, ...]]:
    found = table(pilot, selector)
    rows = [found.row_at(i) for i in range(found.total)]
    return [tuple(str(row.cells[n]) for n in names) for row in rows if row is not None]


async def test_a_posted_report_shows_the_coding_it_was_posted_with(tui_home, make_app) -> None:
    from screens.pending import ReportDetailScreen

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot, 6)
        # Ready: each line as the plan maps it.
        app.push_screen(ReportDetailScreen("90000001"))
        await settle(pilot)
        before = cells(pilot, "#lines-table", "tx", "account", "parts", "state")
        assert before and all(acct != "—" and "ok" in state for _, acct, _, state in before)
        await pilot.press("escape")
        await settle(pilot)
        summary = app.engine.replay(["90000001"])
        assert summary.posted == 1
        voucher = app.engine.posted_coding("90000001").voucher_no
        assert voucher
        app.push_screen(ReportDetailScreen("90000001"))
        await settle(pilot)
        await wait_until(pilot, lambda: table(pilot, "#lines-table").total == len(before))
        after = cells(pilot, "#lines-table", "tx", "account", "parts", "state")
        # The same accounts and code parts, now as posted, with the voucher.
        assert [row[:3] for row in after] == [row[:3] for row in before], after
        assert all(state == f"● posted {voucher}" for *_, state in after), after


def test_a_posted_report_without_recorded_coding_says_so() -> None:
    """A voucher posted before the console kept each line's coding (or adopted from IFS):
    the lines say posted, with the voucher, and that the coding is not kept here."""
    from types import SimpleNamespace

    from console.store.records import StoredLine
    from console.views import PostedCoding, PostedLine
    from screens.lines import line_rows

    def line(tx: str, minor: int) -> StoredLine:
        return StoredLine("R1", tx, 0, "Cafe", "Meals", "", minor, "USD", True, "", "")

    detail = SimpleNamespace(lines=[line("T1", 1250), line("T2", 0), line("T3", 990)])
    coding = PostedCoding(
        "EXP-R1-v1", "10/X/2026/7", {"T1": (PostedLine("6100", (("B", "CC-100"),)),)}
    )
    rows = {r.key: r.cells for r in line_rows(detail, coding)}
    assert (str(rows["T1"]["account"]), str(rows["T1"]["parts"])) == ("6100", "B=CC-100")
    assert str(rows["T1"]["state"]) == "● posted 10/X/2026/7"
    assert "zero amount, not posted" in str(rows["T2"]["state"])
    assert str(rows["T3"]["account"]) == "—"
    assert "coding not recorded here" in str(rows["T3"]["state"])


async def test_the_timeline_is_on_the_consoles_clock(tui_home, make_app) -> None:
    """The console runs on a fixed clock here (conftest.FIXED_NOW): what it records, and so
    the timeline's When column, is on that clock, not the machine's."""
    from screens.audit import TimelineScreen
    from tests.tui.conftest import FIXED_NOW

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot, 6)
        app.push_screen(TimelineScreen("90000001"))
        await settle(pilot)
        await wait_until(pilot, lambda: table(pilot, "#timeline").total > 0)
        shown = cells(pilot, "#timeline", "at", "type")
        assert {t for _, t in shown} >= {"fetched"}, shown
        assert {at for at, _ in shown} == {FIXED_NOW.strftime("%Y-%m-%d %H:%M:%S")}, shown
