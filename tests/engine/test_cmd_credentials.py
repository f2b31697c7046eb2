"""`ml-console credentials ...` and `ml-console info`: secrets go in, never come out."""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from keyrings.alt.file import PlaintextKeyring

from console.commands.credentials import run_credentials
from console.commands.info import run_info
from console.errors import AuthError, Unreachable
from console.secrets import SecretStore

SECRET = "Sup3r-s3cret-value-42"
ROOT = Path(__file__).resolve().parents[2]


class FakeStdin(io.StringIO):
    def __init__(self, text: str = "", tty: bool = False) -> None:
        super().__init__(text)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def ns(command: str, service: str | None = None, **kw: Any) -> argparse.Namespace:
    base = {"user_id": None, "client_id": None, "secret_stdin": False}
    base.update(kw)
    return argparse.Namespace(cred_command=command, service=service, **base)


@pytest.fixture
def store(tmp_path: Path) -> SecretStore:
    kr = PlaintextKeyring()
    kr.file_path = str(tmp_path / "keyring.cfg")
    return SecretStore(backend=kr)


def run(store: SecretStore, args: argparse.Namespace, stdin: FakeStdin, **kw: Any):
    out, err = io.StringIO(), io.StringIO()
    code = run_credentials(
        args, stdin=stdin, stdout=out, stderr=err, store_factory=lambda: store, **kw
    )
    return code, out.getvalue(), err.getvalue()


def test_set_from_stdin_strips_the_newline_and_never_echoes(store: SecretStore) -> None:
    code, out, err = run(
        store,
        ns("set", "expensify", user_id="partner_1", secret_stdin=True),
        FakeStdin(SECRET + "\n"),
    )
    assert code == 0, err
    assert store.expensify().partner_user_secret.get_secret_value() == SECRET
    assert store.expensify().partner_user_id == "partner_1"
    assert SECRET not in out + err
    assert "expensify: credentials stored" in out and "PlaintextKeyring" in out

    code, out, err = run(
        store, ns("set", "ifs", client_id="cid", secret_stdin=True), FakeStdin(SECRET + "\r\n")
    )
    assert code == 0
    assert store.ifs().client_secret.get_secret_value() == SECRET


def test_without_secret_stdin_a_pipe_is_refused(store: SecretStore) -> None:
    code, _out, err = run(store, ns("set", "expensify", user_id="p"), FakeStdin(SECRET))
    assert code == 2
    assert "--secret-stdin" in err and "not a terminal" in err
    assert not store.has("expensify")


def test_on_a_terminal_the_secret_is_asked_without_echo(store: SecretStore) -> None:
    prompts: list[str] = []

    def prompt(text: str) -> str:
        prompts.append(text)
        return SECRET

    code, out, err = run(
        store, ns("set", "ifs", client_id="cid"), FakeStdin("", tty=True), prompt=prompt
    )
    assert code == 0
    assert prompts and "IFS Cloud secret" in prompts[0]
    assert store.ifs().client_secret.get_secret_value() == SECRET
    assert SECRET not in out + err


def test_the_id_flag_must_match_the_service(store: SecretStore) -> None:
    code, _, err = run(
        store, ns("set", "expensify", client_id="x", secret_stdin=True), FakeStdin(SECRET)
    )
    assert code == 2 and "--client-id is for ifs" in err
    code, _, err = run(store, ns("set", "ifs", secret_stdin=True), FakeStdin(SECRET))
    assert code == 2 and "--client-id" in err
    code, _, err = run(store, ns("set", "ifs", client_id="c", secret_stdin=True), FakeStdin("\n"))
    assert code == 2 and "no IFS Cloud secret" in err
    assert not store.has("ifs") and not store.has("expensify")


def test_rotate_keeps_the_id_or_takes_a_new_one(store: SecretStore) -> None:
    code, _, err = run(store, ns("rotate", "ifs", secret_stdin=True), FakeStdin("new\n"))
    assert code == 2 and "credentials set ifs" in err  # nothing to rotate yet
    store.set_ifs("client-a", "old")
    code, out, _ = run(store, ns("rotate", "ifs", secret_stdin=True), FakeStdin("new\n"))
    assert code == 0 and "rotated" in out and "new" not in out.split("rotated")[0]
    creds = store.ifs()
    assert (creds.client_id, creds.client_secret.get_secret_value()) == ("client-a", "new")
    code, _, _ = run(
        store, ns("rotate", "ifs", client_id="client-b", secret_stdin=True), FakeStdin("newer")
    )
    assert code == 0 and store.ifs().client_id == "client-b"


def test_delete_asks_only_on_a_terminal(store: SecretStore) -> None:
    store.set_expensify("p", SECRET)
    store.set_ifs("c", SECRET)
    code, out, _ = run(store, ns("delete", "ifs"), FakeStdin("n\n", tty=True))
    assert code == 0 and "nothing deleted" in out and store.has("ifs")
    code, out, _ = run(store, ns("delete", "ifs"), FakeStdin("y\n", tty=True))
    assert code == 0 and "ifs: credentials deleted" in out and not store.has("ifs")
    code, out, _ = run(store, ns("delete"), FakeStdin(""))  # a script: no question
    assert code == 0
    assert "expensify: credentials deleted" in out and "ifs: no credentials stored" in out
    assert not store.has("expensify")


