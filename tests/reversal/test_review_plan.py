"""One review plan: `Engine.plan_for_review` (what the console's Dry run shows and posts) is the
plan `--auto --dry-run` prints for the same store: the vouchers, the reversals due today and
the reports changed after posting."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import sim_control
from tests.reversal.test_reversal_e2e import DEC_1, NOV_30, raw_report


def test_review_plan_is_the_dry_run_plan(
    small_console: Any, small_sims: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three accruals posted in November (90000004 stays held) ...
    small_console.auto(env=NOV_30)
    # ... then 90000001 is re-approved with another amount, and a sync notices.
    report = raw_report("90000001")
    report["transactionList"][0]["amount"] = 50000
    report["transactionList"][0]["convertedAmount"] = 50000
    sim_control(small_sims.expensify_url, "/__sim/reports", "POST", report)
    small_console.auto(env=NOV_30)
    # On 1 December the other two accruals' reversals are due; the change waits.
    proc = small_console.run("--auto", "--dry-run", env=DEC_1)
    assert proc.returncode in (0, 3), proc.stderr
    printed = proc.stdout.rstrip("\n")
    assert "Reversals: 2 voucher(s) to post" in printed
    assert "CHANGED AFTER POSTING report 90000001" in printed

    for name, value in {**small_console.env, **DEC_1}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ML_CONSOLE_HOME", str(small_console.home))
    from console.flows.cycle import Engine

    with Engine.open(actor="tester") as engine:
        plan = engine.plan_for_review()
        assert plan.render_text().rstrip("\n") == printed
        # A selection narrows the vouchers, never what is due or changed.
        assert engine.plan_for_review(["90000004"]).reversals == plan.reversals
