"""The state checked against what IFS holds, as flows on a session.

`read` is one filtered read per configured company (hold table and GL) of the vouchers this
console could have posted; `recover` records in the ledger each one the state does not know
(the report content of a recovered accrual comes from Expensify, one export for all of them),
so the reversals and card reversals due are planned from what IFS holds, not only from what
the local file remembers. `check_in_cycle` is a cycle's step: it reads IFS when the state
may be behind — a state file the check never ran on (new, deleted, or swapped in from
another home), a state that does not know the newest voucher of ours IFS holds (restored
from an older copy of the home: one row of the hold table (or the GL) per company,
every cycle), and otherwise once a day — and each cycle repeats the references the last
read found twice in IFS. `state rebuild` (console/flows/rebuild.py) runs `read` over all
time and `recover` on an empty state.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from typing import Any

from console import clock
from console.audit import digest
from console.expensify.models import ExportReport
from console.fetch import report_record
from console.flows.results import CycleSummary
from console.holdings import Held, Holdings, card_amount, reversed_groups, twice_warnings
from console.ledger import LIVE
from console.reference import reversal as reversal_reference
from console.session import Session

HOLDINGS_CURSOR = "ifs-holdings"  # {"key": "{today}|{state file}", "twice": {ref: labels}}
EXPORT_CHUNK = 200  # report IDs per Expensify export (the watch's cap)
# Report states a recovered accrual's report may be in now (a posted report may since have
# been reimbursed, or sent back).
REPORT_STATES = ("OPEN", "SUBMITTED", "APPROVED", "REIMBURSED", "ARCHIVED")


@dataclass
class Recovered:
    """What `recover` recorded, and what it could not."""

    recorded: Counter[str] = field(default_factory=Counter)  # kind → vouchers recorded
    references: list[str] = field(default_factory=list)
    not_recorded: list[str] = field(default_factory=list)  # one sentence each

    @property
    def total(self) -> int:
        return sum(self.recorded.values())


def companies(session: Session) -> list[str]:
    return sorted(set(session.settings.posting.company_by_policy.values()))


def read(session: Session, since: date | None) -> Holdings:
    """Our vouchers IFS holds in every configured company, dated `since` or later."""
    vouchers = []
    for company in companies(session):
        vouchers.extend(session.track("ifs", partial(session.ifs.console_vouchers, company, since)))
    return Holdings.of(vouchers)


def reports_of(session: Session, report_ids: Sequence[str]) -> dict[str, ExportReport]:
    """The reports' current content from Expensify, by ID (one export per EXPORT_CHUNK)."""
    out: dict[str, ExportReport] = {}
    ids = sorted(set(report_ids))
    for start in range(0, len(ids), EXPORT_CHUNK):
        chunk = ids[start : start + EXPORT_CHUNK]
        result = session.track(
            "expensify",
            partial(session.expensify.export_reports, report_ids=chunk, states=REPORT_STATES),
        )
        out.update((r.reportID, r) for r in result.reports if r.reportID in chunk)
    return out


def missing_reports(session: Session, holdings: Holdings) -> list[str]:
    """Report IDs of unknown accruals the state has no row for (their content is needed)."""
    known = {e.reference for e in session.store.ledger_entries(outcomes=LIVE)}
    return sorted(
        {
            h.reference.report_id
            for h in holdings.unknown(known)
            if h.reference.kind == "accrual"
            and session.store.report_status(h.reference.report_id) is None
        }
    )


def recover(session: Session, holdings: Holdings, reports: Mapping[str, ExportReport]) -> Recovered:
    """Record as posted every voucher of ours IFS holds that the ledger does not know, each
    with a `recovered` audit event. Call under the posting lock."""
    store = session.store
    posting = session.settings.posting
    out = Recovered()
    known = {e.reference for e in store.ledger_entries(outcomes=LIVE)}
    # Oldest first: a report changed after posting has its older accrual (reversed) recorded
    # before the newer one, which is then the report's posted accrual.
    unknown = sorted(
        holdings.unknown(known),
        key=lambda h: (h.voucher.VoucherDate, h.voucher.AccountingYear, h.voucher.VoucherNo),
    )
    for held in unknown:
        ref = held.reference
        row: dict[str, Any] = {
            "reference": held.text,
            "company": held.voucher.Company,
            "voucher_date": held.voucher.VoucherDate.isoformat(),
        }
        if ref.kind == "accrual":
            why = _accrual_row(session, held, holdings, reports, row)
            if why:
                out.not_recorded.append(why)
                continue
        elif ref.kind == "reversal":
            row.update(
                report_id=ref.report_id,
                accrual_reference=ref.accrual.encode(),
                groups=reversed_groups(
                    held, posting.accrued_expenses_account, posting.card_clearing_account
                ),
                cause="recovered",
            )
        else:
            row["period"] = ref.period
            if ref.kind == "card-accrual":
                amount, currency = card_amount(held.voucher, posting.card_clearing_account)
                row.update(amount=format(amount, "f"), currency=currency)
            else:
                row["accrual_reference"] = ref.accrual.encode()
        with store.transaction():
            entry_id = store.ledger_intent(
                kind=ref.kind,
                body_digest=digest({"recovered": held.label, "reference": held.text}) or "",
                **row,
            )
            store.ledger_outcome(entry_id, "posted", voucher_no=held.label)
            session.audit.record(
                "recovered",
                f"{held.text} is in IFS as voucher {held.label} but the state did not know it:"
                " recorded as posted (never posted again; its reversal follows when due)",
                report_id=row.get("report_id") or None,
                voucher=held.label,
                data={"reference": held.text, "kind": ref.kind},
            )
        out.recorded[ref.kind] += 1
        out.references.append(held.text)
    return out


