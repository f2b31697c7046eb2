"""Re-entrant use of one resource: the outermost `with` does the real work (BEGIN and
COMMIT, take and drop a file lock); a nested `with` in the same thread joins it. The state
file's transactions and the Expensify request window's file lock both work so. A leaf."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager


class Nesting:
    """Counts how deep the holding thread is; other threads wait on `lock` (pass the lock
    that already guards the resource, so that one lock serves both)."""

    def __init__(self, lock: threading.RLock | None = None) -> None:
        self.lock = lock if lock is not None else threading.RLock()
        self.depth = 0

    @contextlib.contextmanager
    def enter(self, outermost: Callable[[], AbstractContextManager[object]]) -> Iterator[None]:
        """Run the body inside `outermost()` when no `enter` is open in this thread; else
        inside the open one."""
        with self.lock:
            if self.depth:
                self.depth += 1
                try:
                    yield
                finally:
                    self.depth -= 1
                return
            with outermost():
                self.depth = 1
                try:
                    yield
                finally:
                    self.depth = 0
