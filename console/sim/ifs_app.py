"""The IFS Cloud simulator: Keycloak token endpoint, OData v4 projections, manual vouchers.

Follows design.md §3 and reference/ifs-cloud.md. What the seed states is the default and
each is a setting (`IfsSimSettings`, changeable at runtime through `POST /__sim/settings`):
about 1000 requests per minute per tenant then 429 with Retry-After, `$top` above 5000
answers 500, the voucher POST needs `If-Match` with the journal template's current ETag.
Set `rate_limit_per_minute=None` and `require_if_match=False` for the real-tenant variant.

Served routes:
  POST /auth/realms/{realm}/protocol/openid-connect/token      client_credentials
  GET  /{main|int}/ifsapplications/projection/v1/{P}.svc/        service document
  GET  …/{P}.svc/$metadata                                       EDMX (always XML)
  GET  …/{P}.svc/{Set}[?$filter&$select&$orderby&$top&$skip&$count&$expand]
  GET  …/{P}.svc/{Set}({keys})[/VoucherRowArray]
  POST …/ManualVoucherHandling.svc/VoucherSet                     voucher with inline rows
  POST …/{P}.svc/$batch     multipart/mixed, change sets, Content-ID (console/sim/batch.py)

Control routes (never authenticated, rate-limited, faulted or counted):
  GET  /__sim/requests, POST /__sim/requests/reset, GET /__sim/vouchers,
  GET|POST|DELETE /__sim/faults (a FaultSpec or a list of them),
  POST /__sim/code-part-values {Company, CodePart, CodePartValue, …}  create or update,
  POST /__sim/tokens/revoke                       every outstanding token becomes invalid,
  GET|POST /__sim/credentials {client_id, client_secret | revoke}  set, rotate or revoke a
    client (revoking also revokes its tokens; no answer carries a secret),
  POST /__sim/templates/edit {Company, VoucherType}  another user edits the template,
  POST /__sim/periods {Company, AccountingYear, AccountingPeriod, PeriodStatus, …},
  POST /__sim/currency-rates {Company, CurrencyCode, ValidFrom, CurrencyRate, …},
  GET|POST /__sim/settings {field: value, …},
  POST /__sim/next-error-code {"code": "MI_MODIFIED_ERROR", "message": …, "count": 1}:
      the next `count` injected `status` faults answer with that error code and message
      (default message for MI_MODIFIED_ERROR: "Service metadata already modified.").

Error codes IFS documents are used as documented (ODP_RESOURCE_NOTFOUND,
ODP_DESERIALIZATION_ERROR, ODP_MISSING_PRECONDITION, MI_MODIFIED_ERROR); the business-rule
codes (VOUCHER_NOT_BALANCED, PERIOD_CLOSED, …) are inferred names for IFS's Error_SYS
messages, whose texts the simulator follows.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import math
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from console import money
from console.sim import batch as sim_batch
from console.sim import dataset as ds
from console.sim.faults import FaultBook, FaultSpec, RequestLog, SimMiddleware
from console.sim.odata import (
    RESOURCE_NOTFOUND,
    URI_SYNTAX_ERROR,
    EntityType,
    Navigation,
    ODataError,
    Property,
    QueryOptions,
    coerce_json,
    edmx,
    form_etag,
    format_key_predicate,
    json_value,
    parse_key_predicate,
    parse_query_options,
    rowid,
    run_query,
    select_fields,
)

CONTROL_PREFIX = "/__sim/"
ODATA_JSON = "application/json;odata.metadata=minimal;IEEE754Compatible=false"
CODE_PART_FIELDS = tuple(f"Code{c}" for c in "BCDEFGHIJ")
MI_MODIFIED_MESSAGE = "Service metadata already modified."


class IfsSimSettings(BaseModel):
    """Behaviours the seed states (defaults) and their real-tenant variants."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    rate_limit_per_minute: int | None = Field(default=1000, ge=1)
    max_top: int = Field(default=5000, ge=1)
    server_page_size: int = Field(default=1000, ge=1)
    require_if_match: bool = True
    latency_ms: int = Field(default=0, ge=0)
    # Undocumented on a real tenant: does its rate limit count a `$batch` as one request
    # (False) or each request inside it (True)? Both are simulated.
    batch_counts_parts: bool = False

    @classmethod
    def fast(cls) -> IfsSimSettings:
        """No rate limit, no latency: for tests and benchmarks."""
        return cls(rate_limit_per_minute=None, latency_ms=0)


# ---------------------------------------------------------------- the entity model
def _s(name: str, max_length: int | None = None, nullable: bool = True) -> Property:
    return Property(name, "Edm.String", nullable=nullable, max_length=max_length)


def _d(name: str) -> Property:
    return Property(name, "Edm.Date")


def _i(name: str, computed: bool = False) -> Property:
    return Property(name, "Edm.Int32", computed=computed)


def _dec(name: str) -> Property:
    return Property(name, "Edm.Decimal")


