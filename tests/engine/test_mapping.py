"""Map stage: defaults from Expensify, operator overrides win, problems become holds."""

from __future__ import annotations

from console.expensify.models import PolicyInfo
from console.mapping import (
    MappingOverrides,
    MappingRule,
    map_report,
    map_reports,
    mapping_usage,
    split_tag,
    suggest_defaults,
)
from console.report_hash import content_hash, is_legacy, legacy_content_hash, same_content

from .engine_world import POLICIES, POLICY, Posting, line, report


def mapped(rep, posting=None, overrides=None):
    return map_report(rep, POLICIES, posting or Posting(), overrides or MappingOverrides())


def test_defaults_come_from_expensify_gl_codes():
    m = mapped(report([line("T1", 100, category="Meals", categoryGlCode="", tag="Sales:Apollo")]))
    assert m.company == "10"
    assert m.currency == "USD"
    assert m.problems == []
    (ln,) = m.lines
    assert ln.account == "6120"  # the policy category's glCode
    assert ln.code_parts == {"B": "CC-200", "C": "PRJ-1"}
    assert ln.amount_minor == 100
    assert ln.reimbursable is True


def test_line_category_gl_code_wins_over_policy_gl_code():
    m = mapped(report([line("T1", 100, category="Meals", categoryGlCode="6125")]))
    assert m.lines[0].account == "6125"


def test_operator_overrides_win_over_defaults():
    overrides = MappingOverrides.from_rules(
        [
            MappingRule("POL-US", "category", "Airfare", "7000", "ana", "2026-11-01T10:00"),
            MappingRule("POL-US", "tag:Cost Center", "New Lab", "CC-999"),
        ]
    )
    m = mapped(report([line("T1", 100, categoryGlCode="6110")]), overrides=overrides)
    assert m.lines[0].account == "7000"
    assert m.lines[0].code_parts == {"B": "CC-999", "C": "PRJ-1"}


def test_rule_for_every_policy_applies_but_the_policys_own_rule_wins():
    every = MappingOverrides({("", "category", "Airfare"): "7000"})
    assert mapped(report(), overrides=every).lines[0].account == "7000"
    both = MappingOverrides(
        {("", "category", "Airfare"): "7000", ("POL-US", "category", "Airfare"): "7100"}
    )
    assert mapped(report(), overrides=both).lines[0].account == "7100"


def test_store_rows_with_rule_dicts_become_overrides():
    class Row:
        kind = "category"
        policy_id = "POL-US"
        source = "Airfare"
        rule = {"target": "7200"}

    overrides = MappingOverrides.from_store_rows([Row()])
    assert mapped(report(), overrides=overrides).lines[0].account == "7200"


def test_unknown_policy_is_held_with_its_id():
    m = mapped(report(policyID="POL-XX", policyName="Contractors"))
    assert m.company is None
    assert m.problems[0].code == "unknown-policy:POL-XX"
    assert "company_by_policy" in m.problems[0].message
    assert "Contractors" in m.problems[0].message


def test_category_without_gl_code_or_override_is_unmapped():
    m = mapped(report([line("T1", 100, category="Uncoded", categoryGlCode="")]))
    assert [h.code for h in m.problems] == ["unmapped-category:Uncoded"]
    assert "R00123" in m.problems[0].message and "T1" in m.problems[0].message
    fixed = mapped(
        report([line("T1", 100, category="Uncoded", categoryGlCode="")]),
        overrides=MappingOverrides({("POL-US", "category", "Uncoded"): "6130"}),
    )
    assert fixed.problems == [] and fixed.lines[0].account == "6130"


def test_disabled_category_still_maps():
    m = mapped(report([line("T1", 100, category="Old Stuff", categoryGlCode="")]))
    assert m.problems == [] and m.lines[0].account == "6999"


def test_tag_not_in_policy_is_unmapped_with_level_and_tag():
    m = mapped(report([line("T1", 100, tag="Moon Base:Apollo")]))
    assert [h.code for h in m.problems] == ["unmapped-tag:Cost Center:Moon Base"]


def test_tag_without_gl_code_is_unmapped_unless_overridden():
    m = mapped(report([line("T1", 100, tag="Nowhere")]))
    assert [h.code for h in m.problems] == ["unmapped-tag:Cost Center:Nowhere"]
    fixed = mapped(
        report([line("T1", 100, tag="Nowhere")]),
        overrides=MappingOverrides({("POL-US", "tag:Cost Center", "Nowhere"): "CC-100"}),
    )
    assert fixed.problems == [] and fixed.lines[0].code_parts == {"B": "CC-100"}


