"""Read models: what the console's screens (and any command) show, as typed, frozen rows.

Nothing here writes. The functions take the store and the configuration they read, so a
command can reuse them as well as `Engine`, whose methods are the TUI's one way in (screens
never reach into `engine.store`, `engine.ifs` or `engine.settings`).

The store's own read rows (`ReportRow`, `ReportDetail`, `HoldGroup`, `AuditRow`) are frozen
dataclasses already; they are re-exported here so a screen imports its read models from one
place, never from the store.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from console.audit import VerifyResult
from console.expensify.models import ExportReport, PolicyInfo
from console.fetch import load_report
from console.mapping import CATEGORY, TAG_PREFIX, suggest_defaults
from console.mapping import mapping_usage as _usage_keys
from console.money import fmt
from console.store import (
    AuditFilter,
    AuditRow,
    HoldGroup,
    MappingRuleRow,
    ReportDetail,
    ReportRow,
    Store,
)

if TYPE_CHECKING:
    from console.config import PostingConfig

__all__ = [
    "CLOSE_PERIOD_CURSOR",
    "MAPPED_STATUSES",
    "STATUS_WORDS",
    "AuditFilter",
    "AuditRow",
    "HoldGroup",
    "MappingEntry",
    "MappingUsage",
    "MappingView",
    "PostedCoding",
    "PostedLine",
    "ReportDetail",
    "ReportRow",
    "VerifyResult",
    "close_period_choice",
    "default_close_period",
    "event_summary",
    "mapping_entries",
    "mapping_usage",
    "mapping_usage_by_status",
    "mapping_view",
    "posted_coding",
]

# The reports a mapping still affects: fetched and not yet posted, failed or excluded.
MAPPED_STATUSES = ("pending", "held", "ready")

UsageKey = tuple[str, str, str]  # (policy_id, kind, source)


# ---------------------------------------------------------------- mapping usage


@dataclass(frozen=True, slots=True)
class MappingUsage:
    """How many stored reports use one mappable source, and on which approval days.

    `kind` is `category` or `tag:<level name>` (`tag:level N` where the policy does not name
    the level); a report counts once however many of its lines use the source."""

    policy_id: str
    kind: str
    source: str
    reports: int
    dates: tuple[date, ...]  # the distinct approval days of those reports, ascending
    # (status, reports) where the statuses are known (mapping_usage_by_status), by status
    by_status: tuple[tuple[str, int], ...] = ()

    @property
    def key(self) -> UsageKey:
        return (self.policy_id, self.kind, self.source)


def mapping_usage(
    raw_reports: Iterable[dict[str, Any]], policies: Mapping[str, PolicyInfo]
) -> list[MappingUsage]:
    """Parse stored reports (the raw JSON the store keeps) and count, per (policy, kind,
    source), the reports using it and their approval days; sorted by that key. Reports that do
    not parse, and malformed reports, are skipped: they map nothing."""
    return mapping_usage_by_status((("", raw) for raw in raw_reports), policies)


def mapping_usage_by_status(
    reports: Iterable[tuple[str, dict[str, Any]]], policies: Mapping[str, PolicyInfo]
) -> list[MappingUsage]:
    """As mapping_usage, over (status, raw report) pairs: each usage also counts its reports
    per status, so a mapping change can say "affects 3 reports: 1 held, 2 ready"."""
    counts: Counter[UsageKey] = Counter()
    days: dict[UsageKey, set[date]] = {}
    statuses: dict[UsageKey, Counter[str]] = {}
    for status, raw in reports:
        try:
            report = load_report(raw)
        except ValueError:  # pydantic's ValidationError is a ValueError
            continue
        if not isinstance(report, ExportReport):
            continue
        try:
            day: date | None = date.fromisoformat(report.approved_date)
        except ValueError:
            day = None
        # One keying rule for the whole console: console.mapping's, one report at a time.
        for key in _usage_keys([report], policies):
            counts[key] += 1
            if day is not None:
                days.setdefault(key, set()).add(day)
            if status:
                statuses.setdefault(key, Counter())[status] += 1
    return [
        MappingUsage(
            *key,
            reports=n,
            dates=tuple(sorted(days.get(key, ()))),
            by_status=tuple(sorted(statuses.get(key, Counter()).items())),
        )
        for key, n in sorted(counts.items())
    ]


# ---------------------------------------------------------------- the mapping editor


@dataclass(frozen=True, slots=True)
class MappingEntry:
    """One mappable source of one policy: Expensify's default, the operator's override, and
    how many reports (on which voucher days) it affects."""

    policy_id: str
    company: str
    kind: str
    source: str
    code_part: str  # "A" for categories; "" where the tag level maps to no code part
    default: str
    override: str
    enabled: bool
    affects: int = 0
    dates: tuple[date, ...] = ()
    by_status: tuple[tuple[str, int], ...] = ()  # (status, reports) of those it affects
    # Where the config sets it (a `[posting]` key) for rows the editor shows but does not
    # change: tax codes, report and employee fields, the employee, billable lines, cards.
    configured_in: str = ""

    @property
    def effective(self) -> str:
        return self.override or self.default

    @property
    def label(self) -> str:
        return "category" if self.kind == CATEGORY else self.kind.removeprefix(TAG_PREFIX)


@dataclass(frozen=True, slots=True)
class MappingView:
    """The mapping screen: every entry, and the IFS values kept in the store per (company,
    code part) as hints while typing."""

    entries: tuple[MappingEntry, ...]
    hints: Mapping[tuple[str, str], Sequence[str]]


def mapping_entries(
    policies: Mapping[str, PolicyInfo],
    posting: PostingConfig,
    rules: Iterable[MappingRuleRow],
    usage: Iterable[MappingUsage],
) -> list[MappingEntry]:
    """Every category and tag value of every policy (sorted by policy), with its default,
    the override and its usage."""
    targets = {(r.policy_id, r.kind, r.source): str(r.rule.get("target", "")) for r in rules}
    used = {u.key: u for u in usage}
    entries: list[MappingEntry] = []
    for policy_id, policy in sorted(policies.items()):
        company = posting.company_by_policy.get(policy_id, "")
        for d in suggest_defaults(policy):
            if d.kind == CATEGORY:
                part = "A"
            else:
                level = d.kind.removeprefix(TAG_PREFIX)
                part = targets.get(
                    (policy_id, "tag-level", level)
                ) or posting.code_part_by_tag_level.get(level, "")
            key = (policy_id, d.kind, d.source)
            u = used.get(key)
            entries.append(
                MappingEntry(
                    policy_id,
                    company,
                    d.kind,
                    d.source,
                    part,
                    d.default_target,
                    targets.get(key, ""),
                    d.enabled,
                    u.reports if u is not None else 0,
                    u.dates if u is not None else (),
                    u.by_status if u is not None else (),
                )
            )
    return entries


def configured_entries(policies: Mapping[str, PolicyInfo], posting: Any) -> list[MappingEntry]:
    """What the posting config maps beyond categories and tags, per policy, as the mapping
    screen lists it: Expensify tax codes to IFS tax codes, report and employee fields to code
    parts, the employee on the accrued-expenses row, billable lines' project, card accounts.
    A posting config without these keys (a test's own rules) maps none of them."""
    entries: list[MappingEntry] = []

    def setting(name: str, default: Any) -> Any:
        return getattr(posting, name, default) or default

    def add(pid: str, kind: str, source: str, part: str, default: str, key: str) -> None:
        company = posting.company_by_policy.get(pid, "")
        entries.append(
            MappingEntry(pid, company, kind, source, part, default, "", True, configured_in=key)
        )

    global_codes: dict[str, str] = setting("tax_code_by_expensify", {})
    per_policy_codes: dict[str, dict[str, str]] = setting("tax_code_by_policy", {})
    default_code: str = setting("default_tax_code", "")
    employee_field: str = setting("employee_id_field", "")
    billable: str = setting("billable_project_code_part", "")
    for pid in sorted(policies):
        codes = {c: ("tax_code_by_expensify", v) for c, v in global_codes.items()}
        codes.update(
            (c, ("tax_code_by_policy", v)) for c, v in per_policy_codes.get(pid, {}).items()
        )
        for code, (key, ifs_code) in sorted(codes.items()):
            add(pid, "tax code", code or "(no tax code)", "tax", ifs_code, key)
        if default_code and "" not in codes:
            add(pid, "tax code", "(no tax code)", "tax", default_code, "default_tax_code")
        sources = setting("code_part_sources_by_policy", {}).get(pid)
        key = "code_part_sources_by_policy"
        if sources is None:
            sources = {
                f"report:{f}": c for f, c in setting("code_part_by_report_field", {}).items()
            }
            sources.update(
                (f"employee:{f}", c) for f, c in setting("code_part_by_employee_field", {}).items()
            )
            key = "code_part_by_report_field / code_part_by_employee_field"
        for source, part in sorted(sources.items()):
            kind, _, name = source.partition(":")
            label = "report field" if kind == "report" else "employee field"
            add(pid, label, name, part, "the field's value", key)
        if employee_field:
            in_part = setting("employee_on", "code-part") == "code-part"
            part = setting("employee_code_part", "") if in_part else "party"
            on = f"on {posting.accrued_expenses_account}"
            add(pid, "employee", employee_field, part, on, "employee_id_field")
        if billable:
            source = setting("billable_project_from", "") or "the line's own coding"
            add(pid, "billable", source, billable, "billed project", "billable_project_from")
        for card, account in sorted(setting("card_clearing_account_by_card", {}).items()):
            add(pid, "card", card, "A", account, "card_clearing_account_by_card")
    return entries


def mapping_view(
    store: Store, policies: Mapping[str, PolicyInfo], posting: PostingConfig
) -> MappingView:
    """The mapping screen from the store: the entries with the usage of the reports still to
    post, and the cached IFS values per (company, code part)."""
    usage = mapping_usage_by_status(
        ((status, raw) for _rid, status, raw in store.reports_raw(MAPPED_STATUSES)), policies
    )
    entries = mapping_entries(policies, posting, store.mapping_rules(), usage)
    entries += configured_entries(policies, posting)
    hints: dict[tuple[str, str], list[str]] = {}
    for company in sorted(set(posting.company_by_policy.values())):
        for dim in store.dimensions(company, limit=100_000):
            hints.setdefault((company, dim.code_part), []).append(dim.value)
    return MappingView(tuple(entries), {k: tuple(v) for k, v in hints.items()})


# ---------------------------------------------------------------- a posted report's coding


@dataclass(frozen=True, slots=True)
class PostedLine:
    """The account and code parts one Expensify line was posted with."""

    account: str
    code_parts: tuple[tuple[str, str], ...]  # (letter, value), letters ascending


@dataclass(frozen=True, slots=True)
class PostedCoding:
    """How a posted report is in IFS: its current accrual voucher and, per transaction, the
    rows it was posted with. `lines` is empty where the console kept no coding for it (a
    voucher posted before the coding was recorded, or one found in IFS and adopted)."""

    reference: str
    voucher_no: str
    lines: Mapping[str, tuple[PostedLine, ...]]


def posted_coding(store: Store, report_id: str) -> PostedCoding | None:
    """The coding of the report's current posted accrual, from the audit event of its intent
    (console.post.posted_coding wrote it); None when the report has no posted accrual."""
    entry = store.posted_accrual(report_id)
    if entry is None:
        return None
    lines: dict[str, list[PostedLine]] = {}
    intents = store.audit_page(AuditFilter(report_id=report_id, types=("intent",)), limit=1000)
    for ev in intents:  # newest first: the intent that posted this reference
        if ev.data.get("reference") != entry.reference:
            continue
        for item in ev.data.get("coding") or ():
            parts = item.get("parts") or {}
            line = PostedLine(
                str(item.get("account", "")),
                tuple(sorted((str(k), str(v)) for k, v in parts.items())),
            )
            lines.setdefault(str(item.get("tx", "")), []).append(line)
        break
    return PostedCoding(
        entry.reference, entry.voucher_no or "", {k: tuple(v) for k, v in lines.items()}
    )


# ---------------------------------------------------------------- the Close screen's period

CLOSE_PERIOD_CURSOR = "tui.close_period"  # the store cursor keeping the operator's last choice


def default_close_period(today: date, until_day: int) -> tuple[int, int]:
    """(year, month) the Close screen opens on: the previous month through day `until_day` of
    a month (the books of the month just ended are being closed), then the current one."""
    if today.day <= until_day:
        index = today.year * 12 + today.month - 2
        return index // 12, index % 12 + 1
    return today.year, today.month


def close_period_choice(remembered: str | None, today: date, until_day: int) -> tuple[int, int]:
    """The remembered `YYYY-MM` when it reads as a month, else the default for `today`."""
    if remembered:
        year, sep, month = remembered.partition("-")
        if sep and year.isdigit() and month.isdigit() and 1 <= int(month) <= 12:
            return int(year), int(month)
    return default_close_period(today, until_day)


# ---------------------------------------------------------------- what the screens show

# The word the console shows for each report status (screens/theme.py draws it with its
# symbol): a filter for "new" finds the pending reports, "held" the held ones.
STATUS_WORDS: Mapping[str, str] = {
    "ready": "ready",
    "pending": "new",
    "held": "held",
    "posting": "posting",
    "failed": "failed",
    "posted": "posted",
    "excluded": "excluded",
}

# "fetched" events up to now wrote the report total in minor units ("…: 2 line(s), 35740 USD").
_MINOR_TOTAL = re.compile(r"(\d+ line\(s\)), (-?\d+) ([A-Z]{3})$")


def event_summary(event: AuditRow) -> str:
    """An audit event's summary as the screens show it: money as money ("357.40 USD"), also
    in events recorded with the total in minor units (the log itself is never rewritten)."""
    if event.type == "fetched":
        return _MINOR_TOTAL.sub(lambda m: f"{m[1]}, {fmt(int(m[2]), m[3])}", event.summary)
    return event.summary


class ListQueries:
    """The pages the list screens read (Pending, Audit), over the store alone: the Engine
    answers them through this, and so does a stand-in that has only a store
    (bench/tui_bench.py), so the benchmark measures the queries the console runs."""

    store: Store

    def audit_page(
        self,
        flt: AuditFilter | None = None,
        *,
        before_seq: int | None = None,
        limit: int = 200,
    ) -> list[AuditRow]:
        """One page of audit events, newest first (pass the last row's seq as before_seq), with
        free words searched in every column the Audit screen shows: event type ("mapping"
        finds mapping-changed), actor, time, summary, amounts as shown."""
        return self.store.audit_page(flt, before_seq=before_seq, limit=limit)

    def find_reports(
        self,
        filter_text: str = "",
        status: str | Sequence[str] | None = None,
        *,
        offset: int = 0,
        limit: int = 200,
    ) -> list[ReportRow]:
        """One page of stored reports in these statuses, newest approval first, with the text
        searched in every column the Pending screen shows: status as shown ("held", "new"),
        reason, approval date, amount as shown, IDs, names."""
        return self.store.search_reports(
            filter_text, status, STATUS_WORDS, offset=offset, limit=limit
        )

    def count_found_reports(
        self, filter_text: str = "", status: str | Sequence[str] | None = None
    ) -> int:
        """How many stored reports find_reports() pages through."""
        return self.store.count_search_reports(filter_text, status, STATUS_WORDS)

    def audit_count(self, flt: AuditFilter | None = None) -> int:
        """How many audit events audit_page() pages through."""
        return self.store.audit_count(flt)
