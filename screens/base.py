"""What every screen shares: the status header, the screen tabs, `/` filter, esc, help, and a
command palette provider that offers the current screen's own commands."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from screens.keys import SCREEN_TABS, bindings
from screens.literal import literal, sanitize
from screens.theme import GREY, ORANGE, SKY, VERMILLION, status_text
from screens.vtable import VirtualTable
from screens.widgets import ConfirmModal, FilterBar, ReasonModal

if TYPE_CHECKING:
    from console.flows.cycle import Engine
    from screens.protocols import ConsoleApp

T = TypeVar("T")


def ago(then: datetime | None, now: datetime) -> str:
    """'3m ago', '2h 5m', '4d 2h' — how long something has waited, at a glance."""
    if then is None:
        return "never"
    if then.tzinfo is None and now.tzinfo is not None:
        then = then.replace(tzinfo=now.tzinfo)
    if now.tzinfo is None and then.tzinfo is not None:
        now = now.replace(tzinfo=then.tzinfo)
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def console_app(node: DOMNode) -> ConsoleApp:
    """The running app as screens see it: MlConsoleApp through its ConsoleApp Protocol
    (screens/protocols.py), so no screen imports screens/app.py."""
    return cast("ConsoleApp", node.app)


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    """Reads a field from a dataclass/pydantic object or a dict."""
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


class StatusHeader(Static):
    """Environment, both services, token, rate budget and the last sync, from Engine.status()."""

    HELP = (
        "The environment (demo or the IFS tenant), whether each service answered its last "
        "request, when the IFS token is refreshed, how much of the IFS rate budget is in use, "
        "and what the last sync did. Refreshed every few seconds."
    )

    DEFAULT_CSS = """
    StatusHeader { dock: top; height: 2; background: $panel; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "status_version", self._redraw)
        self.watch(self.app, "sync_progress", self._redraw)

    def _redraw(self, _: object = None) -> None:
        app = console_app(self)
        self.update(
            render_header(
                app.engine_status,
                app.clock(),
                app.sync_progress,
                app.current_mode,
                app.environment_name,
            )
        )


def _service_text(name: str, state: Any) -> Text:
    raw = str(_get(state, "state", "status", default=state) or "unknown").lower()
    message = str(_get(state, "message", default="") or "").lower()
    if raw in {"ok", "up", "connected"}:
        key = "connected"
    elif raw == "error" and ("refused" in message or "auth" in message):
        key = "auth"
    elif raw in {"error", "down", "unreachable"}:
        key = "down"
    else:
        key = "idle"
    out = Text(f"{name} ", style="bold")
    out.append_text(status_text(key))
    return out


