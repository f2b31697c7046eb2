"""OAuth2 client-credentials token for IFS Cloud (Keycloak under /auth/realms/{realm}).

The token is refreshed at 5/6 of its `expires_in` (50 minutes of 60) and when IFS answers
401. Many threads needing a fresh token at once cause exactly one token request: they queue
on a lock and re-check before fetching. A refused client re-reads the credential source once
(a secret rotated in the keyring) and then raises AuthError, never loops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from console import http
from console.credentials import IfsCredentials, IfsCredentialSource
from console.errors import AuthError, ConfigError, ProtocolError, Unreachable

log = logging.getLogger(__name__)

SERVICE = "ifs"
REFRESH_FRACTION = 5 / 6
_REFUSED_ERRORS = {"invalid_client", "unauthorized_client", "invalid_grant", "access_denied"}


class _Refused(Exception):
    pass


@dataclass(eq=False, repr=False)  # its own __repr__: never the token
class TokenManager:
    token_url: str
    credentials: IfsCredentialSource
    _: KW_ONLY
    http_client: httpx.Client
    scope: str = "openid microprofile-jwt"
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    max_retry_s: float = 60.0
    # Called before every token request: the owner's rate limiter and request counter.
    before_request: Callable[[], None] | None = None
    refreshes: int = field(default=0, init=False)  # token requests that returned a token
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _token: SecretStr | None = field(default=None, init=False)
    _refresh_at: float = field(default=0.0, init=False)
    _expires_at: float = field(default=0.0, init=False)

    def __repr__(self) -> str:
        state = "valid" if self._token is not None else "none"
        return f"TokenManager(url={self.token_url!r}, token={state}, refreshes={self.refreshes})"

    def get(self) -> str:
        """A bearer token that is not due for refresh, fetching one if needed."""
        token = self._token
        if token is not None and self.clock() < self._refresh_at:
            return token.get_secret_value()
        with self._lock:
            # Another thread may have refreshed while we waited for the lock.
            token = self._token
            if token is not None and self.clock() < self._refresh_at:
                return token.get_secret_value()
            return self._fetch_locked()

    def invalidate(self, rejected: str) -> None:
        """IFS answered 401 to `rejected`: drop it, unless another thread already replaced
        it (then its replacement stands and no second refresh happens)."""
        with self._lock:
            if self._token is not None and self._token.get_secret_value() == rejected:
                self._token = None
                self._refresh_at = 0.0

    def seconds_to_refresh(self) -> float | None:
        """Seconds until the next proactive refresh (None before the first token)."""
        if self._token is None:
            return None
        return max(0.0, self._refresh_at - self.clock())

    # ------------------------------------------------------------------ fetching
    def _fetch_locked(self) -> str:
        creds = self._read_credentials()
        try:
            return self._fetch_with_retries(creds)
        except _Refused as first:
            fresh = self._read_credentials()
            if fresh == creds:
                raise AuthError(SERVICE, str(first)) from None
            log.info("ifs refused the client; retrying once with the re-read credentials")
            try:
                return self._fetch_with_retries(fresh)
            except _Refused as second:
                raise AuthError(SERVICE, str(second)) from None

    def _read_credentials(self) -> IfsCredentials:
        creds = self.credentials()
        if not creds.client_id or not creds.client_secret.get_secret_value():
            raise ConfigError(f"{SERVICE}: the client ID or client secret is empty")
        return creds

    def _fetch_with_retries(self, creds: IfsCredentials) -> str:
        policy = http.retry_policy(
            max_attempts=5,
            max_total_s=self.max_retry_s,
            clock=self.clock,
            sleep=self.sleep,
        )
        try:
            for attempt in policy:
                with attempt:
                    return self._fetch_once(creds)
        except http.TransientError as exc:
            raise Unreachable(SERVICE, f"token request: {exc.message}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _fetch_once(self, creds: IfsCredentials) -> str:
        if self.before_request is not None:
            self.before_request()
        form = {
            "grant_type": "client_credentials",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret.get_secret_value(),
            "scope": self.scope,
        }
        try:
            response = self.http_client.post(
                self.token_url, data=form, headers={"Accept": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise http.TransientError(http.transport_error_text(exc)) from None
        status = response.status_code
        if status == 429 or status >= 500:
            if http.looks_like_html(response) and status < 500:
                raise ProtocolError(SERVICE, http.describe_html(response, "the token request"))
            retry_after = http.parse_retry_after(response.headers.get("Retry-After"))
            raise http.TransientError(f"token request: HTTP {status}", retry_after=retry_after)
        if http.looks_like_html(response):
            raise ProtocolError(SERVICE, http.describe_html(response, "the token request"))
        if status in (400, 401, 403):
            body = _safe_json(response)
            error = str(body.get("error", "")) if isinstance(body, dict) else ""
            description = str(body.get("error_description", "")) if isinstance(body, dict) else ""
            if status in (401, 403) or error in _REFUSED_ERRORS:
                detail = error or f"HTTP {status}"
                if description:
                    detail += f" ({description[:120]})"
                raise _Refused(f"the token endpoint refused client {creds.client_id!r}: {detail}")
            raise ProtocolError(
                SERVICE, f"the token request was rejected: HTTP {status} {error}".strip()
            )
        if status != 200:
            raise ProtocolError(SERVICE, f"the token request answered HTTP {status}")
        body = http.parse_json(response, service=SERVICE, what="the token request")
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise ProtocolError(SERVICE, "the token answer has no access_token")
        try:
            lifetime = float(body.get("expires_in", 300))
        except (TypeError, ValueError):
            lifetime = 300.0
        lifetime = max(1.0, lifetime)
        now = self.clock()
        token = str(body["access_token"])
        self._token = SecretStr(token)
        self._expires_at = now + lifetime
        self._refresh_at = now + lifetime * REFRESH_FRACTION
        self.refreshes += 1
        return token


def _safe_json(response: httpx.Response) -> Any:
    try:
        return http.parse_json(response, service=SERVICE, what="the token request")
    except ProtocolError:
        return {}
