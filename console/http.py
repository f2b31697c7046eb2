"""HTTP plumbing both clients share: URL policy, the httpx client, JSON reading, retries.

Nothing here ever puts a request body, a header or a URL query into an error message: request
bodies carry secrets (Expensify's partnerUserSecret, IFS's client_secret and bearer token).
"""

from __future__ import annotations

import email.utils
import ipaddress
import random
import re
import time
from collections.abc import Callable
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
import tenacity

from console import __version__, money
from console.errors import ConfigError, ProtocolError

USER_AGENT = f"ml-console/{__version__}"

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, service: str) -> str:
    """The URL without a trailing slash, if it is HTTPS (or plain HTTP to a loopback host).

    Credentials travel in these requests, so anything else is a configuration error.
    """
    text = (url or "").strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{service}: the URL {text!r} is not valid ({exc})") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigError(
            f"{service}: the URL {text!r} must be an absolute https:// URL "
            "(for example https://acme.ifs.cloud)"
        )
    if parts.username or parts.password:
        raise ConfigError(f"{service}: the URL must not carry a user name or password")
    if parts.query or parts.fragment:
        raise ConfigError(f"{service}: the URL {text!r} must not have a query or fragment")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ConfigError(
            f"{service}: the URL {text!r} uses plain http; credentials would travel "
            "unencrypted. Use https:// (plain http is allowed only for loopback hosts)"
        )
    return text.rstrip("/")


class PooledClient:
    """A service client that owns one connection pool (from make_client): close() frees
    it, and the client is a context manager that closes it on the way out."""

    _http: httpx.Client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_client(*, timeout_s: float, max_connections: int = 10) -> httpx.Client:
    """An httpx client with TLS verification on, explicit timeouts and our User-Agent.

    Redirects are not followed: a redirect would resend a bearer token or a form full of
    credentials to wherever the server points.
    """
    timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0))
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.Client(
        verify=True,
        timeout=timeout,
        limits=limits,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        trust_env=True,
    )


_TITLE_RE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def looks_like_html(response: httpx.Response) -> bool:
    ctype = response.headers.get("content-type", "").lower()
    if "html" in ctype:
        return True
    head = response.content[:200].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<head", b"<body"))


def html_title(response: httpx.Response) -> str:
    match = _TITLE_RE.search(response.content[:4096])
    if not match:
        return ""
    title = match.group(1).decode("utf-8", "replace")
    return " ".join(title.split())[:80]


def describe_html(response: httpx.Response, what: str) -> str:
    title = html_title(response)
    named = f" titled {title!r}" if title else ""
    return (
        f"answered {what} with an HTML page{named} (HTTP {response.status_code}) instead of "
        "JSON; a proxy, gateway or login page is probably in front of the service, or the "
        "URL points at the wrong place"
    )


def parse_json(response: httpx.Response, *, service: str, what: str) -> Any:
    """The response body as JSON (numbers with a fraction as Decimal), or a ProtocolError
    saying in one sentence what came back instead."""
    if looks_like_html(response):
        raise ProtocolError(service, describe_html(response, what))
    body = response.content
    if not body.strip():
        raise ProtocolError(
            service, f"answered {what} with an empty body (HTTP {response.status_code})"
        )
    try:
        return money.loads(body)
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if hasattr(exc, "msg") else type(exc).__name__
        raise ProtocolError(
            service,
            f"answered {what} with a body that is not valid JSON "
            f"(HTTP {response.status_code}, {len(body)} bytes: {reason})",
        ) from None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


class TransientError(Exception):
    """A failure worth retrying (transport error, 5xx, 429). `message` is safe to show."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def transport_error_text(exc: httpx.HTTPError) -> str:
    """What went wrong on the wire, without the request (whose URL or body may hold secrets)."""
    kind = type(exc).__name__
    labels = {
        "ConnectError": "could not connect",
        "ConnectTimeout": "timed out connecting",
        "ReadTimeout": "timed out waiting for the answer",
        "WriteTimeout": "timed out sending the request",
        "PoolTimeout": "timed out waiting for a free connection",
        "RemoteProtocolError": "the connection was dropped mid-answer",
        "ReadError": "the connection broke while reading the answer",
        "WriteError": "the connection broke while sending the request",
    }
    return labels.get(kind, f"transport error ({kind})")


def failed_before_send(exc: httpx.HTTPError) -> bool:
    """True when the request certainly never reached the server (safe to repeat a POST)."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


class _WaitRetryAfterOrBackoff(tenacity.wait.wait_base):
    """Retry-After when the server gave one, else exponential backoff with full jitter."""

    def __init__(self, initial_s: float, cap_s: float, rng: random.Random) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.rng = rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return exc.retry_after
        ceiling = min(self.cap_s, self.initial_s * (2 ** (retry_state.attempt_number - 1)))
        # Jitter keeps several processes retrying a shared tenant from hitting it in step.
        return self.initial_s / 2 + self.rng.uniform(0, max(0.0, ceiling - self.initial_s / 2))


def retry_policy(
    *,
    max_attempts: int,
    max_total_s: float,
    initial_s: float = 0.5,
    cap_s: float = 20.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> tenacity.Retrying:
    """A fresh retry policy for one call: retries TransientError only, bounded both in
    attempts and in total time (a wait that would overrun the time budget stops early), and
    re-raises the last TransientError so the caller can turn it into Unreachable."""
    start = clock()

    def stop(retry_state: tenacity.RetryCallState) -> bool:
        if retry_state.attempt_number >= max_attempts:
            return True
        upcoming = retry_state.upcoming_sleep or 0.0
        return (clock() - start) + upcoming > max_total_s

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientError),
        wait=_WaitRetryAfterOrBackoff(initial_s, cap_s, rng or random.Random()),
        stop=stop,
        sleep=sleep,
        reraise=True,
    )
