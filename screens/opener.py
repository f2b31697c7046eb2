"""How the console opens its Engine: the same one `--auto` uses. Apart from screens/startup.py so
the setup screen can open the engine after a first run without importing the app."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from console.flows.cycle import Engine
    from screens.protocols import EngineOpener


def engine_opener(
    actor: str | None = None, clock: Callable[[], datetime] | None = None
) -> EngineOpener:
    """Opens the same Engine `--auto` uses (in a worker: it reads files and the keyring).
    `clock`: the console's clock, so what the engine records (audit events, runs) and what
    the screens show of it are on one clock (the machine's unless a test fixes it)."""

    def open_engine() -> Engine:
        from console.flows.cycle import Engine

        return Engine.open(actor=actor, clock=clock)

    return open_engine
