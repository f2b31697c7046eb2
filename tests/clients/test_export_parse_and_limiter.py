"""Reading the export file leniently, tag shapes, and the Expensify window limiter with a
fake clock (no HTTP: these are the pure halves of the client)."""

from __future__ import annotations

import json

import pytest

from console.errors import ProtocolError, Unreachable
from console.expensify.client import parse_export, parse_tag_levels
from console.expensify.limiter import FileWindowStore, MemoryWindowStore, SlidingWindowLimiter


def _report(rid, **extra):
    base = {
        "reportID": rid,
        "reportName": "Trip &amp; more",
        "currency": "USD",
        "approved": "2026-11-03 14:22:10",
        "transactions": [
            {
                "transactionID": f"T{rid}",
                "merchant": "Barnes &amp; Noble",
                "amount": 12345,
                "convertedAmount": 12345,
                "category": "Airfare",
            }
        ],
    }
    base.update(extra)
    return base


def test_bad_report_objects_are_held_not_fatal():
    bad_amount = _report("R2")
    bad_amount["transactions"][0]["amount"] = 12.5
    content = json.dumps([_report("R1"), bad_amount, "junk", {"reportName": "no id"}, _report(7)])
    result = parse_export(content.encode(), file_name="exportX.json")
    assert [r.reportID for r in result.reports] == ["R1", "7"]
    assert result.reports[0].reportName == "Trip & more"
    assert result.reports[0].transactions[0].merchant == "Barnes & Noble"
    assert isinstance(result.reports[0].transactions[0].amount, int)
    malformed = [(m.reportID, m.what) for m in result.malformed]
    assert malformed[0][0] == "R2" and malformed[0][1].startswith("transactions.0.amount")
    assert malformed[1:] == [
        ("", "the export has an entry that is not a report object"),
        ("", "the export gives this report no usable reportID"),
    ]
    assert result.malformed[1].raw == {"entry": "junk"}  # kept, so the hold can show it
    assert result.file_name == "exportX.json"


def test_conflicting_duplicate_reports_are_not_trusted():
    a, b = _report("R1"), _report("R1", reportName="changed")
    result = parse_export(json.dumps([a, a, _report("R3")]).encode())
    assert [r.reportID for r in result.reports] == ["R1", "R3"] and not result.malformed
    result = parse_export(json.dumps([a, b]).encode())
    assert result.reports == [] and [m.what for m in result.malformed] == ["duplicate-reportID"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'[{"reportID": "R1", ', "not valid JSON"),
        (b"<html><body>Error</body></html>", "HTML page"),
        (b'{"reports": []}', "not a list of reports"),
        (
            b'{"responseCode": 410, "responseMessage": "File not found"}',
            "error instead of the file",
        ),
        (b"", "not valid JSON"),
    ],
)
def test_a_broken_file_says_what_is_wrong(content, says):
    with pytest.raises(ProtocolError, match=says) as info:
        parse_export(content, file_name="exportX.json")
    assert "exportX.json" in str(info.value)


def test_both_tag_shapes():
    levels = parse_tag_levels(
        [
            {
                "name": "Cost Center",
                "tags": [{"name": "New Lab", "glCode": "CC-410", "enabled": True}],
            },
            {"name": "Project", "tags": [{"name": "Apollo", "glCode": "P-1"}]},
        ]
    )
    assert [(lv.name, [t.glCode for t in lv.tags]) for lv in levels] == [
        ("Cost Center", ["CC-410"]),
        ("Project", ["P-1"]),
    ]
    flat = parse_tag_levels(
        [
            {"name": "New Lab", "glCode": "CC-410", "enabled": True},
            {"name": "New Lab:Apollo", "glCode": "P-1", "enabled": False},
        ]
    )
    assert [(lv.name, [(t.name, t.glCode, t.enabled) for t in lv.tags]) for lv in flat] == [
        ("Tag", [("New Lab", "CC-410", True)]),
        ("Tag 2", [("Apollo", "P-1", False)]),
    ]
    assert parse_tag_levels(None) == []


class FakeTime:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.slept.append(seconds)
        self.now += seconds


def _max_in_any(stamps, window):
    return max(sum(1 for t in stamps if s <= t < s + window) for s in stamps)


