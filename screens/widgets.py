"""Small widgets shared by the screens: the filter bar, the confirm and reason modals, help."""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from rich.table import Table
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, ScrollableContainer, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Static

from screens.keys import bindings
from screens.literal import literal

W = TypeVar("W", bound=Widget)
A = TypeVar("A")


class ControlMessage(Message, Generic[W]):
    """A message about one widget: `control` names it, so `@on(Message, "#id")` selects it."""

    def __init__(self, widget: W) -> None:
        super().__init__()
        self.widget = widget

    @property
    def control(self) -> W:
        return self.widget


class FilterBar(Input):
    """`/` opens it; typing filters the list below (debounced); esc clears and closes it."""

    HELP = (
        "Type to filter the list: words are matched against every column the screen offers "
        "(IDs, names, status…). Enter keeps the filter and returns to the list; esc clears it."
    )

    BINDINGS: ClassVar[list[BindingType]] = bindings("filter")

    DEFAULT_CSS = """
    FilterBar { display: none; height: 3; border: tall $accent; }
    FilterBar.-active { display: block; }
    """

    class Applied(ControlMessage["FilterBar"]):
        def __init__(self, bar: FilterBar, text: str) -> None:
            super().__init__(bar)
            self.text = text

    class Done(ControlMessage["FilterBar"]):
        """Focus goes back to the list."""

    # The actions after which the list has the focus again.
    _BACK_TO_LIST = frozenset({"keep_filter", "clear_filter"})

    def __init__(
        self, placeholder: str = "filter…", *, id: str | None = None, list_id: str = ""
    ) -> None:
        """`list_id`: the list below, which gets the focus back after enter or esc."""
        super().__init__(placeholder=placeholder, id=id)
        self._debounce: Timer | None = None
        self.applied = ""
        self.list_id = list_id

    async def _on_key(self, event: events.Key) -> None:
        # Keys typed in one go reach the bar before it has handled the enter among them (the
        # app hands each key to the widget focused when it arrives). So enter and esc act
        # here, at once, and a key queued behind them goes on to the list they focused.
        focused = self.screen.focused
        if focused is not None and focused is not self:
            event.stop()
            event.prevent_default()
            again = events.Key(event.key, event.character)
            again.set_sender(self.app)
            # Through the screen's queue: behind the filter it applies (_emit), so the key
            # moves the cursor in the filtered list, not in the one about to be replaced.
            # Handed over as the app hands a key to the focused widget (_forward_event).
            self.screen.call_later(focused._forward_event, again)
            return
        bound = {b.action for b in self._bindings.key_to_bindings.get(event.key, ())}
        action = next(iter(bound & self._BACK_TO_LIST), None)
        if action is not None:
            event.stop()
            event.prevent_default()
            await self.run_action(action)

    def _focus_list(self) -> None:
        """Give the list the focus now, not when a message about it arrives."""
        if self.list_id:
            found = self.screen.query(f"#{self.list_id}")
            if found:
                self.screen.set_focus(found.first())

    def open(self) -> None:
        self.add_class("-active")
        self.focus()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(0.15, self._emit)

    def _emit(self) -> None:
        if self.value != self.applied:
            self.applied = self.value
            # Straight to the screen (which filters its list), not bubbling up through the
            # bar's parents: a key forwarded to the list after it (_on_key) comes after it.
            self.screen.post_message(self.Applied(self, self.value))

    def flush(self) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._emit()

    def action_clear_filter(self) -> None:
        self.value = ""
        self.flush()
        self.remove_class("-active")
        self._focus_list()
        self.post_message(self.Done(self))

    def action_keep_filter(self) -> None:
        self.flush()
        if not self.value:
            self.remove_class("-active")
        self._focus_list()
        self.post_message(self.Done(self))


