"""The report export as Expensify would render the project's console/expensify/export.ftl.

Two halves:
- `export_model` builds the FreeMarker data model the Integration Server hands a report
  template (`reports`: report hashes with `transactionList`, `submitter.fullName`,
  `receiptObject.url`, amounts in cents, `status` as display text) from dataset reports.
- `render_export` turns such a model into exactly the bytes Apache FreeMarker 2.3.31 writes for
  export.ftl: the same null handling, `?c` number formatting and `?json_string` escaping.
  tests/sim/test_freemarker_parity.py holds it to real FreeMarker.

The model is plain JSON-shaped Python (dict, list, str, int, Decimal, bool, None), so the same
value can be dumped to JSON and fed to real FreeMarker.

A `RawReport` is a report stored exactly as a test gave it (`POST /__sim/reports` with
`"raw": true`): its values reach the template with whatever type they have, as a broken
Expensify record would. The template copes with most (a number where text is expected prints
as text, text where a number is expected prints `null`); where real FreeMarker stops (a list or
hash where text is expected, a `transactionList` that is not a list, a transaction that is not
a hash) `render_export` raises TemplateRenderError, or with `on_error="ignore"` does what
FreeMarker's IGNORE_HANDLER does: the failing `${…}` or `<#list>` writes nothing and rendering
goes on (which leaves `"amount":,` — invalid JSON — where a number field fails).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path
from typing import Any, Literal, cast

from console.sim.dataset import Policy, Report, Transaction

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "expensify" / "export.ftl"
# The project's second report template: the IDs an export selects (isolating a broken report).
REPORT_IDS_TEMPLATE_PATH = TEMPLATE_PATH.with_name("report_ids.ftl")

# reportState values (the API's vocabulary) -> the display status a template sees.
DISPLAY_STATUS = {
    "OPEN": "Open",
    "SUBMITTED": "Processing",
    "APPROVED": "Approved",
    "REIMBURSED": "Reimbursed",
    "ARCHIVED": "Closed",
    "REJECTED": "Open",  # a rejected report goes back to its submitter as an open report
}

Kind = Literal["s", "n", "b"]  # the template's helper functions: string, number, boolean

Field = tuple[str, tuple[str, ...], Kind]  # output key, path into the model hash, helper


def field_table(spec: str) -> tuple[Field, ...]:
    """A template's fields in its order, from `key[=path.into.hash][:kind]` words: the path
    defaults to the key, the kind to "s"."""
    table: list[Field] = []
    for word in spec.split():
        named, _, kind = word.partition(":")
        key, _, path = named.partition("=")
        if kind not in ("", "s", "n", "b"):
            raise ValueError(f"{word}: the kind is s, n or b")
        table.append((key, tuple((path or key).split(".")), cast(Kind, kind or "s")))
    return tuple(table)


# The order of export.ftl.
REPORT_FIELDS = field_table("""
    reportID reportName status policyID policyName accountEmail submitterName=submitter.fullName
    managerEmail currency total:n created submitted approved reimbursed
    employeeCustomField1 employeeCustomField2 submitterPayrollID submitterUserID
""")
# Each approval level in order, the last approver last (reference/expensify.md §0).
APPROVER_FIELDS = field_table("email date")
TRANSACTION_FIELDS = field_table("""
    transactionID reportID merchant modifiedMerchant amount:n modifiedAmount:n convertedAmount:n
    currency currencyConversionRate category categoryGlCode tag tagGlCode comment
    created modifiedCreated inserted reimbursable:b billable:b
    taxAmount:n taxCode taxName taxRateName cardID cardNumber mcc
    unitsCount=units.count:n unitsRate=units.rate:n unitsUnit=units.unit
    receiptID receiptURL=receiptObject.url
