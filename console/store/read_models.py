"""Read models for the TUI: pages of reports filtered in SQL, counts, a report's detail and
the hold queue grouped by reason; the searches over every column a screen shows (issue 15)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from console.store.base import _and_any_of, _escape_like
from console.store.ledger import LedgerMixin
from console.store.records import (
    Exclusion,
    HoldGroup,
    ReportDetail,
    ReportRow,
    StoredHold,
    StoredLine,
)


class ReadModelsMixin(LedgerMixin):
    """Paged, filtered reads of reports, their detail and the hold queue."""

    _REPORT_COLS = (
        "report_id, policy_id, employee, report_name, approved, currency, total_minor,"
        " line_count, status, reason, company, held_since, content_hash, first_seen, updated"
    )

    def _report_where(self, status: str | Sequence[str] | None) -> tuple[str, list[Any]]:
        if not status:
            return "", []
        wanted = [status] if isinstance(status, str) else list(status)
        return f" WHERE status IN ({','.join('?' for _ in wanted)})", wanted

    def pending_reports(
        self, status: str | Sequence[str] | None = None, *, offset: int = 0, limit: int = 200
    ) -> list[ReportRow]:
        """One page of reports in these statuses (newest approval first); search_reports()
        is the same with the text a screen's filter searches."""
        where, params = self._report_where(status)
        return self._report_page(where, params, offset, limit)

    def _report_page(
        self, where: str, params: list[Any], offset: int, limit: int
    ) -> list[ReportRow]:
        rows = self._rows(
            f"SELECT {self._REPORT_COLS} FROM reports{where}"
            " ORDER BY approved DESC, report_id LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
        return [ReportRow(**r) for r in rows]

    def count_reports(self, status: str | Sequence[str] | None = None) -> int:
        return self._count("reports", *self._report_where(status))

    def status_counts(self) -> dict[str, int]:
        return {
            r["status"]: r["n"]
            for r in self._rows("SELECT status, COUNT(*) AS n FROM reports GROUP BY status")
        }

    def report_detail(self, report_id: str) -> ReportDetail | None:
        rows = self._rows(
            f"SELECT {self._REPORT_COLS}, raw FROM reports WHERE report_id = ?", (report_id,)
        )
        if not rows:
            return None
        raw = json.loads(rows[0].pop("raw"))
        report = ReportRow(**rows[0])
        lines = [
            StoredLine(**{**r, "reimbursable": bool(r["reimbursable"])})
            for r in self._rows(
                "SELECT * FROM lines WHERE report_id = ? ORDER BY position", (report_id,)
            )
        ]
        holds = [
            StoredHold(**r)
            for r in self._rows(
                "SELECT * FROM holds WHERE report_id = ? ORDER BY first_held, code", (report_id,)
            )
        ]
        excl = self._rows("SELECT * FROM exclusions WHERE report_id = ?", (report_id,))
        return ReportDetail(
            report=report,
            raw=raw,
            lines=lines,
            holds=holds,
            postings=self.ledger_entries(kinds=("accrual",), report_id=report_id),
            exclusion=Exclusion(**excl[0]) if excl else None,
        )

    def holds(self, report_ids: Sequence[str] | None = None) -> list[StoredHold]:
        """Every current hold (held reports only), oldest first."""
        sql = (
            "SELECT h.* FROM holds h JOIN reports r ON r.report_id = h.report_id"
            " WHERE r.status = 'held'"
        )
        params: list[Any] = []
        if report_ids is not None:
            sql += f" AND h.report_id IN ({','.join('?' for _ in report_ids)})"
            params = list(report_ids)
        return [
            StoredHold(**r) for r in self._rows(sql + " ORDER BY h.first_held, h.report_id", params)
        ]

    def hold_groups(self) -> list[HoldGroup]:
        """Held reports grouped by reason code and company: fix one cost centre, release many."""
        rows = self._rows(
            "SELECT h.code, h.company, h.report_id, h.first_held, h.message, r.currency,"
            " r.total_minor FROM holds h JOIN reports r ON r.report_id = h.report_id"
            " WHERE r.status = 'held' ORDER BY h.code, h.company, h.first_held, h.report_id"
        )
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for r in rows:
            g = groups.setdefault(
                (r["code"], r["company"]),
                {"ids": [], "totals": {}, "oldest": r["first_held"], "message": r["message"]},
            )
            g["ids"].append(r["report_id"])
            g["totals"][r["currency"]] = g["totals"].get(r["currency"], 0) + r["total_minor"]
            g["oldest"] = min(g["oldest"], r["first_held"])
        out = [
            HoldGroup(
                code=code,
                company=company,
                value=code.split(":", 1)[1] if ":" in code else "",
                report_ids=g["ids"],
                total_by_currency=g["totals"],
                oldest_first_held=g["oldest"],
                message=g["message"],
            )
            for (code, company), g in groups.items()
        ]
        out.sort(key=lambda g: (-len(g.report_ids), g.oldest_first_held, g.code))
        return out

    # The amount as the console shows it, without thousands separators ("1234.56", "-0.05").
    _AMOUNT_SHOWN = (
        "(CASE WHEN total_minor < 0 THEN '-' ELSE '' END || (ABS(total_minor) / 100) || '.'"
        " || printf('%02d', ABS(total_minor) % 100))"
    )

    def _report_search_where(
        self,
        filter_text: str,
        status: str | Sequence[str] | None,
        status_words: Mapping[str, str],
    ) -> tuple[str, list[Any]]:
        """_report_where's statuses, and the text searched in every column a report row
        shows: ID, employee, name, policy, company, reason, the status (its code and the word
        shown for it, `status_words`), the approval date and the amount as shown (with or
        without thousands separators)."""
        where, params = self._report_where(status)
        text = filter_text.strip()
        if not text:
            return where, params
        like = "%" + _escape_like(text) + "%"
        columns = ("report_id", "employee", "report_name", "policy_id", "reason", "company")
        clauses = [f"{c} LIKE ? ESCAPE '\\'" for c in columns]
        clauses += ["status LIKE ? ESCAPE '\\'", "substr(approved, 1, 10) LIKE ? ESCAPE '\\'"]
        args: list[Any] = [like] * (len(columns) + 2)
        shown = [code for code, word in status_words.items() if text.lower() in word.lower()]
        if shown:
            clauses.append(f"status IN ({','.join('?' for _ in shown)})")
            args.extend(shown)
        bare = text.replace(",", "")
        if any(ch.isdigit() for ch in bare):
            clauses.append(f"{self._AMOUNT_SHOWN} LIKE ? ESCAPE '\\'")
            args.append("%" + _escape_like(bare) + "%")
        return _and_any_of(where, params, clauses, args)

    def search_reports(
        self,
        filter_text: str = "",
        status: str | Sequence[str] | None = None,
        status_words: Mapping[str, str] | None = None,
        offset: int = 0,
        limit: int = 200,
    ) -> list[ReportRow]:
        """pending_reports() with the text searched in every shown column (newest first)."""
        where, params = self._report_search_where(filter_text, status, status_words or {})
        return self._report_page(where, params, offset, limit)

    def count_search_reports(
        self,
        filter_text: str = "",
        status: str | Sequence[str] | None = None,
        status_words: Mapping[str, str] | None = None,
    ) -> int:
        where, params = self._report_search_where(filter_text, status, status_words or {})
        return self._count("reports", where, params)
