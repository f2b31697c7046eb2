"""`ml-console replay REPORT_ID… --confirm-change`: the operator confirms reports changed (or
rejected) in Expensify after they were posted. Same exit codes as `--auto`; stdout carries the
JSON summary of the cycle that posted the reversal and the new accrual."""

from __future__ import annotations

import argparse
import json
import sys

from console.errors import ConfigError, ConsoleError
from console.exitcodes import ExitCode


def run_confirm_change_command(args: argparse.Namespace) -> int:
    from console.commands.auto import exit_code_for, open_engine
    from console.config import load_settings

    ids = list(dict.fromkeys(args.report_ids or []))
    try:
        if not ids:
            raise ConfigError("name the reports whose change to confirm")
        settings = load_settings().settings
        engine = open_engine(actor=settings.operator.name or _os_user())
    except ConsoleError as exc:
        print(f"ml-console: {exc}", file=sys.stderr)
        return int(exit_code_for(exc))
    code = ExitCode.OK
    try:
        for rid in ids:
            try:
                summary = engine.confirm_change(rid)
            except ConsoleError as exc:
                print(f"ml-console: {exc}", file=sys.stderr)
                code = max(code, exit_code_for(exc)) if code else exit_code_for(exc)
                continue
            sys.stdout.write(json.dumps(summary.to_json(), default=str) + "\n")
            print(
                f"ml-console: {rid}: {len(summary.reversals)} reversal(s),"
                f" {summary.posted} accrual(s) posted, held {summary.held}",
                file=sys.stderr,
            )
            if summary.needs_attention and code == ExitCode.OK:
                code = ExitCode.ATTENTION
    finally:
        engine.close()
    return int(code)


def _os_user() -> str:
    from console.audit import os_user

    return os_user()
