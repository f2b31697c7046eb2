"""Read models (console/views.py): the mapping editor's usage counts and rows, from stored
reports, without the TUI."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from console.fetch import MALFORMED_KEY, dump_report, report_record
from console.store import DimensionRow, MappingRuleRow, Store
from console.views import (
    MappingEntry,
    MappingUsage,
    mapping_entries,
    mapping_usage,
    mapping_view,
)

from .engine_world import POLICIES, Posting, line, report

NOV_3 = date(2026, 11, 3)
NOV_5 = date(2026, 11, 5)


def stored_reports() -> list[dict[str, Any]]:
    """Three reports as the store keeps them (raw JSON), one malformed, one unreadable."""
    return [
        dump_report(
            report(
                [line("T1", 100), line("T2", 200)],  # Airfare, New Lab:Apollo twice
                reportID="R1",
                approved="2026-11-03 09:00:00",
            )
        ),
        dump_report(
            report([line("T3", 300, tag="Sales")], reportID="R2", approved="2026-11-05 10:00:00")
        ),
        dump_report(
            report(
                [line("T4", 400, category="Meals", tag="New Lab:Apollo:EMEA")],
                reportID="R3",
                approved="2026-11-03 17:00:00",
            )
        ),
        {MALFORMED_KEY: "no transactions", "reportID": "R4"},
        {"reportID": "R5"},  # not a report the model reads: skipped, never an error
    ]


def test_mapping_usage_counts_reports_per_source_with_their_approval_days() -> None:
    usage = mapping_usage(stored_reports(), POLICIES)
    assert all(isinstance(u, MappingUsage) for u in usage)
    assert usage == sorted(usage, key=lambda u: u.key)
    by_key = {u.key: (u.reports, u.dates) for u in usage}
    assert by_key == {
        # R1 uses Airfare on two lines: one report.
        ("POL-US", "category", "Airfare"): (2, (NOV_3, NOV_5)),
        ("POL-US", "category", "Meals"): (1, (NOV_3,)),
        ("POL-US", "tag:Cost Center", "New Lab"): (2, (NOV_3,)),
        ("POL-US", "tag:Cost Center", "Sales"): (1, (NOV_5,)),
        ("POL-US", "tag:Project", "Apollo"): (2, (NOV_3,)),
        ("POL-US", "tag:Region", "EMEA"): (1, (NOV_3,)),
    }


def test_mapping_usage_of_an_unknown_policy_names_tag_levels_by_position() -> None:
    usage = {u.key: u.reports for u in mapping_usage(stored_reports()[:1], {})}
    assert usage[("POL-US", "tag:level 1", "New Lab")] == 1


def test_mapping_entries_join_defaults_overrides_and_usage() -> None:
    rules = [
        MappingRuleRow("category", "POL-US", "Meals", {"target": "6130"}, "ana", "t"),
        MappingRuleRow("tag-level", "POL-US", "Region", {"target": "D"}, "ana", "t"),
    ]
    entries = mapping_entries(POLICIES, Posting(), rules, mapping_usage(stored_reports(), POLICIES))
    by_source = {(e.kind, e.source): e for e in entries}
    meals = by_source[("category", "Meals")]
    assert meals == MappingEntry(
        "POL-US", "10", "category", "Meals", "A", "6120", "6130", True, 1, (NOV_3,)
    )
    assert (meals.effective, meals.label) == ("6130", "category")
    airfare = by_source[("category", "Airfare")]
    assert (airfare.override, airfare.effective, airfare.affects) == ("", "6110", 2)
    # A tag level's code part: the operator's tag-level rule, else the posting config.
    assert by_source[("tag:Region", "EMEA")].code_part == "D"
    assert by_source[("tag:Cost Center", "Sales")].code_part == "B"
    assert by_source[("tag:Cost Center", "Sales")].label == "Cost Center"
    # Unused sources are listed too, affecting nothing.
    assert by_source[("category", "Old Stuff")].affects == 0
    assert not by_source[("category", "Old Stuff")].enabled


@pytest.fixture
def store(tmp_path: Any) -> Any:
    s = Store(tmp_path / "state" / "state.sqlite3")
    yield s
    s.close()


def test_mapping_view_reads_reports_still_to_post_and_cached_values(store: Store) -> None:
    store.upsert_reports(
        [
            report_record(report([line("T1", 100)], reportID="R1")),
            report_record(report([line("T2", 100, category="Meals")], reportID="R2")),
        ]
    )
    store.set_status("R2", "posted")  # posted: its mapping is history, not usage
    store.replace_dimensions(
        "10",
        [
            DimensionRow("10", "B", "CC-200", "Sales", "2020-01-01", "2099-12-31", "t"),
            DimensionRow("10", "B", "CC-410", "Lab", "2020-01-01", "2099-12-31", "t"),
        ],
    )
    view = mapping_view(store, POLICIES, Posting())
    affects = {(e.kind, e.source): e.affects for e in view.entries}
    assert affects[("category", "Airfare")] == 1
    assert affects[("category", "Meals")] == 0
    assert list(view.hints[("10", "B")]) == ["CC-200", "CC-410"]
