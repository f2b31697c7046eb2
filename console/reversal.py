"""Accrual reversals, watching posted reports, and reports that change after posting.

Reversal rules are set per credit account in `posting.reversal`:
- `next-period-start`: reversed on the first day of the period after the accrual's period, once
  that day has come (the engine's "today"). Default for the accrued-expenses account: an
  accrual is, by definition, reversed when the next period opens.
- `on-reimbursement`: reversed on the report's reimbursement date, once Expensify shows the
  report REIMBURSED.
- `none`: never reversed by the console. Default for the card clearing account, which the card
  statement clears.

A reversal voucher mirrors the accrual's rows for that credit account's lines (the expense rows
of those lines and the balancing row; debits and credits swapped), read back from IFS, so it
reverses exactly what IFS holds. Its ReferenceNumber is `REV:{reportID}:{version}` with the
accrual's version (`EXP:{reportID}:{version}`); a card-only reversal of an accrual that also
has reimbursable lines is `REV:{reportID}:{version}:card`, so each group is reversed once.
Where the reversal's date falls in a closed period it moves to the first day of the next open
period (an accrual must be reversed; the move is flagged like an accrual's).

Posted reports are re-read by ID (one reportIDList export per cycle, at most WATCH_CAP IDs,
least recently read first) to see reimbursement, rejection and changes; held reports ride in
the same export, so one fixed in Expensify (its category, tag or tax) is stored as changed and
evaluated again without waiting for a new approval. A report edited so that it breaks the
export template (or cannot be read) is isolated by the client and the rest is read as usual;
it is reported once (`watch-unreadable`), listed as needing attention while it lasts, kept out
of the shared export and re-read alone (one export job each, at most UNREADABLE_CAP a cycle)
until it reads again (`watch-readable`), then watched as before. Nothing is reversed or posted
again because a report cannot be read. A held report the poll found breaking the template
(`malformed:export-template:…`) is read alone the same way, so one fixed in Expensify without
a new approval is evaluated again. A report the export by ID does not return (deleted in
Expensify) stays noted, not called readable. A report re-approved
with different content, or rejected after approval, is never posted again silently: it is held
as `changed-after-posting:{reportID}` until the operator confirms (`ml-console replay ID
--confirm-change`); then the un-reversed part of the old accrual is reversed (dated in the old
accrual's period while that is open, else the first day of the next open period) and the new
version is posted as a new accrual (changed) or nothing more (rejected).

Every reversal goes through intent → POST → outcome, and after an unknown outcome its
ReferenceNumber is looked up in IFS before anything is posted again.

"Today" is the engine's (`Engine.today`: the as-of date when one is set, see console.clock);
a later as-of date can show a reversal as due in a dry run, but never post it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

from console import coding, reference
from console.audit import AuditLog, Event
from console.errors import ServiceError
from console.ifs.models import Voucher, VoucherRow
from console.ledger import LIVE, Intent, Ledger, VoucherSender
from console.money import fmt_decimal
from console.plan import Plan, RowVoucher
from console.store import ChangeRow, PostedAccrual, Store

if TYPE_CHECKING:
    from console.config import PostingConfig
    from console.expensify.models import ExportReport, ExportResult, MalformedReport
    from console.validate import CompanyReference, IfsReference

WATCH_CAP = 200  # report IDs re-read per cycle (one export request)
# Reports the re-read could not read, kept until they read again (JSON {reportID: {"what",
# "since", "tried"}}), and how many of them are re-read alone per cycle (one export job each).
UNREADABLE_CURSOR = "watch.unreadable"
UNREADABLE_CAP = 3
UNREADABLE_CODE = "unreadable-after-posting"
NOT_EXPORTED = "not in Expensify's export of it by ID (deleted in Expensify?)"
TEMPLATE_HOLD = "malformed:export-template:"  # a held report the poll's export isolated
WATCH_STATES = ("OPEN", "SUBMITTED", "APPROVED", "REIMBURSED", "ARCHIVED")
# Statuses of a report still approved, as the export prints them (upper-cased): "Closed"
# (ARCHIVED) is a Submit-and-Close report's status from its submission on, and an approved
# report's once it is closed; only a report sent back to its submitter (Open, Processing)
# is no longer approved.
APPROVED_STATES = ("APPROVED", "REIMBURSED", "CLOSED", "ARCHIVED")

GROUP_REIMBURSABLE = "reimbursable"
GROUP_CARD = "card"
CAUSE_NEXT_PERIOD = "next-period-start"
CAUSE_REIMBURSED = "on-reimbursement"
CAUSE_CHANGED = "changed"
CAUSE_REJECTED = "rejected"
CHANGE_CODE = "changed-after-posting"


def change_code(report_id: str) -> str:
    return f"{CHANGE_CODE}:{report_id}"


def reversal_rules(posting: PostingConfig) -> dict[str, str]:
    """Credit group → rule, with the defaults of the module doc."""
    return {
        GROUP_REIMBURSABLE: posting.reversal.get(
            posting.accrued_expenses_account, CAUSE_NEXT_PERIOD
        ),
        GROUP_CARD: posting.reversal.get(posting.card_clearing_account, "none"),
    }


def reversal_reference(
    report_id: str, accrual_reference: str, groups: Sequence[str], accrual_groups: Iterable[str]
) -> str:
    parsed = reference.parse(accrual_reference)
    if parsed is None or parsed.kind != "accrual" or parsed.report_id != report_id:
        raise ValueError(f"{accrual_reference!r} is not the accrual reference of {report_id!r}")
    card_only = GROUP_REIMBURSABLE not in groups and GROUP_REIMBURSABLE in set(accrual_groups)
    return reference.reversal(report_id, parsed.version, card_only=card_only)


# ---------------------------------------------------------------- the reversal voucher


@dataclass(frozen=True)
class PlannedReversal(RowVoucher):
    report_id: str
    accrual_reference: str
    accrual_voucher: str
    cause: str
    groups: tuple[str, ...]
    moved_from: date | None = None

    def to_json(self) -> dict[str, Any]:
        d, c = self.totals()
        return {
            "reportID": self.report_id,
            "referenceNumber": self.reference,
            "accrualReference": self.accrual_reference,
            "accrualVoucher": self.accrual_voucher,
            "cause": self.cause,
            "groups": list(self.groups),
            "company": self.company,
            "voucherDate": self.voucher_date.isoformat(),
            "period": self.period_label,
            "movedFrom": self.moved_from.isoformat() if self.moved_from else None,
            "debit": format(d, "f"),
            "credit": format(c, "f"),
            "rows": len(self.rows),
        }

    def render_lines(self) -> list[str]:
        out = self.render_head(
            f"~ reversal {self.reference} of {self.accrual_reference}"
            f" ({self.accrual_voucher or 'voucher'}): {self.cause}, {', '.join(self.groups)}",
            self.moved_from,
        )
        for r in self.rows:
            parts = " ".join(
                f"{k[-1]}={getattr(r, k)}"
                for k in ("CodeB", "CodeC", "CodeD", "CodeE", "CodeF", "CodeG", "CodeH", "CodeI")
                if getattr(r, k)
            )
            out.append(
                f"  {r.RowNo or '':>3} {r.Account:<10} {parts or '-':<24} "
                f"{fmt_decimal(r.DebetAmount):>14} {fmt_decimal(r.CreditAmount):>14}  {r.Text}"
            )
        d, c = self.totals()
        out.append(f"  {'':>3} {'balance':<10} {'':<24} {fmt_decimal(d):>14} {fmt_decimal(c):>14}")
        return out


def classify_rows(
    accrual: Voucher, report_id: str, posting: PostingConfig, reimbursable: Mapping[str, bool]
) -> dict[str, list[VoucherRow]]:
    """The accrual's rows per credit group: balancing rows by account and their trace text,
    expense rows by their transaction's reimbursable flag (unknown lines: reimbursable)."""
    groups: dict[str, list[VoucherRow]] = {}
    credit_prefix = f"Expensify {report_id} "
    card_accounts = coding.clearing_accounts(posting)
    for row in accrual.VoucherRowArray:
        if row.Text.startswith(credit_prefix) and row.Account in card_accounts:
            group = GROUP_CARD
        elif row.Text.startswith(credit_prefix):
            group = GROUP_REIMBURSABLE
        else:
            tid = row.Text.split(" ", 1)[0]
            group = GROUP_REIMBURSABLE if reimbursable.get(tid, True) else GROUP_CARD
        groups.setdefault(group, []).append(row)
    return groups


