"""One meaning per key across the console, and every binding it declares.

KEYS: every key a screen binds and its one verb, so a key's footer label is its verb here and
nowhere else. BOUND: every binding of the console by id (the ids `[tui] keys` remaps), its
key and action; each screen declares `BINDINGS = bindings("<prefix>")`. tests/tui/test_keys.py
fails when a screen binds a key to another verb, declares a binding outside BOUND, or when the
README's tables are not `keys_markdown()` and `binding_ids_markdown()`. Dialogs (confirm,
reason, help) and the filter bar have their own small vocabulary (y, n, esc) and are not screens.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from textual.binding import Binding, BindingType


@dataclass(frozen=True)
class Key:
    key: str  # Textual's key name(s), comma-separated
    shown: str  # as the README and help show it
    verb: str  # the footer's label: the same on every screen
    means: str  # what it does, wherever it is bound


KEYS: dict[str, Key] = {
    k.key: k
    for k in (
        Key("1", "1", "Pending", "go to Pending: reports fetched and not yet posted"),
        Key("2", "2", "Mapping", "go to Mapping: Expensify coding → IFS code parts"),
        Key("3", "3", "Missing", "go to Missing dimensions: the hold queue"),
        Key("4", "4", "Dry run", "go to Dry run: the exact vouchers that would post"),
        Key("5", "5", "Audit", "go to Audit: the hash-chained event log"),
        Key("6", "6", "Close", "go to Close: the period's tie-out"),
        Key("s", "s", "Sync (posts nothing)", "fetch, map and check every report; posts nothing"),
        Key("question_mark,f1", "? / F1", "Help", "explain this screen: purpose, keys, colours"),
        Key("q", "q", "Quit", "leave the console"),
        Key("slash", "/", "Filter", "filter the list by anything its rows show"),
        Key("escape", "esc", "Back", "clear the filter, close the editor, or go back"),
        Key("enter", "⏎", "Open", "open the highlighted row (only where a row opens)"),
        Key("space", "space", "Mark", "mark or unmark the highlighted report"),
        Key("a", "a", "Mark all ready", "mark every ready report (that the filter shows)"),
        Key("u", "u", "Unmark all", "clear every mark"),
        Key("d", "d", "Dry run marked", "plan the marked reports (or all ready) on Dry run"),
        Key("p", "p", "Post…", "post to IFS what the screen names; asks first, shows what"),
        Key("c", "c", "Confirm change…", "reverse a report changed after posting; asks first"),
        Key("r", "r", "Refresh", "read again: re-plan, re-check against IFS, re-read the tie-out"),
        Key("x", "x", "Exclude…", "take the highlighted report out of posting (asks why)"),
        Key("i", "i", "Include again…", "undo an exclusion: the report is evaluated again"),
        Key("m", "m", "Remap", "open Mapping on the value that blocks the group"),
        Key("e", "e", "Edit", "edit the highlighted mapping (IFS checks it as you type)"),
        Key("w", "w", "Write CSV/JSON", "export what the screen shows to your home folder"),
        Key("v", "v", "Verify chain", "walk the audit log's hash chain"),
        Key("t", "t", "Timeline", "every audit event of the report, oldest first"),
        Key("b", "b", "Next chart", "switch the chart (account, cost centre, held, cards)"),
        Key("left_square_bracket", "[", "Prev period", "the period before (remembered)"),
        Key("right_square_bracket", "]", "Next period", "the period after (remembered)"),
        Key("tab", "tab", "Next pane", "move between the lists of the screen"),
        Key("up,k", "↑ / k", "Up", "move the cursor up"),
        Key("down,j", "↓ / j", "Down", "move the cursor down"),
        Key("pageup", "PgUp", "Page up", "one page up"),
        Key("pagedown", "PgDn", "Page down", "one page down"),
        Key("home,g", "Home / g", "Top", "the first row"),
        Key("end,G", "End / G", "Bottom", "the last row"),
        Key("ctrl+s", "ctrl+s", "Save", "save the setup (credentials go to the keyring)"),
        Key("ctrl+t", "ctrl+t", "Test connection", "try the connections with what is typed"),
        Key("ctrl+p", "ctrl+p", "Palette", "the command palette: every command of the screen"),
    )
}


def bind(key: str, action: str, id: str, *, show: bool = True) -> Binding:
    """The Binding of `key` with its one verb (KeyError: a key not in the table)."""
    return Binding(key, action, KEYS[key].verb, show=show, id=id)


@dataclass(frozen=True)
class Bound:
    """One binding the console declares; `id` is what `[tui] keys` remaps, so it never changes."""

    id: str  # "<prefix>.<name>": the prefix names the screen or widget that declares it
    key: str
    action: str
    show: bool = True  # in the footer
    verb: str = ""  # a dialog's own word for a key outside KEYS' one-verb vocabulary

    @property
    def binding(self) -> Binding:
        if self.verb:
            return Binding(self.key, self.action, self.verb, show=self.show, id=self.id)
        return bind(self.key, self.action, self.id, show=self.show)

    @property
    def means(self) -> str:
        """What it does: its own phrase in DOES, else its key's meaning."""
        return DOES.get(self.id) or KEYS[self.key].means


