"""The audit log's rows (console/audit.py owns the chain; these are its storage primitives),
and the pages and searches the audit screen reads."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from console.store.base import StoreBase, _and_any_of, _escape_like
from console.store.records import AuditFilter, AuditRow


class AuditMixin(StoreBase):
    """Audit rows: append, read in order, filter, page and search."""

    def audit_head(self) -> tuple[int, str]:
        """(last seq, last hash) as recorded in the chain head; (0, '') when empty."""
        row = self._x("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        if row is None:
            return 0, ""
        seq, _, digest = str(row[0]).partition(":")
        return int(seq), digest

    def append_audit_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert chained rows and move the head; the caller holds the transaction."""
        if not rows:
            return
        with self.transaction():
            self._conn.executemany(
                "INSERT INTO audit_events (seq, at, actor, type, report_id, transaction_ids,"
                " voucher, summary, request_digest, response_digest, data, prev_hash, hash)"
                " VALUES (:seq, :at, :actor, :type, :report_id, :transaction_ids, :voucher,"
                " :summary, :request_digest, :response_digest, :data, :prev_hash, :hash)",
                rows,
            )
            last = rows[-1]
            self._x(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('audit_head', ?)",
                (f"{last['seq']}:{last['hash']}",),
            )

    def iter_audit_rows(self, batch: int = 2000) -> Iterator[dict[str, Any]]:
        """Every stored audit row in physical seq order, in batches (no full load)."""
        last = -1
        while True:
            rows = self._rows(
                "SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?", (last, batch)
            )
            if not rows:
                return
            yield from rows
            last = rows[-1]["seq"]

    def _audit_where(self, flt: AuditFilter) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if flt.types:
            clauses.append(f"type IN ({','.join('?' for _ in flt.types)})")
            params.extend(flt.types)
        for clause, value in (
            ("report_id = ?", flt.report_id),
            ("actor = ?", flt.actor),
            ("at >= ?", flt.since),
            ("at < ?", flt.until),
        ):
            if value:
                clauses.append(clause)
                params.append(value)
        if flt.transaction_id:
            # transaction_ids holds a JSON list: match the quoted ID, not a substring of another.
            clauses.append("transaction_ids LIKE ? ESCAPE '\\'")
            params.append('%"' + _escape_like(flt.transaction_id) + '"%')
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        return self._audit_text(where, params, flt.text.strip())

    def audit_page(
        self, flt: AuditFilter | None = None, before_seq: int | None = None, limit: int = 200
    ) -> list[AuditRow]:
        """One page of events, newest first; pass the last row's seq as before_seq for more."""
        return self._audit_page(*self._audit_where(flt or AuditFilter()), before_seq, limit)

    def _audit_page(
        self, where: str, params: list[Any], before_seq: int | None, limit: int
    ) -> list[AuditRow]:
        if before_seq is not None:
            where += (" AND " if where else " WHERE ") + "seq < ?"
            params = [*params, before_seq]
        rows = self._rows(
            f"SELECT * FROM audit_events{where} ORDER BY seq DESC LIMIT ?", [*params, int(limit)]
        )
        return [AuditRow.from_db(r) for r in rows]

    def audit_count(self, flt: AuditFilter | None = None) -> int:
        return self._count("audit_events", *self._audit_where(flt or AuditFilter()))

    def audit_rows_for_export(
        self, report_id: str | None = None, batch: int = 2000
    ) -> Iterator[AuditRow]:
        last = 0
        while True:
            sql = "SELECT * FROM audit_events WHERE seq > ?"
            params: list[Any] = [last]
            if report_id:
                sql += " AND report_id = ?"
                params.append(report_id)
            rows = self._rows(sql + " ORDER BY seq LIMIT ?", [*params, batch])
            if not rows:
                return
            for r in rows:
                yield AuditRow.from_db(r)
            last = rows[-1]["seq"]

    def _audit_text(self, where: str, params: list[Any], text: str) -> tuple[str, list[Any]]:
        """Free words, searched in every column the audit shows: summary, report, voucher,
        transactions, the event type, the actor and the time."""
        if not text:
            return where, params
        like = "%" + _escape_like(text) + "%"
        columns = ("summary", "report_id", "voucher", "transaction_ids", "type", "actor", "at")
        clauses = [f"{c} LIKE ? ESCAPE '\\'" for c in columns]
        args: list[Any] = [like] * len(columns)
        # An amount as shown ("357.40") also finds a summary written in minor units ("35740 ").
        bare = text.replace(",", "")
        whole, dot, cents = bare.partition(".")
        if dot and whole.lstrip("-").isdigit() and cents.isdigit() and len(cents) == 2:
            clauses.append("summary LIKE ? ESCAPE '\\'")
            args.append("%" + _escape_like(str(int(whole + cents))) + " %")
        return _and_any_of(where, params, clauses, args)
