"""`ml-console adopt`: propose links from vouchers IFS already holds to reports, and record
them with --confirm (console/flows/adopt.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from console.errors import ConsoleError
from console.exitcodes import ExitCode

if TYPE_CHECKING:
    from console.flows.cycle import Engine

    pass
from console.adopt import AdoptProposal
from console.flows.adopt import read_proposal, record_links


def render_text(p: AdoptProposal, *, confirmed: bool, recorded: int) -> str:
    out = [
        f"Adopt: {len(p.links)} link(s) proposed, {len(p.ambiguous)} ambiguous, "
        f"{len(p.already_linked)} already linked ({p.reports_read} approved report(s) in "
        f"Expensify, {p.vouchers_read} voucher(s) in IFS)"
    ]
    if p.links:
        out.append(f"  {'report':<12} {'voucher':<22} {'how':<9} {'date':<10} {'amount':>14}  why")
        for lk in p.links:
            out.append(
                f"  {lk.report_id:<12} {lk.voucher:<22} {lk.how:<9} {lk.voucher_date:<10} "
                f"{lk.amount:>14,.2f} {lk.currency}  {lk.why}"
            )
    for a in p.ambiguous:
        out.append(f"  ? {a.report_id}: {a.why}: {', '.join(a.vouchers)} (not linked)")
    for rid, why in p.skipped:
        out.append(f"  - {rid}: {why}")
    if confirmed:
        out.append(f"Recorded {recorded} link(s); they are labelled in Expensify on the next sync.")
    elif p.links:
        out.append("Dry run: nothing recorded. Run `ml-console adopt --confirm` to record these.")
    return "\n".join(out) + "\n"


def run_adopt_command(
    args: argparse.Namespace,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    opener: Callable[[], Engine] | None = None,
) -> int:
    import json

    from console.commands.auto import exit_code_for, open_engine
    from console.commands.close import _actor

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    confirm = bool(getattr(args, "confirm", False))
    try:
        engine = (opener or (lambda: open_engine(actor=_actor())))()
    except ConsoleError as exc:
        print(f"ml-console: {exc}", file=err)
        return int(exit_code_for(exc))
    recorded = 0
    try:
        proposal, reports = read_proposal(engine)
        if confirm and proposal.links:
            recorded = record_links(engine, proposal.links, reports)
    except ConsoleError as exc:
        print(f"ml-console: {exc}", file=err)
        return int(exit_code_for(exc))
    finally:
        engine.close()
    if getattr(args, "adopt_json", False):
        out.write(json.dumps(proposal.to_json(confirmed=confirm, recorded=recorded)) + "\n")
    else:
        out.write(render_text(proposal, confirmed=confirm, recorded=recorded))
    out.flush()
    for a in proposal.ambiguous:
        print(
            f"ml-console: ambiguous: report {a.report_id}: {a.why} ({', '.join(a.vouchers)})",
            file=err,
        )
    return int(ExitCode.ATTENTION if proposal.ambiguous else ExitCode.OK)
