"""One row of the benchmark table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    figure: str
    value: str
    target: str
    ok: bool | None  # None: not measured
    note: str = ""

    @property
    def verdict(self) -> str:
        return "n/a" if self.ok is None else ("pass" if self.ok else "MISS")
