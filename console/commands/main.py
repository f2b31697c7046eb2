"""Entry point of `ml-console`. Imports stay lazy: `--version` and `--auto --help` must not pay
for Textual, httpx or the simulators."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from console import __version__

# Not `from typing import TYPE_CHECKING`: importing typing alone is ~3 ms of every start-up,
# a tenth of `ml-console --version` (bench/startup_bench.py); type checkers honour the name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from console.state_check import DamagedState


def _duration(text: str) -> float:
    """'15m' -> 900.0; accepts s, m, h suffixes or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text[-1:] in units:
            value = float(text[:-1]) * units[text[-1]]
        else:
            value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 30s, 15m or 1h)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("a duration must be positive")
    return value


def _as_of(text: str) -> str:
    from console.clock import AsOfError, parse_as_of

    try:
        return parse_as_of(text).isoformat()
    except AsOfError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, sized without `shutil` (which drags in bz2, lzma and zlib: a tenth
    of the start-up budget of `--help`); same rule: $COLUMNS, else the terminal, else 80."""

    def __init__(self, prog: str, **kwargs: object) -> None:
        if kwargs.get("width") is None:
            try:
                columns = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size().columns
            except (ValueError, OSError):
                columns = 80
            kwargs["width"] = columns - 2
        super().__init__(prog, **kwargs)  # type: ignore[arg-type]


# Commands whose command line may carry a secret by mistake (a password typed where an
# argument goes): argparse's errors never repeat what was typed for them.
_SECRET_COMMANDS = frozenset({"credentials", "smtp-login", "serve"})
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _redacted(message: str) -> str:
    """An argparse error without the values typed: the unrecognized arguments, the invalid
    choice or value; the allowed choices stay."""
    if message.startswith("unrecognized arguments:"):
        return (
            "unrecognized arguments (not repeated here: one may be a secret; secrets are read "
            "only from stdin, with --secret-stdin)"
        )
    head, sep, tail = message.partition(" (choose from ")
    return _QUOTED.sub("(not shown)", head) + sep + tail


class _Parser(argparse.ArgumentParser):
    """Subparsers are built as this class too (add_subparsers defaults to the parent's type).
    While the command line names a command that takes secrets, errors do not echo values."""

    secret_context = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        if _Parser.secret_context:
            message = _redacted(message)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="ml-console",
        description="Operator console for the Expensify -> IFS Cloud accrual journal sync.",
    )
    p.add_argument("--version", action="version", version=f"ml-console {__version__}")
    p.add_argument("--home", help="config, state and logs under this folder (env ML_CONSOLE_HOME)")
    p.add_argument("--config", help="config file (env ML_CONSOLE_CONFIG)")
    p.add_argument(
        "--as-of",
        type=_as_of,
        metavar="YYYY-MM-DD",
        help="run as on this day: due reversals, periods, the demo's month "
        "(env ML_CONSOLE_AS_OF; nothing is posted with a future date)",
    )
    p.add_argument("--auto", action="store_true", help="run one headless sync cycle and exit")
    p.add_argument("--dry-run", action="store_true", help="with --auto: plan only, post nothing")
    p.add_argument("--json", action="store_true", help="with --auto: print the JSON summary")
    p.add_argument("--every", type=_duration, help="with --auto: repeat every interval (15m)")
    sub = p.add_subparsers(dest="command")

    demo = sub.add_parser("demo", help="run the console on the bundled simulators")
    demo.add_argument("--data", help="dataset file instead of the bundled demo data")
    demo.add_argument("--auto", action="store_true", dest="demo_auto", help="one headless cycle")
    demo.add_argument("--json", action="store_true", dest="demo_json", help="with --auto: JSON")
    demo.add_argument("--dry-run", action="store_true", dest="demo_dry_run", help="plan only")
    demo.add_argument("--keep", help="keep the demo home in this folder instead of a temp dir")

    sim = sub.add_parser("sim", help="run both simulators until SIGTERM/SIGINT")
    sim.add_argument("--data", help="dataset file instead of the bundled demo data")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--expensify-port", type=int, default=0)
    sim.add_argument("--ifs-port", type=int, default=0)
    sim.add_argument("--fast", action="store_true", help="no rate limits (tests and benchmarks)")

    cred = sub.add_parser("credentials", help="manage secrets in the OS keyring")
    cred_sub = cred.add_subparsers(dest="cred_command", required=True)
    for name in ("set", "rotate"):
        c = cred_sub.add_parser(name, help=f"{name} a service's credentials")
        c.add_argument("service", choices=["expensify", "ifs"])
        c.add_argument("--user-id", help="Expensify partnerUserID")
        c.add_argument("--client-id", help="IFS OAuth2 client id")
        c.add_argument("--secret-stdin", action="store_true", help="read the secret from stdin")
    for name in ("check", "delete"):
        c = cred_sub.add_parser(name, help=f"{name} credentials")
        c.add_argument("service", nargs="?", choices=["expensify", "ifs"])

    ifs = sub.add_parser("ifs", help="the IFS Cloud tenant: check it serves what the console uses")
    ifs_sub = ifs.add_subparsers(dest="ifs_command", required=True)
    ifs_check = ifs_sub.add_parser(
        "check",
        help="read each configured projection's service document and $metadata and say what "
        "differs from what the console uses, and which config key to set (exit 2 on drift)",
    )
    ifs_check.add_argument("--json", action="store_true", dest="ifs_json", help="print JSON")

    held = sub.add_parser(
        "held", help="list what waits for you: held reports, posted ones changed or unreadable"
    )
    held.add_argument("--json", action="store_true", dest="held_json")
    exc = sub.add_parser("exclude", help="exclude a report from posting, with a reason")
    exc.add_argument("report_id")
    exc.add_argument("--reason", required=True)
    rep = sub.add_parser("replay", help="re-check and post held or failed reports")
    rep.add_argument("report_ids", nargs="*")
    rep.add_argument("--held", action="store_true", help="every held report")
    rep.add_argument(
        "--confirm-change",
        action="store_true",
        help="a report changed after posting: reverse the old accrual, post the new version",
    )
    rep.add_argument(
        "--confirm-duplicate",
        action="store_true",
        help="the reports held as duplicate-transaction are right: record that, and post them",
    )

    audit = sub.add_parser("audit", help="verify or export the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    ver = audit_sub.add_parser(
        "verify", help="check hashes and signed checkpoints (exit 0 intact and signed, 3 not)"
    )
    ver.add_argument("--evidence", metavar="BUNDLE", help="verify an evidence bundle instead")
    ver.add_argument("--public-key", metavar="FILE", help="check with this public key (PEM)")
    audit_sub.add_parser("key", help="print the audit key's public half and fingerprint")
    exp = audit_sub.add_parser("export", help="export events, or a period's evidence bundle")
    exp.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    exp.add_argument("--output", "--out", "-o", help="file (default stdout)")
    exp.add_argument("--report", help="only this report's events")
    exp.add_argument("--evidence", action="store_true", help="a signed evidence bundle (zip)")
    exp.add_argument("--period", metavar="YYYY-MM", help="with --evidence: the period")

    sub.add_parser("info", help="paths, effective config and where each value came from")

    state = sub.add_parser(
        "state", help="the local state file: a safe copy of it, or a new one made from IFS"
    )
    state_sub = state.add_subparsers(dest="state_command", required=True)
    backup = state_sub.add_parser(
        "backup",
        help="copy the state file to FILE (a new file), consistent even while a cycle runs; "
        "restore: docs/reliability.md",
    )
    backup.add_argument("file", metavar="FILE")
    rebuild = state_sub.add_parser(
        "rebuild",
        help="make the state again from IFS and Expensify (what was posted, labelled, "
        "reversed) after it was lost or damaged; says what it could not know",
    )
    rebuild.add_argument(
        "--force",
        action="store_true",
        help="replace a healthy state file too (it is kept beside the new one)",
    )
    rebuild.add_argument("--json", action="store_true", dest="rebuild_json", help="print JSON")

    close = sub.add_parser("close", help="period-close tie-out: Expensify approved vs IFS posted")
    close.add_argument("--period", required=True, help="accounting period, YYYY-MM")
    close.add_argument("--json", action="store_true", dest="close_json", help="print JSON")
    close.add_argument("--csv", help="write the tie-out as CSV to this file")
    close.add_argument("--html", help="write the printable close report (HTML) to this file")
    close.add_argument(
        "--accrue-card-spend",
        action="store_true",
        help="accrue the period's card spend not yet reported (one voucher per company; "
        "shown only, unless --confirm); also reverses card accruals that are due",
    )
    close.add_argument(
        "--reverse-card-spend",
        action="store_true",
        help="reverse card-spend accruals due today (the next period's first day or later)",
    )
    close.add_argument(
        "--confirm",
        action="store_true",
        dest="close_confirm",
        help="with --accrue-card-spend / --reverse-card-spend: post (default: show)",
    )

    status = sub.add_parser(
        "status", help="last cycle, its age, held counts, oldest wait (exit 8 when stale)"
    )
    status.add_argument("--json", action="store_true", dest="status_json", help="print JSON")

    alerts = sub.add_parser("alerts", help="test the alert channels, run the checks, SMTP login")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True)
    alerts_sub.add_parser("test", help="send a test alert on every configured channel")
    alerts_sub.add_parser("check", help="alert on refusals, long holds and staleness now")
    login = alerts_sub.add_parser("smtp-login", help="store the SMTP login in the keyring")
    login.add_argument("--user", required=True, help="SMTP user name")
    login.add_argument("--secret-stdin", action="store_true", help="read the password from stdin")

    serve = sub.add_parser("serve", help="the console in a browser (textual-serve)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=8566, help="0: any free port")
    serve.add_argument(
        "--token",
        help="required off loopback: TOKEN, or 'auto' to generate one (env ML_CONSOLE_SERVE_TOKEN)",
    )
    serve.add_argument("--public-url", help="the URL browsers use (behind a reverse proxy)")

    adopt = sub.add_parser("adopt", help="link vouchers IFS already holds for Expensify reports")
    adopt.add_argument("--confirm", action="store_true", help="record the links (default: show)")
    adopt.add_argument("--json", action="store_true", dest="adopt_json", help="print JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    tokens = list(sys.argv[1:] if argv is None else argv)
    _Parser.secret_context = any(token in _SECRET_COMMANDS for token in tokens)
    args = parser.parse_args(tokens)
    if args.home:
        os.environ["ML_CONSOLE_HOME"] = args.home
    if args.config:
        os.environ["ML_CONSOLE_CONFIG"] = args.config
    if args.as_of:
        # The environment carries it to everything this process starts (the demo's simulators).
        os.environ["ML_CONSOLE_AS_OF"] = args.as_of
    elif os.environ.get("ML_CONSOLE_AS_OF", "").strip():
        from console.clock import AsOfError, as_of

        try:
            as_of()
        except AsOfError as exc:
            print(f"ml-console: {exc}", file=sys.stderr)
            sys.exit(2)
    try:
        code = _dispatch(args, parser)
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # `ml-console held --json | head`: the reader left; say nothing more on a closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    except Exception as exc:
        damaged = _damaged_state(exc)
        if damaged is None:
            raise
        print(f"ml-console: {damaged}", file=sys.stderr)
        code = int(damaged.exit_code)
    sys.exit(int(code))


def _damaged_state(exc: BaseException) -> DamagedState | None:
    """The DamagedState (exit 7) an error met while using the state file stands for, or None:
    a full disk, a read-only or damaged file is one sentence, never a traceback."""
    from console.config import resolve_paths
    from console.errors import ConsoleError
    from console.state_check import classify

    try:
        state_file = resolve_paths().state_file
    except ConsoleError:
        return None
    return classify(exc, state_file)


# Each command's entry point as "module:function", imported only when that command runs: the
# start-up of `--version` and `--help` pays for none of them (bench/startup_bench.py).
_COMMANDS = {
    "sim": "console.sim.server:run_sim_command",
    "demo": "console.commands.demo:run_demo_command",
    "close": "console.commands.close:run_close_command",
    "adopt": "console.commands.adopt:run_adopt_command",
    "status": "console.commands.status:run_status_command",
    "alerts": "console.commands.alerts:run_alerts_command",
    "serve": "console.commands.serve:run_serve_command",
    "ifs": "console.commands.ifs_check:run_ifs_command",
    "audit": "console.commands.audit:run_audit_command",
}


def _run(entry: str, args: argparse.Namespace) -> int:
    """Import `entry` ("module:function") and run it with the parsed arguments."""
    import importlib

    module, _, function = entry.partition(":")
    return int(getattr(importlib.import_module(module), function)(args))


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    cmd = args.command
    if cmd in _COMMANDS:
        return _run(_COMMANDS[cmd], args)
    if cmd == "replay" and args.confirm_change:
        return _run("console.commands.confirm_change:run_confirm_change_command", args)
    if cmd is not None:
        return _run("console.commands.state:run_command", args)
    if args.auto:
        return _run("console.commands.auto:run_auto_command", args)
    if args.dry_run or args.json or args.every:
        parser.error("--dry-run, --json and --every go with --auto")
    # The TUI sits above the core: it is looked up by name so that no module of `console`
    # depends on `screens` (import-linter contract) and the headless paths never load Textual.
    return _run("screens.startup:run_tui", args)


if __name__ == "__main__":  # pragma: no cover
    main()
