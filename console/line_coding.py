"""A line's row beyond its account and tag code parts (issue 16): the project (and activity) a
billable line is billed to, the quantity of a distance or per-diem line where the account
demands one, and the link to the line's receipt. Pure; the map, validate and plan stages call
in here through small hooks. Every setting is in `[posting]` and off by default, so vouchers
post exactly as before.

Billable lines (`billable_project_code_part`, `billable_project_from`,
`billable_activity_from`): a line Expensify marks `billable` carries the project it is billed
to in the company's project code part (IFS derives the row's ProjectId from it) and, when
configured, the project activity in the row's `ProjectActivityId` (IFS's "Activity Sequence
No", a number). The project comes from the named source (`tag:<level>`, `report:<field>` or
`employee:<field>`), else from whatever already fills that code part (tag, report field,
employee default: console/code_sources.py). A billable line with no project is held
(`billable-without-project`); with an activity source set, one with no activity or one that is
not an activity number is held too (`billable-without-activity`, `invalid-activity:{value}`).
Lines not billable are coded as before.

Quantity: Expensify's distance and per-diem lines carry `units` (count, rate, unit). A row
posts `Quantity` = the units count where its account demands a quantity (IFS's ReqQuantity
Mandatory); only a line without units on such an account holds the report.

The receipt (`receipt_on_row`): "url" puts the receipt's link at the end of the expense row's
Text (IFS's VoucherRow.Text holds 200 characters); the transaction ID and the URL are kept
whole and the merchant is shortened to make room. A URL that does not fit is replaced by the
receipt's ID (`receipt <receiptID>`), and the dry run says so: never cut. "id" posts the ID
only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, ValidationInfo

from console import code_sources

PROJECT_ACTIVITY_FIELD = "ProjectActivityId"
QUANTITY_FIELD = "Quantity"
RECEIPT_OFF, RECEIPT_URL, RECEIPT_ID = "", "url", "id"
# The code parts a `[posting]` key may name (A is the account) and the employee fields of
# Expensify's export (reference/expensify.md §2c); console.config checks against the same.
CODE_PARTS = tuple("BCDEFGHIJ")
EMPLOYEE_FIELDS = (
    "employeeCustomField1",
    "employeeCustomField2",
    "submitterPayrollID",
    "submitterUserID",
)
# IFS's ProjectActivityId is a NUMBER (an activity sequence number); 15 digits as elsewhere.
_ACTIVITY_DIGITS_MAX = 15


def _check_source(value: str, key: str) -> str:
    value = value.strip()
    if not value:
        return ""
    kind, _, name = value.partition(":")
    if kind not in ("tag", "report", "employee") or not name.strip():
        raise ValueError(
            f"{key} = {value!r}: name a source as 'tag:<level>', 'report:<field>' or"
            " 'employee:<field>'"
        )
    if kind == "employee" and name not in EMPLOYEE_FIELDS:
        raise ValueError(
            f"{key}: {name!r} is not an employee field: one of {', '.join(EMPLOYEE_FIELDS)}"
        )
    return f"{kind}:{name.strip()}"


def _source(value: str, info: ValidationInfo) -> str:
    return _check_source(value, str(info.field_name))


def _code_part_or_empty(value: str) -> str:
    norm = value.strip().upper()
    if norm and norm not in CODE_PARTS:
        raise ValueError(f"{value!r} is not a code part; one of B to J (A is the account)")
    return norm


# Checked `[posting]` values: where a value comes from ('tag:<level>', 'report:<field>',
# 'employee:<field>' or empty), and a code part letter (uppercased) or empty.
SourceName = Annotated[str, AfterValidator(_source)]
OptionalCodePart = Annotated[str, AfterValidator(_code_part_or_empty)]


class LineCodingFields(BaseModel):
    """The `[posting]` keys of billable lines and receipts (PostingConfig takes them in)."""

    billable_project_code_part: OptionalCodePart = Field(
        "",
        description="the code part (B..J) a billable line's project goes in (IFS's project"
        " code part); empty: billable lines are coded as any other",
    )
    billable_project_from: SourceName = Field(
        "",
        description="where a billable line's project comes from: 'tag:<level>',"
        " 'report:<field>' or 'employee:<field>'; empty: whatever fills the code part",
    )
    billable_activity_from: SourceName = Field(
        "",
        description="where a billable line's project activity (IFS's activity sequence"
        " number, ProjectActivityId) comes from; empty: no activity",
    )
    receipt_on_row: Literal["", "url", "id"] = Field(
        "",
        description="the receipt on the expense row's Text: 'url' (its link; its ID where the"
        " link does not fit), 'id' (its ID); empty: none",
    )


# ---------------------------------------------------------------- billable lines


@dataclass(frozen=True)
class Billing:
    """One line's billing: the holds it raises and the row fields it adds."""

    holds: tuple[tuple[str, str], ...] = ()  # (code, message)
    fields: tuple[tuple[str, Any], ...] = ()


NO_BILLING = Billing()


def billing_on(posting: LineCodingFields) -> bool:
    return bool(posting.billable_project_code_part)


def _source_kind(source: str) -> tuple[str, str]:
    """(mapping kind, field) of a configured source: 'report:Client' → ('report-field:Client',
    'Client'), 'tag:Project' → ('tag:Project', 'Project')."""
    kind, _, name = source.partition(":")
    if kind == "report":
        return code_sources.report_field_kind(name), name
    if kind == "employee":
        return code_sources.employee_field_kind(name), name
    return source, name


def _describe(source: str) -> str:
    return code_sources.describe(_source_kind(source)[0])