# The screens, each on its digit: (key, mode, title).
SCREEN_TABS = (
    ("1", "pending", "Pending"),
    ("2", "mapping", "Mapping"),
    ("3", "missing", "Missing dimensions"),
    ("4", "dryrun", "Dry run"),
    ("5", "audit", "Audit"),
    ("6", "close", "Close"),
)


# What a binding does, where that says more than its key's `means` in KEYS.
DOES: dict[str, str] = {
    "screen.back": "clear the filter, or close Mapping's editor",
    "detail.back": "back to the list",
    "missing.recheck": "check the held reports against IFS again",
    "missing.replay": "post a ready group's reports (re-checked against IFS); asks first",
    "dryrun.confirm": "post exactly this plan; asks first",
    "dryrun.replan": "plan again, reading IFS's values and the accruals due afresh",
    "audit.replay": "re-check the event's report against IFS, post it if valid; asks first",
    "timeline.back": "back to where it was opened",
    "timeline.replay": "re-check the report against IFS, post it if valid; asks first",
    "close.reload": "read the tie-out again from Expensify and IFS",
    "close.post_card_accrual": "post the period's card spend accrual; shows it, asks first",
    "setup.cancel": "leave the setup without saving",
    "filter.clear": "clear the filter and close it",
    "filter.keep": "keep the filter and go back to the list",
    "confirm.yes": "do what the dialog asks",
    "confirm.no": "cancel: nothing is done",
    "reason.cancel": "cancel: nothing is done",
    "help.close": "close the help",
}