def render_header(status: Any, now: datetime, progress: str, mode: str, environment: str) -> Text:
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(" ml-console ", style=f"bold reverse {SKY}")
    env = _get(status, "environment", default=None) or environment or "…"
    line.append(" env ")
    line.append_text(literal(env, 30, style="bold"))
    as_of = _get(status, "as_of", default=None)
    if as_of:  # the operator chose another day: say so on every screen
        line.append("  │ ")
        line.append(f"as of {as_of}", style=f"bold {ORANGE}")
    services = _get(status, "services", "connections", default=None) or {}
    for label, key in (("Expensify", "expensify"), ("IFS", "ifs")):
        line.append("  │ ")
        line.append_text(_service_text(label, _get(services, key, default="idle")))
    token = _get(status, "ifs_token_refresh_s", default=None)
    line.append("  │ token ")
    if token is None:
        line.append("—", style=GREY)
    else:
        m, s = divmod(max(0, int(token)), 60)
        line.append(f"{m}:{s:02d}", style=ORANGE if token < 120 else "")
    rate = _get(status, "rate_budget_in_use", default=None)
    line.append("  │ rate ")
    if rate is None:
        line.append("—", style=GREY)
    else:
        pct = float(rate) * 100 if float(rate) <= 1 else float(rate)
        line.append(f"{pct:.0f}%", style=VERMILLION if pct >= 90 else ORANGE if pct >= 70 else "")
    line.append("\n")
    tabs = Text(no_wrap=True, overflow="ellipsis")
    for key, mode_name, title in SCREEN_TABS:
        style = f"bold reverse {SKY}" if mode_name == mode else ""
        tabs.append(f" {key} {title} ", style=style)
    tabs.append("  │ ")
    if progress:
        tabs.append(f"sync: {sanitize(progress)}", style=f"bold {ORANGE}")
    else:
        last = _get(status, "last_run", default=None)
        # A confirmed dry run is a run of its own: it posted, it did not sync.
        posted_review = _get(last, "mode", default="") == "post-reviewed" if last else False
        tabs.append("last post " if posted_review else "last sync ")
        if last is None:
            tabs.append("never", style=GREY)
        else:
            when = _get(last, "finished", "started", default=None)
            if isinstance(when, str):
                try:
                    when = datetime.fromisoformat(when)
                except ValueError:
                    when = None
            tabs.append(f"{ago(when, now)} ago" if when else "running")
            summary = _get(last, "summary", default=None) or {}
            what = " ".join(
                f"{k.replace('_', ' ')} {summary[k]}"
                for k in ("fetched", "posted", "failed")
                if isinstance(summary, dict)
                and k in summary
                and not (posted_review and k == "fetched")
            )
            if isinstance(summary, dict) and summary.get("error"):
                what += f" · error: {summary['error']}"
            if what:
                tabs.append(" · ")
                tabs.append_text(literal(what, 70))
    # What the store holds now (refreshed after every write), not what the last sync saw.
    counts = _get(status, "counts", default=None) or {}
    if isinstance(counts, dict) and counts:
        tabs.append("  │ now ")
        tabs.append(f"ready {counts.get('ready', 0)}", style=SKY)
        tabs.append(f" held {counts.get('held', 0)}", style=ORANGE if counts.get("held") else "")
        if counts.get("failed"):
            tabs.append(f" failed {counts['failed']}", style=VERMILLION)
    line.append_text(tabs)
    return line


class CommandList(Provider):
    """A palette provider over a list of (name, help, callback): subclasses give the list."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        return []

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


class ScreenCommands(CommandList):
    """The palette offers the commands of the screen it was opened on."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        screen = self.screen
        if isinstance(screen, ConsoleScreen):
            return list(screen.palette_commands())
        return []


@dataclass(frozen=True)
class ListTop:
    """What a list screen shows above its list."""

    title: str
    filter_hint: str
    count_id: str  # the label that counts what the list shows
    count_text: str = ""  # until the first count
    filter_id: str | None = None


