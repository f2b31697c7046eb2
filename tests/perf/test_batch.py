"""$batch posting and the request budget: each voucher in its own change set fails alone, a
lost batch answer is resolved voucher by voucher, and requests per posted report stay within
the budget (docs/performance.md). Fast sims, in-process engine (bench/world.py)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from bench.world import demo, world
from console.ifs import batch as batch_wire
from console.sim.dataset import parse_dataset
from console.sim.faults import FaultSpec
from console.store import AuditFilter
from tests.conftest import small_dataset_raw


def _small():
    return parse_dataset(small_dataset_raw(), "small dataset")


def _planned_bodies(w) -> list[dict[str, Any]]:
    plan = w.engine.plan()
    return [v.to_ifs_body() for v in plan.vouchers]


def test_a_rejected_change_set_fails_alone(small_dataset):
    with world(_small(), batch=True) as w:
        w.engine.fetch()
        bodies = _planned_bodies(w)
        assert len(bodies) == 3
        bad = dict(bodies[1])
        rows = [dict(r) for r in bad["VoucherRowArray"]]
        rows[0]["CurrencyDebetAmount"] = rows[0]["CurrencyDebetAmount"] + 1
        rows[0]["DebetAmount"] = rows[0]["DebetAmount"] + 1
        bad["VoucherRowArray"] = rows
        results = w.ifs.post_vouchers_batch([bodies[0], bad, bodies[2]])
        assert [r.outcome for r in results] == ["posted", "failed", "posted"]
        assert results[1].error is not None and "VOUCHER_NOT_BALANCED" in str(results[1].error)
        in_ifs = sorted(v["ReferenceNumber"] for v in w.sims.ifs.vouchers())
        assert in_ifs == sorted([bodies[0]["ReferenceNumber"], bodies[2]["ReferenceNumber"]])
        assert [r.voucher.ReferenceNumber for r in results if r.voucher] == [
            bodies[0]["ReferenceNumber"],
            bodies[2]["ReferenceNumber"],
        ]


def test_a_change_set_is_all_or_nothing_and_resolves_content_id_references():
    """Real flow: a change set holds the temporary voucher (Content-ID 1), its rows
    (`$1/VoucherPostingArray`) and CreateVoucher on `$1` with `If-Match: $1`. When
    CreateVoucher refuses the voucher, the temporary voucher and rows made earlier in the
    same change set do not remain either."""
    with world(_small()) as w:
        w.engine.fetch()
        body = _planned_bodies(w)[0]
        bad = dict(body)
        rows = [dict(r) for r in body["VoucherRowArray"]]
        rows[0]["CurrencyDebetAmount"] += 1
        rows[0]["DebetAmount"] += 1
        bad["VoucherRowArray"] = rows
        wire, content_type, parts = batch_wire.build_voucher_batch([bad], w.ifs._wire)
        assert parts == len(rows) + 2  # header, rows, CreateVoucher
        url = w.ifs.odata_root + "VoucherEntryAssistantHandling.svc/$batch"
        auth = {"Authorization": f"Bearer {w.ifs.token.get()}"}
        response = httpx.post(url, content=wire, headers={"Content-Type": content_type, **auth})
        assert response.status_code == 200, response.text
        answers = batch_wire.parse_batch_answer(response.content, response.headers["content-type"])
        assert len(answers) == 1 and not isinstance(answers[0], list)
        # The request that failed is the last one, CreateVoucher: the $1 references resolved.
        assert answers[0].status == 400 and answers[0].content_id == str(parts)
        assert batch_wire.error_of(answers[0])[0] == "VOUCHER_NOT_BALANCED"
        assert w.sims.ifs.vouchers() == []  # rolled back: no voucher,
        assert w.sims.ifs.temp_vouchers() == []  # and no temporary voucher or rows
        # The good voucher alone in its change set is created, numbered by CreateVoucher.
        wire, content_type, _ = batch_wire.build_voucher_batch([body], w.ifs._wire)
        response = httpx.post(url, content=wire, headers={"Content-Type": content_type, **auth})
        assert response.status_code == 200
        (answer,) = batch_wire.parse_batch_answer(
            response.content, response.headers["content-type"]
        )
        assert isinstance(answer, list) and [a.content_id for a in answer] == [
            str(n) for n in range(1, parts + 1)
        ]
        assert [v["ReferenceNumber"] for v in w.sims.ifs.vouchers()] == [body["ReferenceNumber"]]
        assert w.sims.ifs.temp_vouchers() == []


def _count(w, method: str, path_end: str) -> int:
    return sum(
        r["count"]
        for r in w.ifs_requests_by()
        if r["method"] == method and r["path"].endswith(path_end)
    )


def test_a_lost_batch_answer_is_reconciled_voucher_by_voucher():
    with world(demo(), batch=True, batch_size=40) as w:
        # The first batch of vouchers is committed by IFS, then its answer is lost (reference
        # data is read in `$batch` requests too: those are not the ones dropped here).
        route = r"VoucherEntryAssistantHandling\.svc/\$batch"
        w.sims.ifs.faults.add(FaultSpec(fault="drop-after", route=route, count=1))
        summary = w.engine.run_cycle()
        assert summary.unknown == []
        assert summary.posted == 591 and summary.failed == 0
        refs = Counter(v["ReferenceNumber"] for v in w.sims.ifs.vouchers())
        assert len(refs) == 591 and set(refs.values()) == {1}  # none posted twice
        assert w.sims.ifs.temp_vouchers() == []  # nothing half-made left behind
        assert w.engine.store.audit_count(AuditFilter(types=("reconciled",))) == 40
        # Each was looked up by its own ReferenceNumber in the hold table's rows, where IFS
        # had put it (so the GL's rows were not read for it), besides the one read of each,
        # before anything was sent, of what IFS already held.
        assert _count(w, "GET", "VoucherRowsAnalysis.svc/VoucherRowSet") == 40 + 1
        assert _count(w, "GET", "GLVoucherRowsAnalysis.svc/GenLedVoucherRowSet") == 1


@pytest.mark.parametrize(
    ("options", "budget"),
    [({"concurrency": 1}, 1.1), ({"concurrency": 4}, 1.1), ({"batch": True}, 0.05)],
)
def test_ifs_requests_per_posted_report_stay_in_budget(options, budget):
    """IFS's real flow (temporary voucher, rows, CreateVoucher) costs one `$batch` request
    per voucher, or one per `batch_size` vouchers with `ifs.batch`. Every request the
    simulator saw counts: the token, the reference data, the reads of what IFS already
    holds (hold table and GL)."""
    with world(demo(), **options) as w:
        summary = w.engine.run_cycle()
        assert summary.posted == 591
        per_report = w.ifs_requests() / summary.posted
        assert per_report <= budget
        assert summary.requests["ifs"] == w.ifs_requests()
        posts = _count(w, "POST", "VoucherEntryAssistantHandling.svc/$batch")
        assert posts == (-(-591 // 50) if options.get("batch") else 591)
        # A cycle with nothing new costs the same few reads, however many reports exist.
        before = w.ifs_requests()
        again = w.engine.run_cycle()
        assert again.posted == 0 and w.ifs_requests() - before <= 6
        assert _count(w, "POST", "VoucherEntryAssistantHandling.svc/$batch") == posts


def test_expensify_requests_per_cycle_are_constant():
    counts = []
    for n in (40, 160):
        with world(demo(n)) as w:
            w.engine.run_cycle()
            counts.append(w.expensify_requests())
    assert counts[0] == counts[1] <= 5
