"""The re-read of posted and held reports (console/reversal.py `watch_posted`) when a report
cannot be read: the rest is read as usual, the report is noted once and re-read alone (at
most `alone_cap` a cycle, least recently tried first) until it reads, then watched as
before. A stand-in reader over a real state file."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from console.audit import AuditLog
from console.errors import ServiceError
from console.expensify.models import ExportReport, ExportResult, MalformedReport
from console.fetch import malformed_record, report_record
from console.reversal import posted_attention, unreadable_reports, watch_posted
from console.store import Store

TEMPLATE_ERROR = "Error while processing the template: transactionList is a string"


def _report(rid: str, status: str = "APPROVED", reimbursed: str = "") -> ExportReport:
    return ExportReport.model_validate(
        {
            "reportID": rid,
            "reportName": f"Trip {rid}",
            "status": status,
            "policyID": "POL-US",
            "currency": "USD",
            "approved": "2026-11-03 10:00:00",
            "reimbursed": reimbursed,
        }
    )


class Reader:
    """Expensify as the watch reads it: `broken` reports stop the export template (the
    isolating export yields them as MalformedReport; a plain export fails)."""

    def __init__(self, reports: Sequence[ExportReport]) -> None:
        self.reports = {r.reportID: r for r in reports}
        self.broken: set[str] = set()
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.error = ServiceError("expensify", 500, "500", TEMPLATE_ERROR)

    def export_reports_by_id(
        self,
        report_ids: Sequence[str],
        *,
        states: Sequence[str] = (),
        exclude_label: str | None = None,
    ) -> Iterator[ExportReport | MalformedReport]:
        self.calls.append(("shared", tuple(report_ids)))
        for rid in report_ids:
            if rid in self.broken:
                yield MalformedReport(reportID=rid, what=f"export-template:{TEMPLATE_ERROR}")
            elif rid in self.reports:
                yield self.reports[rid]

    def export_reports(
        self, *, report_ids: Sequence[str] | None = None, states: Sequence[str] = ()
    ) -> ExportResult:
        ids = tuple(report_ids or ())
        self.calls.append(("alone", ids))
        if self.broken & set(ids):
            raise self.error
        return ExportResult(reports=[self.reports[r] for r in ids if r in self.reports])


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 11, 30, 9, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.at += timedelta(seconds=1)
        return self.at


@pytest.fixture
def store(tmp_path: Any) -> Iterator[Store]:
    s = Store(tmp_path / "state.sqlite3", clock=Clock())
    yield s
    s.close()


def _posted(store: Store, *reports: ExportReport) -> None:
    store.upsert_reports([report_record(r) for r in reports])
    for r in reports:
        entry = store.ledger_intent(
            kind="accrual",
            reference=f"EXP:{r.reportID}:1",
            company="10",
            body_digest="",
            report_id=r.reportID,
            version="1",
        )
        store.ledger_outcome(entry, "posted", voucher_no=f"V{r.reportID}")


def _events(store: Store, kind: str) -> list[str]:
    return [r["report_id"] for r in store.iter_audit_rows() if r["type"] == kind]


def test_the_rest_is_read_and_the_unreadable_report_is_noted_once(store: Store) -> None:
    a, b = _report("1"), _report("2", "REIMBURSED", "2026-11-20")
    _posted(store, a, b)
    reader = Reader([a, b])
    reader.broken.add("1")
    audit = AuditLog(store, "t")

    first = watch_posted(reader, store, audit)
    assert first.read == ["2"] and first.reimbursed == ["2"] and first.unreadable == ["1"]
    assert reader.calls == [("shared", ("1", "2"))]
    [waiting] = posted_attention(store)
    assert waiting.code == f"unreadable-after-posting:export-template:{TEMPLATE_ERROR}"
    assert waiting.warn and "EXP:1:1" in waiting.message and TEMPLATE_ERROR in waiting.message

    # Next cycle: kept out of the shared export, re-read alone; not reported again.
    reader.calls.clear()
    again = watch_posted(reader, store, audit)
    assert reader.calls == [("alone", ("1",))]  # 2 is reimbursed: no longer watched
    assert again.unreadable == [] and again.readable == []
    assert _events(store, "watch-unreadable") == ["1"]

    # Fixed in Expensify (same content): it reads, leaves the note, nothing is flagged.
    reader.broken.clear()
    fixed = watch_posted(reader, store, audit)
    assert fixed.readable == ["1"] and fixed.read == ["1"] and fixed.changed == []
    assert unreadable_reports(store) == {} and posted_attention(store) == []
    assert _events(store, "watch-readable") == ["1"]
    reader.calls.clear()
    watch_posted(reader, store, audit)
    assert reader.calls == [("shared", ("1",))]


def test_lone_reads_are_capped_and_rotate(store: Store) -> None:
    reports = [_report(str(n)) for n in range(1, 6)]
    _posted(store, *reports)
    reader = Reader(reports)
    reader.broken |= {"1", "2", "3", "4"}
    audit = AuditLog(store, "t")
    watch_posted(reader, store, audit, alone_cap=2)
    assert sorted(unreadable_reports(store)) == ["1", "2", "3", "4"]
    alone: list[str] = []
    for _cycle in range(2):
        reader.calls.clear()
        watch_posted(reader, store, audit, alone_cap=2)
        assert ("shared", ("5",)) in reader.calls
        alone += [ids[0] for kind, ids in reader.calls if kind == "alone"]
    assert sorted(alone) == ["1", "2", "3", "4"]  # two a cycle, each in turn


def test_a_held_report_that_cannot_be_read_is_noted_not_listed(store: Store) -> None:
    a = _report("1")
    store.upsert_reports([report_record(a)])
    store.set_status("1", "held", "missing-dimension:B:CC-410")
    reader = Reader([a])
    reader.broken.add("1")
    outcome = watch_posted(reader, store, AuditLog(store, "t"))
    assert outcome.unreadable == ["1"]
    assert posted_attention(store) == []  # held already: in the hold queue
    reader.calls.clear()
    watch_posted(reader, store, AuditLog(store, "t"))
    assert reader.calls == [("alone", ("1",))]


def test_a_lone_read_that_fails_otherwise_fails_the_cycle(store: Store) -> None:
    a, b = _report("1"), _report("2")
    _posted(store, a, b)
    reader = Reader([a, b])
    reader.broken.add("1")
    watch_posted(reader, store, AuditLog(store, "t"))
    reader.error = ServiceError("expensify", 401, "401", "Authentication error")
    with pytest.raises(ServiceError):
        watch_posted(reader, store, AuditLog(store, "t"))
    assert sorted(unreadable_reports(store)) == ["1"]  # nothing lost


def test_a_held_report_the_poll_isolated_is_read_alone_until_fixed(store: Store) -> None:
    """Held as malformed:export-template (the poll's isolation found it): re-read alone, and
    once Expensify exports it, stored as changed and evaluated again; no event is repeated."""
    a = _report("7")
    what = f"export-template:{TEMPLATE_ERROR}"
    store.upsert_reports([malformed_record(MalformedReport(reportID="7", what=what))])
    store.set_status("7", "held", f"malformed:{what}")
    reader = Reader([a])
    reader.broken.add("7")
    audit = AuditLog(store, "t")

    first = watch_posted(reader, store, audit)
    assert reader.calls == [("alone", ("7",))]  # not in the shared export: it would fail it
    assert first.unreadable == [] and first.refreshed == []
    assert _events(store, "watch-unreadable") == []  # the poll's own hold says so already
    reader.calls.clear()
    watch_posted(reader, store, audit)
    assert reader.calls == [("alone", ("7",))]

    reader.broken.clear()  # fixed in Expensify, without a new approval
    fixed_outcome = watch_posted(reader, store, audit)
    assert fixed_outcome.refreshed == ["7"] and fixed_outcome.readable == []
    assert store.report_status("7") == "pending"  # stored again, evaluated by the cycle
    assert unreadable_reports(store) == {}
    reader.calls.clear()
    watch_posted(reader, store, audit)
    assert ("alone", ("7",)) not in reader.calls


def test_a_held_report_expensify_no_longer_lists_is_not_called_readable(store: Store) -> None:
    what = f"export-template:{TEMPLATE_ERROR}"
    store.upsert_reports([malformed_record(MalformedReport(reportID="8", what=what))])
    store.set_status("8", "held", f"malformed:{what}")
    reader = Reader([])  # deleted in Expensify: the lone export comes back without it
    audit = AuditLog(store, "t")
    for _cycle in range(2):
        reader.calls.clear()
        outcome = watch_posted(reader, store, audit)
        assert reader.calls == [("alone", ("8",))] and outcome.readable == []
    assert _events(store, "watch-readable") == [] and store.report_status("8") == "held"


def test_a_template_held_report_now_readable_but_sent_back_stays_quietly(store: Store) -> None:
    what = f"export-template:{TEMPLATE_ERROR}"
    store.upsert_reports([malformed_record(MalformedReport(reportID="9", what=what))])
    store.set_status("9", "held", f"malformed:{what}")
    reader = Reader([_report("9", "OPEN")])  # fixed, but sent back to its submitter
    audit = AuditLog(store, "t")
    for _cycle in range(2):
        outcome = watch_posted(reader, store, audit)
        assert outcome.refreshed == [] and outcome.readable == []
    assert _events(store, "watch-readable") == [] and store.report_status("9") == "held"
