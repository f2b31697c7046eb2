"""The IFS Cloud simulator: Keycloak token endpoint and IFS's own OData projections.

Follows design.md §3 and reference/ifs-cloud.md §0. Projections, entity sets, keys,
attributes, navigations and bound actions come from one model, console/sim/ifs_model.py,
from which `$metadata` is rendered too. What IFS does not publish is a setting
(`IfsSimSettings`, changeable at runtime through `POST /__sim/settings`): about 1000 requests
per minute per tenant then 429 with Retry-After, `$top` above 5000 answers 500, bound actions
need `If-Match`.

How a voucher comes to exist, as in IFS's voucher entry assistant:
  POST …/VoucherEntryAssistantHandling.svc/VoucherSet            a temporary voucher (virtual
       VoucherEntry, keyed by Objkey; year and period follow from VoucherDate)
  POST …/VoucherSet(Objkey='…')/VoucherPostingArray              one row each (TransCode MANUAL;
       type, year, period and date taken from the voucher)
  POST …/VoucherSet(Objkey='…')/IfsApp.VoucherEntryAssistantHandling.VoucherEntry_CreateVoucher
       with If-Match (the temporary voucher's ETag): validated, numbered from the number series
       per company, voucher type and year, moved to the hold table; answers {"value": <no>}
  POST …/VoucherSet(Objkey='…')/IfsApp.VoucherEntryAssistantHandling.VoucherEntry_RemoveTempVoucher
In the hold table a voucher is in `VoucherHandling.svc/VoucherSet` and its rows in
`VoucherRowsAnalysis.svc/VoucherRowSet`; once IFS's "Update GL" has run for it (after
`gl_update_delay_s`, or on `POST /__sim/update-gl`), it has left both and its rows are in the
general ledger's `GLVoucherRowsAnalysis.svc/GenLedVoucherRowSet` (an assumed name: GENLED's
projections are not public). A voucher of a type with `ApprovalRequired` waits in status
AwaitingApproval until `POST /__sim/approve`, and is not updated to the GL before.

Served routes:
  POST /auth/realms/{realm}/protocol/openid-connect/token      client_credentials
  GET  /{main|int}/ifsapplications/projection/v1/{P}.svc/        service document
  GET  …/{P}.svc/$metadata                                       EDMX (always XML)
  GET  …/{P}.svc/{Set}[?$filter&$select&$orderby&$top&$skip&$count&$expand]
  GET  …/{P}.svc/{Set}({keys})[/{Array}]
  POST …/{P}.svc/$batch     multipart/mixed, change sets, Content-ID (console/sim/batch.py)

Control routes (never authenticated, rate-limited, faulted or counted):
  GET  /__sim/requests, POST /__sim/requests/reset,
  GET  /__sim/vouchers        every voucher created (hold table or GL) with rows, status, in_gl,
  GET  /__sim/temp-vouchers   the voucher assistant's temporary vouchers with their rows,
  POST /__sim/update-gl       IFS's "Update GL" now, for every approved voucher,
  POST /__sim/approve {Company, VoucherType, AccountingYear, VoucherNo} (or {} for all),
  POST /__sim/batch-break {"after_parts": n}  the next change set stops after n of its requests,
      keeps what they did and answers 500 (a server that died mid change set),
  GET|POST|DELETE /__sim/faults (a FaultSpec or a list of them),
  POST /__sim/code-part-values {Company, CodePart, CodePartValue, …}  create or update,
  POST /__sim/tokens/revoke                       every outstanding token becomes invalid,
  GET|POST /__sim/credentials {client_id, client_secret | revoke}  set, rotate or revoke a
    client (revoking also revokes its tokens; no answer carries a secret),
  POST /__sim/periods {Company, AccountingYear, AccountingPeriod, PeriodStatus, UserGroup?, …},
  POST /__sim/currency-rates {Company, CurrencyCode, ValidFrom, CurrencyRate, ConvFactor?, …},
  GET|POST /__sim/settings {field: value, …},
  POST /__sim/next-error-code {"code": "MI_MODIFIED_ERROR", "message": …, "count": 1}:
      the next `count` injected `status` faults answer with that error code and message
      (default message for MI_MODIFIED_ERROR: "Service metadata already modified.").

Drift (settings, for `ml-console ifs check` and the check before posting): a tenant on another
release or with other grants. `projection_names` {IFS name: served name} serves a projection
under another name (namespace and bound-action names follow; the IFS name answers 404),
`hidden_projections` answers 404 for them, `forbidden_projections` answers 403
(ODP_FORBIDDEN) to every request to them, and `metadata_omit` ["Projection/Type.Attribute",
"Projection/Type.Navigation", "Projection/VoucherEntry_CreateVoucher", "Projection/SetName"]
leaves those names out of that projection's `$metadata` while its routes keep serving them.
Example: POST /__sim/settings {"projection_names": {"AccountsHandling": "AccountHandling"}}.

Error codes IFS documents are used as documented (ODP_RESOURCE_NOTFOUND,
ODP_DESERIALIZATION_ERROR, ODP_MISSING_PRECONDITION, MI_MODIFIED_ERROR); the business-rule
codes (VOUCHER_NOT_BALANCED, PERIOD_CLOSED, CODE_PART_MANDATORY, …) are inferred names for
IFS's Error_SYS messages, whose texts the simulator follows.
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
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar
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
from console.sim import ifs_model as im
from console.sim.faults import FaultBook, RequestLog, SimMiddleware
from console.sim.odata import (
    RESOURCE_NOTFOUND,
    URI_SYNTAX_ERROR,
    EntityType,
    ODataError,
    QueryOptions,
    coerce_json,
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
CODE_PART_FIELDS = im.CODE_PART_FIELDS
MI_MODIFIED_MESSAGE = "Service metadata already modified."
DEFAULT_USER_GROUP = "AC"
GL_LEDGER = "00"  # IFS's ledger id of the general ledger
NEW_VOUCHER_STATUSES = ("Approved", "NotApproved", "AwaitingApproval")
_M = TypeVar("_M", bound=BaseModel)  # a control body's model
_DEMAND_NAME = {"K": "Can", "M": "Mandatory", "S": "Blocked"}
_TABLE_NO = {
    name: n
    for n, name in enumerate(
        (
            "Account",
            *(f"Code{c}" for c in im.CODE_PARTS),
            "CompanyFinance",
            "AccountingYear",
            "AccountingPeriod",
            "UserGroupPeriod",
            "CurrencyRate",
            "CurrencyType",
            "CurrencyCode",
            "TempVoucher",
            "TempRow",
            "Voucher",
            "VoucherRow",
        ),
        start=1,
    )
}


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
    # Seconds after approval until IFS's "Update GL" moves a voucher to the general ledger;
    # None: only on POST /__sim/update-gl. The dataset's `gl_update_delay_s` sets it.
    gl_update_delay_s: float | None = Field(default=None, ge=0)
    # Drift: how a tenant on another release, or with other grants, differs from IFS's 21R1
    # model (for `ml-console ifs check`; docs/simulators.md). Names are IFS's.
    # IFS name -> the name this tenant serves the projection under (the IFS name: 404).
    projection_names: dict[str, str] = Field(default_factory=dict)
    # Projections this tenant does not have (404).
    hidden_projections: list[str] = Field(default_factory=list)
    # Projections the client's user is not granted (403 on every request to them).
    forbidden_projections: list[str] = Field(default_factory=list)
    # "Projection/Name" left out of that projection's $metadata (its routes still serve
    # it): `Type.Attribute`, `Type.Navigation`, a bound action as $metadata names it
    # (`VoucherEntry_CreateVoucher`) or an entity set.
    metadata_omit: list[str] = Field(default_factory=list)

    @classmethod
    def fast(cls) -> IfsSimSettings:
        """No rate limit, no latency: for tests and benchmarks."""
        return cls(rate_limit_per_minute=None, latency_ms=0)


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
    # What IFS keeps but this entity does not serve (a voucher's GL state, a period's
    # status when no user group has its own).
    meta: dict[str, Any] = field(default_factory=dict)

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
        world = dataset.ifs
        if world.gl_update_delay_s is not None and self.settings.gl_update_delay_s is None:
            self.settings = self.settings.model_copy(
                update={"gl_update_delay_s": world.gl_update_delay_s}
            )
        self._clock = clock
        self._rng = random.Random(seed)
        self._base_url = base_url.rstrip("/") if base_url else None
        self._lock = threading.RLock()
        self._limiter = _RateLimiter()
        self.realm = world.realm
        # client_id -> client_secret; None once the client is revoked (POST /__sim/credentials).
        self._clients: dict[str, str | None] = {c.client_id: c.client_secret for c in world.clients}
        self._token_lifetime_s = world.token_lifetime_s
        # access token -> (exp in epoch seconds, the client_id it was issued to)
        self._tokens: dict[str, tuple[float, str]] = {}
        self._kid = _b64url(self._rng.randbytes(32))
        self._error_codes: deque[tuple[str, str]] = deque()
        self._row_counters: dict[str, int] = {}
        # The number series: the last voucher number per (company, voucher type, year).
        self._voucher_no: dict[tuple[str, str, int], int] = {}
        self._currency: dict[str, str] = {}
        self._voucher_types: dict[tuple[str, str], ds.VoucherType] = {}
        self._tax_codes: dict[tuple[str, str], ds.TaxCode] = {}
        self._user_groups: dict[str, set[str]] = {}
        # (company, year, period, user group) -> that group's own period status
        self._group_status: dict[tuple[str, int, int, str], str] = {}
        self._tables: dict[str, dict[tuple[Any, ...], _Record]] = {name: {} for name in _TABLE_NO}
        self._break_after: int | None = None
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

    def _new_record(self, table: str, entity: EntityType, values: dict[str, Any]) -> _Record:
        n = self._row_counters.get(table, 0)
        self._row_counters[table] = n + 1
        objid = rowid(_TABLE_NO[table], n)
        return _Record(entity, dict.fromkeys(entity.names) | values, objid, self._now())

    def _touch(self, record: _Record) -> None:
        # A new objversion; strictly later so the ETag changes even on a frozen clock.
        record.objversion = max(self._now(), record.objversion + timedelta(seconds=1))

    def _put(self, table: str, entity: EntityType, values: dict[str, Any]) -> _Record:
        """Insert, or update the record with the same key (new objversion)."""
        rows = self._tables[table]
        key = tuple(values[k] for k in entity.key)
        existing = rows.get(key)
        if existing is not None:
            existing.values.update(values)
            self._touch(existing)
            return existing
        record = self._new_record(table, entity, values)
        rows[key] = record
        return record

    def _load_company(self, company: ds.Company) -> None:
        co = company.Company
        self._currency[co] = company.CurrencyCode
        self._put(
            "CompanyFinance",
            im.COMPANY_FINANCE,
            {
                "Company": co,
                "Description": company.Name or co,
                "CurrencyCode": company.CurrencyCode,
            },
        )
        for v in company.code_part_values:
            self._put_code_part_value(co, v)
        for p in company.periods:
            self._put_period(co, p)
        groups = self._user_groups.setdefault(co, {DEFAULT_USER_GROUP})
        for g in company.user_groups:
            groups.add(g.UserGroup)
            for gp in g.periods:
                key = (co, gp.AccountingYear, gp.AccountingPeriod, g.UserGroup)
                self._group_status[key] = gp.PeriodStatus
        self._put_currency_code(co, company.CurrencyCode, 2, False)
        for cur in company.currencies:
            self._put_currency_code(
                co, cur.CurrencyCode, cur.Decimals, cur.Inverted, cur.ConvFactor
            )
        for r in company.currency_rates:
            self._put_currency_rate(co, r)
        for vt in company.voucher_types:
            self._voucher_types[(co, vt.VoucherType)] = vt
        for tc in company.tax_codes:
            self._tax_codes[(co, tc.FeeCode)] = tc

    def _put_code_part_value(self, co: str, v: ds.CodePartValue) -> _Record:
        name = "Account" if v.CodePart == "A" else f"Code{v.CodePart}"
        values: dict[str, Any] = {
            "Company": co,
            name: v.CodePartValue,
            "Description": v.Description,
            "ValidFrom": v.ValidFrom,
            "ValidUntil": v.ValidUntil,
        }
        if v.CodePart != "A":
            return self._put(name, im.CODE_PART_TYPES[v.CodePart], values)
        values["ReqQuantity"] = _DEMAND_NAME[v.ReqQuantity]
        values["ReqText"] = _DEMAND_NAME[v.ReqText]
        values["TaxCodeMandatory"] = v.TaxCodeMandatory
        values["TaxHandlingValue"] = v.TaxHandlingValue
        for letter, demand in v.demands().items():
            values[f"ReqCode{letter}"] = _DEMAND_NAME[demand]
        return self._put(name, im.ACCOUNT, values)

    def _put_period(self, co: str, p: ds.Period) -> _Record:
        values = {
            "Company": co,
            "AccountingYear": p.AccountingYear,
            "AccountingPeriod": p.AccountingPeriod,
            "Description": p.Description or f"{p.AccountingYear}-{p.AccountingPeriod:02d}",
            "DateFrom": p.DateFrom,
            "DateUntil": p.DateUntil,
            "YearEndPeriod": "Ordinary",
        }
        self._put(
            "AccountingYear",
            im.ACCOUNTING_YEAR,
            {"Company": co, "AccountingYear": p.AccountingYear},
        )
        record = self._put("AccountingPeriod", im.ACCOUNTING_PERIOD, values)
        record.meta["PeriodStatus"] = _period_status(p.PeriodStatus)
        return record

    def _put_currency_code(
        self, co: str, code: str, decimals: int, inverted: bool, factor: Decimal = Decimal(1)
    ) -> None:
        values = {
            "Company": co,
            "CurrencyCode": code,
            "Description": code,
            "CurrencyRounding": decimals,
            "ConvFactor": factor,
            "Inverted": inverted,
        }
        self._put("CurrencyCode", im.CURRENCY_CODE, values)
        # IFS fetches a rate type's Inverted from its reference currency
        # (Currency_Code_API.Get_Inverted(company, Ref_Currency_Code)).
        for rate_type in self._tables["CurrencyType"].values():
            if (rate_type.values["Company"], rate_type.values["RefCurrencyCode"]) == (co, code):
                rate_type.values["Inverted"] = inverted

    def _currency_inverted(self, co: str, code: str) -> bool:
        record = self._tables["CurrencyCode"].get((co, code))
        return bool(record.values.get("Inverted")) if record is not None else False

    def _put_currency_rate(self, co: str, r: ds.CurrencyRate) -> _Record:
        if (co, r.CurrencyType) not in self._tables["CurrencyType"]:
            self._put(
                "CurrencyType",
                im.CURRENCY_TYPE,
                {
                    "Company": co,
                    "CurrencyType": r.CurrencyType,
                    "Description": f"Rate type {r.CurrencyType}",
                    "Inverted": self._currency_inverted(co, self._currency[co]),
                    "RefCurrencyCode": self._currency[co],
                    "TypeDefault": "Yes" if r.CurrencyType == "1" else "No",
                },
            )
        if (co, r.CurrencyCode) not in self._tables["CurrencyCode"]:
            self._put_currency_code(co, r.CurrencyCode, 2, False)
        values = {
            "Company": co,
            "CurrencyType": r.CurrencyType,
            "CurrencyCode": r.CurrencyCode,
            "ValidFrom": r.ValidFrom,
            "CurrencyRate": r.CurrencyRate,
            "ConvFactor": r.ConvFactor,
            "RefCurrencyCode": self._currency[co],
        }
        return self._put("CurrencyRate", im.CURRENCY_RATE, values)

    def _group_period_status(self, period: _Record, group: str) -> str:
        v = period.values
        own = self._group_status.get(
            (v["Company"], v["AccountingYear"], v["AccountingPeriod"], group)
        )
        return own or str(period.meta.get("PeriodStatus", "Open"))

    def _user_group_periods(self, period: _Record) -> list[_Record]:
        """A period's status per user group in the general ledger (UserGroupPeriod rows)."""
        v = period.values
        out = []
        for n, group in enumerate(sorted(self._user_groups.get(v["Company"], ()))):
            values = {
                "Company": v["Company"],
                "AccountingYear": v["AccountingYear"],
                "AccountingPeriod": v["AccountingPeriod"],
                "UserGroup": group,
                "LedgerId": GL_LEDGER,
                "PeriodStatus": self._group_period_status(period, group),
            }
            objid = rowid(_TABLE_NO["UserGroupPeriod"], hash((period.objid, n)) % 10**9)
            out.append(_Record(im.USER_GROUP_PERIOD, values, objid, period.objversion))
        return out

    # ------------------------------------------------------------ vouchers
    def _update_gl(self, *, force: bool = False) -> int:
        """IFS's "Update GL": approved vouchers leave the hold table for the general ledger
        (every one when `force`, else those approved at least the configured delay ago)."""
        delay = self.settings.gl_update_delay_s
        if not force and delay is None:
            return 0
        now = self._clock()
        moved = 0
        with self._lock:
            for rec in self._tables["Voucher"].values():
                if rec.meta.get("in_gl") or rec.values["VoucherStatus"] != "Approved":
                    continue
                if force or now - float(rec.meta.get("approved_at", now)) >= (delay or 0):
                    rec.meta["in_gl"] = True
                    moved += 1
        return moved

    def _voucher_json(self, rec: _Record) -> dict[str, Any]:
        rows = [{k: json_value(v) for k, v in r.values.items()} for r in rec.rows]
        return {
            **{k: json_value(v) for k, v in rec.values.items()},
            "ReferenceNumber": next(
                (r["ReferenceNumber"] for r in rows if r.get("ReferenceNumber")), ""
            ),
            "Text": rec.values.get("VoucherText2") or "",
            "VoucherStatusDb": im.ENUMERATIONS["VoucherStatus"][rec.values["VoucherStatus"]],
            "in_gl": bool(rec.meta.get("in_gl")),
            "VoucherRowArray": rows,
        }

    def vouchers(self) -> list[dict[str, Any]]:
        """Every voucher IFS has created, in the hold table or the GL, with its rows (dates
        ISO, amounts Decimal), its status and whether it is in the GL."""
        self._update_gl()
        with self._lock:
            return [self._voucher_json(rec) for rec in self._tables["Voucher"].values()]

    def temp_vouchers(self) -> list[dict[str, Any]]:
        """The voucher assistant's temporary vouchers, each with its rows."""
        with self._lock:
            return [
                {
                    **{k: json_value(v) for k, v in rec.values.items()},
                    "VoucherPostingArray": [
                        {k: json_value(v) for k, v in r.values.items()}
                        for r in self._temp_rows(rec)
                    ],
                }
                for rec in self._tables["TempVoucher"].values()
            ]

    def _temp_rows(self, temp: _Record) -> list[_Record]:
        objkey = temp.values["Objkey"]
        return [r for r in self._tables["TempRow"].values() if r.values["ParentObjkey"] == objkey]

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
            Route("/__sim/temp-vouchers", self._c_temp_vouchers, methods=["GET"]),
            Route("/__sim/update-gl", self._c_update_gl, methods=["POST"]),
            Route("/__sim/approve", self._c_approve, methods=["POST"]),
            Route("/__sim/batch-break", self._c_batch_break, methods=["POST"]),
            Route("/__sim/faults", self._c_faults, methods=["GET", "POST", "DELETE"]),
            Route("/__sim/code-part-values", self._c_code_part_values, methods=["POST"]),
            Route("/__sim/tokens/revoke", self._c_revoke, methods=["POST"]),
            Route("/__sim/credentials", self._c_credentials, methods=["GET", "POST"]),
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
            raise _not_found(f"Deployment '{deployment}' does not exist")
        if not self._authorized(request):
            raise_401 = ODataError(
                401, "UNAUTHORIZED", "Access token is missing, invalid or expired"
            )
            return _error(
                raise_401,
                {"WWW-Authenticate": f'Bearer realm="{self.realm}", error="invalid_token"'},
            )
        self._update_gl()
        rest: str = request.path_params["rest"]
        m = re.fullmatch(r"([^/]+?)\.svc(?:/(.*))?", rest, re.DOTALL)
        if m is None:
            raise _not_found(f"Resource '{rest}' not found: expected <Projection>.svc/…")
        served = self._served_projection(m.group(1))
        if served is None:
            raise _not_found(
                f"Projection '{m.group(1)}' does not exist (served here: "
                f"{', '.join(p + '.svc' for p in self._served_names())})"
            )
        projection, ifs_name = served
        if ifs_name in self.settings.forbidden_projections:
            raise ODataError(
                403,
                _DEFAULT_CODES[403],
                f"Access denied: projection {projection.name} is not granted to this user",
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
                return Response(
                    im.metadata(projection, self._metadata_omit(ifs_name)),
                    media_type="application/xml",
                    headers={"OData-Version": "4.0"},
                )
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
        set_name, key_text, tail = _split_resource(sub)
        entity = projection.sets.get(set_name)
        if entity is None:
            raise _not_found(
                f"Entity set '{set_name}' does not exist in projection {projection.name} "
                f"(its entity sets: {', '.join(projection.sets)})"
            )
        writable = set_name in projection.writable
        params = list(request.query_params.multi_items())
        if key_text is None:
            if method == "POST" and writable:
                return await self._post_temp_voucher(request, root, set_name)
            _read_only(method, sub)
            records = self._source(ifs_name, set_name)
            return self._collection(request, root, set_name, entity, records, params)
        key = parse_key_predicate(key_text, entity, set_name)
        with self._lock:
            record = self._find(ifs_name, set_name, entity, key)
        if record is None:
            raise _not_found(f"No {set_name} entity with key ({format_key_predicate(key, entity)})")
        entity_path = f"{set_name}({format_key_predicate(key, entity)})"
        if tail is None:
            _read_only(method, sub)
            opts = parse_query_options(params, entity, collection=False)
            body = {
                "@odata.context": f"{root}/$metadata#{set_name}/$entity",
                **self._entity_json(record, opts),
            }
            return _json(body, headers={"ETag": record.etag})
        if "." in tail:
            action = projection.action(set_name, tail)
            if action is None:
                raise _not_found(
                    f"'{tail}' is not a bound action of {set_name} in {projection.name}"
                )
            if method != "POST":
                raise ODataError(405, "ODP_METHOD_NOT_ALLOWED", f"{tail} takes POST only")
            return await self._action(request, root, action.name, record)
        navigation = entity.navigation(tail)
        target = projection.type_named(navigation.target) if navigation else None
        if navigation is None or target is None:
            raise _not_found(
                f"'{tail}' is not a navigation of {set_name} "
                f"(navigations: {', '.join(n.name for n in entity.navigations) or 'none'})"
            )
        if method == "POST" and writable:
            return await self._post_temp_row(request, root, entity_path, record)
        _read_only(method, sub)
        with self._lock:
            rows = self._children(record, tail)
        return self._collection(request, root, f"{entity_path}/{tail}", target, rows, params)

    def _served_projection(self, name: str) -> tuple[im.Projection, str] | None:
        """The projection a request names, as this tenant serves it (renamed: the served
        name, namespace and action names follow), with its IFS name; None when absent."""
        settings = self.settings
        by_served = {new: old for old, new in settings.projection_names.items()}
        ifs_name = by_served.get(name) or (None if name in settings.projection_names else name)
        if ifs_name is None or ifs_name in settings.hidden_projections:
            return None
        projection = im.PROJECTIONS.get(ifs_name)
        if projection is None:
            return None
        if name != ifs_name:
            projection = replace(projection, name=name)
        return projection, ifs_name

    def _served_names(self) -> list[str]:
        hidden = self.settings.hidden_projections
        names = self.settings.projection_names
        return [names.get(p, p) for p in im.PROJECTIONS if p not in hidden]

    def _metadata_omit(self, ifs_name: str) -> frozenset[str]:
        prefix = ifs_name + "/"
        return frozenset(
            item.removeprefix(prefix)
            for item in self.settings.metadata_omit
            if item.startswith(prefix)
        )

    def _source(self, projection: str, set_name: str) -> list[_Record]:
        """The records an entity set serves."""
        with self._lock:
            if set_name == "VoucherSet":
                if projection == im.VOUCHER_ENTRY_ASSISTANT:
                    return list(self._tables["TempVoucher"].values())
                return [r for r in self._tables["Voucher"].values() if not r.meta.get("in_gl")]
            if set_name in ("VoucherRowSet", im.GL_ROWS_SET):
                in_gl = set_name == im.GL_ROWS_SET
                return [
                    row
                    for v in self._tables["Voucher"].values()
                    if bool(v.meta.get("in_gl")) == in_gl
                    for row in v.rows
                ]
            table = {
                "AccountSet": "Account",
                "CompanyFinanceSet": "CompanyFinance",
                "AccountingYearSet": "AccountingYear",
                "AccountingPeriodSet": "AccountingPeriod",
                "CurrencyRateSet": "CurrencyRate",
                "CurrencyTypeSet": "CurrencyType",
                "CurrencyCodeSet": "CurrencyCode",
            }.get(set_name) or set_name.removesuffix("Set")
            return list(self._tables[table].values())

    def _find(
        self, projection: str, set_name: str, entity: EntityType, key: Mapping[str, Any]
    ) -> _Record | None:
        return next(
            (
                r
                for r in self._source(projection, set_name)
                if all(r.values.get(k) == v for k, v in key.items())
            ),
            None,
        )

    def _children(self, record: _Record, nav: str) -> list[_Record]:
        v = record.values
        if nav == "VoucherPostingArray":
            return self._temp_rows(record)
        if nav == "VoucherRowArray":
            return list(record.rows)
        if nav == "DetailUserGroups":
            return self._user_group_periods(record)
        if nav == "AccountingPeriodDetailArray":
            return [
                p
                for p in self._tables["AccountingPeriod"].values()
                if (p.values["Company"], p.values["AccountingYear"])
                == (v["Company"], v["AccountingYear"])
            ]
        if nav == "CurrencyCodeRef":
            # A rate's own currency; a rate type's reference (accounting) currency.
            own = record.entity.name == "CurrencyRate"
            code = v["CurrencyCode"] if own else v["RefCurrencyCode"]
            ref = self._tables["CurrencyCode"].get((v["Company"], code))
            return [ref] if ref is not None else []
        m = re.fullmatch(r"Code([B-J])Array", nav)
        if m is not None:
            return [
                c
                for c in self._tables[f"Code{m.group(1)}"].values()
                if c.values["Company"] == v["Company"]
            ]
        raise AssertionError(nav)

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
            self._odata,
            self._batch_snapshot,
            self._batch_restore,
            self.batch_stats,
            take_break=self._take_break,
        )
        return await runner.run(request, urlsplit(root).path, items)

    def _take_break(self) -> int | None:
        with self._lock:
            after, self._break_after = self._break_after, None
        return after

    def _batch_snapshot(
        self,
    ) -> tuple[dict[str, dict[Any, _Record]], dict[Any, int], dict[str, int]]:
        # A change set only adds temporary vouchers, rows and vouchers, and removes temporary
        # ones: restoring these undoes it.
        with self._lock:
            return (
                {t: dict(self._tables[t]) for t in ("TempVoucher", "TempRow", "Voucher")},
                dict(self._voucher_no),
                dict(self._row_counters),
            )

    def _batch_restore(
        self, state: tuple[dict[str, dict[Any, _Record]], dict[Any, int], dict[str, int]]
    ) -> None:
        with self._lock:
            self._tables.update(state[0])
            self._voucher_no = state[1]
            self._row_counters = state[2]

    def _entity_json(self, record: _Record, opts: QueryOptions) -> dict[str, Any]:
        luname, keyref = _luname_keyref(record.entity, record.values)
        body: dict[str, Any] = {"@odata.etag": record.etag, "luname": luname, "keyref": keyref}
        body.update(select_fields(record.values, opts.select))
        for nav in opts.expand:
            children = [self._entity_json(r, QueryOptions()) for r in self._children(record, nav)]
            navigation = record.entity.navigation(nav)
            if navigation is not None and not navigation.collection:
                body[nav] = children[0] if children else None  # a reference: one or null
            else:
                body[nav] = children
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
        with self._lock:
            body["value"] = [self._entity_json(by_values[id(v)], opts) for v in page.rows]
        if page.next_skip is not None:
            kept = [(k, v) for k, v in params if k not in ("$skip", "$top")]
            kept.append(("$skip", str(page.next_skip)))
            if page.next_top is not None:
                kept.append(("$top", str(page.next_top)))
            query = urlencode(kept, quote_via=quote, safe="$,()'")
            body["@odata.nextLink"] = f"{self._base(request)}{request.url.path}?{query}"
        return _json(body)

    # ------------------------------------------------------------ the voucher assistant
    def _new_objkey(self) -> str:
        return self._rng.getrandbits(128).to_bytes(16, "big").hex().upper()

    async def _post_temp_voucher(self, request: Request, root: str, set_name: str) -> Response:
        """CRUD_Create of the virtual VoucherEntry (OpennedFrom NEW_VOUCHER): the defaults
        IFS prepares — year and period from the voucher date — and nothing stored for good."""
        body = await _json_body(request, "one VoucherEntry")
        values = _typed(body, im.VOUCHER_ENTRY_TEMP, im.TEMP_INPUT, "VoucherEntry")
        for required in ("Company", "VoucherType"):
            if values.get(required) is None:
                raise _business(
                    "FIELD_MANDATORY", f"Field {required} is mandatory for VoucherEntry"
                )
        opened = values.get("OpennedFrom") or "NEW_VOUCHER"
        if opened != "NEW_VOUCHER":
            raise _business(
                "NOT_SUPPORTED", f"OpennedFrom {opened}: the simulator opens new vouchers only"
            )
        status = values.get("VoucherStatus") or "Approved"
        if status not in NEW_VOUCHER_STATUSES:
            raise _business(
                "VOUCHER_STATUS_INVALID",
                f"A new voucher's status is one of {', '.join(NEW_VOUCHER_STATUSES)}, not {status}",
            )
        with self._lock:
            co, vtype = values["Company"], values["VoucherType"]
            if co not in self._currency:
                raise _business("COMPANY_NOTEXIST", f"Company {co} does not exist")
            if (co, vtype) not in self._voucher_types:
                raise _business(
                    "VOUCHER_TYPE_NOTEXIST", f"Voucher type {vtype} does not exist in company {co}"
                )
            day = values.get("VoucherDate") or self._now().date()
            period = self._period_for(co, day)
            found = (period.values["AccountingYear"], period.values["AccountingPeriod"])
            given = (values.get("AccountingYear"), values.get("AccountingPeriod"))
            if given != (None, None) and given != found:
                raise _business(
                    "PERIOD_MISMATCH",
                    f"Voucher date {day.isoformat()} is not in accounting period "
                    f"{given[0]}-{given[1]:02d}; it belongs to {found[0]}-{found[1]:02d}"
                    if None not in given
                    else f"Voucher date {day.isoformat()} belongs to {found[0]}-{found[1]:02d}",
                )
            values.update(
                Objkey=self._new_objkey(),
                VoucherDate=day,
                AccountingYear=found[0],
                AccountingPeriod=found[1],
                VoucherStatus=status,
                UserGroup=values.get("UserGroup") or DEFAULT_USER_GROUP,
                AmountMethod=values.get("AmountMethod") or "GrossAmountEntry",
                OpennedFrom=opened,
            )
            record = self._new_record("TempVoucher", im.VOUCHER_ENTRY_TEMP, values)
            self._tables["TempVoucher"][(values["Objkey"],)] = record
            out = {"@odata.context": f"{root}/$metadata#{set_name}/$entity"}
            out.update(self._entity_json(record, QueryOptions()))
            location = f"{root}/{set_name}(Objkey='{values['Objkey']}')"
        return _json(
            out, 201, {"Location": location, "OData-EntityId": location, "ETag": record.etag}
        )

    async def _post_temp_row(
        self, request: Request, root: str, entity_path: str, parent: _Record
    ) -> Response:
        """CRUD_Create of a VoucherPosting: voucher type, year, period and date come from the
        temporary voucher, TransCode is MANUAL."""
        body = await _json_body(request, "one VoucherPosting")
        values = _typed(body, im.VOUCHER_POSTING, im.POSTING_INPUT, "VoucherPosting")
        p = parent.values
        if values.get("Company") not in (None, p["Company"]):
            raise _deserialization("A row names another company than its voucher")
        with self._lock:
            if (p["Objkey"],) not in self._tables["TempVoucher"]:
                raise _not_found("The temporary voucher is gone")
            siblings = self._temp_rows(parent)
            if values.get("RowNo") is None:
                values["RowNo"] = max((r.values["RowNo"] or 0 for r in siblings), default=0) + 1
            elif any(r.values["RowNo"] == values["RowNo"] for r in siblings):
                raise _deserialization(f"RowNo {values['RowNo']} is already used in this voucher")
            values.update(
                Objkey=self._new_objkey(),
                ParentObjkey=p["Objkey"],
                Company=p["Company"],
                VoucherType=p["VoucherType"],
                AccountingYear=p["AccountingYear"],
                AccountingPeriod=p["AccountingPeriod"],
                VoucherDate=p["VoucherDate"],
                TransCode="MANUAL",
            )
            record = self._new_record("TempRow", im.VOUCHER_POSTING, values)
            self._tables["TempRow"][(values["Objkey"],)] = record
            out = {"@odata.context": f"{root}/$metadata#VoucherPosting/$entity"}
            out.update(self._entity_json(record, QueryOptions()))
            location = f"{root}/{entity_path}/VoucherPostingArray(Objkey='{values['Objkey']}')"
        return _json(out, 201, {"Location": location, "ETag": record.etag})

    async def _action(self, request: Request, root: str, name: str, temp: _Record) -> Response:
        await request.body()
        with self._lock:
            if (temp.values["Objkey"],) not in self._tables["TempVoucher"]:
                raise _not_found("The temporary voucher is gone")
            if self.settings.require_if_match:
                self._check_if_match(request, temp)
            if name == "RemoveTempVoucher":
                self._drop_temp(temp)
                return Response(status_code=204, headers={"OData-Version": "4.0"})
            record = self._create_voucher(temp)
        return _json(
            {"@odata.context": f"{root}/$metadata#Edm.Int32", "value": record.values["VoucherNo"]}
        )

    def _drop_temp(self, temp: _Record) -> None:
        for row in self._temp_rows(temp):
            del self._tables["TempRow"][(row.values["Objkey"],)]
        del self._tables["TempVoucher"][(temp.values["Objkey"],)]

    def _check_if_match(self, request: Request, temp: _Record) -> None:
        if_match = request.headers.get("if-match")
        if if_match is None or not if_match.strip():
            raise ODataError(
                428,
                "ODP_MISSING_PRECONDITION",
                "The If-Match header is missing: a bound action needs the ETag of the "
                "voucher it acts on (or *)",
            )
        offered = [t.strip() for t in if_match.split(",")]
        if "*" not in offered and temp.etag not in offered:
            raise ODataError(
                412,
                "ODP_PRECONDITION_FAILED",
                "The voucher has been modified by another user; read it again for its ETag",
            )

    def _create_voucher(self, temp: _Record) -> _Record:
        """Create_Voucher___: validate as IFS does, number the voucher from the series of its
        company, type and year, store header and rows in the hold table (or nothing), drop
        the temporary voucher."""
        h = temp.values
        co, vtype, day = h["Company"], h["VoucherType"], h["VoucherDate"]
        period = self._period_for(co, day)
        year, per = period.values["AccountingYear"], period.values["AccountingPeriod"]
        group = h["UserGroup"] or DEFAULT_USER_GROUP
        status = self._group_period_status(period, group)
        if status != "Open":
            raise _business(
                "PERIOD_CLOSED",
                f"Accounting period {year}-{per:02d} is {_status_words(status)} for user group "
                f"{group} in the general ledger",
            )
        rows = [
            dict(r.values) for r in sorted(self._temp_rows(temp), key=lambda r: r.values["RowNo"])
        ]
        if not rows:
            raise _business("FIELD_MANDATORY", "The voucher has no rows")
        company_currency = self._currency[co]
        for index, row in enumerate(rows, start=1):
            self._check_row(co, day, company_currency, index, row)
            self._check_tax(co, index, row)
        rows.extend(self._tax_rows(co, rows))
        _check_balance(rows, company_currency)
        vt = self._voucher_types[(co, vtype)]
        voucher_status = h["VoucherStatus"]
        if vt.ApprovalRequired and voucher_status == "Approved":
            voucher_status = "AwaitingApproval"
        counter = (co, vtype, year)
        voucher_no = self._voucher_no.get(counter, 0) + 1
        self._voucher_no[counter] = voucher_no
        values = {k: h.get(k) for k in im.VOUCHER_ENTRY_HOLD.names}
        values.update(
            AccountingYear=year,
            AccountingPeriod=per,
            VoucherNo=voucher_no,
            VoucherStatus=voucher_status,
        )
        record = self._new_record("Voucher", im.VOUCHER_ENTRY_HOLD, values)
        record.meta["in_gl"] = False
        if voucher_status == "Approved":
            record.meta["approved_at"] = self._clock()
        for row in rows:
            row_values = {k: row.get(k) for k in im.VOUCHER_ROW.names}
            row_values.update(VoucherNo=voucher_no, AccountingYear=year, AccountingPeriod=per)
            record.rows.append(self._new_record("VoucherRow", im.VOUCHER_ROW, row_values))
        self._tables["Voucher"][record.key] = record
        self._drop_temp(temp)
        return record

    def _check_tax(self, co: str, index: int, row: dict[str, Any]) -> None:
        """What VoucherRow's Check_Insert___ and Unpack_Check_Insert___ refuse of a row's tax
        (IFS's messages): a tax code an account demands or blocks, a missing direction or tax
        amount, a tax whose sign differs from the row's."""
        account = self._tables["Account"][(co, row["Account"])].values
        code = row.get("OptionalCode")
        row["AutoTaxVouEntry"] = False
        if not code:
            if account.get("TaxCodeMandatory"):
                raise _business(
                    "TAXCODEMAND3",
                    f"It is mandatory to enter a Tax Code for Account {row['Account']}.",
                )
            for name in ("TaxDirection", "CurrencyTaxAmount", "TaxAmount"):
                if row.get(name) not in (None, 0):
                    raise _business(
                        "TAXCODENULL", "Cannot have tax values when tax code does not have a value."
                    )
            return
        tax_code = self._tax_codes.get((co, code))
        if tax_code is None:
            raise _business("FEE_NOTEXIST", f"Tax code {code} does not exist (row {index})")
        if not row.get("TaxDirection"):
            raise _business("NOTAXDIRECTION", "Tax Direction must have a value.")
        if tax_code.FeeType == "NoTax":
            return
        if account.get("TaxHandlingValue") == "Blocked":
            raise _business(
                "ACCOUNTBLOCKED",
                f"You are not allowed to enter a Tax Code when Tax Handling for Account "
                f"{row['Account']} is set to Blocked",
            )
        if row.get("CurrencyTaxAmount") is None:
            raise _business("CURRTAXAMPTY", "Currency Tax Amount must be entered.")
        if row.get("TaxAmount") is None:
            raise _business("TAXAMOUNTNULL", "Tax Amount must have a value.")
        net = (row.get("DebetAmount") or 0) - (row.get("CreditAmount") or 0)
        if (net < 0 < row["TaxAmount"]) or (net > 0 > row["TaxAmount"]):
            raise _business("DIFFACCTAXAMOUNTSIGN", "Different sign in Tax Amount")

    def _tax_rows(self, co: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Prepare_Tax_Transaction___: for each row with a tax code of type Tax and a tax
        amount, the tax row IFS adds (TransCode AP1 for tax received, the account of the
        posting control, AutoTaxVouEntry true), on the side of the tax's sign. A tax of 0
        adds no row here (IFS adds one of 0.00)."""
        out: list[dict[str, Any]] = []
        next_no = max((r.get("RowNo") or 0 for r in rows), default=0) + 1
        for row in rows:
            code = row.get("OptionalCode")
            tax_code = self._tax_codes.get((co, code)) if code else None
            if tax_code is None or tax_code.FeeType != "Tax" or not row.get("TaxAmount"):
                continue
            tax, cur_tax = row["TaxAmount"], row["CurrencyTaxAmount"]
            debit = tax > 0
            out.append(
                {
                    **row,  # the voucher's identity, currency and rate, text and reference
                    **dict.fromkeys(CODE_PART_FIELDS),
                    "Quantity": None,
                    "CurrencyTaxAmount": None,
                    "TaxAmount": None,
                    "RowNo": next_no,
                    "Account": tax_code.Account,
                    "CurrencyCode": row["CurrencyCode"],
                    "CurrencyRate": row["CurrencyRate"],
                    "CurrencyDebetAmount": abs(cur_tax) if debit else None,
                    "CurrencyCreditAmount": None if debit else abs(cur_tax),
                    "DebetAmount": abs(tax) if debit else None,
                    "CreditAmount": None if debit else abs(tax),
                    "OptionalCode": code,
                    "TaxDirection": row.get("TaxDirection"),
                    "AutoTaxVouEntry": True,
                    "TransCode": "AP1",
                    "Text": row.get("Text"),
                    "ReferenceNumber": row.get("ReferenceNumber"),
                }
            )
            next_no += 1
        return out

    def _period_for(self, co: str, day: date) -> _Record:
        for rec in self._tables["AccountingPeriod"].values():
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
        account = self._check_code_part(co, day, "A", row["Account"])
        for letter, name in zip(im.CODE_PARTS, CODE_PART_FIELDS, strict=True):
            demand = account.values.get(f"ReqCode{letter}")
            if row.get(name):
                if demand == "Blocked":
                    raise _business(
                        "CODE_PART_BLOCKED",
                        f"Code part {name} is blocked for account {row['Account']} (row {index})",
                    )
                self._check_code_part(co, day, letter, row[name])
            elif demand == "Mandatory":
                raise _business(
                    "CODE_PART_MANDATORY",
                    f"Code part {name} is mandatory for account {row['Account']} (row {index})",
                )
        if account.values.get("ReqQuantity") == "Mandatory" and row.get("Quantity") is None:
            raise _business(
                "QUANTITY_MANDATORY",
                f"Quantity is mandatory for account {row['Account']} (row {index})",
            )
        if account.values.get("ReqText") == "Mandatory" and not row.get("Text"):
            raise _business(
                "TEXT_MANDATORY", f"Text is mandatory for account {row['Account']} (row {index})"
            )
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
        for amount, code in (
            (cur_d, row["CurrencyCode"]),
            (cur_c, row["CurrencyCode"]),
            (acc_d, company_currency),
            (acc_c, company_currency),
        ):
            self._check_decimals(co, code, amount, index)

    def _check_decimals(self, co: str, code: str, amount: Any, index: int) -> None:
        """An amount with more decimals than its currency's CurrencyRounding is refused (IFS
        would round it, and a voucher rounded row by row no longer balances)."""
        record = self._tables["CurrencyCode"].get((co, code))
        if record is None or not isinstance(amount, Decimal):
            return
        decimals = int(record.values["CurrencyRounding"])
        if amount != amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP):
            raise _business(
                "AMOUNT_DECIMALS",
                f"Amount {amount} on row {index} has more than the {decimals} decimals of {code}",
            )

    def _check_code_part(self, co: str, day: date, letter: str, value: str) -> _Record:
        table = "Account" if letter == "A" else f"Code{letter}"
        rec = self._tables[table].get((co, value))
        name = None if letter == "A" else f"Code{letter}"
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
        return rec

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
            try:
                self.faults.add_posted(body)
            except ValidationError as err:
                return _control_error(ds.validation_message(err, "fault"))
        return _json(self.faults.describe())

    async def _c_code_part_values(self, request: Request) -> Response:
        return await self._control_put(
            request, ds.CodePartValue, "code part value", self._put_code_part_value
        )

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

    async def _c_temp_vouchers(self, request: Request) -> Response:
        return _json(self.temp_vouchers())

    async def _c_update_gl(self, request: Request) -> Response:
        return _json({"updated": self._update_gl(force=True)})

    async def _c_approve(self, request: Request) -> Response:
        """Approve vouchers awaiting approval (one, named by its keys, or every one)."""
        body = await _control_body(request)
        if not isinstance(body, dict):
            return _control_error(
                "approve: expected {Company, VoucherType, AccountingYear, VoucherNo} or {}"
            )
        keys = ("Company", "AccountingYear", "VoucherType", "VoucherNo")
        wanted = tuple(body.get(k) for k in keys)
        approved = []
        with self._lock:
            for rec in self._tables["Voucher"].values():
                if body and rec.key != wanted:
                    continue
                if rec.values["VoucherStatus"] in ("AwaitingApproval", "PartiallyApproved"):
                    rec.values["VoucherStatus"] = "Approved"
                    rec.meta["approved_at"] = self._clock()
                    self._touch(rec)
                    approved.append(self._voucher_json(rec))
        if body and not approved:
            return _control_error(f"no voucher awaiting approval with keys {wanted}", 404)
        return _json({"approved": approved})

    async def _c_batch_break(self, request: Request) -> Response:
        body = await _control_body(request)
        after = body.get("after_parts") if isinstance(body, dict) else None
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            return _control_error('batch-break: expected {"after_parts": n} with n >= 0')
        with self._lock:
            self._break_after = after
        return _json({"after_parts": after})

    async def _c_periods(self, request: Request) -> Response:
        """Set a period's status (for every user group without its own), or with `UserGroup`
        for that group only; other fields create or change the period."""
        body = await _control_body(request)
        co, err = _company_of(body, self._currency)
        if err:
            return err
        group = body.get("UserGroup")
        with self._lock:
            key = (co, body.get("AccountingYear"), body.get("AccountingPeriod"))
            existing = self._tables["AccountingPeriod"].get(key)
            if group is not None:
                if existing is None or not isinstance(group, str) or not group:
                    return _control_error("UserGroup: an existing period and a group name", 404)
                status = _period_status(str(body.get("PeriodStatus", "Open")))
                self._group_status[(*key, group)] = status
                self._user_groups.setdefault(co, {DEFAULT_USER_GROUP}).add(group)
                return _json({"UserGroup": group, "PeriodStatus": status})
            merged = dict(existing.values) if existing else {}
            if existing is not None:
                merged["PeriodStatus"] = existing.meta.get("PeriodStatus", "Open")
            merged.update(body)
            try:
                period = ds.Period.model_validate(merged)
            except ValidationError as exc:
                return _control_error(ds.validation_message(exc, "period"))
            rec = self._put_period(co, period)
            return _json({**self._entity_json(rec, QueryOptions()), **rec.meta})

    async def _c_currency_rates(self, request: Request) -> Response:
        return await self._control_put(
            request, ds.CurrencyRate, "currency rate", self._put_currency_rate
        )

    async def _control_put(
        self, request: Request, model: type[_M], what: str, put: Callable[[str, _M], _Record]
    ) -> Response:
        """Add or replace one record of a company's reference data from a control body."""
        body = await _control_body(request)
        co, err = _company_of(body, self._currency)
        if err:
            return err
        try:
            value = model.model_validate(body)
        except ValidationError as exc:
            return _control_error(ds.validation_message(exc, what))
        with self._lock:
            return _json(self._entity_json(put(co, value), QueryOptions()))

    async def _c_settings(self, request: Request) -> Response:
        if request.method == "POST":
            body = await _control_body(request)
            if not isinstance(body, dict):
                return _control_error("settings: expected a JSON object of fields")
            try:
                self.settings = IfsSimSettings.model_validate(self.settings.model_dump() | body)
            except ValidationError as exc:
                return _control_error(ds.validation_message(exc, "settings"))
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
# ---------------------------------------------------------------- helpers
def _uuid(rng: random.Random) -> str:
    h = rng.getrandbits(128).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _period_status(text: str) -> str:
    """A period status as IFS's identifier (Open, Closed, FinallyClosed), from either that or
    the older dataset spelling ("Final closed", "O", …)."""
    folded = re.sub(r"[\s_-]", "", text).lower()
    return {
        "open": "Open",
        "o": "Open",
        "closed": "Closed",
        "c": "Closed",
        "finallyclosed": "FinallyClosed",
        "finalclosed": "FinallyClosed",
        "f": "FinallyClosed",
    }.get(folded, text)