""")


class TemplateRenderError(ValueError):
    """The model holds something FreeMarker would stop on (a hash where text is expected)."""


OnError = Literal["rethrow", "ignore"]  # FreeMarker's RETHROW_HANDLER / IGNORE_HANDLER


def _text_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) else None


class RawReport:
    """A report held as given, mistyped or missing fields and all. The simulator selects it on
    the values it can read as text (an unreadable `approved` is treated as not approved, so
    approvedAfter lets it through); the template sees `raw` itself."""

    def __init__(self, raw: dict[str, Any], key: str, status: str) -> None:
        self.raw = raw
        self.reportID = key  # what reportIDList filters and labels go by
        self.policyID = _text_or_none(raw.get("policyID")) or ""
        self.accountEmail = _text_or_none(raw.get("accountEmail")) or ""
        self.status = status
        self.created = _text_or_none(raw.get("created")) or ""
        self.submitted = _text_or_none(raw.get("submitted")) or ""
        self.approved = _text_or_none(raw.get("approved"))
        self.reimbursed = _text_or_none(raw.get("reimbursed"))
        labels = raw.get("exportLabels")
        self.exportLabels: list[str] = (
            [x for x in labels if isinstance(x, str)] if isinstance(labels, list) else []
        )


# ------------------------------------------------------------------ the data model
def export_model(
    reports: Iterable[Report | RawReport], policies: Iterable[Policy] = ()
) -> dict[str, Any]:
    """The FreeMarker data model for these reports, as the Integration Server builds it."""
    by_id = {p.id: p for p in policies}
    people: dict[str, tuple[str, str]] = {}
    for p in by_id.values():
        for emp in p.employees:
            people.setdefault(emp.email, (f"{emp.firstName} {emp.lastName}".strip(), emp.submitsTo))
    return {
        "reports": [
            _raw_report_hash(r, by_id.get(r.policyID), people)
            if isinstance(r, RawReport)
            else _report_hash(r, by_id.get(r.policyID), people)
            | _employee_fields(by_id.get(r.policyID), r.accountEmail)
            for r in reports
        ]
    }


def _employee_fields(policy: Policy | None, email: str) -> dict[str, Any]:
    """The submitter's employee fields as the report model carries them: Expensify fills
    Custom Field 1 with the employee ID (reference/expensify.md §4); a field not set is null."""
    emp = next((e for e in policy.employees if e.email == email), None) if policy else None
    if emp is None:
        return {}
    return {
        "employeeCustomField1": emp.employeeID or None,
        "employeeCustomField2": emp.customField2 or None,
        "submitterPayrollID": emp.payrollID or None,
    }


def _raw_report_hash(
    report: RawReport, policy: Policy | None, people: Mapping[str, tuple[str, str]]
) -> dict[str, Any]:
    """The model hash of a raw report: its own values, whatever their type, plus what the
    Integration Server adds (display status, policy name, submitter, last approver, total)."""
    raw = report.raw
    full_name, submits_to = people.get(report.accountEmail, ("", ""))
    categories = {c.name: c.glCode for c in policy.categories} if policy else {}
    txs = raw.get("transactionList")
    h: dict[str, Any] = {key: value for key, value in raw.items() if key != "exportLabels"}
    h["status"] = DISPLAY_STATUS.get(report.status, report.status.title())
    h["policyName"] = policy.name if policy else None
    if "accountEmail" in raw:
        h["submitter"] = {"email": raw["accountEmail"], "fullName": full_name or None}
    if raw.get("managerEmail") is None:
        h["managerEmail"] = submits_to or None
    if report.reimbursed is not None:  # set by a reportStatus update since
        h["reimbursed"] = report.reimbursed
    if "total" not in raw:
        h["total"] = _raw_total(txs)
    if isinstance(txs, list):
        h["transactionList"] = [
            _raw_transaction_hash(raw.get("reportID"), t, categories) if isinstance(t, dict) else t
            for t in txs
        ]
    return h


def _raw_total(txs: Any) -> int | None:
    """What Expensify would total: only when every line has an integer amount."""
    if not isinstance(txs, list):
        return None
    total = 0
    for t in txs:
        amount = t.get("convertedAmount", t.get("amount")) if isinstance(t, dict) else None
        if amount is None and isinstance(t, dict):
            amount = t.get("amount")
        if not isinstance(amount, int) or isinstance(amount, bool):
            return None
        total += amount
    return total


def _raw_transaction_hash(
    report_id: Any, t: dict[str, Any], categories: Mapping[str, str]
) -> dict[str, Any]:
    h = dict(t)
    h.setdefault("reportID", report_id)
    category = t.get("category")
    if t.get("categoryGlCode") is None and isinstance(category, str) and category in categories:
        h["categoryGlCode"] = categories[category]
    if "receiptObject" not in t:
        url = h.pop("receiptURL", None)
        h["receiptObject"] = {"url": url} if url else {}
    return h


def _report_hash(
    report: Report, policy: Policy | None, people: Mapping[str, tuple[str, str]]
) -> dict[str, Any]:
    full_name, submits_to = people.get(report.accountEmail, ("", ""))
    categories = {c.name: c.glCode for c in policy.categories} if policy else {}
    h: dict[str, Any] = {
        "reportID": report.reportID,
        "reportName": report.reportName,
        "status": DISPLAY_STATUS.get(report.status, report.status.title()),
        "policyID": report.policyID,
        "policyName": policy.name if policy else None,
        "accountEmail": report.accountEmail,
        "submitter": {"email": report.accountEmail, "fullName": full_name or None},
        # The last approver; a dataset that names none means the submitter's approver.
        "managerEmail": report.managerEmail or submits_to or None,
        "currency": report.currency,
        "total": report.total,
        "created": report.created,
        "submitted": report.submitted,
        "approved": report.approved,
        "reimbursed": report.reimbursed,
        "approvers": _approvers(report, submits_to),
        "customField": dict(report.customField) or None,
        "transactionList": [
            _transaction_hash(report, t, categories) for t in report.transactionList
        ],
    }
    return h


def _approvers(report: Report, submits_to: str) -> list[dict[str, Any]]:
    """The dataset's approval levels; a report that names none but is approved had one, its
    last approver at the approval time."""
    if report.approvers:
        return [{"email": a.email, "date": a.date} for a in report.approvers]
    if report.approved:
        return [{"email": report.managerEmail or submits_to or None, "date": report.approved}]
    return []


def _transaction_hash(
    report: Report, t: Transaction, categories: Mapping[str, str]
) -> dict[str, Any]:
    gl = t.categoryGlCode if t.categoryGlCode is not None else categories.get(t.category)
    return {
        "transactionID": t.transactionID,
        "reportID": report.reportID,
        "merchant": t.merchant,
        "modifiedMerchant": t.modifiedMerchant,
        "amount": t.amount,
        "modifiedAmount": t.modifiedAmount,
        "convertedAmount": t.convertedAmount,
        "currency": t.currency,
        "currencyConversionRate": t.currencyConversionRate,
        "category": t.category,
        "categoryGlCode": gl,
        "tag": t.tag,
        "tagGlCode": t.tagGlCode,
        "comment": t.comment,
        "created": t.created,
        "modifiedCreated": t.modifiedCreated,
        "inserted": t.inserted,
        "reimbursable": t.reimbursable,
        "billable": t.billable,
        "taxAmount": t.taxAmount,
        "taxCode": t.taxCode,
        "taxName": t.taxName,
        "taxRateName": t.taxRateName,
        "cardID": t.cardID,
        "cardNumber": t.cardNumber,
        "mcc": t.mcc,
        "units": t.units.model_dump() if t.units is not None else None,
        "receiptID": t.receiptID,
        # Expensify serves an empty receiptObject for an expense without a receipt.
        "receiptObject": {"url": t.receiptURL} if t.receiptURL else {},
    }


# ------------------------------------------------------------------ rendering
def render_export(model: Mapping[str, Any], on_error: OnError = "rethrow") -> str:
    """What FreeMarker writes for export.ftl with this data model. With "rethrow" a value
    FreeMarker stops on raises TemplateRenderError; with "ignore" the failing interpolation or
    list writes nothing, as FreeMarker's IGNORE_HANDLER does."""
    ignore = on_error == "ignore"

    def field(h: Any, path: tuple[str, ...], kind: Kind) -> str:
        try:
            return _field(h, path, kind)
        except TemplateRenderError:
            if not ignore:
                raise
            # `"${…}"` keeps its quotes; a bare `${…}` (a number or boolean) leaves nothing.
            return '""' if kind == "s" else ""

    def hash_of(h: Any, key: str) -> Mapping[str, Any]:
        # `<#list (r.customField!{}) as k, v>`: a missing field lists nothing; one that is
        # not a hash stops FreeMarker.
        try:
            v = _lookup(h, (key,))
            if v is None:
                return {}
            if not isinstance(v, Mapping):
                raise TemplateRenderError(
                    f'For "#list" list source: expected a hash, but {key} has evaluated to '
                    f"{_ftl_type(v)}"
                )
            return v
        except TemplateRenderError:
            if not ignore:
                raise
            return {}

    def seq(h: Any, key: str) -> Sequence[Any]:
        try:
            return _seq(_lookup(h, (key,)), key)
        except TemplateRenderError:
            if not ignore:
                raise
            return ()

    out: list[str] = ["["]
    reports = seq(model, "reports")
    for i, r in enumerate(reports):
        out.append("{")
        for key, path, kind in REPORT_FIELDS:
            out.append(f'"{key}":{field(r, path, kind)},')
        out.append('"reportFields":{')
        out.append(
            ",".join(
                f'"{json_string(str(k))}":{field(fields, (k,), "s")}'
                for fields in (hash_of(r, "customField"),)
                for k in fields
            )
        )
        out.append("},")
        out.append('"approvers":[')
        approvers = seq(r, "approvers")
        out.append(
            ",".join(
                "{" + ",".join(f'"{k}":{field(a, p, kd)}' for k, p, kd in APPROVER_FIELDS) + "}"
                for a in approvers
            )
        )
        out.append("],")
        out.append('"transactions":[')
        txs = seq(r, "transactionList")
        for j, e in enumerate(txs):
            out.append(
                "{"
                + ",".join(
                    f'"{key}":{field(e, path, kind)}' for key, path, kind in TRANSACTION_FIELDS
                )
                + "}"
            )
            if j < len(txs) - 1:
                out.append(",")
        out.append("]}")
        if i < len(reports) - 1:
            out.append(",")
    out.append("]")
    return "".join(out)


