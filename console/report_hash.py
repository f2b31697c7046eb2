"""A stable hash of a report's postable content, kept by the store to notice a report that
changed after it was posted (or after it was held).

Covered (version 2): everything the voucher is made from. The report's ID, policy, currency,
its moment's day (`approved` as the client dates it: the day, not the time, so re-approving on
the same day moves nothing), the employee and the employee and report fields code parts come
from; per line its ID, posted amount and currency, category and GL code, tag and tag GL code,
reimbursable and billable flags, tax amount and code, and units. Not covered: descriptive
text (merchant, comment, report name, receipt), which never changes what the ledger holds.
Lines are hashed in transactionID order: the export does not promise an order, and a reordered
export is the same report.

Version 1 (a bare hex digest, stores written before tax, billable lines and units were
posted) covered less; `same_content` still reads it, so an upgrade does not see every stored
report as changed.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

from console.expensify.models import ExportReport

VERSION_PREFIX = "v2:"


def _digest(canonical: dict[str, Any]) -> str:
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _number(value: Decimal | None) -> str | None:
    """A units number as exact text, the same for 1.5 and 1.50 (never a float)."""
    return None if value is None else format(value.normalize(), "f")


def content_hash(report: ExportReport) -> str:
    """`v2:` and the hex SHA-256 over a canonical JSON of what the voucher is made from."""
    lines = [
        [
            tx.transactionID,
            tx.posted_amount,
            tx.currency,
            tx.category,
            tx.categoryGlCode,
            tx.tag,
            tx.tagGlCode,
            tx.reimbursable,
            tx.billable,
            tx.taxAmount,
            tx.taxCode,
            _number(tx.unitsCount),
            _number(tx.unitsRate),
            tx.unitsUnit,
        ]
        for tx in report.transactions
    ]
    # A total order even for lines that share an ID (their other fields may be None).
    lines.sort(key=lambda line: json.dumps(line))
    canonical = {
        "reportID": report.reportID,
        "policyID": report.policyID,
        "currency": report.currency,
        "approved": report.approved[:10],
        "employee": [
            report.accountEmail,
            report.employeeCustomField1,
            report.employeeCustomField2,
            report.submitterPayrollID,
            report.submitterUserID,
        ],
        "reportFields": report.reportFields,
        "lines": lines,
    }
    return VERSION_PREFIX + _digest(canonical)


def legacy_content_hash(report: ExportReport) -> str:
    """Version 1, as stores written before version 2 hold it."""
    lines = sorted(
        (
            tx.transactionID,
            tx.posted_amount,
            tx.category,
            tx.categoryGlCode,
            tx.tag,
            tx.reimbursable,
        )
        for tx in report.transactions
    )
    canonical = {
        "reportID": report.reportID,
        "policyID": report.policyID,
        "currency": report.currency,
        "approved": report.approved[:10],
        "lines": [list(line) for line in lines],
    }
    return _digest(canonical)


def is_legacy(stored: str) -> bool:
    """A version 1 hash: a bare 64-digit hex digest (a malformed report's has its own prefix)."""
    return len(stored) == 64 and ":" not in stored


def same_content(stored: str | None, report: ExportReport, current: str) -> bool:
    """Whether `report` (whose `content_hash` is `current`) is the content the store hashed
    as `stored`, in whichever version."""
    if not stored:
        return False
    if is_legacy(stored):
        return stored == legacy_content_hash(report)
    return stored == current
