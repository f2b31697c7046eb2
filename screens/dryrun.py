"""4 Dry run: the exact plan that would be posted; `c` posts exactly this plan."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Label, ProgressBar, Static

from screens.base import ConsoleScreen
from screens.literal import literal
from screens.theme import BLUE, GREY, ORANGE, SKY, VERMILLION, status_text
from screens.vtable import Column, ListSource, Row, VirtualTable
from screens.widgets import ConfirmModal, FilterBar


def amount(value: Decimal | None) -> str:
    return "" if value is None else f"{value:,.2f}"


def progress_text(event: Any) -> str:
    """A PostProgress (or anything) as one short line."""
    if hasattr(event, "done") and hasattr(event, "total"):
        voucher = f" voucher {event.voucher}" if getattr(event, "voucher", None) else ""
        return f"{event.done}/{event.total} {event.report_id} {event.outcome}{voucher}"
    return str(event)


def plan_rows(plan: Any, flt: str = "") -> list[Row]:
    rows: list[Row] = []
    flt = flt.lower()
    for v in plan.vouchers:
        head = f"{v.report_id} {v.report_name} {v.employee}".lower()
        if flt and flt not in head and flt not in str(v.company).lower():
            continue
        title = Text(f"▸ {v.report_id} ", style=f"bold {SKY}")
        title.append_text(literal(f"{v.report_name} — {v.employee}", 60))
        info = (
            f"{v.reference_number} · company {v.company} type {v.voucher_type} · "
            f"{v.voucher_date} period {v.period_label}"
        )
        if v.moved_from is not None:
            info += f" MOVED from {v.moved_from_period}"
        title.append("  ")
        title.append_text(literal(info, 80, style=ORANGE if v.moved_from else GREY))
        rows.append(Row(key=v.report_id, cells={}, payload=v, selectable=False, span=title))
        for r in v.rows:
            parts = " ".join(f"{k}={val}" for k, val in r.code_parts)
            rows.append(
                Row(
                    key=f"{v.report_id}#{r.row_no}",
                    cells={
                        "row": Text(str(r.row_no)),
                        "account": literal(r.account, 10),
                        "parts": literal(parts or "—", 30),
                        "cur": literal(r.currency_code, 4),
                        "cdebit": Text(amount(r.currency_debit)),
                        "ccredit": Text(amount(r.currency_credit)),
                        "rate": Text(str(r.currency_rate)),
                        "debit": Text(amount(r.debit)),
                        "credit": Text(amount(r.credit)),
                        "text": literal(r.text, 80),
                    },
                    payload=v,
                    selectable=False,
                )
            )
    return rows


PLAN_COLUMNS = [
    Column("row", "#", 3, justify="right"),
    Column("account", "Account", 10),
    Column("parts", "Code parts", 22),
    Column("cur", "Cur", 4),
    Column("cdebit", "Cur debit", 12, justify="right"),
    Column("ccredit", "Cur credit", 12, justify="right"),
    Column("rate", "Rate", 8, justify="right"),
    Column("debit", "Debit", 12, justify="right"),
    Column("credit", "Credit", 12, justify="right"),
    Column("text", "Text", 0, min_width=10),
]


def balance_text(plan: Any) -> Text:
    bad = []
    for v in plan.vouchers:
        cd, cc, d, c = v.totals()
        if cd != cc or d != c:
            bad.append(v.report_id)
    if bad:
        return Text(f"✖ UNBALANCED: {', '.join(bad)}", style=f"bold reverse {VERMILLION}")
    return Text(f"✔ every voucher balances ({len(plan.vouchers)} checked)", style=f"bold {SKY}")


def totals_text(plan: Any) -> Text:
    out = Text()
    out.append("Totals per account\n", style="bold")
    for t in plan.totals_by_account():
        out.append_text(literal(f"{t.company:<3} {t.key or '(none)':<9}", 13))
        out.append(f" {amount(t.debit):>11} {amount(t.credit):>11} {t.currency}\n")
    out.append(f"\nTotals per cost centre ({plan.cost_centre_code_part})\n", style="bold")
    for t in plan.totals_by_cost_centre():
        out.append_text(literal(f"{t.company:<3} {t.key or '(none)':<9}", 13))
        out.append(f" {amount(t.debit):>11} {amount(t.credit):>11} {t.currency}\n")
    moved = [v for v in plan.vouchers if v.moved_from is not None]
    if moved:
        out.append("\nMoved period\n", style=f"bold {ORANGE}")
        for v in moved:
            out.append_text(literal(f"{v.report_id}: {v.moved_from_period} → {v.period_label}", 50))
            out.append("\n")
    if plan.held:
        out.append(f"\nHeld ({len(plan.held)})\n", style=f"bold {ORANGE}")
        for h in plan.held:
            out.append_text(status_text("held"))
            out.append(" ")
            out.append_text(literal(f"{h.report_id}: {h.reason}", 48))
            out.append("\n")
    if plan.skipped:
        out.append(f"\nSkipped ({len(plan.skipped)})\n", style="bold")
        for s in plan.skipped:
            out.append_text(literal(f"{s.report_id}: {s.reason}", 50))
            out.append("\n")
    return out


class DryRunScreen(ConsoleScreen):
    TITLE = "Dry run"
    MODE = "dryrun"
    HELP = (
        "The exact vouchers that would be posted: each report's rows with account, code parts, "
        "currency and accounting amounts and rate, the totals per account and cost centre, the "
        "balance check, moved periods and what is held. `c` posts exactly this plan (after a "
        "confirmation), `e` exports it as CSV and JSON to your home folder, `r` plans again."
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        *ConsoleScreen.BINDINGS,
        Binding("c", "confirm_post", "Confirm & post", id="dryrun.confirm"),
        Binding("e", "export", "Export CSV/JSON", id="dryrun.export"),
        Binding("r", "replan", "Plan again", id="dryrun.replan"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Label("Dry run — the exact plan", classes="screen-title")
        yield FilterBar("filter: report, employee, company…")
        yield Label("planning…", id="plan-summary", classes="count-label")
        with Horizontal(id="plan-view"):
            yield VirtualTable(PLAN_COLUMNS, id="plan-table", markable=False)
            with VerticalScroll(classes="side-panel"):
                yield Static("", id="plan-totals")
        with Vertical(id="post-progress"):
            yield ProgressBar(total=1, show_eta=False, id="post-bar")
            yield Static("", id="landed")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.plan: Any = None
        self.posting = False
        self.landed: list[str] = []
        self.query_one("#post-progress").display = False
        self.query_one("#plan-table", VirtualTable).focus()
        if self.console_app.engine is not None:
            self.refresh_data()

    def refresh_data(self) -> None:
        if self.posting:
            return
        engine = self.console_app.engine
        selection = self.console_app.dry_run_selection
        self.query_one("#plan-summary", Label).update(Text("planning…", style=GREY))
        self.console_app.run_core(
            engine.plan, selection, on_done=self._show_plan, label="planning", exclusive=True
        )

    def action_replan(self) -> None:
        if self.console_app.engine is not None:
            self.refresh_data()

    def _show_plan(self, plan: Any) -> None:
        self.plan = plan
        self._render_rows()
        summary = Text()
        sel = self.console_app.dry_run_selection
        summary.append(f"{len(plan.vouchers)} vouchers to post", style=f"bold {BLUE}")
        summary.append(f" · {len(plan.held)} held · {len(plan.skipped)} skipped")
        summary.append(f" · {'marked reports: ' + str(len(sel)) if sel else 'all ready reports'}")
        summary.append("  │  ")
        summary.append_text(balance_text(plan))
        self.query_one("#plan-summary", Label).update(summary)
        self.query_one("#plan-totals", Static).update(totals_text(plan))

    def _render_rows(self) -> None:
        if self.plan is None:
            return
        rows = plan_rows(self.plan, self.query_one(FilterBar).applied)
        self.query_one("#plan-table", VirtualTable).set_source(ListSource(rows))

    @on(FilterBar.Applied)
    def _filter(self) -> None:
        self._render_rows()

    @on(FilterBar.Done)
    def _filter_done(self) -> None:
        self.query_one("#plan-table", VirtualTable).focus()

    # ---- posting --------------------------------------------------------------------------------

    def action_confirm_post(self) -> None:
        plan = self.plan
        if plan is None or self.console_app.engine is None:
            self.notify("No plan yet.", severity="warning")
            return
        if self.posting:
            self.notify("Already posting.", severity="warning")
            return
        if not plan.vouchers:
            self.notify("The plan has no voucher to post.", severity="warning")
            return
        total = sum((v.totals()[2] for v in plan.vouchers), Decimal(0))
        body = Text(
            f"Post {len(plan.vouchers)} vouchers to IFS, exactly as shown "
            f"(accounting debit total {amount(total)}).\n"
            f"{len(plan.held)} held reports are not posted. This cannot be undone from here."
        )
        self.app.push_screen(
            ConfirmModal("Post this plan to IFS?", body, "Post (y)"), self._confirmed
        )

    def _confirmed(self, ok: bool | None) -> None:
        if not ok or self.plan is None:
            return
        plan = self.plan
        engine = self.console_app.engine
        self.posting = True
        self.landed = []
        bar = self.query_one("#post-bar", ProgressBar)
        bar.update(total=len(plan.vouchers), progress=0)
        self.query_one("#post-progress").display = True
        self.query_one("#landed", Static).update(Text("posting…", style=GREY))
        self.console_app.sync_progress = f"posting {len(plan.vouchers)} vouchers"

        def progress(event: Any) -> None:
            self.app.call_from_thread(self._progress, event)

        self.console_app.run_core(
            engine.post,
            plan,
            progress=progress,
            on_done=self._posted,
            on_error=self._post_failed,
            label="posting",
        )

    def _progress(self, event: Any) -> None:
        bar = self.query_one("#post-bar", ProgressBar)
        done = getattr(event, "done", None)
        if done is not None:
            bar.update(progress=done)
        else:
            bar.advance(1)
        self.landed.append(progress_text(event))
        self.console_app.sync_progress = progress_text(event)
        landed = Text()
        for line in self.landed[-6:]:
            landed.append_text(literal(line, 120))
            landed.append("\n")
        self.query_one("#landed", Static).update(landed)

    def _posted(self, outcome: Any) -> None:
        self.posting = False
        self.console_app.sync_progress = ""
        posted = getattr(outcome, "posted", [])
        failed = getattr(outcome, "failed", [])
        msg = f"{len(posted)} vouchers posted"
        if posted:
            msg += ": " + ", ".join(str(v) for _, v in posted[:8])
        if failed:
            msg += f"; {len(failed)} failed"
        self.notify(
            literal(msg, 300).plain,
            title="Posted",
            markup=False,
            severity="error" if failed else "information",
        )
        self.landed.append(msg)
        self.query_one("#landed", Static).update(literal(msg, 300))
        self.console_app.dry_run_selection = None
        self.console_app.core_changed()

    def _post_failed(self, exc: BaseException) -> None:
        self.posting = False
        self.console_app.sync_progress = ""
        self.notify(
            literal(str(exc), 300).plain,
            title="Posting failed",
            severity="error",
            markup=False,
            timeout=15,
        )
        self.console_app.core_changed()

    # ---- export ---------------------------------------------------------------------------------

    def action_export(self) -> None:
        plan = self.plan
        if plan is None:
            self.notify("No plan yet.", severity="warning")
            return
        stamp = self.console_app.clock().strftime("%Y%m%d-%H%M%S")
        folder = export_folder()

        def write() -> tuple[Path, Path]:
            from console.money import dumps

            base = folder / f"ml-console-plan-{stamp}"
            csv_path = base.with_suffix(".csv")
            json_path = base.with_suffix(".json")
            csv_path.write_text(plan.to_csv(), encoding="utf-8")
            data = plan.to_json()
            try:
                text = dumps(data, indent=2)
            except TypeError:
                text = json.dumps(data, indent=2, default=str)
            json_path.write_text(text, encoding="utf-8")
            return csv_path, json_path

        self.console_app.run_core(
            write,
            on_done=lambda paths: self.notify(
                f"Plan exported:\n{paths[0]}\n{paths[1]}", title="Export", markup=False
            ),
            label="export",
        )


def export_folder() -> Path:
    return Path.home()


__all__ = ["DryRunScreen", "datetime"]