def render_report_ids(model: Mapping[str, Any]) -> str:
    """What FreeMarker writes for console/expensify/report_ids.ftl: the reports' IDs as a JSON
    array of strings. It reads nothing but `reportID`, so a report that stops export.ftl
    elsewhere renders here (one whose reportID is a hash or a list still stops it)."""
    reports = _seq(_lookup(model, ("reports",)), "reports")
    return "[" + ",".join(_field(r, ("reportID",), "s") for r in reports) + "]"


def render_fields(h: Any, fields: Sequence[Field]) -> str:
    """The `"key":value` pairs of one hash, comma-joined, as the null-safe `s`/`n`/`b` helpers
    write them: for the project's other templates built from the same helpers (the card
    reconciliation export). Raises TemplateRenderError where FreeMarker would stop."""
    return ",".join(f'"{key}":{_field(h, path, kind)}' for key, path, kind in fields)


def _seq(v: Any, name: str) -> Sequence[Any]:
    if v is None:
        return ()
    if isinstance(v, list | tuple):
        return cast(Sequence[Any], v)
    raise TemplateRenderError(
        f'For "#list" list source: expected a sequence or collection, but {name} has evaluated '
        f"to {_ftl_type(v)}"
    )


def _ftl_type(v: Any) -> str:
    if isinstance(v, Mapping):
        return "an extended_hash"
    if isinstance(v, bool):
        return "a boolean"
    if _is_number(v):
        return "a number"
    if isinstance(v, str):
        return "a string"
    return "a sequence"


