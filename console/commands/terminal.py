"""What the commands that run on the engine for the operator share (`close`, `adopt`,
`replay --confirm-change`): where they write, how they open the engine, and how they say
that something failed (`ml-console: ...` on stderr, and the exit code `--auto` would give)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from console.errors import ConsoleError

if TYPE_CHECKING:
    from console.flows.cycle import Engine


def operator_actor() -> str:
    """Who the audit log names: the configured operator, else the OS user."""
    from console.audit import os_user
    from console.config import load_settings

    try:
        name = load_settings().settings.operator.name
    except ConsoleError:
        name = ""
    return str(name or os_user())


@dataclass(frozen=True)
class Terminal:
    """The streams a command writes to and the engine it opens: the process's own and the
    configured one, unless a caller (a test) passes others."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    opener: Callable[[], Engine] | None = None

    def open_engine(self) -> Engine:
        """The engine, opened as the operator (ConsoleError when it cannot be)."""
        from console.commands.auto import open_engine

        return (self.opener or (lambda: open_engine(actor=operator_actor())))()

    def failed(self, exc: ConsoleError) -> int:
        """Say on stderr what went wrong; the exit code for it."""
        from console.commands.auto import exit_code_for

        print(f"ml-console: {exc}", file=self.err)
        return int(exit_code_for(exc))
