"""`ml-console close --period YYYY-MM [--json] [--csv FILE] [--html FILE]
[--accrue-card-spend] [--reverse-card-spend] [--confirm]`.

Ties the period out (console.close) and prints it: a text table on stdout, or the JSON object
with --json; --csv and --html write the CSV and the printable report. The unexplained items go
to stderr. Company-card spend not yet on a report is shown in its own section of each output,
with where each company's accrual of it stands; it never changes the tie-out's result.

--accrue-card-spend shows the accrual voucher of that spend per company, and every card
reversal due today (console/card_accrual.py); --reverse-card-spend the reversals alone. Only
with --confirm are they posted (exactly once, under the posting lock). The plan or what was
posted follows the close output (text), or is the JSON object's `cardAccrual`.

Exit codes: 0 every difference explained; 3 something is unexplained, or a card voucher was
refused, failed or is in doubt; 2 configuration (a missing credential or a bad --period
included); 4 authentication refused; 5 a service stayed unreachable; 6 another run holds the
posting lock; 1 unexpected.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from console.card_accrual import CardAccrualRun
    from console.close import TieOut
    from console.session import Session

from console.commands.terminal import Terminal
from console.errors import ConsoleError
from console.exitcodes import ExitCode
from console.textsafe import json_text, visible, visible_text


def _write(path: str, text: str) -> None:
    target = Path(path).expanduser()
    if target.parent and not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def run_close_command(args: argparse.Namespace, term: Terminal | None = None) -> int:
    from console.close import CARDS_UNAVAILABLE, ClosePeriod
    from console.close_report import render_csv, render_html, render_text
    from console.flows.close import run_close

    term = term or Terminal()
    out, err = term.out, term.err
    accrue = bool(getattr(args, "accrue_card_spend", False))
    reverse = bool(getattr(args, "reverse_card_spend", False))
    confirm = bool(getattr(args, "close_confirm", False))
    if confirm and not (accrue or reverse):
        print(
            "ml-console: --confirm goes with --accrue-card-spend or --reverse-card-spend", file=err
        )
        return int(ExitCode.USAGE)
    try:
        period = ClosePeriod.parse(str(args.period))
    except ValueError as exc:
        print(f"ml-console: {exc}", file=err)
        return int(ExitCode.USAGE)
    try:
        engine = term.open_engine()
    except ConsoleError as exc:
        return term.failed(exc)
    card_run = None
    try:
        tie = run_close(engine, period)
        if accrue or reverse:
            tie, card_run = _card_spend_step(engine, tie, accrue, reverse, confirm)
    except ConsoleError as exc:
        return term.failed(exc)
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
        data = tie.to_json()
        if card_run is not None:
            data["cardAccrual"] = card_run.to_json()
        out.write(json_text(data) + "\n")
    else:
        out.write(render_text(tie))
        if card_run is not None:
            out.write("\n" + visible_text(card_run.render_text()))
    out.flush()
    if tie.source != "expensify":
        print(f"ml-console: warning: {tie.source_note}; the local copy was used", file=err)
    cards = tie.card_spend
    if cards is not None and cards.status == CARDS_UNAVAILABLE:
        print(f"ml-console: warning: card spend not yet reported: {cards.note}", file=err)
    for ref, labels in tie.held_twice.items():
        said = visible(f"IFS holds {ref} {len(labels)} times: vouchers {', '.join(labels)}")
        print(f"ml-console: held twice: {said}; reverse all but one", file=err)
    for item in tie.unexplained:
        said = visible(f"report {item.report_id}: {item.reason}")
        print(f"ml-console: unexplained: {said}", file=err)
    undiff = [r for r in tie.rows if r.difference]
    if not tie.unexplained and undiff:  # cannot happen by construction; never hide it
        for r in undiff:
            print(
                f"ml-console: unexplained difference {r.difference} {r.currency} on company "
                f"{r.company} account {r.account} cost centre {r.cost_centre or '-'}",
                file=err,
            )
    if card_run is not None:
        _card_warnings(card_run, err)
        if card_run.needs_attention:
            return int(ExitCode.ATTENTION)
    return int(ExitCode.OK if tie.balanced and not tie.held_twice else ExitCode.ATTENTION)


def _card_spend_step(
    engine: Session, tie: TieOut, accrue: bool, reverse: bool, confirm: bool
) -> tuple[TieOut, CardAccrualRun]:
    """Plan (with confirm: post) the card accrual and due reversals; the tie-out again with
    each company's accrual state as it now stands."""
    from dataclasses import replace

    from console.close import CARDS_NOT_READ, CARDS_READ, CardSpendSection
    from console.flows.card_accrual import read_accrual_states, run_card_accrual

    section = tie.card_spend or CardSpendSection(
        CARDS_NOT_READ, "card spend not read", engine.settings.posting.card_clearing_account, {}
    )
    card_run = run_card_accrual(
        engine, section, tie.period, accrue=accrue, reverse=reverse, confirm=confirm
    )
    if confirm and section.status == CARDS_READ:
        states = read_accrual_states(engine, section, tie.period, engine.reference())
        tie = replace(tie, card_spend=replace(section, accruals=tuple(states)))
    return tie, card_run


def _card_warnings(card_run: Any, err: TextIO) -> None:
    if card_run.unavailable:
        print(f"ml-console: card spend not accrued: {card_run.unavailable}", file=err)
    for company, why in card_run.refused:
        print(f"ml-console: card spend of company {company} not accrued: {why}", file=err)
    for s in card_run.differing:
        print(
            f"ml-console: warning: {s.reference} (voucher {s.voucher}) differs from the current "
            f"card spend by {s.difference:+,.2f} {s.currency}; left as posted, not re-accrued",
            file=err,
        )
    for r in card_run.results:
        if r.outcome in ("failed", "unknown"):
            print(f"ml-console: {r.voucher.reference}: {r.outcome}: {r.message}", file=err)