def _lookup(h: Any, path: tuple[str, ...]) -> Any:
    # `(a.b)!""`: a missing or null value anywhere along the path is the default; a value
    # that is there but not a hash stops FreeMarker.
    v: Any = h
    for i, key in enumerate(path):
        if v is None:
            return None
        if not isinstance(v, Mapping):
            where = ".".join(path[:i]) or "the list item"
            raise TemplateRenderError(
                f'For "." left-hand operand: expected a hash, but {where} has evaluated to '
                f"{_ftl_type(v)}"
            )
        v = v.get(key)
    return v


def _field(h: Any, path: tuple[str, ...], kind: Kind) -> str:
    v = _lookup(h, path)
    if kind == "s":
        return '"' + json_string(_ftl_s(v, path)) + '"'
    if kind == "n":
        return _ftl_c(v) if _is_number(v) else "null"
    return ("true" if v else "false") if isinstance(v, bool) else "null"


def _is_number(v: Any) -> bool:
    return isinstance(v, int | Decimal | float) and not isinstance(v, bool)


def _ftl_s(v: Any, path: tuple[str, ...]) -> str:
    """The template's `s` function applied to `v!""`."""
    if v is None:
        return ""
    if _is_number(v):
        return _ftl_c(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    raise TemplateRenderError(
        f'For "?string" left-hand operand: expected a number, date, boolean or string, but '
        f"{'.'.join(path)} has evaluated to {_ftl_type(v)}"
    )


def _ftl_c(v: int | Decimal | float) -> str:
    """FreeMarker 2.3.31's `?c` for the number types the model holds.

    Integers print in full. A decimal (a BigDecimal on the Java side) prints through
    DecimalFormat("0.################"): exact digits, at most 16 decimals rounded half-even,
    no exponent, no trailing zeros.
    """
    if isinstance(v, int):
        return str(v)
    d = Decimal(repr(v)) if isinstance(v, float) else v
    with localcontext() as ctx:
        ctx.prec = 1000  # room for 16 decimals on any magnitude the model can hold
        q = d.quantize(Decimal("1E-16"), rounding=ROUND_HALF_EVEN)
    text = format(q, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("0", "-0"):
        return "-0" if d < 0 else "0"
    return text


def json_string(s: str) -> str:
    """FreeMarker's `?json_string` (StringUtil.jsStringEnc in JSON mode), char for char."""
    out: list[str] = []
    last = len(s) - 1
    for i, c in enumerate(s):
        o = ord(c)
        if (0x3E < o < 0x7F and c != "\\") or c == " " or 0xA0 <= o < 0x2028:
            out.append(c)
        elif o <= 0x1F:
            out.append(_CONTROL.get(c) or f"\\u{o:04X}")
        elif c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "/" and (i == 0 or s[i - 1] == "<"):
            out.append("\\/")  # no "</script>" when the JSON lands in HTML
        elif c == ">":
            out.append("\\u003E" if _closes_cdata_or_comment(s, i) else ">")
        elif c == "<":
            out.append("\\u003C" if i == last or s[i + 1] in "!?" else "<")
        elif 0x7F <= o <= 0x9F or o in (0x2028, 0x2029):
            out.append(f"\\u{o:04X}")
        else:
            out.append(c)
    return "".join(out)


_CONTROL = {"\n": "\\n", "\r": "\\r", "\f": "\\f", "\b": "\\b", "\t": "\\t"}


def _closes_cdata_or_comment(s: str, i: int) -> bool:
    # FreeMarker escapes a '>' that could end "]]>" or "-->".
    if i == 0:
        return True
    prev = s[i - 1]
    if prev not in "]-":
        return False
    return i == 1 or s[i - 2] == prev
