"""Expensify's request limits kept on our side: 5 requests per 10 s and 20 per 60 s per
partnerUserID.

The window (epoch seconds of recent requests) lives in a store that outlives the process, so
a cron run that starts right after another one still sees the other's requests and waits
instead of tripping the server's limit.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from console.errors import Unreachable
from console.nesting import Nesting

# Longest window we track; older stamps are dropped before saving.
_HORIZON_S = 60.0
_STAMP_TOLERANCE_S = 0.002


@runtime_checkable
class RequestWindowStore(Protocol):
    def load_window(self, key: str) -> list[float]: ...  # epoch seconds of recent requests

    def save_window(self, key: str, stamps: list[float]) -> None: ...


class MemoryWindowStore:
    """A window that lives as long as the process (tests, one-shot tools)."""

    def __init__(self) -> None:
        self._windows: dict[str, list[float]] = {}

    def load_window(self, key: str) -> list[float]:
        return list(self._windows.get(key, []))

    def save_window(self, key: str, stamps: list[float]) -> None:
        self._windows[key] = list(stamps)


class FileWindowStore:
    """A JSON file {key: [stamps]} guarded by an fcntl lock, shared by processes.

    `locked()` holds the lock across a load and a save, so two processes cannot both take
    the last free slot.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._nesting = Nesting()

    def locked(self) -> AbstractContextManager[None]:
        """The file lock, held across a load and a save; nested calls join the outer one."""
        return self._nesting.enter(self._file_lock)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _read_all(self) -> dict[str, list[float]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {
            str(k): [float(s) for s in v if isinstance(s, int | float)]
            for k, v in data.items()
            if isinstance(v, list)
        }

    def load_window(self, key: str) -> list[float]:
        with self.locked():
            return self._read_all().get(key, [])

    def save_window(self, key: str, stamps: list[float]) -> None:
        with self.locked():
            data = self._read_all()
            data[key] = list(stamps)
            tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, self.path)


@dataclass(eq=False)
class SlidingWindowLimiter:
    """Admits a request only when every (limit, window) pair still has room.

    `acquire()` records the request before it is sent (the server counts it whether or not
    it succeeds) and sleeps while the window is full, for at most `max_wait_s` in total.
    """

    store: RequestWindowStore
    key: str
    _: KW_ONLY
    limits: tuple[tuple[int, float], ...] = ((5, 10.0), (20, 60.0))
    max_wait_s: float = 120.0
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    service: str = "expensify"
    margin_s: float = 0.5
    waited_s: float = field(default=0.0, init=False)  # time spent waiting, for the summary
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    # Set by cancel(): a real sleep waits on it, so closing the console wakes a waiting request.
    _cancelled: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _horizon: float = field(default=_HORIZON_S, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.limits or any(n < 1 or w <= 0 for n, w in self.limits):
            raise ValueError("limits must be positive (count, seconds) pairs")
        self._horizon = max(_HORIZON_S, *(w for _, w in self.limits))

    @contextlib.contextmanager
    def _store_locked(self) -> Iterator[None]:
        locked = getattr(self.store, "locked", None)
        if callable(locked):
            with locked():
                yield
        else:
            yield

    def _recent(self, now: float) -> list[float]:
        stamps = self.store.load_window(self.key)
        # A stamp in the future (clock stepped back) still counts: it was a real request.
        return sorted(s for s in stamps if s > now - self._horizon)

    def wait_needed(self, stamps: list[float], now: float) -> float:
        """Seconds until one more request fits every window (0 when it fits now)."""
        wait = 0.0
        for count, window in self.limits:
            inside = [s for s in stamps if s > now - window]
            if len(inside) >= count:
                # The request that must age out before another fits.
                oldest_blocking = inside[len(inside) - count]
                wait = max(wait, oldest_blocking + window - now)
        return max(0.0, wait)

    def try_acquire(self) -> tuple[float, float]:
        """Take a slot: (0, its stamp). Or take nothing: (seconds to wait, 0)."""
        with self._lock, self._store_locked():
            now = self.clock()
            stamps = self._recent(now)
            wait = self.wait_needed(stamps, now)
            if wait <= 0:
                stamps.append(now)
                self.store.save_window(self.key, stamps)
                return 0.0, now
            return wait, 0.0

    def acquire(self, *, deadline_s: float | None = None) -> float:
        """Block until a request may be sent and return its stamp; Unreachable when that
        takes longer than the bound (`max_wait_s`, or `deadline_s` left to the caller)."""
        bound = self.max_wait_s if deadline_s is None else min(self.max_wait_s, deadline_s)
        waited = 0.0
        self._raise_if_cancelled()
        for _ in range(10_000):  # bounded: each pass either returns or sleeps > 0
            wait, stamp = self.try_acquire()
            if wait <= 0:
                return stamp
            # A margin past the exact edge: the server stamps a request when it arrives,
            # a little after we do, and float rounding must not land us just inside.
            wait += self.margin_s
            if waited + wait > bound:
                raise Unreachable(
                    self.service,
                    f"the request limit (at most {self._describe()}) stays full for longer "
                    f"than the {bound:.0f} s this run may wait",
                )
            self._pause(wait)
            waited += wait
            self.waited_s += wait
        raise Unreachable(self.service, "the request limiter did not free a slot")

    def cancel(self) -> None:
        """The console is closing: a request waiting for a slot gives up at once (Unreachable,
        nothing sent), and so does every later one. Quitting the TUI while a screen's read
        waited here took up to `max_wait_s`."""
        self._cancelled.set()

    def _pause(self, seconds: float) -> None:
        if self.sleep is time.sleep:
            self._cancelled.wait(seconds)
        else:
            self.sleep(seconds)  # a test's or the benchmark's virtual clock
        self._raise_if_cancelled()

    def _raise_if_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise Unreachable(self.service, "the console is closing: the request was not sent")

    def settle(self, stamp: float) -> None:
        """The request stamped `stamp` has been answered: move its stamp to now. The
        server saw it somewhere in between, so counting from the answer is the safe side
        however slow the request was."""
        with self._lock, self._store_locked():
            now = self.clock()
            stamps = self.store.load_window(self.key)
            # Stores may round stamps (to the millisecond): match the nearest one.
            near = [i for i, s in enumerate(stamps) if abs(s - stamp) <= _STAMP_TOLERANCE_S]
            if not near:
                return
            index = min(near, key=lambda i: abs(stamps[i] - stamp))
            stamps[index] = max(stamp, now)
            self.store.save_window(self.key, sorted(s for s in stamps if s > now - self._horizon))

    def note_server_limit(self, *, repeated: bool = False) -> float:
        """After a 429 without Retry-After: seconds until the server's window is clear of
        our latest request. First the shortest window; after a second 429 in a row the
        longest, because the server counts refused requests too and retrying every short
        window would keep a full long window full forever."""
        with self._lock, self._store_locked():
            now = self.clock()
            stamps = self._recent(now)
        windows = [w for _, w in self.limits]
        window = max(windows) if repeated else min(windows)
        latest = stamps[-1] if stamps else now
        return max(1.0, latest + window - now)

    def in_window(self, window_s: float) -> int:
        now = self.clock()
        return sum(1 for s in self.store.load_window(self.key) if s > now - window_s)

    def _describe(self) -> str:
        return " and ".join(f"{n} per {w:g} s" for n, w in self.limits)
