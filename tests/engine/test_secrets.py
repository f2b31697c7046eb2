"""Secrets in the keyring: set/get/rotate/delete, rotation seen by a running reader, clear
messages, unusable or unchosen backends refused, and no secret in any repr or message."""

from __future__ import annotations

from pathlib import Path

import keyring
import keyring.backend
import keyring.core
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.errors import KeyringLocked, PasswordSetError
from keyrings.alt.file import PlaintextKeyring

from console import secrets
from console.errors import ConfigError, KeyringUnavailable, MissingCredential
from console.secrets import SecretStore

SECRET = "s3cr3t-Value-9f8e"


def file_keyring(path: Path) -> PlaintextKeyring:
    kr = PlaintextKeyring()
    kr.file_path = str(path)  # instance-level override: an isolated throw-away keyring
    return kr


@pytest.fixture
def backend(tmp_path: Path) -> PlaintextKeyring:
    return file_keyring(tmp_path / "keyring" / "keyring_pass.cfg")


@pytest.fixture
def store(backend: PlaintextKeyring) -> SecretStore:
    return SecretStore(backend=backend)


@pytest.fixture
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_READ_PAUSE_S", 0.0)


def test_set_get_rotate_delete(store: SecretStore, no_pause: None) -> None:
    assert not store.has("expensify") and not store.has("ifs")
    store.set_expensify("partner_1", SECRET)
    store.set_ifs("client-a", "ifs-" + SECRET)
    exp = store.expensify()
    assert exp.partner_user_id == "partner_1"
    assert exp.partner_user_secret.get_secret_value() == SECRET
    assert store.ifs().client_secret.get_secret_value() == "ifs-" + SECRET
    assert store.identity("ifs") == "client-a"

    assert store.rotate_expensify("rotated-1") == "partner_1"  # the id is kept
    assert store.expensify().partner_user_secret.get_secret_value() == "rotated-1"
    assert store.rotate_ifs("rotated-2", client_id="client-b") == "client-b"
    assert store.ifs().client_id == "client-b"

    assert store.delete("expensify") == ["expensify"]
    assert not store.has("expensify") and store.has("ifs")
    assert store.delete() == ["ifs"]
    assert store.delete() == []
    with pytest.raises(MissingCredential):
        store.ifs()


def test_the_source_callable_sees_a_secret_rotated_by_another_process(
    backend: PlaintextKeyring, tmp_path: Path
) -> None:
    running = SecretStore(backend=backend)  # e.g. an --every loop
    running.set_expensify("partner_1", "old-secret")
    source = running.expensify_source
    assert source().partner_user_secret.get_secret_value() == "old-secret"
    # `credentials rotate` in another process: a separate backend object on the same file
    operator = SecretStore(backend=file_keyring(Path(backend.file_path)))
    operator.rotate_expensify("new-secret")
    assert source().partner_user_secret.get_secret_value() == "new-secret"
    assert running.ifs_source is not None and callable(running.ifs_source)


def test_missing_credential_names_the_command_that_sets_it(
    store: SecretStore, no_pause: None
) -> None:
    with pytest.raises(MissingCredential) as info:
        store.expensify()
    assert info.value.exit_code == 2
    assert "ml-console credentials set expensify --user-id ID --secret-stdin" in str(info.value)
    with pytest.raises(MissingCredential) as info:
        store.ifs()
    assert "ml-console credentials set ifs --client-id ID --secret-stdin" in str(info.value)
    with pytest.raises(MissingCredential) as info:
        store.rotate_ifs("x")
    assert "credentials set ifs" in str(info.value)


def test_no_secret_in_reprs_or_messages(store: SecretStore, backend: PlaintextKeyring) -> None:
    store.set_expensify("partner_1", SECRET)
    creds = store.expensify()
    for text in (repr(creds), str(creds), repr(store), repr(creds.partner_user_secret)):
        assert SECRET not in text
    # an entry put there by hand in another form: the message must not quote it
    backend.set_password("ml-console", "ifs", SECRET)
    with pytest.raises(ConfigError) as info:
        store.ifs()
    assert SECRET not in str(info.value)
    assert "credentials set ifs" in str(info.value)


