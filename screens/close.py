"""The Close screen (key 6): the period's tie-out and the month at a glance.

Self-contained: `CloseScreen(engine, period=None)`. The tie-out is computed in a thread worker
through `console.close.run_close` (it reads Expensify and IFS), never on the UI thread. Shows the
state (balanced, or what is unexplained), a terminal bar chart of the accrued spend by account
and by cost centre and of what is still held, and the tie-out table per account and cost centre.
Below it, on its own, company-card spend not yet on a report (not part of the tie-out).

Keys: `[` / `]` previous / next period, `r` read again, `b` switch the chart (account, cost
centre, held, card spend), `p` post the card spend accrual (and the card reversals due): the
exact vouchers are shown first and nothing posts until `y`.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static
from textual.worker import get_current_worker

from console import clock
from console.close import CARDS_READ, COLUMNS, HELD, IN_IFS, ClosePeriod, TieOut
from console.close_report import COLUMN_TITLES, card_spend_heading, money
from console.flows.close import run_close
from screens.keys import bindings

if TYPE_CHECKING:
    from console.card_accrual import CardAccrualRun
    from console.flows.cycle import Engine

BLOCKS = " ▏▎▍▌▋▊▉█"
CHARTS = ("account", "cost centre", "held", "card spend")


def bar(value: Decimal, peak: Decimal, width: int) -> str:
    """A horizontal bar of `width` cells at most, in eighths of a cell."""
    if peak <= 0 or value <= 0 or width <= 0:
        return ""
    eighths = int((value / peak) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (BLOCKS[part] if part else "")


def bar_chart(
    title: str,
    items: Sequence[tuple[str, Decimal]],
    unit: str,
    *,
    columns: int = 60,
    limit: int = 10,
) -> Text:
    """A terminal bar chart (Rich text) fitting `columns` cells: label, bar, amount; beyond
    `limit` items the rest is summed as "other"."""
    shown = list(items[:limit])
    rest = items[limit:]
    if rest:
        shown.append((f"other ({len(rest)})", sum((v for _, v in rest), Decimal(0))))
    out = Text()
    out.append(f"{title}\n", style="bold")
    if not shown:
        out.append("  nothing\n", style="dim")
        return out
    peak = max(v for _, v in shown)
    label_w = min(16, max(len(k) for k, _ in shown))
    width = max(4, columns - label_w - 3 - 15 - len(unit) - 2)
    for label, value in shown:
        out.append(f"  {label[:label_w]:<{label_w}} ")
        out.append(f"{bar(value, peak, width):<{width}}", style="cyan" if value >= 0 else "red")
        out.append(f" {money(value):>14} {unit}\n")
    return out


def previous_period(p: ClosePeriod) -> ClosePeriod:
    return ClosePeriod(p.year - 1, 12) if p.period <= 1 else ClosePeriod(p.year, p.period - 1)


def next_period(p: ClosePeriod) -> ClosePeriod:
    return ClosePeriod(p.year + 1, 1) if p.period >= 12 else ClosePeriod(p.year, p.period + 1)


# The tie-out table's headings: where it is, then the tie-out's columns, then what is left.
_TABLE_COLUMNS = ("company", "account", "cost centre", *(COLUMN_TITLES[c] for c in COLUMNS), "diff")


class CloseScreen(Screen[None]):
    """The tie-out of one period, computed in a worker."""

    TITLE = "Close"
    HELP = (
        "The period close: does what Expensify approved for the period equal what is in IFS, "
        "plus what is held, excluded or moved? BALANCED means every difference is explained; "
        "UNEXPLAINED lists the reports that are not. Opens on the period being closed (the "
        "previous month through the 10th, configurable as tui.close_previous_month_until_day) "
        "or the one you chose last. `[`/`]` change the period, `r` reads again, `b` switches "
        "the chart, `p` posts the card spend accrual after showing the exact vouchers."
    )

    DEFAULT_CSS = """
    CloseScreen #close-state { height: auto; padding: 0 1; }
    CloseScreen #close-body { height: 1fr; }
    CloseScreen #close-chart { width: 1fr; padding: 0 1; }
    CloseScreen #close-table { width: 2fr; }
    CloseScreen #close-reports { height: auto; max-height: 12; padding: 0 1; }
    CloseScreen #close-cards { height: auto; max-height: 7; padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = bindings("close")

    def __init__(
        self, engine: Engine | None, period: ClosePeriod | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        # Until the engine says which period is being closed (CloseTab opens without one).
        self.period_chosen = period is not None or engine is not None
        if period is None:
            if engine is not None:
                # The operator's last choice, else the month being closed (engine.today()).
                period = ClosePeriod(*engine.close_period())
            else:
                closing = clock.month_start(clock.today(), -1)
                period = ClosePeriod(closing.year, closing.month)
        self.period = period
        self.tie: TieOut | None = None
        self.error = ""
        self.chart_index = 0
        self.posting_cards = False

    def compose(self) -> ComposeResult:
        yield Label("", id="close-title")
        yield Static("", id="close-state")
        with Horizontal(id="close-body"):
            with VerticalScroll(id="close-chart"):
                yield Static("", id="close-chart-body")
            yield DataTable(id="close-table", zebra_stripes=True, cursor_type="row")
        yield Static("", id="close-reports")
        yield Static("", id="close-cards")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#close-table", DataTable)
        if table.columns:
            return
        table.add_columns(*_TABLE_COLUMNS)
        self.action_reload()

    # ---------------------------------------------------------------- computing
    def action_reload(self) -> None:
        self.tie = None
        self.query_one("#close-title", Label).update(
            Text(f"Period close {self.period.label}", style="bold")
        )
        self.query_one("#close-state", Static).update(
            Text("reading Expensify and IFS…", style="dim")
        )
        if self.engine is None:
            self.query_one("#close-state", Static).update(
                Text("No systems configured yet.", style="yellow")
            )
            return
        self._compute(self.engine, self.period)

    @work(thread=True, exclusive=True, group="close")
    def _compute(self, engine: Engine, period: ClosePeriod) -> None:
        try:
            tie = run_close(engine, period)
        except Exception as exc:  # shown on screen; the worker never dies silently
            if not get_current_worker().is_cancelled:
                self.app.call_from_thread(self._failed, period, f"{type(exc).__name__}: {exc}")
            return
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show, period, tie)

    def _failed(self, period: ClosePeriod, message: str) -> None:
        if period != self.period:
            return
        self.error = message
        self.query_one("#close-state", Static).update(
            Text(f"Could not tie out {period.label}: {message}", style="bold red")
        )

    def _show(self, period: ClosePeriod, tie: TieOut) -> None:
        if period != self.period:
            return
        self.tie = tie
        self.error = ""
        self.query_one("#close-state", Static).update(self._state_text(tie))
        self._render_chart()
        table = self.query_one("#close-table", DataTable)
        # Columns too: a cleared DataTable keeps the widths of the rows it showed before (an
        # earlier read, another period), so the same tie-out could show in two layouts.
        table.clear(columns=True)
        table.add_columns(*_TABLE_COLUMNS)
        for r in tie.rows:
            diff = money(r.difference)
            table.add_row(
                Text(r.company),
                Text(r.account),
                Text(r.cost_centre or "-"),
                *(Text(money(r.amounts[c]), justify="right") for c in COLUMNS),
                Text(diff, justify="right", style="bold red" if r.difference else ""),
            )
        for (company, _currency), t in sorted(tie.totals().items()):
            table.add_row(
                Text(company, style="bold"),
                Text("total", style="bold"),
                Text(""),
                *(Text(money(t[c]), justify="right", style="bold") for c in COLUMNS),
                Text(money(t["diff"]), justify="right", style="bold"),
            )
        self.query_one("#close-reports", Static).update(self._reports_table(tie))
        self.query_one("#close-cards", Static).update(self._card_spend_text(tie))

    @staticmethod
    def _state_text(tie: TieOut) -> Text:
        out = Text()
        if tie.balanced:
            out.append(" BALANCED ", style="bold black on green")
            out.append("  every difference is explained")
        else:
            out.append(f" {len(tie.unexplained)} UNEXPLAINED ", style="bold white on red")
        source = (
            "Expensify re-read"
            if tie.source == "expensify"
            else f"local copy ({tie.source_note or 'Expensify not re-read'})"
        )
        out.append(f"   approved totals: {source}; IFS: vouchers read back", style="dim")
        for (company, currency), t in sorted(tie.totals().items()):
            out.append(
                f"\n  company {company}: approved {money(t['approved'])} {currency} = in IFS "
                f"{money(t[IN_IFS])} + held {money(t[HELD])} + excluded {money(t['excluded'])}"
                f" + moved out {money(t['moved_out'])} − moved in {money(t['moved_in'])}"
                f" + difference {money(t['diff'])}"
            )
        return out

    def _render_chart(self) -> None:
        tie = self.tie
        if tie is None:
            return
        kind = CHARTS[self.chart_index]
        columns = max(30, self.query_one("#close-chart").size.width - 3)
        chart = Text()
        for company, window in tie.windows.items():
            if kind == "account":
                items = [(a, v) for c, a, v in tie.by_account(IN_IFS) if c == company]
                title = f"Accrued in IFS by account — {company}"
            elif kind == "cost centre":
                items = [
                    (k or "(none)", v) for c, k, v in tie.by_cost_centre(IN_IFS) if c == company
                ]
                title = f"Accrued in IFS by cost centre — {company}"
            elif kind == "held":
                items = [(a, v) for c, a, v in tie.by_account(HELD) if c == company]
                title = f"Still held, by account — {company}"
            else:
                items = _card_spend_by_account(tie, company)
                title = f"Card spend not yet reported, by account — {company}"
            chart.append_text(bar_chart(title, items, window.currency, columns=columns))
        held = tie.held_by_reason()
        if kind == "held" and held:
            chart.append("\nHeld because\n", style="bold")
            for reason, n, amounts in held:
                text = ", ".join(f"{money(v)} {cur}" for cur, v in sorted(amounts.items()))
                chart.append(f"  {reason:<20} {n:>4} report(s)  {text}\n")
        chart.append("\n[b] next chart  [ ] period  [r] read again", style="dim")
        self.query_one("#close-chart-body", Static).update(chart)

    @staticmethod
    def _reports_table(tie: TieOut) -> Table | Text:
        listed = [r for r in tie.reports if r.disposition not in ("posted", "nothing")]
        if not listed:
            return Text("Every approved report of the period is posted.", style="dim")
        table = Table(box=None, expand=True, show_edge=False, pad_edge=False)
        for name in ("report", "disposition", "approved", "amount", "reason"):
            table.add_column(name, justify="right" if name == "amount" else "left")
        for r in sorted(listed, key=lambda r: (r.explained, r.report_id)):
            table.add_row(
                Text(r.report_id),
                Text(r.disposition, style="" if r.explained else "bold red"),
                Text(r.approved),
                Text(f"{money(r.approved_amount)} {r.currency}"),
                Text(r.reason),  # Text, never markup: "missing-dimension:B:…" is no emoji
            )
        return table

    @staticmethod
    def _card_spend_text(tie: TieOut) -> Text:
        """Card spend not yet reported, one line per company, then what cannot be accrued."""
        cards = tie.card_spend
        out = Text()
        if cards is None:
            return out
        out.append(card_spend_heading(cards) + "\n", style="bold")
        if cards.status != CARDS_READ:
            out.append(f"  not read: {cards.note}\n", style="yellow")
            return out
        totals = cards.totals()
        for (company, currency), amount in sorted(totals.items()):
            n = sum(r.count for r in cards.rows() if r.company == company)
            out.append(
                f"  company {company}: {money(amount)} {currency} in {n} expense(s) to accrue,"
                f" dated {cards.voucher_dates.get(company, '')}\n"
            )
        if not totals:
            out.append("  nothing to accrue\n", style="dim")
        for a in cards.accruals:
            style = "yellow" if a.difference or a.note or a.state == "in-doubt" else ""
            out.append(f"  company {a.company} accrual: ")
            out.append(Text(a.describe(), style=style))
            out.append("\n")
        for ln in cards.not_accruable:
            out.append(f"  {ln.transaction_id} {money(ln.amount)} {ln.currency} {ln.owner}: ")
            out.append(Text(ln.reason or "not accruable", style="bold red"))
            out.append("\n")
        return out

    # ---------------------------------------------------------------- actions
    def action_period(self, step: int) -> None:
        self.period = next_period(self.period) if step > 0 else previous_period(self.period)
        engine = self.engine
        if engine is not None:  # remembered for the next time Close opens
            period = self.period
            self.run_worker(
                lambda: engine.remember_close_period(period.year, period.period),
                thread=True,
                group="close-remember",
                exit_on_error=False,
            )
        self.action_reload()

    def on_resize(self) -> None:
        self._render_chart()

    def action_chart(self) -> None:
        self.chart_index = (self.chart_index + 1) % len(CHARTS)
        self._render_chart()

    # ---------------------------------------------------------------- card spend accrual
    def action_post_cards(self) -> None:
        """Plan the card accrual (a dry run, in a worker), show it, post only on `y`."""
        why = self._why_no_card_post()
        if why:
            self.notify(why, severity="warning", markup=False)
            return
        self.posting_cards = True
        self._card_step(self.period, confirm=False)

    def _why_no_card_post(self) -> str:
        if self.engine is None:
            return "No systems configured yet."
        if self.posting_cards:
            return "The card accrual is already being planned or posted."
        if self.tie is None or self.tie.period != self.period:
            return "The tie-out is still being read."
        if self.tie.card_spend is None or self.tie.card_spend.status != CARDS_READ:
            return "Card spend could not be read from Expensify: nothing to accrue (r reads again)."
        return ""

    @work(thread=True, exclusive=True, group="close-cards")
    def _card_step(self, period: ClosePeriod, confirm: bool) -> None:
        from console.flows.card_accrual import run_card_accrual

        tie, engine = self.tie, self.engine
        assert tie is not None and tie.card_spend is not None and engine is not None
        try:
            run = run_card_accrual(
                engine, tie.card_spend, period, accrue=True, reverse=True, confirm=confirm
            )
        except Exception as exc:  # shown; the worker never dies silently
            self.app.call_from_thread(self._card_failed, f"{type(exc).__name__}: {exc}")
            return
        done = self._card_posted if confirm else self._card_planned
        self.app.call_from_thread(done, period, run)

    def _card_failed(self, message: str) -> None:
        self.posting_cards = False
        self.notify(message, title="Card accrual", severity="error", markup=False, timeout=15)
        self.action_reload()

    def _card_planned(self, period: ClosePeriod, run: CardAccrualRun) -> None:
        from screens.widgets import ConfirmModal

        if not (run.accruals or run.reversals):
            self.posting_cards = False
            reasons = [f"company {c}: {why}" for c, why in run.refused]
            reasons += [f"company {s.company}: {s.describe()}" for s in run.existing]
            reasons += [f"company {c}: nothing to accrue" for c in run.nothing]
            reasons += [f"reversal {ref}: {why}" for ref, why in run.waiting]
            self.notify(
                "Nothing to post. " + "; ".join(reasons or ["no card spend this period"]),
                title="Card accrual",
                severity="warning",
                markup=False,
                timeout=12,
            )
            return

        def answered(yes: bool | None) -> None:
            if yes and period == self.period:
                self._card_step(period, confirm=True)
            else:
                self.posting_cards = False

        title = (
            f"Post {len(run.accruals)} card accrual(s) and {len(run.reversals)} reversal(s) "
            f"for {period.label}?"
        )
        body = run.render_text(how_to_post="y posts exactly this, n cancels")
        self.app.push_screen(ConfirmModal(title, body, "Post (y)", wide=True), answered)

    def _card_posted(self, period: ClosePeriod, run: CardAccrualRun) -> None:
        self.posting_cards = False
        bad = [r for r in run.results if r.outcome in ("failed", "unknown")]
        lines = [f"{r.voucher.reference}: {r.outcome} {r.label}".strip() for r in run.results]
        self.notify(
            "; ".join(lines) or "nothing posted",
            title="Card accrual",
            severity="error" if bad else "information",
            markup=False,
            timeout=12,
        )
        if hasattr(self.app, "core_changed"):
            self.app.core_changed()  # the audit trail and header
        self.action_reload()


