"""Checking the connection to each service with the stored credentials: one real request
each, the answer as an exit code and a line for people (`ml-console credentials check`,
the setup screen's test)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from console.config import LoadedSettings
from console.errors import (
    AuthError,
    ConsoleError,
    MissingCredential,
    Unreachable,
)
from console.exitcodes import ExitCode
from console.ifs.preflight import CheckReport, TenantDrift
from console.secrets import ID_LABEL, SecretStore, abbreviate
from console.session import expensify_client, ifs_client

if TYPE_CHECKING:
    from console.store import Store


def _check(
    service: str, run: Callable[[], None], ident: list[str], note: list[str] | None = None
) -> tuple[int, str]:
    """Run one check; (exit code, the line to print). `run` appends the id it used to
    `ident`, and may add a note to the ok line. Messages of our errors never carry a secret
    (console.errors); the service prefix is dropped since the line starts with it."""

    def detail(exc: BaseException) -> str:
        return str(exc).removeprefix(f"{service}: ")

    try:
        run()
    except MissingCredential as exc:
        return int(ExitCode.USAGE), f"{service}: missing: {detail(exc)}"
    except TenantDrift as exc:
        return int(ExitCode.USAGE), f"{service}: differs: {detail(exc)}"
    except AuthError as exc:
        return int(ExitCode.AUTH), f"{service}: refused: {detail(exc)}"
    except Unreachable as exc:
        return int(ExitCode.UNREACHABLE), f"{service}: unreachable: {detail(exc)}"
    except ConsoleError as exc:
        return int(exc.exit_code), f"{service}: failed: {detail(exc)}"
    except Exception as exc:  # a bug must not hide the other service's answer
        return int(ExitCode.UNEXPECTED), f"{service}: failed: unexpected {type(exc).__name__}"
    extra = f"; {note[0]}" if note else ""
    return int(ExitCode.OK), f"{service}: ok ({ID_LABEL[service]} {abbreviate(ident[0])}){extra}"


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
    """The token, one read, and `ml-console ifs check`: a tenant that does not serve what
    the console uses is a configuration matter (exit 2), named in one line."""
    ident: list[str] = []
    note: list[str] = []

    def run() -> None:
        ident.append(store.ifs().client_id)
        retry_s = min(60.0, loaded.settings.ifs.timeout_s * 2)
        with ifs_client(loaded.settings, store.ifs_source, max_retry_s=retry_s) as client:
            # A stand-in client (tests) may only prove the connection: no report then.
            report: CheckReport | None = client.check()
        if report is None:
            return
        if not report.ok:
            raise TenantDrift(report)
        note.append(f"the tenant serves all {len(report.results)} entity sets the console uses")

    return _check("ifs", run, ident, note)


@dataclass(frozen=True)
class TenantCheck:
    """`ml-console ifs check`'s answer: the tenant, the report, the configured entity set of
    each config key, and the requests it took."""

    url: str
    realm: str
    report: CheckReport
    entity_sets: dict[str, str]  # config key (ifs.entity_sets.<field>) -> configured value
    requests: int


def check_tenant(loaded: LoadedSettings, store: SecretStore) -> TenantCheck:
    """Read each configured projection's service document and `$metadata` with the stored
    IFS credentials and compare them with what the console uses (console/ifs/needs.py).
    Raises MissingCredential, AuthError (the token refused) or Unreachable; a projection
    the client may not read is a finding (`forbidden`), not an error."""
    settings = loaded.settings
    retry_s = min(60.0, settings.ifs.timeout_s * 2)
    with ifs_client(settings, store.ifs_source, max_retry_s=retry_s) as client:
        report = client.preflight()
        requests = client.requests_made
    configured = {
        f"ifs.entity_sets.{k}": str(v) for k, v in settings.ifs.entity_sets.model_dump().items()
    }
    return TenantCheck(settings.ifs.url, settings.ifs.realm, report, configured, requests)


def _request_window(loaded: LoadedSettings) -> Store:
    """The Expensify request window shared with running syncs (the state file), so a check
    never pushes a busy partnerUserID over Expensify's rate limit."""
    from console.store import Store

    loaded.paths.ensure_dirs()
    return Store(loaded.paths.state_file)
