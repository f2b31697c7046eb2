"""Client-side limiter for the IFS tenant: a sliding window of `per_window` requests per
`window_s` seconds (default a minute).

A sliding window (not a token bucket with burst) guarantees that no interval of
`window_s` ever holds more than `per_window` of our requests, so with the limit set under
the tenant's, steady state never sees a 429 whichever way the tenant counts.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field

from console.errors import Unreachable


@dataclass(eq=False)
class RateLimiter:
    per_window: int
    _: KW_ONLY
    window_s: float = 60.0
    max_wait_s: float = 120.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    service: str = "ifs"
    waited_s: float = field(default=0.0, init=False)
    _stamps: deque[float] = field(default_factory=deque, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _paused_until: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.per_window < 1 or self.window_s <= 0:
            raise ValueError("the rate limit must be at least 1 request per positive window")

    def _prune(self, now: float) -> None:
        while self._stamps and self._stamps[0] <= now - self.window_s:
            self._stamps.popleft()

    def _try(self) -> float:
        with self._lock:
            now = self.clock()
            self._prune(now)
            if now < self._paused_until:
                return self._paused_until - now
            if len(self._stamps) < self.per_window:
                self._stamps.append(now)
                return 0.0
            return self._stamps[0] + self.window_s - now

    def acquire(self) -> None:
        """Block until one more request fits; Unreachable if that would take too long."""
        waited = 0.0
        for _ in range(100_000):  # bounded: every pass returns or sleeps a positive time
            wait = self._try()
            if wait <= 0:
                return
            wait = max(wait, 0.001)
            if waited + wait > self.max_wait_s:
                raise Unreachable(
                    self.service,
                    f"the client-side rate limit ({self.per_window} per {self.window_s:g} s) "
                    f"stays full for longer than {self.max_wait_s:g} s",
                )
            self.sleep(wait)
            waited += wait
            with self._lock:
                self.waited_s += wait
        raise Unreachable(self.service, "the client-side rate limiter did not free a slot")

    def pause(self, seconds: float) -> None:
        """The tenant answered 429 with Retry-After: hold every thread back that long."""
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock() + max(0.0, seconds))

    def budget_in_use(self) -> float:
        """Fraction of the window's budget used right now, 0..1 (for the TUI header)."""
        with self._lock:
            self._prune(self.clock())
            return min(1.0, len(self._stamps) / self.per_window)

    def in_window(self) -> int:
        with self._lock:
            self._prune(self.clock())
            return len(self._stamps)
