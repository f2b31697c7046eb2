"""One meaning per key across the console: every key a screen binds, and its one verb.

Every screen builds its BINDINGS with `bind()`, so a key's footer label is its verb here and
nowhere else; tests/tui/test_keys.py fails when a screen binds a key to another verb, and
when the README's "Keys" table is not `keys_markdown()`. Dialogs (confirm, reason, help) have
their own small vocabulary (y, n, esc) and are not screens.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


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


def keys_markdown() -> str:
    """The README's "Keys" table."""
    lines = ["| Key | Verb | What it does |", "|---|---|---|"]
    for k in KEYS.values():
        lines.append(f"| `{k.shown}` | {k.verb} | {k.means} |")
    return "\n".join(lines) + "\n"


def explain(key: str) -> str:
    """What `key` does, for the help screen ("" when the key is not in the table)."""
    found = KEYS.get(key)
    return found.means if found else ""
