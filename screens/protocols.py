"""What the screens need from the app, as a Protocol, so that no screen imports screens/app.py.

`screens.app.MlConsoleApp` imports every screen (its modes); a screen that imported the app
back closed an import circle through the whole package. Screens type the running app as
`ConsoleApp` instead (ConsoleScreen.console_app), and import-linter forbids any screen module
from importing screens.app (pyproject.toml). screens/app.py checks statically that
MlConsoleApp is a ConsoleApp.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from textual.worker import Worker

    from console.config import Settings
    from console.flows.cycle import CycleSummary, Engine, EngineStatus

R = TypeVar("R")

EngineOpener = Callable[[], "Engine"]
"""Opens the Engine (in a worker: it reads files and the keyring)."""


class ConsoleApp(Protocol):
    """The running console app as the screens use it."""

    engine: Engine | None
    settings: Settings | None
    clock: Callable[[], datetime]
    engine_status: EngineStatus | None
    environment_name: str
    sync_progress: str
    dry_run_selection: list[str] | None
    mapping_preselect: tuple[str, str] | None

    @property
    def current_mode(self) -> str: ...

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
        """A blocking core call in a thread; its typed result comes back on the UI thread."""
        ...

    def core_changed(self) -> None:
        """The store changed (sync, post, mapping, exclude): screens reload."""
        ...

    def cycle_done(self, summary: CycleSummary) -> None:
        """A sync or replay worker finished: the app reports it (CycleDone)."""
        ...

    def cycle_failed(self, error: BaseException) -> None:
        """A sync or replay worker raised: the app reports it (CycleFailed)."""
        ...

    def action_goto(self, mode: str) -> None: ...

    def apply_keymap(self) -> None: ...

    def open_engine(self, opener: EngineOpener | None = None) -> None: ...
