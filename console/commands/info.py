"""`ml-console info`: where things live, the effective config with the source of every value,
the keyring backend in use and whether each credential is present (never its value).

Exit 0, or 2 when what it reports is a configuration problem (a bad config, no usable keyring),
so it doubles as a health check in scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from console import __version__
from console.config import (
    CONFIG_FILENAME,
    LoadedSettings,
    Paths,
    SettingsError,
    load_settings,
    resolve_paths,
    settings_items,
    toml_value,
)
from console.errors import ConfigError, ConsoleError
from console.exitcodes import ExitCode
from console.secrets import ID_LABEL, SERVICES, SecretStore, abbreviate
from console.textsafe import visible_text


def run_info(args: argparse.Namespace, *, stdout: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    try:
        return _report(out)
    except BrokenPipeError:  # `ml-console info | head`: the reader has all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, out.fileno())  # keeps the interpreter's final flush quiet
        return int(ExitCode.OK)


def _report(out: TextIO) -> int:
    code = int(ExitCode.OK)

    def emit(text: str) -> None:
        print(visible_text(text), file=out)  # config values are outside data too

    paths = resolve_paths()
    emit(f"ml-console {__version__}")
    emit("")
    _print_day(emit)
    emit("")
    _print_paths(emit, paths)

    emit("")
    emit("keyring")
    try:
        store = SecretStore()
    except ConsoleError as exc:
        code = int(ExitCode.USAGE)
        emit("  backend      unusable")
        for line in str(exc).splitlines():
            emit(f"    {line}")
    else:
        emit(f"  backend      {store.describe_backend()}")
        for service in SERVICES:
            emit(f"  {service:<12} {_credential_state(store, service)}")

    emit("")
    policies: list[str] = []
    try:
        loaded = load_settings(paths)
    except SettingsError as exc:
        emit("config: not valid")
        for problem in exc.problems:
            emit(f"  {problem}")
        code = int(ExitCode.USAGE)
    else:
        _print_config(emit, loaded)
        policies = list(loaded.settings.expensify.policies)
    _print_learned(emit, paths, policies)
    out.flush()
    return code


def _print_learned(emit: Callable[[str], None], paths: Paths, policies: list[str]) -> None:
    """What the console found out about the services on earlier runs."""
    from console.store import APPROVAL_MODES, RECONCILIATION_FILE_SYSTEM, peek_cursor

    used = peek_cursor(paths.state_file, RECONCILIATION_FILE_SYSTEM)
    emit("")
    emit("learned from the services")
    emit(
        "  card reconciliation download  "
        + (f'fileSystem "{used}" (the last that served the file)' if used else "not run yet")
    )
    raw = peek_cursor(paths.state_file, APPROVAL_MODES)
    read: dict[str, Any] | None = None
    try:
        read = json.loads(raw) if raw else None
        day, modes = (str(read["day"]), dict(read["modes"])) if read else ("", {})
    except (ValueError, KeyError, TypeError):
        read, day, modes = None, "", {}
    emit("  policies (how each is synced" + (f", policy list of {day})" if read else ")"))
    for pid in policies:
        if read is None:
            how = "not read yet (the first cycle reads the policy list)"
        elif pid not in modes:
            how = "NOT VISIBLE to the Expensify credentials: its reports cannot be synced"
        elif modes[pid] == "OPTIONAL":
            how = "Submit and Close: closed reports, by submission date"
        else:
            mode = modes[pid] or "mode not given"
            how = f"approved and reimbursed reports, by approval date ({mode})"
        emit(f"    {pid:<12} {how}")


def _print_day(emit: Callable[[str], None]) -> None:
    """Which day the console works on, and whether an as-of date moved it."""
    from console import clock

    machine = clock.machine_now().date()
    emit("day")
    day = clock.as_of()
    if day is None:
        emit(f"  today        {machine.isoformat()}  (the machine's date, UTC)")
        return
    note = "  (set by --as-of / ML_CONSOLE_AS_OF)"
    if day > machine:
        note += "; later than the machine's date, so nothing will be posted"
    emit(f"  as of        {day.isoformat()}{note}")
    emit(f"  machine      {machine.isoformat()}")


def _print_paths(emit: Callable[[str], None], paths: Paths) -> None:
    home = str(paths.home) if paths.home else "(none: the platform's user folders)"
    exists = paths.config_file.exists()
    emit("paths")
    emit(f"  home         {home}")
    emit(
        f"  config file  {paths.config_file}"
        + ("" if exists else "  (missing: `ml-console` opens the setup screen to create it)")
    )
    emit(
        f"  state file   {paths.state_file}" + ("" if paths.state_file.exists() else "  (not yet)")
    )
    emit(f"  log file     {paths.log_file}")


def _credential_state(store: SecretStore, service: str) -> str:
    try:
        ident = store.identity(service)
    except ConfigError as exc:
        return f"unreadable: {exc}"
    if ident is None:
        flag = "--user-id" if service == "expensify" else "--client-id"
        return f"missing (set with: ml-console credentials set {service} {flag} ID --secret-stdin)"
    return f"present ({ID_LABEL[service]} {abbreviate(ident)})"


def _short_source(source: str, loaded: LoadedSettings) -> str:
    if source == f"{CONFIG_FILENAME}: {loaded.paths.config_file}":
        return "config file"
    return source


def _unset(key: str) -> str:
    """An unset key with a computed default: the value it takes today."""
    if key == "expensify.approved_after":
        from console import clock
        from console.config import default_approved_after

        return f"{default_approved_after(clock.today()).isoformat()}  (unset: month before last)"
    return "(unset)"


# Keys whose value is itself a credential: only where it points is shown.
SECRET_URL_KEYS = ("alerts.webhook_url",)


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL (its path and query can carry a token), with "/…" when
    anything was left out."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    left_out = bool(parts.path.strip("/") or parts.query or parts.fragment or parts.username)
    return f"{parts.scheme}://{host}" + ("/…" if left_out else "")


def _without_login(text: str) -> str:
    """`user:password@host` (in a URL or an SMTP host) without the login part."""
    parts = urlsplit(text) if "://" in text else None
    if parts is not None and (parts.username or parts.password):
        host = parts.hostname or ""
        if parts.port is not None:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, "…@" + host, parts.path, parts.query, parts.fragment))
    if parts is None and "@" in text and ":" in text.split("@", 1)[0]:
        return "…@" + text.rsplit("@", 1)[1]
    return text


def masked(key: str, value: Any) -> Any:
    """A config value as `info` may show it: a webhook URL as its scheme and host only, a
    login written into a URL or an SMTP host left out; anything else unchanged."""
    if not isinstance(value, str) or not value:
        return value
    if key in SECRET_URL_KEYS:
        return _origin(value)
    if key.startswith("alerts.smtp") or "://" in value:
        return _without_login(value)
    return value


def _print_config(emit: Callable[[str], None], loaded: LoadedSettings) -> None:
    state = "" if loaded.exists else " (no config file: defaults and environment only)"
    emit(f"config (effective; the source of each value on the right){state}")
    rows: list[tuple[str, str, str]] = []
    for key, value in settings_items(loaded.settings):
        shown = toml_value(masked(key, value)) if value is not None else _unset(key)
        rows.append((key, shown, _short_source(loaded.source_of(key), loaded)))
    width = max(len(k) + 3 + len(v) for k, v, _ in rows)
    width = min(width, 72)
    for key, value, source in rows:
        text = f"{key} = {value}"
        pad = " " * max(2, width - len(text) + 2)
        emit(f"  {text}{pad}# {source}")
