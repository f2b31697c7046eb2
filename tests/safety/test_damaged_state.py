"""A damaged, truncated, read-only, full or newer state file: one sentence naming the file and
the way out, exit 7, from every command that opens the state; never a traceback, and never an
`audit verify` that says intact. `state backup` makes the copy the way out restores."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from console.exitcodes import ExitCode
from console.store import SCHEMA_VERSION, Store
from tests.e2e.conftest import Console, make_console

# Commands that open the state file, each of which must refuse a damaged one.
COMMANDS = [("held",), ("audit", "verify"), ("status",), ("--auto", "--json")]


def synced(tmp_path: Path, small_sims) -> tuple[Console, Path]:
    console = make_console(tmp_path, small_sims)
    code, summary, err = console.auto()
    assert code == 3 and summary["posted"] == 3, err
    return console, console.home / "state.sqlite3"


def assert_refused(proc: subprocess.CompletedProcess[str], state: Path, *words: str) -> str:
    """Exit 7, one sentence on stderr naming the file, nothing on stdout, no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == ExitCode.DAMAGED_STATE == 7, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    sentence = lines[0]
    assert sentence.startswith(f"ml-console: the state file {state} ")
    for word in words:
        assert word in sentence, sentence
    return sentence


def test_garbage_in_the_middle_is_found_and_audit_verify_does_not_say_intact(tmp_path, small_sims):
    console, state = synced(tmp_path, small_sims)
    size = state.stat().st_size
    with state.open("r+b") as fh:
        fh.seek(size // 2)
        fh.write(random.Random(14).randbytes(8192))
    for command in COMMANDS:
        proc = console.run(*command)
        sentence = assert_refused(proc, state, "is damaged", "ml-console state backup FILE")
        assert "intact" not in proc.stdout + sentence
    assert "docs/reliability.md" in sentence


def test_a_truncated_file_is_named_as_such(tmp_path, small_sims):
    console, state = synced(tmp_path, small_sims)
    os.truncate(state, state.stat().st_size // 2)
    for command in COMMANDS:
        assert_refused(console.run(*command), state, "is truncated", "state backup")


def test_a_file_that_is_not_a_database(tmp_path, small_sims):
    console, state = synced(tmp_path, small_sims)
    state.write_bytes(b"this is not a database\n" * 400)
    assert_refused(console.run("held"), state, "is not a SQLite database")


def test_a_schema_newer_than_this_build_asks_for_an_upgrade(tmp_path, small_sims):
    console, state = synced(tmp_path, small_sims)
    db = sqlite3.connect(state)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    for command in COMMANDS:
        sentence = assert_refused(console.run(*command), state, "newer than this ml-console")
        assert f"schema version {SCHEMA_VERSION + 1}" in sentence and "upgrade" in sentence
    # Nothing was migrated, rewritten or posted over it.
    db = sqlite3.connect(state)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    db.close()


def test_a_read_only_home(tmp_path, small_sims):
    """The home and the state file are readable but not writable by the user running the
    console. As root, the console runs without the capabilities that override file modes."""
    console, state = synced(tmp_path, small_sims)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root without setpriv: file modes cannot be enforced")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    home = console.home
    shutil.rmtree(home / "logs", ignore_errors=True)
    for path in home.iterdir():
        if path.is_file():
            path.chmod(0o444)
    home.chmod(0o555)
    try:
        for command in (("held",), ("audit", "verify"), ("--auto", "--json")):
            proc = subprocess.run(
                [*prefix, sys.executable, "-m", "console.commands.main", "--home", str(home),
                 *command],
                capture_output=True, text=True, timeout=60, env=console.env,
            )  # fmt: skip
            if command[0] == "--auto":
                # It says first that it cannot write its log file, and logging falls back to
                # stderr; it tightens the home to 0700 (its owner may), so the file is named.
                proc.stderr = "\n".join(
                    line
                    for line in proc.stderr.splitlines()
                    if "log file" not in line and line != "cycle not started"
                )
            sentence = assert_refused(proc, state, "is read-only for this user")
            assert "writable" in sentence
    finally:
        home.chmod(stat.S_IRWXU)
        for path in home.iterdir():
            if path.is_file():
                path.chmod(stat.S_IRUSR | stat.S_IWUSR)


# The disk fills up: every connection the console opens may not grow the file past the pages
# it has (SQLite's max_page_count), which is what SQLITE_FULL looks like on a full disk.
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


def test_a_full_disk_mid_cycle_is_exit_7_and_the_next_cycle_carries_on(tmp_path, small_sims):
    console = make_console(tmp_path, small_sims)
    state = console.home / "state.sqlite3"
    Store(state).close()  # the schema is there; the first cycle's reports need new pages
    db = sqlite3.connect(state)
    db.execute("VACUUM")  # no free page left for them either
    db.close()
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, "--home", str(console.home), "--auto", "--json"],
        capture_output=True, text=True, timeout=120, env=console.env,
    )  # fmt: skip
    sentence = assert_refused(proc, state, "the disk is full", "free space on the disk")
    assert str(console.home) in sentence
    # Space freed: the next cycle posts everything, nothing twice.
    code, summary, err = console.auto()
    assert code == 3 and summary["posted"] == 3 and summary["failed"] == 0, err
    vouchers = httpx_vouchers(console)
    assert len(vouchers) == len(set(vouchers)) == 3


def httpx_vouchers(console: Console) -> list[str]:
    from tests.e2e.conftest import sim_get

    rows = sim_get(console.ifs_url, "/__sim/vouchers")
    return sorted({row["ReferenceNumber"] for row in rows})


def test_backup_is_a_consistent_copy_that_restores(tmp_path, small_sims):
    console, state = synced(tmp_path, small_sims)
    copy = tmp_path / "backup.sqlite3"
    proc = console.run("state", "backup", str(copy))
    assert proc.returncode == 0, proc.stderr
    assert f"state backed up to {copy}" in proc.stderr
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert not Path(f"{copy}-wal").exists()  # one self-contained file
    # A second backup never overwrites the first.
    again = console.run("state", "backup", str(copy))
    assert again.returncode == 2 and "already exists" in again.stderr
    # Damage the state, restore the copy as docs/reliability.md says, and carry on.
    os.truncate(state, 4096)
    assert console.run("held").returncode == 7
    for side in (Path(f"{state}-wal"), Path(f"{state}-shm")):
        side.unlink(missing_ok=True)
    shutil.copy2(copy, state)
    held = console.run("held", "--json")
    assert held.returncode in (0, 3) and "90000004" in held.stdout, held.stderr
    assert console.run("audit", "verify").returncode == 0
    code, summary, err = console.auto()
    assert code == 3 and summary["posted"] == 0 and summary["held"] == 1, err


def test_backup_refuses_a_damaged_state(tmp_path, small_sims):
    console, state = synced(tmp_path, small_sims)
    os.truncate(state, state.stat().st_size // 2)
    proc = console.run("state", "backup", str(tmp_path / "copy.sqlite3"))
    assert_refused(proc, state, "is truncated")
    assert not (tmp_path / "copy.sqlite3").exists()
