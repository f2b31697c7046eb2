"""The posting lock: `flock` on a file next to the state file. The OS releases it when its
holder dies, even by SIGKILL. The file's content only says who holds it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from console import clock
from console.errors import ConfigError, LockHeld
from console.store.base import _private_dir, iso, utc_now


@dataclass(frozen=True)
class LockInfo:
    pid: int
    actor: str
    since: str

    def describe(self) -> str:
        return f"pid {self.pid} ({self.actor}) since {self.since}"


class PostingLock:
    """An exclusive `flock` on `<state>.lock`. The OS drops it when the holder dies, so a
    SIGKILLed run never leaves a stale lock. A second holder waits up to `wait_s`, then gets
    LockHeld naming the holder (pid, actor, since: written into the file after locking)."""

    def __init__(self, path: str | Path, actor: str, *, wait_s: float = 10.0) -> None:
        self.path = Path(path)
        self.actor = actor
        self.wait_s = wait_s
        self._fd: int | None = None
        self._depth = 0

    def holder(self) -> LockInfo | None:
        try:
            text = self.path.read_text(encoding="utf-8")
            data = json.loads(text)
            return LockInfo(int(data["pid"]), str(data["actor"]), str(data["since"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def acquire(self) -> None:
        if self._fd is not None:
            self._depth += 1
            return
        # Taken only to post: nothing is posted by rules of a day that has not come yet.
        try:
            clock.refuse_future_posting()
        except clock.AsOfError as exc:
            raise ConfigError(str(exc)) from None
        _private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + max(0.0, self.wait_s)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    info = self.holder()
                    who = info.describe() if info else "another process"
                    raise LockHeld(
                        f"another run holds the posting lock: {who}; waited {self.wait_s:g}s"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        payload = json.dumps({"pid": os.getpid(), "actor": self.actor, "since": iso(utc_now())})
        os.pwrite(fd, payload.encode(), 0)
        self._fd = fd
        self._depth = 1

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> PostingLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
