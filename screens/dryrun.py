"""4 Dry run: the exact plan that would be posted; `c` posts exactly this plan."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Label, ProgressBar, Static

from console.money import fmt_decimal
from screens.base import ConsoleScreen, ListTop
from screens.keys import bindings
from screens.literal import literal
from screens.messages import ChangeConfirmed, PlanPosted, PlanReady, PostAdvanced
from screens.theme import BLUE, GREY, ORANGE, SKY, VERMILLION, status_text
from screens.vtable import Column, ListSource, Row, VirtualTable
from screens.widgets import ConfirmModal, FilterBar

if TYPE_CHECKING:
    from console.flows.cycle import CycleSummary, PostProgress
    from console.plan import Plan
    from console.reversal import PlannedReversal


def amount(value: Decimal | None, decimals: int = 2) -> str:
    """As the console shows money everywhere (console.money.fmt_decimal), to the currency's
    own decimals (JPY 0, KWD 3; docs/currency.md)."""
    return fmt_decimal(value, decimals=decimals)


def progress_text(event: Any) -> str:
    """A PostProgress (or anything) as one short line."""
    if hasattr(event, "done") and hasattr(event, "total"):
        voucher = f" voucher {event.voucher}" if getattr(event, "voucher", None) else ""
        return f"{event.done}/{event.total} {event.report_id} {event.outcome}{voucher}"
    return str(event)


def plan_rows(plan: Plan, flt: str = "") -> list[Row]:
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
        if v.approval_note:
            info += f" · approved {v.approval_note}"
        title.append("  ")
        title.append_text(literal(info, 140, style=ORANGE if v.moved_from else GREY))
        rows.append(Row(key=v.report_id, cells={}, payload=v, selectable=False, span=title))
        for r in v.rows:
            came = dict(r.source.parts_from)  # a code part not from the tag says its source
            parts = " ".join(
                f"{k}={val}" + (f" ({came[k]})" if k in came else "")
                for k, val in (*r.code_parts, *r.fields)
            )
            rows.append(
                Row(
                    # IFS numbers its own tax rows: they are keyed by their line instead.
                    key=f"{v.report_id}#"
                    + (f"tax:{r.source.transaction_id}" if r.ifs_generated else str(r.row_no)),
                    cells={
                        "row": Text("ifs" if r.ifs_generated else str(r.row_no)),
                        "account": literal(r.account_label, 10),
                        "parts": literal(parts or "—", 30),
                        "tax": literal(r.tax.code if r.tax else "", 8),
                        "cur": literal(r.currency_code, 4),
                        "cdebit": Text(amount(r.currency_debit, v.currency_decimals)),
                        "ccredit": Text(amount(r.currency_credit, v.currency_decimals)),
                        "rate": Text(str(r.currency_rate)),
                        "debit": Text(amount(r.debit, v.accounting_decimals)),
                        "credit": Text(amount(r.credit, v.accounting_decimals)),
                        "text": literal(r.text, 80),
                    },
                    payload=v,
                    selectable=False,
                )
            )
    for rv in plan.reversals:
        if flt and flt not in f"{rv.report_id} {rv.reference} {rv.company}".lower():
            continue
        rows.extend(reversal_rows(rv, f"rev:{rv.reference}"))
    for ch in plan.changes:
        if flt and flt not in str(ch["reportID"]).lower():
            continue
        rows.append(
            Row(
                key=f"change:{ch['reportID']}",
                cells={},
                payload=ch,
                selectable=True,
                span=change_heading(ch),
            )
        )
    return rows


def reversal_heading(rv: PlannedReversal, prefix: str = "↺ ") -> Text:
    title = Text(f"{prefix}{rv.reference} ", style=f"bold {ORANGE}")
    info = (
        f"reverses {rv.accrual_reference} ({rv.accrual_voucher or 'voucher'}) · {rv.cause} "
        f"{', '.join(rv.groups)} · company {rv.company} · {rv.voucher_date} "
        f"period {rv.period_label}"
    )
    if rv.moved_from is not None:
        info += f" MOVED from {rv.moved_from}"
    title.append_text(literal(info, 110, style=GREY))
    return title


def reversal_rows(rv: PlannedReversal, key: str) -> list[Row]:
    """A due reversal as table rows: a heading, then its mirrored rows (IFS VoucherRow)."""
    rows = [Row(key=key, cells={}, payload=rv, selectable=False, span=reversal_heading(rv))]
    for r in rv.rows:
        parts = " ".join(
            f"{k[-1]}={getattr(r, k)}" for k in CODE_PART_FIELDS if getattr(r, k, None)
        )
        rows.append(
            Row(
                key=f"{key}#{r.RowNo}",
                cells={
                    "row": Text(str(r.RowNo or "")),
                    "account": literal(r.Account, 10),
                    "parts": literal(parts or "—", 30),
                    "cur": literal(r.CurrencyCode or "", 4),
                    "cdebit": Text(amount(r.CurrencyDebetAmount)),
                    "ccredit": Text(amount(r.CurrencyCreditAmount)),
                    "rate": Text(str(r.CurrencyRate or "")),
                    "debit": Text(amount(r.DebetAmount)),
                    "credit": Text(amount(r.CreditAmount)),
                    "text": literal(r.Text or "", 80),
                },
                payload=rv,
                selectable=False,
            )
        )
    return rows


CODE_PART_FIELDS = ("CodeB", "CodeC", "CodeD", "CodeE", "CodeF", "CodeG", "CodeH", "CodeI")


def change_heading(ch: dict[str, Any]) -> Text:
    title = Text(f"⚠ CHANGED AFTER POSTING {ch['reportID']} ", style=f"bold {VERMILLION}")
    rv, new = ch.get("reversal"), ch.get("accrual")
    what = f"({ch['kind']}) reverse {rv.reference if rv else '— (already reversed)'}"
    if new is not None:
        what += f" · new {new.reference_number}"
    if ch.get("holds"):
        what += f" · waits: {', '.join(ch['holds'])}"
    title.append_text(literal(what, 110, style=ORANGE))
    title.append("  c confirms", style=GREY)
    return title


def old_side_text(ch: dict[str, Any]) -> Text:
    """Left of the comparison: the reversal of the accrual IFS already has."""
    out = Text()
    out.append(f"Reversal of the old accrual — report {ch['reportID']}\n", style="bold")
    rv = ch.get("reversal")
    if rv is None:
        out.append("(already reversed: no reversal needed)\n", style=GREY)
        return out
    return voucher_side(
        out,
        literal(f"{rv.reference} of {rv.accrual_reference}", 80, style=ORANGE),
        f"{rv.voucher_date} period {rv.period_label} · {rv.cause}",
        [(r.RowNo or "", r.Account, r.DebetAmount, r.CreditAmount, r.Text or "") for r in rv.rows],
        rv.totals(),
    )


def new_side_text(ch: dict[str, Any]) -> Text:
    """Right of the comparison: the accrual of the report's new version."""
    out = Text()
    out.append(f"New accrual — report {ch['reportID']}\n", style="bold")
    v = ch.get("accrual")
    if v is None:
        why = (
            "rejected: nothing new to post"
            if ch.get("kind") == "rejected"
            else "the new version is held: " + ", ".join(ch.get("holds", []))
        )
        out.append_text(literal(why, 80, style=GREY))
        out.append("\n")
        return out
    _, _, d, c = v.totals()
    return voucher_side(
        out,
        literal(v.reference_number, 80, style=SKY),
        f"{v.voucher_date} period {v.period_label} · company {v.company}",
        [
            ("ifs" if r.ifs_generated else r.row_no, r.account_label, r.debit, r.credit, r.text)
            for r in v.rows
        ],
        (d, c),
    )


