"""The posting ledger's table (console/ledger.py): one row per voucher the console sent or
meant to send, intent then outcome; an accrual's report status follows it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from console.reference import KINDS
from console.store.records import LedgerEntry, PostedAccrual
from console.store.reports import ReportsMixin
from console.store.schema import OUTCOMES


class LedgerMixin(ReportsMixin):
    """The ledger table; accruals move their report's status."""

    def ledger_intent(
        self,
        *,
        kind: str,
        reference: str,
        company: str,
        body_digest: str,
        report_id: str = "",
        period: str = "",
        version: str = "",
        accrual_reference: str = "",
        groups: Sequence[str] = (),
        cause: str = "",
        voucher_date: str = "",
        amount: str = "",
        currency: str = "",
    ) -> int:
        """Write (and commit, unless inside an outer transaction) the intent to post. An
        accrual's report goes to status posting with it."""
        if kind not in KINDS:
            raise ValueError(f"unknown voucher kind {kind!r}")
        with self.transaction():
            cur = self._x(
                "INSERT INTO ledger (kind, reference, company, report_id, period, version,"
                " accrual_reference, groups, cause, voucher_date, amount, currency,"
                " body_digest, intent_at, outcome) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,'intent')",
                (
                    kind,
                    reference,
                    company,
                    report_id,
                    period,
                    version,
                    accrual_reference,
                    ",".join(groups),
                    cause,
                    voucher_date,
                    amount,
                    currency,
                    body_digest,
                    self.now(),
                ),
            )
            if kind == "accrual":
                self._x(
                    "UPDATE reports SET status='posting', updated=? WHERE report_id=?",
                    (self.now(), report_id),
                )
            return int(cur.lastrowid or 0)

    def ledger_outcome(
        self, entry_id: int, outcome: str, *, voucher_no: str | None = None, error: str = ""
    ) -> LedgerEntry:
        """Record what became of an intent; an accrual's report status follows it."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown posting outcome {outcome!r}")
        now = self.now()
        with self.transaction():
            cur = self._x(
                "UPDATE ledger SET outcome=?, voucher_no=?, error=?,"
                " posted_at = CASE WHEN ?='posted' THEN ? ELSE posted_at END WHERE id=?",
                (outcome, voucher_no, error, outcome, now, entry_id),
            )
            if cur.rowcount == 0:
                raise KeyError(entry_id)
            entry = self.ledger_entries(entry_ids=(entry_id,))[0]
            if entry.kind == "accrual":
                status = {"posted": "posted", "failed": "failed", "unknown": "posting"}.get(outcome)
                if status:
                    self.set_status(entry.report_id, status, error if outcome == "failed" else "")
            return entry

    def ledger_entries(
        self,
        *,
        kinds: Sequence[str] | None = None,
        outcomes: Sequence[str] | None = None,
        reference: str | None = None,
        report_id: str | None = None,
        entry_ids: Sequence[int] | None = None,
        unlabelled: bool = False,
    ) -> list[LedgerEntry]:
        """Ledger entries, oldest first, filtered by kind, outcome, reference, report or id."""
        where: list[str] = []
        params: list[Any] = []
        for column, values in (("kind", kinds), ("outcome", outcomes), ("id", entry_ids)):
            if values is not None:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                params.extend(values)
        for column, value in (("reference", reference), ("report_id", report_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if unlabelled:
            where.append("outcome = 'posted' AND labelled_at IS NULL")
        sql = "SELECT * FROM ledger"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [LedgerEntry(**r) for r in self._rows(sql + " ORDER BY id", params)]

    def posted_accrual(self, report_id: str, version: str | None = None) -> LedgerEntry | None:
        """The report's newest posted accrual (of that version)."""
        rows = [
            e
            for e in self.ledger_entries(
                kinds=("accrual",), outcomes=("posted",), report_id=report_id
            )
            if version is None or e.version == version
        ]
        return rows[-1] if rows else None

    def mark_labelled(self, report_ids: Sequence[str]) -> None:
        now = self.now()
        with self.transaction():
            self._conn.executemany(
                "UPDATE ledger SET labelled_at = ? WHERE report_id = ? AND kind = 'accrual'"
                " AND outcome = 'posted' AND labelled_at IS NULL",
                [(now, rid) for rid in report_ids],
            )

    def posted_accruals(self, report_ids: Sequence[str] | None = None) -> list[PostedAccrual]:
        """Reports in status posted with their newest posted accrual."""
        sql = (
            "SELECT r.report_id, p.reference, p.version, p.company, COALESCE(p.voucher_no, '')"
            " AS voucher_no, r.approved, COALESCE(p.posted_at, '') AS posted_at"
            " FROM reports r JOIN ledger p ON p.id = (SELECT MAX(id) FROM ledger q"
            " WHERE q.report_id = r.report_id AND q.kind = 'accrual' AND q.outcome = 'posted')"
            " WHERE r.status = 'posted'"
        )
        rows = self._rows(sql + " ORDER BY r.approved, r.report_id")
        wanted = None if report_ids is None else set(report_ids)
        return [PostedAccrual(**r) for r in rows if wanted is None or r["report_id"] in wanted]

    def posted_count(self) -> int:
        return int(
            self._x(
                "SELECT COUNT(*) FROM ledger WHERE kind = 'accrual' AND outcome = 'posted'"
            ).fetchone()[0]
        )
