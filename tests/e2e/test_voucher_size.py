"""A voucher is one `$batch` change set on IFS's real API, and a tenant takes a bounded number
of requests per `$batch` (`ifs.max_batch_parts`): a report too big for one voucher request is
held with a reason that says so (the rest posts), and batches of vouchers are cut to fit."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from console.sim.dataset import parse_dataset
from tests.conftest import _serve, small_dataset_raw
from tests.e2e.conftest import Console, make_console, sim_get

BIG_ID = "90000077"
LINES = 9  # 9 lines + temporary voucher + credit row + CreateVoucher = 12 requests > 10


def world_raw() -> dict[str, Any]:
    raw = small_dataset_raw()
    reports = raw["expensify"]["reports"]
    first = next(r for r in reports if r["reportID"] == "90000001")
    big = copy.deepcopy(first)
    big["reportID"] = BIG_ID
    template = first["transactionList"][0]
    big["transactionList"] = [
        {**copy.deepcopy(template), "transactionID": f"74000000000000000{i:02d}"}
        for i in range(LINES)
    ]
    reports.append(big)
    return raw


@pytest.fixture
def console(tmp_path) -> Iterator[Console]:
    for sims in _serve(parse_dataset(world_raw(), "small world and a big report")):
        yield make_console(tmp_path, sims)


def accruals(console: Console) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ref in {v["ReferenceNumber"] for v in sim_get(console.ifs_url, "/__sim/vouchers")}:
        if ref.startswith("EXP:"):
            rid = ref.split(":")[1]
            counts[rid] = counts.get(rid, 0) + 1
    return counts


def voucher_batches(console: Console) -> int:
    log = sim_get(console.ifs_url, "/__sim/requests")
    return sum(
        r["count"]
        for r in log["by_route"]
        if r["method"] == "POST" and r["path"].endswith("VoucherEntryAssistantHandling.svc/$batch")
    )


def test_a_report_too_big_for_one_voucher_request_is_held_and_the_rest_posts(console):
    console.write_config(ifs={"max_batch_parts": 10})
    code, summary, err = console.auto()
    assert code == 3, err
    held = {h["reportID"]: h["reason"] for h in summary["held_reports"]}
    assert held[BIG_ID] == f"too-many-lines:{LINES}"
    posted = accruals(console)
    assert BIG_ID not in posted
    assert all(posted[r] == 1 for r in ("90000001", "90000002", "90000003"))
    text = console.run("held")
    assert "ifs.max_batch_parts" in text.stdout and BIG_ID in text.stdout
    # With the tenant's real limit it fits, and posts once.
    console.write_config(ifs={"max_batch_parts": 1000})
    code, summary, err = console.auto()
    assert BIG_ID not in {h["reportID"] for h in summary["held_reports"]}, err
    assert accruals(console)[BIG_ID] == 1


def test_batches_of_vouchers_are_cut_to_the_part_limit(console):
    # Four vouchers of 5 to 11 requests each: one $batch would hold them all by batch_size,
    # but not within 12 requests, so they go in several (and none is refused as too big).
    console.write_config(ifs={"batch": True, "batch_size": 50, "max_batch_parts": 12})
    code, summary, err = console.auto()
    assert code == 3, err
    assert summary["failed"] == 0, summary
    posted = accruals(console)
    assert all(posted[r] == 1 for r in ("90000001", "90000002", "90000003", BIG_ID)), posted
    assert 2 <= voucher_batches(console) <= summary["posted"], json.dumps(summary)[:500]