CODE_PART_VALUE = EntityType(
    "AccountingCodePartValue",
    (
        _s("Company", 20),
        _s("CodePart", 1),
        _s("CodePartValue", 20),
        _s("Description", 100),
        _d("ValidFrom"),
        _d("ValidUntil"),
    ),
    key=("Company", "CodePart", "CodePartValue"),
)
ACCOUNTING_PERIOD = EntityType(
    "AccountingPeriod",
    (
        _s("Company", 20),
        _i("AccountingYear"),
        _i("AccountingPeriod"),
        _s("Description", 100),
        _d("DateFrom"),
        _d("DateUntil"),
        _s("PeriodStatus", 20),
    ),
    key=("Company", "AccountingYear", "AccountingPeriod"),
)
CURRENCY_RATE = EntityType(
    "CurrencyRate",
    (
        _s("Company", 20),
        _s("CurrencyType", 10),
        _s("CurrencyCode", 3),
        _d("ValidFrom"),
        _dec("CurrencyRate"),
    ),
    key=("Company", "CurrencyType", "CurrencyCode", "ValidFrom"),
)
JOURNAL_TEMPLATE = EntityType(
    "JournalTemplate",
    (_s("Company", 20), _s("VoucherType", 3), _s("Description", 100)),
    key=("Company", "VoucherType"),
)
VOUCHER_ROW = EntityType(
    "VoucherRow",
    (
        _s("Company", 20),
        _s("VoucherType", 3),
        _i("AccountingYear"),
        _i("VoucherNo"),
        _i("RowNo"),
        _s("Account", 20),
        *(_s(name, 20) for name in CODE_PART_FIELDS),
        _s("CurrencyCode", 3),
        _dec("CurrencyRate"),
        _dec("CurrencyDebetAmount"),
        _dec("CurrencyCreditAmount"),
        _dec("DebetAmount"),
        _dec("CreditAmount"),
        _s("Text", 200),
    ),
    key=("Company", "VoucherType", "AccountingYear", "VoucherNo", "RowNo"),
)
VOUCHER = EntityType(
    "Voucher",
    (
        _s("Company", 20),
        _s("VoucherType", 3),
        _i("VoucherNo", computed=True),
        _i("AccountingYear"),
        _i("AccountingPeriod"),
        _d("VoucherDate"),
        _s("ReferenceNumber", 50),
        _s("Text", 200),
    ),
    key=("Company", "VoucherType", "AccountingYear", "VoucherNo"),
    navigations=(Navigation("VoucherRowArray", "VoucherRow"),),
)
# Fields a client sends per row; the parent keys come from the header.
_ROW_INPUT = tuple(
    p
    for p in VOUCHER_ROW.properties
    if p.name not in ("VoucherType", "AccountingYear", "VoucherNo")
)


@dataclass(frozen=True)
class _Projection:
    name: str
    sets: Mapping[str, EntityType]
    extra_types: tuple[EntityType, ...] = ()

    @property
    def types(self) -> tuple[EntityType, ...]:
        return (*dict.fromkeys(self.sets.values()), *self.extra_types)


PROJECTIONS: dict[str, _Projection] = {
    p.name: p
    for p in (
        _Projection("AccountingCodePartValueHandling", {"CodePartValueSet": CODE_PART_VALUE}),
        _Projection("AccountingPeriodHandling", {"AccountingPeriodSet": ACCOUNTING_PERIOD}),
        _Projection("CurrencyRateHandling", {"CurrencyRateSet": CURRENCY_RATE}),
        _Projection(
            "ManualVoucherHandling",
            {"JournalTemplateSet": JOURNAL_TEMPLATE, "VoucherSet": VOUCHER},
            extra_types=(VOUCHER_ROW,),
        ),
    )
}
_TABLE_NO = {"CodePartValueSet": 1, "AccountingPeriodSet": 2, "CurrencyRateSet": 3}
_TABLE_NO |= {"JournalTemplateSet": 4, "VoucherSet": 5, "VoucherRowArray": 6}


def _luname_keyref(entity: EntityType, values: Mapping[str, Any]) -> tuple[str, str]:
    def db_name(name: str) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()

    keyref = "".join(f"{db_name(k)}={json_value(values[k])}^" for k in entity.key)
    return entity.name, keyref


@dataclass
class _Record:
    """One row as IFS holds it: typed values plus objid/objversion (the ETag's parts)."""

    entity: EntityType
    values: dict[str, Any]
    objid: str
    objversion: datetime
    rows: list[_Record] = field(default_factory=list)

    @property
    def key(self) -> tuple[Any, ...]:
        return tuple(self.values[k] for k in self.entity.key)

    @property
    def etag(self) -> str:
        return form_etag(self.objid, self.objversion)


def _business(code: str, message: str) -> ODataError:
    return ODataError(400, code, message)


def _deserialization(message: str) -> ODataError:
    return ODataError(400, "ODP_DESERIALIZATION_ERROR", message)


_DEFAULT_CODES = {
    400: "ODP_BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "ODP_FORBIDDEN",
    404: RESOURCE_NOTFOUND,
    405: "ODP_METHOD_NOT_ALLOWED",
    423: "ODP_LOCKED",
    429: "TOO_MANY_REQUESTS",
    500: "ODP_INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        money.dumps(body, ensure_ascii=False),
        status_code=status,
        media_type=ODATA_JSON,
        headers={"OData-Version": "4.0", **(headers or {})},
    )


def _error(err: ODataError, headers: Mapping[str, str] | None = None) -> Response:
    return _json(err.body(), err.status, headers)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _RateLimiter:
    """Sliding 60-second window over admitted requests, on the injected clock."""

    WINDOW_S = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: deque[float] = deque()

    def admit(self, now: float, limit: int | None, n: int = 1) -> int | None:
        """None if `n` requests are admitted (all or none), else the Retry-After seconds
        until that many slots free."""
        with self._lock:
            while self._times and self._times[0] <= now - self.WINDOW_S:
                self._times.popleft()
            if limit is None or len(self._times) + n <= limit:
                self._times.extend([now] * n)
                return None
            if n > limit:
                return math.ceil(self.WINDOW_S)
            # The slots free when the request `limit - n + 1` places back leaves the window.
            frees_at = self._times[len(self._times) - limit + n - 1] + self.WINDOW_S
            return max(1, math.ceil(frees_at - now))


class _TenantGate:
    """Latency and the per-tenant rate limit for every non-control request."""

    def __init__(self, app: ASGIApp, sim: IfsSim) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        settings = self.sim.settings
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
        retry_after = self.sim._limiter.admit(self.sim._clock(), settings.rate_limit_per_minute)
        if retry_after is not None:
            err = ODataError(
                429,
                "TOO_MANY_REQUESTS",
                f"Too many requests: the tenant allows {settings.rate_limit_per_minute} "
                f"requests per minute; retry after {retry_after} s",
            )
            await _error(err, {"Retry-After": str(retry_after)})(scope, receive, send)
            return
        await self.app(scope, receive, send)


