"""How the console opens its Engine: the same one `--auto` uses. Apart from screens/startup.py so
the setup screen can open the engine after a first run without importing the app."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from console.flows.cycle import Engine
    from screens.protocols import EngineOpener


def engine_opener(actor: str | None = None) -> EngineOpener:
    """Opens the same Engine `--auto` uses (in a worker: it reads files and the keyring)."""

    def open_engine() -> Engine:
        from console.flows.cycle import Engine

        return Engine.open(actor=actor)

    return open_engine
