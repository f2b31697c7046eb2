"""Memory: peak RSS of one cycle over 10,000 reports x 8 lines, in a child process (the
simulators run in this one).

The figure is the child's own high-water mark, VmHWM of /proc/self/status, which the child
reports when its cycle is done. Not getrusage(RUSAGE_CHILDREN): Linux starts a child's
ru_maxrss at the RSS of the process it was forked (vforked) from, so that figure can never
be below this process's own peak, which holds the dataset and both simulators (some 450 MB
at 10,000 reports); it is kept in the note. Where /proc is missing, it is the figure."""

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


def high_water_kb() -> int | None:
    """This process's peak RSS since it was exec'd (VmHWM), or None without /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def child(expensify_url: str, ifs_url: str, home: str, dry_run: bool) -> None:
    """Runs in the child process: one cycle on the sims the parent serves. Its last stdout
    line also carries the high-water mark after each stage (fetch, evaluate and plan,
    post and label), which says where the peak is reached."""
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
    from console.flows.cycle import Engine
    from console.ifs.client import IfsClient
    from console.sim.demo import (
        DEMO_EXPENSIFY_SECRET,
        DEMO_EXPENSIFY_USER_ID,
        DEMO_IFS_CLIENT_ID,
        DEMO_IFS_SECRET,
        DEMO_REALM,
    )
    from console.store import Store

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
    stages: dict[str, int | None] = {}

    class StagedEngine(Engine):
        """The engine, noting the high-water mark as each stage ends (a /proc read)."""

        def fetch(self, *, dry_run: bool = False) -> Any:
            outcome = super().fetch(dry_run=dry_run)
            stages["fetch"] = high_water_kb()
            return outcome

        def post(self, plan: Any, **kwargs: Any) -> Any:
            stages["plan"] = high_water_kb()
            outcome = super().post(plan, **kwargs)
            stages["post"] = high_water_kb()
            return outcome

    with StagedEngine(settings, store, None, actor="bench", expensify=exp, ifs=ifs) as engine:
        t0 = time.thread_time()
        summary = engine.run_cycle(dry_run=dry_run)
        cpu_s = time.thread_time() - t0
    out = {"fetched": summary.fetched, "posted": summary.posted, "planned": summary.planned}
    print(json.dumps({**out, "cpu_s": cpu_s, "peak_kb": high_water_kb(), "stages": stages}))


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
    rusage_mb = max(peak_kb, before) / 1024
    peak_mb = info["peak_kb"] / 1024 if info.get("peak_kb") else rusage_mb
    stages = ", ".join(
        f"{name} {kb / 1024:.0f}" for name, kb in info.get("stages", {}).items() if kb
    )
    what = "dry-run cycle" if dry_run else "cycle"
    return [
        Row(
            f"Peak RSS, {what}, {reports:,} reports x {LINES} lines",
            f"{peak_mb:.0f} MB",
            "< 300 MB" + (" (at 10,000)" if quick else ""),
            peak_mb < 300,
            f"fetched {info['fetched']}, planned {info['planned']}, posted {info['posted']}"
            + ("" if dry_run else "; a real cycle: every voucher posted")
            + f"; the child's VmHWM after each stage (MB): {stages or 'n/a'}"
            + f"; getrusage(RUSAGE_CHILDREN): {rusage_mb:.0f} MB (includes this process's"
            " own peak, see the module doc)",
        )
    ]
