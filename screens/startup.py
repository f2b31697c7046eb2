"""From the command line to a running app: settings, keyring, and the engine opener.

The top of the TUI: `ml-console` (console/cli.py, console/demo.py) calls run_tui here; this
module builds MlConsoleApp, which nothing else in screens/ imports."""

from __future__ import annotations

import argparse
from typing import Any

from screens.app import MlConsoleApp
from screens.opener import engine_opener

__all__ = ["build_app", "engine_opener", "needs_setup", "run_tui"]


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
        # The engine records on the console's clock: a fixed clock fixes the timeline too.
        "engine_opener": engine_opener(clock=overrides.get("clock")),
        "needs_setup": setup_first,
        "environment_name": environment,
        "sync_on_open": True,
    }
    options.update(overrides)
    return MlConsoleApp(**options)


def run_tui(args: argparse.Namespace | None = None) -> int:
    """Opens the console on the configured systems (the setup screen on first run)."""
    app = build_app(args)
    try:
        result = app.run()
    finally:
        # The engine the app opened: its audit events end with a signed checkpoint, its
        # posting lock and state file are released (workers were woken on exit).
        if app.engine is not None:
            app.engine.close()
    return int(result or 0)
