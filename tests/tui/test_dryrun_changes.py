"""The Dry run shows what the core plans beyond the vouchers: the accrual reversals due today and
the reports changed after posting (the reversal of the old accrual beside the new accrual), and
the operator confirms a change from the console with `a` then `y`."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from screens.vtable import VirtualTable
from tests.conftest import sim_control, small_dataset_raw
from tests.tui.test_screens import SIZE

NOV_30 = "2026-11-30"
DEC_1 = "2026-12-01"


async def settle(pilot: Pilot[Any], rounds: int = 4) -> None:
    """Workers finish and their results land. A re-plan replaces the running plan worker
    (exclusive), and waiting on a replaced worker reports it cancelled: wait again."""
    for _ in range(rounds):
        for _attempt in range(10):
            try:
                await pilot.app.workers.wait_for_complete()
                break
            except WorkerCancelled:
                continue
        await pilot.pause()


def refs(sims: Any, prefix: str) -> Counter[str]:
    return Counter(
        v["ReferenceNumber"].split(":")[1]
        for v in sim_control(sims.ifs_url, "/__sim/vouchers")
        if v["ReferenceNumber"].startswith(prefix)
    )


def plan_table(pilot: Pilot[Any]) -> VirtualTable:
    return pilot.app.screen.query_one("#plan-table", VirtualTable)


def table_text(pilot: Pilot[Any]) -> str:
    rows = plan_table(pilot).source.fetch(0, 10_000)
    return "\n".join(
        (r.span.plain if r.span is not None else " ".join(str(c) for c in r.cells.values()))
        for r in rows
    )


def static_text(pilot: Pilot[Any], selector: str) -> str:
    return str(pilot.app.screen.query_one(selector).render())


def notifications(pilot: Pilot[Any]) -> list[str]:
    return [n.message for n in pilot.app._notifications]


async def test_changed_report_shown_side_by_side_and_confirmed(
    tui_home: Any, make_app: Any, small_sims: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_CONSOLE_AS_OF", NOV_30)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        # Post the small world (90000004 stays held), as `--auto` would.
        app.engine.run_cycle()
        assert refs(small_sims, "EXP:")["90000001"] == 1
        # Expensify re-approves 90000001 with a different amount; a sync notices.
        report = copy.deepcopy(
            next(
                r
                for r in small_dataset_raw()["expensify"]["reports"]
                if r["reportID"] == "90000001"
            )
        )
        report["transactionList"][0]["amount"] = 50000
        report["transactionList"][0]["convertedAmount"] = 50000
        sim_control(small_sims.expensify_url, "/__sim/reports", "POST", report)
        await pilot.press("s")
        await settle(pilot, 6)
        await pilot.press("4")
        await settle(pilot, 6)
        plan = app.screen.plan
        assert [c["reportID"] for c in plan.changes] == ["90000001"]
        change = plan.changes[0]
        old_ref = change["reversal"].reference
        new_ref = change["accrual"].reference_number
        assert old_ref.startswith("REV:90000001:") and new_ref.startswith("EXP:90000001:")
        # Side by side: the reversal of the old accrual, the new accrual.
        assert app.screen.query_one("#change-compare").display
        old_side = static_text(pilot, "#change-old")
        new_side = static_text(pilot, "#change-new")
        assert old_ref in old_side and "Reversal of the old accrual" in old_side
        assert new_ref in new_side and "500.00" in new_side
        assert "CHANGED AFTER POSTING 90000001" in table_text(pilot)
        # Nothing posts before the operator confirms.
        assert refs(small_sims, "REV:")["90000001"] == 0
        # The change row is the table's last: End, then c, then y.
        await pilot.press("end")
        await settle(pilot)
        assert app.screen.selected_change() is not None
        await pilot.press("c")
        await settle(pilot)
        modal_text = static_text(pilot, "#confirm-body")
        assert "90000001" in modal_text and old_ref in modal_text and new_ref in modal_text
        await pilot.press("y")
        await settle(pilot, 8)
        assert refs(small_sims, "REV:")["90000001"] == 1
        assert refs(small_sims, "EXP:")["90000001"] == 2
        exp = {
            v["ReferenceNumber"]
            for v in sim_control(small_sims.ifs_url, "/__sim/vouchers")
            if v["ReferenceNumber"].startswith("EXP:90000001:")
        }
        assert new_ref in exp
        # Re-planned: the change is settled and no longer offered.
        assert app.screen.plan.changes == []
        assert not app.screen.query_one("#change-compare").display


async def test_due_reversals_listed_and_confirm_change_says_why_not(
    tui_home: Any, make_app: Any, small_sims: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_CONSOLE_AS_OF", NOV_30)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.engine.run_cycle()
        monkeypatch.setenv("ML_CONSOLE_AS_OF", DEC_1)
        await pilot.press("4")
        await settle(pilot, 6)
        plan = app.screen.plan
        assert sorted(rv.report_id for rv in plan.reversals) == [
            "90000001",
            "90000002",
            "90000003",
        ]
        text = table_text(pilot)
        for rv in plan.reversals:
            assert rv.reference in text and str(rv.voucher_date) == DEC_1
        assert "3 reversals due" in static_text(pilot, "#plan-summary")
        # Listed, not posted: reviewing reads only.
        assert refs(small_sims, "REV:") == Counter()
        # No changed report: `c` is not offered (shown disabled) and does nothing.
        assert app.screen.check_action("confirm_change", ()) is None
        await pilot.press("c")
        await settle(pilot)
        assert len(app.screen_stack) == 1
        # `p` posts the plan as shown: here only its due reversals, each exactly once.
        await pilot.press("p")
        await settle(pilot)
        assert "REV:90000001:" in static_text(pilot, "#confirm-body")
        await pilot.press("y")
        await settle(pilot, 8)
        assert refs(small_sims, "REV:") == Counter(["90000001", "90000002", "90000003"])
        assert app.screen.plan.reversals == []
