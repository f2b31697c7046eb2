"""Print the chaos suites' figures (`make chaos` ends with this table).

Reads the JSON the suites write (`$ML_CONSOLE_CHAOS_OUT`, default `.chaos/figures.json`): the
"chaos" profile (`pytest -m chaos`) when present, else the "ci" one. `--markdown` prints the
table as Markdown (for docs/reliability.md). Exit 1 when any duplicate or lost report was
recorded, or when there are no figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
COLUMNS = [
    ("kills", "kills survived"),
    ("injected", "faults injected"),
    ("inputs", "hostile inputs"),
    ("posted", "reports posted"),
    ("held", "held"),
    ("reversals", "reversals due"),
    ("refused", "refused (exit 7)"),
    ("duplicates", "duplicates"),
    ("lost", "lost"),
    ("retries", "retries"),
]


def figures_path() -> Path:
    return Path(os.environ.get("ML_CONSOLE_CHAOS_OUT") or REPO_ROOT / ".chaos" / "figures.json")


def rows(profile: dict[str, Any]) -> list[tuple[str, str, dict[str, int]]]:
    out = []
    for suite in ("crash", "faults", "hostile", "state", "concurrency", "security"):
        for name, counts in sorted(profile.get(suite, {}).items()):
            out.append((suite, name, counts))
    return out


def render(profile_name: str, profile: dict[str, Any], markdown: bool) -> str:
    header = ["suite", "scenario", *(label for _k, label in COLUMNS), "retries/fault"]
    body = []
    for suite, name, counts in rows(profile):
        cells = [suite, name]
        for key, _label in COLUMNS:
            cells.append(str(counts[key]) if key in counts else "")
        injected, retries = counts.get("injected", 0), counts.get("retries")
        cells.append(f"{retries / injected:.2f}" if injected and retries is not None else "")
        body.append(cells)
    totals = ["total", ""]
    for key, _label in COLUMNS:
        totals.append(str(sum(int(c.get(key, 0)) for _s, _n, c in rows(profile))))
    totals.append("")
    body.append(totals)
    title = f"chaos figures ({profile_name} profile, {profile.get('updated', '?')})"
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, fmt(header), rule, *(fmt(r) for r in body[:-1]), rule, fmt(body[-1])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos_table")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--profile", choices=["chaos", "ci"])
    args = parser.parse_args(argv)
    path = figures_path()
    if not path.exists():
        print(f"no chaos figures at {path}; run `make chaos` (or the tests in tests/chaos)",
              file=sys.stderr)  # fmt: skip
        return 1
    data = json.loads(path.read_text())
    name = args.profile or ("chaos" if "chaos" in data else "ci")
    profile = data.get(name) or {}
    if not rows(profile):
        print(f"no {name} figures in {path}", file=sys.stderr)
        return 1
    print(render(name, profile, args.markdown))
    bad = sum(int(c.get("duplicates", 0)) + int(c.get("lost", 0)) for _s, _n, c in rows(profile))
    if bad:
        print(f"FAIL: {bad} duplicate or lost report(s) recorded", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
