"""End-to-end harness: the real `ml-console` command, run as a subprocess against the
simulators over loopback, with its own home (`--home`) and an isolated keyring
(keyrings.alt's plaintext file backend under the test's temp folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from console.config import Settings, save_settings
from console.sim.demo import (
    DEMO_EXPENSIFY_SECRET,
    DEMO_EXPENSIFY_USER_ID,
    DEMO_IFS_CLIENT_ID,
    DEMO_IFS_SECRET,
    DEMO_POSTING,
    DEMO_REALM,
)
from tests.conftest import FAST_EXPENSIFY_LIMITS

SECRETS = (DEMO_EXPENSIFY_SECRET, DEMO_IFS_SECRET)


@dataclass
class Console:
    """One console installation: a home folder, a keyring, a config pointing at the sims."""

    home: Path
    expensify_url: str
    ifs_url: str
    env: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    # Config every write_config starts from (before its overrides), per section.
    base_config: dict[str, dict[str, Any]] = field(default_factory=dict)

    def run(
        self, *args: str, input: str | None = None, timeout: float = 120, env: dict | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "console.commands.main", "--home", str(self.home), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
        )
        self.outputs += [proc.stdout, proc.stderr]
        return proc

    def auto(self, *extra: str, env: dict | None = None) -> tuple[int, dict[str, Any], str]:
        """One `--auto --json` cycle: (exit code, summary, stderr)."""
        proc = self.run("--auto", "--json", *extra, env=env)
        summary = json.loads(proc.stdout) if proc.stdout.strip() else {}
        return proc.returncode, summary, proc.stderr

    def write_config(self, **overrides: Any) -> None:
        data: dict[str, Any] = {
            "expensify": {"url": self.expensify_url, "approved_after": "2026-10-01"},
            "ifs": {"url": self.ifs_url, "realm": DEMO_REALM},
            "posting": dict(DEMO_POSTING),
        }
        for section, values in [*self.base_config.items(), *overrides.items()]:
            data.setdefault(section, {}).update(values)
        save_settings(Settings.model_validate(data), self.home / "config.toml")

    def set_credentials(
        self, expensify_secret: str = DEMO_EXPENSIFY_SECRET, ifs_secret: str = DEMO_IFS_SECRET
    ) -> None:
        for args, secret in (
            (("expensify", "--user-id", DEMO_EXPENSIFY_USER_ID), expensify_secret),
            (("ifs", "--client-id", DEMO_IFS_CLIENT_ID), ifs_secret),
        ):
            proc = self.run("credentials", "set", *args, "--secret-stdin", input=secret + "\n")
            assert proc.returncode == 0, proc.stderr

    def store_credentials(self) -> None:
        """The demo credentials written straight into this console's keyring file, where
        `credentials set` (tested in tests/engine/test_cmd_credentials.py) puts them: each
        command started would cost a Python start-up, for every test's set-up."""
        from keyrings.alt.file import PlaintextKeyring

        from console.secrets import SecretStore

        keyring = PlaintextKeyring()
        keyring.file_path = str(
            Path(self.env["XDG_DATA_HOME"]) / "python_keyring" / keyring.filename
        )
        store = SecretStore(backend=keyring)
        store.set_expensify(DEMO_EXPENSIFY_USER_ID, DEMO_EXPENSIFY_SECRET)
        store.set_ifs(DEMO_IFS_CLIENT_ID, DEMO_IFS_SECRET)


def make_console(tmp_path: Path, sims: Any) -> Console:
    home = tmp_path / "home"
    home.mkdir(mode=0o700, parents=True)
    keyring_home = tmp_path / "keyring"
    keyring_home.mkdir(mode=0o700, parents=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith("ML_CONSOLE_") or k == "ML_CONSOLE_AS_OF")
        and k not in ("PYTHON_KEYRING_BACKEND",)
    }
    env.update(
        PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring",
        XDG_DATA_HOME=str(keyring_home),
        ML_CONSOLE_LOCK_WAIT_S="1",
    )
    console = Console(home, sims.expensify_url, sims.ifs_url, env)
    if not sims.expensify.settings.rate_limit:
        console.base_config["expensify"] = dict(FAST_EXPENSIFY_LIMITS)
    console.write_config()
    console.store_credentials()
    return console


@pytest.fixture
def console(tmp_path, sims) -> Console:
    """A configured console with credentials, on the demo world (fast sims)."""
    return make_console(tmp_path, sims)


@pytest.fixture
def small_console(tmp_path, small_sims) -> Console:
    return make_console(tmp_path, small_sims)


def sim_get(url: str, path: str) -> Any:
    return httpx.get(url + path, timeout=30).json()


def sim_post(url: str, path: str, body: Any) -> Any:
    r = httpx.post(url + path, json=body, timeout=30)
    assert r.status_code < 300, r.text
    return r.json() if r.content else None
