"""Report IDs as Expensify may send them — a colon, a slash, a quote, a space, unicode, one ID
the prefix of another — post, adopt, tie out and reverse under the right report; an ID too
long for IFS's ReferenceNumber is held with a sentence saying so, never cut."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from console import reference
from console.sim.dataset import parse_dataset
from tests.close.helpers import planned_vouchers, post_by_hand
from tests.close.test_close_e2e import FAST_EXPENSIFY, ifs_vouchers
from tests.conftest import small_dataset_raw
from tests.e2e.conftest import make_console

RENAMED = {
    "90000001": "JH16",
    "90000002": "JH16:1",  # JH16 is its prefix up to the colon
    "90000003": "a/b 'c' d Ünïcødé 報告",
}
TOO_LONG = "R" * (reference.max_report_id_length() + 1)
DEC_1 = {"ML_CONSOLE_AS_OF": "2026-12-01"}


@pytest.fixture
def awkward_sims() -> Any:
    from console.sim.server import SimServers

    raw = small_dataset_raw()
    reports = raw["expensify"]["reports"]
    for r in reports:
        r["reportID"] = RENAMED.get(r["reportID"], r["reportID"])
    long_one = json.loads(json.dumps(next(r for r in reports if r["reportID"] == "JH16")))
    long_one["reportID"] = TOO_LONG
    for n, tx in enumerate(long_one["transactionList"]):
        tx["transactionID"] = f"79000000000000000{n:02d}"
    reports.append(long_one)
    with SimServers(parse_dataset(raw, "awkward IDs"), fast=True) as servers:
        yield servers


def accruals_per_report(sims: Any) -> Counter[str]:
    return Counter(
        rid for v in ifs_vouchers(sims) if (rid := reference.report_of(v["ReferenceNumber"]))
    )


def reversals_per_report(sims: Any) -> Counter[str]:
    out: Counter[str] = Counter()
    for v in ifs_vouchers(sims):
        parsed = reference.parse(v["ReferenceNumber"])
        if parsed is not None and parsed.kind == "reversal":
            out[parsed.report_id] += 1
    return out


def test_awkward_report_ids_post_adopt_tie_out_and_reverse(tmp_path, awkward_sims):
    sims = awkward_sims
    # An earlier installation posted JH16:1; its state is gone. Adopt must link it to
    # JH16:1 — not to JH16, whose ID ends where JH16:1's first colon is.
    planned = planned_vouchers(sims, tmp_path / "before", ["JH16:1"])
    earlier = post_by_hand(sims, tmp_path, planned["JH16:1"].to_ifs_body())

    console = make_console(tmp_path, sims)
    console.write_config(expensify=FAST_EXPENSIFY)
    adopt = console.run("adopt", "--confirm", "--json")
    assert adopt.returncode == 0, adopt.stderr
    links = {lk["reportID"]: lk["voucher"] for lk in json.loads(adopt.stdout)["links"]}
    assert links == {"JH16:1": earlier}

    code, summary, err = console.auto()
    assert code == 3, err  # 90000004 (missing cost centre) and the too-long ID are held
    assert sorted(v["reportID"] for v in summary["vouchers"]) == ["JH16", RENAMED["90000003"]]
    assert accruals_per_report(sims) == Counter(["JH16", "JH16:1", RENAMED["90000003"]])
    held = json.loads(console.run("held", "--json").stdout)
    too_long = next(h for h in held if h["reportID"] == TOO_LONG)
    assert too_long["reason"] == "malformed:report-id-too-long"
    assert "33 characters" in json.dumps(held) and "never cut" in json.dumps(held)

    # Each report ties out with its own voucher.
    close = console.run("close", "--period", "2026-11", "--json")
    assert close.returncode in (0, 3), close.stderr
    reports = {r["reportID"]: r for r in json.loads(close.stdout)["reports"]}
    for rid in ("JH16", "JH16:1", RENAMED["90000003"]):
        assert reports[rid]["disposition"] == "posted", reports[rid]
        assert len(reports[rid]["vouchers"]) == 1
    assert reports["JH16:1"]["vouchers"] == [earlier]
    assert reports["JH16"]["vouchers"] != [earlier]

    # On the first day of December every accrual is reversed once, under its own report.
    code, summary, err = console.auto(env=DEC_1)
    assert sorted(r["reportID"] for r in summary["reversals"]) == sorted(
        ["JH16", "JH16:1", RENAMED["90000003"]]
    ), err
    console.auto(env=DEC_1)
    assert reversals_per_report(sims) == Counter(["JH16", "JH16:1", RENAMED["90000003"]])
    assert accruals_per_report(sims) == Counter(["JH16", "JH16:1", RENAMED["90000003"]])