def _status_words(status: str) -> str:
    return {"FinallyClosed": "finally closed"}.get(status, status.lower())


def _read_only(method: str, sub: str) -> None:
    if method not in ("GET", "HEAD"):
        raise ODataError(405, "ODP_METHOD_NOT_ALLOWED", f"{method} is not allowed on {sub}")


async def _json_body(request: Request, what: str) -> dict[str, Any]:
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
        raise _deserialization(f"The request body must be a JSON object ({what})")
    return body


def _typed(
    body: Mapping[str, Any], entity: EntityType, allowed: Iterable[str], what: str
) -> dict[str, Any]:
    """Type-check a body's properties; unknown ones are refused by name, and so are
    properties the server assigns."""
    allowed = frozenset(allowed)
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("@"):
            continue
        prop = entity.prop(name)
        if prop is None:
            raise _deserialization(f"Property '{name}' does not exist on {what}")
        if name not in allowed:
            if value is None:
                continue
            raise _deserialization(f"{name} is set by IFS and cannot be given on {what}")
        try:
            out[name] = coerce_json(prop, value)
        except ValueError as err:
            raise _deserialization(str(err)) from None
    return out


def _split_resource(sub: str) -> tuple[str, str | None, str | None]:
    """`Set(keys)/Nav` or `Set(keys)/IfsApp.P.Entity_Action` -> (Set, keys, tail); quotes
    inside the key predicate are respected."""
    m = re.match(r"[A-Za-z_]\w*", sub)
    if m is None:
        raise _not_found(f"Resource '{sub}' not found")
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
    if key is not None and re.fullmatch(r"/[A-Za-z_][\w.]*/?", rest):
        return name, key, rest.strip("/")
    raise _not_found(f"Resource '{sub}' not found")


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


def _not_found(message: str) -> ODataError:
    return ODataError(404, RESOURCE_NOTFOUND, message)


def _control_error(message: str, status: int = 400) -> Response:
    return _json({"error": message}, status)


def _company_of(body: Any, companies: Mapping[str, str]) -> tuple[str, Response | None]:
    if not isinstance(body, dict) or not isinstance(body.get("Company"), str):
        return "", _control_error("Company: a string naming the IFS company is required")
    if body["Company"] not in companies:
        return "", _control_error(f"Company: unknown company {body['Company']!r}", 404)
    return body["Company"], None
