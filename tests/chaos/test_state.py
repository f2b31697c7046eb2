"""Chaos, state: the local state file is lost, restored, swapped, corrupted or runs out of disk
mid-period, and the console must neither post twice nor forget what is due.

Each scenario damages the home of a running installation, then runs the real `ml-console`
until a cycle completes, and the harness proves the end state (tests/chaos/harness.py,
`verify_world`: every postable report in IFS exactly once, no ReferenceNumber twice, local
state agrees with IFS, labels only on posted reports, the audit chain verifies), plus: every
reversal due on the suite's day is in IFS exactly once (`due_reversal_problems`). Where the
console must refuse to run (a corrupt file, a full disk) the refusal is exit 7 and one
sentence naming the file and the way out, never a traceback.

Scenarios (`SCENARIOS`): restore an older copy of the home's state (`state backup` taken
earlier, copied back in), delete the state, swap in the state of another home (a second
installation on the same IFS and Expensify), corrupt it (8 KB of garbage mid-file; the way
out taken is `state rebuild`), fill the disk (SQLite's max_page_count, as
tests/safety/test_damaged_state.py; then space is freed).

CI: every scenario once, in turn, on one world (new reports between scenarios; the day moves
to 1 December after the first, so November's accruals fall due for reversal). `make chaos`
(`-m chaos`): 12 rounds of scenarios in random order on a larger world.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest

from console import clock, reference
from console.sim.demo import DEMO_ACCRUED_EXPENSES_ACCOUNT
from tests.chaos.harness import World, demo_world, record, verify_world, vouchers
from tests.chaos.test_crash import add_reports
from tests.e2e.conftest import Console, make_console

NOV_30 = date(2026, 11, 30)  # the suite's day (tests/conftest.py)
DEC_1 = date(2026, 12, 1)

# The disk fills up: no connection may grow the file past the pages it has.
FULL_DISK = """
import sqlite3, sys
_connect = sqlite3.connect
def connect(*args, **kwargs):
    db = _connect(*args, **kwargs)
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {max(pages, 1)}")
    return db
sqlite3.connect = connect
from console.commands.main import main
sys.argv = ["ml-console", *sys.argv[1:]]
main()
"""


class Home:
    """The world's console, the day its cycles run on, and a second installation."""

    def __init__(self, world: World, tmp_path: Path) -> None:
        self.world = world
        self.tmp_path = tmp_path
        self.day = NOV_30
        self.other: Console | None = None
        self.older_copy: Path | None = None
        self.refused = 0
        # The audit chain in the state is another home's (signed with its key): `audit
        # verify` must say so here, not pass.
        self.foreign_chain = False

    @property
    def console(self) -> Console:
        return self.world.console

    @property
    def state(self) -> Path:
        return self.console.home / "state.sqlite3"

    def env(self) -> dict[str, str]:
        return {"ML_CONSOLE_AS_OF": self.day.isoformat()}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.console.run(*args, env=self.env(), timeout=180)

    def cycles(self, limit: int = 4) -> None:
        """Cycles until one completes (0 or 3), then one more: what the first posted is
        labelled and its reversals (due at once) follow."""
        for _ in range(limit):
            proc = self.run("--auto", "--json")
            assert proc.returncode in (0, 3, 4, 5), proc.stderr  # never a traceback (1)
            if proc.returncode in (0, 3):
                proc = self.run("--auto", "--json")
                assert proc.returncode in (0, 3), proc.stderr
                return
        raise AssertionError(f"no cycle completed in {limit} tries: {proc.stderr}")

    def refused_with(self, proc: subprocess.CompletedProcess[str], *words: str) -> None:
        """Exit 7 and one sentence naming the state file and the way out."""
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 7, proc.stderr
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0].startswith(f"ml-console: the state file {self.state} "), lines[0]
        for word in words:
            assert word in lines[0], lines[0]
        self.refused += 1

    def remove_state(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.state}{suffix}").unlink(missing_ok=True)


@contextlib.contextmanager
def as_of(day: date) -> Iterator[None]:
    before = os.environ.get("ML_CONSOLE_AS_OF")
    os.environ["ML_CONSOLE_AS_OF"] = day.isoformat()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("ML_CONSOLE_AS_OF", None)
        else:
            os.environ["ML_CONSOLE_AS_OF"] = before


# ------------------------------------------------------------------ the scenarios
def restore_older_copy(home: Home) -> None:
    """The copy taken at the start (`state backup`) comes back: IFS holds what it lacks."""
    assert home.older_copy is not None
    home.remove_state()
    shutil.copyfile(home.older_copy, home.state)
    home.state.chmod(0o600)
    home.foreign_chain = False


def delete_state(home: Home) -> None:
    home.remove_state()
    home.foreign_chain = False


def swap_in_another_home(home: Home) -> None:
    """The state of a second installation on the same IFS and Expensify (its cycle ran at
    the start) is copied over this home's."""
    assert home.other is not None
    other_state = home.other.home / "state.sqlite3"
    home.remove_state()
    backup = home.other.run("state", "backup", str(home.tmp_path / "other-copy.sqlite3"))
    assert backup.returncode == 0, backup.stderr
    shutil.move(str(home.tmp_path / "other-copy.sqlite3"), home.state)
    assert other_state.exists()
    home.foreign_chain = True
    # Refused to be taken for this home's evidence: signed with the other home's key.
    proc = home.run("audit", "verify")
    assert proc.returncode == 3 and "not by the audit key" in proc.stdout + proc.stderr, proc


