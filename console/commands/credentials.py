"""`ml-console credentials set / rotate / check / delete` (design.md §2, §5).

Secrets come from stdin (`--secret-stdin`, trailing newline stripped) or a no-echo prompt on
a terminal, go straight into the keyring, and are never printed: output names the service, the
keyring backend and a shortened id only. `check` proves the stored credentials against the
services with one cheap request each.

Exit codes: 0 ok; 2 usage, config or a missing credential; 4 refused; 5 unreachable; 1 other.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TextIO

from console.config import load_settings
from console.errors import (
    ConfigError,
    ConsoleError,
)
from console.exitcodes import ExitCode
from console.flows.connections import check_expensify, check_ifs
from console.secrets import ID_LABEL, SERVICES, SecretStore, abbreviate

if TYPE_CHECKING:
    pass

HUMAN = {"expensify": "Expensify", "ifs": "IFS Cloud"}
ID_FLAG = {"expensify": "--user-id", "ifs": "--client-id"}
ID_ATTR = {"expensify": "user_id", "ifs": "client_id"}

# When several services answer differently, the code that wins (design.md §2 order).
_PRECEDENCE = [ExitCode.USAGE, ExitCode.AUTH, ExitCode.UNREACHABLE, ExitCode.UNEXPECTED]


def worst(codes: list[int]) -> int:
    for code in _PRECEDENCE:
        if code in codes:
            return int(code)
    return int(ExitCode.OK)


class _Io:
    def __init__(self, stdin: TextIO | None, stdout: TextIO | None, stderr: TextIO | None):
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def out(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)

    def err(self, text: str) -> None:
        print(f"ml-console: {text}", file=self.stderr, flush=True)

    def interactive(self) -> bool:
        try:
            return self.stdin.isatty()
        except (AttributeError, ValueError):
            return False


def run_credentials(
    args: argparse.Namespace,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    store_factory: Callable[[], SecretStore] = SecretStore,
    prompt: Callable[[str], str] = getpass.getpass,
) -> int:
    """Handler of `ml-console credentials ...`; returns the exit code."""
    io = _Io(stdin, stdout, stderr)
    command = args.cred_command
    try:
        if command in ("set", "rotate"):
            return _set_or_rotate(args, io, store_factory, prompt)
        if command == "check":
            return _check(args, io, store_factory)
        if command == "delete":
            return _delete(args, io, store_factory)
        io.err(f"unknown credentials command {command!r}")
        return int(ExitCode.USAGE)
    except ConsoleError as exc:
        io.err(str(exc))
        return int(exc.exit_code)


# ---------------------------------------------------------------------------- set / rotate


def _set_or_rotate(
    args: argparse.Namespace,
    io: _Io,
    store_factory: Callable[[], SecretStore],
    prompt: Callable[[str], str],
) -> int:
    service: str = args.service
    rotating = args.cred_command == "rotate"
    for other in SERVICES:
        if other != service and getattr(args, ID_ATTR[other], None):
            raise ConfigError(
                f"{ID_FLAG[other]} is for {other}; the {service} id is given with "
                f"{ID_FLAG[service]}"
            )
    ident: str | None = getattr(args, ID_ATTR[service], None)
    if ident is not None and not ident.strip():
        raise ConfigError(f"{ID_FLAG[service]} is empty")
    store = store_factory()  # before reading the secret: an unusable keyring fails first
    if ident is None and not rotating:
        if args.secret_stdin or not io.interactive():
            raise ConfigError(
                f"credentials set {service} needs {ID_FLAG[service]} "
                f"(the {HUMAN[service]} {ID_LABEL[service]})"
            )
        io.stderr.write(f"{HUMAN[service]} {ID_LABEL[service]}: ")
        io.stderr.flush()
        ident = io.stdin.readline().strip()
        if not ident:
            raise ConfigError(f"no {ID_LABEL[service]} given; nothing stored")
    secret = _read_secret(args, io, service, prompt)
    if rotating:
        kept = store.rotate(service, secret, ident)
        io.out(
            f"{service}: secret rotated for {ID_LABEL[service]} {abbreviate(kept)} in the "
            f"keyring ({store.describe_backend()}); running consoles use it from their next "
            "request"
        )
    else:
        assert ident is not None
        store.set(service, ident, secret)
        io.out(
            f"{service}: credentials stored for {ID_LABEL[service]} {abbreviate(ident)} in "
            f"the keyring ({store.describe_backend()})"
        )
    return int(ExitCode.OK)


def _read_secret(
    args: argparse.Namespace, io: _Io, service: str, prompt: Callable[[str], str]
) -> str:
    human = HUMAN[service]
    if args.secret_stdin:
        secret = io.stdin.read()
        # Only the line ending goes: `echo`, `printf '%s\n'` and here-strings all add one.
        if secret.endswith("\r\n"):
            secret = secret[:-2]
        elif secret.endswith("\n"):
            secret = secret[:-1]
        if not secret:
            raise ConfigError(f"no {human} secret on stdin; nothing stored")
        return secret
    if not io.interactive():
        raise ConfigError(
            "stdin is not a terminal, so the secret cannot be asked for: pipe it in and pass "
            f"--secret-stdin (e.g. `... credentials {args.cred_command} {service} "
            f"{ID_FLAG[service]} ID --secret-stdin < secret-file`)"
        )
    secret = prompt(f"{human} secret (not shown): ")
    if not secret:
        raise ConfigError(f"no {human} secret given; nothing stored")
    return secret


# ---------------------------------------------------------------------------- check


def _check(args: argparse.Namespace, io: _Io, store_factory: Callable[[], SecretStore]) -> int:
    loaded = load_settings()
    if not loaded.exists:
        raise ConfigError(
            f"no config file at {loaded.paths.config_file}: create it (run `ml-console` for "
            "the setup screen) before checking credentials"
        )
    store = store_factory()
    services = [args.service] if args.service else list(SERVICES)
    checks = {"expensify": check_expensify, "ifs": check_ifs}
    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        futures = [pool.submit(checks[s], loaded, store) for s in services]
        results = [f.result() for f in futures]
    for _, line in results:
        io.out(line)
    return worst([code for code, _ in results])


# ---------------------------------------------------------------------------- delete


def _delete(args: argparse.Namespace, io: _Io, store_factory: Callable[[], SecretStore]) -> int:
    store = store_factory()
    services = [args.service] if args.service else list(SERVICES)
    present = [s for s in services if store.has(s)]
    for service in services:
        if service not in present:
            io.out(f"{service}: no credentials stored")
    if not present:
        return int(ExitCode.OK)
    if io.interactive():
        names = " and ".join(HUMAN[s] for s in present)
        io.stderr.write(
            f"Delete the {names} credentials from the keyring ({store.describe_backend()})? [y/N] "
        )
        io.stderr.flush()
        answer = io.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            io.out("nothing deleted")
            return int(ExitCode.OK)
    for service in present:
        for removed in store.delete(service):
            io.out(f"{removed}: credentials deleted from the keyring")
    return int(ExitCode.OK)
