"""One meaning per key across the console (issue 15): every binding of every screen comes
from screens/keys.py, one key has one verb everywhere, and the README's tables are current.
Binding ids are what `[tui] keys` remaps: every one is in the registry (BOUND), documented,
never renamed, and a keymap naming an id the console lacks says so."""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rich.console import Console
from textual.binding import Binding
from textual.widgets import Static

import screens
from screens.keys import BOUND, DOES, KEYS, binding_ids_markdown, bindings, keys_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def _screen_classes() -> list[type]:
    from screens.app import MlConsoleApp
    from screens.audit import AuditScreen, TimelineScreen
    from screens.base import ConsoleScreen
    from screens.close import CloseScreen, CloseTab
    from screens.dryrun import DryRunScreen
    from screens.mapping import MappingScreen
    from screens.missing import MissingScreen
    from screens.pending import PendingScreen, ReportDetailScreen
    from screens.setup import SetupScreen
    from screens.vtable import VirtualTable

    return [
        MlConsoleApp,
        ConsoleScreen,
        PendingScreen,
        ReportDetailScreen,
        MappingScreen,
        MissingScreen,
        DryRunScreen,
        AuditScreen,
        TimelineScreen,
        CloseScreen,
        CloseTab,
        SetupScreen,
        VirtualTable,
    ]


def test_one_verb_per_key_across_every_screen() -> None:
    verbs: dict[str, set[tuple[str, str]]] = {}
    for cls in _screen_classes():
        for binding in cls.BINDINGS:
            assert isinstance(binding, Binding), (cls.__name__, binding)
            assert binding.id, f"{cls.__name__}: {binding.key} has no id (not remappable)"
            for key in binding.key.split(","):
                verbs.setdefault(key, set()).add((binding.description, cls.__name__))
            # The footer's words are the table's, never a screen's own.
            assert binding.key in KEYS, f"{cls.__name__}: {binding.key} is not in screens/keys.py"
            assert binding.description == KEYS[binding.key].verb, (cls.__name__, binding)
    clashes = {key: sorted(found) for key, found in verbs.items() if len({v for v, _ in found}) > 1}
    assert not clashes, f"one key, several verbs: {clashes}"


