"""The operator console: five screens over the sync core (the same Engine as `--auto`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from importlib.resources import files
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import BindingType
from textual.screen import Screen

from screens.base import CommandList
from screens.keys import BOUND, KEYS, SCREEN_TABS, bindings, shown, unknown_ids
from screens.literal import sanitize
from screens.messages import CycleDone, CycleFailed
from screens.protocols import ConsoleApp
from screens.theme import CONSOLE_THEME
from screens.widgets import HelpModal, colours_legend, help_for

if TYPE_CHECKING:
    from rich.console import RenderableType

    from console.config import Settings
    from console.flows.cycle import CycleSummary, Engine, EngineStatus
    from screens.protocols import EngineOpener


def _load_css() -> str:
    # Read through importlib.resources so an installed wheel finds its stylesheet too.
    return (files("styles") / "app.tcss").read_text(encoding="utf-8")


def _now() -> datetime:
    return datetime.now().astimezone()


class ConsoleCommands(CommandList):
    """App-wide palette entries: screens, sync, credentials, audit verification."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        app: MlConsoleApp = self.app  # type: ignore[assignment]
        out: list[tuple[str, str, Callable[[], Any]]] = [
            (f"Go to {title}", f"key {key}", partial(app.action_goto, mode))
            for key, mode, title in SCREEN_TABS
        ]
        out += [
            ("Sync now", "key s: fetch, evaluate and post what is ready", app.action_sync),
            ("Setup / rotate credentials", "URLs, IDs and secrets", app.action_setup),
        ]
        return out


def _modes() -> dict[str, Callable[[], Screen[Any]]]:
    from screens.audit import AuditScreen
    from screens.close import CloseTab
    from screens.dryrun import DryRunScreen
    from screens.mapping import MappingScreen
    from screens.missing import MissingScreen
    from screens.pending import PendingScreen

    return {
        "pending": PendingScreen,
        "mapping": MappingScreen,
        "missing": MissingScreen,
        "dryrun": DryRunScreen,
        "audit": AuditScreen,
        "close": CloseTab,
    }