# In each prefix's order, the footer's order on its screen.
BOUND: dict[str, Bound] = {
    b.id: b
    for b in (
        # the app: on every screen
        *(Bound(f"app.{mode}", key, f"goto('{mode}')", show=False) for key, mode, _ in SCREEN_TABS),
        Bound("app.sync", "s", "sync"),
        Bound("app.help", "question_mark,f1", "help"),
        Bound("app.quit", "q", "quit"),
        # every top-level screen (Pending, Mapping, Missing, Dry run, Audit)
        Bound("screen.filter", "slash", "open_filter"),
        Bound("screen.back", "escape", "back", show=False),
        # every list
        Bound("table.up", "up,k", "cursor(-1)", show=False),
        Bound("table.down", "down,j", "cursor(1)", show=False),
        Bound("table.page_up", "pageup", "page(-1)", show=False),
        Bound("table.page_down", "pagedown", "page(1)", show=False),
        Bound("table.top", "home,g", "jump(0)", show=False),
        Bound("table.bottom", "end,G", "jump(-1)", show=False),
        Bound("table.open", "enter", "open_row"),
        Bound("table.mark", "space", "toggle_mark"),
        # Pending
        Bound("pending.mark_ready", "a", "mark_ready"),
        Bound("pending.clear_marks", "u", "clear_marks"),
        Bound("pending.dry_run", "d", "dry_run"),
        Bound("pending.include", "i", "include"),
        # a report's lines, opened from Pending
        Bound("detail.back", "escape", "app.pop_screen"),
        Bound("detail.timeline", "t", "timeline"),
        # Mapping
        Bound("mapping.edit", "e", "edit"),
        # Missing dimensions
        Bound("missing.recheck", "r", "recheck"),
        Bound("missing.replay", "p", "replay_group"),
        Bound("missing.remap", "m", "remap"),
        Bound("missing.exclude", "x", "exclude"),
        Bound("missing.focus", "tab", "app.focus_next", show=False),
        # Dry run
        Bound("dryrun.confirm", "p", "confirm_post"),
        Bound("dryrun.confirm_change", "c", "confirm_change"),
        Bound("dryrun.export", "w", "export"),
        Bound("dryrun.replan", "r", "replan"),
        # Audit
        Bound("audit.verify", "v", "verify"),
        Bound("audit.replay", "p", "replay"),
        # a report's timeline, opened from Audit or a report's lines
        Bound("timeline.back", "escape", "app.pop_screen"),
        Bound("timeline.replay", "p", "replay"),
        # Close
        Bound("close.prev_period", "left_square_bracket", "period(-1)"),
        Bound("close.next_period", "right_square_bracket", "period(1)"),
        Bound("close.reload", "r", "reload"),
        Bound("close.chart", "b", "chart"),
        Bound("close.post_card_accrual", "p", "post_cards"),
        # Setup
        Bound("setup.save", "ctrl+s", "save"),
        Bound("setup.test", "ctrl+t", "test"),
        Bound("setup.cancel", "escape", "cancel"),
        # the filter bar, while it has the keys
        Bound("filter.clear", "escape", "clear_filter", verb="Clear filter"),
        Bound("filter.keep", "enter", "keep_filter", show=False, verb="Keep filter"),
        # the dialogs
        Bound("confirm.yes", "y", "answer(True)", verb="Yes"),
        Bound("confirm.no", "n,escape", "answer(False)", verb="No"),
        Bound("reason.cancel", "escape", "cancel", verb="Cancel"),
        Bound("help.close", "escape,q,question_mark,f1", "close", verb="Close"),
    )
}


def bindings(prefix: str) -> list[BindingType]:
    """The BINDINGS of the screen or widget whose ids start with `prefix.`, in table order."""
    return [b.binding for b in BOUND.values() if b.id.split(".")[0] == prefix]


def unknown_ids(keymap: Iterable[str]) -> list[str]:
    """The ids of a keymap that name no binding (a typo in `[tui] keys`)."""
    return [id for id in keymap if id not in BOUND]


# Each key of a Textual key list, as the README shows it: "question_mark" -> "?".
_SHOWN = {
    part: shown
    for k in KEYS.values()
    for part, shown in zip(k.key.split(","), k.shown.split(" / "), strict=True)
}


def shown(key: str) -> str:
    """A Textual key list as the README and help show it: "escape,q" -> "esc / q"."""
    return " / ".join(_SHOWN.get(part, part) for part in key.split(","))


def keys_markdown() -> str:
    """The README's "Keys" table."""
    lines = ["| Key | Verb | What it does |", "|---|---|---|"]
    for k in KEYS.values():
        lines.append(f"| `{k.shown}` | {k.verb} | {k.means} |")
    return "\n".join(lines) + "\n"


def binding_ids_markdown() -> str:
    """The README's "Binding ids" table: what `[tui] keys` can remap."""
    lines = ["| Id | Key | What it does |", "|---|---|---|"]
    for b in BOUND.values():
        lines.append(f"| `{b.id}` | `{shown(b.key)}` | {b.means} |")
    return "\n".join(lines) + "\n"
