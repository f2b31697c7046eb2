"""3 Missing dimensions: the hold queue grouped by what is missing, re-checked against IFS.

A group turns ready the moment IFS has the value (the background re-check evaluates the held
reports again); `p` replays it, or config `sync.auto_replay` does it alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.timer import Timer
from textual.widgets import Label, Static

from console.views import HoldGroup, ReportRow
from screens.base import ConsoleScreen, ListTop, ago
from screens.keys import bindings
from screens.literal import literal
from screens.pending import money, report_row
from screens.theme import GREY, status_text
from screens.vtable import Column, ListSource, Row, VirtualTable
from screens.widgets import ConfirmModal, FilterBar, ReasonModal

if TYPE_CHECKING:
    from console.flows.cycle import Engine, ReportEvaluation

KIND_WORDS = {
    "missing-dimension": "missing",
    "invalid-dimension": "not valid on the voucher date",
    "unmapped-category": "category not mapped",
    "unmapped-tag": "tag not mapped",
    "unknown-policy": "policy has no company",
    "closed-period": "period closed",
    "missing-rate": "no currency rate",
    "malformed": "malformed report",
}


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


def describe_group(group: HoldGroup) -> str:
    """`CC-410 missing in company 10 — blocks 12 reports, 4,310.00 USD`."""
    kind = group.code.split(":", 1)[0]
    value = group.value
    if kind in ("missing-dimension", "invalid-dimension") and ":" in value:
        value = value.split(":", 1)[1]
    words = KIND_WORDS.get(kind, kind)
    where = f" in company {group.company}" if group.company else ""
    totals = ", ".join(money(v, c) for c, v in sorted(group.total_by_currency.items()))
    n = len(group.report_ids)
    return f"{value} {words}{where} — blocks {n} report{'s' if n != 1 else ''}, {totals}"


# What clears a hold that is not a value IFS lacks (the `p` key says so instead of guessing).
_STILL_HELD = {
    "closed-period": "the period is closed in IFS: reopen it for the console's user group, "
    'or set [posting] closed_period = "next-open"',
    "sent-back": "sent back to its submitter in Expensify: it posts once approved again "
    "(nothing to do here)",
    "zero-amount": "every line is zero: check it in Expensify, then exclude it with `x`",
    "too-many-lines": "the report is too big for one IFS voucher request: split it in "
    "Expensify, or exclude it with `x`",
    "duplicate-transaction": "a transaction is also on another report: confirm it with "
    "`ml-console replay REPORT --confirm-duplicate`, or exclude it with `x`",
    "malformed": "Expensify's export of the report is broken: fix it in Expensify; it is "
    "fetched again",
    "missing-rate": "IFS has no currency rate for the date yet: add it in IFS, then re-check "
    "with `r`",
}


def still_held_advice(kind: str) -> str:
    """Why `p` does nothing on a held group, and what clears this kind of hold."""
    what = _STILL_HELD.get(
        kind, "IFS does not have the value yet: re-check with `r`, or remap it with `m`"
    )
    return f"This group is still held: {what}."


def group_key(group: HoldGroup) -> str:
    return f"{group.code}@{group.company}"


class MissingScreen(ConsoleScreen):
    TITLE = "Missing dimensions"
    _group_rows: Sequence[Row] = ()  # the highlighted group's reports, once read
    MODE = "missing"
    LIST_ID = "groups"
    TOP = ListTop(
        "Missing dimensions — the hold queue", "filter: value, company, reason…", "missing-count"
    )
    HELP = (
        "Held reports grouped by what blocks them. The groups are re-checked against IFS in the "
        "background (and now with `r`); a group whose value IFS now has turns ready, and `p` "
        "posts it after showing what it posts. `m` remaps the value instead (opens Mapping "
        "with it preselected), `x` excludes the highlighted report with a reason (tab moves "
        "to the reports). Closed-period holds move to the next open period by config "
        '([posting] closed_period = "next-open").'
    )

    BINDINGS: ClassVar[list[BindingType]] = bindings("missing")

    def compose_body(self) -> ComposeResult:
        yield VirtualTable(
            [
                Column("state", "State", 10),
                Column("what", "What blocks", 0, min_width=30),
                Column("code", "Reason code", 30, drop=1),
                Column("wait", "Oldest wait", 11, justify="right"),
            ],
            id="groups",
            markable=False,
            openable=False,
        )
        yield Label("Reports in the group", classes="screen-title")
        yield VirtualTable(
            [
                Column("id", "Report", 14),
                Column("employee", "Employee", 0, min_width=12),
                Column("approved", "Approved", 10, drop=1),
                Column("amount", "Amount", 14, justify="right"),
                Column("currency", "Cur", 4),
                Column("status", "Status", 0, min_width=16),
            ],
            id="group-reports",
            markable=False,
        )
        yield Static("", id="missing-why", classes="disabled-why")

    def on_mount(self) -> None:
        # ConsoleScreen.on_mount runs too (Textual calls handlers down the MRO): not again.
        self.groups: list[HoldGroup] = []
        self.released: dict[str, HoldGroup] = {}  # groups whose reports all turned ready
        self._recheck_timer: Timer | None = None
        self.table.focus()
        self.refresh_if_open()

    @property
    def recheck_seconds(self) -> float:
        settings = self.console_app.settings
        return float(getattr(getattr(settings, "sync", None), "recheck_held_s", 30) or 30)

    @property
    def auto_replay(self) -> bool:
        settings = self.console_app.settings
        return bool(getattr(getattr(settings, "sync", None), "auto_replay", False))

    def refresh_data(self) -> None:
        engine = self.console_app.engine
        if self._recheck_timer is None and self.recheck_seconds:
            self._recheck_timer = self.set_interval(self.recheck_seconds, self.action_recheck)
        self.console_app.run_core(
            self._load, engine, on_done=self._show, label="hold queue", exclusive=True
        )

    def _load(self, engine: Engine) -> tuple[list[HoldGroup], dict[str, str]]:
        groups = engine.hold_groups()
        # Which reports of previously shown groups are ready now (their group vanished).
        shown = [
            rid for g in list(self.groups) + list(self.released.values()) for rid in g.report_ids
        ]
        statuses = {rid: status or "" for rid, status in engine.report_statuses(shown).items()}
        return groups, statuses

    def _show(self, loaded: tuple[list[HoldGroup], dict[str, str]]) -> None:
        groups, statuses = loaded
        live = {group_key(g) for g in groups}
        for g in list(self.groups) + list(self.released.values()):
            key = group_key(g)
            if key in live:
                self.released.pop(key, None)
                continue
            if g.report_ids and all(statuses.get(r) == "ready" for r in g.report_ids):
                self.released[key] = g
            else:
                self.released.pop(key, None)
        self.groups = groups
        self._render_groups()
        if self.released and self.auto_replay:
            self.action_replay_group(auto=True)

    def _render_groups(self) -> None:
        now = self.console_app.clock()
        flt = self.query_one(FilterBar).applied.lower()
        rows: list[Row] = []
        for state, items in (("ready", self.released.values()), ("held", self.groups)):
            for g in items:
                what = describe_group(g)
                if flt and flt not in f"{what} {g.code} {g.company}".lower():
                    continue
                rows.append(
                    Row(
                        key=group_key(g),
                        cells={
                            "state": status_text(state),
                            "what": literal(what, 120),
                            "code": literal(g.code, 60),
                            "wait": Text(ago(_parse_time(g.oldest_first_held), now)),
                        },
                        payload=(state, g),
                    )
                )
        table = self.table
        table.source = ListSource(rows)
        table.reload()
        held = sum(len(g.report_ids) for g in self.groups)
        n = len(self.groups)
        text = Text(
            f"{n} group{'s' if n != 1 else ''} block{'' if n != 1 else 's'} "
            f"{held:,} report{'s' if held != 1 else ''}"
        )
        if self.released:
            text.append(f" · {len(self.released)} ready to replay (p)", style="bold")
        text.append(f" · re-checked every {self.recheck_seconds:.0f}s", style=GREY)
        self.query_one("#missing-count", Label).update(text)

    @on(FilterBar.Applied)
    def _filter(self) -> None:
        self._render_groups()

    def _current_group(self) -> tuple[str, HoldGroup] | None:
        row = self.table.cursor
        return row.payload if row is not None else None

    @on(VirtualTable.Highlighted, "#groups")
    def _group_highlighted(self, event: VirtualTable.Highlighted) -> None:
        engine = self.console_app.engine
        if event.row is None or engine is None:
            return
        _, group = event.row.payload
        self._explain(group)
        ids = list(group.report_ids)
        self.console_app.run_core(
            lambda: [report_row(engine_report(engine, r)) for r in ids],
            on_done=self._show_reports,
            label="group reports",
            exclusive=True,
        )

    def _show_reports(self, rows: list[Row]) -> None:
        self._group_rows = rows
        self.query_one("#group-reports", VirtualTable).set_source(ListSource(rows))

    def _explain(self, group: HoldGroup) -> None:
        why = Text()
        why.append_text(literal(group.message, 200))
        if group.kind == "closed-period":
            why.append(
                '\nSet [posting] closed_period = "next-open" to move closed-period reports to '
                "the next open period on the next cycle (shown in the dry run).",
                GREY,
            )
        self.query_one("#missing-why", Static).update(why)

    @on(VirtualTable.Opened, "#group-reports")
    def _open_report(self, event: VirtualTable.Opened) -> None:
        from screens.pending import ReportDetailScreen

        self.app.push_screen(ReportDetailScreen(event.row.key))

    # ---- actions ------------------------------------------------------------------------------

    def action_recheck(self) -> None:
        engine = self.console_app.engine
        if engine is None or not self.is_current:
            return
        held = [r for g in self.groups for r in g.report_ids]
        if not held:
            self.refresh_data()
            return
        self.query_one("#missing-count", Label).update(Text("re-checking against IFS…"))

        def recheck() -> list[ReportEvaluation]:
            engine.reference(refresh=True)  # read IFS again: the value may exist now
            return engine.evaluate(held)

        self.console_app.run_core(
            recheck,
            on_done=lambda _: self.refresh_data(),
            label="re-check",
            group="recheck",
            exclusive=True,
        )

    def action_replay_group(self, auto: bool = False) -> None:
        engine = self.console_app.engine
        if engine is None:
            return
        if auto:
            ids = [r for g in self.released.values() for r in g.report_ids]
        else:
            current = self._current_group()
            if current is None:
                return
            state, group = current
            if state != "ready":
                self.notify(still_held_advice(group.kind), severity="warning")
                return
            ids = list(group.report_ids)
            # A post to IFS: say what it will post and wait for `y`, like a timeline replay.
            body = Text()
            body.append_text(literal(describe_group(group), 200))
            body.append("\n\nThe reports are re-checked against IFS and those valid now ")
            body.append("post to IFS", style="bold")
            body.append(" as accrual vouchers (once: a voucher IFS already has is not posted ")
            body.append("again):\n")
            body.append_text(literal(", ".join(ids[:40]) + (" …" if len(ids) > 40 else ""), 600))
            body.append("\n\nThis cannot be undone from here.")
            self.app.push_screen(
                ConfirmModal(f"Post {len(ids)} report(s) of this group to IFS?", body, "Post (y)"),
                lambda ok: self._replay(ids) if ok else None,
            )
            return
        self._replay(ids)

    def _replay(self, ids: list[str]) -> None:
        engine = self.console_app.engine
        if engine is None:
            return
        for key in [k for k, g in self.released.items() if set(g.report_ids) <= set(ids)]:
            self.released.pop(key)
        self.console_app.sync_progress = f"replaying {len(ids)} reports…"
        self.console_app.run_core(
            engine.replay,
            ids,
            on_done=self.console_app.cycle_done,
            on_error=self.console_app.cycle_failed,
            label="replay",
        )

    def action_remap(self) -> None:
        current = self._current_group()
        if current is None:
            return
        _, group = current
        kind = group.kind
        parts = group.value.split(":")
        if kind in ("missing-dimension", "invalid-dimension", "unmapped-tag", "unmapped-category"):
            # The policy most of the group's reports belong to: Mapping opens on its row.
            policies = Counter(
                row.payload.policy_id
                for row in self._group_rows
                if row.payload.report_id in group.report_ids
            )
            policy = policies.most_common(1)[0][0] if policies else ""
            self.console_app.mapping_preselect = (kind, parts[-1], policy)
            self.console_app.action_goto("mapping")
        else:
            self.notify(f"A {kind} hold is not fixed by a mapping.", severity="warning")

    def action_exclude(self) -> None:
        engine = self.console_app.engine
        row = self.query_one("#group-reports", VirtualTable).cursor
        if engine is None or row is None:
            self.notify("Highlight a report in the lower list first (tab).", severity="warning")
            return
        report_id = row.key
        self.change_report_with_reason(
            report_id,
            ReasonModal(f"Exclude report {report_id}", "Why is it excluded? (audit trail)"),
            lambda reason: ConfirmModal(
                f"Exclude report {report_id}?",
                Text(f"It will never be posted by this console. Reason: {reason}"),
                "Exclude (y)",
            ),
            engine.exclude,
            label="exclude",
            done=self._excluded,
        )

    def _excluded(self, report_id: str) -> None:
        self.notify(
            f"Report {report_id} excluded. It stays listed on 1 Pending (⊘ excluded), where "
            "i includes it again."
        )
        self.console_app.core_changed()


def engine_report(engine: Engine, report_id: str) -> ReportRow:
    """One stored report's row (a report of a hold group is always stored)."""
    detail = engine.report_detail(report_id)
    if detail is None:
        raise LookupError(f"report {report_id} is not in the local store")
    return detail.report
