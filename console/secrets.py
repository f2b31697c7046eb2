"""Credentials in the OS keyring (design.md §5), and nowhere else.

Layout: keyring service `ml-console`, one entry per external service, so that a rotation is a
single keyring write and a reader sees either the old pair or the new one, never a mix:

    service "ml-console", username "expensify" -> {"partnerUserID": ..., "partnerUserSecret": ...}
    service "ml-console", username "ifs"       -> {"client_id": ..., "client_secret": ...}

(the password of each entry is that JSON object).

The backend is whatever keyring itself is configured to use (PYTHON_KEYRING_BACKEND,
keyringrc.cfg, or keyring.set_keyring in-process). If that is unusable, or keyring merely
auto-detected a not-recommended backend such as a plain-text file, KeyringUnavailable says how
to configure one: ml-console never falls back to storing secrets in plain text by itself.

Secrets travel as pydantic SecretStr and never appear in messages, exceptions or reprs.
"""

from __future__ import annotations

import configparser
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import keyring
import keyring.core
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.errors import KeyringError, PasswordDeleteError
from keyring.util import platform_
from pydantic import SecretStr

from console.credentials import (
    ExpensifyCredentials,
    ExpensifyCredentialSource,
    IfsCredentials,
    IfsCredentialSource,
)
from console.errors import ConfigError, KeyringUnavailable, MissingCredential

KEYRING_SERVICE = "ml-console"
Service = Literal["expensify", "ifs"]
SERVICES: tuple[Service, ...] = ("expensify", "ifs")

# (id field, secret field, human name, flag of `credentials set` that names the id)
_LAYOUT: dict[str, tuple[str, str, str, str]] = {
    "expensify": ("partnerUserID", "partnerUserSecret", "Expensify", "--user-id"),
    "ifs": ("client_id", "client_secret", "IFS Cloud", "--client-id"),
    # The SMTP login of e-mail alerts (console/alerts.py): not one of SERVICES, a sync runs
    # without it; set with `ml-console alerts smtp-login --user NAME --secret-stdin`.
    "smtp": ("username", "password", "SMTP", "--user"),
}
ID_LABEL = {"expensify": "partnerUserID", "ifs": "client id", "smtp": "user name"}

HOW_TO_CONFIGURE = (
    "ml-console keeps secrets only in a keyring and never falls back to a plain file by "
    "itself. On a desktop, install or unlock the system keyring (Secret Service such as GNOME "
    "Keyring or KWallet, macOS Keychain, Windows Credential Manager). On a headless server, use "
    "an encrypted file keyring:\n"
    "    pip install keyrings.cryptfile\n"
    "    export PYTHON_KEYRING_BACKEND=keyrings.cryptfile.cryptfile.CryptFileKeyring\n"
    "(it asks for its own password, or reads it from KEYRING_CRYPTFILE_PASSWORD), or name a "
    "backend under [backend] default-keyring in keyringrc.cfg "
    f"({platform_.config_root() / 'keyringrc.cfg'}). `python -m keyring diagnose` shows what "
    "keyring sees."
)

# Backends keyring initialised at our request: (backend, where the choice came from, and the
# PYTHON_KEYRING_BACKEND and keyringrc.cfg it was made under). Tells them apart later from one
# a program set with keyring.set_keyring (which counts as configured, like the variable).
_initialised: list[tuple[KeyringBackend, str, str | None, tuple[str, str] | None]] = []

# Reads retried when an entry is absent or torn: file backends rewrite their file in place, so
# a reader racing a rotation can briefly see it empty.
_READ_ATTEMPTS = 3
_READ_PAUSE_S = 0.05

T = TypeVar("T")


def backend_name(backend: KeyringBackend) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _keyringrc_backend() -> tuple[str, str] | None:
    """(path, backend name) from keyringrc.cfg, if it names one."""
    path = platform_.config_root() / "keyringrc.cfg"
    if not path.is_file():
        return None
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
        name = parser.get("backend", "default-keyring").strip()
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None
    return (str(path), name) if name else None


def active_backend() -> tuple[KeyringBackend, str]:
    """The backend keyring is configured to use, and where that choice came from."""
    env_name = os.environ.get("PYTHON_KEYRING_BACKEND")
    rc = _keyringrc_backend()
    preset = getattr(keyring.core, "_keyring_backend", None)
    stale = any(
        preset is seen and (seen_env, seen_rc) != (env_name, rc)
        for seen, _, seen_env, seen_rc in _initialised
    )
    try:
        if stale:
            # keyring chose this backend itself under another configuration (PYTHON_KEYRING_BACKEND
            # or keyringrc.cfg changed since, as the demo and tests do): let it choose again.
            keyring.core.init_backend()
            preset = None
        backend = keyring.get_keyring()
    except Exception as exc:  # keyring raises ImportError, ValueError, RuntimeError, ...
        where = (
            f"PYTHON_KEYRING_BACKEND={env_name!r}"
            if env_name is not None
            else (f"keyringrc.cfg ({rc[0]})" if rc else "keyring's auto-detection")
        )
        raise KeyringUnavailable(
            f"the keyring backend named by {where} cannot be loaded "
            f"({type(exc).__name__}: {exc}).\n{HOW_TO_CONFIGURE}"
        ) from None
    for seen, seen_origin, _, _ in _initialised:
        if preset is not None and preset is seen:
            return backend, seen_origin
    if preset is not None:
        origin = "set by keyring.set_keyring in this process"
    elif env_name:
        origin = "PYTHON_KEYRING_BACKEND"
    elif rc:
        origin = f"keyringrc.cfg ({rc[0]})"
    else:
        origin = "auto-detected"
    if preset is None:
        _initialised.append((backend, origin, env_name, rc))
    return backend, origin


