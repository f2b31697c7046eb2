"""A report's lines as rows: merchant, category, tags, mapped account and code parts, and each
line's validation state (from the evaluation when there is one, else the stored holds); a
posted report's lines as they were posted."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from console import code_sources
from console.money import minor_to_decimal
from console.views import PostedCoding
from screens.literal import literal
from screens.theme import status_text
from screens.vtable import Row


def _validated(evaluation: Any) -> Any:
    """ReportEvaluation wraps a ValidatedReport (or is one); anything else means no evaluation."""
    if evaluation is None or isinstance(evaluation, Exception):
        return None
    for name in ("validated", "validation"):
        inner = getattr(evaluation, name, None)
        if inner is not None:
            return inner
    return evaluation if hasattr(evaluation, "mapped") else None


def _line_row(line: Any, account: str, parts: str, state: Text, payload: Any) -> Row:
    """One line as the Lines table shows it, whether as evaluated or as posted."""
    return Row(
        key=line.transaction_id,
        cells={
            "tx": literal(line.transaction_id, 20),
            "merchant": literal(line.merchant, 60),
            "category": literal(line.category, 30),
            "tag": literal(line.tag, 40),
            "amount": Text(f"{minor_to_decimal(line.amount_minor):,.2f}"),
            "account": literal(account or "—", 12),
            "parts": literal(parts or "—", 40),
            "state": state,
        },
        payload=payload,
    )


def _posted_rows(detail: Any, coding: PostedCoding) -> list[Row]:
    """A posted report's lines with the account and code parts they were posted with."""
    rows = []
    voucher = coding.voucher_no or coding.reference
    for line in detail.lines:
        posted = coding.lines.get(line.transaction_id, ())
        if line.amount_minor == 0:
            state = status_text("excluded", "zero amount, not posted")
        elif posted:
            state = status_text("posted", voucher)
        else:
            # Posted before the console kept each line's coding, or adopted from IFS.
            state = status_text("posted", f"{voucher}; coding not recorded here")
        accounts = sorted({p.account for p in posted})
        parts = sorted({" ".join(f"{k}={v}" for k, v in p.code_parts) for p in posted})
        coded = "; ".join(p for p in parts if p)
        rows.append(_line_row(line, ", ".join(accounts), coded, state, (line, posted, [])))
    return rows


def line_rows(detail: Any, evaluation: Any) -> list[Row]:
    if isinstance(evaluation, PostedCoding):
        return _posted_rows(detail, evaluation)
    validated = _validated(evaluation)
    mapped_by_tx: dict[str, Any] = {}
    report_holds: list[Any] = list(getattr(validated, "holds", []) or [])
    mapped = getattr(validated, "mapped", None)
    for line in getattr(mapped, "lines", []) or []:
        mapped_by_tx[line.transaction_id] = line
    held_by_tx: dict[str, list[Any]] = {}
    for h in report_holds:
        tx = getattr(h, "transaction_id", "")
        if tx:
            held_by_tx.setdefault(tx, []).append(h)
    rows = []
    for line in detail.lines:
        m = mapped_by_tx.get(line.transaction_id)
        issues = list(getattr(m, "issues", ()) or ()) + held_by_tx.get(line.transaction_id, [])
        if m is None:
            state = status_text("unknown", "not evaluated")
        elif line.amount_minor == 0:
            state = status_text("excluded", "zero amount, not posted")
        elif issues:
            state = status_text("held", "; ".join(sorted({str(i.code) for i in issues})))
        else:
            state = status_text("ok")
        sources = getattr(m, "code_part_sources", {}) or {}
        parts = " ".join(
            f"{k}={v}" + _from(sources.get(k))
            for k, v in sorted((getattr(m, "code_parts", {}) or {}).items())
        )
        account = getattr(m, "account", None) or ""
        rows.append(_line_row(line, account, parts, state, (line, m, issues)))
    return rows


def _from(source: tuple[str, str] | None) -> str:
    """' (report field Department)' for a code part that did not come from the line's tag."""
    if not source or source[0].startswith("tag:"):
        return ""
    return f" ({code_sources.describe(source[0])})"
