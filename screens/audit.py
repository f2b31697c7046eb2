"""5 Audit: the hash-chained event log, newest first, as a virtual view over SQL.

200,000 events never load at once: the table asks for pages of 200 and the source walks the
log by keyset (`before_seq`), remembering where every page it has seen starts, so scrolling
and paging stay cheap and a jump to the end walks pages in a worker, not on the screen.
"""

from __future__ import annotations

import shlex
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.screen import Screen
from textual.widgets import Label, Static

from console.views import AuditFilter, AuditRow, VerifyResult, event_summary
from screens.base import ConsoleScreen, ListTop, ReportDrillDown, console_app
from screens.keys import bindings
from screens.literal import literal
from screens.theme import BLUE, GREY, ORANGE, SKY, VERMILLION, status_text
from screens.vtable import Column, ListSource, Row, VirtualTable
from screens.widgets import ConfirmModal, FilterBar

if TYPE_CHECKING:
    from console.flows.cycle import Engine

FILTER_KEYS = {"type", "actor", "report", "since", "until", "voucher", "tx"}

TYPE_COLOURS = {"posted": BLUE, "held": ORANGE, "failed": VERMILLION, "error": VERMILLION}


def parse_audit_filter(text: str) -> AuditFilter:
    """`type:posted actor:auto report:R1 since:2026-11-01 free words` → AuditFilter.

    tx: names one Expensify transaction; voucher: and free words search the summary, report,
    voucher and transaction columns."""
    try:
        tokens = shlex.split(text)
    except ValueError:
        tokens = text.split()
    kwargs: dict[str, Any] = {}
    types: list[str] = []
    words: list[str] = []
    for token in tokens:
        key, sep, value = token.partition(":")
        if sep and key.lower() in FILTER_KEYS and value:
            key = key.lower()
            if key == "type":
                types.extend(v for v in value.split(",") if v)
            elif key == "report":
                kwargs["report_id"] = value
            elif key in ("since", "until", "actor"):
                kwargs[key] = value
            elif key == "tx":
                kwargs["transaction_id"] = value
            else:
                words.append(value)
        else:
            words.append(token)
    return AuditFilter(types=tuple(types), text=" ".join(words), **kwargs)


def event_row(ev: AuditRow) -> Row:
    colour = next((c for k, c in TYPE_COLOURS.items() if k in ev.type), "")
    return Row(
        key=str(ev.seq),
        cells={
            "seq": Text(str(ev.seq)),
            "at": literal(str(ev.at).replace("T", " ")[:19], 19),
            "actor": literal(ev.actor, 16),
            "type": literal(ev.type, 24, style=colour),
            "report": literal(ev.report_id or "", 20),
            "voucher": literal(ev.voucher or "", 12),
            "summary": literal(event_summary(ev), 200),
        },
        payload=ev,
    )


@dataclass
class AuditSource:
    engine: Engine
    flt: AuditFilter = field(default_factory=AuditFilter)
    # offset of a page's first row -> the seq to page before (None: the newest event)
    _starts: dict[int, int | None] = field(default_factory=lambda: {0: None})
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        return self.engine.audit_count(self.flt)

    def fetch(self, offset: int, limit: int) -> list[Row]:
        with self._lock:
            known = max(o for o in self._starts if o <= offset)
            page: list[Any] = []
            while True:
                before = self._starts[known]
                page = self.engine.audit_page(self.flt, before_seq=before, limit=limit)
                if page:
                    self._starts[known + len(page)] = page[-1].seq
                if known >= offset or len(page) < limit:
                    break
                known += len(page)
            skip = offset - known
            return [event_row(ev) for ev in page[skip:]] if known <= offset else []


AUDIT_COLUMNS = [
    Column("seq", "Seq", 8, justify="right", drop=4),
    Column("at", "When", 19),
    Column("actor", "Actor", 10, drop=3),
    Column("type", "Event", 16),
    Column("report", "Report", 14),
    Column("voucher", "Voucher", 9, drop=2),
    Column("summary", "What", 0, min_width=20),
]