def _configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str = "") -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(text)
    monkeypatch.setenv("ML_CONSOLE_HOME", str(home))
    monkeypatch.delenv("ML_CONSOLE_CONFIG", raising=False)
    for name in list(os.environ):
        if name.startswith("ML_CONSOLE_") and "__" in name:
            monkeypatch.delenv(name)
    return home


def test_check_needs_a_config_file(
    store: SecretStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_CONSOLE_HOME", str(tmp_path / "empty"))
    code, _, err = run(store, ns("check"), FakeStdin())
    assert code == 2 and "no config file" in err and "config.toml" in err


def test_check_reports_each_service_and_the_worst_exit_code(
    store: SecretStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(tmp_path, monkeypatch)
    code, out, _ = run(store, ns("check"), FakeStdin())
    assert code == 2
    assert "expensify: missing:" in out and "credentials set expensify" in out
    assert "ifs: missing:" in out

    from console.expensify.client import ExpensifyClient
    from console.ifs.client import IfsClient

    store.set_expensify("partner_abcdef", SECRET)
    store.set_ifs("client_xyz123", SECRET)
    monkeypatch.setattr(ExpensifyClient, "check", lambda self: None)

    def refused(self: object) -> None:
        raise AuthError("ifs", "invalid_client")

    monkeypatch.setattr(IfsClient, "check", refused)
    code, out, _ = run(store, ns("check"), FakeStdin())
    assert code == 4
    assert "expensify: ok (partnerUserID part…)" in out
    assert "ifs: refused: authentication refused: invalid_client" in out
    assert SECRET not in out

    def down(self: object) -> None:
        raise Unreachable("ifs", "could not connect")

    monkeypatch.setattr(IfsClient, "check", down)
    code, out, _ = run(store, ns("check", "ifs"), FakeStdin())
    assert (
        code == 5
        and out.strip() == "ifs: unreachable: unreachable after retries: could not connect"
    )
    monkeypatch.setattr(IfsClient, "check", lambda self: None)
    code, out, _ = run(store, ns("check"), FakeStdin())
    assert code == 0 and "ifs: ok (client id clie…)" in out


def test_check_against_a_closed_port_is_unreachable(
    store: SecretStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    # Bound but never listening: connections are refused, and no parallel test can take the
    # port while this socket holds it.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        cfg = f'[ifs]\nurl = "http://127.0.0.1:{port}"\ntimeout_s = 0.5\n'
        _configure(tmp_path, monkeypatch, cfg)
        store.set_ifs("client", SECRET)
        code, out, _ = run(store, ns("check", "ifs"), FakeStdin())
    assert code == 5, out
    assert out.startswith("ifs: unreachable") and SECRET not in out


def test_info_shows_paths_sources_and_presence_never_values(
    store: SecretStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _configure(tmp_path, monkeypatch, '[ifs]\nrealm = "prod"\n')
    monkeypatch.setenv("ML_CONSOLE_IFS__PAGE_SIZE", "250")
    store.set_expensify("partner_1", SECRET)
    import keyring

    monkeypatch.setattr("console.secrets._initialised", [])
    monkeypatch.setattr(keyring.core, "_keyring_backend", store.backend)
    out = io.StringIO()
    assert run_info(argparse.Namespace(), stdout=out) == 0
    text = out.getvalue()
    assert str(home / "config.toml") in text and str(home / "state.sqlite3") in text
    assert "PlaintextKeyring" in text
    assert "expensify    present (partnerUserID part…)" in text
    assert "ifs          missing" in text
    assert 'ifs.realm = "prod"' in text and "# config file" in text
    assert "ifs.page_size = 250" in text and "# env ML_CONSOLE_IFS__PAGE_SIZE" in text
    assert SECRET not in text


def test_info_reports_a_bad_config_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(tmp_path, monkeypatch, "[ifs]\npage_size = 0\n")
    out = io.StringIO()
    assert run_info(argparse.Namespace(), stdout=out) == 2
    assert "[ifs] page_size: must be at least 1" in out.getvalue()


@pytest.mark.skipif(
    importlib.util.find_spec("console.commands.state") is None,
    reason="console.commands (which routes `credentials` to run_credentials) is not written yet",
)
def test_cli_subprocess_stores_the_secret_and_prints_nothing_of_it(tmp_path: Path) -> None:
    home, data = tmp_path / "home", tmp_path / "xdg-data"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ML_CONSOLE_")},
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "XDG_DATA_HOME": str(data),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
    }
    argv = [sys.executable, "-m", "console.commands.main", "--home", str(home), "credentials"]
    proc = subprocess.run(
        [*argv, "set", "expensify", "--user-id", "partner_1", "--secret-stdin"],
        input=SECRET + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    kr = PlaintextKeyring()
    kr.file_path = str(data / "python_keyring" / "keyring_pass.cfg")
    stored = kr.get_password("ml-console", "expensify")
    assert stored is not None and SECRET in stored
    for path in home.rglob("*") if home.exists() else []:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes()

    proc = subprocess.run(
        [*argv, "set", "ifs", "--client-id", "c"],
        input=SECRET,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2 and "--secret-stdin" in proc.stderr
