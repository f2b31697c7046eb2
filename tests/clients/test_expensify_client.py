"""The Expensify client against the Expensify simulator over loopback HTTP."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pytest

from console.errors import AuthError, ProtocolError, Unreachable
from console.expensify.client import ExpensifyClient
from tests.conftest import SMALL_FETCHABLE

from .conftest import EXP_SECRET, EXP_USER, FakeTime, exp_creds, running_expensify

REPO = Path(__file__).resolve().parents[2]
OCT_1 = date(2026, 10, 1)


def client(sim, **kw) -> ExpensifyClient:
    """A client on a fake clock unless the test brings one: its own limiter's waits
    (5 per 10 s) then cost no real time."""
    creds = kw.pop("creds", exp_creds)
    if "clock" not in kw:
        t = FakeTime()
        kw.update(clock=t.clock, sleep=t.sleep)
    return ExpensifyClient(sim.url, creds, **kw)


def labels(sim) -> dict[str, list[str]]:
    return {r["reportID"]: r["labels"] for r in sim.control.get("/__sim/reports").json()}


def test_export_reads_reports_without_marking_them(expensify):
    c = client(expensify)
    result = c.export_reports(approved_after=OCT_1)
    assert sorted(r.reportID for r in result.reports) == SMALL_FETCHABLE
    assert result.malformed == []
    assert result.file_name.endswith(".json")
    merchants = {t.merchant for r in result.reports for t in r.transactions}
    assert {"AT&T", "Barnes & Noble", "McDonald's"} <= merchants  # served as &amp;
    amounts = [t.amount for r in result.reports for t in r.transactions]
    assert all(type(a) is int for a in amounts) and any(a < 0 for a in amounts)
    assert all(v == [] for v in labels(expensify).values())  # no onFinish on the export
    assert c.requests_made == 2 == expensify.requests()["total"]  # file job + download


def test_mark_exported_labels_exactly_the_posted_reports(expensify):
    c = client(expensify)
    c.mark_exported(["90000001", "90000003"], "ml-console")
    marked = labels(expensify)
    assert marked["90000001"] == marked["90000003"] == ["ml-console"]
    assert marked["90000002"] == marked["90000004"] == []
    again = c.export_reports(approved_after=OCT_1, exclude_label="ml-console")
    assert sorted(r.reportID for r in again.reports) == ["90000002", "90000004"]
    by_id = c.export_reports(report_ids=["90000001"])
    assert [r.reportID for r in by_id.reports] == ["90000001"]
    c.mark_exported([], "ml-console")  # nothing to mark: no request
    assert c.requests_made == 5


@pytest.mark.parametrize("shapes", ["recorded", "alternative"])
def test_download_not_ready_is_polled_a_bounded_number_of_times(expensify, shapes):
    """Recorded: `{"responseMessage": "File not found"}` with no responseCode, for a missing
    and a not-yet-written file alike; alternative: a 404 saying "not ready"."""
    t = FakeTime()
    expensify.settings(download_not_ready=2, error_shapes=shapes)
    c = client(expensify, clock=t.clock, sleep=t.sleep)
    assert len(c.export_reports(approved_after=OCT_1).reports) == 4
    assert c.requests_made == 4  # file job + three downloads
    expensify.settings(download_not_ready=50)
    with pytest.raises(Unreachable, match="still not there after 4 downloads"):
        c.export_reports(approved_after=OCT_1)
    assert c.requests_made == 4 + 1 + 4


@pytest.mark.parametrize("shapes", ["recorded", "alternative"])
def test_a_policy_the_user_cannot_see_is_left_out_in_either_shape(shapes):
    """Recorded: 410 "Policy not found", naming no policy; alternative: 404 naming it. Either
    way the others are read and the unknown one becomes the engine's unknown-policy hold."""
    with running_expensify(error_shapes=shapes) as sim:
        c = client(sim)
        assert set(c.get_policies(["POL-NONE", "POL-US", "POL-EU"])) == {"POL-US", "POL-EU"}
        assert sim.requests()["total"] == 4  # all three, then each alone
        assert c.get_policies(["POL-NONE"]) == {}
        assert set(c.get_policies(["POL-US"])) == {"POL-US"}


