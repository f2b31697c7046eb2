"""Client side of OData `$batch`: how vouchers are created (reference/ifs-cloud.md §0), and
many reads of one projection in one request.

A voucher is created the way IFS's voucher entry assistant does it, in one change set (all
or nothing): the temporary voucher (`POST VoucherSet`, Content-ID 1), its rows
(`POST $1/VoucherPostingArray`), then the bound action `CreateVoucher` on `$1` with
`If-Match: $1` (the temporary voucher's ETag), which answers the voucher's number. One
voucher per change set, so IFS commits or refuses each voucher on its own: a voucher IFS
rejects fails alone and the others of the batch are posted. The answer is read per change
set, in order:

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
from decimal import Decimal
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


@dataclass(frozen=True)
class VoucherWire:
    """Where a voucher is created (design.md §3, reference/ifs-cloud.md §0): the temporary
    voucher's entity set relative to its service root, its rows' navigation and the bound
    action that turns it into a voucher; and the header values IFS needs besides the
    voucher's own."""

    entity_set: str = "VoucherSet"
    rows: str = "VoucherPostingArray"
    create_action: str = "IfsApp.VoucherEntryAssistantHandling.VoucherEntry_CreateVoucher"
    user_group: str = "AC"
    voucher_status: str = "Approved"


def header_of(voucher: Mapping[str, Any], wire: VoucherWire) -> dict[str, Any]:
    """The temporary voucher's body: the voucher's header in VoucherEntry's names."""
    header: dict[str, Any] = {
        "Company": voucher.get("Company"),
        "VoucherType": voucher.get("VoucherType"),
        "VoucherDate": voucher.get("VoucherDate"),
        "AccountingYear": voucher.get("AccountingYear"),
        "AccountingPeriod": voucher.get("AccountingPeriod"),
        "UserGroup": wire.user_group,
        "VoucherStatus": wire.voucher_status,
        "AmountMethod": "GrossAmountEntry",
        "OpennedFrom": "NEW_VOUCHER",
    }
    if voucher.get("Text"):
        header["VoucherText2"] = voucher["Text"]
    return {k: v for k, v in header.items() if v is not None}


