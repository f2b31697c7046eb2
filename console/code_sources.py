"""Code parts from beyond a line's tag (issue 16): the report's fields and the employee's
defaults, as Expensify's own NetSuite connector offers ("tags, report fields or employee
default"). Pure; the map stage calls `fill` for each line after its tags.

Order of precedence, per code part (a code part takes the first that gives it a value):
1. the line's tag (code_part_by_tag_level and the tag-level rules);
2. a report field (`posting.code_part_by_report_field = {"<field>" = "<letter>"}`): the
   report's value of the field, the same for every line of the report;
3. the employee's default (`posting.code_part_by_employee_field = {"<employee field>" =
   "<letter>"}`, one of the report's employee fields: employeeCustomField1/2,
   submitterPayrollID, submitterUserID).
`posting.code_part_sources_by_policy = {"<policy>" = {...}}` replaces both tables for one
policy (keys `report:<field>` and `employee:<field>`), so one workspace may code from a
report field that another does not have.

A value maps to itself unless the operator maps it (mapping rule kinds
``report-field:<field>`` and ``employee-field:<field>``, per policy like tag values):
report fields and employee fields carry no GL code of their own. An empty value gives
nothing and the next source is tried. Values are then validated like any code part value
(missing or invalid in IFS holds the report, naming where the value came from).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

REPORT_FIELD_PREFIX = "report-field:"
EMPLOYEE_FIELD_PREFIX = "employee-field:"
_REPORT_KEY = "report:"
_EMPLOYEE_KEY = "employee:"


def report_field_kind(field: str) -> str:
    return REPORT_FIELD_PREFIX + field


def employee_field_kind(field: str) -> str:
    return EMPLOYEE_FIELD_PREFIX + field


class SourceRules(Protocol):
    """The `[posting]` keys read here (console.config.PostingConfig has them)."""

    @property
    def code_part_by_report_field(self) -> Mapping[str, str]: ...

    @property
    def code_part_by_employee_field(self) -> Mapping[str, str]: ...

    @property
    def code_part_sources_by_policy(self) -> Mapping[str, Mapping[str, str]]: ...


def sources_of(posting: SourceRules, policy_id: str) -> list[tuple[str, str, str]]:
    """(letter, kind, field) in the order they are tried after the tags, for one policy."""
    own = posting.code_part_sources_by_policy.get(policy_id)
    if own is not None:
        report = {
            k.removeprefix(_REPORT_KEY): v for k, v in own.items() if k.startswith(_REPORT_KEY)
        }
        employee = {
            k.removeprefix(_EMPLOYEE_KEY): v for k, v in own.items() if k.startswith(_EMPLOYEE_KEY)
        }
    else:
        report = dict(posting.code_part_by_report_field)
        employee = dict(posting.code_part_by_employee_field)
    out = [(letter, report_field_kind(f), f) for f, letter in report.items()]
    out += [(letter, employee_field_kind(f), f) for f, letter in employee.items()]
    return out


def value_of(report: Any, kind: str, field: str) -> str:
    """The report's value for a report field or an employee field ("" when it has none)."""
    if kind.startswith(REPORT_FIELD_PREFIX):
        return str((getattr(report, "reportFields", None) or {}).get(field, "") or "").strip()
    return str(getattr(report, field, "") or "").strip()


def fill(
    report: Any,
    code_parts: dict[str, str],
    sources: dict[str, tuple[str, str]],
    tried: list[tuple[str, str, str]],
    override: Callable[[str, str], str | None],
) -> None:
    """Give each code part the line's tags left empty the first value of `tried` that has
    one, recording (kind, value) as its source. `override(kind, value)` is the operator's
    mapping of that value, if any."""
    for letter, kind, field in tried:
        if letter in code_parts:
            continue
        value = value_of(report, kind, field)
        if not value:
            continue
        code_parts[letter] = override(kind, value) or value
        sources[letter] = (kind, value)


def describe(kind: str) -> str:
    """Where a code part came from, in words: 'tag Cost Center', 'report field Department'."""
    if kind.startswith(REPORT_FIELD_PREFIX):
        return "report field " + kind.removeprefix(REPORT_FIELD_PREFIX)
    if kind.startswith(EMPLOYEE_FIELD_PREFIX):
        return "employee default " + kind.removeprefix(EMPLOYEE_FIELD_PREFIX)
    if kind.startswith("tag:"):
        return "tag " + kind.removeprefix("tag:")
    return kind or "tag"
