"""A stable hash of a report's postable content, kept by the store to notice a report that
changed after it was posted (or after it was held).

Covered: the report ID, policy, currency, approval date (the day, not the time: re-approving on
the same day moves nothing) and, per line, its ID, posted amount, category and its GL code,
tag, and reimbursable flag. Not covered: descriptive text (merchant, comment, report name),
which never changes what the ledger holds. Lines are hashed in transactionID order, because
the export does not promise an order and a reordered export is the same report.
"""

from __future__ import annotations

import hashlib
import json

from console.expensify.models import ExportReport


def content_hash(report: ExportReport) -> str:
    """Hex SHA-256 over a canonical JSON of what the voucher is made from."""
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
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