class _Broken(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        raise PasswordSetError(f"vault refused {password}")

    def delete_password(self, service: str, username: str) -> None:
        return None


def test_backend_errors_become_keyring_unavailable_without_the_secret() -> None:
    store = SecretStore(backend=_Broken())
    with pytest.raises(KeyringUnavailable) as info:
        store.set_ifs("client", SECRET)
    assert SECRET not in str(info.value)
    assert "could not write the IFS Cloud credentials" in str(info.value)


class _Locked(_Broken):
    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringLocked("the collection is locked")


def test_a_locked_keyring_is_reported_as_such() -> None:
    with pytest.raises(KeyringUnavailable, match="locked"):
        SecretStore(backend=_Locked()).expensify()


class _Forgetful(_Broken):
    def set_password(self, service: str, username: str, password: str) -> None:
        return None  # accepts and keeps nothing


def test_a_write_that_does_not_stick_is_not_reported_as_stored() -> None:
    with pytest.raises(KeyringUnavailable, match="did not keep them"):
        SecretStore(backend=_Forgetful()).set_expensify("u", SECRET)


class _Flaky(PlaintextKeyring):
    """Answers None once, as a file backend can mid-rewrite during a rotation."""

    misses = 1

    def get_password(self, service: str, username: str) -> str | None:
        if self.misses:
            self.misses -= 1
            return None
        return super().get_password(service, username)


def test_a_torn_read_during_rotation_is_retried(tmp_path: Path, no_pause: None) -> None:
    path = tmp_path / "kr.cfg"
    SecretStore(backend=file_keyring(path)).set_ifs("c", SECRET)
    flaky = _Flaky()
    flaky.file_path = str(path)
    assert SecretStore(backend=flaky).ifs().client_secret.get_secret_value() == SECRET


@pytest.mark.parametrize("bad", [fail.Keyring(), null.Keyring()])
def test_unusable_backends_are_refused_with_how_to(bad: KeyringBackend) -> None:
    with pytest.raises(KeyringUnavailable) as info:
        SecretStore(backend=bad)
    message = str(info.value)
    assert info.value.exit_code == 2
    assert "pip install keyrings.cryptfile" in message
    assert "PYTHON_KEYRING_BACKEND=keyrings.cryptfile.cryptfile.CryptFileKeyring" in message


def test_an_empty_chainer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyring.backend, "get_all_keyring", lambda: [])
    with pytest.raises(KeyringUnavailable, match="no backend to chain"):
        SecretStore(backend=chainer.ChainerBackend())


@pytest.fixture
def fresh_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """keyring as if in a new process: nothing chosen yet, no keyringrc.cfg, and the only
    backend it can find is a plain-text file under tmp_path."""
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)
    monkeypatch.setattr(secrets, "_initialised", [])
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    data = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.setattr(keyring.backend, "get_all_keyring", lambda: [PlaintextKeyring()])
    return data


def test_an_unchosen_plaintext_backend_is_refused_and_nothing_is_written(
    fresh_keyring: Path,
) -> None:
    with pytest.raises(KeyringUnavailable) as info:
        SecretStore().set_expensify("partner_1", SECRET)
    message = str(info.value)
    assert "PlaintextKeyring" in message and "nobody configured it" in message
    assert "export PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring" in message
    written = [p for p in fresh_keyring.rglob("*") if p.is_file()] if fresh_keyring.exists() else []
    assert written == []


def test_a_backend_chosen_through_the_environment_is_honoured(
    fresh_keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    store = SecretStore()
    assert store.backend_origin == "PYTHON_KEYRING_BACKEND"
    store.set_ifs("client", SECRET)
    assert SecretStore().ifs().client_id == "client"  # the origin is remembered, too
    assert SecretStore().backend_origin == "PYTHON_KEYRING_BACKEND"
    assert (fresh_keyring / "python_keyring" / "keyring_pass.cfg").is_file()


def test_a_backend_set_in_process_is_honoured(fresh_keyring: Path, tmp_path: Path) -> None:
    keyring.set_keyring(file_keyring(tmp_path / "mine.cfg"))
    store = SecretStore()
    assert "set_keyring" in store.backend_origin
    store.set_expensify("p", SECRET)
    # the user's explicit choice is where it went
    reread = file_keyring(tmp_path / "mine.cfg").get_password("ml-console", "expensify")
    assert reread is not None and SECRET in reread


def test_a_backend_named_in_keyringrc_is_honoured(fresh_keyring: Path, tmp_path: Path) -> None:
    rc = tmp_path / "config" / "python_keyring" / "keyringrc.cfg"
    rc.parent.mkdir(parents=True)
    rc.write_text("[backend]\ndefault-keyring=keyrings.alt.file.PlaintextKeyring\n")
    store = SecretStore()
    assert store.backend_origin.startswith("keyringrc.cfg")


def test_an_unloadable_backend_name_is_explained(
    fresh_keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "no.such.Backend")
    with pytest.raises(KeyringUnavailable, match="cannot be loaded"):
        SecretStore()


def test_ids_and_secrets_are_checked_before_writing(store: SecretStore) -> None:
    with pytest.raises(ConfigError, match="empty"):
        store.set_expensify("  ", SECRET)
    with pytest.raises(ConfigError, match="spaces"):
        store.set_expensify("a b", SECRET)
    with pytest.raises(ConfigError, match="empty"):
        store.set_ifs("c", "")
    with pytest.raises(ConfigError, match="one line"):
        store.set_ifs("c", "a\nb")
    with pytest.raises(ConfigError, match="unknown service"):
        store.has("slack")
    assert not store.has("expensify") and not store.has("ifs")


def test_configuring_the_variable_later_in_the_same_process_is_honoured(
    fresh_keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(KeyringUnavailable):
        SecretStore()  # keyring picked the plain-text file by itself: refused
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    store = SecretStore()  # the operator (or the demo) chose it explicitly since
    assert store.backend_origin == "PYTHON_KEYRING_BACKEND"
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
    with pytest.raises(KeyringUnavailable):
        SecretStore()
