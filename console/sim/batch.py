"""OData v4 `$batch` for the IFS simulator: multipart/mixed in, multipart/mixed out.

What reference/ifs-cloud.md §3.3 states, and the OData 4.0 multipart format:
- `POST …/<Projection>.svc/$batch`, `Content-Type: multipart/mixed; boundary=…`;
- each part is `application/http` holding one request, or a nested multipart/mixed change
  set; a change set is all-or-nothing and cannot contain a GET;
- parts run in order; `Content-ID` names a request of a change set and a later part of the
  same change set may refer to it as `$<Content-ID>` (in its URL, and in `If-Match: $n`,
  which stands for the ETag of the entity that request created);
- the answer holds one response per top-level part, in order; a change set that succeeded
  answers a multipart/mixed of its responses (each with its Content-ID); one that failed
  answers a single response: the error of the request that failed (with its Content-ID),
  and nothing of the change set is kept.

Each request runs through the simulator's own OData handler (so every rule of a single
request applies); the simulator's tenant gate (latency, rate limit) and fault injection see
the `$batch` request once. Whether the rate limit counts a batch as one request or as each of
its parts is `IfsSimSettings.batch_counts_parts` (`BatchRunner.parts_to_admit`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Scope

MAX_PARTS = 1000
_BOUNDARY_RE = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_REQUEST_LINE_RE = re.compile(r"^([A-Z]+) (\S+) HTTP/1\.[01]$")
_REF_RE = re.compile(r"^\$([A-Za-z0-9_.\-]+)(.*)$")


class BatchFormatError(ValueError):
    """The batch body is not a well-formed OData multipart batch (answered 400)."""


@dataclass
class PartRequest:
    """One request inside a batch."""

    method: str
    target: str  # as written: absolute, absolute path, or relative to the service root
    headers: dict[str, str]  # lower-case names
    body: bytes
    content_id: str | None = None


@dataclass
class ChangeSet:
    requests: list[PartRequest]


BatchItem = PartRequest | ChangeSet


@dataclass
class PartResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    content_id: str | None = None


@dataclass
class BatchStats:
    """What the simulator saw of batches (the request log counts each `$batch` once)."""

    batches: int = 0
    parts: int = 0
    change_sets_failed: int = 0
    by_status: dict[int, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "parts": self.parts,
            "change_sets_failed": self.change_sets_failed,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
        }


def boundary_of(content_type: str) -> str:
    if content_type.split(";")[0].strip().lower() != "multipart/mixed":
        raise BatchFormatError(
            f"a $batch request must be multipart/mixed, not '{content_type or 'missing'}'"
        )
    m = _BOUNDARY_RE.search(content_type)
    if m is None:
        raise BatchFormatError("the multipart/mixed Content-Type has no boundary")
    return m.group(1) or m.group(2)


def split_multipart(body: bytes, boundary: str) -> list[bytes]:
    """The parts between `--boundary` delimiters (preamble and epilogue dropped)."""
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = re.split(rb"(?:\r?\n)?" + re.escape(delimiter), body)
    if len(chunks) < 2:
        raise BatchFormatError("the batch body has no part delimited by its boundary")
    parts: list[bytes] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            return parts
        parts.append(re.sub(rb"^[ \t]*\r?\n", b"", chunk, count=1))
        if len(parts) > MAX_PARTS:
            raise BatchFormatError(f"more than {MAX_PARTS} parts in one batch")
    raise BatchFormatError("the batch body has no closing delimiter")


def split_head(data: bytes) -> tuple[dict[str, str], bytes]:
    """MIME/HTTP headers (lower-case names) and what follows the blank line."""
    m = re.search(rb"\r?\n\r?\n", data)
    head, rest = (data[: m.start()], data[m.end() :]) if m else (data, b"")
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BatchFormatError(f"a part header line has no colon: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers, rest


def _parse_request(part: bytes) -> PartRequest:
    mime, inner = split_head(part)
    kind = mime.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/http":
        raise BatchFormatError(f"a batch part must be application/http, not '{kind}'")
    # The first line of the embedded request sits right after the MIME headers.
    inner = inner.lstrip(b"\r\n")
    line_end = inner.find(b"\n")
    request_line = (inner if line_end < 0 else inner[:line_end]).decode("latin-1").strip()
    m = _REQUEST_LINE_RE.match(request_line)
    if m is None:
        raise BatchFormatError(f"not an HTTP request line: {request_line[:80]!r}")
    headers, body = split_head(b"" if line_end < 0 else inner[line_end + 1 :])
    body = re.sub(rb"\r?\n$", b"", body)
    return PartRequest(m.group(1), m.group(2), headers, body, mime.get("content-id"))


def parse_batch(body: bytes, content_type: str) -> list[BatchItem]:
    items: list[BatchItem] = []
    for part in split_multipart(body, boundary_of(content_type)):
        mime, rest = split_head(part)
        kind = mime.get("content-type", "")
        if kind.split(";")[0].strip().lower() == "multipart/mixed":
            requests = [_parse_request(p) for p in split_multipart(rest, boundary_of(kind))]
            if not requests:
                raise BatchFormatError("an empty change set")
            for r in requests:
                if r.method in ("GET", "HEAD"):
                    raise BatchFormatError("a change set cannot contain a GET")
                if r.content_id is None:
                    raise BatchFormatError("every request of a change set needs a Content-ID")
            ids = [r.content_id for r in requests]
            if len(set(ids)) != len(ids):
                raise BatchFormatError("Content-IDs repeat within a change set")
            items.append(ChangeSet(requests))
        else:
            items.append(_parse_request(part))
    if not items:
        raise BatchFormatError("the batch holds no request")
    return items


def count_parts(items: list[BatchItem]) -> int:
    return sum(len(i.requests) if isinstance(i, ChangeSet) else 1 for i in items)


def _http_part(response: PartResponse) -> bytes:
    reason = (
        HTTPStatus(response.status).phrase
        if response.status in HTTPStatus._value2member_map_
        else ""
    )
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if response.content_id is not None:
        lines.append(f"Content-ID: {response.content_id}")
    lines += ["", f"HTTP/1.1 {response.status} {reason}".rstrip()]
    lines += [f"{k}: {v}" for k, v in response.headers.items()]
    lines += ["", ""]
    return "\r\n".join(lines).encode("latin-1") + response.body


def _multipart(parts: list[bytes], boundary: str) -> bytes:
    out = b""
    for p in parts:
        out += b"--" + boundary.encode() + b"\r\n" + p + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n"


def render_batch(results: list[PartResponse | list[PartResponse]]) -> tuple[bytes, str]:
    """The batch answer body and its Content-Type. A list stands for a change set that
    succeeded; a single response for a plain request or a change set that failed."""
    boundary = "batchresponse_" + secrets.token_hex(8)
    parts: list[bytes] = []
    for r in results:
        if isinstance(r, list):
            inner_boundary = "changesetresponse_" + secrets.token_hex(8)
            inner = _multipart([_http_part(x) for x in r], inner_boundary)
            head = f"Content-Type: multipart/mixed; boundary={inner_boundary}\r\n\r\n"
            parts.append(head.encode() + inner)
        else:
            parts.append(_http_part(r))
    return _multipart(parts, boundary), f"multipart/mixed; boundary={boundary}"


# ---------------------------------------------------------------- execution
Handler = Callable[[Request], Awaitable[Response]]


class BatchRunner:
    """Runs a parsed batch through the simulator's OData handler.

    `handle` answers one request (the simulator's own OData entry point). `transaction` is a
    context factory giving all-or-nothing semantics to a change set: `snapshot()` before,
    `restore(state)` after a failure.
    """

    def __init__(
        self,
        handle: Handler,
        snapshot: Callable[[], Any],
        restore: Callable[[Any], None],
        stats: BatchStats,
        *,
        take_break: Callable[[], int | None] | None = None,
    ) -> None:
        self.handle = handle
        self.snapshot = snapshot
        self.restore = restore
        self.stats = stats
        # A test hook: how many requests of the next change set run before the server
        # "dies" (what they did is kept, the change set answers 500), or None.
        self.take_break = take_break or (lambda: None)

    async def run(self, outer: Request, service_root_path: str, items: list[BatchItem]) -> Response:
        results: list[PartResponse | list[PartResponse]] = []
        self.stats.batches += 1
        self.stats.parts += count_parts(items)
        for item in items:
            if isinstance(item, PartRequest):
                results.append(await self._one(outer, service_root_path, item, {}))
                continue
            state = self.snapshot()
            done: list[PartResponse] = []
            created: dict[str, tuple[str, str]] = {}  # Content-ID -> (entity path, ETag)
            failed: PartResponse | None = None
            broken = self.take_break()
            for n, request in enumerate(item.requests):
                if broken is not None and n == broken:
                    failed = self._error(
                        request, 500, "the server stopped while it ran this change set"
                    )
                    break
                response = await self._one(outer, service_root_path, request, created)
                if response.status >= 400:
                    failed = response
                    break
                done.append(response)
                if request.content_id is not None:
                    location = response.headers.get("location", "")
                    created[request.content_id] = (
                        urlsplit(location).path,
                        response.headers.get("etag", ""),
                    )
            if failed is not None:
                # All or nothing: what the earlier requests of the change set did is undone
                # (except when the server "died" midway, the test hook's point).
                if broken is None or len(done) != broken:
                    self.restore(state)
                self.stats.change_sets_failed += 1
                results.append(failed)
            else:
                results.append(done)
        body, content_type = render_batch(results)
        return Response(
            body,
            200,
            media_type=None,
            headers={"Content-Type": content_type, "OData-Version": "4.0"},
        )

    async def _one(
        self,
        outer: Request,
        service_root_path: str,
        request: PartRequest,
        created: Mapping[str, tuple[str, str]],
    ) -> PartResponse:
        headers = dict(request.headers)
        target = request.target
        ref = _REF_RE.match(target)
        if ref is not None:
            if ref.group(1) not in created:
                return self._error(request, 400, f"'${ref.group(1)}' names no earlier request")
            target = created[ref.group(1)][0] + ref.group(2)
        if_match = headers.get("if-match", "")
        ref = _REF_RE.match(if_match)
        if ref is not None:
            if ref.group(1) not in created:
                return self._error(request, 400, f"If-Match '${ref.group(1)}' names nothing")
            headers["if-match"] = created[ref.group(1)][1]
        parts = urlsplit(target)
        if parts.scheme:
            path, query = parts.path, parts.query
        elif target.startswith("/"):
            path, query = parts.path, parts.query
        else:
            path, query = service_root_path.rstrip("/") + "/" + parts.path, parts.query
        if not path.startswith(service_root_path.rstrip("/") + "/"):
            return self._error(request, 400, "a batch part must address the same service")
        # The outer request's Authorization stands for every part unless a part has its own.
        if "authorization" not in headers and "authorization" in outer.headers:
            headers["authorization"] = outer.headers["authorization"]
        scope: Scope = {
            "type": "http",
            "http_version": "1.1",
            "method": request.method,
            "scheme": outer.url.scheme,
            "server": outer.scope.get("server"),
            "client": outer.scope.get("client"),
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
            + [(b"host", outer.headers.get("host", "").encode("latin-1"))],
            "path_params": _path_params(path),
            "app": outer.scope.get("app"),
        }
        body = request.body

        async def receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        response = await self.handle(Request(scope, receive))
        out_headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.raw_headers
        }
        out_headers.pop("content-length", None)
        result = PartResponse(
            response.status_code, out_headers, bytes(response.body), request.content_id
        )
        self.stats.by_status[result.status] = self.stats.by_status.get(result.status, 0) + 1
        return result

    def _error(self, request: PartRequest, status: int, message: str) -> PartResponse:
        import json

        body = json.dumps({"error": {"code": "ODP_BATCH_ERROR", "message": message}}).encode()
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        return PartResponse(status, {"content-type": "application/json"}, body, request.content_id)


def _path_params(path: str) -> dict[str, str]:
    m = re.match(r"^/([^/]+)/ifsapplications/projection/v1/(.*)$", path)
    if m is None:
        return {"deployment": "", "rest": ""}
    return {"deployment": m.group(1), "rest": m.group(2)}


def batch_error(status: int, message: str) -> Response:
    import json

    return Response(
        json.dumps({"error": {"code": "ODP_BATCH_ERROR", "message": message}}),
        status,
        media_type="application/json",
    )
