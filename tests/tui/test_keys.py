"""One meaning per key across the console (issue 15): every binding of every screen comes
from screens/keys.py, one key has one verb everywhere, and the README's table is current."""

from __future__ import annotations

import re
from pathlib import Path

from textual.binding import Binding

from screens.keys import KEYS, keys_markdown

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


def test_the_readme_key_table_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- keys:start -->\n(.*?)<!-- keys:end -->", text, re.S)
    assert found, "README.md has no generated Keys table"
    assert found[1] == keys_markdown(), (
        "README.md's Keys table is out of date: paste screens.keys.keys_markdown() between "
        "the keys:start and keys:end markers"
    )
