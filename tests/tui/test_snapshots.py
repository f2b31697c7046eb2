"""One deterministic SVG snapshot per screen: fixed size, fixed clock (store and app), fixed
token and rate figures, no notifications, real simulators behind it."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest

from tests.tui.conftest import fixed_clock
from tests.tui.test_screens import settle

SIZE = (160, 48)


@pytest.fixture
def frozen_engine(tui_home: Any) -> Any:
    from console.audit_keys import KEY_ENTRY
    from console.config import load_settings
    from console.flows.cycle import Engine
    from console.secrets import KEYRING_SERVICE, SecretStore
    from console.store import Store

    loaded = load_settings()
    loaded.paths.ensure_dirs()
    store = Store(loaded.paths.state_file, clock=fixed_clock)
    secrets = SecretStore()
    # A fixed audit signing key: the checkpoint's hash (shown on the Audit screen) is fixed too.
    secrets.backend.set_password(
        KEYRING_SERVICE,
        KEY_ENTRY,
        json.dumps({"algorithm": "Ed25519", "private_key": base64.b64encode(b"k" * 32).decode()}),
    )
    engine = Engine(loaded.settings, store, secrets, actor="tester", clock=fixed_clock)
    real_status = engine.status

    def status() -> Any:
        return dataclasses.replace(
            real_status(), ifs_token_refresh_s=3540.0, rate_budget_in_use=0.12
        )

    engine.status = status  # type: ignore[method-assign]
    yield engine
    engine.close()


def _app(frozen_engine: Any) -> Any:
    from screens.startup import build_app

    return build_app(None, engine=frozen_engine, clock=fixed_clock, status_interval=None)


@pytest.mark.parametrize("key", ["1", "2", "3", "4", "5"])
def test_screen_snapshot(key: str, frozen_engine: Any, snap_compare: Any) -> None:
    app = _app(frozen_engine)

    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        frozen_engine.fetch()
        frozen_engine.evaluate()
        pilot.app.core_changed()
        await settle(pilot)
        await pilot.press(key)
        await settle(pilot, 6)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


# Every main screen at the two sizes operators use: 80x24 (columns drop by priority, amounts
# stay whole) and 160x45.
@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
@pytest.mark.parametrize("key", ["1", "3", "4", "5", "6"])
def test_screen_at_size(key: str, size: tuple[int, int], frozen_engine: Any, snap_compare: Any):
    app = _app(frozen_engine)

    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        frozen_engine.fetch()
        frozen_engine.evaluate()
        pilot.app.core_changed()
        await settle(pilot)
        await pilot.press(key)
        await settle(pilot, 8)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)
