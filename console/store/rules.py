"""The operator's mapping rules and the cache of IFS dimension values."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from console.store.base import StoreBase
from console.store.records import DimensionRow, MappingRuleRow


class RulesMixin(StoreBase):
    """Mapping rules and the IFS dimension cache."""

    def save_mapping_rule(
        self, kind: str, policy_id: str, source: str, rule: dict[str, Any], actor: str
    ) -> None:
        with self.transaction():
            self._x(
                "INSERT INTO mapping_rules (kind, policy_id, source, rule, actor, updated)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT(kind, policy_id, source) DO UPDATE SET"
                " rule=excluded.rule, actor=excluded.actor, updated=excluded.updated",
                (kind, policy_id, source, json.dumps(rule, sort_keys=True), actor, self.now()),
            )

    def delete_mapping_rule(self, kind: str, policy_id: str, source: str) -> bool:
        with self.transaction():
            cur = self._x(
                "DELETE FROM mapping_rules WHERE kind=? AND policy_id=? AND source=?",
                (kind, policy_id, source),
            )
            return cur.rowcount > 0

    def mapping_rules(self, policy_id: str | None = None) -> list[MappingRuleRow]:
        sql = "SELECT * FROM mapping_rules"
        params: list[Any] = []
        if policy_id is not None:
            sql += " WHERE policy_id IN (?, '')"
            params.append(policy_id)
        return [
            MappingRuleRow(**{**r, "rule": json.loads(r["rule"])})
            for r in self._rows(sql + " ORDER BY kind, policy_id, source", params)
        ]

    _DIMENSION_INSERT = (
        "INSERT OR REPLACE INTO ifs_dimensions (company, code_part, value, description,"
        " valid_from, valid_until, fetched_at) VALUES (?,?,?,?,?,?,?)"
    )

    def replace_dimensions(self, company: str, rows: Iterable[DimensionRow]) -> int:
        """The company's cached dimensions become `rows` (stored under `company`)."""
        with self.transaction():
            self._x("DELETE FROM ifs_dimensions WHERE company = ?", (company,))
            cur = self._conn.executemany(
                self._DIMENSION_INSERT,
                [_dimension_values(company, d) for d in rows],
            )
            return cur.rowcount

    def upsert_dimension(self, d: DimensionRow) -> None:
        with self.transaction():
            self._x(self._DIMENSION_INSERT, _dimension_values(d.company, d))

    def dimensions(
        self, company: str, code_part: str | None = None, prefix: str = "", limit: int = 500
    ) -> list[DimensionRow]:
        sql = "SELECT * FROM ifs_dimensions WHERE company = ?"
        params: list[Any] = [company]
        if code_part:
            sql += " AND code_part = ?"
            params.append(code_part)
        if prefix:
            sql += " AND (value LIKE ? OR description LIKE ?)"
            params.extend([f"{prefix}%", f"%{prefix}%"])
        sql += " ORDER BY code_part, value LIMIT ?"
        params.append(int(limit))
        return [DimensionRow(**r) for r in self._rows(sql, params)]


def _dimension_values(company: str, d: DimensionRow) -> tuple[str, ...]:
    """A cached dimension's columns, in the order _DIMENSION_INSERT names them."""
    return (company, d.code_part, d.value, d.description, d.valid_from, d.valid_until, d.fetched_at)
