"""What a cycle returns: the summary every command and screen reads (design.md §2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from console.plan import Plan

if TYPE_CHECKING:
    pass


@dataclass
class CycleSummary:
    """The outcome of one cycle; `to_json()` is the `--json` object of design.md §2."""

    dry_run: bool = False
    fetched: int = 0
    posted: int = 0
    already_posted: int = 0
    held: int = 0
    failed: int = 0
    unchanged: int = 0
    excluded: int = 0
    held_reports: list[dict[str, str]] = field(default_factory=list)
    failed_reports: list[dict[str, str]] = field(default_factory=list)
    vouchers: list[dict[str, str]] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=lambda: {"expensify": 0, "ifs": 0})
    planned: int = 0
    unknown: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    started: str = ""
    finished: str = ""
    run_id: int | None = None
    plan: Plan | None = None
    # console/reversal.py: reversals posted this cycle, vouchers moved out of a closed period
    reversals: list[dict[str, str]] = field(default_factory=list)
    moved: list[dict[str, str]] = field(default_factory=list)
    as_of: str | None = None  # the as-of date the run worked on, when one was set

    @property
    def needs_attention(self) -> bool:
        return bool(self.held or self.failed or self.unknown)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dry_run": self.dry_run,
            "fetched": self.fetched,
            "posted": self.posted,
            "already_posted": self.already_posted,
            "held": self.held,
            "failed": self.failed,
            "unchanged": self.unchanged,
            "excluded": self.excluded,
            "planned": self.planned,
            "held_reports": self.held_reports,
            "failed_reports": self.failed_reports,
            "unknown_outcome": self.unknown,
            "vouchers": self.vouchers,
            "reversals": self.reversals,
            "moved": self.moved,
            "requests": dict(self.requests),
            "warnings": self.warnings,
            "started": self.started,
            "finished": self.finished,
        }
        if self.as_of:
            out["as_of"] = self.as_of
        if self.dry_run and self.plan is not None:
            out["plan"] = self.plan.to_json()
        return out
