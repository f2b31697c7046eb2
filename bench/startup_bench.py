"""Start-up: median wall time of `ml-console --version` and `ml-console --auto --help`
against `python -c pass`, measured in the same run (hyperfine when installed, else a timed
loop)."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.rows import Row


def _commands() -> dict[str, list[str]]:
    py = sys.executable
    return {
        "python -c pass": [py, "-c", "pass"],
        "ml-console --version": [py, "-m", "console.commands.main", "--version"],
        "ml-console --auto --help": [py, "-m", "console.commands.main", "--auto", "--help"],
    }


def _hyperfine(cmds: dict[str, list[str]], runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "h.json"
        args = ["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", str(out)]
        for name, cmd in cmds.items():
            args += ["-n", name, " ".join(cmd)]
        subprocess.run(args, check=True, capture_output=True, timeout=600)
        data = json.loads(out.read_text())
    return {r["command"]: float(r["median"]) for r in data["results"]}


def _loop(cmds: dict[str, list[str]], runs: int) -> dict[str, float]:
    out: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):  # interleaved, so load changes hit every command alike
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, timeout=60)
            out[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in out.items()}


def run(quick: bool = False) -> list[Row]:
    cmds = _commands()
    runs = 10 if quick else 30
    tool = "hyperfine" if shutil.which("hyperfine") else "timed loop"
    medians = _hyperfine(cmds, runs) if tool == "hyperfine" else _loop(cmds, runs)
    base = medians["python -c pass"]
    rows = []
    for name in ("ml-console --version", "ml-console --auto --help"):
        ratio = medians[name] / base
        rows.append(
            Row(
                f"Start-up: {name}",
                f"{ratio:.1f}x ({medians[name] * 1000:.0f} ms vs {base * 1000:.0f} ms)",
                "<= 3x python -c pass",
                ratio <= 3,
                f"median of {runs}, {tool}",
            )
        )
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, runpy; sys.argv=['ml-console','--version']\n"
            "try:\n runpy.run_module('console.commands.main', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print('TEXTUAL', 'textual' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    imported = "TEXTUAL True" in probe.stdout
    rows.append(
        Row(
            "Start-up imports Textual",
            "yes" if imported else "no",
            "no",
            not imported,
            "ml-console --version",
        )
    )
    return rows
