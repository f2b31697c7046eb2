"""`python -m bench [--quick] [--only NAME,…]`: every benchmark, then ONE table with each
figure, its target, pass/miss and the machine it ran on. `make bench` runs this.

Times are only given as ratios to a baseline measured in the same run (the machines are
small and shared); counts are exact."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable

from bench.rows import Row

BENCHES: dict[str, str] = {
    "requests": "bench.requests_bench",
    "throughput": "bench.throughput_bench",
    "cost": "bench.cost_bench",
    "memory": "bench.memory_bench",
    "startup": "bench.startup_bench",
    "console": "bench.tui_rows",
    "replan": "bench.replan_bench",
    "latency": "bench.latency_bench",
}


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores, {model}, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.release()}"
    )


def table(rows: list[Row]) -> str:
    heads = ("figure", "value", "target", "result")
    data = [(r.figure, r.value, r.target, r.verdict) for r in rows]
    widths = [max(len(h), *(len(d[i]) for d in data)) for i, h in enumerate(heads)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    out = [line, sep]
    out += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(d, widths, strict=True)) + " |" for d in data
    ]
    notes = [f"- {r.figure}: {r.note}" for r in rows if r.note]
    return "\n".join(out + (["", *notes] if notes else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter windows")
    parser.add_argument("--only", default="", help=f"comma list of: {', '.join(BENCHES)}")
    args = parser.parse_args(argv)
    chosen = [b for b in args.only.split(",") if b] or list(BENCHES)
    # Fixed day for the fixed worlds (and the console processes some benchmarks start).
    from bench.world import BENCH_AS_OF

    os.environ["ML_CONSOLE_AS_OF"] = BENCH_AS_OF
    rows: list[Row] = []
    started = time.monotonic()
    for name in chosen:
        t0 = time.monotonic()
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(BENCHES[name])
            run: Callable[..., list[Row]] = module.run
            rows += run(quick=args.quick)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc(file=sys.stderr)
            rows.append(Row(name, "error", "-", False, f"{type(exc).__name__}: {exc}"[:200]))
        print(f"bench: {name} done in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    print(f"Machine: {machine()}")
    print(
        f"Mode: {'quick' if args.quick else 'full'}; wall time {time.monotonic() - started:.0f} s"
    )
    print()
    print(table(rows))
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
