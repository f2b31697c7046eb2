"""From the command line to a running app: settings, keyring, and the engine opener."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from screens.app import MlConsoleApp


def engine_opener(actor: str | None = None) -> Callable[[], Any]:
    """Opens the same Engine `--auto` uses (in a worker: it reads files and the keyring)."""

    def open_engine() -> Any:
        from console.sync import Engine

        return Engine.open(actor=actor)

    return open_engine


def needs_setup() -> tuple[Any, bool]:
    """(settings or None, whether the setup screen must come first)."""
    from console.config import load_settings
    from console.errors import ConfigError

    try:
        loaded = load_settings()
    except ConfigError:
        return None, True  # a broken config: setup shows it and writes a good one
    if not loaded.exists:
        return loaded.settings, True
    try:
        from console.secrets import SecretStore

        secrets = SecretStore()
        missing = not (secrets.has("expensify") and secrets.has("ifs"))
    except ConfigError:
        missing = True
    return loaded.settings, missing


def build_app(args: argparse.Namespace | None = None, **overrides: Any) -> MlConsoleApp:
    settings, setup_first = needs_setup()
    environment = ""
    if settings is not None:
        environment = settings.environment or settings.ifs.tenant_name or settings.ifs.url
    options: dict[str, Any] = {
        "settings": settings,
        "engine_opener": engine_opener(),
        "needs_setup": setup_first,
        "environment_name": environment,
        "sync_on_open": True,
    }
    options.update(overrides)
    return MlConsoleApp(**options)
