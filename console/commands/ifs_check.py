"""`ml-console ifs check [--json]`: does this IFS Cloud tenant serve what the console uses?

For each configured projection (`[ifs.entity_sets]`, IFS's 21R1 names by default) it reads the
service document and `$metadata` with the stored IFS credentials and proves that every entity
set, attribute (with its type), navigation and bound action the client sends exists, and that
the client may read it. What differs is said in one sentence per finding, with the config key
to set (a tenant on another release renamed a projection) or the grant to ask for (HTTP 403).
See docs/ifs.md, "Checking a tenant".

stdout carries the result (text, or with `--json` one JSON object); stderr the diagnostics.
Nothing is written anywhere, in IFS or locally; no secret is ever printed.

Exit codes (design.md §2): 0 the tenant serves everything; 2 it differs (drift), or a usage,
configuration or missing-credential error; 4 the token was refused; 5 IFS stayed unreachable;
1 unexpected.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO, cast

from console.errors import ConfigError, ConsoleError
from console.exitcodes import ExitCode
from console.textsafe import json_text, visible_text

if TYPE_CHECKING:
    from console.flows.connections import TenantCheck
    from console.secrets import SecretStore


def _default_store() -> SecretStore:
    from console.secrets import SecretStore

    return SecretStore()


def run_ifs_command(
    args: argparse.Namespace,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    store_factory: Callable[[], SecretStore] = _default_store,
) -> int:
    """Handler of `ml-console ifs ...`; returns the exit code."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    from console.commands.auto import exit_code_for

    try:
        if args.ifs_command != "check":
            raise ConfigError(f"unknown ifs command {args.ifs_command!r}")
        result = _check(store_factory)
    except ConsoleError as exc:
        print(f"ml-console: {visible_text(str(exc))}", file=err)
        return int(exit_code_for(exc))
    if getattr(args, "ifs_json", False):
        out.write(json_text(to_json(result)) + "\n")
    else:
        out.write(visible_text(render_text(result)))
    out.flush()
    report = result.report
    if report.ok:
        print(
            f"ml-console: the tenant serves everything the console uses "
            f"({len(report.results)} entity sets, {result.requests} requests)",
            file=err,
        )
        return int(ExitCode.OK)
    differing = [r for r in report.results if not r.ok]
    print(
        f"ml-console: {len(differing)} of {len(report.results)} entity sets differ from what "
        "the console uses: nothing can be posted until they match (set the config keys "
        "named above, or ask the IFS administrator for the grants; docs/ifs.md)",
        file=err,
    )
    return int(ExitCode.USAGE)


def _check(store_factory: Callable[[], SecretStore]) -> TenantCheck:
    from console.config import load_settings
    from console.flows.connections import check_tenant

    loaded = load_settings()
    if not loaded.exists:
        raise ConfigError(
            f"no config file at {loaded.paths.config_file}: create it (run `ml-console` for "
            "the setup screen) before checking the tenant"
        )
    return check_tenant(loaded, store_factory())


def to_json(result: TenantCheck) -> dict[str, Any]:
    """The machine-readable result: `ok`, the tenant, the requests it took, and per config
    key its projection, configured entity set, whether the name is assumed, and findings
    (`kind`, `item`, `expected`, `found`, `config_key`, `advice`)."""
    body = result.report.to_json()
    entries = cast(list[dict[str, Any]], body["projections"])
    projections = [
        {**entry, "entity_set": result.entity_sets.get(str(entry["config_key"]))}
        for entry in entries
    ]
    return {
        "ok": body["ok"],
        "url": result.url,
        "realm": result.realm,
        "requests": result.requests,
        "projections": projections,
    }


def render_text(result: TenantCheck) -> str:
    """One line per config key (ok or differs, with its entity set), then one sentence per
    finding under the key it concerns."""
    report = result.report
    width = max((len(r.config_key) for r in report.results), default=0)
    lines = [f"IFS Cloud {result.url} (realm {result.realm})"]
    for r in report.results:
        value = result.entity_sets.get(r.config_key, r.projection)
        status = "ok" if r.ok else "DIFFERS"
        note = ""
        if r.assumed:
            note = "  (assumed name: confirmed here)" if r.ok else "  (assumed name)"
        lines.append(f"  {status:<7}  {r.config_key:<{width}}  {value}{note}")
        lines.extend(f"           - {f.sentence()}" for f in r.findings)
    return "\n".join(lines) + "\n"
