"""`ml-console state rebuild` as a flow: the local state made again from IFS and Expensify.

IFS is the record of what was posted: every voucher of ours it holds (ReferenceNumber
`EXP:`, `REV:`, `CARD:`, `CARD-REV:`; hold table and GL, all dates) is recorded in the
ledger as posted, through console/flows/holdings.py's `recover`, so nothing is posted again
and every reversal still due follows. Expensify gives each posted report's content (one
export by ID per 200 reports) and whether it carries the export label already (a second
export by ID, leaving the labelled out); a report IFS holds but Expensify does not return
cannot be recorded (its reversal cannot be planned) and is named. What neither system holds
is listed as unknown (`UNKNOWABLE`): the operator reads it before the next cycle.

The command (console/commands/state.py) decides whether the file may be replaced: a missing
or damaged file (exit 7) is rebuilt; a healthy one only with --force. The file replaced is
kept beside the new one (`set_aside`), never deleted.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from console.flows import holdings
from console.session import Session
from console.state_check import DamagedState, check

# What the state held that neither IFS nor Expensify can give back.
UNKNOWABLE = (
    "the audit trail before the rebuild (its events and signed checkpoints stay in the file"
    " set aside; `ml-console audit verify` there, or an `audit export --evidence` bundle)",
    "mapping rules and value overrides set in the console, and their history",
    "holds and their reasons, exclusions, confirmed duplicate transactions: reports not"
    " posted are fetched and evaluated afresh by the next cycle",
    "changes to a posted report in Expensify before the rebuild: its content now is taken"
    " as the posted one",
    "the runs, the poll cursor and this hour's Expensify request budget",
)


@dataclass
class Rebuilt:
    """What `state rebuild` recorded, and what it could not."""

    vouchers_read: int = 0
    recorded: Counter[str] = field(default_factory=Counter)  # kind → vouchers
    labelled: int = 0  # recovered reports already labelled in Expensify
    to_label: int = 0  # recovered reports the next cycle labels
    not_recorded: list[str] = field(default_factory=list)
    twice: dict[str, tuple[str, ...]] = field(default_factory=dict)
    set_aside: list[str] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        return bool(self.not_recorded or self.twice)

    def to_json(self) -> dict[str, Any]:
        return {
            "vouchersRead": self.vouchers_read,
            "recorded": dict(sorted(self.recorded.items())),
            "labelled": self.labelled,
            "toLabel": self.to_label,
            "notRecorded": self.not_recorded,
            "heldTwice": {ref: list(labels) for ref, labels in self.twice.items()},
            "setAside": self.set_aside,
            "unknown": list(UNKNOWABLE),
        }


def condition(state_file: Path, schema_version: int) -> str:
    """ "missing", "healthy", or the damage (DamagedState's sentence) of the state file."""
    if not state_file.exists() or state_file.stat().st_size == 0:
        return "missing"
    try:
        check(state_file, schema_version)
    except DamagedState as exc:
        return str(exc)
    return "healthy"


def set_aside(state_file: Path, stamp: datetime) -> list[Path]:
    """Rename the state file and its companions to `…replaced-{stamp}`: kept, out of the
    way. Returns the new names."""
    moved = []
    suffix = f".replaced-{stamp:%Y%m%dT%H%M%S}"
    for side in ("", "-wal", "-shm"):
        path = Path(f"{state_file}{side}")
        if path.exists():
            target = Path(f"{state_file}{suffix}{side}")
            os.replace(path, target)
            moved.append(target)
    return moved


def put_back(state_file: Path, moved: list[Path]) -> None:
    """Undo `set_aside` after a rebuild that did not finish: the new, partial state goes and
    the files set aside come back."""
    for side in ("", "-wal", "-shm"):
        Path(f"{state_file}{side}").unlink(missing_ok=True)
    for path in moved:
        name = str(path)
        for side in ("-wal", "-shm", ""):
            if name.endswith(side):
                base = name.removesuffix(side) if side else name
                original = Path(f"{base.rsplit('.replaced-', 1)[0]}{side}")
                os.replace(path, original)
                break


def rebuild(session: Session) -> Rebuilt:
    """Record everything of ours IFS holds in the (new, empty) state of `session`."""
    out = Rebuilt()
    held = holdings.read(session, None)
    out.vouchers_read = held.read
    out.twice = dict(held.twice)
    report_ids = sorted({h.reference.report_id for h in held.of_kind("accrual")})
    reports = holdings.reports_of(session, report_ids)
    with session.lock:
        done = holdings.recover(session, held, reports)
    out.recorded = done.recorded
    out.not_recorded = done.not_recorded
    recovered = sorted(
        {h.reference.report_id for h in held.of_kind("accrual") if h.text in done.references}
    )
    unlabelled = _unlabelled(session, recovered)
    labelled = [rid for rid in recovered if rid not in unlabelled]
    session.store.mark_labelled(labelled)
    out.labelled, out.to_label = len(labelled), len(recovered) - len(labelled)
    # The next cycle need not read IFS again today: this was that read, over all time.
    key = f"{session.today().isoformat()}|{session.store.path}"
    twice = {ref: list(labels) for ref, labels in out.twice.items()}
    session.store.set_cursor(json.dumps({"key": key, "twice": twice}), holdings.HOLDINGS_CURSOR)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(out.recorded.items())) or "nothing"
    session.audit.record(
        "state-rebuilt",
        f"state rebuilt from IFS and Expensify: {kinds} recorded as posted;"
        f" {len(out.not_recorded)} voucher(s) could not be recorded;"
        f" {len(out.twice)} reference(s) held twice in IFS",
        data=out.to_json(),
    )
    session.audit.seal()
    return out


def _unlabelled(session: Session, report_ids: list[str]) -> set[str]:
    """Which of these reports do not carry the export label yet (an export by ID that
    leaves the labelled ones out)."""
    label = session.settings.expensify.export_label
    out: set[str] = set()
    for start in range(0, len(report_ids), holdings.EXPORT_CHUNK):
        chunk = report_ids[start : start + holdings.EXPORT_CHUNK]
        result = session.track(
            "expensify",
            partial(
                session.expensify.export_reports,
                report_ids=chunk,
                states=holdings.REPORT_STATES,
                exclude_label=label,
            ),
        )
        out.update(r.reportID for r in result.reports)
    return out