class ConsoleScreen(Screen[None]):
    """A top-level screen (one per mode). Subclasses set TITLE, HELP, TOP and compose the
    body; their BINDINGS add to these (Textual merges a screen's BINDINGS with its bases')."""

    TITLE: ClassVar[str] = ""
    MODE: ClassVar[str] = ""
    HELP: ClassVar[str] = ""
    LIST_ID: ClassVar[str] = ""  # the screen's main list: it has the focus after filtering
    TOP: ClassVar[ListTop]
    COMMANDS = {ScreenCommands}

    BINDINGS: ClassVar[list[BindingType]] = bindings("screen")

    @property
    def console_app(self) -> ConsoleApp:
        return console_app(self)

    def compose(self) -> ComposeResult:
        """The status header, the screen's title, its filter bar (shown by `/`) and the line
        that counts what the list below shows (TOP); then the screen's body and the footer."""
        yield StatusHeader(id="status-header")
        yield Label(self.TOP.title, classes="screen-title")
        yield FilterBar(self.TOP.filter_hint, id=self.TOP.filter_id, list_id=self.LIST_ID)
        yield Label(self.TOP.count_text, id=self.TOP.count_id, classes="count-label")
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        """The screen's list and what stands beside it."""
        raise NotImplementedError

    @property
    def table(self) -> VirtualTable:
        return self.query_one(f"#{self.LIST_ID}", VirtualTable)

    @on(FilterBar.Done)
    def _filter_done(self) -> None:
        self.table.focus()

    def on_mount(self) -> None:
        self.watch(self.app, "data_version", self._data_changed, init=False)

    def _data_changed(self, _: object = None) -> None:
        self.refresh_if_open()

    def on_screen_resume(self) -> None:
        header = self.query(StatusHeader)
        if header:
            header.first()._redraw()
        self.refresh_if_open()

    def refresh_if_open(self) -> None:
        """Reloads what the screen shows, once the engine is open (before setup finishes
        there is nothing to read)."""
        if self.console_app.engine is not None:
            self.refresh_data()

    def refresh_data(self) -> None:
        """Reloads what the screen shows from the store (the engine is open)."""

    def action_open_filter(self) -> None:
        bars = self.query(FilterBar)
        if bars:
            bars.first().open()
        else:
            self.notify("This screen has no list to filter.", severity="warning")

    def action_back(self) -> None:
        """esc backs out: of the filter, then of a drill-down; top-level screens stay."""
        for bar in self.query(FilterBar):
            if bar.value:
                bar.action_clear_filter()
                return

    def change_report_with_reason(
        self,
        report_id: str,
        ask: ReasonModal,
        confirm: Callable[[str], ConfirmModal],
        change: Callable[[str, str], object],
        *,
        label: str,
        done: Callable[[str], object],
    ) -> None:
        """Asks why (for the audit trail), then to confirm with the reason shown; only then
        runs `change(report_id, reason)` in a worker, and `done(report_id)` after it."""

        def with_reason(reason: str | None) -> None:
            if not reason:
                return

            def confirmed(ok: bool | None) -> None:
                if ok:
                    self.console_app.run_core(
                        change, report_id, reason, on_done=lambda _: done(report_id), label=label
                    )

            self.app.push_screen(confirm(reason), confirmed)

        self.app.push_screen(ask, with_reason)

    def palette_commands(self) -> Iterable[tuple[str, str, Callable[[], Any]]]:
        """(name, help, callback) for the command palette: the screen's shown bindings,
        ConsoleScreen's first (in the order Textual merges them)."""
        for cls in reversed(type(self).__mro__):
            if not issubclass(cls, ConsoleScreen):
                continue
            for binding in vars(cls).get("BINDINGS", ()):
                if isinstance(binding, Binding) and binding.show and binding.description:
                    yield (
                        f"{self.TITLE}: {binding.description}",
                        f"key {binding.key}",
                        partial(self.run_action, binding.action),
                    )


class ReportDrillDown(Screen[None], Generic[T]):
    """One report seen from a top-level screen (its lines, its timeline): a title, a body with
    one table, read in a worker (`_load` there, `_show` here) and read again after any write
    (a post, a replay, an exclusion, a remap), never stale."""

    # {report_id} is filled in: the screen's title, its worker's label; and its table's id.
    HEADING: ClassVar[str] = ""
    LOAD_LABEL: ClassVar[str] = ""
    TABLE_ID: ClassVar[str] = ""

    def __init__(self, report_id: str) -> None:
        super().__init__()
        self.report_id = report_id

    def compose_body(self) -> ComposeResult:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        heading = self.HEADING.format(report_id=self.report_id)
        yield Label(literal(heading, 80), classes="screen-title")
        yield from self.compose_body()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(f"#{self.TABLE_ID}", VirtualTable).focus()
        self.watch(self.app, "data_version", self._reload, init=False)
        self._reload()

    def _reload(self, _: object = None) -> None:
        app = console_app(self)
        if app.engine is not None:
            label = self.LOAD_LABEL.format(report_id=self.report_id)
            app.run_core(self._load, app.engine, on_done=self._show, label=label)

    def _load(self, engine: Engine) -> T:
        raise NotImplementedError

    def _show(self, loaded: T) -> None:
        raise NotImplementedError
