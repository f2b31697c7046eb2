"""Hostile Expensify text is shown literally; first run opens setup, which tests both
services with what is typed and saves config + keyring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from screens.literal import literal, sanitize
from tests.tui.test_screens import SIZE, settle


def test_markup_ansi_and_control_chars_are_shown_literally() -> None:
    text = literal("[bold]ACME[/bold] \x1b[31mred\x07\ttab\nnew", None)
    assert text.plain == "[bold]ACME[/bold] \\x1b[31mred\\x07 tab⏎new"
    assert text.spans == []  # no style came from the data


def test_long_merchants_are_cut_with_an_ellipsis_by_cell_width() -> None:
    assert literal("x" * 500, 20).plain == "x" * 19 + "…"
    assert literal("東京タクシー東京タクシー", 9).cell_len <= 9
    assert sanitize(None) == ""


async def test_first_run_setup_tests_connections_and_saves(
    isolated_env: Path, small_sims: Any, make_app: Any
) -> None:
    from console.sim.demo import (
        DEMO_EXPENSIFY_SECRET,
        DEMO_EXPENSIFY_USER_ID,
        DEMO_IFS_CLIENT_ID,
        DEMO_REALM,
    )
    from screens.setup import SetupScreen

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, SetupScreen)
        values = {
            "environment": "demo",
            "expensify_url": small_sims.expensify_url,
            "expensify_user": DEMO_EXPENSIFY_USER_ID,
            "expensify_secret": DEMO_EXPENSIFY_SECRET,
            "ifs_url": small_sims.ifs_url,
            "ifs_realm": DEMO_REALM,
            "ifs_client": DEMO_IFS_CLIENT_ID,
            "ifs_secret": "wrong-secret",
            "companies": "POL-US=10, POL-EU=10",
        }
        for name, value in values.items():
            app.screen.query_one(f"#f-{name}").value = value
        await pilot.press("ctrl+t")
        await settle(pilot)
        result = str(app.screen.query_one("#check-result").render())
        assert "✔ expensify: ok" in result, result
        assert "✖ ifs" in result, result
        assert "wrong-secret" not in result
        await pilot.press("ctrl+s")
        await settle(pilot, 6)
        assert (isolated_env / "config.toml").exists()
        assert "wrong-secret" not in (isolated_env / "config.toml").read_text()
        from console.secrets import SecretStore

        secrets = SecretStore()
        assert secrets.identity("ifs") == DEMO_IFS_CLIENT_ID
        assert secrets.ifs().client_secret.get_secret_value() == "wrong-secret"
        assert not isinstance(app.screen, SetupScreen)
        assert app.engine is not None
