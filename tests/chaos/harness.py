"""What every chaos suite shares: a world (simulators + a real console installation), the
end-state invariants ("every postable report in IFS exactly once, held ones held, local state
agrees, labels only after posting, audit chain intact"), and the figures file.

The console is the real `ml-console` command, run as a subprocess with its own `--home` and an
isolated keyring (the e2e harness's `make_console`). The simulators run in the test process on
loopback, so tests read their state through the `/__sim/` control routes.

Figures: each suite adds its counts to a JSON file (`$ML_CONSOLE_CHAOS_OUT`, default
`.chaos/figures.json` at the repository root) under a profile, "chaos" for `pytest -m chaos`
and "ci" otherwise; `python -m bench.chaos_table` prints it. Writes are serialised with an
flock, so pytest-xdist workers may record at the same time.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from console import money
from console.sim.dataset import parse_dataset
from console.sim.demo import DEMO_ATTENTION, DEMO_EXPORT_LABEL, build_demo_dataset
from tests.e2e.conftest import Console, make_console

LABEL = DEMO_EXPORT_LABEL
FETCHED_STATES = ("APPROVED", "REIMBURSED")
REPO_ROOT = Path(__file__).resolve().parents[2]
FIGURES_ENV = "ML_CONSOLE_CHAOS_OUT"
PROFILE_ENV = "ML_CONSOLE_CHAOS_PROFILE"  # set by conftest: "chaos" or "ci"
RUN_ENV = "ML_CONSOLE_CHAOS_RUN"  # one id per pytest run: a new run starts its profile afresh


# ------------------------------------------------------------------ the world
@dataclass
class World:
    """Simulators over a dataset and one console installation pointed at them."""

    raw: dict[str, Any]
    sims: Any
    console: Console
    expected_held: dict[str, str] = field(default_factory=dict)  # reportID -> reason prefix

    @property
    def fetchable(self) -> set[str]:
        return {
            r["reportID"]
            for r in self.raw["expensify"]["reports"]
            if r.get("status") in FETCHED_STATES
        }

    @property
    def postable(self) -> set[str]:
        return self.fetchable - set(self.expected_held)


@contextlib.contextmanager
def demo_world(tmp_path: Path, reports: int = 40, *, fast: bool = True) -> Iterator[World]:
    """A mid-size demo world (its DEMO_ATTENTION reports are held whatever the size)."""
    raw = build_demo_dataset(reports=reports)
    with world_from(tmp_path, raw, fast=fast) as world:
        world.expected_held = {a["reportID"]: a["reason"] for a in DEMO_ATTENTION}
        yield world


@contextlib.contextmanager
def world_from(tmp_path: Path, raw: dict[str, Any], *, fast: bool = True) -> Iterator[World]:
    from console.sim.server import SimServers

    dataset = parse_dataset(copy.deepcopy(raw), "chaos dataset")
    with SimServers(dataset, fast=fast) as sims:
        console = make_console(tmp_path, sims)
        if fast:
            # The client's own Expensify budget (20 a minute, kept in the state file across
            # runs) would pace dozens of restarts; the fast simulator has no limit to respect.
            console.write_config(expensify={"limit_10s": 1000, "limit_60s": 6000})
        yield World(raw, sims, console)


# ------------------------------------------------------------------ reading the sims
def sim_json(url: str, path: str, method: str = "GET", body: Any = None) -> Any:
    response = httpx.request(method, url + path, json=body, timeout=30)
    assert response.status_code < 300, f"{method} {path}: {response.text[:300]}"
    return money.loads(response.content) if response.content else None


def vouchers(sims: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sim_json(sims.ifs_url, "/__sim/vouchers")
    return result


def report_of(voucher: dict[str, Any]) -> str:
    return str(voucher["ReferenceNumber"]).split(":")[1]


def labels(sims: Any) -> dict[str, list[str]]:
    return {r["reportID"]: r["labels"] for r in sim_json(sims.expensify_url, "/__sim/reports")}


def request_counts(url: str) -> Counter[tuple[str, str, int]]:
    out: Counter[tuple[str, str, int]] = Counter()
    for row in sim_json(url, "/__sim/requests")["by_route"]:
        out[(row["method"], row["path"], row["status"])] += row["count"]
    return out


def requests_total(url: str, *, path_part: str = "", method: str = "") -> int:
    return sum(
        n
        for (m, p, _s), n in request_counts(url).items()
        if path_part in p and (not method or m == method)
    )


def add_fault(url: str, **spec: Any) -> None:
    sim_json(url, "/__sim/faults", "POST", spec)


def injected(url: str) -> int:
    """How many times the faults set on this simulator fired."""
    return sum(int(f["fired"]) for f in sim_json(url, "/__sim/faults"))


# ------------------------------------------------------------------ the invariants
@dataclass
class Verdict:
    posted: int
    duplicates: int
    lost: int
    problems: list[str]

    def assert_clean(self) -> None:
        assert not self.problems, "\n".join(self.problems)


def reference_kind(voucher: dict[str, Any]) -> str:
    """`EXP`, `REV`, `CARD` or `CARD-REV`: what a voucher is, from its ReferenceNumber."""
    return str(voucher["ReferenceNumber"]).split(":", 1)[0]


def ledger_counts(all_vouchers: list[dict[str, Any]]) -> tuple[Counter[str], Counter[str]]:
    """(accrual vouchers per report, vouchers per ReferenceNumber). A report has one accrual
    and, once due, its reversal (`REV:` with the accrual's version): two vouchers, no
    duplicate. A duplicate is a ReferenceNumber IFS holds twice."""
    accruals = Counter(report_of(v) for v in all_vouchers if reference_kind(v) == "EXP")
    references = Counter(str(v["ReferenceNumber"]) for v in all_vouchers)
    return accruals, references


def unmatched_reversals(all_vouchers: list[dict[str, Any]]) -> list[str]:
    """Reversals whose accrual (same report, same version) IFS does not hold."""
    accrued = {
        tuple(str(v["ReferenceNumber"]).split(":")[1:3])
        for v in all_vouchers
        if reference_kind(v) == "EXP"
    }
    return sorted(
        str(v["ReferenceNumber"])
        for v in all_vouchers
        if reference_kind(v) == "REV"
        and tuple(str(v["ReferenceNumber"]).split(":")[1:3]) not in accrued
    )


def verify_world(world: World, *, audit: bool = True) -> Verdict:
    """Check the end state after the last cycle completed; collects every problem."""
    problems: list[str] = []
    all_vouchers = vouchers(world.sims)
    in_ifs, references = ledger_counts(all_vouchers)
    twice = {ref: n for ref, n in references.items() if n > 1}
    duplicates = sum(n - 1 for n in twice.values())
    duplicates += sum(n - 1 for n in in_ifs.values() if n > 1)  # a report accrued twice
    if duplicates:
        problems.append(
            f"duplicates in IFS: references {twice}, "
            f"accruals per report { {r: n for r, n in in_ifs.items() if n > 1} }"
        )
    orphans = unmatched_reversals(all_vouchers)
    if orphans:
        problems.append(f"reversals of accruals IFS does not hold: {orphans}")
    lost = sorted(world.postable - set(in_ifs))
    if lost:
        problems.append(f"postable reports not in IFS: {lost}")
    wrongly = sorted(set(in_ifs) & set(world.expected_held))
    if wrongly:
        problems.append(f"held reports posted: {wrongly}")
    strangers = sorted(set(in_ifs) - world.fetchable)
    if strangers:
        problems.append(f"vouchers for reports never fetchable: {strangers}")

    # Labels: on every posted report, on nothing unposted (never too early).
    lab = labels(world.sims)
    unlabelled = sorted(r for r in in_ifs if LABEL not in lab.get(r, []))
    if unlabelled:
        problems.append(f"posted but not labelled in Expensify: {unlabelled}")
    early = sorted(r for r, ls in lab.items() if LABEL in ls and r not in in_ifs)
    if early:
        problems.append(f"labelled in Expensify without a voucher in IFS: {early}")

    # Local state agrees with IFS.
    db = sqlite3.connect(f"file:{world.console.home / 'state.sqlite3'}?mode=ro", uri=True)
    try:
        status = dict(db.execute("SELECT report_id, status FROM reports").fetchall())
        posted_rows = db.execute(
            "SELECT report_id, COUNT(*) FROM ledger WHERE kind = 'accrual' AND outcome = 'posted'"
            " GROUP BY report_id"
        ).fetchall()
        open_intents = db.execute(
            "SELECT COUNT(*) FROM ledger WHERE outcome IN ('intent', 'unknown')"
        ).fetchone()[0]
        unlabelled_local = db.execute(
            "SELECT COUNT(*) FROM ledger WHERE kind = 'accrual' AND outcome = 'posted'"
            " AND labelled_at IS NULL"
        ).fetchone()[0]
    finally:
        db.close()
    local_posted = {r for r, _n in posted_rows}
    twice_local = sorted(r for r, n in posted_rows if n > 1)
    if twice_local:
        problems.append(f"recorded as posted twice locally: {twice_local}")
    if local_posted != set(in_ifs):
        problems.append(
            f"local posted != IFS: only local {sorted(local_posted - set(in_ifs))}, "
            f"only IFS {sorted(set(in_ifs) - local_posted)}"
        )
    not_posted_status = sorted(r for r in in_ifs if status.get(r) != "posted")
    if not_posted_status:
        problems.append(f"in IFS but local status not posted: {not_posted_status}")
    for rid, reason in world.expected_held.items():
        if status.get(rid) != "held":
            problems.append(f"{rid} should be held ({reason}), local status {status.get(rid)}")
    if open_intents:
        problems.append(f"{open_intents} intent(s) left without an outcome")
    if unlabelled_local:
        problems.append(f"{unlabelled_local} posting(s) not recorded as labelled")

    if audit:
        proc = world.console.run("audit", "verify")
        if proc.returncode != 0:
            problems.append(f"audit verify exit {proc.returncode}: {proc.stdout}{proc.stderr}")
    return Verdict(len(in_ifs), duplicates, len(lost), problems)


# ------------------------------------------------------------------ figures
def figures_path() -> Path:
    return Path(os.environ.get(FIGURES_ENV) or REPO_ROOT / ".chaos" / "figures.json")


def profile() -> str:
    return os.environ.get(PROFILE_ENV, "ci")


@contextlib.contextmanager
def _locked_figures() -> Iterator[dict[str, Any]]:
    path = figures_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            data = {}
        yield data
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)


def record(suite: str, row: str, **counts: int) -> None:
    """Add counts to figures[profile][suite][row] (numbers add up across tests)."""
    with _locked_figures() as data:
        prof = data.setdefault(profile(), {})
        run = os.environ.get(RUN_ENV, "")
        if prof.get("run") != run:
            prof.clear()
            prof.update(run=run, started=datetime.now(UTC).isoformat(timespec="seconds"))
        target = prof.setdefault(suite, {}).setdefault(row, {})
        for key, value in counts.items():
            target[key] = int(target.get(key, 0)) + int(value)
        prof["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
