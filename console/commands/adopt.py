"""`ml-console adopt`: propose links from vouchers IFS already holds to reports, and record
them with --confirm (console/flows/adopt.py)."""

from __future__ import annotations

import argparse
import json

from console.adopt import AdoptProposal
from console.commands.terminal import Terminal
from console.errors import ConsoleError
from console.exitcodes import ExitCode
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


def run_adopt_command(args: argparse.Namespace, term: Terminal | None = None) -> int:
    term = term or Terminal()
    out, err = term.out, term.err
    confirm = bool(getattr(args, "confirm", False))
    try:
        engine = term.open_engine()
    except ConsoleError as exc:
        return term.failed(exc)
    recorded = 0
    try:
        proposal, reports = read_proposal(engine)
        if confirm and proposal.links:
            recorded = record_links(engine, proposal.links, reports)
    except ConsoleError as exc:
        return term.failed(exc)
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