def _card_spend_by_account(tie: TieOut, company: str) -> list[tuple[str, Decimal]]:
    sums: dict[str, Decimal] = {}
    if tie.card_spend is not None:
        for r in tie.card_spend.rows():
            if r.company == company:
                sums[r.account] = sums.get(r.account, Decimal(0)) + r.amount
    return sorted(sums.items(), key=lambda kv: -kv[1])


class CloseTab(CloseScreen):
    """The Close screen as the console's sixth top-level screen (key 6): the status header
    above it, and the engine taken from the app once it is open. A tie-out re-reads Expensify
    (20 requests a minute), so it is computed only while the screen is shown: on arrival when
    a sync changed the data since, and on `r`."""

    def __init__(self) -> None:
        super().__init__(None)
        self._stale = True

    def compose(self) -> ComposeResult:
        from screens.base import StatusHeader

        yield StatusHeader(id="status-header")
        yield from super().compose()

    def on_mount(self) -> None:
        # Textual runs CloseScreen.on_mount itself (handlers run down the MRO): calling it
        # again here added the tie-out's columns twice, the table header beside itself.
        self.watch(self.app, "data_version", self._data_changed, init=False)

    def _data_changed(self, _: object = None) -> None:
        self._stale = True
        if self.app.screen is self:
            self.action_reload()

    def on_screen_resume(self) -> None:
        if self._stale:
            self.action_reload()

    def action_reload(self) -> None:
        self.engine = getattr(self.app, "engine", None) or self.engine
        if self.engine is not None:
            self._stale = False
            if not self.period_chosen:
                self.period_chosen = True
                self.period = ClosePeriod(*self.engine.close_period())
        super().action_reload()
