"""`ml-console replay REPORT_ID… --confirm-change`: the operator confirms reports changed (or
rejected) in Expensify after they were posted. Same exit codes as `--auto`; stdout carries the
JSON summary of the cycle that posted the reversal and the new accrual."""

from __future__ import annotations

import argparse
import json

from console.commands.terminal import Terminal
from console.errors import ConfigError, ConsoleError
from console.exitcodes import ExitCode


def run_confirm_change_command(args: argparse.Namespace, term: Terminal | None = None) -> int:
    from console.commands.auto import exit_code_for

    term = term or Terminal()
    ids = list(dict.fromkeys(args.report_ids or []))
    try:
        if not ids:
            raise ConfigError("name the reports whose change to confirm")
        engine = term.open_engine()
    except ConsoleError as exc:
        return term.failed(exc)
    code = ExitCode.OK
    try:
        for rid in ids:
            try:
                summary = engine.confirm_change(rid)
            except ConsoleError as exc:
                print(f"ml-console: {exc}", file=term.err)
                code = max(code, exit_code_for(exc)) if code else exit_code_for(exc)
                continue
            term.out.write(json.dumps(summary.to_json(), default=str) + "\n")
            print(
                f"ml-console: {rid}: {len(summary.reversals)} reversal(s),"
                f" {summary.posted} accrual(s) posted, held {summary.held}",
                file=term.err,
            )
            if summary.needs_attention and code == ExitCode.OK:
                code = ExitCode.ATTENTION
    finally:
        engine.close()
    return int(code)
