"""Issue 15, the operator's path: no stale plan with a live post key, guarded writes, Close on
the period being closed, filters that find what the screen shows, money as money."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot

from tests.conftest import sim_control
from tests.tui.test_screens import SIZE, settle, table


async def wait_until(pilot: Pilot[Any], condition: Callable[[], bool], rounds: int = 400) -> None:
    """Let the app run (workers, messages) until `condition` holds; never sleeps a fixed time."""
    for _ in range(rounds):
        if condition():
            return
        await pilot.pause()
    raise AssertionError("the screen never got there")


def noting(app: Any) -> list[str]:
    notes: list[str] = []
    real_notify = app.notify

    def notify(message: str, **kwargs: Any) -> None:
        notes.append(f"{kwargs.get('title', '')}: {message}")
        real_notify(message, **kwargs)

    app.notify = notify
    return notes


async def test_after_posting_no_key_acts_on_the_posted_plan(tui_home, make_app, small_sims) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        notes = noting(app)
        await settle(pilot)
        app.engine.fetch()
        await pilot.press("4")
        await settle(pilot, 6)
        screen = app.screen
        assert screen.plan is not None and screen.plan.vouchers
        assert screen.check_action("confirm_post", ()) is True
        posted = len(screen.plan.vouchers)
        # Hold the re-plan after posting: the window in which a stale plan used to stay live.
        gate = threading.Event()
        real_plan = app.engine.plan_for_review

        def gated(*args: Any, **kwargs: Any) -> Any:
            gate.wait(30)
            return real_plan(*args, **kwargs)

        app.engine.plan_for_review = gated
        await pilot.press("p")
        await settle(pilot)
        await pilot.press("y")
        await wait_until(pilot, lambda: not screen.posting and screen.plan is None)
        # Posted; the plan on screen is gone and `c` is disabled, with the reason shown.
        assert screen.check_action("confirm_post", ()) is None
        summary = str(screen.query_one("#plan-summary").render())
        assert "re-planning" in summary and "p waits" in summary, summary
        await pilot.press("p")
        await pilot.pause()
        assert len(sim_control(small_sims.ifs_url, "vouchers")) == posted
        gate.set()
        await settle(pilot, 6)
        # The new plan: nothing left to post, `c` stays disabled and says why.
        assert screen.plan is not None and not screen.plan.vouchers
        assert screen.why_no_post() == "nothing to post"
        assert screen.check_action("confirm_post", ()) is None
        await pilot.press("p")
        await settle(pilot)
        assert len(sim_control(small_sims.ifs_url, "vouchers")) == posted
        assert not any("posted meanwhile" in n for n in notes), notes


async def test_sync_shows_progress_while_it_runs(tui_home, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        gate = threading.Event()
        real_cycle = app.engine.run_cycle

        def gated(*args: Any, **kwargs: Any) -> Any:
            gate.wait(30)
            return real_cycle(*args, **kwargs)

        app.engine.run_cycle = gated
        await pilot.press("s")
        await wait_until(pilot, lambda: "elapsed" in app.sync_progress)
        header = str(app.screen.query_one("#status-header").render())
        assert "sync: " in header and "starting" not in header, header
        gate.set()
        await settle(pilot, 6)
        assert app.sync_progress == ""


async def test_mapping_refuses_a_value_ifs_does_not_have(tui_home, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot, 6)
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("slash", *"New Lab", "enter")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        field = app.screen.query_one("#mapping-input")
        field.value = "9999"
        # The answer for 9999 itself (the value the editor opened with is checked first).
        await wait_until(
            pilot, lambda: app.screen.checked is not None and app.screen.checked[0] == "9999"
        )
        validation = str(app.screen.query_one("#validation").render())
        assert "missing" in validation and "not a code part" in validation, validation
        await pilot.press("enter")
        await settle(pilot)
        # Refused where it was typed: nothing saved, the editor still open with the reason.
        assert app.engine.mapping_view() is not None
        assert not [e for e in app.engine.mapping_view().entries if e.override]
        assert app.screen.query_one("#mapping-editor").display
        validation = str(app.screen.query_one("#validation").render())
        assert "not saved" in validation and "not a code part" in validation, validation


def test_close_opens_on_the_month_being_closed() -> None:
    from datetime import date

    from console.views import close_period_choice, default_close_period

    assert default_close_period(date(2026, 12, 4), 10) == (2026, 11)
    assert default_close_period(date(2026, 12, 10), 10) == (2026, 11)
    assert default_close_period(date(2026, 12, 11), 10) == (2026, 12)
    assert default_close_period(date(2027, 1, 3), 10) == (2026, 12)
    assert default_close_period(date(2026, 12, 1), 0) == (2026, 12)
    assert close_period_choice("2026-09", date(2026, 12, 4), 10) == (2026, 9)
    assert close_period_choice("garbage", date(2026, 12, 4), 10) == (2026, 11)


def test_close_setting_is_validated() -> None:
    import pytest
    from pydantic import ValidationError

    from console.config import Settings

    assert Settings().tui.close_previous_month_until_day == 10
    with pytest.raises(ValidationError):
        Settings.model_validate({"tui": {"close_previous_month_until_day": 32}})


async def test_close_remembers_the_period_and_has_one_header(
    isolated_env, small_sims, make_app
) -> None:
    from tests.tui.conftest import write_home

    write_home(isolated_env, small_sims.expensify_url, small_sims.ifs_url)
    config = isolated_env / "config.toml"
    # The tests run as of 2026-11-30: through the 30th of a month, the previous month.
    config.write_text(
        config.read_text().replace(
            "close_previous_month_until_day = 10", "close_previous_month_until_day = 30"
        )
    )
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot, 6)
        assert app.screen.period.label == "2026-10"
        table = app.screen.query_one("#close-table")
        titles = [str(c.label) for c in table.columns.values()]
        assert titles.count("company") == 1 and titles[-1] == "diff", titles
        await pilot.press("left_square_bracket")
        await settle(pilot, 6)
        assert app.screen.period.label == "2026-09"
    app2 = make_app()
    async with app2.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot, 6)
        assert app2.screen.period.label == "2026-09"


async def test_filters_find_what_the_rows_show(tui_home, make_app) -> None:
    from console.mapping import MappingRule

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot, 6)
        pending = table(pilot, "#pending-table")
        assert pending.total == 4

        async def pending_filter(text: str) -> set[str]:
            await pilot.press("slash", "ctrl+u", *text, "enter")
            await settle(pilot)
            return {pending.row_at(i).key for i in range(pending.total)}

        # Rows say "⏸ held …" and "✔ ready": the status as shown is searched.
        assert await pending_filter("held") == {"90000004"}
        assert await pending_filter("ready") == {"90000001", "90000002", "90000003"}
        # Amounts as shown (with or without the thousands separator) and dates.
        assert await pending_filter("689.99") == {"90000002"}
        assert await pending_filter("2026-11-05") == {"90000002"}
        app.engine.set_mapping(MappingRule("POL-US", "tag:Cost Center", "New Lab", "CC-100"))
        await pilot.press("5")
        await settle(pilot)
        audit = table(pilot, "#audit-table")

        async def audit_filter(text: str) -> list[Any]:
            await pilot.press("slash", "ctrl+u", *text, "enter")
            await settle(pilot)
            return [audit.row_at(i).payload for i in range(audit.total)]

        # "mapping" names no summary word, but the event type the Event column shows.
        found = await audit_filter("mapping")
        assert found and {e.type for e in found} == {"mapping-changed"}
        # The event says what the value was before, and the screen shows it.
        previous = found[0].data["previous"]
        shown = str(audit.row_at(0).cells["summary"])
        assert previous and f"{previous} → CC-100" in shown, shown
        # The fetched event's total as shown, not in cents; and found by that amount.
        found = await audit_filter("505.60")
        assert [e.type for e in found] == ["fetched"]
        shown = str(audit.row_at(0).cells["summary"])
        assert "505.60 USD" in shown and "50560" not in shown, shown


async def test_report_timeline_shows_money_not_cents(tui_home, make_app) -> None:
    from screens.audit import TimelineScreen

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot, 6)
        app.push_screen(TimelineScreen("90000001"))
        await settle(pilot)
        timeline = table(pilot, "#timeline")
        summaries = [str(timeline.row_at(i).cells["summary"]) for i in range(timeline.total)]
        assert any("505.60 USD" in s for s in summaries), summaries
        assert not any("50560" in s for s in summaries), summaries


def screen_text(app: Any) -> str:
    return "\n".join(
        "".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()
    )


async def test_amounts_are_whole_at_80_by_24(tui_home, make_app) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot, 6)
        shown = screen_text(app)
        # Columns drop by priority; the amount and the status stay whole.
        assert "689.99 USD" in shown and "⏸ held" in shown, shown
        assert "1 Pending" in shown.splitlines()[1], shown  # the header's own two lines
        await pilot.press("4")
        await settle(pilot, 6)
        shown = screen_text(app)
        assert "482.10" in shown and "1,619.84 USD" in shown, shown


async def test_help_explains_the_screen_not_the_widget(tui_home, make_app) -> None:
    from screens.widgets import HelpModal

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpModal)
        text = screen_text(app)
        assert "Help — Missing dimensions" in text and "VirtualTable" not in text, text
        assert "Held reports grouped by what blocks them" in text, text
        assert "Post…" in text and "Colours" in text and "⏸ held" in text, text
        assert "super+c" not in text and "Next open period" not in text, text
        # Keys that cannot act here are not offered: nothing opens a group, nothing marks.
        assert "Mark —" not in text, text


async def test_exclude_undone_drill_down_and_header_follow(tui_home, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot, 6)
        header = app.screen.query_one("#status-header")
        assert "held 1" in str(header.render())
        # Exclude the held report from Missing (asks why, then confirms).
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("tab")
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        await pilot.press(*"duplicate", "enter")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot, 6)
        assert app.engine.report_statuses(["90000004"]) == {"90000004": "excluded"}
        await pilot.press("1")
        await settle(pilot)
        header = app.screen.query_one("#status-header")
        assert "held 0" in str(header.render()), str(header.render())
        # Pending lists it as excluded; `i` is offered on it alone and undoes it, audited.
        pending = table(pilot, "#pending-table")
        keys = [pending.row_at(i).key for i in range(pending.total)]
        pending.cursor_row = keys.index("90000001")
        await pilot.pause()
        assert app.screen.check_action("include", ()) is False
        pending.cursor_row = keys.index("90000004")
        await pilot.pause()
        assert app.screen.check_action("include", ()) is True
        await pilot.press("i")
        await settle(pilot)
        await pilot.press(*"wrong report", "enter")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot, 6)
        assert app.engine.report_statuses(["90000004"]) == {"90000004": "held"}
        from console.views import AuditFilter

        events = app.engine.audit_page(AuditFilter(report_id="90000004", types=("included",)))
        assert events and events[0].data["excluded_reason"] == "duplicate"
        # A drill-down follows a write made while it is open.
        await pilot.press("escape")
        pending.cursor_row = keys.index("90000001")
        await pilot.press("enter")
        await settle(pilot)
        facts = app.screen.query_one("#report-facts")
        assert "ready" in str(facts.render())
        app.engine.post_reviewed(app.engine.plan_for_review(["90000001"]))
        app.core_changed()
        await settle(pilot, 6)
        assert "posted" in str(facts.render()), str(facts.render())


async def test_a_key_typed_right_after_enter_goes_to_the_list(tui_home, make_app) -> None:
    from textual import events

    from screens.widgets import FilterBar

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot, 6)
        pending = table(pilot, "#pending-table")
        await pilot.press("slash", *"ready")
        await settle(pilot)
        # Enter and `j` arrive together, as when typed in one go: the terminal hands both
        # over before the app has handled the first.
        for key, char in (("enter", "\r"), ("j", "j")):
            event = events.Key(key, char)
            event.set_sender(app)
            app._driver.send_message(event)
        await settle(pilot)
        bar = app.screen.query_one(FilterBar)
        assert bar.value == "ready"  # `j` did not land in the filter…
        assert app.focused is pending
        assert pending.total == 3
        assert pending.cursor_row == 1  # …but moved the list's cursor down
        # Esc right after enter clears the filter the same way, and the next key is the list's.
        await pilot.press("slash")
        for key, char in (("escape", "\x1b"), ("j", "j")):
            event = events.Key(key, char)
            event.set_sender(app)
            app._driver.send_message(event)
        await settle(pilot)
        assert bar.value == ""
        assert app.focused is pending
        assert pending.total == 4
        assert pending.cursor_row == 1  # the whole list again, from the top, then `j`
