"""A console engine in this process, on both simulators over loopback: what the benchmarks
and tests/perf drive. No keyring: the clients get the demo credentials directly."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from console import clock
from console.config import Settings
from console.credentials import ExpensifyCredentials, IfsCredentials
from console.expensify.client import ExpensifyClient
from console.flows.cycle import Engine
from console.ifs.client import IfsClient
from console.sim.dataset import Dataset, parse_dataset
from console.sim.demo import (
    DEMO_APPROVED_AFTER,
    DEMO_EXPENSIFY_SECRET,
    DEMO_EXPENSIFY_USER_ID,
    DEMO_EXPORT_LABEL,
    DEMO_IFS_CLIENT_ID,
    DEMO_IFS_SECRET,
    DEMO_POSTING,
    DEMO_REALM,
    build_demo_dataset,
)
from console.sim.expensify_app import ExpensifySimSettings
from console.sim.ifs_app import IfsSimSettings
from console.sim.server import SimServers
from console.store import Store


@dataclass
class World:
    sims: SimServers
    engine: Engine
    ifs: IfsClient
    expensify: ExpensifyClient

    def ifs_requests(self) -> int:
        """Requests the IFS simulator logged (a `$batch` counts once)."""
        return int(self.sims.ifs.requests.snapshot()["total"])

    def ifs_requests_by(self) -> list[dict[str, Any]]:
        return list(self.sims.ifs.requests.snapshot()["by_route"])

    def expensify_requests(self) -> int:
        return int(self.sims.expensify.requests.snapshot()["total"])


# The benchmarks' worlds close DEMO_PERIOD (November 2026); they run on its last day, when
# every report is approved and no reversal is due yet, whatever the calendar says.
BENCH_AS_OF = "2026-11-30"
REVERSALS_DUE = "2026-12-01"  # the next period's first day: the month's reversals fall due


@contextlib.contextmanager
def as_of(day: str) -> Iterator[None]:
    """Run the console's engine in this process as on `day` (console.clock's as-of date)."""
    previous = os.environ.get(clock.AS_OF_ENV)
    os.environ[clock.AS_OF_ENV] = day
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(clock.AS_OF_ENV, None)
        else:
            os.environ[clock.AS_OF_ENV] = previous


def demo(reports: int = 0) -> Dataset:
    """The demo world (its default size when `reports` is 0)."""
    raw = build_demo_dataset(reports=reports) if reports else build_demo_dataset()
    return parse_dataset(raw, f"demo dataset ({reports or 'default'} reports)")


def settings_for(sims: SimServers, **ifs: Any) -> Settings:
    return Settings.model_validate(
        {
            "environment": "bench",
            "expensify": {
                "url": sims.expensify_url,
                "export_label": DEMO_EXPORT_LABEL,
                "approved_after": DEMO_APPROVED_AFTER,
            },
            "ifs": {"url": sims.ifs_url, "realm": DEMO_REALM, **ifs},
            "posting": dict(DEMO_POSTING),
        }
    )


@contextlib.contextmanager
def world(
    dataset: Dataset,
    *,
    ifs_sim: IfsSimSettings | None = None,
    expensify_sim: ExpensifySimSettings | None = None,
    home: Path | None = None,
    **ifs: Any,
) -> Iterator[World]:
    """Sims (fast unless settings are given), a fresh state file, an Engine; `ifs` are
    config.ifs overrides (concurrency, batch, batch_size, requests_per_minute,
    batch_counts_parts, …): the client is built from that config as the console builds it."""
    with contextlib.ExitStack() as stack:
        if home is None:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ml-bench-")))
        sims = stack.enter_context(
            SimServers(
                dataset,
                expensify_settings=expensify_sim or ExpensifySimSettings.fast(),
                ifs_settings=ifs_sim or IfsSimSettings.fast(),
            )
        )
        settings = settings_for(sims, **ifs)
        cfg = settings.ifs
        store = Store(home / "state.sqlite3")
        exp_client = ExpensifyClient(
            sims.expensify_url,
            lambda: ExpensifyCredentials(DEMO_EXPENSIFY_USER_ID, SecretStr(DEMO_EXPENSIFY_SECRET)),
            window=store,
            limit_10s=settings.expensify.limit_10s,
            limit_60s=settings.expensify.limit_60s,
        )
        ifs_client = IfsClient(
            sims.ifs_url,
            DEMO_REALM,
            lambda: IfsCredentials(DEMO_IFS_CLIENT_ID, SecretStr(DEMO_IFS_SECRET)),
            page_size=cfg.page_size,
            requests_per_minute=cfg.requests_per_minute,
            concurrency=cfg.concurrency,
            batch_counts_parts=cfg.batch_counts_parts,
            user_group=cfg.user_group,
        )
        engine = Engine(settings, store, None, actor="bench", expensify=exp_client, ifs=ifs_client)
        stack.callback(engine.close)
        yield World(sims, engine, ifs_client, exp_client)