class Dialog(ModalScreen[A]):
    """A modal with a title and its text (the question, the prompt, the help)."""

    def __init__(self, title: str, text: str | Text, *, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self._title = title
        self._text = text if isinstance(text, Text) else Text(text)


class ConfirmModal(Dialog[bool]):
    """Destructive or irreversible actions ask first: `y` confirms, `n`/esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = bindings("confirm")

    DEFAULT_CSS = """
    ConfirmModal { align: center middle; }
    ConfirmModal > Vertical { width: 80; height: auto; max-height: 80%;
        border: thick $warning; background: $surface; padding: 1 2; }
    ConfirmModal #confirm-title { text-style: bold; color: $warning; }
    ConfirmModal #confirm-body { margin: 1 0; }
    ConfirmModal Horizontal { height: auto; align-horizontal: right; }
    ConfirmModal Button { margin-left: 2; }
    ConfirmModal.-wide > Vertical { width: 96%; }
    ConfirmModal.-wide #confirm-body { width: auto; }
    """

    def __init__(
        self,
        title: str,
        body: str | Text,
        confirm_label: str = "Yes (y)",
        *,
        wide: bool = False,
    ) -> None:
        """`wide`: the body is a table (a voucher's rows): nearly the screen's width, lines
        kept whole and scrolled sideways rather than wrapped."""
        super().__init__(title, body, classes="-wide" if wide else None)
        self._confirm_label = confirm_label
        self._wide = wide

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(literal(self._title, None), id="confirm-title")
            body = self._text
            if self._wide:
                body.no_wrap = True
            scroll = ScrollableContainer if self._wide else VerticalScroll
            with scroll(id="confirm-scroll"):
                yield Static(body, id="confirm-body")
            with Horizontal():
                yield Button("Cancel (n)", id="confirm-no")
                yield Button(self._confirm_label, variant="warning", id="confirm-yes")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ReasonModal(Dialog[str | None]):
    """Asks why (excluding a report needs a reason for the audit trail): the title, then the
    text as the prompt; esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = bindings("reason")

    DEFAULT_CSS = """
    ReasonModal { align: center middle; }
    ReasonModal > Vertical { width: 80; height: auto; border: thick $warning;
        background: $surface; padding: 1 2; }
    ReasonModal Label { margin-bottom: 1; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(self._title, style="bold"))
            yield Label(self._text)
            yield Input(placeholder="reason (required; enter to confirm)", id="reason-input")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        reason = event.value.strip()
        if not reason:
            self.notify("A reason is required.", severity="warning")
            return
        self.dismiss(reason)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpModal(Dialog[None]):
    """F1/?: what the focused widget is for, and every key that works here (with its binding
    id, to remap it in `[tui] keys`)."""

    BINDINGS: ClassVar[list[BindingType]] = bindings("help")

    DEFAULT_CSS = """
    HelpModal { align: center middle; }
    HelpModal > VerticalScroll { width: 120; max-width: 96%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 1 2; }
    """

    def __init__(
        self,
        title: str,
        help_text: str,
        keys: list[tuple[str, str, str]],
        colours: Text | None = None,
    ) -> None:
        super().__init__(title, help_text or "No help for this widget.")
        self._keys = keys
        self._colours = colours

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text(self._title, style="bold"))
            yield Static(self._text, classes="help-body")
            yield Static(Text("\nKeys here", style="bold"))
            # A grid, so a long description wraps in its own column; the id is what
            # `[tui] keys` remaps.
            keys = Table.grid(padding=(0, 2))
            keys.add_column(style="bold", no_wrap=True)
            keys.add_column(ratio=1)
            keys.add_column(style="dim", no_wrap=True)
            for key, description, id in self._keys:
                keys.add_row(key, description, id)
            yield Static(keys, classes="help-keys")
            if self._colours is not None:
                yield Static(self._colours, classes="help-colours")

    def action_close(self) -> None:
        self.dismiss(None)


def help_for(widget: Widget | None, screen_help: str) -> tuple[str, str]:
    """The focused widget's HELP (walking up to the first ancestor that has one)."""
    node = widget
    while node is not None:
        text = getattr(type(node), "HELP", None)
        if text:
            return type(node).__name__, str(text)
        parent = node.parent
        node = parent if isinstance(parent, Widget) else None
    return "This screen", screen_help


def colours_legend() -> Text:
    """What the colours and symbols of a status mean, for the help screen."""
    from screens.theme import STATUS

    meaning = {
        "ready": "checked against IFS, will post",
        "pending": "fetched, not checked yet",
        "held": "waits for a fix (the reason follows)",
        "posting": "being posted now",
        "failed": "IFS refused it",
        "posted": "in IFS as a voucher",
        "excluded": "taken out of posting",
        "unknown": "outcome unknown; settled on the next sync",
        "ok": "value valid in IFS",
        "missing": "value IFS does not have",
        "invalid": "value not valid on the voucher date",
    }
    out = Text("\nColours\n", style="bold")
    for name, what in meaning.items():
        out.append("  ")
        out.append_text(STATUS[name].text())
        out.append(f"  {what}\n")
    return out