def test_level_without_code_part_is_ignored():
    # "Region" is the third level and not in code_part_by_tag_level: the company does not book it.
    m = mapped(report([line("T1", 100, tag="New Lab:Apollo:EMEA")]))
    assert m.problems == []
    assert m.lines[0].code_parts == {"B": "CC-410", "C": "PRJ-1"}


def test_level_without_code_part_but_with_value_override_is_held():
    overrides = MappingOverrides({("POL-US", "tag:Region", "EMEA"): "EU1"})
    m = mapped(report([line("T1", 100, tag="New Lab:Apollo:EMEA")]), overrides=overrides)
    assert [h.code for h in m.problems] == ["unmapped-tag:Region:EMEA"]
    assert "code_part_by_tag_level" in m.problems[0].message


def test_tag_level_rule_places_a_level_on_a_code_part():
    overrides = MappingOverrides({("POL-US", "tag-level", "Region"): "D"})
    m = mapped(report([line("T1", 100, tag="New Lab:Apollo:EMEA")]), overrides=overrides)
    assert m.problems == []
    assert m.lines[0].code_parts == {"B": "CC-410", "C": "PRJ-1", "D": "EM"}
    assert m.level_by_code_part["D"] == "Region"


def test_empty_tag_levels_add_no_code_part_and_no_hold():
    m = mapped(report([line("T1", 100, tag=""), line("T2", 5, tag=":Apollo")]))
    assert m.problems == []
    assert m.lines[0].code_parts == {}
    assert m.lines[1].code_parts == {"C": "PRJ-1"}


def test_config_letter_outside_b_to_j_is_held():
    # The config refuses A on load; the stage holds it anyway (defence in depth).
    posting = Posting().model_copy(update={"code_part_by_tag_level": {"Cost Center": "A"}})
    m = mapped(report([line("T1", 100, tag="New Lab")]), posting=posting)
    assert [h.code for h in m.problems] == ["unmapped-tag:Cost Center:New Lab"]


def test_problems_on_zero_lines_do_not_hold_the_report():
    m = mapped(report([line("T1", 100), line("T0", 0, category="Nope", categoryGlCode="")]))
    assert m.problems == []
    assert m.lines[1].issues[0].code == "unmapped-category:Nope"


def test_same_problem_on_many_lines_is_one_hold_that_counts_them():
    lines = [line(f"T{i}", 100, category="Uncoded", categoryGlCode="") for i in range(3)]
    m = mapped(report(lines))
    assert [h.code for h in m.problems] == ["unmapped-category:Uncoded"]
    assert "2 more line(s)" in m.problems[0].message


def test_all_problems_are_kept_unknown_policy_first():
    m = mapped(
        report(
            [line("T1", 100, category="Uncoded", categoryGlCode="", tag="Moon")],
            policyID="POL-XX",
        )
    )
    codes = [h.code for h in m.problems]
    assert codes[0] == "unknown-policy:POL-XX"
    assert "unmapped-category:Uncoded" in codes


def test_html_entities_are_unescaped_before_mapping():
    m = mapped(report([line("T1", 100, category="Meals", categoryGlCode="", merchant="A &amp; B")]))
    assert m.lines[0].account == "6120"
    assert m.lines[0].transaction.display_merchant == "A & B"


def test_split_tag_honours_escaped_colons():
    assert split_tag("") == []
    assert split_tag("New Lab:Apollo") == ["New Lab", "Apollo"]
    assert split_tag("Ops\\: North:Apollo") == ["Ops: North", "Apollo"]


def test_policy_read_once_per_policy_gives_same_result():
    reps = [report(reportID=f"R{i}") for i in range(3)]
    out = map_reports(reps, POLICIES, Posting())
    assert [m.lines[0].code_parts for m in out] == [{"B": "CC-410", "C": "PRJ-1"}] * 3


