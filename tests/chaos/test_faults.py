"""Faults: every kind the simulators inject, against the real `ml-console --auto`. Each run
ends with nothing lost or duplicated (`verify_world`), retries bounded (counted on the
simulators' request logs against a clean run of the same world), and where the console gives
up, a clear message and the right exit code (5 unreachable).

Bound on retries: every injected fault may cost one repeated request; a POST whose outcome
it made unknown costs, on IFS's real API, the lookups that settle it (the hold table's rows,
the GL's rows, the voucher assistant's temporary vouchers), the post again, and in the cycle
that posts it again the pre-post read of what IFS holds (hold table and GL) and the label in
Expensify: seven at most, `EXTRA_PER_FAULT` below. A retry storm (a client that retries
without bound, or
retries every request of a batch) blows through it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.chaos.harness import (
    World,
    add_fault,
    demo_world,
    injected,
    record,
    request_counts,
    requests_total,
    sim_json,
    verify_world,
    vouchers,
)

REPORTS = 20
EXTRA_PER_FAULT = 7
MAX_CYCLES = 3


@dataclass
class Baseline:
    """Requests a clean world makes: the first cycle, and each later one."""

    first: dict[str, int] = field(default_factory=dict)
    later: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    out = Baseline()
    with demo_world(tmp_path_factory.mktemp("baseline"), reports=REPORTS) as world:
        for target in (out.first, out.later):
            before = totals(world)
            proc = world.console.run("--auto", "--json")
            assert proc.returncode == 3, proc.stderr
            after = totals(world)
            target.update({k: after[k] - before[k] for k in after})
    return out


def totals(world: World) -> dict[str, int]:
    return {
        "expensify": requests_total(world.sims.expensify_url),
        "ifs": requests_total(world.sims.ifs_url),
    }


def settle(world: World, during: Callable[[subprocess.Popen[str]], None] | None = None) -> int:
    """Run cycles until the world is settled (only the expected reports held, nothing
    failed); returns the number of cycles. `during` acts on the first, running, cycle."""
    for cycle in range(1, MAX_CYCLES + 1):
        c = world.console
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "console.commands.main",
                "--home",
                str(c.home),
                "--auto",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=c.env,
        )
        if during is not None and cycle == 1:
            during(proc)
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode in (0, 3), f"cycle {cycle}: exit {proc.returncode}: {stderr}"
        summary = json.loads(stdout)
        held = {h["reportID"] for h in summary["held_reports"]}
        # A label Expensify refused this cycle is owed to the next one (by design): the world
        # is settled only once it is set too.
        label_owed = any("label" in w for w in summary.get("warnings", []))
        if (
            held == set(world.expected_held)
            and summary["failed"] == 0
            and not summary.get("unknown_outcome")
            and not label_owed
        ):
            return cycle
    raise AssertionError(f"not settled after {MAX_CYCLES} cycles: {summary}")


def check_and_record(
    world: World, baseline: Baseline, kind: str, cycles: int, events: int = 0
) -> None:
    verdict = verify_world(world)
    fired = injected(world.sims.ifs_url) + injected(world.sims.expensify_url) + events
    now = totals(world)
    expected = {k: baseline.first[k] + (cycles - 1) * baseline.later[k] for k in now}
    extra = sum(now.values()) - sum(expected.values())
    record("faults", kind, runs=1, injected=fired, retries=max(0, extra), cycles=cycles,
           posted=verdict.posted, duplicates=verdict.duplicates, lost=verdict.lost)  # fmt: skip
    verdict.assert_clean()
    assert fired > 0, f"{kind}: no fault fired; the test proves nothing"
    assert extra <= EXTRA_PER_FAULT * fired, (
        f"{kind}: {extra} requests beyond a clean run for {fired} fault(s): a retry storm;"
        f" IFS requests by route: {sorted(request_counts(world.sims.ifs_url).items())}"
    )


def wait_for_vouchers(world: World, n: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while len(vouchers(world.sims)) < n and proc.poll() is None:
        assert time.monotonic() < deadline, "no vouchers appeared"
        time.sleep(0.02)


IFS = "ifs"
EXP = "expensify"
# kind -> (simulator, fault specs). Each is injected once in CI.
FAULTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "429 with Retry-After (IFS storm)": [
        (IFS, {"fault": "status", "status": 429, "retry_after": 0.2, "count": 4})
    ],
    "429 without Retry-After (IFS)": [(IFS, {"fault": "status", "status": 429, "count": 2})],
    "429 with Retry-After (Expensify)": [
        (EXP, {"fault": "status", "status": 429, "retry_after": 0.3, "count": 2})
    ],
    "500/503/504 at a rate": [
        (IFS, {"fault": "status", "status": 503, "method": "GET", "rate": 0.3, "count": 3}),
        (
            IFS,
            {
                "fault": "status",
                "status": 504,
                "route": "VoucherEntryAssistantHandling",
                "method": "POST",
                "rate": 0.2,
                "count": 2,
            },
        ),
        (IFS, {"fault": "status", "status": 500, "route": "token", "count": 1}),
    ],
    "latency spikes": [
        (IFS, {"fault": "latency", "latency_ms": 400, "rate": 0.2, "count": 6}),
        (EXP, {"fault": "latency", "latency_ms": 400, "count": 1}),
    ],
    "timeouts": [
        (
            IFS,
            {
                "fault": "timeout",
                "latency_ms": 2500,
                "route": "VoucherEntryAssistantHandling",
                "method": "POST",
                "skip": 2,
                "count": 1,
            },
        ),
        (IFS, {"fault": "timeout", "latency_ms": 2500, "route": "AccountSet", "count": 1}),
    ],
    "drop before the server acts": [
        (
            IFS,
            {
                "fault": "drop-before",
                "route": "VoucherEntryAssistantHandling",
                "method": "POST",
                "count": 2,
            },
        ),
        (EXP, {"fault": "drop-before", "count": 1}),
    ],
    "drop after the server acts": [
        (
            IFS,
            {
                "fault": "drop-after",
                "route": "VoucherEntryAssistantHandling",
                "method": "POST",
                "skip": 1,
                "count": 2,
            },
        ),
        (EXP, {"fault": "drop-after", "skip": 3, "count": 1}),  # the label request
    ],
    "malformed JSON": [
        (IFS, {"fault": "malformed-json", "route": "AccountSet", "count": 1}),
        (
            IFS,
            {
                "fault": "malformed-json",
                "route": "VoucherEntryAssistantHandling",
                "method": "POST",
                "count": 1,
            },
        ),
        (EXP, {"fault": "malformed-json", "count": 1}),
    ],
    "HTML error pages": [
        (IFS, {"fault": "html", "count": 2}),
        (EXP, {"fault": "html", "count": 1}),
    ],
}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_fault_kind_loses_and_duplicates_nothing(tmp_path, baseline, kind):
    with demo_world(tmp_path, reports=REPORTS) as world:
        # Short client timeouts so an injected timeout costs seconds, not a minute.
        world.console.write_config(ifs={"timeout_s": 1.0}, expensify={"timeout_s": 2.0})
        for side, spec in FAULTS[kind]:
            add_fault(world.sims.ifs_url if side == IFS else world.sims.expensify_url, **spec)
        cycles = settle(world)
        check_and_record(world, baseline, kind, cycles)


def test_mi_modified_error_is_retried_once(tmp_path, baseline):
    with demo_world(tmp_path, reports=REPORTS) as world:
        sim_json(world.sims.ifs_url, "/__sim/next-error-code", "POST",
                 {"code": "MI_MODIFIED_ERROR", "count": 1})  # fmt: skip
        add_fault(world.sims.ifs_url, fault="status", status=500, route="AccountSet",
                  count=1)  # fmt: skip
        cycles = settle(world)
        check_and_record(world, baseline, "MI_MODIFIED_ERROR", cycles)


def test_expensify_download_not_ready_yet(tmp_path, baseline):
    with demo_world(tmp_path, reports=REPORTS) as world:
        sim_json(world.sims.expensify_url, "/__sim/settings", "POST", {"download_not_ready": 2})
        cycles = settle(world)
        polls = 2  # each "not ready" answer costs one more download request
        check_and_record(world, baseline, "download not ready", cycles, events=polls)


def test_token_revoked_mid_run(tmp_path, baseline):
    with demo_world(tmp_path, reports=REPORTS) as world:

        def revoke(proc: subprocess.Popen[str]) -> None:
            wait_for_vouchers(world, 3, proc)
            sim_json(world.sims.ifs_url, "/__sim/tokens/revoke", "POST", {})

        cycles = settle(world, during=revoke)
        check_and_record(world, baseline, "token revoked mid-run", cycles, events=1)


def test_ifs_updates_the_gl_mid_run(tmp_path, baseline):
    # IFS's "Update GL" moves the vouchers posted so far out of the hold table while the
    # console posts: every lookup by reference still finds them (hold table and GL).
    with demo_world(tmp_path, reports=REPORTS) as world:

        def update_gl(proc: subprocess.Popen[str]) -> None:
            wait_for_vouchers(world, 2, proc)
            sim_json(world.sims.ifs_url, "/__sim/update-gl", "POST", {})

        cycles = settle(world, during=update_gl)
        check_and_record(world, baseline, "GL updated mid-run", cycles, events=1)


@pytest.mark.parametrize(
    ("side", "spec", "limit"),
    [
        (IFS, {"fault": "status", "status": 503, "retry_after": 0.05}, 8),
        (EXP, {"fault": "html"}, 14),
    ],
    ids=["ifs-503-forever", "expensify-html-forever"],
)
def test_gives_up_with_exit_5_and_bounded_requests(tmp_path, side, spec, limit):
    with demo_world(tmp_path, reports=REPORTS) as world:
        world.console.write_config(expensify={"max_wait_s": 6.0})
        url = world.sims.ifs_url if side == IFS else world.sims.expensify_url
        add_fault(url, **spec)
        start = time.monotonic()
        proc = world.console.run("--auto", "--json", timeout=240)
        took = time.monotonic() - start
        assert proc.returncode == 5, proc.stderr
        assert "unreachable" in proc.stderr.lower(), proc.stderr
        assert proc.stdout == ""  # no summary when the cycle did not complete
        sent = requests_total(url)
        record("faults", f"give up: {side} down", runs=1, injected=injected(url),
               retries=max(0, sent - 1), duplicates=0, lost=0)  # fmt: skip
        assert sent <= limit, f"{sent} requests to a service that is down: a retry storm"
        assert took < 120
        assert vouchers(world.sims) == [] or side == EXP


@pytest.mark.chaos
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("seed", range(5))
def test_every_fault_at_once_repeatedly(tmp_path, baseline, seed):
    """All kinds mixed, at rates, on a bigger world, several seeds: still exactly once."""
    import random

    rng = random.Random(seed)
    with demo_world(tmp_path, reports=120) as world:
        world.console.write_config(ifs={"timeout_s": 1.0}, expensify={"timeout_s": 2.0})
        for kind, specs in FAULTS.items():
            for side, spec in specs:
                spec = {**spec, "rate": min(1.0, rng.uniform(0.05, 0.3))}
                spec.pop("skip", None)
                add_fault(world.sims.ifs_url if side == IFS else world.sims.expensify_url,
                          **spec)  # fmt: skip
            del kind

        def mid_run(proc: subprocess.Popen[str]) -> None:
            wait_for_vouchers(world, 5, proc)
            sim_json(world.sims.ifs_url, "/__sim/tokens/revoke", "POST", {})
            # IFS's Update GL moves what was posted so far out of the hold table.
            sim_json(world.sims.ifs_url, "/__sim/update-gl", "POST", {})

        for _ in range(MAX_CYCLES + 2):
            try:
                settle(world, during=mid_run)
                break
            except AssertionError:
                mid_run = None  # type: ignore[assignment]
        verdict = verify_world(world)
        fired = injected(world.sims.ifs_url) + injected(world.sims.expensify_url)
        record("faults", "all kinds mixed (chaos)", runs=1, injected=fired,
               posted=verdict.posted, duplicates=verdict.duplicates, lost=verdict.lost)  # fmt: skip
        verdict.assert_clean()