# ---------------------------------------------------------------- the simulator
class IfsSim:
    """One simulated IFS Cloud tenant, loaded from the dataset's `ifs` side."""

    def __init__(
        self,
        dataset: ds.Dataset,
        settings: IfsSimSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        base_url: str | None = None,
    ) -> None:
        self.settings = settings or IfsSimSettings()
        self._clock = clock
        self._rng = random.Random(seed)
        self._base_url = base_url.rstrip("/") if base_url else None
        self._lock = threading.RLock()
        self._limiter = _RateLimiter()
        world = dataset.ifs
        self.realm = world.realm
        # client_id -> client_secret; None once the client is revoked (POST /__sim/credentials).
        self._clients: dict[str, str | None] = {c.client_id: c.client_secret for c in world.clients}
        self._token_lifetime_s = world.token_lifetime_s
        # access token -> (exp in epoch seconds, the client_id it was issued to)
        self._tokens: dict[str, tuple[float, str]] = {}
        self._kid = _b64url(self._rng.randbytes(32))
        self._error_codes: deque[tuple[str, str]] = deque()
        self._row_counters: dict[str, int] = {}
        self._voucher_no: dict[tuple[str, str, int], int] = {}
        self._currency: dict[str, str] = {}
        self._tables: dict[str, dict[tuple[Any, ...], _Record]] = {
            name: {} for name in ("CodePartValueSet", "AccountingPeriodSet", "CurrencyRateSet")
        }
        self._tables["JournalTemplateSet"] = {}
        self._tables["VoucherSet"] = {}
        for company in world.companies:
            self._load_company(company)
        self.faults = FaultBook(seed)
        self.requests = RequestLog()
        self.batch_stats = sim_batch.BatchStats()
        inner = Starlette(
            routes=self._routes(),
            exception_handlers={HTTPException: self._http_exception},  # type: ignore[dict-item]
        )
        self.app: ASGIApp = SimMiddleware(
            _TenantGate(inner, self), self.faults, self.requests, self._injected_error
        )

    # ------------------------------------------------------------ state
    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC).replace(microsecond=0, tzinfo=None)

    def _new_record(self, set_name: str, entity: EntityType, values: dict[str, Any]) -> _Record:
        n = self._row_counters.get(set_name, 0)
        self._row_counters[set_name] = n + 1
        objid = rowid(_TABLE_NO[set_name], n)
        return _Record(entity, values, objid, self._now())

    def _touch(self, record: _Record) -> None:
        # A new objversion; strictly later so the ETag changes even on a frozen clock.
        record.objversion = max(self._now(), record.objversion + timedelta(seconds=1))

    def _put(self, set_name: str, entity: EntityType, values: dict[str, Any]) -> _Record:
        """Insert, or update the record with the same key (new objversion)."""
        table = self._tables[set_name]
        key = tuple(values[k] for k in entity.key)
        existing = table.get(key)
        if existing is not None:
            existing.values.update(values)
            self._touch(existing)
            return existing
        record = self._new_record(set_name, entity, dict.fromkeys(entity.names) | values)
        table[key] = record
        return record

    def _load_company(self, company: ds.Company) -> None:
        co = company.Company
        self._currency[co] = company.CurrencyCode
        for v in company.code_part_values:
            self._put_code_part_value(co, v)
        for p in company.periods:
            self._put_period(co, p)
        for r in company.currency_rates:
            self._put_currency_rate(co, r)
        for vt in company.voucher_types:
            values = {"Company": co, "VoucherType": vt.VoucherType, "Description": vt.Description}
            self._put("JournalTemplateSet", JOURNAL_TEMPLATE, values)

    def _put_code_part_value(self, co: str, v: ds.CodePartValue) -> _Record:
        values = {
            "Company": co,
            "CodePart": v.CodePart,
            "CodePartValue": v.CodePartValue,
            "Description": v.Description,
            "ValidFrom": v.ValidFrom,
            "ValidUntil": v.ValidUntil,
        }
        return self._put("CodePartValueSet", CODE_PART_VALUE, values)

    def _put_period(self, co: str, p: ds.Period) -> _Record:
        values = {
            "Company": co,
            "AccountingYear": p.AccountingYear,
            "AccountingPeriod": p.AccountingPeriod,
            "Description": p.Description or f"{p.AccountingYear}-{p.AccountingPeriod:02d}",
            "DateFrom": p.DateFrom,
            "DateUntil": p.DateUntil,
            "PeriodStatus": p.PeriodStatus,
        }
        return self._put("AccountingPeriodSet", ACCOUNTING_PERIOD, values)

    def _put_currency_rate(self, co: str, r: ds.CurrencyRate) -> _Record:
        values = {
            "Company": co,
            "CurrencyType": r.CurrencyType,
            "CurrencyCode": r.CurrencyCode,
            "ValidFrom": r.ValidFrom,
            "CurrencyRate": r.CurrencyRate,
        }
        return self._put("CurrencyRateSet", CURRENCY_RATE, values)

    def vouchers(self) -> list[dict[str, Any]]:
        """Every voucher with its rows, as IFS holds them (dates ISO, amounts Decimal)."""
        with self._lock:
            return [
                {
                    **{k: json_value(v) for k, v in rec.values.items()},
                    "VoucherRowArray": [
                        {k: json_value(v) for k, v in row.values.items()} for row in rec.rows
                    ],
                }
                for rec in self._tables["VoucherSet"].values()
            ]

    # ------------------------------------------------------------ routing
    def _routes(self) -> list[Route]:
        odata_methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]
        return [
            Route(
                "/auth/realms/{realm}/protocol/openid-connect/token",
                self._token,
                methods=["POST"],
            ),
            Route(
                "/{deployment}/ifsapplications/projection/v1/{rest:path}",
                self._odata,
                methods=odata_methods,
            ),
            Route("/__sim/requests", self._c_requests, methods=["GET"]),
            Route("/__sim/requests/reset", self._c_requests_reset, methods=["POST"]),
            Route("/__sim/vouchers", self._c_vouchers, methods=["GET"]),
            Route("/__sim/faults", self._c_faults, methods=["GET", "POST", "DELETE"]),
            Route("/__sim/code-part-values", self._c_code_part_values, methods=["POST"]),
            Route("/__sim/tokens/revoke", self._c_revoke, methods=["POST"]),
            Route("/__sim/credentials", self._c_credentials, methods=["GET", "POST"]),
            Route("/__sim/templates/edit", self._c_template_edit, methods=["POST"]),
            Route("/__sim/periods", self._c_periods, methods=["POST"]),
            Route("/__sim/currency-rates", self._c_currency_rates, methods=["POST"]),
            Route("/__sim/settings", self._c_settings, methods=["GET", "POST"]),
            Route("/__sim/next-error-code", self._c_next_error_code, methods=["POST"]),
        ]

    async def _http_exception(self, request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith(CONTROL_PREFIX):
            return _json({"error": exc.detail}, exc.status_code)
        code = _DEFAULT_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
        return _error(ODataError(exc.status_code, code, f"{exc.detail}: {request.url.path}"))

    def _injected_error(self, status: int, message: str) -> Response:
        """The error body of an injected `status` fault (a queued code goes first)."""
        with self._lock:
            queued = self._error_codes.popleft() if self._error_codes else None
        if queued is not None:
            code, message = queued
        else:
            code = _DEFAULT_CODES.get(status, f"HTTP_{status}")
        return _error(ODataError(status, code, message))

    def _base(self, request: Request) -> str:
        return self._base_url or str(request.base_url).rstrip("/")

    # ------------------------------------------------------------ token endpoint
    async def _token(self, request: Request) -> Response:
        realm = request.path_params["realm"]
        if realm != self.realm:
            return _json({"error": "Realm does not exist"}, 404)
        # Keycloak reads form-encoded bodies only (parsed here: no python-multipart needed).
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        fields: dict[str, str] = {}
        if content_type == "application/x-www-form-urlencoded":
            raw = (await request.body()).decode("utf-8", errors="replace")
            fields = dict(parse_qsl(raw, keep_blank_values=True))
        client_id, client_secret = fields.get("client_id"), fields.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(basic[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, password = "", ""
            client_id, client_secret = unquote(user), unquote(password)
        grant = fields.get("grant_type")
        if grant is None:
            return _json(
                {
                    "error": "invalid_request",
                    "error_description": "Missing form parameter: grant_type",
                },
                400,
            )
        if grant != "client_credentials":
            return _json(
                {"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"},
                400,
            )
        with self._lock:
            expected = self._clients.get(client_id or "")
        if (
            expected is None
            or client_secret is None
            or not hmac.compare_digest(client_secret.encode(), expected.encode())
        ):
            return _json(
                {
                    "error": "unauthorized_client",
                    "error_description": "Invalid client or Invalid client credentials",
                },
                401,
            )
        assert client_id is not None
        iat = int(self._clock())
        exp = iat + self._token_lifetime_s
        scope = "openid microprofile-jwt"
        with self._lock:
            header = {"alg": "RS256", "typ": "JWT", "kid": self._kid}
            payload = {
                "exp": exp,
                "iat": iat,
                "jti": str(_uuid(self._rng)),
                "iss": f"{self._base(request)}/auth/realms/{self.realm}",
                "aud": [self.realm, "account"],
                "sub": str(_uuid(random.Random(f"{self.realm}:{client_id}"))),
                "typ": "Bearer",
                "azp": client_id,
                "scope": scope,
                "clientId": client_id,
                "preferred_username": f"service-account-{client_id}".lower(),
                "upn": f"service-account-{client_id}".upper(),
            }
            token = ".".join(
                (
                    _b64url(json.dumps(header, separators=(",", ":")).encode()),
                    _b64url(json.dumps(payload, separators=(",", ":")).encode()),
                    _b64url(self._rng.randbytes(256)),
                )
            )
            self._tokens[token] = (exp, client_id)
        body = {
            "access_token": token,
            "expires_in": self._token_lifetime_s,
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": scope,
        }
        return Response(
            json.dumps(body),
            media_type="application/json",
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def _authorized(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() != "bearer ":
            return False
        token = auth[7:].strip()
        with self._lock:
            issued = self._tokens.get(token)
            if issued is not None and self._clock() >= issued[0]:
                del self._tokens[token]
                issued = None
        return issued is not None

    # ------------------------------------------------------------ OData
    async def _odata(self, request: Request) -> Response:
        try:
            return await self._odata_inner(request)
        except ODataError as err:
            return _error(err)

    async def _odata_inner(self, request: Request) -> Response:
        deployment = request.path_params["deployment"]
        if deployment not in ("main", "int"):
            raise ODataError(404, RESOURCE_NOTFOUND, f"Deployment '{deployment}' does not exist")
        if not self._authorized(request):
            raise_401 = ODataError(
                401, "UNAUTHORIZED", "Access token is missing, invalid or expired"
            )
            return _error(
                raise_401,
                {"WWW-Authenticate": f'Bearer realm="{self.realm}", error="invalid_token"'},
            )
        rest: str = request.path_params["rest"]
        m = re.fullmatch(r"([^/]+?)\.svc(?:/(.*))?", rest, re.DOTALL)
        if m is None:
            raise ODataError(
                404, RESOURCE_NOTFOUND, f"Resource '{rest}' not found: expected <Projection>.svc/…"
            )
        projection = PROJECTIONS.get(m.group(1))
        if projection is None:
            raise ODataError(
                404,
                RESOURCE_NOTFOUND,
                f"Projection '{m.group(1)}' does not exist (served here: "
                f"{', '.join(p + '.svc' for p in PROJECTIONS)})",
            )
        root = (
            f"{self._base(request)}/{deployment}/ifsapplications/projection/v1/"
            f"{projection.name}.svc"
        )
        sub = m.group(2) or ""
        method = request.method
        if sub in ("", "$metadata"):
            if method not in ("GET", "HEAD"):
                raise ODataError(405, "ODP_METHOD_NOT_ALLOWED", f"{method} is not allowed here")
            if sub == "$metadata":
                return self._metadata(projection)
            return _json(
                {
                    "@odata.context": f"{root}/$metadata",
                    "value": [
                        {"name": name, "kind": "EntitySet", "url": name} for name in projection.sets
                    ],
                }
            )
        if sub == "$batch":
            if method != "POST":
                raise ODataError(405, "ODP_METHOD_NOT_ALLOWED", "$batch takes POST only")
            return await self._batch(request, root)
        set_name, key_text, nav = _split_resource(sub)
        entity = projection.sets.get(set_name)
        if entity is None:
            raise ODataError(
                404,
                RESOURCE_NOTFOUND,
                f"Entity set '{set_name}' does not exist in projection {projection.name} "
                f"(its entity sets: {', '.join(projection.sets)})",
            )
        if method == "POST" and set_name == "VoucherSet" and key_text is None and nav is None:
            return await self._post_voucher(request, root)
        if method not in ("GET", "HEAD"):
            raise ODataError(
                405, "ODP_METHOD_NOT_ALLOWED", f"{method} is not allowed on {sub} in the simulator"
            )
        params = list(request.query_params.multi_items())
        if key_text is None:
            return self._collection(request, root, set_name, entity, self._rows(set_name), params)
        key = parse_key_predicate(key_text, entity, set_name)
        with self._lock:
            record = self._tables[set_name].get(tuple(key[k] for k in entity.key))
        if record is None:
            raise ODataError(
                404,
                RESOURCE_NOTFOUND,
                f"No {set_name} entity with key ({format_key_predicate(key, entity)})",
            )
        if nav is None:
            opts = parse_query_options(params, entity, collection=False)
            body = {
                "@odata.context": f"{root}/$metadata#{set_name}/$entity",
                **self._entity_json(record, opts),
            }
            return _json(body, headers={"ETag": record.etag})
        navigation = entity.navigation(nav)
        if navigation is None:
            raise ODataError(
                404,
                RESOURCE_NOTFOUND,
                f"'{nav}' is not a navigation of {set_name} "
                f"(navigations: {', '.join(n.name for n in entity.navigations) or 'none'})",
            )
        context_path = f"{set_name}({format_key_predicate(key, entity)})/{nav}"
        with self._lock:
            rows = list(record.rows)
        return self._collection(request, root, context_path, VOUCHER_ROW, rows, params)

    async def _batch(self, request: Request, root: str) -> Response:
        """OData `$batch` (console/sim/batch.py): parts run in order through this handler;
        each change set is all or nothing."""
        try:
            items = sim_batch.parse_batch(
                await request.body(), request.headers.get("content-type", "")
            )
        except sim_batch.BatchFormatError as err:
            raise _deserialization(str(err)) from None
        extra = sim_batch.count_parts(items) - 1
        if self.settings.batch_counts_parts and extra > 0:
            limit = self.settings.rate_limit_per_minute
            retry_after = self._limiter.admit(self._clock(), limit, extra)
            if retry_after is not None:
                limited = ODataError(
                    429,
                    "TOO_MANY_REQUESTS",
                    f"Too many requests: this batch counts as {extra + 1} of the "
                    f"{limit} the tenant allows per minute; retry after {retry_after} s",
                )
                return _error(limited, {"Retry-After": str(retry_after)})
        runner = sim_batch.BatchRunner(
            self._odata, self._batch_snapshot, self._batch_restore, self.batch_stats
        )
        return await runner.run(request, urlsplit(root).path, items)

    def _batch_snapshot(self) -> tuple[dict[Any, _Record], dict[Any, int], dict[str, int]]:
        # Posting vouchers only adds: a change set is undone by restoring these.
        with self._lock:
            return (
                dict(self._tables["VoucherSet"]),
                dict(self._voucher_no),
                dict(self._row_counters),
            )

    def _batch_restore(
        self, state: tuple[dict[Any, _Record], dict[Any, int], dict[str, int]]
    ) -> None:
        with self._lock:
            self._tables["VoucherSet"] = state[0]
            self._voucher_no = state[1]
            self._row_counters = state[2]

    def _rows(self, set_name: str) -> list[_Record]:
        with self._lock:
            return list(self._tables[set_name].values())

    def _metadata(self, projection: _Projection) -> Response:
        sets = {name: et.name for name, et in projection.sets.items()}
        xml = edmx(f"IfsApp.{projection.name}", projection.types, sets)
        return Response(xml, media_type="application/xml", headers={"OData-Version": "4.0"})

    def _entity_json(self, record: _Record, opts: QueryOptions) -> dict[str, Any]:
        luname, keyref = _luname_keyref(record.entity, record.values)
        body: dict[str, Any] = {"@odata.etag": record.etag, "luname": luname, "keyref": keyref}
        body.update(select_fields(record.values, opts.select))
        if "VoucherRowArray" in opts.expand:
            body["VoucherRowArray"] = [self._entity_json(r, QueryOptions()) for r in record.rows]
        return body

    def _collection(
        self,
        request: Request,
        root: str,
        context_path: str,
        entity: EntityType,
        records: list[_Record],
        params: list[tuple[str, str]],
    ) -> Response:
        opts = parse_query_options(params, entity, max_top=self.settings.max_top)
        by_values = {id(r.values): r for r in records}
        page = run_query([r.values for r in records], opts, self.settings.server_page_size)
        context = f"{root}/$metadata#{context_path}"
        if opts.select is not None:
            context += "(" + ",".join(opts.select) + ")"
        body: dict[str, Any] = {"@odata.context": context}
        if opts.count:
            body["@odata.count"] = page.count
        body["value"] = [self._entity_json(by_values[id(v)], opts) for v in page.rows]
        if page.next_skip is not None:
            kept = [(k, v) for k, v in params if k not in ("$skip", "$top")]
            kept.append(("$skip", str(page.next_skip)))
            if page.next_top is not None:
                kept.append(("$top", str(page.next_top)))
            query = urlencode(kept, quote_via=quote, safe="$,()'")
            body["@odata.nextLink"] = f"{self._base(request)}{request.url.path}?{query}"
        return _json(body)

    # ------------------------------------------------------------ voucher POST
    async def _post_voucher(self, request: Request, root: str) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _deserialization(
                f"Content-Type must be application/json, not '{content_type or 'missing'}'"
            )
        raw = await request.body()
        try:
            body = money.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise _deserialization(f"The request body is not valid JSON: {err}") from None
        if not isinstance(body, dict):
            raise _deserialization("The request body must be a JSON object (one Voucher)")
        header, rows = _read_voucher_body(body)
        with self._lock:
            self._check_company_and_type(header)
            if self.settings.require_if_match:
                self._check_if_match(request, header)
            record = self._validate_and_store(header, rows)
            opts = QueryOptions(expand=("VoucherRowArray",))
            out = {"@odata.context": f"{root}/$metadata#VoucherSet/$entity"}
            out.update(self._entity_json(record, opts))
            location = f"{root}/VoucherSet({format_key_predicate(record.values, VOUCHER)})"
        return _json(
            out, 201, {"Location": location, "OData-EntityId": location, "ETag": record.etag}
        )

    def _check_company_and_type(self, header: dict[str, Any]) -> None:
        co, vtype = header["Company"], header["VoucherType"]
        if co not in self._currency:
            raise _business("COMPANY_NOTEXIST", f"Company {co} does not exist")
        if (co, vtype) not in self._tables["JournalTemplateSet"]:
            raise _business(
                "VOUCHER_TYPE_NOTEXIST", f"Voucher type {vtype} does not exist in company {co}"
            )

    def _check_if_match(self, request: Request, header: dict[str, Any]) -> None:
        template = self._tables["JournalTemplateSet"][(header["Company"], header["VoucherType"])]
        if_match = request.headers.get("if-match")
        if if_match is None or not if_match.strip():
            raise ODataError(
                428,
                "ODP_MISSING_PRECONDITION",
                "The If-Match header is missing: send the current ETag of journal template "
                f"{header['VoucherType']} of company {header['Company']} (or *)",
            )
        offered = [t.strip() for t in if_match.split(",")]
        if "*" not in offered and template.etag not in offered:
            raise ODataError(
                412,
                "ODP_PRECONDITION_FAILED",
                f"The journal template {header['VoucherType']} of company {header['Company']} "
                "has been modified by another user; read it again to get its current ETag",
            )

    def _validate_and_store(self, header: dict[str, Any], rows: list[dict[str, Any]]) -> _Record:
        """Validate as IFS does, then store header and rows together (or nothing)."""
        co, vtype, day = header["Company"], header["VoucherType"], header["VoucherDate"]
        period = self._period_for(co, day)
        given = (header.get("AccountingYear"), header.get("AccountingPeriod"))
        found = (period.values["AccountingYear"], period.values["AccountingPeriod"])
        if given != (None, None) and given != found:
            label = f"{given[0]}-{given[1]:02d}" if None not in given else f"{given[0]}-{given[1]}"
            raise _business(
                "PERIOD_MISMATCH",
                f"Voucher date {day.isoformat()} is not in accounting period {label}; "
                f"it belongs to {found[0]}-{found[1]:02d}",
            )
        if str(period.values["PeriodStatus"]).lower() != "open":
            raise _business(
                "PERIOD_CLOSED",
                f"Accounting period {found[0]}-{found[1]:02d} is "
                f"{str(period.values['PeriodStatus']).lower()}",
            )
        company_currency = self._currency[co]
        for row_index, row in enumerate(rows, start=1):
            self._check_row(co, day, company_currency, row_index, row)
        _check_balance(rows, company_currency)

        year = found[0]
        counter = (co, vtype, year)
        voucher_no = self._voucher_no.get(counter, 0) + 1
        self._voucher_no[counter] = voucher_no
        values = dict.fromkeys(VOUCHER.names) | header
        values.update(AccountingYear=year, AccountingPeriod=found[1], VoucherNo=voucher_no)
        record = self._new_record("VoucherSet", VOUCHER, values)
        used = {r["RowNo"] for r in rows if r.get("RowNo") is not None}
        next_no = 1
        for row in rows:
            if row.get("RowNo") is None:
                while next_no in used:
                    next_no += 1
                row["RowNo"] = next_no
                used.add(next_no)
            row_values = dict.fromkeys(VOUCHER_ROW.names) | row
            row_values.update(
                Company=co, VoucherType=vtype, AccountingYear=year, VoucherNo=voucher_no
            )
            record.rows.append(self._new_record("VoucherRowArray", VOUCHER_ROW, row_values))
        self._tables["VoucherSet"][record.key] = record
        return record

    def _period_for(self, co: str, day: date) -> _Record:
        for rec in self._tables["AccountingPeriodSet"].values():
            v = rec.values
            if v["Company"] == co and v["DateFrom"] <= day <= v["DateUntil"]:
                return rec
        raise _business(
            "PERIOD_NOTEXIST", f"No accounting period in company {co} contains {day.isoformat()}"
        )

    def _check_row(
        self, co: str, day: date, company_currency: str, index: int, row: dict[str, Any]
    ) -> None:
        if row.get("Account") is None:
            raise _business("FIELD_MANDATORY", f"Field Account is mandatory (row {index})")
        self._check_code_part(co, day, "A", row["Account"], None)
        for letter, name in zip("BCDEFGHIJ", CODE_PART_FIELDS, strict=True):
            if row.get(name):
                self._check_code_part(co, day, letter, row[name], name)
        if row.get("CurrencyCode") is None:
            row["CurrencyCode"] = company_currency
        if row.get("CurrencyRate") is None:
            if row["CurrencyCode"] != company_currency:
                raise _business(
                    "CURRENCY_RATE_MISSING",
                    f"Currency rate is missing for {row['CurrencyCode']} on row {index}",
                )
            row["CurrencyRate"] = Decimal(1)
        if row["CurrencyRate"] <= 0:
            raise _business(
                "CURRENCY_RATE_INVALID", f"Currency rate must be positive (row {index})"
            )
        cur_d, cur_c = row.get("CurrencyDebetAmount"), row.get("CurrencyCreditAmount")
        acc_d, acc_c = row.get("DebetAmount"), row.get("CreditAmount")
        for side_a, side_b, what in ((cur_d, cur_c, "currency"), (acc_d, acc_c, "accounting")):
            if (side_a is None) == (side_b is None):
                raise _business(
                    "ROW_AMOUNT_INVALID",
                    f"Row {index} must have exactly one of debet and credit {what} amount",
                )
        if (cur_d is None) != (acc_d is None):
            raise _business(
                "ROW_AMOUNT_INVALID",
                f"Row {index} has its currency and accounting amounts on different sides",
            )

    def _check_code_part(
        self, co: str, day: date, letter: str, value: str, name: str | None
    ) -> None:
        rec = self._tables["CodePartValueSet"].get((co, letter, value))
        if rec is None:
            if name is None:
                raise _business(
                    "ACCOUNT_NOTEXIST", f"Account {value} does not exist in company {co}"
                )
            raise _business(
                "CODE_PART_VALUE_NOTEXIST",
                f"Code part value {value} ({name}) does not exist in company {co}",
            )
        if not rec.values["ValidFrom"] <= day <= rec.values["ValidUntil"]:
            what = f"Account {value}" if name is None else f"Code part value {value} ({name})"
            raise _business(
                "ACCOUNT_NOTVALID" if name is None else "CODE_PART_VALUE_NOTVALID",
                f"{what} is not valid on {day.isoformat()}",
            )

    # ------------------------------------------------------------ control routes
    async def _c_requests(self, request: Request) -> Response:
        return _json({**self.requests.snapshot(), "batch": self.batch_stats.snapshot()})

    async def _c_requests_reset(self, request: Request) -> Response:
        self.requests.reset()
        self.batch_stats = sim_batch.BatchStats()
        return _json({"ok": True})

    async def _c_vouchers(self, request: Request) -> Response:
        return _json(self.vouchers())

    async def _c_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.faults.clear()
            return _json({"ok": True})
        if request.method == "POST":
            body = await _control_body(request)
            specs = body if isinstance(body, list) else [body]
            try:
                parsed = [FaultSpec.model_validate(s) for s in specs]
            except ValidationError as err:
                return _control_error(_describe(err, "fault"))
            for spec in parsed:
                self.faults.add(spec)
        return _json(self.faults.describe())

    async def _c_code_part_values(self, request: Request) -> Response:
        body = await _control_body(request)
        co, err = _company_of(body, self._currency)
        if err:
            return err
        try:
            value = ds.CodePartValue.model_validate(body)
        except ValidationError as exc:
            return _control_error(_describe(exc, "code part value"))
        with self._lock:
            rec = self._put_code_part_value(co, value)
            return _json(self._entity_json(rec, QueryOptions()))

    async def _c_revoke(self, request: Request) -> Response:
        with self._lock:
            revoked = len(self._tokens)
            self._tokens.clear()
        return _json({"revoked": revoked})

    async def _c_credentials(self, request: Request) -> Response:
        """Set, rotate or revoke an IAM client's secret, as a Keycloak admin would; GET lists
        the clients. No answer ever holds a secret. Rotating leaves issued tokens valid until
        they expire (they are signed JWTs); revoking a client also revokes its tokens."""
        if request.method == "POST":
            body = await _control_body(request)
            try:
                client_id, secret = ds.credential_change(body, "client_id", "client_secret")
            except ValueError as err:
                return _control_error(str(err))
            with self._lock:
                known = client_id in self._clients
                if secret is None:
                    if not known:
                        return _control_error(f"client_id: unknown client {client_id!r}", 404)
                    self._clients[client_id] = None
                    dropped = [t for t, (_e, c) in self._tokens.items() if c == client_id]
                    for token in dropped:
                        del self._tokens[token]
                    return _json(
                        {"client_id": client_id, "active": False, "tokens_revoked": len(dropped)}
                    )
                self._clients[client_id] = secret
                return _json({"client_id": client_id, "active": True, "created": not known})
        now = self._clock()
        with self._lock:
            live = Counter(c for exp, c in self._tokens.values() if now < exp)
            rows = [
                {"client_id": cid, "active": secret is not None, "tokens": live[cid]}
                for cid, secret in self._clients.items()
            ]
        return _json({"clients": rows})

    async def _c_template_edit(self, request: Request) -> Response:
        body = await _control_body(request)
        key = (body.get("Company"), body.get("VoucherType")) if isinstance(body, dict) else None
        with self._lock:
            rec = self._tables["JournalTemplateSet"].get(key) if key else None
            if rec is None:
                return _control_error(f"no journal template for {key}", 404)
            if isinstance(body.get("Description"), str):
                rec.values["Description"] = body["Description"]
            self._touch(rec)
            return _json(self._entity_json(rec, QueryOptions()))

    async def _c_periods(self, request: Request) -> Response:
        body = await _control_body(request)
        co, err = _company_of(body, self._currency)
        if err:
            return err
        with self._lock:
            key = (co, body.get("AccountingYear"), body.get("AccountingPeriod"))
            existing = self._tables["AccountingPeriodSet"].get(key)
            merged = dict(existing.values) if existing else {}
            merged.update(body)
            try:
                period = ds.Period.model_validate(merged)
            except ValidationError as exc:
                return _control_error(_describe(exc, "period"))
            return _json(self._entity_json(self._put_period(co, period), QueryOptions()))

    async def _c_currency_rates(self, request: Request) -> Response:
        body = await _control_body(request)
        co, err = _company_of(body, self._currency)
        if err:
            return err
        try:
            rate = ds.CurrencyRate.model_validate(body)
        except ValidationError as exc:
            return _control_error(_describe(exc, "currency rate"))
        with self._lock:
            return _json(self._entity_json(self._put_currency_rate(co, rate), QueryOptions()))

    async def _c_settings(self, request: Request) -> Response:
        if request.method == "POST":
            body = await _control_body(request)
            if not isinstance(body, dict):
                return _control_error("settings: expected a JSON object of fields")
            try:
                self.settings = IfsSimSettings.model_validate(self.settings.model_dump() | body)
            except ValidationError as exc:
                return _control_error(_describe(exc, "settings"))
        return _json(self.settings.model_dump())

    async def _c_next_error_code(self, request: Request) -> Response:
        body = await _control_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("code"), str):
            return _control_error('next-error-code: expected {"code": "...", "message"?, "count"?}')
        count = body.get("count", 1)
        if not isinstance(count, int) or count < 1:
            return _control_error("next-error-code: count must be a positive integer")
        default = MI_MODIFIED_MESSAGE if body["code"] == "MI_MODIFIED_ERROR" else body["code"]
        message = body.get("message") or default
        with self._lock:
            self._error_codes.extend([(body["code"], str(message))] * count)
            queued = len(self._error_codes)
        return _json({"queued": queued})


# ---------------------------------------------------------------- helpers
def _uuid(rng: random.Random) -> str:
    h = rng.getrandbits(128).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _split_resource(sub: str) -> tuple[str, str | None, str | None]:
    """`Set(keys)/Nav` -> (Set, keys, Nav); quotes inside the key predicate are respected."""
    m = re.match(r"[A-Za-z_]\w*", sub)
    if m is None:
        raise ODataError(404, RESOURCE_NOTFOUND, f"Resource '{sub}' not found")
    name, pos = m.group(0), m.end()
    key: str | None = None
    if pos < len(sub) and sub[pos] == "(":
        depth_end, in_quote, i = None, False, pos + 1
        while i < len(sub):
            ch = sub[i]
            if ch == "'":
                in_quote = not in_quote
            elif ch == ")" and not in_quote:
                depth_end = i
                break
            i += 1
        if depth_end is None:
            raise ODataError(400, URI_SYNTAX_ERROR, f"Unclosed key predicate in '{sub}'")
        key, pos = sub[pos + 1 : depth_end], depth_end + 1
    rest = sub[pos:]
    if rest in ("", "/"):
        return name, key, None
    if key is not None and re.fullmatch(r"/[A-Za-z_]\w*/?", rest):
        return name, key, rest.strip("/")
    raise ODataError(404, RESOURCE_NOTFOUND, f"Resource '{sub}' not found")


def _read_voucher_body(body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Type-check the header and rows; unknown properties are refused by name."""
    header: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("@") or name == "VoucherRowArray":
            continue
        prop = VOUCHER.prop(name)
        if prop is None:
            raise _deserialization(f"Property '{name}' does not exist on Voucher")
        if prop.computed and value is not None:
            raise _deserialization(
                f"{name} is assigned by the voucher type's number series and cannot be given"
            )
        try:
            header[name] = coerce_json(prop, value)
        except ValueError as err:
            raise _deserialization(str(err)) from None
    for required in ("Company", "VoucherType", "VoucherDate"):
        if header.get(required) is None:
            raise _business("FIELD_MANDATORY", f"Field {required} is mandatory for Voucher")
    raw_rows = body.get("VoucherRowArray")
    if not isinstance(raw_rows, list) or not raw_rows:
        raise _business(
            "FIELD_MANDATORY", "VoucherRowArray must hold the voucher rows (at least one)"
        )
    allowed = {p.name: p for p in _ROW_INPUT}
    rows: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_rows, start=1):
        if not isinstance(raw, dict):
            raise _deserialization(f"VoucherRowArray item {index} must be an object")
        row: dict[str, Any] = {}
        for name, value in raw.items():
            if name.startswith("@"):
                continue
            if name in ("VoucherType", "AccountingYear", "VoucherNo"):
                continue  # parent keys: taken from the header
            prop = allowed.get(name)
            if prop is None:
                raise _deserialization(
                    f"Property '{name}' does not exist on VoucherRow (row {index})"
                )
            try:
                row[name] = coerce_json(prop, value)
            except ValueError as err:
                raise _deserialization(f"{err} (row {index})") from None
        if row.get("Company") not in (None, header["Company"]):
            raise _deserialization(f"Row {index} names another company than its voucher")
        row.pop("Company", None)
        rows.append(row)
    row_nos = [r["RowNo"] for r in rows if r.get("RowNo") is not None]
    if len(row_nos) != len(set(row_nos)):
        raise _deserialization("RowNo values must be unique within the voucher")
    return header, rows


def _check_balance(rows: list[dict[str, Any]], company_currency: str) -> None:
    def total(name: str, subset: Iterable[dict[str, Any]]) -> Decimal:
        return sum((r[name] for r in subset if r.get(name) is not None), Decimal(0))

    by_currency: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_currency.setdefault(r["CurrencyCode"], []).append(r)
    checks = [(total("DebetAmount", rows), total("CreditAmount", rows), company_currency, "")]
    for code, subset in by_currency.items():
        debet = total("CurrencyDebetAmount", subset)
        credit = total("CurrencyCreditAmount", subset)
        checks.append((debet, credit, code, " in transaction currency"))
    for debet, credit, code, what in checks:
        if debet != credit:
            raise _business(
                "VOUCHER_NOT_BALANCED",
                f"Voucher is not balanced{what}: debet {debet} {code}, credit {credit} {code} "
                f"(difference {debet - credit})",
            )


async def _control_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return money.loads(raw)
    except ValueError as err:
        raise HTTPException(400, f"not JSON: {err}") from None


def _control_error(message: str, status: int = 400) -> Response:
    return _json({"error": message}, status)


def _describe(err: ValidationError, what: str) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or what
        parts.append(f"{loc}: {e['msg']}")
    return f"{what}: " + "; ".join(parts)


def _company_of(body: Any, companies: Mapping[str, str]) -> tuple[str, Response | None]:
    if not isinstance(body, dict) or not isinstance(body.get("Company"), str):
        return "", _control_error("Company: a string naming the IFS company is required")
    if body["Company"] not in companies:
        return "", _control_error(f"Company: unknown company {body['Company']!r}", 404)
    return body["Company"], None