def _accrual_row(
    session: Session,
    held: Held,
    holdings: Holdings,
    reports: Mapping[str, ExportReport],
    row: dict[str, Any],
) -> str:
    """Fill `row` for an accrual's ledger entry (adding its report row when the state has
    none); or say why it cannot be recorded."""
    store = session.store
    rid = held.reference.report_id
    status = store.report_status(rid)
    if status is None:
        report = reports.get(rid)
        if report is None:
            return (
                f"{held.text} (voucher {held.label}): Expensify did not return report {rid},"
                " so its reversal cannot be planned here"
            )
        store.upsert_reports([report_record(report)])
    elif status == "excluded":
        return f"{held.text} (voucher {held.label}): report {rid} is excluded here; left alone"
    else:
        other = store.posted_accrual(rid)
        superseded = other is not None and (
            reversal_reference(rid, other.version) in holdings.held
            or store.ledger_entries(reference=reversal_reference(rid, other.version), outcomes=LIVE)
        )
        if other is not None and other.reference != held.text and not superseded:
            return (
                f"{held.text} (voucher {held.label}): report {rid} is posted here as"
                f" {other.reference}; IFS holds both versions (see `ml-console close`)"
            )
    row.update(report_id=rid, version=held.reference.version)
    return ""


def _newest_unknown(session: Session) -> bool:
    """Whether the newest voucher of ours in some company is one the state does not know: a
    state restored from an older copy of the home (cursor and all) is behind IFS."""
    newest = getattr(session.ifs, "newest_console_reference", None)
    if newest is None:
        return False
    for company in companies(session):
        ref = session.track("ifs", partial(newest, company))
        if ref and not session.store.ledger_entries(reference=ref, outcomes=LIVE):
            return True
    return False


def check_in_cycle(session: Session, summary: CycleSummary) -> tuple[date, dict[str, str]] | None:
    """A cycle's step, before planning: when due, read what IFS holds since the first day
    of the month before last (the first poll's window) and recover what the state lacks;
    every cycle, warn of each reference IFS held twice at the last read. Returns (that
    day, reference → voucher) when it read IFS, for the posting's lookup."""
    if getattr(session.ifs, "console_vouchers", None) is None:
        return None  # an IFS client without the read (tests' stand-ins)
    seen: tuple[date, dict[str, str]] | None = None
    today = session.today()
    key = f"{today.isoformat()}|{session.store.path}"
    try:
        kept = json.loads(session.store.cursor(HOLDINGS_CURSOR) or "{}")
    except ValueError:
        kept = {}
    if not isinstance(kept, dict):
        kept = {}
    twice: dict[str, list[str]] = kept.get("twice") or {}
    if kept.get("key") != key or _newest_unknown(session):
        since = clock.month_start(today, -2)
        holdings = read(session, since)
        seen = (since, {ref: h.label for ref, h in holdings.held.items()})
        reports = reports_of(session, missing_reports(session, holdings))
        with session.lock:
            done = recover(session, holdings, reports)
        twice = {ref: list(labels) for ref, labels in holdings.twice.items()}
        session.store.set_cursor(json.dumps({"key": key, "twice": twice}), HOLDINGS_CURSOR)
        if done.total:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(done.recorded.items()))
            summary.warnings.append(
                f"IFS holds {done.total} voucher(s) of this console the state file did not know"
                f" ({kinds}): recorded as posted, their reversals follow when due (a state file"
                " restored, lost or from another home?)"
            )
        summary.warnings += done.not_recorded
        if twice:
            session.audit.record(
                "held-twice",
                f"IFS holds {len(twice)} reference(s) more than once",
                data={"references": twice},
            )
    summary.warnings += twice_warnings(twice)
    return seen
