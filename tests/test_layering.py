"""The core never depends on the TUI: no module under `console` imports textual or screens.

import-linter checks the static imports (make lint); this checks what actually gets loaded at
run time, including the lazily imported paths of the headless commands.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import console

CHECK = r"""
import importlib, json, pkgutil, sys
import console
failed = {}
for mod in pkgutil.walk_packages(console.__path__, "console."):
    try:
        importlib.import_module(mod.name)
    except Exception as exc:  # report, but an import error is a failure of its own
        failed[mod.name] = repr(exc)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "screens"))
print(json.dumps({"loaded": loaded, "failed": failed}))
"""


def test_every_core_module_imports_without_textual() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["failed"] == {}, result["failed"]
    assert result["loaded"] == [], f"the core pulled in the TUI: {result['loaded']}"


def test_core_package_is_not_empty() -> None:
    names = {m.name for m in pkgutil.walk_packages(console.__path__, "console.")}
    assert "console.commands.main" in names and "console.sim.dataset" in names


def _modules_loaded_by(argv: list[str]) -> list[str]:
    code = (
        "import sys, runpy\n"
        f"sys.argv = {['ml-console', *argv]!r}\n"
        "try:\n"
        "    runpy.run_module('console.commands.main', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "import json\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('textual', 'screens', 'httpx', 'uvicorn', 'starlette'))), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return list(json.loads(proc.stderr.strip().splitlines()[-1]))


def test_version_and_auto_help_stay_light() -> None:
    # Start-up budget (issue 7): these must not pay for Textual, httpx or the simulators.
    assert _modules_loaded_by(["--version"]) == []
    assert _modules_loaded_by(["--auto", "--help"]) == []


def test_the_clock_is_a_leaf_the_simulators_can_share() -> None:
    """console.clock decides "today" for the core and the simulators alike; importing it must
    load nothing else of the console (a simulator that shares it shares no core code)."""
    code = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "import console.clock\n"
        "print(json.dumps(sorted(m for m in set(sys.modules) - before "
        "if m.split('.')[0] == 'console' and m not in ('console', 'console.clock'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_every_command_entry_point_resolves() -> None:
    """The dispatcher names its entry points as text (so imports stay lazy): each must be a
    function that exists, or the command fails only when someone runs it."""
    import importlib
    import inspect
    import re
    from pathlib import Path

    from console.commands import main

    text = Path(main.__file__).read_text(encoding="utf-8")
    entries = set(re.findall(r'"((?:console|screens)\.[\w.]+:\w+)"', text))
    assert set(main._COMMANDS.values()) <= entries and len(entries) >= len(main._COMMANDS) + 4
    for entry in sorted(entries):
        module, _, function = entry.partition(":")
        assert inspect.isfunction(getattr(importlib.import_module(module), function)), entry
