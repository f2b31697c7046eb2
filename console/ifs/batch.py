"""Client side of OData `$batch` for voucher posts (reference/ifs-cloud.md §3.3).

One voucher per change set, so IFS commits or refuses each voucher on its own: a voucher IFS
rejects fails alone and the others of the batch are posted. The request is
multipart/mixed; each change set holds one `POST <VoucherSet>` with `Content-ID: 1` and the
journal template's ETag in `If-Match`. The answer is read per change set, in order:

- a multipart/mixed of responses (the change set committed) → the created voucher;
- a single response (the change set failed) → that error (nothing of it was committed);
- a change set missing from the answer, or answered 5xx → outcome unknown for that voucher
  (the caller looks it up by ReferenceNumber, as after a dropped single POST).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from console import money
from console.errors import ConsoleError, ProtocolError, ServiceError, UnknownOutcome
from console.ifs.models import Voucher

SERVICE = "ifs"
_BOUNDARY_RE = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_STATUS_LINE_RE = re.compile(r"^HTTP/1\.[01] (\d{3})(?: .*)?$")


@dataclass(frozen=True)
class BatchResult:
    """What became of one voucher of a batch: `voucher` when IFS created it, else `error`
    (an UnknownOutcome when IFS may or may not have committed it)."""

    index: int
    voucher: Voucher | None = None
    error: ConsoleError | None = None

    @property
    def outcome(self) -> str:
        if self.voucher is not None:
            return "posted"
        return "unknown" if isinstance(self.error, UnknownOutcome) else "failed"


@dataclass(frozen=True)
class PartAnswer:
    """One response inside a batch answer."""

    status: int
    headers: dict[str, str]
    body: bytes
    content_id: str | None


def build_batch(
    vouchers: Sequence[tuple[Mapping[str, Any], str]], entity_set: str
) -> tuple[bytes, str]:
    """The multipart/mixed body (one change set per voucher) and its Content-Type, from
    (voucher body, If-Match ETag) pairs. `entity_set` is relative to the service root."""
    boundary = "batch_" + secrets.token_hex(12)
    out: list[bytes] = []
    for body, etag in vouchers:
        changeset = "changeset_" + secrets.token_hex(12)
        payload = money.dumps(dict(body)).encode("utf-8")
        request = (
            f"POST {entity_set} HTTP/1.1\r\n"
            "Content-Type: application/json\r\n"
            "Accept: application/json\r\n"
            f"If-Match: {etag}\r\n"
            f"Content-Length: {len(payload)}\r\n"
            "\r\n"
        ).encode("latin-1") + payload
        part = (
            b"Content-Type: application/http\r\n"
            b"Content-Transfer-Encoding: binary\r\n"
            b"Content-ID: 1\r\n\r\n" + request
        )
        out.append(
            f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
            f"--{changeset}\r\n".encode("latin-1")
            + part
            + f"\r\n--{changeset}--\r\n".encode("latin-1")
        )
    body_bytes = b"".join(out) + f"--{boundary}--\r\n".encode("latin-1")
    return body_bytes, f"multipart/mixed; boundary={boundary}"


def _boundary(content_type: str) -> str:
    if content_type.split(";")[0].strip().lower() != "multipart/mixed":
        raise ProtocolError(SERVICE, f"the $batch answer is '{content_type}', not multipart/mixed")
    m = _BOUNDARY_RE.search(content_type)
    if m is None:
        raise ProtocolError(SERVICE, "the $batch answer's Content-Type has no boundary")
    return m.group(1) or m.group(2)


def _split(body: bytes, boundary: str) -> list[bytes]:
    delimiter = re.escape(b"--" + boundary.encode("latin-1"))
    chunks = re.split(rb"(?:\r?\n)?" + delimiter, body)
    parts: list[bytes] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            return parts
        parts.append(re.sub(rb"^[ \t]*\r?\n", b"", chunk, count=1))
    raise ProtocolError(SERVICE, "the $batch answer ends before its closing delimiter")


def _head(data: bytes) -> tuple[dict[str, str], bytes]:
    m = re.search(rb"\r?\n\r?\n", data)
    head, rest = (data[: m.start()], data[m.end() :]) if m else (data, b"")
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _answer(part: bytes) -> PartAnswer:
    mime, inner = _head(part)
    inner = inner.lstrip(b"\r\n")
    end = inner.find(b"\n")
    line = (inner if end < 0 else inner[:end]).decode("latin-1").strip()
    m = _STATUS_LINE_RE.match(line)
    if m is None:
        raise ProtocolError(SERVICE, "a $batch answer part has no HTTP status line")
    headers, body = _head(b"" if end < 0 else inner[end + 1 :])
    return PartAnswer(int(m.group(1)), headers, body.rstrip(b"\r\n"), mime.get("content-id"))


def parse_batch_answer(body: bytes, content_type: str) -> list[PartAnswer | list[PartAnswer]]:
    """Top-level answers in order: a list for a change set that committed, a single answer
    for a plain request or a change set that failed."""
    out: list[PartAnswer | list[PartAnswer]] = []
    for part in _split(body, _boundary(content_type)):
        mime, rest = _head(part)
        kind = mime.get("content-type", "")
        if kind.split(";")[0].strip().lower() == "multipart/mixed":
            out.append([_answer(p) for p in _split(rest, _boundary(kind))])
        else:
            out.append(_answer(part))
    return out


def _error_of(answer: PartAnswer) -> tuple[str, str]:
    try:
        data = money.loads(answer.body)
    except ValueError:
        return "", " ".join(answer.body[:200].decode("utf-8", "replace").split())
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "")[:500]


def result_of(index: int, answer: PartAnswer | list[PartAnswer] | None) -> BatchResult:
    """One voucher's outcome from its change set's answer (None: missing from the answer)."""
    if answer is None:
        return BatchResult(
            index, error=UnknownOutcome(SERVICE, "the $batch answer has no part for this voucher")
        )
    if isinstance(answer, list):
        created = next((a for a in answer if 200 <= a.status < 300), None)
        if created is None:
            return BatchResult(
                index, error=UnknownOutcome(SERVICE, "a committed change set without a 2xx part")
            )
        try:
            data = money.loads(created.body)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return BatchResult(index, voucher=Voucher.model_validate(data))
        except (ValueError, ValidationError):
            return BatchResult(
                index,
                error=UnknownOutcome(
                    SERVICE,
                    f"the change set answered HTTP {created.status} with an unreadable voucher",
                ),
            )
    code, message = _error_of(answer)
    if answer.status >= 500:
        return BatchResult(
            index,
            error=UnknownOutcome(
                SERVICE,
                f"the change set answered HTTP {answer.status}"
                + (f" ({code}: {message})" if code else ""),
            ),
        )
    if 200 <= answer.status < 300:
        # A change set answered as a single 2xx (a server that does not nest): still created.
        return result_of(index, [answer])
    return BatchResult(
        index,
        error=ServiceError(SERVICE, answer.status, code or f"HTTP{answer.status}", message),
    )
