"""Checking the connection to each service with the stored credentials: one real request
each, the answer as an exit code and a line for people (`ml-console credentials check`,
the setup screen's test)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from console.config import LoadedSettings
from console.errors import (
    AuthError,
    ConsoleError,
    MissingCredential,
    Unreachable,
)
from console.exitcodes import ExitCode
from console.secrets import ID_LABEL, SecretStore, abbreviate
from console.session import expensify_client, ifs_client

if TYPE_CHECKING:
    from console.store import Store


def _check(service: str, run: Callable[[], None], ident: list[str]) -> tuple[int, str]:
    """Run one check; (exit code, the line to print). `run` appends the id it used to
    `ident`. Messages of our errors never carry a secret (console.errors); the service prefix
    is dropped since the line starts with it."""

    def detail(exc: BaseException) -> str:
        return str(exc).removeprefix(f"{service}: ")

    try:
        run()
    except MissingCredential as exc:
        return int(ExitCode.USAGE), f"{service}: missing: {detail(exc)}"
    except AuthError as exc:
        return int(ExitCode.AUTH), f"{service}: refused: {detail(exc)}"
    except Unreachable as exc:
        return int(ExitCode.UNREACHABLE), f"{service}: unreachable: {detail(exc)}"
    except ConsoleError as exc:
        return int(exc.exit_code), f"{service}: failed: {detail(exc)}"
    except Exception as exc:  # a bug must not hide the other service's answer
        return int(ExitCode.UNEXPECTED), f"{service}: failed: unexpected {type(exc).__name__}"
    return int(ExitCode.OK), f"{service}: ok ({ID_LABEL[service]} {abbreviate(ident[0])})"


def check_expensify(loaded: LoadedSettings, store: SecretStore) -> tuple[int, str]:
    ident: list[str] = []

    def run() -> None:
        ident.append(store.expensify().partner_user_id)
        window = _request_window(loaded)
        try:
            with expensify_client(loaded.settings, store.expensify_source, window) as client:
                client.check()
        finally:
            window.close()

    return _check("expensify", run, ident)


def check_ifs(loaded: LoadedSettings, store: SecretStore) -> tuple[int, str]:
    ident: list[str] = []

    def run() -> None:
        ident.append(store.ifs().client_id)
        retry_s = min(60.0, loaded.settings.ifs.timeout_s * 2)
        with ifs_client(loaded.settings, store.ifs_source, max_retry_s=retry_s) as client:
            client.check()

    return _check("ifs", run, ident)


def _request_window(loaded: LoadedSettings) -> Store:
    """The Expensify request window shared with running syncs (the state file), so a check
    never pushes a busy partnerUserID over Expensify's rate limit."""
    from console.store import Store

    loaded.paths.ensure_dirs()
    return Store(loaded.paths.state_file)