def check_usable(backend: KeyringBackend, origin: str) -> None:
    """Raise KeyringUnavailable when `backend` cannot keep secrets, or when it is a
    not-recommended backend nobody chose (keyring only fell back to it)."""
    name = backend_name(backend)
    if isinstance(backend, fail.Keyring):
        raise KeyringUnavailable(f"no keyring backend is available.\n{HOW_TO_CONFIGURE}")
    if isinstance(backend, null.Keyring):
        raise KeyringUnavailable(
            f"the keyring backend is {name} ({origin}), which stores nothing.\n{HOW_TO_CONFIGURE}"
        )
    writer = backend
    if isinstance(backend, chainer.ChainerBackend):
        chained = list(backend.backends)
        if not chained:
            raise KeyringUnavailable(
                f"the keyring chainer ({origin}) has no backend to chain.\n{HOW_TO_CONFIGURE}"
            )
        writer = chained[0]
    if origin == "auto-detected" and not keyring.core.recommended(writer):
        raise KeyringUnavailable(
            f"keyring found only {backend_name(writer)}, a backend it does not recommend "
            "(for example a plain-text file), and nobody configured it.\n"
            f"{HOW_TO_CONFIGURE}\nTo use {backend_name(writer)} anyway, say so explicitly: "
            f"export PYTHON_KEYRING_BACKEND={backend_name(writer)}"
        )


def _set_command(service: str) -> str:
    flag = _LAYOUT[service][3]
    return f"ml-console credentials set {service} {flag} ID --secret-stdin"


@dataclass(frozen=True)
class _Entry:
    ident: str
    secret: SecretStr


