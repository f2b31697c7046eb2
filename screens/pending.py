"""1 Pending: every fetched, not yet posted report, paged from SQL; drill into its lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import VerticalScroll
from textual.widgets import Label, Static

from console.money import fmt
from screens.base import ConsoleScreen, ListTop, ReportDrillDown
from screens.keys import bindings
from screens.literal import literal
from screens.theme import GREY, VERMILLION, status_text
from screens.vtable import Column, Row, VirtualTable
from screens.widgets import ConfirmModal, FilterBar, ReasonModal

if TYPE_CHECKING:
    from console.flows.cycle import Engine, ReportEvaluation
    from console.views import PostedCoding, ReportDetail, ReportRow

# Excluded reports stay listed (⊘ excluded) so an exclusion can be undone here with `i`.
PENDING_STATUSES = ("pending", "ready", "held", "posting", "failed", "excluded")


def money(minor: int | None, currency: str = "") -> str:
    """Minor units as the console shows money everywhere (console.money.fmt)."""
    return "" if minor is None else fmt(int(minor), currency)


def report_row(r: ReportRow) -> Row:
    status = str(r.status)
    return Row(
        key=str(r.report_id),
        cells={
            "id": literal(r.report_id, 20),
            "employee": literal(r.employee, 40),
            "policy": literal(r.policy_id, 14),
            "approved": literal(str(r.approved)[:10], 10),
            "amount": Text(money(r.total_minor)),
            "currency": literal(r.currency, 4),
            "lines": Text(str(r.line_count)),
            "status": status_text(status, literal(r.reason, 80).plain if r.reason else ""),
        },
        payload=r,
        selectable=status == "ready",
    )


@dataclass
class PendingSource:
    """The engine's find_reports/count_found_reports with the filter, newest approval first."""

    engine: Engine
    filter_text: str = ""
    statuses: Sequence[str] = PENDING_STATUSES

    def count(self) -> int:
        return self.engine.count_found_reports(self.filter_text, list(self.statuses))

    def fetch(self, offset: int, limit: int) -> list[Row]:
        rows = self.engine.find_reports(
            self.filter_text, list(self.statuses), offset=offset, limit=limit
        )
        return [report_row(r) for r in rows]


PENDING_COLUMNS = [
    Column("id", "Report", 14),
    Column("employee", "Employee", 0, min_width=12),
    Column("policy", "Policy", 10, drop=2),
    Column("approved", "Approved", 10, drop=1),
    Column("amount", "Amount", 14, justify="right"),
    Column("currency", "Cur", 4),
    Column("lines", "Lines", 5, justify="right", drop=3),
    Column("status", "Status", 0, min_width=16),
]


_STATE_WORDS = {
    "approved": "approved reports",
    "closed": "closed reports (Submit and Close)",
    "not visible": "not visible to the API user: not synced",
    "not read yet": "not read yet",
}


def sync_states_text(states: dict[str, str]) -> Text:
    """' · POL-US, POL-EU: approved reports · POL-SC: closed reports (Submit and Close)'."""
    out = Text()
    by_state: dict[str, list[str]] = {}
    for policy, state in states.items():
        by_state.setdefault(state, []).append(policy)
    for state, policies in by_state.items():
        out.append(" · ")
        out.append_text(literal(", ".join(policies), 40, style="bold"))
        style = VERMILLION if state == "not visible" else ""
        out.append(f": {_STATE_WORDS.get(state, state)}", style=style)
    return out


