"""2 Mapping: categories → accounts and tag values → code parts, per policy; Expensify's GL code
beside the operator's override, with live IFS validation while typing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.suggester import SuggestFromList
from textual.timer import Timer
from textual.widgets import Input, Label, Static

from console.mapping import MappingRule
from console.views import MappingEntry, MappingView
from screens.base import ConsoleScreen, ListTop
from screens.keys import bindings
from screens.literal import literal
from screens.theme import GREY, ORANGE, SKY, VERMILLION, status_text
from screens.vtable import Column, ListSource, Row, VirtualTable
from screens.widgets import ConfirmModal, FilterBar

if TYPE_CHECKING:
    from console.flows.cycle import ValueCheck


def entry_row(e: MappingEntry) -> Row:
    override = literal(e.override, 20, style=f"bold {ORANGE}") if e.override else Text("—", GREY)
    if e.configured_in:
        override = Text("set in config", GREY)
    return Row(
        key=f"{e.policy_id}|{e.kind}|{e.source}",
        cells={
            "policy": literal(e.policy_id, 12),
            "kind": literal(e.label, 16),
            "source": literal(e.source, 40),
            "part": Text(e.code_part or "?"),
            "default": literal(e.default or "—", 20),
            "override": override,
            "affects": Text(
                f"{e.affects:,}" if e.affects else "—" if e.configured_in else "0",
                style="bold" if e.affects else GREY,
            ),
        },
        payload=e,
    )


def _verdict(check: ValueCheck) -> Text:
    """IFS's answer for a value, as the editor shows it: the status, the message and the
    voucher days it was checked on."""
    out = Text()
    if not check.exists:
        out.append_text(status_text("missing"))
    elif all(check.valid_on.values()):
        out.append_text(status_text("ok"))
    else:
        out.append_text(status_text("invalid"))
    out.append(" ")
    out.append_text(literal(check.message, 200))
    if check.valid_on:
        out.append("\n")
        for day, ok in sorted(check.valid_on.items()):
            out.append(f" {day.isoformat()} ", style=SKY if ok else f"bold {VERMILLION}")
            out.append("✔" if ok else "✖")
    return out


def change_text(entry: MappingEntry, value: str, check: ValueCheck) -> Text:
    """What saving `value` for `entry` does, for the confirmation: which mapping, old → new,
    the reports it affects by status, and IFS's verdict on the new value."""
    what = "account" if entry.code_part == "A" else f"code part {entry.code_part}"
    out = Text()
    out.append_text(literal(f"{entry.label} '{entry.source}' of policy {entry.policy_id}", 120))
    out.append(f" → {what} in company {entry.company or '?'}\n\n", style=GREY)
    out.append("  old  ", style=GREY)
    if entry.override:
        out.append_text(literal(entry.override, 40, style="bold"))
        out.append("  (your override", style=GREY)
        if entry.default:
            out.append(f"; Expensify's GL code is {entry.default}", style=GREY)
        out.append(")", style=GREY)
    elif entry.default:
        out.append_text(literal(entry.default, 40, style="bold"))
        out.append("  (Expensify's GL code)", style=GREY)
    else:
        out.append("—", style="bold")
        out.append("  (none: Expensify has no GL code for it)", style=GREY)
    out.append("\n  new  ", style=GREY)
    out.append_text(literal(value, 40, style=f"bold {ORANGE}"))
    out.append("\n\n")
    if entry.affects:
        counts = ", ".join(f"{n} {status}" for status, n in entry.by_status)
        out.append(f"Affects {entry.affects:,} report{'s' if entry.affects != 1 else ''}")
        if counts:
            out.append(f" ({counts})")
        out.append(": re-evaluated at once; a held one that becomes valid turns ready.\n")
    else:
        out.append("Affects no report waiting to post now; later reports use it.\n", GREY)
    out.append("IFS: ", style=GREY)
    out.append_text(_verdict(check))
    if check.exists and not all(check.valid_on.values()):
        out.append("\nReports dated where it is not valid stay held.", style=ORANGE)
    out.append("\n\nRecorded in the audit trail (mapping-changed, with the old value).", GREY)
    return out


