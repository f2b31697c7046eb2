"""TUI fixtures: a throw-away home with config.toml and an isolated plaintext keyring pointing
at the real simulators (as `ml-console demo` sets itself up), and the app factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from console.sim.demo import (
    DEMO_EXPENSIFY_SECRET,
    DEMO_EXPENSIFY_USER_ID,
    DEMO_IFS_CLIENT_ID,
    DEMO_IFS_SECRET,
    DEMO_POSTING,
    DEMO_REALM,
)

FIXED_NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def fixed_clock() -> datetime:
    return FIXED_NOW


def write_home(
    home: Path,
    expensify_url: str,
    ifs_url: str,
    *,
    posting: dict[str, Any] | None = None,
    **sync: Any,
) -> None:
    """A home on simulators with their fast settings (no Expensify limits to pace to)."""
    from console.config import Settings, save_settings
    from console.secrets import SecretStore
    from tests.conftest import FAST_EXPENSIFY_LIMITS

    settings = Settings.model_validate(
        {
            "environment": "demo",
            "expensify": {
                "url": expensify_url,
                "approved_after": "2026-10-01",
                **FAST_EXPENSIFY_LIMITS,
            },
            "ifs": {"url": ifs_url, "realm": DEMO_REALM},
            "posting": {**DEMO_POSTING, **(posting or {})},
            "operator": {"name": "tester"},
            "sync": {"recheck_held_s": 3600, **sync},
        }
    )
    save_settings(settings, home / "config.toml")
    secrets = SecretStore()
    secrets.set_expensify(DEMO_EXPENSIFY_USER_ID, DEMO_EXPENSIFY_SECRET)
    secrets.set_ifs(DEMO_IFS_CLIENT_ID, DEMO_IFS_SECRET)


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ML_CONSOLE_HOME", str(home))
    monkeypatch.delenv("ML_CONSOLE_CONFIG", raising=False)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    (tmp_path / "user").mkdir()
    return home


@pytest.fixture
def tui_home(isolated_env: Path, small_sims: Any) -> Path:
    write_home(isolated_env, small_sims.expensify_url, small_sims.ifs_url)
    return isolated_env


@pytest.fixture
def make_app() -> Iterator[Callable[..., Any]]:
    """Builds the app exactly as `ml-console` does, with a fixed clock and no status timer."""
    apps: list[Any] = []

    def factory(**overrides: Any) -> Any:
        from screens.startup import build_app

        options: dict[str, Any] = {
            "clock": fixed_clock,
            "status_interval": None,
            "sync_on_open": False,
        }
        options.update(overrides)
        app = build_app(None, **options)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        engine = getattr(app, "engine", None)
        if engine is not None:
            engine.close()
