"""The seam between the screens and the core stays typed and narrow: a screen calls the Engine's
flows and read models (console/sync.py's public methods, console/views.py), never what is
behind them — the store, the IFS and Expensify clients, the settings, the service tracker,
the audit log, the locks or anything private."""

from __future__ import annotations

import ast
from pathlib import Path

import screens

SCREENS_DIR = Path(screens.__file__).parent
BEHIND_THE_ENGINE = {"store", "ifs", "expensify", "settings", "track", "audit", "lock", "secrets"}
# Modules behind the engine that a screen imports nothing from (views re-exports read rows).
CORE_INTERNALS = ("console.store", "console.ifs.client", "console.expensify.client")


def _is_engine(node: ast.expr) -> bool:
    """`engine`, `self.engine`, `app.engine`, `self.console_app.engine`, …"""
    if isinstance(node, ast.Name):
        return node.id == "engine"
    return isinstance(node, ast.Attribute) and node.attr == "engine"


def reach_ins(source: str, filename: str) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and _is_engine(node.value):
            if node.attr in BEHIND_THE_ENGINE or node.attr.startswith("_"):
                found.append(f"{filename}:{node.lineno}: engine.{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) >= 2
            and _is_engine(node.args[0])
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and (node.args[1].value in BEHIND_THE_ENGINE or node.args[1].value.startswith("_"))
        ):
            found.append(
                f"{filename}:{node.lineno}: {node.func.id}(engine, {node.args[1].value!r})"
            )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(CORE_INTERNALS):
            found.append(f"{filename}:{node.lineno}: from {node.module} import …")
        elif isinstance(node, ast.Import):
            found += [
                f"{filename}:{node.lineno}: import {a.name}"
                for a in node.names
                if a.name.startswith(CORE_INTERNALS)
            ]
    return found


def test_no_screen_reaches_behind_the_engine() -> None:
    files = sorted(SCREENS_DIR.glob("*.py"))
    assert len(files) > 10
    found = [hit for f in files for hit in reach_ins(f.read_text(encoding="utf-8"), f.name)]
    assert found == [], "screens must call Engine methods or console.views:\n" + "\n".join(found)


def test_the_scan_sees_each_kind_of_reach_in() -> None:
    source = """
from console.store import AuditFilter
import console.ifs.client
def f(self, engine, app):
    engine.store.hold_groups()
    self.console_app.engine.ifs.post_voucher({})
    s = app.engine.settings.posting
    engine.track("ifs", lambda: None)
    engine._reference = None
    getattr(engine, "audit", None)
    engine.plan_for_review(None)  # the seam: fine
    store.audit_page()  # not through an engine: not this test's business
"""
    hits = sorted(h.split(": ", 1)[1] for h in reach_ins(source, "x.py"))
    assert hits == sorted(
        [
            "from console.store import …",
            "import console.ifs.client",
            "engine.store",
            "engine.ifs",
            "engine.settings",
            "engine.track",
            "engine._reference",
            "getattr(engine, 'audit')",
        ]
    )


def test_screens_import_no_circle() -> None:
    """No import circle among the screen modules, counting imports inside functions and under
    TYPE_CHECKING (import-linter's contract names the app; this covers every module)."""
    import grimp

    graph = grimp.build_graph("screens")
    modules = sorted(m for m in graph.modules if m.startswith("screens."))
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & set(modules)) for m in modules}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in edges[module]:
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in modules:
        if module not in state:
            visit(module, [module])
    assert cycles == [], "import circles in screens/: " + "; ".join(" → ".join(c) for c in cycles)