class AuditScreen(ConsoleScreen):
    TITLE = "Audit"
    MODE = "audit"
    LIST_ID = "audit-table"
    TOP = ListTop(
        "Audit trail",
        "filter: words, type:, actor:, report:, voucher:, since:, until:",
        "audit-count",
    )
    HELP = (
        "The audit trail, newest first. `/` filters: free words search every column shown "
        "(event type, actor, time, summary with its amounts, report, voucher); `type:posted`, "
        "`actor:auto`, `report:R123`, `voucher:42`, `tx:T9`, `since:2026-11-01`, "
        "`until:2026-12-01` narrow it. Enter opens the report's timeline; "
        "`v` verifies the hash chain; `p` re-checks and posts (replays) the highlighted failed "
        "or held report, after asking."
    )

    BINDINGS: ClassVar[list[BindingType]] = bindings("audit")

    def compose_body(self) -> ComposeResult:
        yield VirtualTable(AUDIT_COLUMNS, id="audit-table", markable=False)
        yield Static("", id="audit-detail", classes="detail-panel")

    def on_mount(self) -> None:
        # ConsoleScreen.on_mount runs too (Textual calls handlers down the MRO): not again.
        self.chain = Text("chain: not verified yet (v)", style=GREY)
        self.table.focus()
        self.refresh_if_open()

    def refresh_data(self) -> None:
        engine = self.console_app.engine
        if engine is None:
            return
        flt = parse_audit_filter(self.query_one(FilterBar).applied)
        self.table.set_source(AuditSource(engine, flt))

    @on(FilterBar.Applied)
    def _filter(self, event: FilterBar.Applied) -> None:
        self.refresh_if_open()

    @on(VirtualTable.Reloaded)
    @on(VirtualTable.Highlighted)
    def _highlighted(self, event: VirtualTable.Reloaded | VirtualTable.Highlighted) -> None:
        table = self.table
        text = Text(f"{table.total:,} events")
        applied = self.query_one(FilterBar).applied
        if applied:
            text.append(" matching ")
            text.append_text(literal(applied, 40, style="bold"))
        text.append("  │  ")
        text.append_text(self.chain)
        self.query_one("#audit-count", Label).update(text)
        row = table.cursor
        detail = Text()
        if row is not None:
            ev = row.payload
            detail.append(f"#{ev.seq} ", style="bold")
            detail.append_text(literal(ev.type, 30, style="bold"))
            detail.append(" by ")
            detail.append_text(literal(ev.actor, 30))
            detail.append(" at ")
            detail.append(str(ev.at))
            detail.append("\n")
            detail.append_text(literal(event_summary(ev), 400))
            if ev.transaction_ids:
                detail.append("\ntransactions ", style=GREY)
                detail.append_text(literal(", ".join(ev.transaction_ids), 200))
            detail.append("\nrequest ", style=GREY)
            detail.append(ev.request_digest or "—")
            detail.append("  response ", style=GREY)
            detail.append(ev.response_digest or "—")
            detail.append("  hash ", style=GREY)
            detail.append(ev.hash[:16])
        self.query_one("#audit-detail", Static).update(detail)

    @on(VirtualTable.Opened)
    def _open(self, event: VirtualTable.Opened) -> None:
        ev = event.row.payload
        if not ev.report_id:
            self.notify("This event belongs to no report (a run or a setting).")
            return
        self.app.push_screen(TimelineScreen(ev.report_id))

    def action_verify(self) -> None:
        engine = self.console_app.engine
        if engine is None:
            return
        self.chain = Text("chain: verifying…", style=GREY)
        self.console_app.run_core(engine.verify_audit, on_done=self._verified, label="verify")

    def _verified(self, result: VerifyResult) -> None:
        if result.ok:
            self.chain = Text(f"✔ chain intact ({result.checked:,} events)", style=f"bold {SKY}")
        else:
            self.chain = Text(
                f"✖ chain BROKEN at event {result.first_bad_seq}: {result.problem}",
                style=f"bold reverse {VERMILLION}",
            )
        self._highlighted(VirtualTable.Reloaded(self.table, self.table.total))

    def action_replay(self) -> None:
        row = self.table.cursor
        if row is None or not row.payload.report_id:
            self.notify("Highlight an event of a report to replay it.", severity="warning")
            return
        replay_report(self, row.payload.report_id)


def replay_report(screen: Screen[Any], report_id: str) -> None:
    """Re-check one report against IFS and post it if it is now valid (confirm first)."""
    app = console_app(screen)
    engine = app.engine
    if engine is None:
        return

    def go(ok: bool | None) -> None:
        if not ok:
            return
        app.sync_progress = f"replaying {report_id}…"
        app.run_core(
            engine.replay,
            [report_id],
            on_done=app.cycle_done,
            on_error=app.cycle_failed,
            label="replay",
        )

    screen.app.push_screen(
        ConfirmModal(
            f"Replay report {report_id}?",
            "The report is re-fetched from the store, re-mapped and re-validated against IFS, "
            "and posted if it is now valid (exactly once: a voucher IFS already has is found "
            "by its reference and not posted again).",
            "Replay (y)",
        ),
        go,
    )


class TimelineScreen(ReportDrillDown[list[Row]]):
    """One report's whole story: fetched, mapped, held, replayed, posted as voucher N."""

    TITLE = "Timeline"
    HELP = "Every audit event of one report, oldest first, with request/response digests."
    BINDINGS: ClassVar[list[BindingType]] = bindings("timeline")
    HEADING = "Timeline of report {report_id}"
    TABLE_ID = "timeline"
    LOAD_LABEL = "timeline"

    def compose_body(self) -> ComposeResult:
        yield VirtualTable(
            [
                Column("seq", "Seq", 8, justify="right", drop=4),
                Column("at", "When", 19),
                Column("type", "Event", 18),
                Column("actor", "Actor", 10, drop=3),
                Column("voucher", "Voucher", 9, drop=2),
                Column("summary", "What", 0, min_width=20),
                Column("digests", "Request → response", 35, drop=5),
            ],
            id="timeline",
            markable=False,
            openable=False,
        )

    def _load(self, engine: Engine) -> list[Row]:
        events = engine.audit_page(AuditFilter(report_id=self.report_id), limit=5000)
        rows = []
        for ev in reversed(events):
            row = event_row(ev)
            req = (ev.request_digest or "—")[:14]
            resp = (ev.response_digest or "—")[:14]
            row.cells["digests"] = Text(f"{req} → {resp}")
            rows.append(row)
        return rows

    def _show(self, rows: list[Row]) -> None:
        self.query_one("#timeline", VirtualTable).set_source(ListSource(rows))
        if not rows:
            self.notify("No audit events for this report yet.")

    def action_replay(self) -> None:
        replay_report(self, self.report_id)


__all__ = ["AuditScreen", "TimelineScreen", "parse_audit_filter", "status_text"]