def test_sliding_window_keeps_5_per_10s_and_20_per_60s():
    t = FakeTime()
    store = MemoryWindowStore()
    limiter = SlidingWindowLimiter(store, "u", clock=t.clock, sleep=t.sleep, max_wait_s=120)
    stamps = []
    for _ in range(45):
        limiter.acquire()
        stamps.append(t.now)
    assert _max_in_any(stamps, 10.0) <= 5
    assert _max_in_any(stamps, 60.0) <= 20
    # 45 requests need at least two full minutes of waiting at 20 a minute.
    assert stamps[-1] - stamps[0] >= 120


def test_limiter_gives_up_within_its_bound():
    t = FakeTime()
    limiter = SlidingWindowLimiter(
        MemoryWindowStore(), "u", limits=((1, 60.0),), clock=t.clock, sleep=t.sleep, max_wait_s=30
    )
    limiter.acquire()
    with pytest.raises(Unreachable, match="longer than the 30 s"):
        limiter.acquire()
    assert t.slept == []  # it does not sleep a wait it already knows is too long


def test_file_window_is_shared_between_stores(tmp_path):
    t = FakeTime()
    path = tmp_path / "window.json"
    first = SlidingWindowLimiter(FileWindowStore(path), "u", clock=t.clock, sleep=t.sleep)
    for _ in range(5):
        first.acquire()
    # A second process (a fresh store on the same file) sees the five and must wait.
    second = SlidingWindowLimiter(FileWindowStore(path), "u", clock=t.clock, sleep=t.sleep)
    before = t.now
    second.acquire()
    assert t.now - before >= 10.0 - 1e-6
    assert len(FileWindowStore(path).load_window("u")) == 6
    assert FileWindowStore(path).load_window("other") == []


def test_file_window_survives_a_corrupt_file(tmp_path):
    path = tmp_path / "window.json"
    path.write_text("{not json")
    assert FileWindowStore(path).load_window("u") == []
    FileWindowStore(path).save_window("u", [1.0])
    assert FileWindowStore(path).load_window("u") == [1.0]


class RoundingStore(MemoryWindowStore):
    """Like the SQLite state store: keeps stamps to the millisecond."""

    def save_window(self, key, stamps):
        super().save_window(key, [round(s, 3) for s in stamps])


def test_settle_moves_the_stamp_to_the_answer_time_even_when_the_store_rounds():
    t = FakeTime(1_800_000_000.123456)
    store = RoundingStore()
    limiter = SlidingWindowLimiter(store, "u", clock=t.clock, sleep=t.sleep)
    stamp = limiter.acquire()
    t.now += 4.0  # a slow answer: the server may have counted it at any point until now
    limiter.settle(stamp)
    assert store.load_window("u") == [round(stamp + 4.0, 3)]
    for _ in range(4):
        limiter.settle(limiter.acquire())
    before = t.now
    limiter.acquire()  # the window runs from the answer, not from the send
    assert t.now - before >= 10.0 - 4.0 - 1e-6
    assert t.now >= stamp + 4.0 + 10.0


def test_cancel_wakes_a_request_waiting_for_the_limit_and_sends_nothing():
    """Quitting the console while a screen's read waits for a slot: the wait ends at once
    (Unreachable, no slot taken) instead of after the window (here a minute)."""
    import threading

    store = MemoryWindowStore()
    limiter = SlidingWindowLimiter(store, "u", limits=((1, 60.0),), max_wait_s=120)
    limiter.acquire()
    outcome: list[BaseException] = []
    started = threading.Event()

    def waiting_request() -> None:
        started.set()
        try:
            limiter.acquire()
        except Unreachable as exc:
            outcome.append(exc)

    worker = threading.Thread(target=waiting_request)
    worker.start()
    started.wait()
    limiter.cancel()
    worker.join(timeout=30)  # a bound for a broken cancel, far below the minute's wait
    assert not worker.is_alive()
    assert outcome and "closing" in str(outcome[0])
    assert len(store.load_window("u")) == 1  # the cancelled request took no slot
    with pytest.raises(Unreachable, match="closing"):
        limiter.acquire()  # nor does any later one