def source_value(
    report: Any,
    source: str,
    tag_value: Callable[[str], tuple[str, str | None]],
    override: Callable[[str, str], str | None],
) -> tuple[str, str, str]:
    """(value, kind, raw) a configured source gives a line; value "" when it gives none.
    `tag_value(level)` is (the line's tag at that level, its code or None)."""
    kind, name = _source_kind(source)
    if source.startswith("tag:"):
        raw, code = tag_value(name)
        return (code or "") if raw else "", kind, raw
    raw = code_sources.value_of(report, kind, name)
    if not raw:
        return "", kind, ""
    return override(kind, raw) or raw, kind, raw


def bill(
    report: Any,
    tx: Any,
    code_parts: dict[str, str],
    sources: dict[str, tuple[str, str]],
    posting: LineCodingFields,
    tag_value: Callable[[str], tuple[str, str | None]],
    override: Callable[[str, str], str | None],
    label: str,
) -> Billing:
    """Give a billable line its project (into `code_parts`, recording its source) and its
    activity (as a row field); holds where it has none."""
    letter = posting.billable_project_code_part
    if not letter or not getattr(tx, "billable", False):
        return NO_BILLING
    holds: list[tuple[str, str]] = []
    project_from = posting.billable_project_from
    if project_from:
        value, kind, raw = source_value(report, project_from, tag_value, override)
        if value:
            code_parts[letter] = value
            sources[letter] = (kind, raw)
        elif raw:  # a tag with no code: say which
            holds.append(
                (
                    "billable-without-project",
                    f"The billable expense {label} has the {_describe(project_from)} '{raw}',"
                    f" which has no code: set one in Expensify or map it to an IFS code part"
                    f" {letter} value in the console.",
                )
            )
    if letter not in code_parts and not holds:
        where = f"the {_describe(project_from)}" if project_from else f"code part {letter}"
        holds.append(
            (
                "billable-without-project",
                f"The expense {label} is billable, and it names no project to bill it to"
                f" ({where} is empty; posting.billable_project_code_part = {letter}): set the"
                " project in Expensify, or mark the expense not billable.",
            )
        )
    fields: tuple[tuple[str, Any], ...] = ()
    activity_from = posting.billable_activity_from
    if activity_from:
        value, _kind, raw = source_value(report, activity_from, tag_value, override)
        if not value:
            holds.append(
                (
                    "billable-without-activity",
                    f"The expense {label} is billable, and it names no project activity"
                    f" ({_describe(activity_from)} is empty; posting.billable_activity_from):"
                    " set it in Expensify, or mark the expense not billable.",
                )
            )
        elif not value.isdigit() or len(value) > _ACTIVITY_DIGITS_MAX:
            holds.append(
                (
                    f"invalid-activity:{value}",
                    f"The billable expense {label} names the project activity '{value}'"
                    f" ({_describe(activity_from)}), and IFS's activity is its sequence number"
                    " (digits only): correct it in Expensify or map it in the console.",
                )
            )
        else:
            fields = ((PROJECT_ACTIVITY_FIELD, int(value)),)
    return Billing(tuple(holds), fields)


# ---------------------------------------------------------------- quantity


def quantity_of(tx: Any) -> Decimal | None:
    """A distance or per-diem line's units count (Expensify's `units.count`), None without."""
    count = getattr(tx, "unitsCount", None)
    return count if isinstance(count, Decimal) else None


def units_text(tx: Any) -> str:
    """'42.5 mi' for a message or the dry run."""
    count = quantity_of(tx)
    if count is None:
        return ""
    unit = str(getattr(tx, "unitsUnit", "") or "")
    return f"{format(count, 'f')} {unit}".strip()


# ---------------------------------------------------------------- the receipt


@dataclass(frozen=True)
class RowText:
    """An expense row's Text and, when the receipt link had to give way, why."""

    text: str
    note: str = ""


def _fit(head: str, merchant: str, tail: str, limit: int, trim: Callable[[str, int], str]) -> str:
    """`head merchant tail`, the merchant shortened so that it fits in `limit`."""
    room = limit - len(head) - len(tail) - 2
    if not merchant or room < 2:
        return f"{head} {tail}"
    return f"{head} {trim(merchant, room)} {tail}"


def row_text(
    tx: Any,
    posting: LineCodingFields,
    limit: int,
    plain: str,
    trim: Callable[[str, int], str],
) -> RowText:
    """The Text of a line's expense row: `plain` (the ID and merchant) as before, or with the
    receipt as `receipt_on_row` says."""
    mode = posting.receipt_on_row
    if mode not in (RECEIPT_URL, RECEIPT_ID):
        return RowText(plain)
    tid = str(tx.transactionID)
    merchant = " ".join(str(tx.display_merchant).split())
    url = " ".join(str(getattr(tx, "receiptURL", "") or "").split())
    receipt_id = " ".join(str(getattr(tx, "receiptID", "") or "").split())
    if mode == RECEIPT_URL and url:
        if len(tid) + 1 + len(url) <= limit:
            return RowText(_fit(tid, merchant, url, limit, trim))
        note = f"receipt URL of {len(url)} characters does not fit the row's Text ({limit})"
        if receipt_id and len(tid) + 9 + len(receipt_id) <= limit:
            return RowText(
                _fit(tid, merchant, f"receipt {receipt_id}", limit, trim),
                note + f"; posted as receipt {receipt_id}",
            )
        return RowText(plain, note + "; posted without it")
    if receipt_id and len(tid) + 9 + len(receipt_id) <= limit:
        return RowText(_fit(tid, merchant, f"receipt {receipt_id}", limit, trim))
    return RowText(plain)
