"""Reports and their lines as fetched, their status, the hold queue as evaluation leaves it,
exclusions, and what is watched after posting (changes in Expensify after a report posted)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from console.store.base import StoreBase
from console.store.records import (
    ChangeRow,
    EvaluationRecord,
    Exclusion,
    ReportRecord,
    UpsertResult,
    WatchRow,
)
from console.store.schema import SENT_BACK_STATES, STATUSES

# Report IDs per `IN (...)` query: well under SQLite's bound on parameters.
_ID_BATCH = 500


# Statuses whose stored content is what was posted (or decided): a change is reported, not
# taken in.
_SETTLED = ("posted", "posting", "excluded")


class ReportsMixin(StoreBase):
    """Reports, holds, exclusions, watched reports and changes after posting."""

    def upsert_reports(self, records: Iterable[ReportRecord]) -> UpsertResult:
        """Insert new reports, refresh changed ones; one transaction for the whole batch.

        A changed report that was pending, held or failed goes back to pending; a posted or
        excluded report keeps its status (a change after posting is reported, not reposted).
        """
        result = UpsertResult()
        now = self.now()
        with self.transaction():
            for rec in records:
                row = self._conn.execute(
                    "SELECT content_hash, status FROM reports WHERE report_id = ?",
                    (rec.report_id,),
                ).fetchone()
                if row is None:
                    self._conn.execute(
                        "INSERT INTO reports (policy_id, employee, report_name, approved, currency,"
                        " total_minor, line_count, content_hash, raw, report_id, status,"
                        " first_seen, updated) VALUES (?,?,?,?,?,?,?,?,?,?, 'pending', ?, ?)",
                        (*_report_values(rec), rec.report_id, now, now),
                    )
                    result.new.append(rec.report_id)
                elif row[0] == rec.content_hash:
                    result.unchanged.append(rec.report_id)
                    continue
                elif rec.legacy_hash and row[0] == rec.legacy_hash:
                    self._upgrade_hash(rec, settled=row[1] in _SETTLED)
                    result.unchanged.append(rec.report_id)
                    continue
                elif row[1] in _SETTLED:
                    result.changed_after_post.append(rec.report_id)
                    continue
                else:
                    self._replace_content(rec, now)
                    result.changed.append(rec.report_id)
                    continue
                self._insert_lines(rec)
        return result

    def report_raw(self, report_id: str) -> dict[str, Any] | None:
        row = self._x("SELECT raw FROM reports WHERE report_id = ?", (report_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def reports_raw(
        self, statuses: Sequence[str], report_ids: Sequence[str] | None = None
    ) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(report_id, status, raw) for reports in these statuses, oldest approval first."""
        for rid, status, text in self.iter_reports_raw_text(statuses, report_ids):
            yield rid, status, json.loads(text)

    def reports_raw_text(
        self, statuses: Sequence[str], report_ids: Sequence[str] | None = None
    ) -> list[tuple[str, str, str]]:
        """(report_id, status, raw JSON text), as reports_raw but not parsed, all at once."""
        return list(self.iter_reports_raw_text(statuses, report_ids))

    def report_keys(
        self, statuses: Sequence[str], report_ids: Sequence[str] | None = None
    ) -> list[tuple[str, str]]:
        """(report_id, status) of reports in these statuses, oldest approval first (with
        `report_ids`: in batches of 500 of them, each batch in that order)."""
        marks = ",".join("?" for _ in statuses)
        sql = f"SELECT report_id, status FROM reports WHERE status IN ({marks})"
        params: list[Any] = list(statuses)
        order = " ORDER BY approved, report_id"
        if report_ids is None:
            return [(r[0], r[1]) for r in self._tuples(sql + order, params)]
        ids = list(report_ids)
        out: list[tuple[str, str]] = []
        for start in range(0, len(ids), _ID_BATCH):
            chunk = ids[start : start + _ID_BATCH]
            q = sql + f" AND report_id IN ({','.join('?' for _ in chunk)})"
            out += [(r[0], r[1]) for r in self._tuples(q + order, params + chunk)]
        return out

    def iter_reports_raw_text(
        self,
        statuses: Sequence[str],
        report_ids: Sequence[str] | None = None,
        keys: Sequence[tuple[str, str]] | None = None,
    ) -> Iterator[tuple[str, str, str]]:
        """(report_id, status, raw JSON text) in report_keys order, the raw text read 500
        reports at a time: at 10,000 reports the texts alone are some 50 MB, and a caller
        that parses one report at a time needs only the batch in hand. `keys`: the
        report_keys the caller already read."""
        if keys is None:
            keys = self.report_keys(statuses, report_ids)
        for start in range(0, len(keys), _ID_BATCH):
            batch = keys[start : start + _ID_BATCH]
            marks = ",".join("?" for _ in batch)
            raw = dict(
                self._tuples(
                    f"SELECT report_id, raw FROM reports WHERE report_id IN ({marks})",
                    [rid for rid, _ in batch],
                )
            )
            for rid, status in batch:
                text = raw.get(rid)
                if text is not None:
                    yield rid, status, text

    def currencies_by_policy(self) -> dict[str, set[str]]:
        """The report currencies seen per Expensify policy."""
        out: dict[str, set[str]] = {}
        for r in self._rows("SELECT DISTINCT policy_id, currency FROM reports"):
            if r["currency"]:
                out.setdefault(r["policy_id"], set()).add(r["currency"])
        return out

    def report_status(self, report_id: str) -> str | None:
        row = self._x("SELECT status FROM reports WHERE report_id = ?", (report_id,)).fetchone()
        return None if row is None else str(row[0])

    def content_hash(self, report_id: str) -> str | None:
        row = self._x(
            "SELECT content_hash FROM reports WHERE report_id = ?", (report_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def set_status(self, report_id: str, status: str, reason: str = "") -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown report status {status!r}")
        now = self.now()
        with self.transaction():
            self._x(
                "UPDATE reports SET status=?, reason=?, updated=?,"
                " held_since = CASE WHEN ?='held' THEN COALESCE(held_since, ?) ELSE NULL END"
                " WHERE report_id=?",
                (status, reason, now, status, now, report_id),
            )
            if status != "held":
                self._x("DELETE FROM holds WHERE report_id = ?", (report_id,))

    def apply_evaluations(self, evaluations: Iterable[EvaluationRecord]) -> dict[str, list[str]]:
        """Record evaluation results in one transaction; the hold queue keeps first_held for
        reasons that persist. Returns {"held": [...], "released": [...], "ready": [...]}:
        `released` are reports that were held and no longer are."""
        now = self.now()
        out: dict[str, list[str]] = {"held": [], "released": [], "ready": [], "newly_held": []}
        with self.transaction():
            for ev in evaluations:
                prev = self._conn.execute(
                    "SELECT status FROM reports WHERE report_id = ?", (ev.report_id,)
                ).fetchone()
                if prev is None:
                    continue
                was_held = prev[0] == "held"
                if ev.holds:
                    codes = [h.code for h in ev.holds]
                    self._conn.execute(
                        f"DELETE FROM holds WHERE report_id = ? AND code NOT IN"
                        f" ({','.join('?' for _ in codes)})",
                        (ev.report_id, *codes),
                    )
                    self._conn.executemany(
                        "INSERT INTO holds (report_id, code, message, company, first_held,"
                        " last_checked) VALUES (?,?,?,?,?,?) ON CONFLICT(report_id, code) DO"
                        " UPDATE SET message=excluded.message, company=excluded.company,"
                        " last_checked=excluded.last_checked",
                        [(ev.report_id, h.code, h.message, ev.company, now, now) for h in ev.holds],
                    )
                    self._conn.execute(
                        "UPDATE reports SET status='held', reason=?, company=?, updated=?,"
                        " held_since=COALESCE(held_since, ?) WHERE report_id=?",
                        (ev.holds[0].code, ev.company, now, now, ev.report_id),
                    )
                    out["held"].append(ev.report_id)
                    if not was_held:
                        out["newly_held"].append(ev.report_id)
                else:
                    self._conn.execute("DELETE FROM holds WHERE report_id = ?", (ev.report_id,))
                    self._conn.execute(
                        "UPDATE reports SET status='ready', reason='', company=?, updated=?,"
                        " held_since=NULL WHERE report_id=?",
                        (ev.company, now, ev.report_id),
                    )
                    out["ready"].append(ev.report_id)
                    if was_held:
                        out["released"].append(ev.report_id)
        return out

    def exclude(self, report_id: str, reason: str, actor: str) -> bool:
        """Exclude a report from posting. False if the report is unknown or already posted."""
        now = self.now()
        with self.transaction():
            status = self.report_status(report_id)
            if status is None or status in ("posted", "posting"):
                return False
            self._x(
                "INSERT OR REPLACE INTO exclusions (report_id, reason, actor, at) VALUES (?,?,?,?)",
                (report_id, reason, actor, now),
            )
            self.set_status(report_id, "excluded", f"excluded: {reason}")
        return True

    def exclusion(self, report_id: str) -> Exclusion | None:
        rows = self._rows("SELECT * FROM exclusions WHERE report_id = ?", (report_id,))
        return Exclusion(**rows[0]) if rows else None

    def excluded_ids(self) -> set[str]:
        return {r[0] for r in self._x("SELECT report_id FROM exclusions").fetchall()}

    def include(self, report_id: str) -> Exclusion | None:
        """Undo an exclusion: the report is pending again (evaluated on the next look).
        Returns the exclusion undone; None when the report is not excluded."""
        with self.transaction():
            found = self.exclusion(report_id)
            if found is None or self.report_status(report_id) != "excluded":
                return None
            self._x("DELETE FROM exclusions WHERE report_id = ?", (report_id,))
            self.set_status(report_id, "pending", "")
        return found

    def line_reimbursable(self, report_id: str) -> dict[str, bool]:
        """transactionID -> reimbursable, for the lines the store holds for a report."""
        return {
            r["transaction_id"]: bool(r["reimbursable"])
            for r in self._rows(
                "SELECT transaction_id, reimbursable FROM lines WHERE report_id = ?", (report_id,)
            )
        }

    def watch_candidates(self, limit: int) -> list[str]:
        """Reports Expensify may still change: posted ones (not seen reimbursed, no open
        change) and held ones (a fix made in Expensify releases them), the least recently
        re-read first: each cycle re-reads the next `limit` of them. Not a report that breaks
        the export template: it would fail the whole re-read (finding it again costs an
        isolation, about 2·log2(n) exports, every cycle); the watch reads it alone."""
        rows = self._rows(
            "SELECT r.report_id FROM reports r LEFT JOIN watched w ON w.report_id = r.report_id"
            " WHERE (r.status = 'posted' AND COALESCE(w.expensify_status, '') != 'REIMBURSED'"
            " AND r.report_id NOT IN (SELECT report_id FROM report_changes"
            " WHERE state IN ('open', 'confirmed')))"
            " OR (r.status = 'held' AND r.reason NOT LIKE 'malformed:export-template%')"
            " ORDER BY COALESCE(w.last_checked, ''), r.approved, r.report_id LIMIT ?",
            (int(limit),),
        )
        return [r["report_id"] for r in rows]

    def save_watch(self, seen: Sequence[tuple[str, str, str]]) -> None:
        """(report_id, Expensify status, reimbursed date) for each report re-read."""
        now = self.now()
        with self.transaction():
            self._conn.executemany(
                "INSERT INTO watched (report_id, last_checked, expensify_status, reimbursed)"
                " VALUES (?,?,?,?) ON CONFLICT(report_id) DO UPDATE SET"
                " last_checked=excluded.last_checked,"
                " expensify_status=excluded.expensify_status, reimbursed=excluded.reimbursed",
                [(rid, now, status, reimbursed) for rid, status, reimbursed in seen],
            )

    def note_read_status(self, statuses: Mapping[str, str]) -> None:
        """Report ID → the Expensify status an export just read (a poll's, approved): a
        report the watch last saw sent back is not any more."""
        marks = ",".join("?" for _ in SENT_BACK_STATES)
        with self.transaction():
            self._conn.executemany(
                "UPDATE watched SET expensify_status = ? WHERE report_id = ?"
                f" AND expensify_status IN ({marks})",
                [(status, rid, *SENT_BACK_STATES) for rid, status in statuses.items()],
            )

    def sent_back(self) -> dict[str, str]:
        """Reports not yet posted that the watch last read sent back to their submitter
        (report ID → that Expensify status); console/report_checks.py holds them."""
        rows = self._rows(
            "SELECT w.report_id, w.expensify_status FROM watched w"
            " JOIN reports r ON r.report_id = w.report_id"
            f" WHERE w.expensify_status IN ({','.join('?' for _ in SENT_BACK_STATES)})"
            f" AND r.status NOT IN ({','.join('?' for _ in _SETTLED)})",
            (*SENT_BACK_STATES, *_SETTLED),
        )
        return {r["report_id"]: r["expensify_status"] for r in rows}

    def watched(self, report_ids: Sequence[str] | None = None) -> dict[str, WatchRow]:
        rows = [WatchRow(**r) for r in self._rows("SELECT * FROM watched")]
        wanted = None if report_ids is None else set(report_ids)
        return {w.report_id: w for w in rows if wanted is None or w.report_id in wanted}

    def open_change(
        self, report_id: str, kind: str, accrual_reference: str, new_hash: str, new_raw: Any
    ) -> bool:
        """Record (or refresh) a change after posting; True when it is new or different."""
        with self.transaction():
            row = self._x(
                "SELECT kind, new_hash, state FROM report_changes WHERE report_id = ?",
                (report_id,),
            ).fetchone()
            if (
                row is not None
                and row[2] in ("open", "confirmed")
                and tuple(row[:2])
                == (
                    kind,
                    new_hash,
                )
            ):
                return False
            if row is not None and row[2] == "confirmed":
                return False  # being applied: the confirmation decides
            self._x(
                "INSERT OR REPLACE INTO report_changes (report_id, kind, accrual_reference,"
                " new_hash, new_raw, state, detected_at) VALUES (?,?,?,?,?, 'open', ?)",
                (
                    report_id,
                    kind,
                    accrual_reference,
                    new_hash,
                    json.dumps(new_raw, sort_keys=True, default=str),
                    self.now(),
                ),
            )
            code = f"changed-after-posting:{report_id}"
            self._x(
                "INSERT INTO holds (report_id, code, message, company, first_held, last_checked)"
                " SELECT ?, ?, ?, company, ?, ? FROM reports WHERE report_id = ?"
                " ON CONFLICT(report_id, code) DO UPDATE SET message=excluded.message,"
                " last_checked=excluded.last_checked",
                (
                    report_id,
                    code,
                    f"report {report_id} was {kind} in Expensify after its accrual"
                    f" {accrual_reference} was posted; confirm to reverse it"
                    + (" and post the new version" if kind == "changed" else ""),
                    self.now(),
                    self.now(),
                    report_id,
                ),
            )
            return True

    def report_change(self, report_id: str) -> ChangeRow | None:
        rows = self._rows("SELECT * FROM report_changes WHERE report_id = ?", (report_id,))
        return _change_row(rows[0]) if rows else None

    def report_changes(self, states: Sequence[str] = ("open", "confirmed")) -> list[ChangeRow]:
        marks = ",".join("?" for _ in states)
        return [
            _change_row(r)
            for r in self._rows(
                f"SELECT * FROM report_changes WHERE state IN ({marks}) ORDER BY detected_at,"
                " report_id",
                list(states),
            )
        ]

    def set_change_state(self, report_id: str, state: str, actor: str = "") -> None:
        with self.transaction():
            if state == "confirmed":
                self._x(
                    "UPDATE report_changes SET state='confirmed', confirmed_by=?, confirmed_at=?"
                    " WHERE report_id=?",
                    (actor, self.now(), report_id),
                )
            else:
                self._x("UPDATE report_changes SET state=? WHERE report_id=?", (state, report_id))
            if state == "done":
                self._x(
                    "DELETE FROM holds WHERE report_id = ? AND code = ?",
                    (report_id, f"changed-after-posting:{report_id}"),
                )

    def awaiting_new_accrual(self, report_id: str) -> bool:
        """A confirmed change whose new accrual is not posted yet: the post step must not
        take the old posting for this report's accrual."""
        row = self._x(
            "SELECT 1 FROM report_changes WHERE report_id = ? AND state = 'confirmed'"
            " AND kind = 'changed'",
            (report_id,),
        ).fetchone()
        return row is not None

    def replace_report_content(self, rec: ReportRecord) -> None:
        """A confirmed change: the report's stored content becomes the new version, to be
        evaluated and posted like a new report."""
        with self.transaction():
            self._replace_content(rec, self.now())

    def _upgrade_hash(self, rec: ReportRecord, *, settled: bool) -> None:
        """A report whose version-1 hash still matches takes its version-2 hash silently (the
        caller holds the transaction). One not yet posted takes the fetched content too, so
        what version 1 did not cover (tax, billable, units) is planned as Expensify has it
        now; a posted one keeps what it was posted from, the new hash its baseline for
        changes from here on."""
        if settled:
            self._conn.execute(
                "UPDATE reports SET content_hash=? WHERE report_id=?",
                (rec.content_hash, rec.report_id),
            )
        else:
            self._conn.execute(
                "UPDATE reports SET content_hash=?, raw=? WHERE report_id=?",
                (rec.content_hash, _raw_text(rec), rec.report_id),
            )

    def _replace_content(self, rec: ReportRecord, now: str) -> None:
        """A stored report's content and lines become `rec`'s, pending evaluation again (the
        caller holds the transaction)."""
        self._conn.execute(
            "UPDATE reports SET policy_id=?, employee=?, report_name=?, approved=?,"
            " currency=?, total_minor=?, line_count=?, content_hash=?, raw=?,"
            " status='pending', reason='', updated=? WHERE report_id=?",
            (*_report_values(rec), now, rec.report_id),
        )
        self._conn.execute("DELETE FROM lines WHERE report_id = ?", (rec.report_id,))
        self._insert_lines(rec)

    def _insert_lines(self, rec: ReportRecord) -> None:
        """Writes a report's lines (the caller holds the transaction and cleared old lines)."""
        self._conn.executemany(
            "INSERT OR REPLACE INTO lines (report_id, transaction_id, position, merchant,"
            " category, tag, amount_minor, currency, reimbursable, created, comment)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    rec.report_id,
                    ln.transaction_id,
                    i,
                    ln.merchant,
                    ln.category,
                    ln.tag,
                    ln.amount_minor,
                    ln.currency,
                    1 if ln.reimbursable else 0,
                    ln.created,
                    ln.comment,
                )
                for i, ln in enumerate(rec.lines)
            ],
        )

    def shared_transactions(self) -> dict[str, list[tuple[str, str, str]]]:
        """Expensify transaction IDs on more than one report that is not excluded:
        ID -> [(first_seen, report_id, status)], oldest first (console/report_checks.py)."""
        out: dict[str, list[tuple[str, str, str]]] = {}
        for tid, first_seen, report_id, status in self._tuples(
            "SELECT l.transaction_id, r.first_seen, r.report_id, r.status FROM lines l"
            " JOIN reports r ON r.report_id = l.report_id"
            " WHERE l.transaction_id != '' AND r.status != 'excluded' AND l.transaction_id IN"
            " (SELECT l2.transaction_id FROM lines l2 JOIN reports r2"
            "  ON r2.report_id = l2.report_id WHERE l2.transaction_id != ''"
            "  AND r2.status != 'excluded' GROUP BY l2.transaction_id HAVING COUNT(*) > 1)"
            " ORDER BY l.transaction_id, r.first_seen, r.report_id"
        ):
            out.setdefault(str(tid), []).append((str(first_seen), str(report_id), str(status)))
        return out


def _change_row(r: dict[str, Any]) -> ChangeRow:
    return ChangeRow(**{**r, "new_raw": json.loads(r["new_raw"] or "{}")})


def _report_values(rec: ReportRecord) -> tuple[Any, ...]:
    """A report's stored columns, in the order the INSERT and the UPDATE name them."""
    return (
        rec.policy_id,
        rec.employee,
        rec.report_name,
        rec.approved,
        rec.currency,
        rec.total_minor,
        len(rec.lines),
        rec.content_hash,
        _raw_text(rec),
    )


def _raw_text(rec: ReportRecord) -> str:
    return json.dumps(rec.raw, sort_keys=True, default=str)
