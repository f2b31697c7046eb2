"""The smaller points of issue 14, each as a user meets it: `held` and `exclude` exit codes,
strict config types, no secret echoed from the command line, all-zero reports settled
visibly, the same Expensify transaction on a second report held until confirmed."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from console.config import SettingsError, load_settings, resolve_paths
from console.sim.dataset import parse_dataset
from tests.conftest import _serve, small_dataset_raw
from tests.e2e.conftest import Console, make_console, sim_get

ZERO_ID = "90000088"
DUPLICATE_ID = "90000099"
SHARED_TID = "7000000000000000001"  # on 90000001 of the small world


def world_raw() -> dict[str, Any]:
    raw = small_dataset_raw()
    reports = raw["expensify"]["reports"]
    first = next(r for r in reports if r["reportID"] == "90000001")
    zero = copy.deepcopy(first)
    zero["reportID"] = ZERO_ID
    for i, line in enumerate(zero["transactionList"]):
        line.update(transactionID=f"730000000000000000{i}", amount=0, convertedAmount=0)
    duplicate = copy.deepcopy(first)
    duplicate["reportID"] = DUPLICATE_ID
    duplicate["approved"] = "2026-11-20 09:00:00"
    duplicate["transactionList"] = [copy.deepcopy(first["transactionList"][0])]  # same ID
    reports += [zero, duplicate]
    return raw


@pytest.fixture
def console(tmp_path) -> Iterator[Console]:
    for sims in _serve(parse_dataset(world_raw(), "small world, zero and duplicate")):
        yield make_console(tmp_path, sims)


def held_reasons(console: Console) -> tuple[int, dict[str, str]]:
    proc = console.run("held", "--json")
    return proc.returncode, {h["reportID"]: h["reason"] for h in json.loads(proc.stdout)}


def accruals(console: Console) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ref in {v["ReferenceNumber"] for v in sim_get(console.ifs_url, "/__sim/vouchers")}:
        if ref.startswith("EXP:"):
            rid = ref.split(":")[1]
            counts[rid] = counts.get(rid, 0) + 1
    return counts


def test_all_zero_report_is_held_visibly_and_settled_by_exclude(console):
    code, summary, err = console.auto()
    assert code == 3, err
    code, held = held_reasons(console)
    assert code == 3  # like --auto: held reports need attention
    assert held[ZERO_ID] == "zero-amount:2"
    text = console.run("held")
    assert text.returncode == 3 and "nothing to post" in text.stdout
    assert ZERO_ID not in accruals(console)
    done = console.run("exclude", ZERO_ID, "--reason", "empty report, checked in Expensify")
    assert done.returncode == 0, done.stderr
    code, summary, err = console.auto()
    assert ZERO_ID not in {h["reportID"] for h in summary["held_reports"]}
    code, held = held_reasons(console)
    assert ZERO_ID not in held
    status = json.loads(console.run("status", "--json").stdout)
    assert status["reports"]["excluded"] == 1


def test_same_transaction_on_a_second_report_is_held_until_confirmed(console):
    code, summary, err = console.auto()
    assert code == 3, err
    reason = f"duplicate-transaction:{SHARED_TID}:90000001"
    assert {"reportID": DUPLICATE_ID, "reason": reason} in summary["held_reports"]
    assert accruals(console)["90000001"] == 1 and DUPLICATE_ID not in accruals(console)
    # Another cycle changes nothing: it stays held, nothing posts twice.
    code, summary, err = console.auto()
    assert {"reportID": DUPLICATE_ID, "reason": reason} in summary["held_reports"]
    assert summary["posted"] == 0
    # Confirming a report that is not held as a duplicate is a usage error.
    wrong = console.run("replay", "90000001", "--confirm-duplicate")
    assert wrong.returncode == 2 and "not held as a duplicate transaction" in wrong.stderr
    ok = console.run("replay", DUPLICATE_ID, "--confirm-duplicate")
    assert ok.returncode == 3, ok.stderr  # like --auto: 90000004 and the zero report stay held
    assert json.loads(ok.stdout)["posted"] == 1
    assert accruals(console)[DUPLICATE_ID] == 1 and accruals(console)["90000001"] == 1
    events = [json.loads(x) for x in console.run("audit", "export").stdout.splitlines()]
    confirmed = [e for e in events if "confirmed_duplicates" in (e["data"] or {})]
    assert [(e["type"], e["report_id"]) for e in confirmed] == [("replayed", DUPLICATE_ID)]
    assert confirmed[0]["data"]["confirmed_duplicates"] == [reason]
    # The confirmation lasts: the next cycle neither holds nor re-posts it.
    code, summary, err = console.auto()
    assert DUPLICATE_ID not in {h["reportID"] for h in summary["held_reports"]}
    assert accruals(console)[DUPLICATE_ID] == 1


def test_held_is_0_when_nothing_is_held_and_exclude_uses_exit_2(tmp_path, small_sims):
    console = make_console(tmp_path, small_sims)
    code, _summary, err = console.auto()
    assert code == 3, err
    posted = console.run("exclude", "90000001", "--reason", "oops")
    assert posted.returncode == 2
    assert "90000001 is posted and cannot be excluded" in posted.stderr
    unknown = console.run("exclude", "12345678", "--reason", "typo")
    assert unknown.returncode == 2 and "not known to this console" in unknown.stderr
    assert console.run("exclude", "90000004", "--reason", "not ours").returncode == 0
    empty = console.run("held")
    assert empty.returncode == 0 and "nothing is held" in empty.stderr
    assert console.run("held", "--json").returncode == 0


# ------------------------------------------------------------------ strict config types


@pytest.mark.parametrize(
    ("toml", "key", "said"),
    [
        ("[ifs]\npage_size = true\n", "page_size", "must be a whole number"),
        ('[ifs]\nbatch = "yes"\n', "batch", "must be true or false"),
        ('[ifs]\npage_size = "500"\n', "page_size", "must be a whole number"),
        ("[sync]\nauto_replay = 1\n", "auto_replay", "must be true or false"),
    ],
)
def test_config_types_are_strict(tmp_path, toml, key, said):
    (tmp_path / "config.toml").write_text(toml)
    with pytest.raises(SettingsError) as caught:
        load_settings(resolve_paths(tmp_path), environ={})
    assert key in str(caught.value) and said in str(caught.value)


def test_strict_config_on_the_command_line_and_environment(tmp_path):
    (tmp_path / "config.toml").write_text("[ifs]\npage_size = true\n")
    proc = run_cli(tmp_path, "status")
    assert proc.returncode == 2 and "[ifs] page_size: must be a whole number" in proc.stderr
    # Environment overrides are text: numbers and true/false still convert, nonsense is refused.
    (tmp_path / "config.toml").write_text("[ifs]\npage_size = 200\n")
    env = {"ML_CONSOLE_IFS__PAGE_SIZE": "500", "ML_CONSOLE_IFS__BATCH": "true"}
    loaded = load_settings(resolve_paths(tmp_path), environ=env)
    assert loaded.settings.ifs.page_size == 500 and loaded.settings.ifs.batch is True
    with pytest.raises(SettingsError) as caught:
        load_settings(resolve_paths(tmp_path), environ={"ML_CONSOLE_IFS__BATCH": "yes"})
    assert "ML_CONSOLE_IFS__BATCH" in str(caught.value) and "batch" in str(caught.value)
    # A date may still be written quoted, as design.md's example does.
    (tmp_path / "config.toml").write_text('[expensify]\napproved_after = "2026-10-01"\n')
    settings = load_settings(resolve_paths(tmp_path), environ={}).settings
    assert str(settings.expensify.approved_after) == "2026-10-01"


# ------------------------------------------------------------------ no secret from argv

SECRET = "hunter2-Sup3rS3cret"


def run_cli(home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console.commands.main", "--home", str(home), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ("credentials", "set", "expensify", "--user-id", "partner@x.example", SECRET),
        ("credentials", "set", SECRET),
        ("credentials", "rotate", "ifs", "--client-id", "c", f"--secret={SECRET}"),
        ("alerts", "smtp-login", "--user", "ops", SECRET),
        ("serve", SECRET),
    ],
)
def test_a_secret_typed_as_an_argument_is_never_echoed(tmp_path, argv):
    proc = run_cli(tmp_path, *argv)
    assert proc.returncode == 2
    assert SECRET not in proc.stdout + proc.stderr
    assert "error:" in proc.stderr


def test_other_commands_still_say_what_was_wrong(tmp_path):
    proc = run_cli(tmp_path, "held", "extra-word")
    assert proc.returncode == 2 and "extra-word" in proc.stderr