class MappingScreen(ConsoleScreen):
    # Opened from Missing dimensions: the policy whose row the next rendering puts the cursor
    # on ("(any)": the row that affects the most reports).
    _aim_at: str | None = None
    TITLE = "Mapping"
    MODE = "mapping"
    LIST_ID = "mapping-table"
    TOP = ListTop(
        "Mapping — Expensify coding → IFS",
        "filter: policy, category, tag, GL code, override…",
        "mapping-count",
        "loading…",
    )
    HELP = (
        "Every category (→ account, code part A) and tag value (→ its level's code part) of "
        "each policy: Expensify's GL code is the default, your override wins. Enter edits the "
        "highlighted mapping: the value is checked against IFS as you type (exists, valid on "
        "the voucher dates of the reports it affects); a value IFS does not have is refused "
        "there. Enter shows the change (old → new, the reports it affects, IFS's verdict) and "
        "y saves it (re-evaluates those reports, recorded in the audit trail); n or esc backs "
        "out without saving, esc again closes the editor."
    )

    BINDINGS: ClassVar[list[BindingType]] = bindings("mapping")

    def compose_body(self) -> ComposeResult:
        yield VirtualTable(
            [
                Column("policy", "Policy", 10, drop=1),
                Column("kind", "Kind", 14),
                Column("source", "Expensify value", 0, min_width=16),
                Column("part", "Part", 4),
                Column("default", "Default (GL code)", 17),
                Column("override", "Override", 14),
                Column("affects", "Affects", 7, justify="right", drop=2),
            ],
            id="mapping-table",
            markable=False,
        )
        with Vertical(id="mapping-editor"):
            yield Label("", id="editor-title")
            yield Input(placeholder="IFS value (enter saves, esc cancels)", id="mapping-input")
            yield Static("", id="validation")

    def on_mount(self) -> None:
        # ConsoleScreen.on_mount runs too (Textual calls handlers down the MRO): not again.
        self.entries: list[MappingEntry] = []
        self.hints: Mapping[tuple[str, str], Sequence[str]] = {}
        self.editing: MappingEntry | None = None
        # The last IFS answer for a value: its check, or why IFS could not be asked.
        self.checked: tuple[str, ValueCheck | str] | None = None
        self._check_timer: Timer | None = None
        self.query_one("#mapping-editor").display = False
        self.table.focus()
        if self.console_app.engine is not None:
            self.refresh_data()

    def refresh_data(self) -> None:
        engine = self.console_app.engine
        if engine is None:
            return
        self.console_app.run_core(
            engine.mapping_view,
            on_done=self._loaded,
            label="mapping",
            exclusive=True,
        )

    def on_screen_resume(self) -> None:
        # ConsoleScreen.on_screen_resume runs too (handlers run down the MRO): not again.
        pre = self.console_app.mapping_preselect
        if pre is not None:
            self.console_app.mapping_preselect = None
            self._aim_at = pre[2] or "(any)"
            bar = self.query_one(FilterBar)
            bar.value = pre[1]
            bar.add_class("-active")
            bar.flush()

    def _loaded(self, view: MappingView) -> None:
        self.entries = list(view.entries)
        self.hints = view.hints
        self._render_entries()

    def _render_entries(self) -> None:
        flt = self.query_one(FilterBar).applied.lower()
        rows = [
            entry_row(e)
            for e in self.entries
            if not flt
            or flt in f"{e.policy_id} {e.label} {e.source} {e.default} {e.override}".lower()
        ]
        table = self.table
        table.source = ListSource(rows)
        table.reload()
        if self._aim_at and self.entries:
            # Opened from Missing dimensions (`m`): on the mapping of the group's policy, not
            # the first policy's row of the same value (which may hold none of its reports);
            # without one, on the row that affects the most reports.
            policy, self._aim_at = self._aim_at, None
            ranks = [(r.payload.policy_id == policy, r.payload.affects) for r in rows]
            if ranks:
                table.cursor_row = ranks.index(max(ranks))
        overrides = sum(1 for e in self.entries if e.override)
        text = Text(f"showing {len(rows):,} of {len(self.entries):,} mappings")
        text.append(f" · {overrides} overrides", style="bold" if overrides else GREY)
        self.query_one("#mapping-count", Label).update(text)

    @on(FilterBar.Applied)
    def _filter(self) -> None:
        self._render_entries()

    # ---- editing ----------------------------------------------------------------------------

    @on(VirtualTable.Opened, "#mapping-table")
    def _open(self, event: VirtualTable.Opened) -> None:
        self._edit(event.row.payload)

    def action_edit(self) -> None:
        row = self.table.cursor
        if row is not None:
            self._edit(row.payload)

    def _edit(self, entry: MappingEntry) -> None:
        if entry.configured_in:
            self.notify(
                f"The {entry.label} {entry.source!r} of {entry.policy_id} is set in config.toml"
                f" [posting] {entry.configured_in}: change it there. This screen edits"
                " category and tag mappings.",
                severity="warning",
            )
            return
        if not entry.code_part:
            self.notify(
                f"Tag level {entry.label!r} maps to no code part ([posting] "
                "code_part_by_tag_level): its values are not booked.",
                severity="warning",
            )
            return
        self.editing = entry
        title = Text("Edit ", style="bold")
        title.append_text(literal(f"{entry.label} '{entry.source}' of {entry.policy_id}", 80))
        title.append(f" → code part {entry.code_part} in company {entry.company or '?'}", GREY)
        title.append(f" · affects {entry.affects} pending reports")
        self.query_one("#editor-title", Label).update(title)
        field_ = self.query_one("#mapping-input", Input)
        values = self.hints.get((entry.company, entry.code_part), [])
        field_.suggester = SuggestFromList(values, case_sensitive=False)
        field_.value = entry.effective
        self.query_one("#mapping-editor").display = True
        field_.focus()
        self._schedule_check()

    @on(Input.Changed, "#mapping-input")
    def _typed(self) -> None:
        self._schedule_check()

    def _schedule_check(self) -> None:
        if self._check_timer is not None:
            self._check_timer.stop()
        self.query_one("#validation", Static).update(status_text("checking", "against IFS…"))
        self._check_timer = self.set_timer(0.25, self._check)

    def _check(self) -> None:
        entry = self.editing
        engine = self.console_app.engine
        value = self.query_one("#mapping-input", Input).value.strip()
        if entry is None or engine is None:
            return
        if not value:
            self.query_one("#validation", Static).update(status_text("missing", "empty value"))
            return
        dates = list(entry.dates) or [engine.today()]
        self.console_app.run_core(
            engine.check_value,
            entry.company,
            entry.code_part,
            value,
            dates,
            on_done=lambda check: self._checked(value, check),
            on_error=lambda exc: self._check_failed(value, exc),
            label="IFS check",
            group="value-check",
            exclusive=True,
        )

    def _checked(self, value: str, check: ValueCheck) -> None:
        if self.query_one("#mapping-input", Input).value.strip() != value:
            return  # an older answer; the newer check is on its way
        self.checked = (value, check)
        self.query_one("#validation", Static).update(_verdict(check))

    def _check_failed(self, value: str, exc: BaseException) -> None:
        self.checked = (value, f"IFS could not be asked whether {value} exists ({exc})")
        out = status_text("down", "IFS could not be asked: ")
        out.append_text(literal(str(exc), 200))
        self.query_one("#validation", Static).update(out)

    @on(Input.Submitted, "#mapping-input")
    def _save(self, event: Input.Submitted) -> None:
        entry = self.editing
        engine = self.console_app.engine
        value = event.value.strip()
        if entry is None or engine is None or not value:
            return
        why = self.why_not_saved(value)
        if why:
            # Refused where it is typed: the editor stays open with the value and the reason.
            self.notify(why, title="Not saved", severity="error", markup=False, timeout=10)
            out = status_text("missing", "not saved: ")
            out.append_text(literal(why, 200))
            self.query_one("#validation", Static).update(out)
            return
        checked = self.checked
        assert checked is not None and not isinstance(checked[1], str)  # why_not_saved: ""

        def confirmed(ok: bool | None) -> None:
            if not ok or self.editing is not entry:
                # Backed out: nothing saved, the editor keeps the value to change or drop.
                self.query_one("#mapping-input", Input).focus()
                return
            rule = MappingRule(entry.policy_id, entry.kind, entry.source, value)
            self._close_editor()
            self.console_app.run_core(
                engine.set_mapping,
                rule,
                on_done=lambda ids: self._saved(entry, value, ids),
                label="saving mapping",
            )

        self.app.push_screen(
            ConfirmModal(
                "Save this mapping change?", change_text(entry, value, checked[1]), "Save (y)"
            ),
            confirmed,
        )

    def why_not_saved(self, value: str) -> str:
        """Why `value` cannot be saved ("" when it can): IFS must have answered for exactly
        this value, and have it as a code part value of the company."""
        checked = self.checked
        if checked is None or checked[0] != value:
            return f"{value} is still being checked against IFS: press enter once it shows ✔"
        check = checked[1]
        if isinstance(check, str):
            return check
        if not check.exists:
            return f"{check.message}: add it in IFS first, or type a value IFS has"
        entry = self.editing
        if entry is not None and value == entry.effective:
            return f"{value} is the mapping already: type another value, or esc"
        return ""

    def _saved(self, entry: MappingEntry, value: str, affected: list[str]) -> None:
        self.notify(
            literal(
                f"{entry.label} '{entry.source}' → {value}; {len(affected)} reports re-evaluated",
                200,
            ).plain,
            title="Mapping saved",
            markup=False,
        )
        self.console_app.core_changed()

    def _close_editor(self) -> None:
        self.editing = None
        self.checked = None
        self.query_one("#mapping-editor").display = False
        self.table.focus()

    def action_back(self) -> None:
        if self.editing is not None:
            self._close_editor()
            return
        super().action_back()
