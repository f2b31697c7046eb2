"""Cost growth: CPU time of a dry-run cycle (fetch, map, validate, plan; nothing posted) on
N and 10 N reports. The cycle runs in a child process (the simulators stay in this one, so
neither their CPU nor their heap, which the garbage collector would walk, is counted); the
figure is the CPU time of the thread that runs the cycle. Each size runs REPEATS times and the
least CPU time counts: on a shared machine noise only ever adds time, so the minimum is the
estimate closest to the work itself."""

from __future__ import annotations

import json
import tempfile

from bench.memory_bench import run_child
from bench.rows import Row
from bench.world import demo
from console.sim.server import SimServers

REPEATS = 3


def cycle_cpu_s(reports: int) -> float:
    """The least thread CPU seconds of REPEATS dry-run cycles on fresh state."""
    return min(_one_cycle_cpu_s(reports) for _ in range(REPEATS))


def _one_cycle_cpu_s(reports: int) -> float:
    with (
        tempfile.TemporaryDirectory(prefix="ml-bench-cost-") as home,
        SimServers(demo(reports), fast=True) as sims,
    ):
        proc = run_child(sims, home, dry_run=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-500:])
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(info["cpu_s"])


def run(quick: bool = False) -> list[Row]:
    small = 200 if quick else 500
    a = cycle_cpu_s(small)
    b = cycle_cpu_s(small * 10)
    ratio = b / a
    return [
        Row(
            f"Dry-run cycle CPU, {small * 10} vs {small} reports",
            f"{ratio:.1f}x ({a:.2f} s -> {b:.2f} s)",
            "<= 11x",
            ratio <= 11,
            f"least thread CPU of {REPEATS} cycles each, in a child process; "
            "the demo's lines grow ~9.6x",
        )
    ]