def mirror(rows: Iterable[VoucherRow]) -> tuple[VoucherRow, ...]:
    """The rows with debits and credits swapped, in both currencies, renumbered. As IFS's own
    reversal does (Reverse_Voucher___): its tax rows (AutoTaxVouEntry) are left out, and a
    row's tax and base change sign, so IFS adds the reversed tax rows itself."""
    out: list[VoucherRow] = []
    for row in rows:
        if row.AutoTaxVouEntry:
            continue
        update: dict[str, object] = {
            "RowNo": len(out) + 1,
            "CurrencyDebetAmount": row.CurrencyCreditAmount,
            "CurrencyCreditAmount": row.CurrencyDebetAmount,
            "DebetAmount": row.CreditAmount,
            "CreditAmount": row.DebetAmount,
            "AutoTaxVouEntry": None,  # IFS's to set, never sent
        }
        for name in ("CurrencyTaxAmount", "TaxAmount", "CurrencyTaxBaseAmount", "TaxBaseAmount"):
            value = getattr(row, name)
            if value is not None:
                update[name] = -value
        out.append(row.model_copy(update=update))
    return tuple(out)


def _trim(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _date_in_open_period(
    company: CompanyReference, day: date
) -> tuple[date, int, int, date | None] | None:
    """(date, year, period, moved_from) for a voucher due on `day`; a closed period moves it
    to the first day of the next open period; None where IFS has no open period for it."""
    period = company.period_on(day)
    if period is not None and period.is_open:
        return day, period.AccountingYear, period.AccountingPeriod, None
    target = company.next_open_period(day)
    if target is None:
        return None
    return target.DateFrom, target.AccountingYear, target.AccountingPeriod, day


def next_period_start(company: CompanyReference, year: int, period: int) -> date | None:
    for i, p in enumerate(company.periods):
        if (p.AccountingYear, p.AccountingPeriod) == (year, period):
            return company.periods[i + 1].DateFrom if i + 1 < len(company.periods) else None
    return None


def plan_reversal(
    accrual: Voucher,
    accrual_label: str,
    report_id: str,
    groups: Sequence[str],
    cause: str,
    due: date,
    company: CompanyReference,
    posting: PostingConfig,
    reimbursable: Mapping[str, bool],
) -> PlannedReversal | None:
    """The reversal of `groups` of the accrual, due on `due`; None where there is nothing to
    reverse or no open period to date it in."""
    by_group = classify_rows(accrual, report_id, posting, reimbursable)
    chosen = tuple(g for g in (GROUP_REIMBURSABLE, GROUP_CARD) if g in groups and g in by_group)
    if not chosen:
        return None
    placed = _date_in_open_period(company, due)
    if placed is None:
        return None
    day, year, period, moved_from = placed
    rows = mirror(r for g in chosen for r in by_group[g])
    ref = reversal_reference(report_id, accrual.ReferenceNumber, chosen, by_group)
    return PlannedReversal(
        report_id=report_id,
        accrual_reference=accrual.ReferenceNumber,
        accrual_voucher=accrual_label,
        cause=cause,
        groups=chosen,
        company=accrual.Company,
        voucher_type=accrual.VoucherType,
        voucher_date=day,
        accounting_year=year,
        accounting_period=period,
        reference=ref,
        text=_trim(f"Reversal of {accrual.ReferenceNumber} ({cause}) Expensify {report_id}"),
        rows=rows,
        moved_from=moved_from,
    )


# ---------------------------------------------------------------- IFS and Expensify ports


class ReportReader(Protocol):
    """The parts of ExpensifyClient the watch uses: the isolating export of the shared
    re-read, and the plain one of a report re-read alone."""

    def export_reports_by_id(
        self,
        report_ids: Sequence[str],
        *,
        states: Sequence[str] = ...,
        exclude_label: str | None = None,
    ) -> Iterator[ExportReport | MalformedReport]: ...

    def export_reports(
        self, *, report_ids: Sequence[str] | None = None, states: Sequence[str] = ...
    ) -> ExportResult: ...


# ---------------------------------------------------------------- watching posted reports


@dataclass
class WatchOutcome:
    read: list[str] = field(default_factory=list)
    reimbursed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # newly flagged changed or rejected
    refreshed: list[str] = field(default_factory=list)  # held reports changed in Expensify
    unreadable: list[str] = field(default_factory=list)  # newly unreadable (reported once)
    readable: list[str] = field(default_factory=list)  # unreadable ones that read again


@dataclass(frozen=True)
class Unreadable:
    """A watched report the re-read could not read: what the export said, since when, and
    when it was last re-read alone."""

    what: str
    since: str
    tried: str = ""


def unreadable_reports(store: Store) -> dict[str, Unreadable]:
    try:
        kept = json.loads(store.cursor(UNREADABLE_CURSOR) or "{}")
        return {str(rid): Unreadable(**mark) for rid, mark in kept.items()}
    except (ValueError, TypeError, AttributeError):
        return {}  # a damaged note: the next re-read finds them again


def _unreadable_line(
    report_id: str, accrual: PostedAccrual | None, what: str, since: str = ""
) -> str:
    since = f" since {since[:10]}" if since else ""
    if accrual is None:
        return f"held report {report_id} cannot be read from Expensify{since}: {what}"
    return (
        f"posted report {report_id} ({accrual.reference}) cannot be read from Expensify"
        f"{since}: {what}; nothing is reversed or posted again for it: fix it in Expensify"
    )


def watch_posted(
    expensify: ReportReader,
    store: Store,
    audit: AuditLog,
    *,
    priority: Sequence[str] = (),
    cap: int = WATCH_CAP,
    alone_cap: int = UNREADABLE_CAP,
) -> WatchOutcome:
    """Re-read posted and held reports by ID (one export): note reimbursement, flag changes
    after posting, and store held reports Expensify changed (they are evaluated again). One
    that cannot be read is noted and re-read alone until it reads (the module doc)."""
    from console.expensify.models import MalformedReport
    from console.fetch import dump_report, store_reread
    from console.report_hash import content_hash, same_content

    accruals = {a.report_id: a for a in store.posted_accruals()}
    now = store.now()
    held_rows = store.pending_reports(status="held", limit=10**6)
    held_ids = {row.report_id for row in held_rows}
    noted = unreadable_reports(store)
    unreadable = {rid: mark for rid, mark in noted.items() if rid in accruals or rid in held_ids}
    # Held reports the poll found breaking the export (held as malformed:export-template:…)
    # are read alone too: one fixed in Expensify without a new approval is read again. No
    # watch event for them either way: the poll's hold and the re-read's fetch say it.
    template_held = {
        row.report_id: row.reason.removeprefix("malformed:")
        for row in held_rows
        if row.reason.startswith(TEMPLATE_HOLD)
    }
    for rid, what in template_held.items():
        unreadable.setdefault(rid, Unreadable(what=what, since=now, tried=""))
    first = [rid for rid in dict.fromkeys(priority) if rid in accruals]
    ids = [rid for rid in first if rid not in unreadable]
    ids += [
        rid
        for rid in store.watch_candidates(cap + len(unreadable))
        if rid not in ids and rid not in unreadable
    ]
    ids = ids[:cap]
    alone = sorted(unreadable, key=lambda r: (r not in first, unreadable[r].tried, r))
    alone = alone[:alone_cap]
    outcome = WatchOutcome()
    if not ids and not alone:
        return outcome
    # The client isolates a report that breaks the shared export; the rest reads as usual.
    shared = expensify.export_reports_by_id(ids, states=WATCH_STATES) if ids else iter(())
    read_alone, failing = _read_alone(expensify, alone)
    before = store.watched(ids)
    seen: list[tuple[str, str, str]] = []
    events: list[Event] = []
    held: list[ExportReport] = []

    def note(found: list[str], event: str, rid: str, summary: str, /, **data: Any) -> None:
        """A report in one of the outcome's lists, with its audit event."""
        found.append(rid)
        events.append(Event(type=event, report_id=rid, summary=summary, data=data))

    def reads_again(rid: str) -> None:
        if unreadable.pop(rid, None) is not None and rid not in template_held:
            note(
                outcome.readable,
                "watch-readable",
                rid,
                f"report {rid} reads again in Expensify: watched as before",
            )

    for report in (*shared, *read_alone):
        rid = report.reportID
        if isinstance(report, MalformedReport):
            accrual = accruals.get(rid)
            if rid in unreadable:
                unreadable[rid] = replace(unreadable[rid], what=report.what, tried=now)
            elif rid and (accrual is not None or rid in held_ids):
                unreadable[rid] = Unreadable(what=report.what, since=now, tried=now)
                note(
                    outcome.unreadable,
                    "watch-unreadable",
                    rid,
                    _unreadable_line(rid, accrual, report.what)
                    + "; it is re-read alone each cycle until it reads again",
                    what=report.what,
                    accrual=accrual.reference if accrual is not None else "",
                )
            continue
        reads_again(rid)
        status = report.status.upper()
        accrual = accruals.get(rid)
        if accrual is None:
            if rid in held_ids:
                seen.append((rid, status, report.reimbursed[:10]))
                # Sent back (not approved any more): the status saved holds it as sent back
                # (console/report_checks.py) until a poll reads it approved again.
                if status in APPROVED_STATES:
                    held.append(report)
            continue
        seen.append((rid, status, report.reimbursed[:10]))
        outcome.read.append(rid)
        prior = store.report_change(rid)
        rejected_done = (
            prior is not None
            and prior.state == "done"
            and prior.kind == CAUSE_REJECTED
            and prior.accrual_reference == accrual.reference
        )
        kind = ""
        new_hash = ""
        new_raw: dict[str, Any] = {}
        if status not in APPROVED_STATES:
            kind = "" if rejected_done else CAUSE_REJECTED
        else:
            new_hash = content_hash(report)
            if not same_content(store.content_hash(rid), report, new_hash) or rejected_done:
                kind, new_raw = CAUSE_CHANGED, dump_report(report)
        if kind and store.open_change(rid, kind, accrual.reference, new_hash, new_raw):
            note(
                outcome.changed,
                "changed-after-post",
                rid,
                f"report {rid} was {kind} in Expensify after {accrual.reference} was "
                "posted: held for the operator's confirmation, not posted again",
                kind=kind,
                accrual=accrual.reference,
                status=status,
            )
        prev = before.get(rid)
        if status == "REIMBURSED" and (prev is None or prev.expensify_status != "REIMBURSED"):
            note(
                outcome.reimbursed,
                "reimbursed",
                rid,
                f"report {rid} reimbursed in Expensify on {report.reimbursed[:10]}",
                reimbursed=report.reimbursed,
            )
    returned = {item.reportID for item in read_alone}
    for rid in alone:
        if rid in failing:
            unreadable[rid] = replace(unreadable[rid], tried=now)
        elif rid not in returned:
            # The export ran but without it: deleted in Expensify, or out of these credentials'
            # reach. Not readable either: kept, and tried again in turn.
            unreadable[rid] = replace(unreadable[rid], what=NOT_EXPORTED, tried=now)
    with store.transaction():
        store.save_watch(seen)
        if unreadable != noted:
            store.set_cursor(
                json.dumps({rid: asdict(mark) for rid, mark in sorted(unreadable.items())}),
                UNREADABLE_CURSOR,
            )
        audit.record_many(events)
    outcome.refreshed = store_reread(held, store, audit)
    return outcome


def _read_alone(
    expensify: ReportReader, report_ids: Sequence[str]
) -> tuple[list[ExportReport | MalformedReport], set[str]]:
    """Each report exported on its own, without isolation (one job, which fails at once on a
    template error): what was read, and the reports the template still stops on."""
    from console.expensify.client import is_template_error

    items: list[ExportReport | MalformedReport] = []
    failing: set[str] = set()
    for rid in report_ids:
        try:
            result = expensify.export_reports(report_ids=[rid], states=WATCH_STATES)
        except ServiceError as exc:
            if not is_template_error(exc):
                raise
            failing.add(rid)
            continue
        items += [*result.reports, *result.malformed]
    return items, failing


@dataclass(frozen=True)
class Attention:
    """A posted report that waits for the operator: changed after posting (to confirm), or
    one the re-read cannot read (to fix in Expensify). A cycle's summary and `ml-console
    held` list them with the held reports."""

    report_id: str
    code: str
    message: str
    since: str
    warn: bool  # also a warning line of the run (nothing else would name it)


def posted_attention(store: Store) -> list[Attention]:
    out = [
        Attention(
            c.report_id,
            change_code(c.report_id),
            f"report {c.report_id} was {c.kind} in Expensify after {c.accrual_reference} was "
            f"posted: `ml-console replay {c.report_id} --confirm-change` reverses it"
            + (" and posts the new version" if c.kind == CAUSE_CHANGED else ""),
            c.detected_at,
            warn=False,
        )
        for c in store.report_changes(("open",))
    ]
    notes = unreadable_reports(store)
    for acc in sorted(
        store.posted_accruals(list(notes)) if notes else [], key=lambda a: a.report_id
    ):
        note = notes[acc.report_id]
        line = _unreadable_line(acc.report_id, acc, note.what, note.since)
        out.append(
            Attention(acc.report_id, f"{UNREADABLE_CODE}:{note.what}", line, note.since, True)
        )
    return out


# ---------------------------------------------------------------- which reversals are due


@dataclass
class ReversalPlan:
    reversals: list[PlannedReversal] = field(default_factory=list)
    waiting: list[dict[str, str]] = field(default_factory=list)  # reportID, reason


def reversed_groups(store: Store) -> dict[str, set[str]]:
    """accrual reference → credit groups reversed (or possibly reversed: open intents)."""
    out: dict[str, set[str]] = {}
    for r in store.ledger_entries(kinds=("reversal",), outcomes=LIVE):
        out.setdefault(r.accrual_reference, set()).update(g for g in r.groups.split(",") if g)
    return out


def _first_of_next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def due_reversals(
    ifs: VoucherSender,
    store: Store,
    reference: IfsReference,
    posting: PostingConfig,
    today: date,
) -> ReversalPlan:
    """Scheduled reversals due today (next-period-start, on-reimbursement)."""
    rules = reversal_rules(posting)
    plan = ReversalPlan()
    if set(rules.values()) == {"none"}:
        return plan
    done = reversed_groups(store)
    watched = store.watched()
    changes = {c.report_id for c in store.report_changes(("open", "confirmed"))}
    for acc in store.posted_accruals():
        if acc.report_id in changes:
            continue
        flags = store.line_reimbursable(acc.report_id)
        present = {GROUP_REIMBURSABLE if f else GROUP_CARD for f in flags.values()} or {
            GROUP_REIMBURSABLE
        }
        todo = present - done.get(acc.reference, set())
        w = watched.get(acc.report_id)
        reimbursed = w.reimbursed if w is not None and w.expensify_status == "REIMBURSED" else ""
        approved = _approved_day(acc)
        by_cause: dict[str, list[str]] = {}
        for group in sorted(todo):
            rule = rules[group]
            if rule == CAUSE_NEXT_PERIOD and approved is not None:
                # Cheap pre-check before reading the accrual back: periods are months or
                # longer, so nothing is due before the first of the next month.
                if today >= _first_of_next_month(approved):
                    by_cause.setdefault(rule, []).append(group)
            elif rule == CAUSE_REIMBURSED and reimbursed:
                by_cause.setdefault(rule, []).append(group)
        for cause, groups in by_cause.items():
            planned = _plan_for(
                ifs, store, reference, posting, acc, groups, cause, today, reimbursed
            )
            if isinstance(planned, str):
                if planned:
                    plan.waiting.append({"reportID": acc.report_id, "reason": planned})
            else:
                plan.reversals.append(planned)
                # A later cause of the same accrual plans against what this one reverses.
                done.setdefault(acc.reference, set()).update(planned.groups)
    return plan


def _approved_day(acc: PostedAccrual) -> date | None:
    try:
        return date.fromisoformat(acc.approved[:10])
    except ValueError:
        return None


def _read_accrual(ifs: VoucherSender, acc: PostedAccrual) -> Voucher | None:
    found = ifs.find_vouchers(acc.reference, acc.company)
    return found[0] if found else None


def _plan_for(
    ifs: VoucherSender,
    store: Store,
    reference: IfsReference,
    posting: PostingConfig,
    acc: PostedAccrual,
    groups: Sequence[str],
    cause: str,
    today: date,
    reimbursed: str,
) -> PlannedReversal | str:
    """The reversal, or a reason it waits ("" when it is simply not due yet)."""
    company = reference.company(acc.company)
    if company is None:
        return f"company {acc.company} is not configured"
    accrual = _read_accrual(ifs, acc)
    if accrual is None:
        return f"accrual {acc.reference} not found in IFS"
    if cause == CAUSE_NEXT_PERIOD:
        due = next_period_start(company, accrual.AccountingYear, accrual.AccountingPeriod)
        if due is None:
            return (
                f"IFS has no period after {accrual.AccountingYear}-{accrual.AccountingPeriod:02d}"
            )
        if today < due:
            return ""
    elif cause == CAUSE_REIMBURSED:
        due = max(date.fromisoformat(reimbursed[:10]), accrual.VoucherDate)
    else:
        period = company.period_on(accrual.VoucherDate)
        open_now = period is not None and period.is_open
        due = accrual.VoucherDate if open_now else max(accrual.VoucherDate, today)
    planned = plan_reversal(
        accrual,
        acc.voucher_no,
        acc.report_id,
        groups,
        cause,
        due,
        company,
        posting,
        store.line_reimbursable(acc.report_id),
    )
    if planned is None:
        return f"no open period in IFS for a reversal due {due}"
    if planned.voucher_date > today and cause == CAUSE_NEXT_PERIOD:
        return ""  # moved to a period that has not begun: not yet
    return planned


def change_reversal(
    ifs: VoucherSender,
    store: Store,
    reference: IfsReference,
    posting: PostingConfig,
    change: ChangeRow,
    today: date,
) -> PlannedReversal | str | None:
    """The reversal of what is left of the accrual a change supersedes: None when every
    group is already reversed; a string when it cannot be planned."""
    acc = next(
        (
            a
            for a in store.posted_accruals([change.report_id])
            if a.reference == change.accrual_reference
        ),
        None,
    )
    if acc is None:
        return None
    todo = {GROUP_REIMBURSABLE, GROUP_CARD} - reversed_groups(store).get(acc.reference, set())
    if not todo:
        return None
    planned = _plan_for(ifs, store, reference, posting, acc, sorted(todo), change.kind, today, "")
    return planned or None


# ---------------------------------------------------------------- posting reversals


@dataclass
class ReversalOutcome:
    posted: list[tuple[str, str, str]] = field(default_factory=list)  # reportID, ref, voucher
    failed: list[tuple[str, str]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def post_reversals(
    reversals: Sequence[PlannedReversal], ifs: VoucherSender, store: Store, audit: AuditLog
) -> ReversalOutcome:
    """Post each reversal once through the posting ledger: intent, POST, outcome; an unknown
    outcome is looked up by reference."""
    outcome = ReversalOutcome()
    ledger = Ledger(store, audit, ifs)
    fresh = [rv for rv in reversals if ledger.live(rv.reference) is None]
    in_ifs = (
        ledger.held_by_ifs([(rv.reference, rv.company, rv.voucher_date) for rv in fresh])
        if fresh
        else {}
    )
    for rv in reversals:
        if ledger.live(rv.reference) is not None:
            continue  # posted (or in doubt) already
        intent = Intent(
            kind="reversal",
            reference=rv.reference,
            company=rv.company,
            body=rv.to_ifs_body(),
            summary=f"reversing {rv.accrual_reference} as {rv.reference} on"
            f" {rv.voucher_date} ({rv.cause}; {', '.join(rv.groups)})",
            report_id=rv.report_id,
            accrual_reference=rv.accrual_reference,
            groups=tuple(rv.groups),
            cause=rv.cause,
            voucher_date=rv.voucher_date.isoformat(),
            data=rv.to_json(),
        )
        held = in_ifs.get(rv.reference)
        if held is not None:
            # Posted before this state file was restored (or by another installation).
            ledger.adopt_existing(intent, held)
            continue
        settled = ledger.send(intent)
        if settled.outcome in ("posted", "reconciled"):
            outcome.posted.append((rv.report_id, rv.reference, settled.voucher))
        elif settled.outcome == "unknown":
            outcome.unknown.append(rv.report_id)
        else:
            outcome.failed.append((rv.report_id, settled.message))
    return outcome


# ---------------------------------------------------------------- a cycle's summary
# The flow (console/flows/reversals.py) runs these steps; these helpers shape their results.


FAILED_PREFIX = "reversal: "
"""How a refused reversal reads in a run's failed reports."""


def moved(plan: Plan) -> list[dict[str, str]]:
    """Vouchers moved out of a closed period (closed_period = "next-open"), for the summary."""
    out = [
        {
            "reportID": v.report_id,
            "reference": v.reference_number,
            "from": v.moved_from_period,
            "approved": v.moved_from.isoformat(),
            "to": v.period_label,
            "date": v.voucher_date.isoformat(),
        }
        for v in plan.vouchers
        if v.moved_from is not None
    ]
    out += [
        {
            "reportID": rv.report_id,
            "reference": rv.reference,
            "from": "",
            "approved": rv.moved_from.isoformat(),
            "to": rv.period_label,
            "date": rv.voucher_date.isoformat(),
        }
        for rv in plan.reversals
        if rv.moved_from is not None
    ]
    return out


def settle_changes(store: Store) -> None:
    """A confirmed change is done once its new accrual is posted (changed) or at once
    (rejected: the reversal is all there is)."""
    for change in store.report_changes(("confirmed",)):
        latest = store.posted_accrual(change.report_id)
        if change.kind == CAUSE_REJECTED or (
            latest is not None and latest.reference != change.accrual_reference
        ):
            store.set_change_state(change.report_id, "done")
