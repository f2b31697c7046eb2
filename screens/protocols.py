"""What the screens need from the app, as the app's base class, so that no screen imports
screens/app.py.

`screens.app.MlConsoleApp` imports every screen (its modes); a screen that imported the app
back closed an import circle through the whole package. Screens type the running app as
`ConsoleApp` instead (ConsoleScreen.console_app): MlConsoleApp builds on it, so the two cannot
drift apart. import-linter forbids any screen module from importing screens.app
(pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from textual.app import App
from textual.reactive import reactive

from screens.literal import sanitize

if TYPE_CHECKING:
    from textual.worker import Worker

    from console.config import Settings
    from console.flows.cycle import CycleSummary, Engine, EngineStatus

R = TypeVar("R")

EngineOpener = Callable[[], "Engine"]
"""Opens the Engine (in a worker: it reads files and the keyring)."""


class ConsoleApp(App[int]):
    """The running console app as the screens use it: what they read and watch, the worker
    that runs a core call, and what MlConsoleApp does for them (the methods it overrides)."""

    engine: Engine | None
    settings: Settings | None
    clock: Callable[[], datetime]
    engine_status: EngineStatus | None
    environment_name: str
    dry_run_selection: list[str] | None
    mapping_preselect: tuple[str, str, str] | None

    status_version: reactive[int] = reactive(0)
    data_version: reactive[int] = reactive(0)
    sync_progress: reactive[str] = reactive("")

    def run_core(
        self,
        fn: Callable[..., R],
        *args: Any,
        on_done: Callable[[R], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
        label: str = "",
        group: str | None = None,
        exclusive: bool = False,
        **kwargs: Any,
    ) -> Worker[None]:
        """Runs a blocking core call in a thread; the result (or the error) comes back on the
        UI thread, typed as `fn` returns it: to `on_done`, which usually posts it as the
        message of its kind (screens/messages.py). Errors become notifications (or go to
        `on_error`), never a crash."""

        def job() -> None:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                self.call_from_thread(self._core_failed, label, exc, on_error)
                return
            if on_done is not None:
                self.call_from_thread(on_done, result)

        return self.run_worker(
            job,
            thread=True,
            group=group or label or "core",
            exclusive=exclusive,
            exit_on_error=False,
            description=label,
        )

    def _core_failed(
        self, label: str, exc: BaseException, on_error: Callable[[BaseException], object] | None
    ) -> None:
        if on_error is not None:
            on_error(exc)
            return
        self.notify(
            sanitize(f"{label}: {exc}" if label else str(exc)),
            title=type(exc).__name__,
            severity="error",
            timeout=10,
            markup=False,
        )

    def core_changed(self) -> None:
        """The store changed (sync, post, mapping, exclude): screens reload."""
        raise NotImplementedError

    def cycle_done(self, summary: CycleSummary) -> None:
        """A sync or replay worker finished: the app reports it (CycleDone)."""
        raise NotImplementedError

    def cycle_failed(self, error: BaseException) -> None:
        """A sync or replay worker raised: the app reports it (CycleFailed)."""
        raise NotImplementedError

    def action_goto(self, mode: str) -> None:
        raise NotImplementedError

    def apply_keymap(self) -> None:
        raise NotImplementedError

    def open_engine(self, opener: EngineOpener | None = None) -> None:
        raise NotImplementedError