def test_policies_in_one_request_with_both_tag_shapes():
    with running_expensify(flat_tags_for="POL-EU") as sim:
        c = client(sim)
        policies = c.get_policies(["POL-US", "POL-EU"])
        assert sim.requests()["total"] == 1
        assert set(policies) == {"POL-US", "POL-EU"}
        us, eu = policies["POL-US"], policies["POL-EU"]
        assert [lv.name for lv in us.tag_levels] == ["Cost Center", "Project"]
        assert [lv.name for lv in eu.tag_levels] == ["Tag", "Tag 2"]
        assert [t.name for t in us.tag_levels[1].tags] == [t.name for t in eu.tag_levels[1].tags]
        assert {c.name: c.glCode for c in us.categories}["Airfare"] == "6110"
        assert us.employees and all(e.email for e in us.employees)
        # POL-JP (the demo's Tokyo desk) is listed although it has no reports.
        assert {p["id"] for p in c.list_policies()} == {"POL-US", "POL-EU", "POL-JP"}
        c.check()
        # A policy the user cannot see is left out (the engine holds its reports).
        assert set(c.get_policies(["POL-NONE", "POL-US"])) == {"POL-US"}
        assert c.get_policies(["POL-NONE"]) == {}


@pytest.mark.parametrize("code", [401, 407])
def test_refused_credentials_are_typed_and_not_retried(code, caplog):
    caplog.set_level(logging.DEBUG)
    with running_expensify(auth_error_code=code) as sim:
        reads = []

        def wrong():
            reads.append(1)
            return exp_creds("not-the-Secret-42")

        c = client(sim, creds=wrong)
        with pytest.raises(AuthError) as info:
            c.export_reports(approved_after=OCT_1)
        assert info.value.exit_code == 4
        assert sim.requests()["total"] == 1 == c.requests_made  # no second try, no loop
        assert len(reads) == 2  # read, re-read once: unchanged, so not re-sent
        for text in (str(info.value), repr(info.value), repr(c), caplog.text):
            assert "not-the-Secret-42" not in text and EXP_SECRET not in text


def test_a_rotated_secret_is_used_on_the_single_reread(expensify):
    secrets = iter(["old-secret", EXP_SECRET])
    c = client(expensify, creds=lambda: exp_creds(next(secrets)))
    c.check()
    assert c.requests_made == 2


@pytest.mark.parametrize(
    ("fault", "skip", "says"),
    [
        # A cut answer to the export job itself is retried, then Unreachable (exit 5):
        # tests/evidence/test_export_isolation.py.
        ("malformed-json", 1, "not valid JSON"),  # the download's file is broken
    ],
)
def test_unreadable_answers_are_clear_protocol_errors(expensify, fault, skip, says):
    expensify.fault(fault=fault, skip=skip)
    c = client(expensify)
    with pytest.raises(ProtocolError, match=says) as info:
        c.export_reports(approved_after=OCT_1)
    assert str(info.value).startswith("expensify: ")
    assert EXP_SECRET not in str(info.value)


def test_gateway_error_page_is_retried_then_unreachable(expensify):
    # A proxy's HTML 502 page is a 5xx like any other: retried (bounded), then exit 5 with
    # the page named, not an "unexpected error" (found by tests/chaos/test_faults.py).
    t = FakeTime()
    expensify.fault(fault="html")
    c = client(expensify, clock=t.clock, sleep=t.sleep)
    with pytest.raises(Unreachable, match="HTML page titled '502 Bad Gateway'") as info:
        c.export_reports(approved_after=OCT_1)
    assert info.value.exit_code == 5
    assert 1 < c.requests_made <= 6


def test_policy_answer_that_is_not_json(expensify):
    expensify.fault(fault="malformed-json")  # every answer: the single re-ask fails too
    with pytest.raises(ProtocolError, match="not valid JSON"):
        client(expensify).list_policies()


def test_5xx_and_dropped_connections_back_off_and_recover(expensify):
    t = FakeTime()
    expensify.fault(fault="status", status=503, count=2)
    expensify.fault(fault="drop-before", count=1)
    c = client(expensify, clock=t.clock, sleep=t.sleep)
    c.check()
    assert c.requests_made == 4
    assert len(t.slept) == 3 and all(s > 0 for s in t.slept)


def test_5xx_retries_are_bounded(expensify):
    t = FakeTime()
    expensify.fault(fault="status", status=503)
    c = client(expensify, clock=t.clock, sleep=t.sleep, max_wait_s=120)
    with pytest.raises(Unreachable, match="HTTP 503"):
        c.check()
    assert c.requests_made <= 6 and sum(t.slept) <= 120


def test_429_is_waited_out_with_retry_after(expensify):
    t = FakeTime()
    expensify.fault(fault="status", status=429, retry_after=9, count=1)
    c = client(expensify, clock=t.clock, sleep=t.sleep)
    c.check()
    assert 9 in t.slept and c.requests_made == 2