class SecretStore:
    """The two credential pairs in the keyring. Construct it once; it re-reads the keyring
    on every call, so a rotated secret is seen at the next request."""

    def __init__(self, service: str = KEYRING_SERVICE, backend: KeyringBackend | None = None):
        if backend is None:
            backend, origin = active_backend()
        else:
            origin = "given by the caller"
        check_usable(backend, origin)
        self.service = service
        self.backend = backend
        self.backend_origin = origin
        # Pass these (uncalled) to the clients: each call reads the keyring afresh.
        self.expensify_source: ExpensifyCredentialSource = self.expensify
        self.ifs_source: IfsCredentialSource = self.ifs

    def __repr__(self) -> str:
        return f"SecretStore(service={self.service!r}, backend={self.describe_backend()})"

    def describe_backend(self) -> str:
        """Backend class, where the choice came from, and its file if it keeps one."""
        where = getattr(self.backend, "file_path", None)
        at = f", file {where}" if isinstance(where, str) else ""
        return f"{backend_name(self.backend)} ({self.backend_origin}{at})"

    # ------------------------------------------------------------------ reading

    def expensify(self) -> ExpensifyCredentials:
        entry = self._require("expensify")
        return ExpensifyCredentials(partner_user_id=entry.ident, partner_user_secret=entry.secret)

    def ifs(self) -> IfsCredentials:
        entry = self._require("ifs")
        return IfsCredentials(client_id=entry.ident, client_secret=entry.secret)

    def smtp(self) -> tuple[str, SecretStr] | None:
        """The SMTP login for e-mail alerts (user name, password), or None when none is set."""
        entry = self._read("smtp")
        return None if entry is None else (entry.ident, entry.secret)

    def has(self, service: str) -> bool:
        _check_service(service)
        return self._raw(service) is not None

    def identity(self, service: str) -> str | None:
        """The stored id (partnerUserID or client id) without the secret, or None."""
        _check_service(service)
        entry = self._read(service)
        return entry.ident if entry else None

    def _require(self, service: str) -> _Entry:
        entry: _Entry | None = None
        for attempt in range(_READ_ATTEMPTS):
            try:
                entry = self._read(service)
            except ConfigError:
                if attempt == _READ_ATTEMPTS - 1:
                    raise
                entry = None
            if entry is not None:
                return entry
            if attempt < _READ_ATTEMPTS - 1:
                time.sleep(_READ_PAUSE_S)
        human = _LAYOUT[service][2]
        raise MissingCredential(
            f"no {human} credentials in the keyring (service {self.service!r}, backend "
            f"{backend_name(self.backend)}); set them with: {_set_command(service)}"
        )

    def _raw(self, service: str) -> str | None:
        return self._call("read", service, lambda: self.backend.get_password(self.service, service))

    def _read(self, service: str) -> _Entry | None:
        raw = self._raw(service)
        if raw is None:
            return None
        id_key, secret_key, human, _ = _LAYOUT[service]
        try:
            data = json.loads(raw)
            ident, secret = data[id_key], data[secret_key]
            if not (isinstance(ident, str) and isinstance(secret, str) and ident and secret):
                raise ValueError
        except (ValueError, TypeError, KeyError):
            # Never quote the entry: it may be a secret stored by hand.
            raise ConfigError(
                f"the keyring entry {self.service}/{service} does not hold {human} credentials "
                f"in the form ml-console writes; set them again with: {_set_command(service)}"
            ) from None
        return _Entry(ident=ident, secret=SecretStr(secret))

    # ------------------------------------------------------------------ writing

    def set_expensify(self, user_id: str, secret: str | SecretStr) -> None:
        self._write("expensify", user_id, secret)

    def set_ifs(self, client_id: str, secret: str | SecretStr) -> None:
        self._write("ifs", client_id, secret)

    def rotate_expensify(self, secret: str | SecretStr, user_id: str | None = None) -> str:
        """Replace the secret (and the id, if given) in one keyring write; returns the id."""
        return self._rotate("expensify", secret, user_id)

    def rotate_ifs(self, secret: str | SecretStr, client_id: str | None = None) -> str:
        return self._rotate("ifs", secret, client_id)

    def rotate(self, service: str, secret: str | SecretStr, ident: str | None = None) -> str:
        _check_service(service)
        return self._rotate(service, secret, ident)

    def set(self, service: str, ident: str, secret: str | SecretStr) -> None:
        _check_service(service)
        self._write(service, ident, secret)

    def delete(self, service: str | None = None) -> list[str]:
        """Remove one service's credentials, or both; returns the services that had some."""
        targets = [service] if service else list(SERVICES)
        removed = []
        for name in targets:
            _check_service(name)
            if self._raw(name) is None:
                continue

            def remove(name: str = name) -> None:
                try:
                    self.backend.delete_password(self.service, name)
                except PasswordDeleteError:
                    pass  # gone in the meantime: the goal is met

            self._call("delete", name, remove)
            removed.append(name)
        return removed

    def _rotate(self, service: str, secret: str | SecretStr, ident: str | None) -> str:
        if ident is None:
            current = self._read(service)
            if current is None:
                human = _LAYOUT[service][2]
                raise MissingCredential(
                    f"no {human} credentials to rotate in the keyring; set them first with: "
                    f"{_set_command(service)}"
                )
            ident = current.ident
        self._write(service, ident, secret)
        return ident

    def _write(self, service: str, ident: str, secret: str | SecretStr) -> None:
        _check_service(service)
        id_key, secret_key, human, flag = _LAYOUT[service]
        plain = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        ident = ident.strip()
        if not ident:
            raise ConfigError(f"the {human} {ID_LABEL[service]} is empty (pass {flag})")
        if any(ch.isspace() for ch in ident):
            raise ConfigError(f"the {human} {ID_LABEL[service]} must not contain spaces")
        if not plain:
            raise ConfigError(f"the {human} secret is empty")
        if "\n" in plain or "\r" in plain:
            raise ConfigError(f"the {human} secret must be one line")
        payload = json.dumps({id_key: ident, secret_key: plain})
        self._call(
            "write",
            service,
            lambda: self.backend.set_password(self.service, service, payload),
            secret=plain,
        )
        # Some backends (a chainer whose first member is read-only, a locked vault) accept a
        # write and keep nothing: prove it stuck before telling the operator it did.
        stored = self._read(service)
        if stored is None or stored.ident != ident or stored.secret.get_secret_value() != plain:
            raise KeyringUnavailable(
                f"the keyring backend {backend_name(self.backend)} accepted the {human} "
                f"credentials but did not keep them.\n{HOW_TO_CONFIGURE}"
            )

    def _call(
        self, verb: str, service: str, action: Callable[[], T], secret: str | None = None
    ) -> T:
        try:
            return action()
        except (KeyringError, OSError) as exc:
            raise KeyringUnavailable(
                f"the keyring backend {backend_name(self.backend)} could not {verb} the "
                f"{_LAYOUT[service][2]} credentials "
                f"({type(exc).__name__}: {_safe_text(exc, secret)})"
            ) from None


def _safe_text(exc: BaseException, secret: str | None) -> str:
    # Backend messages are about the vault (locked, missing collection, file permissions);
    # still, the secret being written is scrubbed and the text capped.
    text = " ".join(str(exc).split())
    if secret:
        text = text.replace(secret, "**********")
    return text if len(text) <= 200 else text[:197] + "..."


def _check_service(service: Any) -> None:
    if service not in _LAYOUT:
        raise ConfigError(f"unknown service {service!r}: expected one of {', '.join(SERVICES)}")


def abbreviate(ident: str, keep: int = 4) -> str:
    """An id shortened for display (`abcd…`): enough to recognise, not to copy."""
    return ident if len(ident) <= keep else ident[:keep] + "…"