class MlConsoleApp(ConsoleApp):
    TITLE = "ml-console"
    CSS = _load_css()
    ENABLE_COMMAND_PALETTE = True
    COMMAND_PALETTE_BINDING = "ctrl+p"
    COMMANDS = App.COMMANDS | {ConsoleCommands}

    BINDINGS: ClassVar[list[BindingType]] = bindings("app")

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        engine: Engine | None = None,
        engine_opener: EngineOpener | None = None,
        needs_setup: bool = False,
        clock: Callable[[], datetime] = _now,
        status_interval: float | None = 5.0,
        environment_name: str = "",
        sync_on_open: bool = False,
    ) -> None:
        super().__init__()
        self.sync_on_open = sync_on_open
        self.settings = settings
        self.engine: Engine | None = engine
        self._engine_opener = engine_opener
        self.needs_setup = needs_setup
        self.clock = clock
        self.status_interval = status_interval
        self.environment_name = environment_name
        self.engine_status: EngineStatus | None = None
        self.last_cycle: CycleSummary | None = None
        self.mapping_preselect: tuple[str, str, str] | None = None
        self.dry_run_selection: list[str] | None = None

    # ---- start-up ---------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.register_theme(CONSOLE_THEME)
        self.theme = CONSOLE_THEME.name
        self.apply_keymap()
        for mode, factory in _modes().items():
            self.add_mode(mode, factory)
        self.switch_mode("pending")
        if self.needs_setup or (self.engine is None and self._engine_opener is None):
            self.action_setup(first_run=True)
        elif self.engine is None:
            self.open_engine()
        else:
            self._engine_ready(self.engine)

    def apply_keymap(self) -> None:
        keys = getattr(getattr(self.settings, "tui", None), "keys", None) or {}
        unknown = unknown_ids(keys)
        if unknown:  # Textual ignores them: a typo would otherwise change nothing, silently
            self.notify(
                f"[tui] keys: no binding has the id {', '.join(map(repr, unknown))}; the ids"
                " are listed in the README under Remapping keys. Those keys are not remapped.",
                severity="warning",
                timeout=30,
                markup=False,
            )
        # Always: an emptied `[tui] keys` (saved from the setup) gives the defaults back now.
        self.set_keymap(dict(keys))

    def open_engine(self, opener: EngineOpener | None = None) -> None:
        opener = opener or self._engine_opener
        if opener is None:
            return
        self._engine_opener = opener
        self.run_core(opener, on_done=self._engine_ready, label="opening the engine")

    def _engine_ready(self, engine: Engine) -> None:
        self.engine = engine
        self.data_version += 1
        self.refresh_status()
        if self.status_interval:
            self.set_interval(self.status_interval, self.refresh_status, name="status")
        if self.sync_on_open:
            # Reading is free of side effects in both systems: show what is pending at once.
            self.action_sync()

    def exit(
        self,
        result: Any = None,
        return_code: int = 0,
        message: RenderableType | None = None,
    ) -> None:
        # A worker waiting for Expensify's request limit (a screen's read) would hold the
        # exit until its wait ends: wake it; it ends as Unreachable, nothing sent.
        if self.engine is not None:
            self.engine.interrupt()
        super().exit(result, return_code, message)

    # ---- core calls in workers (run_core: ConsoleApp) -------------------------------------------

    def refresh_status(self) -> None:
        if self.engine is None:
            return
        self.run_core(
            self.engine.status,
            on_done=self._status_arrived,
            on_error=lambda exc: None,
            label="status",
            exclusive=True,
        )

    def _status_arrived(self, status: EngineStatus) -> None:
        self.engine_status = status
        self.status_version += 1

    def core_changed(self) -> None:
        """Something in the store changed (sync, post, mapping, exclude): screens reload."""
        self.data_version += 1
        self.refresh_status()

    # ---- actions -------------------------------------------------------------------------------

    def action_goto(self, mode: str) -> None:
        if self.current_mode == mode:
            while len(self.screen_stack) > 1 and not hasattr(self.screen, "MODE"):
                self.pop_screen()
            return
        self.switch_mode(mode)
        self.status_version += 1

    def action_help(self) -> None:
        """F1/?: the screen's purpose, then the focused list's, every key that acts here (from
        the one key table, screens/keys.py) and what the colours mean."""
        screen = self.screen
        purpose = str(getattr(screen, "HELP", "") or "")
        _, widget_help = help_for(self.focused, "")
        text = purpose
        if widget_help and widget_help != purpose:
            text += ("\n\n" if text else "") + widget_help
        # By id, with the keys that act now: a key remapped in `[tui] keys` shows as remapped.
        found: dict[str, tuple[list[str], str]] = {}
        for key, active in screen.active_bindings.items():
            bound = BOUND.get(active.binding.id or "")
            if bound is not None and active.enabled:  # Textual's own keys are not the console's
                found.setdefault(bound.id, ([], active.binding.description))[0].append(key)
        rank = {key: i for i, key in enumerate(KEYS)}  # the README's order
        keys = [
            (shown(",".join(on)), f"{verb} — {BOUND[id].means}", id)
            for id, (on, verb) in sorted(
                found.items(), key=lambda item: rank.get(BOUND[item[0]].key, len(rank))
            )
        ]
        title = str(getattr(screen, "TITLE", "") or "") or "ml-console"
        self.push_screen(HelpModal(f"Help — {title}", text, keys, colours_legend()))

    def action_setup(self, first_run: bool = False) -> None:
        from screens.setup import SetupScreen

        self.push_screen(SetupScreen(first_run=first_run))

    def action_sync(self) -> None:
        if self.engine is None:
            self.notify("Not connected yet: finish setup first.", severity="warning")
            return
        if self.sync_progress:
            self.notify("A sync is already running.", severity="warning")
            return
        started = time.monotonic()
        stage = ["fetching from Expensify, then checking every report against IFS"]

        def show() -> None:
            if not self.sync_progress:
                return
            self.sync_progress = f"{stage[0]}… {int(time.monotonic() - started)}s elapsed"

        self.sync_progress = f"{stage[0]}… 0s elapsed"
        # The cycle reports nothing until it posts (and the console's sync posts nothing): a
        # ticker says it is alive and for how long, so the header never sits at "starting".
        ticker = self.set_interval(1.0, show, name="sync-progress")

        def progress(*parts: Any) -> None:
            stage[0] = " ".join(str(p) for p in parts if p is not None) or stage[0]
            self.call_from_thread(show)

        def finished(result: Any, handler: Callable[[Any], object]) -> None:
            ticker.stop()
            handler(result)

        # The console's sync reads and checks (fetch, map, validate, plan) and posts nothing:
        # posting is the operator's decision, taken on the Dry run screen after review.
        # Headless `--auto` is the unattended path that posts.
        self.run_core(
            self.engine.run_cycle,
            dry_run=True,
            progress=progress,
            on_done=partial(finished, handler=self.cycle_done),
            on_error=partial(finished, handler=self.cycle_failed),
            label="sync",
            exclusive=True,
        )

    def cycle_done(self, summary: CycleSummary) -> None:
        """A worker's cycle (sync, replay) finished: hand the summary back as CycleDone."""
        self.post_message(CycleDone(summary))

    def cycle_failed(self, error: BaseException) -> None:
        self.post_message(CycleFailed(error))

    def on_cycle_done(self, message: CycleDone) -> None:
        self.sync_progress = ""
        self.last_cycle = message.summary
        self.notify(sanitize(describe_cycle(message.summary)), title="Sync finished", markup=False)
        warnings = describe_warnings(message.summary)
        if warnings:
            # What needs a person beyond the counts (a posted report Expensify cannot export,
            # a policy the credentials cannot see): --auto prints these on stderr.
            self.notify(sanitize(warnings), title="Sync warnings", severity="warning", markup=False)
        self.core_changed()

    def on_cycle_failed(self, message: CycleFailed) -> None:
        self.sync_progress = ""
        self.notify(
            sanitize(str(message.error)), title="Sync failed", severity="error", markup=False
        )
        self.core_changed()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Setup", "Rotate credentials or change URLs", self.action_setup)


