"""Subcommands without the TUI: credentials, info, the hold queue, replay, `state backup` and
`state rebuild` (the audit trail: console/commands/audit.py).

`held`, `exclude` and `state` need only the state file (no keyring, no network); `replay`
posts, so it needs the services and takes the posting lock like `--auto` (same exit codes).
A damaged state file is exit 7 from each (console/state_check.py).

Exit codes of the hold queue, as `--auto`'s: `held` 3 when any report is held (0 when none),
so `ml-console held --json || notify` works; `exclude` 2 for a report that cannot be excluded
(unknown here, posted or being posted: a usage error, said in one sentence), 0 when done.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from console.errors import ConfigError, ConsoleError
from console.exitcodes import ExitCode


def run_command(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "credentials":
        from console.commands.credentials import run_credentials

        return int(run_credentials(args))
    if cmd == "info":
        from console.commands.info import run_info

        return int(run_info(args))
    handlers = {
        "held": _held,
        "exclude": _exclude,
        "replay": _replay,
        "state": _state,
    }
    handler = handlers.get(cmd)
    if handler is None:
        print(f"ml-console: unknown command {cmd!r}", file=sys.stderr)
        return int(ExitCode.USAGE)
    try:
        return handler(args)
    except ConsoleError as exc:
        from console.commands.auto import exit_code_for
        from console.textsafe import visible_text

        print(f"ml-console: {visible_text(str(exc))}", file=sys.stderr)
        return int(exit_code_for(exc))


def _open_store() -> Any:
    from console.config import load_settings
    from console.store import Store

    loaded = load_settings()
    if not loaded.paths.state_file.exists():
        raise ConfigError(
            f"no state file at {loaded.paths.state_file} yet: nothing has been synced here"
        )
    return loaded, Store(loaded.paths.state_file)


def _actor(loaded: Any) -> str:
    from console.audit import os_user

    return str(loaded.settings.operator.name or os_user())


def held_for(first_held: str | None, now: datetime | None = None) -> tuple[int, str]:
    """(seconds, '3d 4h') since first_held."""
    if not first_held:
        return 0, ""
    try:
        since = datetime.fromisoformat(first_held.replace("Z", "+00:00"))
    except ValueError:
        return 0, ""
    seconds = max(0, int(((now or datetime.now(UTC)) - since).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        text = f"{days}d {hours}h"
    elif hours:
        text = f"{hours}h {minutes}m"
    else:
        text = f"{minutes}m"
    return seconds, text


def _held(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from console.money import fmt
    from console.reversal import posted_attention
    from console.textsafe import json_text, visible

    out = out or sys.stdout
    _loaded, store = _open_store()
    try:
        rows = store.pending_reports(status="held", limit=10**6)
        holds_by_report: dict[str, list[Any]] = {}
        for h in store.holds([r.report_id for r in rows]) if rows else []:
            holds_by_report.setdefault(h.report_id, []).append(h)
        # Posted reports that wait for the operator too, as a cycle's summary counts them.
        for waiting in posted_attention(store):
            detail = store.report_detail(waiting.report_id)
            if detail is not None:
                rows.append(replace(detail.report, reason=waiting.code, held_since=waiting.since))
                holds_by_report[waiting.report_id] = [waiting]
    finally:
        store.close()
    rows.sort(key=lambda r: (r.held_since or "", r.report_id))
    items = []
    for r in rows:
        seconds, text = held_for(r.held_since)
        holds = holds_by_report.get(r.report_id, [])
        # The message that goes with `reason` (the stored holds come back ordered by code).
        main = next((h for h in holds if h.code == r.reason), holds[0] if holds else None)
        items.append(
            {
                "reportID": r.report_id,
                "reason": r.reason,
                "reasons": [{"code": h.code, "message": h.message} for h in holds],
                "message": main.message if main is not None else "",
                "held_since": r.held_since,
                "held_for_s": seconds,
                "held_for": text,
                "employee": r.employee,
                "report_name": r.report_name,
                "total_minor": r.total_minor,
                "currency": r.currency,
            }
        )
    # Like --auto: held reports need attention (3); an empty queue is 0.
    code = int(ExitCode.ATTENTION if items else ExitCode.OK)
    if getattr(args, "held_json", False):
        out.write(json_text(items) + "\n")
        return code
    if not items:
        print("ml-console: nothing is held", file=sys.stderr)
        return code
    out.write(f"{'REPORT':<12} {'HELD FOR':>9}  {'TOTAL':>14}  {'REASON':<44} EMPLOYEE\n")
    for it in items:
        total = fmt(int(it["total_minor"]), str(it["currency"]))
        out.write(
            f"{visible(it['reportID']):<12} {it['held_for']:>9}  {visible(total):>14}  "
            f"{visible(it['reason']):<44} {visible(it['employee'])}\n"
        )
        if it["message"]:
            out.write(f"{'':<12} {visible(it['message'])}\n")
    return code


def _exclude(args: argparse.Namespace) -> int:
    from console.audit_keys import AuditKeys
    from console.flows.cycle import Engine
    from console.textsafe import visible

    loaded, store = _open_store()
    # Excluding touches only local state: no credential or network is needed. The keyring is
    # asked only for the audit key, to sign the event (without it the next run signs it).
    engine = Engine(loaded.settings, store, None, actor=_actor(loaded), audit_keys=AuditKeys())
    try:
        status = store.report_status(args.report_id)
        shown = visible(args.report_id)
        if status is None:
            raise ConfigError(
                f"report {shown} is not known to this console (see `ml-console held`)"
            )
        if status in ("posted", "posting"):
            raise ConfigError(
                f"report {shown} is {'posted' if status == 'posted' else 'being posted'} and "
                "cannot be excluded; to take a posted report back, reverse its voucher in IFS"
            )
        engine.exclude(args.report_id, args.reason)
    finally:
        engine.close()
    print(
        f"ml-console: report {visible(args.report_id)} excluded: {visible(args.reason.strip())}",
        file=sys.stderr,
    )
    return int(ExitCode.OK)


def _replay(args: argparse.Namespace) -> int:
    from console.commands.auto import ProgressLine, open_engine
    from console.config import load_settings

    ids = list(args.report_ids or [])
    confirm = bool(getattr(args, "confirm_duplicate", False))
    if confirm and (not ids or args.held):
        raise ConfigError("--confirm-duplicate needs the report IDs it confirms (not --held)")
    if not ids and not args.held:
        raise ConfigError("name the reports to replay, or use --held")
    loaded = load_settings()
    engine = open_engine(actor=_actor(loaded))
    progress = ProgressLine(sys.stderr)
    try:
        if confirm:
            from console.report_checks import confirm_duplicates

            confirm_duplicates(engine.store, engine.audit, ids)
        summary = engine.replay(ids, held=bool(args.held), progress=progress)
    finally:
        progress.close()
        engine.close()
    sys.stdout.write(json.dumps(summary.to_json(), default=str) + "\n")
    print(
        f"ml-console: replay posted {summary.posted}, held {summary.held}, failed {summary.failed}",
        file=sys.stderr,
    )
    return int(ExitCode.ATTENTION if summary.needs_attention else ExitCode.OK)


def _state(args: argparse.Namespace) -> int:
    """`state backup FILE`: SQLite's online backup of the state file into a new file (0600)."""
    import sqlite3

    from console.config import load_settings
    from console.state_check import backup
    from console.store import SCHEMA_VERSION

    if args.state_command == "rebuild":
        return _rebuild(args)
    if args.state_command != "backup":
        raise ConfigError(f"unknown state command {args.state_command!r}")
    state_file = load_settings().paths.state_file
    target = Path(args.file).expanduser().absolute()
    if target.exists():
        raise ConfigError(f"{target} already exists: name a new file for the backup")
    if not target.parent.is_dir():
        raise ConfigError(f"no folder {target.parent} for the backup")
    try:
        size = backup(state_file, target, SCHEMA_VERSION)
    except (OSError, sqlite3.Error) as exc:
        if isinstance(exc, OSError) and exc.filename and Path(exc.filename) == state_file:
            raise
        raise ConfigError(f"cannot write the backup {target}: {exc}") from exc
    print(
        f"ml-console: state backed up to {target} ({size} bytes); "
        "to restore it, see docs/reliability.md",
        file=sys.stderr,
    )
    return int(ExitCode.OK)