def _readme_table(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(rf"<!-- {marker}:start -->\n(.*?)<!-- {marker}:end -->", text, re.S)
    assert found, f"README.md has no generated table between the {marker} markers"
    return found[1]


def test_the_readme_key_table_is_current() -> None:
    assert _readme_table("keys") == keys_markdown(), (
        "README.md's Keys table is out of date: paste screens.keys.keys_markdown() between "
        "the keys:start and keys:end markers"
    )


def test_the_readme_lists_every_binding_id() -> None:
    assert _readme_table("binding-ids") == binding_ids_markdown(), (
        "README.md's binding ids are out of date: paste screens.keys.binding_ids_markdown() "
        "between the binding-ids:start and binding-ids:end markers"
    )


# Who declares each prefix's bindings (CloseTab inherits CloseScreen's).
DECLARED_BY = {
    "app": "MlConsoleApp",
    "screen": "ConsoleScreen",
    "table": "VirtualTable",
    "pending": "PendingScreen",
    "detail": "ReportDetailScreen",
    "mapping": "MappingScreen",
    "missing": "MissingScreen",
    "dryrun": "DryRunScreen",
    "audit": "AuditScreen",
    "timeline": "TimelineScreen",
    "close": "CloseScreen",
    "setup": "SetupScreen",
    "filter": "FilterBar",
    "confirm": "ConfirmModal",
    "reason": "ReasonModal",
    "help": "HelpModal",
}


def _classes_declaring_bindings() -> dict[str, type]:
    found: dict[str, type] = {}
    for module in pkgutil.iter_modules(screens.__path__, "screens."):
        for name, cls in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if cls.__module__ == module.name and "BINDINGS" in vars(cls):
                found[name] = cls
    return found


def test_every_binding_is_declared_once_in_the_registry() -> None:
    """Each class's own BINDINGS are exactly the registry's under its prefix, so a binding
    added anywhere else (or an id missing from the README's table) fails here."""
    declaring = _classes_declaring_bindings()
    assert set(declaring) == set(DECLARED_BY.values())
    assert {id.split(".")[0] for id in BOUND} == set(DECLARED_BY)
    for prefix, name in DECLARED_BY.items():
        assert vars(declaring[name])["BINDINGS"] == bindings(prefix), name


# Users' config.toml names these: an id is never renamed or dropped.
IDS_IN_USE = """
app.pending app.mapping app.missing app.dryrun app.audit app.close app.sync app.help app.quit
screen.filter screen.back table.up table.down table.page_up table.page_down table.top
table.bottom table.open table.mark pending.mark_ready pending.clear_marks pending.dry_run
pending.include detail.back detail.timeline mapping.edit missing.recheck missing.replay
missing.remap missing.exclude missing.focus dryrun.confirm dryrun.confirm_change dryrun.export
dryrun.replan audit.verify audit.replay timeline.back timeline.replay close.prev_period
close.next_period close.reload close.chart close.post_card_accrual setup.save setup.test
setup.cancel filter.clear filter.keep confirm.yes confirm.no reason.cancel help.close
""".split()


def test_binding_ids_are_never_renamed() -> None:
    assert set(IDS_IN_USE) <= set(BOUND)
    assert set(DOES) <= set(BOUND), "a phrase for a binding the console does not have"


async def test_a_keymap_naming_an_unknown_id_warns(isolated_env: Path) -> None:
    """Textual ignores an id no binding has: a typo in `[tui] keys` must not pass silently.
    The known ids still remap."""
    from screens.app import MlConsoleApp

    keys = {"app.snyc": "ctrl+r", "app.audit": "f5", "table.nope": "n"}
    settings: Any = SimpleNamespace(tui=SimpleNamespace(keys=keys))
    app = MlConsoleApp(settings=settings, needs_setup=True, status_interval=None)
    async with app.run_test() as pilot:
        await pilot.pause()
        said = [n.message for n in app._notifications if n.severity == "warning"]
        assert any("'app.snyc', 'table.nope'" in m for m in said), said
        assert not any("app.audit" in m for m in said), said
        assert app._keymap["app.audit"] == "f5"


async def test_an_emptied_keymap_gives_the_default_keys_back(isolated_env: Path) -> None:
    from screens.app import MlConsoleApp
    from screens.widgets import HelpModal

    tui = SimpleNamespace(keys={"app.help": "f2"})
    settings: Any = SimpleNamespace(tui=tui)
    app = MlConsoleApp(settings=settings, needs_setup=True, status_interval=None)
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("f1")
        await pilot.pause()
        assert not isinstance(app.screen, HelpModal)  # help is on f2 now
        tui.keys = {}  # the operator removed the remap and saved the setup
        app.apply_keymap()
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpModal)


async def test_help_names_each_keys_binding_id_and_its_remapped_key(isolated_env: Path) -> None:
    """F1 lists the id beside each key (what to write under `[tui] keys`), and a remapped
    binding under the key that now does it."""
    from screens.app import MlConsoleApp
    from screens.widgets import HelpModal

    settings: Any = SimpleNamespace(tui=SimpleNamespace(keys={"setup.test": "ctrl+y"}))
    app = MlConsoleApp(settings=settings, needs_setup=True, status_interval=None)
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpModal)
        grid = app.screen.query_one(".help-keys", Static).content
        printer = Console(width=160, record=True, file=io.StringIO())
        printer.print(grid)
        listed = printer.export_text()
        assert "setup.save" in listed and "app.help" in listed
        test_line = next(line for line in listed.splitlines() if "setup.test" in line)
        assert test_line.split()[0] == "ctrl+y", test_line
