"""`ml-console alerts ...`: send a test alert, run the state checks, store the SMTP login.

- `alerts test`: one test alert on every configured channel; exit 0 when all delivered, 1
  when one failed (the reason on stderr), 2 when no channel is configured.
- `alerts check`: the checks `--auto` runs after each cycle that read only the state file
  (IFS refusals since the last check, reports held too long, staleness), for a monitor timer
  beside the sync; sends what applies, exit 0 (an alert never fails it).
- `alerts smtp-login --user NAME --secret-stdin`: the SMTP password into the keyring (it is
  never in the config file, never echoed).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TextIO

from console.errors import ConfigError, ConsoleError
from console.exitcodes import ExitCode


def run_alerts_command(
    args: argparse.Namespace,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        if args.alerts_command == "smtp-login":
            return _smtp_login(args, stdin or sys.stdin, out)
        if args.alerts_command == "test":
            return _test(out, err)
        return _check(out, err)
    except ConsoleError as exc:
        from console.commands.auto import exit_code_for

        print(f"ml-console: {exc}", file=err)
        return int(exit_code_for(exc))


def _smtp_login(args: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    from console.secrets import SecretStore, abbreviate

    if args.secret_stdin:
        secret = stdin.read().removesuffix("\n").removesuffix("\r")
    elif stdin.isatty():
        secret = getpass.getpass("SMTP password: ")
    else:
        raise ConfigError("no terminal to ask the SMTP password on: pass --secret-stdin")
    store = SecretStore()
    store.set("smtp", args.user, secret)
    out.write(
        f"smtp: login stored for user name {abbreviate(args.user)} in the keyring "
        f"({store.describe_backend()})\n"
    )
    return int(ExitCode.OK)


def _test(out: TextIO, err: TextIO) -> int:
    from console.alerts import Alert, Alerter, open_secrets
    from console.config import load_settings

    cfg = load_settings().settings.alerts
    if not cfg.enabled:
        raise ConfigError("no alert channel: set [alerts] webhook_url or email_to")
    alerter = Alerter(cfg, open_secrets(), err)
    failed = alerter.send([Alert("test", "test alert", ("If you read this, alerts reach you.",))])
    out.write(f"sent on: {', '.join(alerter.sent) or 'nothing'}\n")
    return int(ExitCode.UNEXPECTED if failed else ExitCode.OK)


def _check(out: TextIO, err: TextIO) -> int:
    from console.alerts import Alerter, open_secrets, state_alerts
    from console.config import load_settings
    from console.store import Store

    loaded = load_settings()
    cfg = loaded.settings.alerts
    if not cfg.enabled:
        raise ConfigError("no alert channel: set [alerts] webhook_url or email_to")
    if not loaded.paths.state_file.exists():
        out.write("nothing synced here yet\n")
        return int(ExitCode.OK)
    with Store(loaded.paths.state_file) as store:
        alerts = state_alerts(store, cfg)
    Alerter(cfg, open_secrets(), err).send(alerts)
    for alert in alerts:
        out.write(f"{alert.kind}: {alert.title}\n")
    if not alerts:
        out.write("nothing to alert\n")
    return int(ExitCode.OK)
