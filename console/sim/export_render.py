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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path
from typing import Any, Literal

from console.sim.dataset import Policy, Report, Transaction

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "expensify" / "export.ftl"

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

# (output key, path into the model hash, helper): the order of export.ftl.
REPORT_FIELDS: tuple[tuple[str, tuple[str, ...], Kind], ...] = (
    ("reportID", ("reportID",), "s"),
    ("reportName", ("reportName",), "s"),
    ("status", ("status",), "s"),
    ("policyID", ("policyID",), "s"),
    ("policyName", ("policyName",), "s"),
    ("accountEmail", ("accountEmail",), "s"),
    ("submitterName", ("submitter", "fullName"), "s"),
    ("managerEmail", ("managerEmail",), "s"),
    ("currency", ("currency",), "s"),
    ("total", ("total",), "n"),
    ("created", ("created",), "s"),
    ("submitted", ("submitted",), "s"),
    ("approved", ("approved",), "s"),
    ("reimbursed", ("reimbursed",), "s"),
)
TRANSACTION_FIELDS: tuple[tuple[str, tuple[str, ...], Kind], ...] = (
    ("transactionID", ("transactionID",), "s"),
    ("reportID", ("reportID",), "s"),
    ("merchant", ("merchant",), "s"),
    ("modifiedMerchant", ("modifiedMerchant",), "s"),
    ("amount", ("amount",), "n"),
    ("modifiedAmount", ("modifiedAmount",), "n"),
    ("convertedAmount", ("convertedAmount",), "n"),
    ("currency", ("currency",), "s"),
    ("currencyConversionRate", ("currencyConversionRate",), "s"),
    ("category", ("category",), "s"),
    ("categoryGlCode", ("categoryGlCode",), "s"),
    ("tag", ("tag",), "s"),
    ("tagGlCode", ("tagGlCode",), "s"),
    ("comment", ("comment",), "s"),
    ("created", ("created",), "s"),
    ("modifiedCreated", ("modifiedCreated",), "s"),
    ("inserted", ("inserted",), "s"),
    ("reimbursable", ("reimbursable",), "b"),
    ("billable", ("billable",), "b"),
    ("cardID", ("cardID",), "s"),
    ("cardNumber", ("cardNumber",), "s"),
    ("mcc", ("mcc",), "s"),
    ("receiptID", ("receiptID",), "s"),
    ("receiptURL", ("receiptObject", "url"), "s"),
)


class TemplateRenderError(ValueError):
    """The model holds something FreeMarker would stop on (a hash where text is expected)."""


# ------------------------------------------------------------------ the data model
def export_model(reports: Iterable[Report], policies: Iterable[Policy] = ()) -> dict[str, Any]:
    """The FreeMarker data model for these reports, as the Integration Server builds it."""
    by_id = {p.id: p for p in policies}
    people: dict[str, tuple[str, str]] = {}
    for p in by_id.values():
        for emp in p.employees:
            people.setdefault(emp.email, (f"{emp.firstName} {emp.lastName}".strip(), emp.submitsTo))
    return {"reports": [_report_hash(r, by_id.get(r.policyID), people) for r in reports]}


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
        "transactionList": [
            _transaction_hash(report, t, categories) for t in report.transactionList
        ],
    }
    return h


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
        "cardID": t.cardID,
        "cardNumber": t.cardNumber,
        "mcc": t.mcc,
        "receiptID": t.receiptID,
        # Expensify serves an empty receiptObject for an expense without a receipt.
        "receiptObject": {"url": t.receiptURL} if t.receiptURL else {},
    }


# ------------------------------------------------------------------ rendering
def render_export(model: Mapping[str, Any]) -> str:
    """What FreeMarker writes for export.ftl with this data model."""
    out: list[str] = ["["]
    reports = _seq(model.get("reports"), "reports")
    for i, r in enumerate(reports):
        r = _hash(r, "reports[]")
        out.append("{")
        for key, path, kind in REPORT_FIELDS:
            out.append(f'"{key}":{_field(r, path, kind)},')
        out.append('"transactions":[')
        txs = _seq(r.get("transactionList"), "transactionList")
        for j, e in enumerate(txs):
            e = _hash(e, "transactionList[]")
            out.append(
                "{"
                + ",".join(
                    f'"{key}":{_field(e, path, kind)}' for key, path, kind in TRANSACTION_FIELDS
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


def _seq(v: Any, name: str) -> Sequence[Any]:
    if v is None:
        return ()
    if isinstance(v, list | tuple):
        return v
    raise TemplateRenderError(f"{name} is not a sequence")


def _hash(v: Any, name: str) -> Mapping[str, Any]:
    if isinstance(v, Mapping):
        return v
    raise TemplateRenderError(f"{name} is not a hash")


def _lookup(h: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    # `(a.b)!""`: a missing or null value anywhere along the path is the default.
    v: Any = h
    for i, key in enumerate(path):
        if v is None:
            return None
        if not isinstance(v, Mapping):
            raise TemplateRenderError(f"{'.'.join(path[:i])} is not a hash")
        v = v.get(key)
    return v


def _field(h: Mapping[str, Any], path: tuple[str, ...], kind: Kind) -> str:
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
    raise TemplateRenderError(f"{'.'.join(path)} is a {type(v).__name__}, not text")


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
