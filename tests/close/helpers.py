"""Helpers of the period-close tests: an in-process Engine on the simulators (no keyring: the
clients get their credentials directly), used as "another installation" that builds voucher
bodies with console.plan, and by the Close screen's pilot test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr

from console.config import Settings
from console.credentials import ExpensifyCredentials, IfsCredentials
from console.expensify.client import ExpensifyClient
from console.flows.cycle import Engine
from console.ifs.client import IfsClient
from console.plan import PlannedVoucher
from console.sim.demo import (
    DEMO_EXPENSIFY_SECRET,
    DEMO_EXPENSIFY_USER_ID,
    DEMO_IFS_CLIENT_ID,
    DEMO_IFS_SECRET,
    DEMO_POSTING,
    DEMO_REALM,
)
from console.store import Store

FAST_EXPENSIFY = {"limit_10s": 1000, "limit_60s": 6000}


def engine_on(sims: Any, folder: Path, actor: str = "tester") -> Engine:
    folder.mkdir(parents=True, exist_ok=True)
    settings = Settings.model_validate(
        {
            "expensify": {
                "url": sims.expensify_url,
                "approved_after": "2026-10-01",
                **FAST_EXPENSIFY,
            },
            "ifs": {"url": sims.ifs_url, "realm": DEMO_REALM},
            "posting": DEMO_POSTING,
        }
    )
    store = Store(folder / "state.sqlite")
    expensify = ExpensifyClient(
        sims.expensify_url,
        lambda: ExpensifyCredentials(DEMO_EXPENSIFY_USER_ID, SecretStr(DEMO_EXPENSIFY_SECRET)),
        window=store,
        limit_10s=1000,
        limit_60s=6000,
    )
    ifs = IfsClient(
        sims.ifs_url,
        DEMO_REALM,
        lambda: IfsCredentials(DEMO_IFS_CLIENT_ID, SecretStr(DEMO_IFS_SECRET)),
    )
    return Engine(
        settings,
        store,
        None,
        actor=actor,
        expensify=expensify,
        ifs=ifs,
        lock_wait_s=1,
    )


def planned_vouchers(sims: Any, folder: Path, report_ids: list[str]) -> dict[str, PlannedVoucher]:
    """The vouchers console.plan builds for these reports, from a throw-away installation
    (its own state; nothing posted, nothing labelled)."""
    engine = engine_on(sims, folder)
    try:
        engine.fetch(dry_run=True)
        evaluations = engine.evaluate(report_ids)
        plan = engine.plan(report_ids, evaluations=evaluations)
        return dict(plan.voucher_by_report)
    finally:
        engine.close()


def post_by_hand(sims: Any, folder: Path, body: dict[str, Any]) -> str:
    """POST one voucher to the IFS simulator's VoucherSet, as someone outside the console."""
    ifs = IfsClient(
        sims.ifs_url,
        DEMO_REALM,
        lambda: IfsCredentials(DEMO_IFS_CLIENT_ID, SecretStr(DEMO_IFS_SECRET)),
    )
    try:
        v = ifs.post_voucher(body)
    finally:
        ifs.close()
    return f"{v.Company}/{v.VoucherType}/{v.AccountingYear}/{v.VoucherNo}"