def voucher_side(
    out: Text,
    reference: Text,
    facts: str,
    rows: list[tuple[object, str, Decimal | None, Decimal | None, str]],
    balance: tuple[Decimal, Decimal],
) -> Text:
    """One side of the comparison below its title: the reference, date and period, each row
    (number, account, debit, credit, text) and the balance."""
    out.append_text(reference)
    out.append("\n")
    out.append_text(literal(facts, 80))
    out.append("\n")
    for no, account, debit, credit, text in rows:
        out.append_text(literal(f"{no:>3} {account:<8}", 12))
        out.append(f" {amount(debit):>11} {amount(credit):>11} ")
        out.append_text(literal(text, 30))
        out.append("\n")
    d, c = balance
    out.append(f"    balance  {amount(d):>11} {amount(c):>11}\n", style="bold")
    return out


PLAN_COLUMNS = [
    Column("row", "#", 3, justify="right"),
    Column("account", "Account", 10),
    Column("parts", "Code parts", 22, drop=1),
    Column("tax", "Tax code", 8, drop=5),  # the first to go on a narrow terminal
    Column("cur", "Cur", 4),
    Column("cdebit", "Cur debit", 12, justify="right", drop=3),
    Column("ccredit", "Cur credit", 12, justify="right", drop=3),
    Column("rate", "Rate", 8, justify="right", drop=4),
    Column("debit", "Debit", 12, justify="right"),
    Column("credit", "Credit", 12, justify="right"),
    Column("text", "Text", 0, min_width=10, drop=2),
]