def test_server_limit_without_retry_after_is_waited_out_by_the_window():
    t = FakeTime()
    with running_expensify(clock=t.clock, rate_limit=True, limit_10s=2, limit_60s=100) as sim:
        # Our own limiter believes 10 per 10 s is fine: the server's 2 per 10 s refuses.
        c = client(sim, clock=t.clock, sleep=t.sleep, limit_10s=10, limit_60s=100)
        for _ in range(6):
            c.check()
        assert sim.count(status=429) >= 1
        assert sim.count(status=200) == 6


def test_own_limiter_keeps_the_server_limit_without_any_429():
    t = FakeTime()
    with running_expensify(clock=t.clock, rate_limit=True) as sim:  # 5 per 10 s, 20 per 60 s
        c = client(sim, clock=t.clock, sleep=t.sleep)
        start = t.clock()
        for _ in range(25):
            c.check()
        assert sim.count(status=429) == 0 and sim.count(status=200) == 25
        assert t.clock() - start >= 60  # the 21st request had to wait for the minute


def test_a_wait_longer_than_the_bound_is_unreachable_not_a_hang(expensify):
    t = FakeTime()
    c = client(expensify, clock=t.clock, sleep=t.sleep, limit_60s=2, max_wait_s=20)
    c.check()
    c.check()
    with pytest.raises(Unreachable, match="request limit"):
        c.check()
    assert sum(t.slept) <= 20


_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from pydantic import SecretStr
    from console.credentials import ExpensifyCredentials
    from console.expensify.client import ExpensifyClient
    from console.expensify.limiter import FileWindowStore

    url, window, user, secret, n, wait_for, done = sys.argv[1:8]
    SPEED = 10.0  # a 60 s window passes in 6 s: the same for every process (slow enough that
    # scheduling delays on a loaded 2-core machine stay small against the 10 s window)
    creds = ExpensifyCredentials(partner_user_id=user, partner_user_secret=SecretStr(secret))
    client = ExpensifyClient(
        url, lambda: creds, window=FileWindowStore(window), limit_10s=2, limit_60s=5,
        clock=lambda: time.time() * SPEED, sleep=lambda s: time.sleep(s / SPEED),
    )
    deadline = time.monotonic() + 30
    while wait_for != "-" and not os.path.exists(wait_for) and time.monotonic() < deadline:
        time.sleep(0.005)
    for _ in range(int(n)):
        client.check()
    open(done, "w").close()
    print(json.dumps({"requests": client.requests_made}))
    """
)


def _run_back_to_back(url: str, windows: tuple[Path, Path], tmp: Path) -> list[dict]:
    """Two client processes, the second starting its requests the moment the first ends
    (both are started up front, so interpreter start-up does not open a gap)."""
    first_done = tmp / "first.done"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CHILD,
                url,
                str(window),
                EXP_USER,
                EXP_SECRET,
                "3",
                wait_for,
                done,
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for window, wait_for, done in [
            (windows[0], "-", str(first_done)),
            (windows[1], str(first_done), str(tmp / "second.done")),
        ]
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        assert EXP_SECRET not in err
        outputs.append(json.loads(out))
    return outputs


def _scaled_monotonic():
    import time

    return time.monotonic() * 10.0


@pytest.mark.parametrize("shared", [True, False])
def test_back_to_back_processes_share_the_window(tmp_path, shared):
    with running_expensify(
        clock=_scaled_monotonic, rate_limit=True, limit_10s=2, limit_60s=5
    ) as sim:
        # Three requests each: six within a minute is one more than the server allows.
        shared_file = tmp_path / "window.json"
        other = shared_file if shared else tmp_path / "other.json"
        first, second = _run_back_to_back(sim.url, (shared_file, other), tmp_path)
        assert sim.count(status=200) == 6
        if shared:
            # The second process saw the first one's requests and waited instead.
            assert sim.count(status=429) == 0
            assert first["requests"] == second["requests"] == 3
        else:
            # Control: without the shared window the second process trips the limit (and
            # still finishes: it waits the 429 out).
            assert sim.count(status=429) >= 1
            assert second["requests"] > 3


def test_mark_reimbursed_reports_partial_success(expensify):
    c = client(expensify)
    answer = c.mark_reimbursed(["90000001", "90000005"])
    assert answer["reportIDs"] == ["90000001"]
    assert [s["reportID"] for s in answer["skippedReports"]] == ["90000005"]
    states = {r["reportID"]: r["status"] for r in expensify.control.get("/__sim/reports").json()}
    assert states["90000001"] == "REIMBURSED"
