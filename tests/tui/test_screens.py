"""Pilot tests: each screen's main path driven by keys against the real simulators."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from screens.app import describe_cycle, describe_warnings
from screens.base import StatusHeader
from screens.vtable import VirtualTable
from screens.widgets import ConfirmModal
from tests.conftest import sim_control

SIZE = (160, 48)


async def settle(pilot: Pilot[Any], rounds: int = 4) -> None:
    """Let workers finish and their results land (call_from_thread → message → refresh)."""
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def mapping_filtered(pilot: Pilot[Any], text: str) -> VirtualTable:
    """After a sync, the Mapping screen filtered by `text`: its table."""
    await settle(pilot)
    await sync(pilot)
    await pilot.press("2")
    await settle(pilot)
    await pilot.press("slash", *text, "enter")
    await settle(pilot)
    return table(pilot, "#mapping-table")


async def sync(pilot: Pilot[Any]) -> None:
    await pilot.press("s")
    await settle(pilot, 6)
    assert pilot.app.sync_progress == ""


def table(pilot: Pilot[Any], selector: str) -> VirtualTable:
    return pilot.app.screen.query_one(selector, VirtualTable)


async def missing_after_sync(pilot: Pilot[Any]) -> VirtualTable:
    """After a sync, the Missing dimensions screen: its table of groups."""
    await settle(pilot)
    await sync(pilot)
    await pilot.press("3")
    await settle(pilot)
    return table(pilot, "#groups")


async def test_switch_screens_filter_and_drill_in(tui_home, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.engine is not None
        # Fetched and evaluated, nothing posted yet: four pending reports.
        app.engine.fetch()
        app.engine.evaluate()
        app.core_changed()
        await settle(pilot)
        pending = table(pilot, "#pending-table")
        assert pending.total == 4
        for key, mode in zip(
            "23451", ["mapping", "missing", "dryrun", "audit", "pending"], strict=True
        ):
            await pilot.press(key)
            await settle(pilot)
            assert app.current_mode == mode
        # `/` filters the list in SQL; esc clears it.
        await pilot.press("slash", *"90000003", "enter")
        await settle(pilot)
        assert pending.total == 1
        assert pending.cursor is not None and pending.cursor.key == "90000003"
        # Enter drills into the report's lines.
        await pilot.press("enter")
        await settle(pilot)
        lines = table(pilot, "#lines-table")
        assert lines.total == 2
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("slash", "escape")
        await settle(pilot)
        assert table(pilot, "#pending-table").total == 4
        # `a` marks every ready report, `d` sends them to the dry run.
        await pilot.press("a")
        await settle(pilot)
        assert len(pending.marked) == 3
        await pilot.press("d")
        await settle(pilot, 6)
        assert app.current_mode == "dryrun"
        assert sorted(app.dry_run_selection) == sorted(pending.marked)
        assert len(app.screen.plan.vouchers) == 3
        # The console's sync reads and checks but posts nothing: posting is the Dry run's
        # confirm. All four reports stay pending and IFS holds no voucher.
        await sync(pilot)
        await pilot.press("1")
        await settle(pilot)
        assert table(pilot, "#pending-table").total == 4
        assert "nothing posted" in describe_cycle(app.last_cycle)
        assert app.last_cycle.posted == 0


async def test_mapping_edit_validates_live_and_saves(tui_home, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        mapping = await mapping_filtered(pilot, "New Lab")
        # One per policy that has the tag: POL-EU, POL-JP, POL-US.
        assert mapping.total == 3
        await pilot.press("down", "down", "enter")
        await settle(pilot)
        field = app.screen.query_one("#mapping-input")
        assert field.value == "CC-410"
        await settle(pilot)
        await pilot.pause(0.3)  # the debounce timer of the live check
        await settle(pilot)
        validation = str(app.screen.query_one("#validation").render())
        assert "missing" in validation, validation
        field.value = "CC-100"
        await pilot.pause(0.3)
        await settle(pilot)
        validation = str(app.screen.query_one("#validation").render())
        assert "ok" in validation and "CC-100" in validation, validation
        # Enter shows the change and saves nothing yet; esc backs out of it.
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal)
        change = str(app.screen.query_one("#confirm-body").render())
        assert "'New Lab' of policy POL-US" in change and "code part B" in change, change
        assert "old  CC-410" in change and "new  CC-100" in change, change
        assert "Affects 1 report (1 held)" in change, change
        assert "ok CC-100" in change, change  # IFS's verdict
        await pilot.press("escape")
        await settle(pilot)
        assert app.engine.store.mapping_rules() == []
        assert app.screen.query_one("#mapping-editor").display
        assert app.screen.query_one("#mapping-input").value == "CC-100"
        # Enter again, and y: saved.
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot, 6)
        rules = app.engine.store.mapping_rules()
        assert [(r.kind, r.source, r.rule["target"]) for r in rules] == [
            ("tag:Cost Center", "New Lab", "CC-100")
        ]
        events = app.engine.store.audit_page(None, limit=50)
        assert any(e.type == "mapping-changed" for e in events)


async def test_held_group_turns_ready_and_replays(tui_home, make_app, small_sims) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        groups = await missing_after_sync(pilot)
        held = [groups.row_at(i) for i in range(groups.total)]
        cc410 = [r for r in held if r and "CC-410" in r.payload[1].code]
        assert cc410, [r.payload[1].code for r in held if r]
        assert cc410[0].payload[0] == "held"
        sim_control(
            small_sims.ifs_url,
            "code-part-values",
            "POST",
            {
                "Company": "10",
                "CodePart": "B",
                "CodePartValue": "CC-410",
                "Description": "New Lab",
                "ValidFrom": "2020-01-01",
                "ValidUntil": "2099-12-31",
            },
        )
        await pilot.press("r")
        await settle(pilot, 6)
        rows = [groups.row_at(i) for i in range(groups.total)]
        ready = [r for r in rows if r and "CC-410" in r.payload[1].code]
        assert ready and ready[0].payload[0] == "ready"
        groups.cursor_row = rows.index(ready[0])
        # `p` posts: it asks first and shows what; `n` posts nothing.
        await pilot.press("p")
        await settle(pilot)
        from screens.widgets import ConfirmModal

        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        await settle(pilot)
        assert sim_control(small_sims.ifs_url, "vouchers") == []
        await pilot.press("p")
        await settle(pilot)
        assert "90000004" in str(app.screen.query_one("#confirm-body").render())
        await pilot.press("y")
        await settle(pilot, 8)
        vouchers = sim_control(small_sims.ifs_url, "vouchers")
        refs = [v["ReferenceNumber"] for v in vouchers]
        assert any(ref.startswith("EXP:90000004:") for ref in refs), refs


async def test_dry_run_confirm_posts_exactly_the_plan(tui_home, make_app, small_sims) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.engine.fetch()  # fetched, not posted: the dry run shows what is ready
        await pilot.press("4")
        await settle(pilot, 6)
        plan = app.screen.plan
        assert plan is not None and plan.vouchers
        expected = sorted(v.reference_number for v in plan.vouchers)
        assert sim_control(small_sims.ifs_url, "vouchers") == []
        await pilot.press("p")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot, 8)
        vouchers = sim_control(small_sims.ifs_url, "vouchers")
        assert sorted(v["ReferenceNumber"] for v in vouchers) == expected
        landed = str(app.screen.query_one("#landed").render())
        assert "posted" in landed
        # The confirmed post is a run of its own: the header says what it did, the audit
        # trail frames it like a sync.
        runs = app.engine.store.runs(1)
        assert runs[0].mode == "post-reviewed" and runs[0].summary["posted"] == len(expected)
        header = str(app.screen.query_one(StatusHeader).render())
        assert "last post " in header and f"posted {len(expected)}" in header, header
        assert "fetched" not in header


async def test_audit_filter_timeline_and_chain(tui_home, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await sync(pilot)
        await pilot.press("5")
        await settle(pilot)
        audit = table(pilot, "#audit-table")
        total = audit.total
        assert total > 4
        first = audit.cursor
        # Newest first: the checkpoint that signs the cycle, after its run-finished event.
        assert first is not None and first.payload.type == "checkpoint"
        await pilot.press("slash", *"type:fetched", "enter")
        await settle(pilot)
        assert audit.total == 4
        await pilot.press("enter")
        await settle(pilot)
        timeline = table(pilot, "#timeline")
        assert timeline.total >= 2
        assert timeline.row_at(0).payload.type == "fetched"  # oldest first
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        assert "chain intact" in str(app.screen.query_one("#audit-count").render())


async def test_keymap_from_config_remaps_bindings(isolated_env, small_sims, make_app) -> None:
    from tests.tui.conftest import write_home

    write_home(isolated_env, small_sims.expensify_url, small_sims.ifs_url)
    text = (isolated_env / "config.toml").read_text()
    text = text.replace("[tui]\nkeys = {}", '[tui]\nkeys = { "app.audit" = "f5" }')
    (isolated_env / "config.toml").write_text(text)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f5")
        await settle(pilot)
        assert app.current_mode == "audit"


async def test_help_shows_the_focused_widgets_help(tui_home, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        from screens.widgets import HelpModal

        assert isinstance(app.screen, HelpModal)
        assert "space marks it" in str(app.screen.query(".help-body").first().render())
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpModal)


async def test_mapping_lists_what_the_config_maps_and_says_where_to_change_it(
    tui_home, make_app
) -> None:
    """Issue 16: the mapping screen shows the tax codes, report fields and billable lines the
    posting config maps (the demo's: EU VAT codes, the Engagement field, billable projects),
    and an edit on one of them says which config key sets it instead of saving anything."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        mapping = await mapping_filtered(pilot, "tax code")
        rows = [mapping.row_at(i) for i in range(mapping.total)]
        eu = {r.payload.source: r.payload.default for r in rows if r.payload.policy_id == "POL-EU"}
        assert eu == {"VAT0": "Z0", "VAT10": "R10", "VAT20": "S20"}
        assert all(r.payload.configured_in == "tax_code_by_policy" for r in rows)
        await pilot.press("enter")
        await settle(pilot)
        assert not app.screen.query_one("#mapping-editor").display
        said = [n.message for n in app._notifications]
        assert any("[posting] tax_code_by_policy" in m for m in said), said
        await pilot.press("escape", "slash", *"Engagement", "enter")
        await settle(pilot)
        found = [mapping.row_at(i).payload for i in range(mapping.total)]
        assert {(e.kind, e.code_part) for e in found} == {("report field", "D")}
    assert app.engine.store.mapping_rules() == []


async def test_a_sync_shows_its_warnings_not_only_its_counts(
    isolated_env, small_sims, make_app
) -> None:
    from console.sim.demo import DEMO_POSTING
    from tests.tui.conftest import write_home

    # A policy the credentials cannot see: every cycle names it (console/flows/cycle.py).
    companies = {**DEMO_POSTING["company_by_policy"], "POL-GONE": "10"}
    write_home(
        isolated_env,
        small_sims.expensify_url,
        small_sims.ifs_url,
        posting={"company_by_policy": companies},
    )
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await sync(pilot)
        warnings = [n for n in app._notifications if n.title == "Sync warnings"]
        assert len(warnings) == 1 and warnings[0].severity == "warning"
        assert "POL-GONE" in warnings[0].message and "not visible" in warnings[0].message
        assert describe_warnings(app.last_cycle).count("•") == len(app.last_cycle.warnings[:3])


async def test_remap_from_missing_lands_on_the_mapping_that_blocks(tui_home, make_app) -> None:
    """`m` on a group opens Mapping filtered by the value, the cursor on the row whose
    mapping holds the group's reports, not on the first policy's row of the same value."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        group = (await missing_after_sync(pilot)).cursor
        assert group is not None and "CC-410" in str(group.cells), group
        await pilot.press("m")
        await settle(pilot)
        assert app.current_mode == "mapping"
        mapping = table(pilot, "#mapping-table")
        assert mapping.total >= 1
        entry = mapping.cursor.payload
        assert entry.policy_id == "POL-US" and entry.default == "CC-410" and entry.affects, entry