class PendingScreen(ConsoleScreen):
    TITLE = "Pending"
    MODE = "pending"
    LIST_ID = "pending-table"
    TOP = ListTop(
        "Pending reports",
        "filter: report, employee, policy, status, reason…",
        "pending-count",
        "loading…",
        filter_id="pending-filter",
    )
    HELP = (
        "Every report fetched from Expensify and not yet posted, newest approval first. "
        "Space marks a ready report, `a` marks every ready report, `u` clears the marks, `d` "
        "sends the marked "
        "reports (or all ready ones) to the dry run. Enter shows the report's lines with their "
        "mapped account, code parts and validation state."
    )

    BINDINGS: ClassVar[list[BindingType]] = bindings("pending")

    def compose_body(self) -> ComposeResult:
        yield VirtualTable(PENDING_COLUMNS, id="pending-table")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_states: dict[str, str] = {}

    def on_mount(self) -> None:
        # ConsoleScreen.on_mount runs too (Textual calls handlers down the MRO): not again.
        self.table.focus()
        self.refresh_if_open()

    def refresh_data(self) -> None:
        engine = self.console_app.engine
        if engine is None:
            return
        # A local read (the last policy list kept in the store): which reports each policy
        # brings, so a Submit-and-Close workspace is never silently missing.
        self._sync_states = engine.policy_sync_states()
        table = self.table
        text = self.query_one(FilterBar).applied
        if isinstance(table.source, PendingSource) and table.source.engine is engine:
            table.source.filter_text = text
            table.reload()
        else:
            table.set_source(PendingSource(engine, text))

    @on(FilterBar.Applied)
    def _filter(self, event: FilterBar.Applied) -> None:
        if self.console_app.engine is None:
            return
        source = self.table.source
        if isinstance(source, PendingSource):
            source.filter_text = event.text
            self.table.reload(keep_cursor=False)

    @on(VirtualTable.Reloaded)
    @on(VirtualTable.MarksChanged)
    def _update_count(self) -> None:
        self._show_count()

    def _show_count(self, total_all: int | None = None) -> None:
        table = self.table
        text = Text(f"showing {table.total:,}")
        bar = self.query_one(FilterBar)
        if bar.applied:
            text.append(" matching ")
            text.append_text(literal(bar.applied, 30, style="bold"))
        text.append(" pending reports")
        if table.marked:
            text.append(f" · {len(table.marked):,} marked", style="bold")
        text.append_text(sync_states_text(self._sync_states))
        self.query_one("#pending-count", Label).update(text)

    @on(VirtualTable.Opened)
    def _open(self, event: VirtualTable.Opened) -> None:
        self.app.push_screen(ReportDetailScreen(event.row.key))

    def action_mark_ready(self) -> None:
        engine = self.console_app.engine
        if engine is None:
            return
        text = self.query_one(FilterBar).applied

        def ready_rows() -> list[Row]:
            total = engine.count_found_reports(text, ["ready"])
            rows = engine.find_reports(text, ["ready"], offset=0, limit=total)
            return [report_row(r) for r in rows]

        def done(rows: list[Row]) -> None:
            self.table.mark_all(lambda row: False)  # drops the cached lines
            for row in rows:
                self.table.marked[row.key] = row
            self.table.refresh()
            self._show_count()
            self.notify(f"{len(rows):,} ready reports marked")

        self.console_app.run_core(ready_rows, on_done=done, label="marking ready reports")

    def action_clear_marks(self) -> None:
        self.table.clear_marks()
        self._show_count()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`i` is offered only on an excluded report."""
        if action == "include":
            if not self.is_mounted:
                return False
            row = self.table.cursor
            return row is not None and getattr(row.payload, "status", "") == "excluded"
        return True

    @on(VirtualTable.Highlighted, "#pending-table")
    def _highlighted(self) -> None:
        self.refresh_bindings()

    def action_include(self) -> None:
        """Undo an exclusion: asks why, confirms, audited; the report is evaluated again."""
        engine = self.console_app.engine
        row = self.table.cursor
        if engine is None or row is None or getattr(row.payload, "status", "") != "excluded":
            return
        report_id = row.key

        def confirm(reason: str) -> ConfirmModal:
            body = Text()
            body.append_text(literal(f"Report {report_id} was {row.payload.reason}.", 300))
            body.append("\nIt is checked again and posts like any other report once ready. ")
            body.append_text(literal(f"Reason: {reason}", 300))
            return ConfirmModal(f"Include report {report_id} again?", body, "Include (y)")

        self.change_report_with_reason(
            report_id,
            ReasonModal(f"Include report {report_id} again", "Why? (audit trail)"),
            confirm,
            engine.include,
            label="include",
            done=self._included,
        )

    def _included(self, report_id: str) -> None:
        self.notify(f"Report {report_id} is included again.")
        self.console_app.core_changed()

    def action_dry_run(self) -> None:
        marked = list(self.table.marked)
        self.console_app.dry_run_selection = marked or None
        if not marked:
            self.notify("Nothing marked: the dry run plans every ready report.")
        self.console_app.action_goto("dryrun")


# What ReportDetailScreen reads in its worker: the stored report, and its evaluation now (or
# why it could not be evaluated); for a posted report, how it was posted instead.
DetailLoad = tuple["ReportDetail | None", "ReportEvaluation | PostedCoding | Exception | None"]


class ReportDetailScreen(ReportDrillDown[DetailLoad]):
    """One report: header facts, its holds, and each line as mapped and validated."""

    TITLE = "Report"
    HELP = (
        "One report: every line with its merchant, category, tags, the account and code parts "
        "it maps to and whether IFS accepts them on the voucher date; once posted, the account "
        "and code parts it was posted with and its voucher. esc goes back."
    )
    BINDINGS: ClassVar[list[BindingType]] = bindings("detail")
    HEADING = "Report {report_id}"
    TABLE_ID = "lines-table"
    LOAD_LABEL = "report {report_id}"

    def compose_body(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("loading…", id="report-facts")
            yield Static("", id="report-holds")
            yield VirtualTable(
                [
                    Column("tx", "Transaction", 14, drop=4),
                    Column("merchant", "Merchant", 0, min_width=14),
                    Column("category", "Category", 16, drop=1),
                    Column("tag", "Tags", 20, drop=2),
                    Column("amount", "Amount", 13, justify="right"),
                    Column("account", "Account", 8),
                    Column("parts", "Code parts", 18, drop=3),
                    Column("state", "Validation", 0, min_width=14),
                ],
                id="lines-table",
                markable=False,
                openable=False,
            )

    def _load(self, engine: Engine) -> DetailLoad:
        detail = engine.report_detail(self.report_id)
        evaluation: ReportEvaluation | PostedCoding | Exception | None = None
        if detail is not None and detail.report.status == "posted":
            # Posted: the lines as they are in IFS, not as today's mapping would map them.
            return detail, engine.posted_coding(self.report_id)
        try:
            found = engine.evaluate([self.report_id])
            evaluation = found[0] if found else None
        except Exception as exc:  # the stored lines still show; say why mapping is missing
            evaluation = exc
        return detail, evaluation

    def _show(self, loaded: DetailLoad) -> None:
        from screens.lines import line_rows

        detail, evaluation = loaded
        if detail is None:
            self.query_one("#report-facts", Static).update(
                literal(f"Report {self.report_id} is not in the local store.", None)
            )
            return
        r = detail.report
        facts = Text()
        facts.append("Employee ", style=GREY)
        facts.append_text(literal(r.employee, 60))
        facts.append("   Policy ", style=GREY)
        facts.append_text(literal(r.policy_id, 20))
        facts.append("   Company ", style=GREY)
        facts.append_text(literal(r.company or "—", 10))
        facts.append("\nName ", style=GREY)
        facts.append_text(literal(r.report_name, 80))
        facts.append("\nApproved ", style=GREY)
        facts.append(str(r.approved))
        facts.append("   Total ", style=GREY)
        facts.append(money(r.total_minor, r.currency), style="bold")
        facts.append("   Status ", style=GREY)
        facts.append_text(status_text(r.status))
        if detail.exclusion is not None:
            facts.append("\nExcluded: ", style=GREY)
            facts.append_text(literal(detail.exclusion.reason, 80))
        for p in detail.postings:
            facts.append("\nPosting ", style=GREY)
            facts.append_text(literal(f"{p.reference} → {p.outcome} {p.voucher_no or ''}", 90))
        self.query_one("#report-facts", Static).update(facts)
        holds = Text()
        for h in detail.holds:
            holds.append_text(status_text("held", ""))
            holds.append(" ")
            holds.append_text(literal(h.code, 50, style="bold"))
            holds.append(" ")
            holds.append_text(literal(h.message, 120))
            holds.append("\n")
        if isinstance(evaluation, Exception):
            holds.append_text(literal(f"could not re-evaluate: {evaluation}", 150, style=GREY))
        self.query_one("#report-holds", Static).update(holds)
        table = self.query_one("#lines-table", VirtualTable)
        from screens.vtable import ListSource

        table.set_source(ListSource(line_rows(detail, evaluation)))

    def action_timeline(self) -> None:
        from screens.audit import TimelineScreen

        self.app.push_screen(TimelineScreen(self.report_id))
