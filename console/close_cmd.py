"""`ml-console close --period YYYY-MM [--json] [--csv FILE] [--html FILE]`.

Ties the period out (console.close) and prints it: a text table on stdout, or the JSON object
with --json; --csv and --html write the CSV and the printable report. The unexplained items go
to stderr. Company-card spend not yet on a report is shown in its own section of each output;
it never changes the tie-out's result.

Exit codes: 0 every difference explained; 3 something is unexplained; 2 configuration (a
missing credential or a bad --period included); 4 authentication refused; 5 a service stayed
unreachable; 1 unexpected.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from console.errors import ConsoleError
from console.exitcodes import ExitCode


def _write(path: str, text: str) -> None:
    target = Path(path).expanduser()
    if target.parent and not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def run_close_command(
    args: argparse.Namespace,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    opener: Callable[[], Any] | None = None,
) -> int:
    from console.auto import exit_code_for, open_engine
    from console.close import CARDS_UNAVAILABLE, ClosePeriod, run_close
    from console.close_report import render_csv, render_html, render_text

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        period = ClosePeriod.parse(str(args.period))
    except ValueError as exc:
        print(f"ml-console: {exc}", file=err)
        return int(ExitCode.USAGE)
    try:
        engine = (opener or (lambda: open_engine(actor=_actor())))()
    except ConsoleError as exc:
        print(f"ml-console: {exc}", file=err)
        return int(exit_code_for(exc))
    try:
        tie = run_close(engine, period)
    except ConsoleError as exc:
        print(f"ml-console: {exc}", file=err)
        return int(exit_code_for(exc))
    except ValueError as exc:  # e.g. no company configured, or a period that is no month
        print(f"ml-console: {exc}", file=err)
        return int(ExitCode.USAGE)
    finally:
        engine.close()

    try:
        if getattr(args, "csv", None):
            _write(args.csv, render_csv(tie))
        if getattr(args, "html", None):
            _write(args.html, render_html(tie))
    except OSError as exc:
        print(f"ml-console: cannot write the close report: {exc}", file=err)
        return int(ExitCode.USAGE)
    if getattr(args, "close_json", False):
        out.write(json.dumps(tie.to_json(), ensure_ascii=False) + "\n")
    else:
        out.write(render_text(tie))
    out.flush()
    if tie.source != "expensify":
        print(f"ml-console: warning: {tie.source_note}; the local copy was used", file=err)
    cards = tie.card_spend
    if cards is not None and cards.status == CARDS_UNAVAILABLE:
        print(f"ml-console: warning: card spend not yet reported: {cards.note}", file=err)
    for item in tie.unexplained:
        print(f"ml-console: unexplained: report {item.report_id}: {item.reason}", file=err)
    undiff = [r for r in tie.rows if r.difference]
    if not tie.unexplained and undiff:  # cannot happen by construction; never hide it
        for r in undiff:
            print(
                f"ml-console: unexplained difference {r.difference} {r.currency} on company "
                f"{r.company} account {r.account} cost centre {r.cost_centre or '-'}",
                file=err,
            )
    return int(ExitCode.OK if tie.balanced else ExitCode.ATTENTION)


def _actor() -> str:
    from console.audit import os_user
    from console.config import load_settings

    try:
        name = load_settings().settings.operator.name
    except ConsoleError:
        name = ""
    return str(name or os_user())
