"""What both simulators share: the request log and fault injection.

Faults are set through `POST /__sim/faults` and apply to every non-`/__sim/` route they
match. `/__sim/` routes are never faulted, counted, authenticated or rate-limited.

A fault spec (JSON):
    {"route": "VoucherSet",          # regex searched in the request path ("" = any)
     "method": "POST",               # or "*" (default)
     "fault": "status",              # see KINDS
     "status": 503,                  # for "status"
     "retry_after": 2,               # for status 429/503: Retry-After seconds (omit for none)
     "latency_ms": 80,               # for "latency" and "timeout"
     "count": 3,                     # apply to this many matching requests (default: unlimited)
     "skip": 0,                      # let this many matching requests through first
     "rate": 1.0}                    # probability per matching request (seeded RNG)
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FaultKind = Literal[
    "status",  # answer `status` with the system's error body, without acting
    "latency",  # add latency_ms, then act normally
    "timeout",  # act only after latency_ms (the client should have given up by then)
    "drop-before",  # drop the connection before the server acts
    "drop-after",  # the server acts and commits, then the connection drops (unknown outcome)
    "malformed-json",  # 200 with a truncated JSON body, without acting
    "html",  # an HTML error page (as a proxy would answer), without acting
]
KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]


class FaultSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fault: FaultKind
    route: str = ""
    method: str = "*"
    status: int = 503
    retry_after: float | None = None
    latency_ms: int = 0
    count: int | None = Field(default=None, ge=0)
    skip: int = Field(default=0, ge=0)
    rate: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("route")
    @classmethod
    def _valid_regex(cls, v: str) -> str:
        re.compile(v)
        return v


class _ActiveFault:
    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self.pattern = re.compile(spec.route)
        self.seen = 0
        self.fired = 0

    def matches(self, method: str, path: str) -> bool:
        m = self.spec.method
        return (m == "*" or m.upper() == method.upper()) and bool(self.pattern.search(path))

    @property
    def exhausted(self) -> bool:
        return self.spec.count is not None and self.fired >= self.spec.count


class FaultBook:
    """The faults in force on one simulator. Thread-safe; deterministic given its seed."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: list[_ActiveFault] = []
        self._rng = random.Random(seed)
        self.injected: Counter[str] = Counter()

    def add(self, spec: FaultSpec) -> None:
        with self._lock:
            self._faults.append(_ActiveFault(spec))

    def add_posted(self, body: Any) -> None:
        """Add the faults of a control request's body: one spec or a list of them. All or
        none: a ValidationError in any spec adds nothing (the caller words the error)."""
        specs = body if isinstance(body, list) else [body]
        parsed = [FaultSpec.model_validate(s) for s in specs]
        for spec in parsed:
            self.add(spec)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{**f.spec.model_dump(), "fired": f.fired, "seen": f.seen} for f in self._faults]

    def pick(self, method: str, path: str) -> FaultSpec | None:
        with self._lock:
            for f in self._faults:
                if f.exhausted or not f.matches(method, path):
                    continue
                f.seen += 1
                if f.seen <= f.spec.skip:
                    continue
                if f.spec.rate < 1.0 and self._rng.random() >= f.spec.rate:
                    continue
                f.fired += 1
                self.injected[f.spec.fault] += 1
                return f.spec
        return None


class RequestLog:
    """Counts every non-control request by (method, path, status)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, int]] = Counter()

    def record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._counts[(method, path, status)] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            rows = [
                {"method": m, "path": p, "status": s, "count": c}
                for (m, p, s), c in sorted(self._counts.items())
            ]
        return {"total": sum(r["count"] for r in rows), "by_route": rows}

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


ErrorResponder = Callable[[int, str], Response]
"""Builds the system's own error response for an injected status: (status, message)."""


class _DroppedConnection(Exception):
    """Raised after the response head is sent so the server closes the socket mid-response."""


class SimMiddleware:
    """Applies faults and counts requests for every route outside /__sim/."""

    def __init__(
        self,
        app: ASGIApp,
        faults: FaultBook,
        log: RequestLog,
        error_response: ErrorResponder,
        control_prefix: str = "/__sim/",
    ) -> None:
        self.app = app
        self.faults = faults
        self.log = log
        self.error_response = error_response
        self.control_prefix = control_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.control_prefix):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        started = False

        async def counting_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and not started:
                # Count before the head goes out: a client that has its answer must find the
                # request in the log already (tests read the log the moment they are answered).
                started = True
                self.log.record(method, path, message["status"])
            await send(message)

        try:
            await self._dispatch(scope, receive, counting_send, method, path)
        finally:
            if not started:
                self.log.record(method, path, 599)

    async def _dispatch(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str
    ) -> None:
        spec = self.faults.pick(method, path)
        if spec is None:
            await self.app(scope, receive, send)
            return
        kind = spec.fault
        if kind in ("latency", "timeout"):
            await asyncio.sleep(spec.latency_ms / 1000)
            await self.app(scope, receive, send)
            return
        if kind == "status":
            msg = f"injected fault: HTTP {spec.status}"
            resp = self.error_response(spec.status, msg)
            if spec.retry_after is not None and spec.status in (429, 503):
                resp.headers["Retry-After"] = _retry_after_text(spec.retry_after)
            await resp(scope, receive, send)
            return
        if kind == "malformed-json":
            resp = Response(b'{"value": [{"Company": "10", ', media_type="application/json")
            await resp(scope, receive, send)
            return
        if kind == "html":
            body = (
                b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
                b"<body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"
            )
            await Response(body, status_code=502, media_type="text/html")(scope, receive, send)
            return
        if kind == "drop-before":
            await _drop(send)
            return
        if kind == "drop-after":
            # Let the server act fully (commit), swallow its answer, then drop the socket.
            async def swallow(message: Message) -> None:
                return None

            await self.app(scope, receive, swallow)
            await _drop(send)
            return
        raise AssertionError(f"unhandled fault kind {kind}")


def _retry_after_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


async def _drop(send: Send) -> None:
    # A response head promising a body that never comes, then an exception: uvicorn closes
    # the connection and the client sees a protocol error (connection dropped mid-response).
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
        }
    )
    raise _DroppedConnection("injected fault: connection dropped")
