"""Re-planning is incremental (console/flows/incremental.py): after a write only what changed
is evaluated again, and the plan is the one a fresh engine would make from scratch. The
speed is a figure of `make bench` (bench/replan_bench.py); these tests keep it correct."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bench.world import World, as_of, demo, world
from console.flows.cycle import Engine
from console.mapping import MappingRule
from console.plan import Plan

# The demo closes November 2026; on 5 December its accruals' reversals are due at once.
DAY = "2026-12-05"
MISSING_CC = ("51004417", "51019262", "51033808")  # held: cost centre CC-410 not in IFS
UNMAPPED = ("51008671", "51030554")  # held: a category without GL code


@pytest.fixture
def demo_world() -> Iterator[World]:
    with as_of(DAY), world(demo(60)) as w:
        w.engine.fetch()
        yield w


def shape(plan: Plan) -> dict[str, Any]:
    """What the operator sees of a plan: vouchers, holds, reversals due."""
    return {
        "vouchers": [(v.reference_number, v.totals()) for v in plan.vouchers],
        "held": sorted((h.report_id, tuple(x.code for x in h.holds)) for h in plan.held),
        "skipped": sorted(s.report_id for s in plan.skipped),
        "reversals": sorted((r.reference, r.voucher_date) for r in plan.reversals),
    }


def fresh_plan(w: World) -> Plan:
    """The plan an engine without any cache makes of the same store and services."""
    e = w.engine
    other = Engine(e.settings, e.store, None, actor="fresh", expensify=e.expensify, ifs=e.ifs)
    return other.plan_for_review()


def held_ids(plan: Plan) -> set[str]:
    return {h.report_id for h in plan.held}


def test_after_posting_the_plan_keeps_the_held_and_adds_the_reversals_without_re_evaluating(
    demo_world: World,
) -> None:
    e = demo_world.engine
    first = e.plan_for_review()
    assert first.vouchers and set(MISSING_CC) <= held_ids(first)
    summary = e.post_reviewed(first)
    assert summary.posted == len(first.vouchers)
    misses, ifs_before = e._evaluations.misses, demo_world.ifs_requests()
    after = e.plan_for_review()
    assert e._evaluations.misses == misses, "a held report was evaluated again"
    assert not after.vouchers, "a posted report is still in the plan"
    assert held_ids(after) == held_ids(first)
    assert len(after.reversals) > 0.8 * len(first.vouchers), "the reversals now due are missing"
    # One bulk read of the company's accruals, not one per accrual: on IFS's real API that
    # is the hold table's rows, the GL's rows (a voucher leaves the hold table once IFS
    # updates it to the GL) and the hold table's headers (the voucher texts).
    assert demo_world.ifs_requests() - ifs_before <= 3, "accruals read back one by one"
    assert shape(after) == shape(fresh_plan(demo_world))


def test_a_changed_mapping_re_evaluates_what_it_affects(demo_world: World) -> None:
    e = demo_world.engine
    before = e.plan_for_review()
    assert set(UNMAPPED) <= held_ids(before)
    detail = e.report_detail(UNMAPPED[0])
    assert detail is not None
    category = next(
        h.code.split(":", 1)[1] for h in detail.holds if h.code.startswith("unmapped-category:")
    )
    rule = MappingRule(
        policy_id=detail.report.policy_id, kind="category", source=category, target="6110"
    )
    e.set_mapping(rule)
    after = e.plan_for_review()
    released = {rid for rid in UNMAPPED if rid not in held_ids(after)}
    assert released, "the remapped reports are still held"
    assert shape(after) == shape(fresh_plan(demo_world))


def test_a_new_ifs_dimension_re_evaluates_the_reports_that_looked_it_up(
    demo_world: World,
) -> None:
    e = demo_world.engine
    before = e.plan_for_review()
    assert set(MISSING_CC) <= held_ids(before)
    ready = len(before.vouchers)
    httpx.post(
        demo_world.sims.ifs_url + "/__sim/code-part-values",
        json={
            "Company": "10",
            "CodePart": "B",
            "CodePartValue": "CC-410",
            "Description": "New Lab",
            "ValidFrom": "2020-01-01",
            "ValidUntil": "2099-12-31",
        },
        timeout=10,
    ).raise_for_status()
    misses = e._evaluations.misses
    after = e.plan_for_review(refresh=True)
    assert not set(MISSING_CC) & held_ids(after), "the new cost centre released nothing"
    assert len(after.vouchers) == ready + len(MISSING_CC)
    # Only the reports that looked CC-410 up (and any other report using it) ran again.
    assert e._evaluations.misses - misses < ready / 2
    assert shape(after) == shape(fresh_plan(demo_world))


def test_a_report_changed_in_the_store_is_evaluated_again(demo_world: World) -> None:
    e = demo_world.engine
    e.plan_for_review()
    misses = e._evaluations.misses
    e.plan_for_review()
    assert e._evaluations.misses == misses, "an unchanged store re-evaluated something"
    # A new fetch that changes nothing keeps the verdicts; a closed period moves them all.
    e.fetch()
    e.plan_for_review()
    assert e._evaluations.misses == misses
