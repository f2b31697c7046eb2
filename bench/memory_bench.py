"""Memory: peak RSS of one cycle over 10,000 reports x 8 lines, in a child process (the
simulators run in this one), read with resource.getrusage(RUSAGE_CHILDREN)."""

from __future__ import annotations

import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.rows import Row

LINES = 8


def eight_lines(raw: dict[str, Any]) -> dict[str, Any]:
    """Every report gets exactly LINES lines (its own, repeated with fresh transaction IDs)."""
    raw = copy.deepcopy(raw)
    serial = 0
    for report in raw["expensify"]["reports"]:
        lines = report["transactionList"]
        if not lines:
            continue
        out = []
        for i in range(LINES):
            line = dict(lines[i % len(lines)])
            serial += 1
            line["transactionID"] = str(8_000_000_000_000_000_000 + serial)
            out.append(line)
        report["transactionList"] = out
    return raw


def child(expensify_url: str, ifs_url: str, home: str, dry_run: bool) -> None:
    """Runs in the child process: one cycle on the sims the parent serves."""
    import bench.world as bw
    from console.config import Settings  # noqa: F401  (import cost counts)
    from console.sim.server import SimServers  # noqa: F401

    class _Sims:  # what settings_for needs
        pass

    sims: Any = _Sims()
    sims.expensify_url, sims.ifs_url = expensify_url, ifs_url
    settings = bw.settings_for(sims, concurrency=4)
    from pydantic import SecretStr

    from console.credentials import ExpensifyCredentials, IfsCredentials
    from console.expensify.client import ExpensifyClient
    from console.ifs.client import IfsClient
    from console.sim.demo import (
        DEMO_EXPENSIFY_SECRET,
        DEMO_EXPENSIFY_USER_ID,
        DEMO_IFS_CLIENT_ID,
        DEMO_IFS_SECRET,
        DEMO_REALM,
    )
    from console.store import Store
    from console.sync import Engine

    store = Store(Path(home) / "state.sqlite3")
    exp = ExpensifyClient(
        expensify_url,
        lambda: ExpensifyCredentials(DEMO_EXPENSIFY_USER_ID, SecretStr(DEMO_EXPENSIFY_SECRET)),
        window=store,
    )
    ifs = IfsClient(
        ifs_url,
        DEMO_REALM,
        lambda: IfsCredentials(DEMO_IFS_CLIENT_ID, SecretStr(DEMO_IFS_SECRET)),
        concurrency=4,
        requests_per_minute=10**6,
    )
    with Engine(settings, store, None, actor="bench", expensify=exp, ifs=ifs) as engine:
        t0 = time.thread_time()
        summary = engine.run_cycle(dry_run=dry_run)
        cpu_s = time.thread_time() - t0
    out = {"fetched": summary.fetched, "posted": summary.posted, "planned": summary.planned}
    print(json.dumps({**out, "cpu_s": cpu_s}))


def run_child(sims: Any, home: str, dry_run: bool) -> subprocess.CompletedProcess[str]:
    """One cycle in a child process against `sims` (served by this one); the child's last
    stdout line is JSON with fetched, planned, posted and the cycle's thread CPU seconds."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from bench.memory_bench import child; "
            "child(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == '1')",
            sims.expensify_url,
            sims.ifs_url,
            home,
            "1" if dry_run else "0",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )


def run(quick: bool = False) -> list[Row]:
    from console.sim.dataset import parse_dataset
    from console.sim.demo import build_demo_dataset
    from console.sim.server import SimServers

    reports = 2000 if quick else 10_000
    raw = eight_lines(build_demo_dataset(reports=reports))
    dataset = parse_dataset(raw, "memory dataset")
    dry_run = quick
    with (
        tempfile.TemporaryDirectory(prefix="ml-bench-mem-") as home,
        SimServers(dataset, fast=True) as sims,
    ):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        proc = run_child(sims, home, dry_run)
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        return [Row("Peak RSS of a cycle", "failed", "< 300 MB", False, proc.stderr[-300:])]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    peak_mb = max(peak_kb, before) / 1024
    what = "dry-run cycle" if dry_run else "cycle"
    return [
        Row(
            f"Peak RSS, {what}, {reports:,} reports x {LINES} lines",
            f"{peak_mb:.0f} MB",
            "< 300 MB" + (" (at 10,000)" if quick else ""),
            peak_mb < 300,
            f"fetched {info['fetched']}, planned {info['planned']}, posted {info['posted']}"
            + ("" if dry_run else "; a real cycle: every voucher posted"),
        )
    ]