def rows_of(voucher: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The voucher's rows as VoucherPosting bodies: each carries the company and the
    voucher's ReferenceNumber (IFS keeps the reference on the rows)."""
    reference = voucher.get("ReferenceNumber") or ""
    rows = voucher.get("VoucherRowArray") or []
    out = []
    for row in rows:
        body = {k: v for k, v in dict(row).items() if v is not None}
        body["Company"] = voucher.get("Company")
        if reference:
            body["ReferenceNumber"] = reference
        out.append(body)
    return out


def _request(method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if body is not None:
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode("latin-1") + (body or b"")


def _part(request: bytes, content_id: str | None) -> bytes:
    cid = f"Content-ID: {content_id}\r\n" if content_id else ""
    return (
        f"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n{cid}\r\n"
    ).encode("latin-1") + request


def build_voucher_batch(
    vouchers: Sequence[Mapping[str, Any]], wire: VoucherWire
) -> tuple[bytes, str, int]:
    """The multipart/mixed `$batch` body creating these vouchers, one change set each, its
    Content-Type and how many requests it holds. A change set: the temporary voucher
    (Content-ID 1), its rows (`$1/VoucherPostingArray`), then CreateVoucher on `$1` with
    `If-Match: $1` (the temporary voucher's ETag)."""
    boundary = "batch_" + secrets.token_hex(12)
    out: list[bytes] = []
    parts = 0
    json_headers = {"Content-Type": "application/json", "Accept": "application/json"}
    for voucher in vouchers:
        changeset = "changeset_" + secrets.token_hex(12)
        requests = [
            _part(
                _request(
                    "POST",
                    wire.entity_set,
                    money.dumps(header_of(voucher, wire)).encode("utf-8"),
                    json_headers,
                ),
                "1",
            )
        ]
        for n, row in enumerate(rows_of(voucher), start=2):
            requests.append(
                _part(
                    _request(
                        "POST",
                        f"$1/{wire.rows}",
                        money.dumps(row).encode("utf-8"),
                        json_headers,
                    ),
                    str(n),
                )
            )
        requests.append(
            _part(
                _request(
                    "POST",
                    f"$1/{wire.create_action}",
                    b"{}",
                    {**json_headers, "If-Match": "$1"},
                ),
                str(len(requests) + 1),
            )
        )
        parts += len(requests)
        body = b"".join(
            f"--{changeset}\r\n".encode("latin-1") + r + b"\r\n" for r in requests
        ) + f"--{changeset}--\r\n".encode("latin-1")
        out.append(
            f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode(
                "latin-1"
            )
            + body
        )
    body_bytes = b"".join(out) + f"--{boundary}--\r\n".encode("latin-1")
    return body_bytes, f"multipart/mixed; boundary={boundary}", parts


def build_get_batch(targets: Sequence[str]) -> tuple[bytes, str]:
    """A `$batch` of plain GETs (no change sets), each target relative to the service root:
    many reads of one projection in one HTTP request."""
    boundary = "batch_" + secrets.token_hex(12)
    out = [
        f"--{boundary}\r\n".encode("latin-1")
        + _part(_request("GET", target, None, {"Accept": "application/json"}), None)
        + b"\r\n"
        for target in targets
    ]
    return b"".join(out) + f"--{boundary}--\r\n".encode("latin-1"), (
        f"multipart/mixed; boundary={boundary}"
    )


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


def error_of(answer: PartAnswer) -> tuple[str, str]:
    try:
        data = money.loads(answer.body)
    except ValueError:
        return "", " ".join(answer.body[:200].decode("utf-8", "replace").split())
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "")[:500]


def _json_of(answer: PartAnswer) -> dict[str, Any]:
    data = money.loads(answer.body)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return data


def voucher_of(answers: Sequence[PartAnswer], sent: Mapping[str, Any]) -> Voucher:
    """The voucher a committed change set created: the header as IFS prepared it (year,
    period), the number CreateVoucher returned, the rows as IFS answered them."""
    header = _json_of(answers[0])
    number = _json_of(answers[-1]).get("value")
    if isinstance(number, bool) or not isinstance(number, int | Decimal):
        raise ValueError("CreateVoucher returned no voucher number")
    rows = [_json_of(a) for a in answers[1:-1]]
    return Voucher.model_validate(
        {
            **header,
            "VoucherNo": int(number),
            "ReferenceNumber": sent.get("ReferenceNumber") or "",
            "Text": sent.get("Text") or "",
            "VoucherRowArray": rows,
        }
    )


def result_of(
    index: int, answer: PartAnswer | list[PartAnswer] | None, sent: Mapping[str, Any]
) -> BatchResult:
    """One voucher's outcome from its change set's answer (None: missing from the answer)."""
    if answer is None:
        return BatchResult(
            index, error=UnknownOutcome(SERVICE, "the $batch answer has no part for this voucher")
        )
    if isinstance(answer, list):
        if len(answer) < 2 or not all(200 <= a.status < 300 for a in answer):
            return BatchResult(
                index, error=UnknownOutcome(SERVICE, "a committed change set without its answers")
            )
        try:
            return BatchResult(index, voucher=voucher_of(answer, sent))
        except (ValueError, ValidationError):
            return BatchResult(
                index,
                error=UnknownOutcome(
                    SERVICE, "the change set committed but its answer could not be read"
                ),
            )
    code, message = error_of(answer)
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
        # A lone 2xx where a change set's answers were expected: not a voucher we can read.
        return BatchResult(
            index, error=UnknownOutcome(SERVICE, "a change set answered with a single 2xx")
        )
    return BatchResult(
        index,
        error=ServiceError(SERVICE, answer.status, code or f"HTTP{answer.status}", message),
    )
