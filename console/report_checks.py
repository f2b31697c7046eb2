"""Checks across a report's lines and across reports, after validation (one stage, pure but for
reading what the store knows of other reports):

- **All-zero report.** A report whose every line is zero has nothing to post, and an approved
  report that sums to nothing is more often a broken export (amounts lost) than a real one. It
  is held as `zero-amount:{lines}` (the number of lines, all zero) so the operator sees it in
  `held`, `status` and the console, checks it in Expensify, and settles it with
  `ml-console exclude REPORT_ID --reason "..."` (exit 0, audited). It never stays "ready".
- **Duplicate transaction.** An Expensify transactionID already on another report the
  console knows (not excluded) holds the later report (first seen later; ties by report ID)
  as `duplicate-transaction:{transactionID}:{otherReportID}` until the operator confirms that
  both are right: `ml-console replay REPORT_ID --confirm-duplicate` records the confirmation
  (audited) and posts it. The first report posts as usual.

- **Too many lines for one voucher.** IFS takes a voucher in one `$batch` change set
  (temporary voucher, one request per row, CreateVoucher), and a tenant takes at most
  `ifs.max_batch_parts` requests in one `$batch`. A report whose lines cannot fit (each line
  is a row; the credit row, the header and CreateVoucher come on top) is held as
  `too-many-lines:{lines}` rather than refused by IFS at posting: split it in Expensify, or
  settle it with `ml-console exclude`.

- **Sent back.** A report the watch (console/reversal.py) last read sent back to its submitter
  in Expensify (Open, Processing) is not approved any more, whatever it was when fetched: it
  is held as `sent-back:{status}` and not posted, whatever else is fixed, until a poll reads
  it approved again. Nothing for the operator to do.

The confirmations live in the state file (a cursor entry), so they survive restarts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from console.audit import AuditLog
from console.errors import ConfigError
from console.mapping import Hold
from console.store import Store
from console.validate import ValidatedReport

ZERO_AMOUNT = "zero-amount"
DUPLICATE_TRANSACTION = "duplicate-transaction"
TOO_MANY_LINES = "too-many-lines"
SENT_BACK = "sent-back"
# Requests of a voucher's change set besides one per line: the temporary voucher, at least
# one credit row, CreateVoucher.
_PARTS_BESIDES_LINES = 3
CONFIRMED_DUPLICATES = "duplicates.confirmed"  # cursor: JSON list of confirmed report IDs


@dataclass(frozen=True)
class ReportChecks:
    """What the checks need to know beyond the report: which transaction IDs are on more than
    one report (ID -> [(first_seen, report_id, status)], oldest first), and the reports whose
    duplicates the operator confirmed."""

    shared: Mapping[str, Sequence[tuple[str, str, str]]]
    confirmed: frozenset[str]
    max_batch_parts: int = 1000
    sent_back: Mapping[str, str] = field(default_factory=dict)  # report ID → its status

    @classmethod
    def load(cls, store: Store, max_batch_parts: int = 1000) -> ReportChecks:
        return cls(
            store.shared_transactions(),
            frozenset(confirmed_duplicates(store)),
            max_batch_parts,
            store.sent_back(),
        )

    def apply(self, validated: ValidatedReport) -> ValidatedReport:
        """The report with the holds these checks add (none: the same object)."""
        mapped = validated.mapped
        if mapped is None:
            return validated
        added: list[Hold] = []
        first: list[Hold] = []  # the report's reason: before whatever else holds it
        status = self.sent_back.get(validated.report_id)
        if status:
            first.append(
                Hold(
                    f"{SENT_BACK}:{status.lower()}",
                    f"report {validated.report_id} was sent back to its submitter in Expensify "
                    f"({status.title()}) after it was fetched: not posted until it is approved "
                    "again (the next poll after its approval fetches it)",
                )
            )
        lines = mapped.lines
        if lines and all(line.amount_minor == 0 for line in lines):
            added.append(
                Hold(
                    f"{ZERO_AMOUNT}:{len(lines)}",
                    f"report {validated.report_id}: every line ({len(lines)}) is zero, so there "
                    "is nothing to post; check it in Expensify, then settle it with "
                    f'`ml-console exclude {validated.report_id} --reason "..."`',
                )
            )
        if len(lines) + _PARTS_BESIDES_LINES > self.max_batch_parts:
            added.append(
                Hold(
                    f"{TOO_MANY_LINES}:{len(lines)}",
                    f"report {validated.report_id}: {len(lines)} lines do not fit in one IFS "
                    f"voucher request (at most {self.max_batch_parts} parts per $batch, "
                    "ifs.max_batch_parts); split the report in Expensify, or settle it with "
                    f'`ml-console exclude {validated.report_id} --reason "..."`',
                )
            )
        if validated.report_id not in self.confirmed:
            added += self._duplicates(validated.report_id, (ln.transaction_id for ln in lines))
        if not added and not first:
            return validated
        return dataclasses.replace(validated, holds=[*first, *validated.holds, *added])

    def _duplicates(self, report_id: str, transaction_ids: Iterable[str]) -> list[Hold]:
        out: list[Hold] = []
        for tid in transaction_ids:
            owners = self.shared.get(tid)
            if not owners:
                continue
            mine = next((o for o in owners if o[1] == report_id), None)
            if mine is None:
                continue
            earlier = [o for o in owners if (o[0], o[1]) < (mine[0], mine[1])]
            if not earlier:
                continue  # the first report with this transaction posts as usual
            _first_seen, other, status = earlier[0]
            out.append(
                Hold(
                    f"{DUPLICATE_TRANSACTION}:{tid}:{other}",
                    f"report {report_id}: transaction {tid} is also on report {other} "
                    f"({status}); if both are right, confirm with "
                    f"`ml-console replay {report_id} --confirm-duplicate`",
                    transaction_id=tid,
                )
            )
        return out


def confirmed_duplicates(store: Store) -> list[str]:
    raw = store.cursor(CONFIRMED_DUPLICATES)
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def confirm_duplicates(store: Store, audit: AuditLog, report_ids: Sequence[str]) -> list[str]:
    """Record the operator's word that each report's duplicate transactions are right (the
    report is then posted on replay). Each must be held as a duplicate transaction now."""
    if not report_ids:
        raise ConfigError("name the reports whose duplicate transactions you confirm")
    holds: dict[str, list[str]] = {}
    for hold in store.holds(list(report_ids)):
        if hold.code.startswith(f"{DUPLICATE_TRANSACTION}:"):
            holds.setdefault(hold.report_id, []).append(hold.code)
    missing = [rid for rid in report_ids if rid not in holds]
    if missing:
        raise ConfigError(
            f"report {missing[0]} is not held as a duplicate transaction; nothing to confirm"
        )
    confirmed = confirmed_duplicates(store)
    with store.transaction():
        store.set_cursor(json.dumps(sorted({*confirmed, *report_ids})), CONFIRMED_DUPLICATES)
        for rid in report_ids:
            # A replay the operator confirmed: the audit's "replayed" event, with what was
            # confirmed (console/audit.py's event types stay as they are).
            audit.record(
                "replayed",
                "replayed with the duplicate transactions confirmed: " + ", ".join(holds[rid]),
                report_id=rid,
                data={"confirmed_duplicates": holds[rid]},
            )
    return list(report_ids)