def corrupt(home: Home) -> None:
    """8 KB of garbage mid-file: refused (exit 7), and the way out is `state rebuild`."""
    size = home.state.stat().st_size
    with home.state.open("r+b") as fh:
        fh.seek(size // 2)
        fh.write(random.Random(size).randbytes(8192))
    home.refused_with(home.run("--auto", "--json"), "is damaged", "ml-console state rebuild")
    rebuilt = home.run("state", "rebuild")
    assert rebuilt.returncode in (0, 3), rebuilt.stderr
    assert "not known after a rebuild" in rebuilt.stderr
    home.foreign_chain = False  # a new chain, this home's


def fill_the_disk(home: Home) -> None:
    """New reports to store, and no page left for them: exit 7 with its sentence; then
    space is freed (the next cycles run unhindered)."""
    db = sqlite3.connect(home.state)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("VACUUM")
    finally:
        db.close()
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, "--home", str(home.console.home), "--auto", "--json"],
        capture_output=True, text=True, timeout=180, env={**home.console.env, **home.env()},
    )  # fmt: skip
    home.refused_with(proc, "the disk is full", "free space on the disk")


SCENARIOS: dict[str, Callable[[Home], None]] = {
    "restore an older copy": restore_older_copy,
    "delete the state": delete_state,
    "swap in another home's state": swap_in_another_home,
    "corrupt the state": corrupt,
    "fill the disk": fill_the_disk,
}


# ------------------------------------------------------------------ proving it
def due_reversal_problems(world: World, today: date) -> tuple[int, list[str]]:
    """(reversals due, problems): every accrual IFS holds with reimbursable lines (a row on
    the accrued-expenses account: the card credit is not reversed by default) whose next
    period has begun by `today` is reversed by exactly one `REV:{reportID}:{version}`."""
    all_vouchers = vouchers(world.sims)
    reversals: Counter[str] = Counter()
    for v in all_vouchers:
        parsed = reference.parse(str(v["ReferenceNumber"]))
        if parsed is not None and parsed.kind == "reversal":
            reversals[parsed.accrual.encode()] += 1
    due = 0
    problems = []
    for v in all_vouchers:
        ref = str(v["ReferenceNumber"])
        parsed = reference.parse(ref)
        if parsed is None or parsed.kind != "accrual":
            continue
        day = date.fromisoformat(str(v["VoucherDate"])[:10])
        reimbursable = any(
            r["Account"] == DEMO_ACCRUED_EXPENSES_ACCOUNT for r in v["VoucherRowArray"]
        )
        if not reimbursable or clock.month_start(day, 1) > today:
            continue
        due += 1
        if reversals[ref] != 1:
            problems.append(f"{ref} (dated {day}) reversed {reversals[ref]} times, due once")
    return due, problems


def prove(home: Home, scenario: str, profile: str, *, audit: bool) -> None:
    verdict = verify_world(home.world, audit=audit and not home.foreign_chain)
    due, problems = due_reversal_problems(home.world, home.day)
    verdict.problems += problems
    record("state", f"{scenario} ({profile})", posted=verdict.posted, reversals=due,
           refused=home.refused, duplicates=verdict.duplicates,
           lost=verdict.lost + len(problems))  # fmt: skip
    home.refused = 0
    verdict.assert_clean()


def start(world: World, tmp_path: Path) -> Home:
    """A home that has run, with an older copy of its state kept and a second installation
    on the same services that has run once too."""
    home = Home(world, tmp_path)
    world.console.write_config(expensify={"limit_10s": 1000, "limit_60s": 6000})
    home.cycles()
    home.older_copy = tmp_path / "older.sqlite3"
    backup = home.run("state", "backup", str(home.older_copy))
    assert backup.returncode == 0, backup.stderr
    other = make_console(tmp_path / "other", world.sims)
    other.write_config(expensify={"limit_10s": 1000, "limit_60s": 6000})
    proc = other.run("--auto", "--json", env=home.env())
    assert proc.returncode in (0, 3), proc.stderr
    home.other = other
    return home


def play(
    home: Home, name: str, rng: random.Random, profile: str, new_reports: int, *, audit: bool
) -> None:
    """New reports still to post when the damage hits, the damage, cycles, the proof (the
    previous scenario's cycles moved the state on since the copies were taken)."""
    # Approved on the day the cycles run (the suite's clock reads ML_CONSOLE_AS_OF).
    with as_of(home.day):
        add_reports(home.world, new_reports, rng)
    SCENARIOS[name](home)
    home.cycles()
    prove(home, name, profile, audit=audit)


# Delete first, so the older copy restored later is older than what IFS holds by then.
CI_ORDER = (
    "delete the state",
    "swap in another home's state",
    "restore an older copy",
    "corrupt the state",
    "fill the disk",
)


def test_state_scenarios_in_turn(tmp_path):
    """CI: each scenario once on one world; 1 December from the second on. The audit chain
    is verified once at the end (each scenario's own checks are proved after it)."""
    assert set(CI_ORDER) == set(SCENARIOS)
    rng = random.Random(14)
    with demo_world(tmp_path, reports=24) as world:
        home = start(world, tmp_path)
        for n, name in enumerate(CI_ORDER):
            play(home, name, rng, "CI", new_reports=2, audit=False)
            if n == 0:
                home.day = DEC_1
        proc = home.run("audit", "verify")  # the chain `state rebuild` began, and on
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.chaos
@pytest.mark.timeout(3600)
def test_state_scenarios_over_many_rounds(tmp_path):
    """Rounds of the scenarios in random order on a larger world; the end state is proved
    after every one."""
    rng = random.Random(2026)
    with demo_world(tmp_path, reports=60) as world:
        home = start(world, tmp_path)
        for round_no in range(12):
            names = list(SCENARIOS)
            rng.shuffle(names)
            for name in names:
                play(home, name, rng, "chaos", new_reports=4, audit=True)
            if round_no == 0:
                home.day = DEC_1