def describe_warnings(summary: CycleSummary, shown: int = 3) -> str:
    """A cycle's warnings, the first few in full ("" when there are none)."""
    warnings = list(getattr(summary, "warnings", None) or [])
    lines = [f"• {w}" for w in warnings[:shown]]
    if len(warnings) > shown:
        lines.append(f"… and {len(warnings) - shown} more (`ml-console --dry-run` lists them)")
    return "\n".join(lines)


def describe_cycle(summary: CycleSummary) -> str:
    """One line: what a cycle did ("fetched 12 · posted 9 · held 3 · failed 0")."""
    parts = []
    dry_run = getattr(summary, "dry_run", None)
    if dry_run is None and isinstance(summary, dict):
        dry_run = summary.get("dry_run")
    names: tuple[str, ...] = ("fetched", "posted", "already_posted", "held", "failed")
    if dry_run:
        names = ("fetched", "planned", "held", "failed")
    for name in names:
        value = getattr(summary, name, None)
        if value is None and isinstance(summary, dict):
            value = summary.get(name)
        if isinstance(value, list | tuple | set):
            value = len(value)
        if value is not None:
            parts.append(f"{name.replace('_', ' ')} {value}")
    text = " · ".join(parts) or "done"
    if dry_run:
        text += " — nothing posted; review and confirm on 4 Dry run"
    return text