def test_mapping_usage_counts_reports_not_lines():
    reps = [
        report([line("T1", 1), line("T2", 2)], reportID="R1"),
        report([line("T3", 1, category="Meals", tag="Sales")], reportID="R2"),
    ]
    usage = mapping_usage(reps, POLICIES)
    assert usage[("POL-US", "category", "Airfare")] == 1
    assert usage[("POL-US", "category", "Meals")] == 1
    assert usage[("POL-US", "tag:Cost Center", "New Lab")] == 1
    assert usage[("POL-US", "tag:Cost Center", "Sales")] == 1
    assert usage[("POL-US", "tag:Project", "Apollo")] == 1
    # Without the policy, levels are named by position.
    assert mapping_usage(reps)[("POL-US", "tag:level 1", "Sales")] == 1


def test_suggest_defaults_lists_every_category_and_tag():
    rows = suggest_defaults(POLICY)
    pairs = {(r.kind, r.source): r.default_target for r in rows}
    assert pairs[("category", "Airfare")] == "6110"
    assert pairs[("category", "Uncoded")] == ""
    assert pairs[("tag:Cost Center", "New Lab")] == "CC-410"
    assert pairs[("tag:Project", "Apollo")] == "PRJ-1"
    assert not next(r for r in rows if r.source == "Old Stuff").enabled
    assert suggest_defaults(PolicyInfo(id="P")) == []


def test_content_hash_ignores_order_and_text_but_sees_money_and_coding():
    base = report([line("T1", 100), line("T2", 200)])
    h = content_hash(base)
    assert h.startswith("v2:") and len(h) == 67
    assert content_hash(report([line("T2", 200), line("T1", 100)])) == h
    assert content_hash(report([line("T1", 100, merchant="x"), line("T2", 200)])) == h
    assert (
        content_hash(report([line("T1", 100), line("T2", 200)], approved="2026-11-03 23:00")) == h
    )
    assert content_hash(report([line("T1", 101), line("T2", 200)])) != h
    assert content_hash(report([line("T1", 100, category="Meals"), line("T2", 200)])) != h
    assert content_hash(report([line("T1", 100, tag="Sales"), line("T2", 200)])) != h
    assert content_hash(report([line("T1", 100, reimbursable=False), line("T2", 200)])) != h
    assert content_hash(report([line("T1", 100), line("T2", 200)], currency="EUR")) != h
    assert content_hash(report([line("T1", 100), line("T2", 200)], approved="2026-11-04")) != h
    assert content_hash(report([line("T1", 100), line("T3", 200)])) != h


def test_content_hash_sees_tax_billable_units_and_the_fields_coding_reads():
    """What #16 posts is part of the content: a change to it is a change to the voucher."""
    two = [line("T1", 100), line("T2", 200)]
    h = content_hash(report(two))
    for changed in (
        report([line("T1", 100, taxAmount=17, taxCode="VAT20"), line("T2", 200)]),
        report([line("T1", 100, taxCode="VAT0"), line("T2", 200)]),
        report([line("T1", 100, billable=True), line("T2", 200)]),
        report([line("T1", 100, unitsCount=12, unitsRate="0.67"), line("T2", 200)]),
        report([line("T1", 100, tagGlCode="CC-1"), line("T2", 200)]),
        report([line("T1", 100, currency="EUR"), line("T2", 200)]),
        report(two, accountEmail="someone.else@example.com"),
        report(two, employeeCustomField1="E-77"),
        report(two, reportFields={"Project": "Apollo"}),
    ):
        assert content_hash(changed) != h
    # Exact units: 1.5 and 1.50 are the same number; descriptive text is not content.
    units = [line("T1", 100, unitsCount="1.5"), line("T2", 200)]
    same_units = [line("T1", 100, unitsCount="1.50"), line("T2", 200)]
    assert content_hash(report(units)) == content_hash(report(same_units))
    assert (
        content_hash(report([line("T1", 100, comment="x", receiptURL="u"), line("T2", 200)])) == h
    )


def test_a_version_one_hash_still_recognises_its_report():
    rep = report([line("T1", 100), line("T2", 200)])
    old = legacy_content_hash(rep)
    assert len(old) == 64 and is_legacy(old) and not is_legacy(content_hash(rep))
    new = content_hash(rep)
    assert same_content(old, rep, new) and same_content(new, rep, new)
    other = report([line("T1", 101), line("T2", 200)])
    assert not same_content(old, other, content_hash(other))
    assert not same_content(new, other, content_hash(other))
    assert not same_content(None, rep, new) and not same_content("", rep, new)