def _rebuild(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`state rebuild [--force] [--json]`: a missing or damaged state file (exit 7) is made
    again from IFS and Expensify (console/flows/rebuild.py); a healthy one only with --force.
    The file replaced is kept beside the new one. Exit 0, or 3 when a voucher could not be
    recorded or IFS holds a reference twice; 4/5 as `--auto` when a service refuses or is
    down (the new state is then incomplete: run the rebuild again)."""
    from console import clock
    from console.commands.auto import open_engine
    from console.config import load_settings
    from console.flows.rebuild import UNKNOWABLE, condition, put_back, rebuild, set_aside
    from console.store import SCHEMA_VERSION
    from console.textsafe import visible

    out = out or sys.stdout
    loaded = load_settings()
    state_file = loaded.paths.state_file
    found = condition(state_file, SCHEMA_VERSION)
    if found == "healthy" and not args.force:
        raise ConfigError(
            f"the state file {state_file} is healthy: nothing to rebuild (to replace it "
            "anyway, `ml-console state rebuild --force`; it is kept beside the new one)"
        )
    _ready_to_rebuild(loaded)
    moved = set_aside(state_file, clock.now()) if found != "missing" else []
    if found not in ("missing", "healthy"):
        print(f"ml-console: rebuilding: {visible(found)}", file=sys.stderr)
    try:
        engine = open_engine(actor=_actor(loaded))
        try:
            result = rebuild(engine)
        finally:
            engine.close()
    except BaseException:
        # Half a rebuild is no state to run on: leave things as they were, and say so.
        put_back(state_file, moved)
        print(
            "ml-console: the rebuild did not finish; the state file is as it was before",
            file=sys.stderr,
        )
        raise
    result.set_aside = [str(p) for p in moved]
    if getattr(args, "rebuild_json", False):
        out.write(json.dumps(result.to_json()) + "\n")
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(result.recorded.items())) or "nothing"
    lines = [
        f"state rebuilt at {state_file} from {result.vouchers_read} IFS voucher(s): {kinds}"
        f" recorded as posted; {result.labelled} report(s) already labelled in Expensify,"
        f" {result.to_label} to be labelled by the next cycle",
    ]
    lines += [f"kept the file it replaces: {p}" for p in result.set_aside]
    lines += [f"not recorded: {visible(why)}" for why in result.not_recorded]
    lines += [
        f"IFS holds {visible(ref)} {len(labels)} times: {', '.join(labels)}"
        for ref, labels in result.twice.items()
    ]
    lines.append("not known after a rebuild (neither IFS nor Expensify holds it):")
    lines += [f"  - {what}" for what in UNKNOWABLE]
    lines.append("next: `ml-console --auto --dry-run`, then start the sync again")
    for line in lines:
        print(f"ml-console: {line}", file=sys.stderr)
    return int(ExitCode.ATTENTION if result.needs_attention else ExitCode.OK)


def _ready_to_rebuild(loaded: Any) -> None:
    """What `--auto` needs (config, both credentials), checked before the state file is
    touched: a rebuild that cannot read IFS and Expensify must not start."""
    from console.errors import MissingCredential
    from console.secrets import SecretStore

    if not loaded.exists:
        raise ConfigError(
            f"no config file at {loaded.paths.config_file}: the rebuild reads IFS and "
            "Expensify with the configured settings (see `ml-console info`)"
        )
    secrets = SecretStore()
    for service, flag in (("expensify", "--user-id ID"), ("ifs", "--client-id ID")):
        if not secrets.has(service):
            raise MissingCredential(
                f"no {service} credentials in the keyring; set them with: "
                f"ml-console credentials set {service} {flag} --secret-stdin"
            )
