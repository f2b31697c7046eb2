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
    with world(_small()) as w:
        w.engine.fetch()
        body = _planned_bodies(w)[0]
        etag = w.ifs.journal_template("10", "X").etag
        one, _ = batch_wire.build_batch([(body, etag)], "VoucherSet")
        # Hand-made change set: create the voucher (Content-ID 1), then a request that refers
        # to it as $1 and that IFS refuses: the voucher created first must not remain.
        boundary = "b1"
        cs = "c1"
        payload = batch_wire.money.dumps(body)
        text = (
            f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={cs}\r\n\r\n"
            f"--{cs}\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\n"
            f"POST VoucherSet HTTP/1.1\r\nContent-Type: application/json\r\nIf-Match: {etag}\r\n"
            f"\r\n{payload}\r\n"
            f"--{cs}\r\nContent-Type: application/http\r\nContent-ID: 2\r\n\r\n"
            "PATCH $1 HTTP/1.1\r\nContent-Type: application/json\r\nIf-Match: $1\r\n\r\n{}\r\n"
            f"--{cs}--\r\n--{boundary}--\r\n"
        )
        url = w.ifs.odata_root + "ManualVoucherHandling.svc/$batch"
        response = httpx.post(
            url,
            content=text.encode(),
            headers={
                "Content-Type": f"multipart/mixed; boundary={boundary}",
                "Authorization": f"Bearer {w.ifs.token.get()}",
            },
        )
        assert response.status_code == 200, response.text
        answers = batch_wire.parse_batch_answer(response.content, response.headers["content-type"])
        assert len(answers) == 1 and not isinstance(answers[0], list)
        assert answers[0].status == 405 and answers[0].content_id == "2"
        assert w.sims.ifs.vouchers() == []  # rolled back
        # The same voucher alone in its change set is created.
        response = httpx.post(
            url,
            content=one,
            headers={
                "Content-Type": _ct(one),
                "Authorization": f"Bearer {w.ifs.token.get()}",
            },
        )
        assert response.status_code == 200
        assert [v["ReferenceNumber"] for v in w.sims.ifs.vouchers()] == [body["ReferenceNumber"]]


def _ct(body: bytes) -> str:
    boundary = body.split(b"\r\n", 1)[0][2:].decode()
    return f"multipart/mixed; boundary={boundary}"


def test_a_lost_batch_answer_is_reconciled_voucher_by_voucher():
    with world(demo(), batch=True, batch_size=40) as w:
        # The first batch is committed by IFS, then its answer is lost.
        w.sims.ifs.faults.add(FaultSpec(fault="drop-after", route=r"\$batch", count=1))
        summary = w.engine.run_cycle()
        assert summary.unknown == []
        assert summary.posted == 591 and summary.failed == 0
        refs = Counter(v["ReferenceNumber"] for v in w.sims.ifs.vouchers())
        assert len(refs) == 591 and set(refs.values()) == {1}  # none posted twice
        assert w.engine.store.audit_count(AuditFilter(types=("reconciled",))) == 40
        # Each was looked up by its own ReferenceNumber: one GET of VoucherSet per voucher,
        # besides the one read, before anything was sent, of what IFS already held.
        lookups = sum(
            r["count"]
            for r in w.ifs_requests_by()
            if r["method"] == "GET" and r["path"].endswith("VoucherSet")
        )
        assert lookups == 40 + 1


@pytest.mark.parametrize(
    ("options", "budget"),
    [({"concurrency": 1}, 1.1), ({"concurrency": 4}, 1.1), ({"batch": True}, 0.05)],
)
def test_ifs_requests_per_posted_report_stay_in_budget(options, budget):
    with world(demo(), **options) as w:
        summary = w.engine.run_cycle()
        assert summary.posted == 591
        per_report = w.ifs_requests() / summary.posted
        assert per_report <= budget
        assert summary.requests["ifs"] == w.ifs_requests()
        # A cycle with nothing new costs the same few reads, however many reports exist.
        before = w.ifs_requests()
        again = w.engine.run_cycle()
        assert again.posted == 0 and w.ifs_requests() - before <= 6


def test_expensify_requests_per_cycle_are_constant():
    counts = []
    for n in (40, 160):
        with world(demo(n)) as w:
            w.engine.run_cycle()
            counts.append(w.expensify_requests())
    assert counts[0] == counts[1] <= 5
