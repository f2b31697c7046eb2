"""Quitting the console never waits out a request limit: a screen's read that waits for a
slot in Expensify's window (the Close screen's card spend did, up to `max_wait_s`) is woken
when the app exits, sends nothing, and the app's engine is closed on the way out."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from console.config import load_settings, save_settings
from console.errors import Unreachable
from console.sim.demo import DEMO_EXPENSIFY_USER_ID
from tests.tui.test_screens import SIZE, settle


def one_request_a_minute(home: Path) -> None:
    loaded = load_settings()
    settings = loaded.settings.model_copy(deep=True)
    settings.expensify.limit_10s = 1
    settings.expensify.limit_60s = 1
    save_settings(settings, home / "config.toml")


async def test_quit_wakes_a_read_waiting_for_the_expensify_limit(tui_home, make_app) -> None:
    one_request_a_minute(tui_home)
    app = make_app()
    outcome: list[BaseException] = []
    done = threading.Event()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        limiter = app.engine.expensify.limiter_for(DEMO_EXPENSIFY_USER_ID)
        limiter.acquire()  # the minute's one request: the next waits for the window

        def waiting_read() -> None:
            try:
                limiter.acquire()
            except Unreachable as exc:
                outcome.append(exc)
            finally:
                done.set()

        app.run_core(waiting_read, label="a read waiting for its slot")
        await pilot.pause()
        app.exit()
    # Without the wake-up the read would take its slot after the minute, and no error.
    assert done.wait(timeout=30)
    assert outcome and "closing" in str(outcome[0]), outcome


def test_the_console_closes_its_engine_when_the_app_ends(monkeypatch: Any) -> None:
    """run_tui (what `ml-console` runs) closes the engine the app opened: its audit events
    get their signed checkpoint and the posting lock is released."""
    from screens import startup

    closed: list[bool] = []

    class OpenedEngine:
        def close(self) -> None:
            closed.append(True)

    class EndedApp:
        engine = OpenedEngine()

        def run(self) -> int:
            return 0

    monkeypatch.setattr(startup, "build_app", lambda args=None: EndedApp())
    assert startup.run_tui(None) == 0
    assert closed == [True]
