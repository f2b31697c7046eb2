"""The console posting a reviewed plan while a scheduled `ml-console --auto --every` runs on the
same home: one poster at a time, the console says why it waited or stopped, and no report is
posted twice (issue #6, concurrency)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from typing import Any

from tests.conftest import sim_control
from tests.e2e.conftest import sim_post
from tests.tui.test_screens import SIZE, settle

VOUCHER_POST = "/main/ifsapplications/projection/v1/VoucherEntryAssistantHandling.svc/$batch"


def voucher_posts(sims: Any) -> int:
    snap = sim_control(sims.ifs_url, "requests")
    return sum(r["count"] for r in snap["by_route"] if r["path"] == VOUCHER_POST)


async def test_console_post_while_every_runs_posts_each_report_once(
    tui_home, make_app, small_sims, monkeypatch
) -> None:
    # Each voucher POST takes 1.5 s in IFS, so the scheduled loop holds the posting lock for a
    # while; the console waits at most 1 s for it.
    monkeypatch.setenv("ML_CONSOLE_LOCK_WAIT_S", "1")
    sim_post(
        small_sims.ifs_url,
        "/__sim/faults",
        {
            "route": "VoucherEntryAssistantHandling",
            "method": "POST",
            "fault": "latency",
            "latency_ms": 1500,
        },
    )
    app = make_app()
    notes: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        real_notify = app.notify

        def notify(message: str, **kwargs: Any) -> None:
            notes.append(f"{kwargs.get('title', '')}: {message}")
            real_notify(message, **kwargs)

        app.notify = notify  # type: ignore[method-assign]
        await settle(pilot)
        app.engine.fetch()
        await pilot.press("4")
        await settle(pilot, 6)
        plan = app.screen.plan
        assert plan is not None and plan.vouchers
        loop = subprocess.Popen(
            [sys.executable, "-m", "console.commands.main", "--auto", "--every", "1s"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        try:
            # Wait (bounded) until the loop is inside a voucher POST, i.e. holds the lock.
            for _ in range(600):
                if voucher_posts(small_sims) or loop.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            assert loop.poll() is None, loop.stderr.read() if loop.stderr else ""
            await pilot.press("p")
            await settle(pilot)
            await pilot.press("y")
            await settle(pilot, 10)
            assert app.screen.posting is False
        finally:
            loop.send_signal(signal.SIGTERM)
            _out, loop_err = loop.communicate(timeout=120)
        assert loop.returncode == 0, loop_err

    # The console either found the lock held and said so, or waited and posted what was left.
    said = " | ".join(notes)
    assert "lock" in said.lower() or "already in IFS" in said, said
    refs = Counter(
        v["ReferenceNumber"].split(":")[1] for v in sim_control(small_sims.ifs_url, "vouchers")
    )
    planned = {v.report_id for v in plan.vouchers}
    assert planned <= set(refs), (planned, refs)  # the loop posts what the console could not
    assert all(n == 1 for n in refs.values()), refs  # and nothing twice