def balance_text(plan: Plan) -> Text:
    bad = []
    for v in plan.vouchers:
        cd, cc, d, c = v.totals()
        if cd != cc or d != c:
            bad.append(v.report_id)
    if bad:
        return Text(f"✖ UNBALANCED: {', '.join(bad)}", style=f"bold reverse {VERMILLION}")
    return Text(f"✔ every voucher balances ({len(plan.vouchers)} checked)", style=f"bold {SKY}")


def grand_totals(plan: Plan) -> list[tuple[str, str, Decimal, Decimal]]:
    """(company, currency, debit, credit) over every voucher of the plan."""
    sums: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    for t in plan.totals_by_account():
        d, c = sums.get((t.company, t.currency), (Decimal(0), Decimal(0)))
        sums[(t.company, t.currency)] = (d + t.debit, c + t.credit)
    return [(co, cur, d, c) for (co, cur), (d, c) in sorted(sums.items())]


def totals_text(plan: Plan) -> Text:
    out = Text()
    out.append(f"Grand total ({len(plan.vouchers)} vouchers)\n", style=f"bold {BLUE}")
    for company, currency, d, c in grand_totals(plan):
        out.append_text(literal(f"{company:<3} {'all':<9}", 13))
        out.append(f" {amount(d):>11} {amount(c):>11} {currency}\n", style="bold")
    out.append("\nTotals per account\n", style="bold")
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
    if plan.reversals:
        out.append(f"\nReversals due ({len(plan.reversals)})\n", style=f"bold {ORANGE}")
        for rv in plan.reversals:
            out.append_text(literal(f"{rv.reference} {rv.voucher_date}", 44))
            out.append("\n")
    if plan.changes:
        out.append(f"\nChanged after posting ({len(plan.changes)})\n", style=f"bold {VERMILLION}")
        for ch in plan.changes:
            out.append_text(literal(f"{ch['reportID']} ({ch['kind']}): confirm with c", 44))
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
    LIST_ID = "plan-table"
    TOP = ListTop(
        "Dry run — the exact plan",
        "filter: report, employee, company…",
        "plan-summary",
        "planning…",
    )
    HELP = (
        "The exact vouchers that would be posted: each report's rows with account, code parts, "
        "currency and accounting amounts and rate, the totals per account and cost centre, the "
        "balance check, moved periods and what is held; then the accrual reversals due today "
        "(REV: vouchers mirroring the accrual) and the reports changed after posting, with the "
        "reversal of the old accrual beside the new accrual. `p` posts exactly this plan and "
        "its due reversals (after a confirmation; disabled while a newer plan is on its way), "
        "`c` confirms the changed report under the cursor, `w` writes the plan as CSV and JSON "
        "to your home folder, `r` plans again."
    )

    DEFAULT_CSS = """
    DryRunScreen #change-compare { height: auto; max-height: 14; border-top: solid $panel; }
    DryRunScreen #change-compare > VerticalScroll { width: 1fr; height: auto; max-height: 13;
        padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = bindings("dryrun")

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="plan-view"):
            yield VirtualTable(PLAN_COLUMNS, id="plan-table", markable=False, openable=False)
            with VerticalScroll(classes="side-panel"):
                yield Static("", id="plan-totals")
        with Horizontal(id="change-compare"):
            with VerticalScroll(id="change-old-side"):
                yield Static("", id="change-old")
            with VerticalScroll(id="change-new-side"):
                yield Static("", id="change-new")
        with Vertical(id="post-progress"):
            yield ProgressBar(total=1, show_eta=False, id="post-bar")
            yield Static("", id="landed")

    def on_mount(self) -> None:
        # ConsoleScreen.on_mount runs too (Textual calls handlers down the MRO): not again.
        self.plan: Plan | None = None
        self.posting = False
        self.landed: list[str] = []
        self.confirming = False
        # Bumped on every write and every re-plan: a plan from before it is never shown and
        # `c` acts only on the plan of the latest generation, once it is on screen.
        self.plan_generation = 0
        self.stale_reason = "no plan yet: planning…"
        self.own_references: set[str] = set()  # what this console posted from here
        self.query_one("#post-progress").display = False
        self.query_one("#change-compare").display = False
        self.table.focus()
        self.refresh_if_open()

    def refresh_data(self, read_again: bool = False) -> None:
        """Plan again: incrementally after a write (only what changed is evaluated); with
        `read_again` (the operator's `r`) IFS's values and the accruals due are read afresh."""
        if self.posting:
            return
        engine = self.console_app.engine
        if engine is None:
            return
        selection = self.console_app.dry_run_selection
        self.plan_generation += 1
        generation = self.plan_generation
        if self.plan is not None:
            # The store changed (or the operator asked): the plan on screen may be stale.
            self.stale_reason = "re-planning: the plan on screen may be out of date"
        self.query_one("#plan-summary", Label).update(
            Text(f"planning… ({self.stale_reason}; p waits for the new plan)", style=GREY)
        )
        self.refresh_bindings()
        # The core's review plan: what `--auto --dry-run` prints, with the reversals due.
        self.console_app.run_core(
            engine.plan_for_review,
            selection,
            refresh=read_again,
            on_done=lambda plan: self.post_message(PlanReady(plan, generation)),
            label="planning",
            exclusive=True,
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`c` and `a` act only on the newest plan, once it is shown (None: shown disabled)."""
        if action == "confirm_post" and self.why_no_post():
            return None
        if action == "confirm_change":
            plan: Plan | None = getattr(self, "plan", None)
            if plan is None or self.posting or not plan.changes:
                return None
        return True

    def why_no_post(self) -> str:
        """Why `c` cannot post now ("" when it can)."""
        if not self.is_mounted or not hasattr(self, "plan_generation"):
            return "no plan yet"
        if self.posting:
            return "posting"
        if self.plan is None:
            return self.stale_reason
        if not self.plan.vouchers and not self.plan.reversals:
            return "nothing to post"
        return ""

    def on_resize(self) -> None:
        # Under 120 columns the totals panel would squeeze the amounts out of the plan: it
        # goes (the grand totals stay in the summary line above the plan).
        self.query_one(".side-panel").display = self.size.width >= 120

    def action_replan(self) -> None:
        if self.console_app.engine is not None:
            self.refresh_data(read_again=True)

    def on_plan_ready(self, message: PlanReady) -> None:
        if message.generation is not None and message.generation != self.plan_generation:
            return  # planned before the last write or re-plan: never shown, never posted
        if self.posting:
            return
        self._show_plan(message.plan)
        self.refresh_bindings()

    def _show_plan(self, plan: Plan) -> None:
        self.plan = plan
        self._render_rows()
        summary = Text()
        sel = self.console_app.dry_run_selection
        summary.append(f"{len(plan.vouchers)} vouchers to post", style=f"bold {BLUE}")
        for _company, currency, debit, _credit in grand_totals(plan):
            summary.append(f" · {amount(debit)} {currency}", style="bold")
        summary.append(f" · {len(plan.held)} held · {len(plan.skipped)} skipped")
        if plan.reversals:
            summary.append(f" · {len(plan.reversals)} reversals due", style=f"bold {ORANGE}")
        if plan.changes:
            summary.append(
                f" · {len(plan.changes)} changed after posting", style=f"bold {VERMILLION}"
            )
        summary.append(f" · {'marked reports: ' + str(len(sel)) if sel else 'all ready reports'}")
        summary.append("  │  ")
        summary.append_text(balance_text(plan))
        self.query_one("#plan-summary", Label).update(summary)
        self.query_one("#plan-totals", Static).update(totals_text(plan))
        self._show_change(None)

    def _render_rows(self) -> None:
        if self.plan is None:
            return
        rows = plan_rows(self.plan, self.query_one(FilterBar).applied)
        self.table.set_source(ListSource(rows))

    def selected_change(self) -> dict[str, Any] | None:
        row = self.table.cursor
        if row is not None and row.key.startswith("change:") and isinstance(row.payload, dict):
            return row.payload
        return None

    def _show_change(self, change: dict[str, Any] | None) -> None:
        """The comparison panel: the highlighted changed report, else the first one."""
        changes = self.plan.changes if self.plan is not None else []
        compare = self.query_one("#change-compare")
        compare.display = bool(changes)
        if not changes:
            return
        ch = change or changes[0]
        self.query_one("#change-old", Static).update(old_side_text(ch))
        self.query_one("#change-new", Static).update(new_side_text(ch))

    @on(VirtualTable.Highlighted, "#plan-table")
    def _highlighted(self, event: VirtualTable.Highlighted) -> None:
        row = event.row
        if row is not None and row.key.startswith("change:") and isinstance(row.payload, dict):
            self._show_change(row.payload)

    @on(FilterBar.Applied)
    def _filter(self) -> None:
        self._render_rows()

    # ---- posting --------------------------------------------------------------------------------

    def action_confirm_post(self) -> None:
        plan = self.plan
        if plan is None or self.console_app.engine is None:
            self.notify("No plan yet.", severity="warning")
            return
        if self.posting:
            self.notify("Already posting.", severity="warning")
            return
        if not plan.vouchers and not plan.reversals:
            self.notify("The plan has no voucher to post.", severity="warning")
            return
        total = sum((v.totals()[2] for v in plan.vouchers), Decimal(0))
        body = Text(
            f"Post {len(plan.vouchers)} vouchers to IFS, exactly as shown "
            f"(accounting debit total {amount(total)}).\n"
        )
        if plan.reversals:
            body.append(f"Then post {len(plan.reversals)} reversals due: ")
            body.append_text(literal(", ".join(rv.reference for rv in plan.reversals), 200))
            body.append("\n")
        body.append(
            f"{len(plan.held)} held reports and {len(plan.changes)} changed reports are not "
            "posted. This cannot be undone from here."
        )
        self.app.push_screen(
            ConfirmModal("Post this plan to IFS?", body, "Post (y)"), self._confirmed
        )

    def _confirmed(self, ok: bool | None) -> None:
        engine = self.console_app.engine
        if not ok or self.plan is None or engine is None:
            return
        plan = self.plan
        self.posting = True
        self.refresh_bindings()
        self.landed = []
        bar = self.query_one("#post-bar", ProgressBar)
        bar.update(total=max(1, len(plan.vouchers)), progress=0)
        self.query_one("#post-progress").display = True
        self.query_one("#landed", Static).update(Text("posting…", style=GREY))
        self.console_app.sync_progress = f"posting {len(plan.vouchers)} vouchers"

        def progress(event: PostProgress) -> None:
            self.post_message(PostAdvanced(event))  # queued: posting never waits for a redraw

        self.console_app.run_core(
            engine.post_reviewed,
            plan,
            progress=progress,
            on_done=lambda summary: self.post_message(PlanPosted(summary)),
            on_error=self._post_failed,
            label="posting",
        )

    def on_post_advanced(self, message: PostAdvanced) -> None:
        self._progress(message.event)

    def _progress(self, event: PostProgress) -> None:
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

    def on_plan_posted(self, message: PlanPosted) -> None:
        self._posted(message.summary)

    def _posted(self, summary: CycleSummary) -> None:
        self.posting = False
        posted = summary.vouchers
        failed = summary.failed_reports
        plan = summary.plan
        planned = {v.reference_number for v in plan.vouchers} if plan is not None else set()
        own_before = planned & self.own_references
        self.own_references |= planned
        msg = f"{len(posted)} vouchers posted"
        if posted:
            msg += ": " + ", ".join(str(v["voucher"]) for v in posted[:8])
        if summary.already_posted:
            if own_before:
                msg += (
                    f"; {summary.already_posted} already in IFS (posted from this console"
                    " earlier): not posted again"
                )
            else:
                msg += (
                    f"; {summary.already_posted} already in IFS (posted meanwhile, e.g. by a"
                    " scheduled run): not posted again"
                )
        if summary.reversals:
            msg += f"; {len(summary.reversals)} reversals posted"
        if summary.unknown:
            msg += f"; {len(summary.unknown)} outcomes unknown (reconciled on the next sync)"
        if failed:
            msg += f"; {len(failed)} failed"
        for warning in summary.warnings:
            msg += f"; {warning}"
        self.notify(
            literal(msg, 300).plain,
            title="Posted",
            markup=False,
            severity="error" if failed else "information",
        )
        self.landed.append(msg)
        self.query_one("#landed", Static).update(literal(msg, 300))
        self.console_app.dry_run_selection = None
        self._write_ended("posted: re-planning what is left")

    def _drop_plan(self, reason: str) -> None:
        """After a write the plan on screen is history: clear it, so nothing acts on it, and
        say so until the new plan (core_changed re-plans) is shown."""
        self.plan = None
        self.stale_reason = reason
        self.table.set_source(ListSource([]))
        self.query_one("#plan-totals", Static).update("")
        self.query_one("#change-compare").display = False
        self.query_one("#plan-summary", Label).update(
            Text(f"{reason}… (p waits for the new plan)", style=GREY)
        )
        self.refresh_bindings()

    def _write_ended(self, replan_reason: str) -> None:
        """A post or a confirmation ended, either way: the header stops saying so, the plan
        on screen is history, every screen reloads (and this one re-plans)."""
        self.console_app.sync_progress = ""
        self._drop_plan(replan_reason)
        self.console_app.core_changed()

    def _write_failed(self, exc: BaseException, title: str, replan_reason: str) -> None:
        self.notify(
            literal(str(exc), 300).plain, title=title, severity="error", markup=False, timeout=15
        )
        self._write_ended(replan_reason)

    def _post_failed(self, exc: BaseException) -> None:
        self.posting = False
        self._write_failed(exc, "Posting failed", "posting failed: re-planning")

    # ---- confirming a change after posting -----------------------------------------------------

    def action_confirm_change(self) -> None:
        if self.plan is None or self.console_app.engine is None:
            self.notify("No plan yet.", severity="warning")
            return
        if self.posting or self.confirming:
            self.notify("Already posting.", severity="warning")
            return
        if not self.plan.changes:
            self.notify("No report changed after posting: nothing to confirm.", severity="warning")
            return
        change = self.selected_change()
        if change is None:
            self.notify(
                "No changed report selected: move the cursor to a ⚠ CHANGED AFTER POSTING row.",
                severity="warning",
            )
            return
        rid = str(change["reportID"])
        rv, new = change.get("reversal"), change.get("accrual")
        body = Text()
        body.append_text(literal(f"Report {rid} changed after posting ({change['kind']}).", 200))
        body.append("\n\n")
        if rv is not None:
            body.append_text(
                literal(
                    f"Post the reversal {rv.reference} of {rv.accrual_reference}, dated "
                    f"{rv.voucher_date} (period {rv.period_label}).",
                    300,
                )
            )
        else:
            body.append("The old accrual is already reversed: no reversal is posted.")
        body.append("\n")
        if new is not None:
            body.append_text(
                literal(
                    f"Then post the new accrual {new.reference_number}, dated {new.voucher_date} "
                    f"(period {new.period_label}).",
                    300,
                )
            )
        elif change.get("kind") == "changed":
            body.append_text(
                literal("The new version is held: " + ", ".join(change.get("holds", [])), 300)
            )
        else:
            body.append("Rejected: no new accrual is posted.")
        body.append("\n\nThis posts to IFS and cannot be undone from here.")
        self.app.push_screen(
            ConfirmModal(f"Confirm the change of report {rid}?", body, "Confirm (y)"),
            lambda ok: self._change_confirmed(rid, ok),
        )

    def _change_confirmed(self, report_id: str, ok: bool | None) -> None:
        engine = self.console_app.engine
        if not ok or engine is None:
            return
        self.confirming = True
        self.console_app.sync_progress = f"confirming the change of {report_id}"
        self.console_app.run_core(
            engine.confirm_change,
            report_id,
            on_done=lambda summary: self.post_message(ChangeConfirmed(report_id, summary)),
            on_error=self._change_failed,
            label="confirm change",
        )

    def on_change_confirmed(self, message: ChangeConfirmed) -> None:
        self._change_done(message.report_id, message.summary)

    def _change_done(self, report_id: str, summary: CycleSummary) -> None:
        self.confirming = False
        reversals = summary.reversals
        vouchers = summary.vouchers
        msg = f"report {report_id}: {len(reversals)} reversal(s) and {len(vouchers)} accrual(s)"
        msg += " posted"
        refs = [str(r.get("reference", "")) for r in reversals] + [
            str(v.get("voucher", "")) for v in vouchers
        ]
        if any(refs):
            msg += ": " + ", ".join(r for r in refs if r)
        self.notify(literal(msg, 300).plain, title="Change confirmed", markup=False)
        self._write_ended("change confirmed: re-planning")

    def _change_failed(self, exc: BaseException) -> None:
        self.confirming = False
        self._write_failed(exc, "Confirming the change failed", "confirming failed: re-planning")

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
