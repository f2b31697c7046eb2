"""IFS Cloud OData client: master data reads, the journal template's ETag, voucher posts.

What it absorbs so the engine does not have to:
- an expiring bearer token (TokenManager: refreshed ahead of time and on 401);
- the tenant's request limit (a client-side sliding window under it; 429 + Retry-After
  still honoured);
- paging (page size from config, never above 5000; nextLink followed; a short page ends);
- transient failures on reads (429, 502/503/504, transport errors) with bounded retries;
- MI_MODIFIED_ERROR retried once; a stale template ETag (412) re-read once;
- a POST whose outcome is unknown (dropped, timed out or 5xx after it was sent) raised as
  UnknownOutcome and never retried here: IFS has no idempotency key, so only a lookup by
  ReferenceNumber can tell whether the voucher exists.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urljoin

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from console import http, money
from console.credentials import IfsCredentialSource
from console.errors import AuthError, ProtocolError, ServiceError, UnknownOutcome, Unreachable
from console.ifs import batch as batch_wire
from console.ifs.batch import BatchResult
from console.ifs.models import (
    CODE_PARTS,
    AccountingPeriod,
    CodePartValue,
    CurrencyRate,
    Voucher,
)
from console.ifs.needs import tenant_needs
from console.ifs.odata import (
    PageState,
    clamp_page_size,
    eq_filter,
    key_predicate,
    odata_literal,
    same_origin,
    startswith_filter,
)
from console.ifs.preflight import CheckReport
from console.ifs.preflight import check as check_tenant
from console.ifs.ratelimit import RateLimiter
from console.ifs.token import TokenManager

log = logging.getLogger(__name__)

SERVICE = "ifs"
PROJECTION_ROOT = "/main/ifsapplications/projection/v1/"
MI_MODIFIED_ERROR = "MI_MODIFIED_ERROR"
_TRANSIENT_READ_STATUSES = {502, 503, 504}
_MAX_PAGES = 10_000
_GET_BATCH = 100  # reads per `$batch` of GETs

M = TypeVar("M", bound=BaseModel)

# Each projection's `$metadata` as this process read it, by its absolute URL: a tenant's
# model changes with a release, not between two cycles, so it is read once per process
# (the check before posting then costs nothing after the first). A projection that did
# not pass a check is forgotten, so the next check reads it again.
_METADATA: dict[str, str] = {}
_METADATA_LOCK = threading.Lock()


def forget_metadata() -> None:
    """Drop every `$metadata` this process kept (tests that reuse a port do this)."""
    with _METADATA_LOCK:
        _METADATA.clear()


class IfsEntitySets(BaseModel):
    """`<Projection>.svc/<EntitySet>` for each thing the console reads or writes, as IFS
    Cloud 21R1's model files name them (reference/ifs-cloud.md §0). A tenant on another
    release may rename one: each is config (`[ifs.entity_sets]`). `gl_voucher_rows` is
    assumed (GENLED's projections are not public; docs/ifs.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accounts: str = "AccountsHandling.svc/AccountSet"
    # Its entity (CompanyFinance) carries the company's currency and the arrays
    # CodeBArray…CodeJArray of code part values.
    code_part_values: str = "CodePartValuesHandling.svc/CompanyFinanceSet"
    # AccountingPeriod (DateFrom, DateUntil) with the array DetailUserGroups: the period's
    # status per user group and ledger.
    periods: str = "UserGroupPerPeriodHandling.svc/AccountingPeriodSet"
    currency_rates: str = "CurrencyRatesHandling.svc/CurrencyRateSet"
    currency_types: str = "CurrencyRatesHandling.svc/CurrencyTypeSet"
    # The voucher entry assistant's temporary voucher (rows in VoucherPostingArray, bound
    # actions CreateVoucher and RemoveTempVoucher).
    voucher_entry: str = "VoucherEntryAssistantHandling.svc/VoucherSet"
    # Vouchers not yet updated to the GL (their header text), their rows, and the GL's rows.
    hold_vouchers: str = "VoucherHandling.svc/VoucherSet"
    hold_voucher_rows: str = "VoucherRowsAnalysis.svc/VoucherRowSet"
    gl_voucher_rows: str = "GLVoucherRowsAnalysis.svc/GenLedVoucherRowSet"


def _batch_answers(
    response: httpx.Response,
) -> list[batch_wire.PartAnswer | list[batch_wire.PartAnswer]]:
    """The part answers of a `$batch` response (ProtocolError: not a readable multipart)."""
    return batch_wire.parse_batch_answer(response.content, response.headers.get("content-type", ""))


def _take_page(
    body: Any, rows: list[dict[str, Any]], state: PageState, what: str
) -> tuple[str, Any] | None:
    """Add one OData page's rows to `rows`; the next request to make (None: the last page).
    A page without a `value` array, or paging IFS contradicts, is a ProtocolError."""
    value = body.get("value") if isinstance(body, dict) else None
    if not isinstance(value, list):
        raise ProtocolError(SERVICE, f"{what}: the answer has no 'value' array")
    rows.extend(r for r in value if isinstance(r, dict))
    link = body.get("@odata.nextLink")
    try:
        return state.next_after(len(value), link if isinstance(link, str) else None)
    except ValueError as exc:
        raise ProtocolError(SERVICE, f"{what}: {exc}") from None


class _RetryOnce(Exception):
    """Internal: MI_MODIFIED_ERROR, answered by repeating the request once."""


class IfsClient(http.PooledClient):
    def __init__(
        self,
        base_url: str,
        realm: str,
        credentials: IfsCredentialSource,
        *,
        page_size: int = 1000,
        requests_per_minute: int = 900,
        concurrency: int = 4,
        timeout_s: float = 30.0,
        scope: str = "openid microprofile-jwt",
        entity_sets: IfsEntitySets | None = None,
        max_retry_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rate_window_s: float = 60.0,
        batch_counts_parts: bool = False,
        user_group: str = "AC",
        ledger_id: str = "00",
    ) -> None:
        self.base_url = http.check_url(base_url, service=SERVICE)
        if not realm or "/" in realm:
            raise ValueError("the IFS realm must be a plain name")
        self.realm = realm
        self.odata_root = self.base_url + PROJECTION_ROOT
        self.page_size = clamp_page_size(page_size)
        self.entity_sets = entity_sets or IfsEntitySets()
        self.max_retry_s = max_retry_s
        self.clock = clock
        self.sleep = sleep
        self._http = http.make_client(timeout_s=timeout_s, max_connections=max(1, concurrency))
        self._inflight = threading.BoundedSemaphore(max(1, concurrency))
        self._count_lock = threading.Lock()
        self.requests_made = 0
        # Whether the tenant's limit counts each part of a $batch (undocumented; counting
        # them is the safe assumption) and how many parts were sent.
        self.batch_counts_parts = batch_counts_parts
        self.batch_parts_made = 0
        self.limiter = RateLimiter(
            requests_per_minute,
            window_s=rate_window_s,
            max_wait_s=max(max_retry_s, rate_window_s * 2),
            clock=clock,
            sleep=sleep,
            service=SERVICE,
        )
        token_url = (
            f"{self.base_url}/auth/realms/{quote(realm, safe='')}/protocol/openid-connect/token"
        )
        self.token = TokenManager(
            token_url,
            credentials,
            http_client=self._http,
            scope=scope,
            clock=clock,
            sleep=sleep,
            max_retry_s=max_retry_s,
            before_request=self._before_request,
        )
        # The voucher user group the console posts as (its periods must be open to it) and
        # the ledger whose period status counts (IFS's "00": the general ledger).
        self.user_group = user_group
        self.ledger_id = ledger_id
        projection = _projection_of(self.entity_sets.voucher_entry)
        entity = "VoucherEntry"
        self._wire = batch_wire.VoucherWire(
            entity_set=_entity_set_name(self.entity_sets.voucher_entry),
            create_action=f"IfsApp.{projection}.{entity}_CreateVoucher",
            user_group=user_group,
        )
        self._remove_action = f"IfsApp.{projection}.{entity}_RemoveTempVoucher"

    def __repr__(self) -> str:
        return (
            f"IfsClient(url={self.base_url!r}, realm={self.realm!r}, "
            f"requests_made={self.requests_made})"
        )

    # ------------------------------------------------------------------ reads
    def code_part_values(self, company: str) -> list[CodePartValue]:
        """Every code part value of the company: the accounts (code part A) with their
        demands, from AccountsHandling, and code parts B..J in one `$batch` of
        CodePartValuesHandling's arrays CodeBArray…CodeJArray. Two requests (more only when
        a company has more values than a page)."""
        accounts = self._get_all(
            self.entity_sets.accounts,
            filter=eq_filter({"Company": company}),
            orderby="Account",
        )
        out = [self._model(CodePartValue, _account_row(r), "account") for r in accounts]
        company_set = self.entity_sets.code_part_values
        keys = key_predicate({"Company": company})
        arrays = {c: f"{_entity_set_name(company_set)}{keys}/Code{c}Array" for c in CODE_PARTS}
        pages = self._get_batch(company_set, list(arrays.values()), orderby=None)
        for letter, rows in zip(arrays, pages, strict=True):
            for r in rows:
                value = r.get(f"Code{letter}")
                if not isinstance(value, str):
                    raise ProtocolError(
                        SERVICE, f"a Code{letter} value from IFS has no Code{letter}"
                    )
                row = {**r, "Company": r.get("Company") or company, "CodePart": letter}
                out.append(
                    self._model(CodePartValue, {**row, "CodePartValue": value}, "code part value")
                )
        return out

    def company_currency(self, company: str) -> str:
        """The company's accounting currency (CompanyFinance.CurrencyCode)."""
        url = self._set_url(self.entity_sets.code_part_values) + key_predicate({"Company": company})
        response = self._request("GET", url, what="reading the company's finance data")
        body = http.parse_json(response, service=SERVICE, what="the company's finance data")
        code = body.get("CurrencyCode") if isinstance(body, dict) else None
        if not isinstance(code, str) or not code:
            raise ProtocolError(SERVICE, f"company {company} came without a CurrencyCode")
        return code

    def periods(self, company: str) -> list[AccountingPeriod]:
        """The company's accounting periods with their status for the console's user group
        in the general ledger: the periods in one read, their statuses in one `$batch` of
        DetailUserGroups reads. A period with no status for the group is closed to it."""
        rows = self._get_all(
            self.entity_sets.periods,
            filter=eq_filter({"Company": company}),
            orderby="AccountingYear,AccountingPeriod",
        )
        base = _entity_set_name(self.entity_sets.periods)
        flt = eq_filter({"UserGroup": self.user_group, "LedgerId": self.ledger_id})
        targets = []
        for r in rows:
            keys = key_predicate(
                {
                    "AccountingYear": r.get("AccountingYear"),
                    "AccountingPeriod": r.get("AccountingPeriod"),
                    "Company": r.get("Company") or company,
                }
            )
            targets.append(f"{base}{keys}/DetailUserGroups?$filter={quote(flt, safe='')}")
        statuses = self._get_batch(self.entity_sets.periods, targets, orderby=None) if rows else []
        out = []
        for r, groups in zip(rows, statuses, strict=True):
            status = next(
                (str(g.get("PeriodStatus")) for g in groups if g.get("PeriodStatus")), "Closed"
            )
            out.append(
                self._model(
                    AccountingPeriod,
                    {**r, "Company": r.get("Company") or company, "PeriodStatus": status},
                    "accounting period",
                )
            )
        return out

    def currency_rates(self, company: str, currency: str | None = None) -> list[CurrencyRate]:
        """The company's rates of its default rate type, with ConvFactor, whether the type is
        quoted inverted and both currencies' decimals: rate types and rates in one `$batch`,
        each with its CurrencyCodeRef reference expanded (IFS's CurrencyRatesHandling has no
        CurrencyCode set of its own; the references carry CurrencyRounding)."""
        types_set = self.entity_sets.currency_types
        rates_set = self.entity_sets.currency_rates
        same_service = types_set.rsplit("/", 1)[0] == rates_set.rsplit("/", 1)[0]
        flt = eq_filter({"Company": company, "CurrencyCode": currency})
        by_company = eq_filter({"Company": company})
        expand = f"$expand={CURRENCY_CODE_REF}"
        if same_service:
            types, rates = self._get_batch(
                rates_set,
                [
                    f"{_entity_set_name(types_set)}?$filter={quote(by_company, safe='')}&{expand}",
                    f"{_entity_set_name(rates_set)}?$filter={quote(flt, safe='')}&{expand}",
                ],
                orderby=None,
            )
        else:
            types = self._get_all(
                types_set,
                filter=eq_filter({"Company": company}),
                orderby="CurrencyType",
                expand=CURRENCY_CODE_REF,
            )
            rates = self._get_all(
                rates_set, filter=flt, orderby="CurrencyCode,ValidFrom", expand=CURRENCY_CODE_REF
            )
        default = next((t for t in types if t.get("TypeDefault") == "Yes"), None)
        wanted = str(default.get("CurrencyType")) if default else None
        by_type = {str(t.get("CurrencyType")): t for t in types}
        out = []
        for r in rates:
            kind = str(r.get("CurrencyType") or "")
            if wanted is not None and kind != wanted:
                continue
            rate_type = by_type.get(kind, {})
            row = {
                **r,
                "Company": r.get("Company") or company,
                "Inverted": bool(rate_type.get("Inverted")),
                "RefCurrencyCode": r.get("RefCurrencyCode") or rate_type.get("RefCurrencyCode"),
                "CurrencyRounding": _rounding_of(r),
                "RefCurrencyRounding": _rounding_of(rate_type),
            }
            if row.get("ConvFactor") is None:
                row.pop("ConvFactor", None)
            out.append(self._model(CurrencyRate, row, "currency rate"))
        out.sort(key=lambda x: (x.CurrencyCode, x.ValidFrom))
        return out

    # ------------------------------------------------------------------ lookups
    def find_vouchers(self, reference: str, company: str | None = None) -> list[Voucher]:
        """Vouchers (with rows) carrying this ReferenceNumber, in the hold table or already
        in the general ledger: how an unknown outcome is resolved before anything is posted
        again. IFS keeps the reference on the rows: the hold table's rows are read first and,
        only when they hold nothing, the GL's (a voucher moves from the hold table to the GL,
        never back, so this order cannot miss one that moves between the two reads)."""
        flt = eq_filter({"ReferenceNumber": reference, "Company": company})
        return self._vouchers_from_rows(flt, stop_when_found=True)

    def vouchers_dated(self, company: str, prefix: str, first: date, last: date) -> list[Voucher]:
        """The company's vouchers dated `first`..`last` whose ReferenceNumber starts with
        `prefix`, hold table and GL: how the ledger learns before posting which references
        IFS already holds (a lost or restored state file must not post twice)."""
        flt = " and ".join(
            (
                eq_filter({"Company": company}),
                startswith_filter("ReferenceNumber", prefix),
                f"VoucherDate ge {odata_literal(first)}",
                f"VoucherDate le {odata_literal(last)}",
            )
        )
        return self._vouchers_from_rows(flt)

    def newest_console_reference(self, company: str) -> str | None:
        """The ReferenceNumber on the company's newest voucher of ours (by year and voucher
        number): a cycle's cheap test of whether IFS holds a voucher the state does not know
        (a state file restored from an older copy). One row of the hold table, where new
        vouchers arrive; the GL's only when the hold table holds none of ours (a newer voucher
        already updated to the GL while an older one waits for approval is left to the daily
        read)."""
        newest: tuple[int, int, str] | None = None
        for entity_set in (self.entity_sets.hold_voucher_rows, self.entity_sets.gl_voucher_rows):
            if newest is not None:
                break
            what = f"reading {entity_set.rsplit('/', 1)[-1]}"
            params = {
                "$filter": _console_filter(company, None),
                "$orderby": "AccountingYear desc,VoucherNo desc",
                "$select": "AccountingYear,VoucherNo,ReferenceNumber",
                "$top": "1",
            }
            response = self._request("GET", self._set_url(entity_set), params=params, what=what)
            body = http.parse_json(response, service=SERVICE, what=what)
            value = body.get("value") if isinstance(body, dict) else None
            if not isinstance(value, list):
                raise ProtocolError(SERVICE, f"{what}: the answer has no 'value' array")
            for row in value[:1]:
                if not isinstance(row, dict):
                    continue
                key = (
                    int(row.get("AccountingYear") or 0),
                    int(row.get("VoucherNo") or 0),
                    str(row.get("ReferenceNumber") or ""),
                )
                newest = key if newest is None or key[:2] > newest[:2] else newest
        return newest[2] if newest is not None else None

    def console_vouchers(self, company: str, since: date | None = None) -> list[Voucher]:
        """Every voucher of the company this console could have posted (ReferenceNumber
        `EXP:`, `REV:`, `CARD:` or `CARD-REV:`), dated `since` or later (all when None), hold
        table and GL, in one filtered read of each: what the state is checked against, so a
        lost or restored state file forgets no posted voucher and no due reversal."""
        return self._vouchers_from_rows(_console_filter(company, since))

    def vouchers_with_prefix(self, prefix: str, company: str) -> list[Voucher]:
        """Every voucher of the company whose ReferenceNumber starts with `prefix`, hold table
        and GL, with rows."""
        flt = (
            eq_filter({"Company": company}) + " and " + startswith_filter("ReferenceNumber", prefix)
        )
        vouchers = self._vouchers_from_rows(flt)
        if not vouchers:
            return vouchers
        # The voucher's own text is on its header, not on its rows: one read of the hold
        # table's headers (a voucher already in the GL keeps its rows' texts only).
        headers = self._get_all(
            self.entity_sets.hold_vouchers,
            filter=eq_filter({"Company": company}),
            orderby="AccountingYear,VoucherType,VoucherNo",
        )
        texts = {
            (h.get("Company"), h.get("AccountingYear"), h.get("VoucherType"), h.get("VoucherNo")): (
                h.get("VoucherText2") or ""
            )
            for h in headers
        }
        out = []
        for v in vouchers:
            text = texts.get((v.Company, v.AccountingYear, v.VoucherType, v.VoucherNo))
            out.append(v.model_copy(update={"Text": text}) if text else v)
        return out

    def _vouchers_from_rows(self, flt: str, *, stop_when_found: bool = False) -> list[Voucher]:
        order = "Company,AccountingYear,VoucherType,VoucherNo,RowNo"
        found: dict[tuple[Any, ...], Voucher] = {}
        for in_gl, entity_set in (
            (False, self.entity_sets.hold_voucher_rows),
            (True, self.entity_sets.gl_voucher_rows),
        ):
            if stop_when_found and found:
                break
            rows = self._get_all(entity_set, filter=flt, orderby=order)
            for key, group in _group_rows(rows).items():
                if key in found:
                    continue  # moved to the GL between the two reads: seen once
                found[key] = self._model(Voucher, _voucher_from_rows(group, in_gl), "voucher")
        return [found[k] for k in sorted(found, key=lambda k: tuple(str(x) for x in k))]

    def discard_temp_vouchers(self, reference: str, company: str) -> int:
        """Remove the voucher assistant's temporary vouchers whose rows carry this reference
        (left by a crash before CreateVoucher): a temporary voucher is not a voucher, and the
        one that will be posted must be the only one. Returns how many were removed."""
        vouchers_set = self.entity_sets.voucher_entry
        temps = self._get_all(
            vouchers_set, filter=eq_filter({"Company": company}), orderby="Objkey"
        )
        if not temps:
            return 0
        base = _entity_set_name(vouchers_set)
        flt = quote(eq_filter({"ReferenceNumber": reference}), safe="")
        targets = [
            f"{base}{key_predicate({'Objkey': t.get('Objkey')})}/VoucherPostingArray?$filter={flt}"
            for t in temps
        ]
        rows = self._get_batch(vouchers_set, targets, orderby=None)
        removed = 0
        for temp, matches in zip(temps, rows, strict=True):
            if not matches:
                continue
            url = (
                self._set_url(vouchers_set)
                + key_predicate({"Objkey": temp.get("Objkey")})
                + "/"
                + self._remove_action
            )
            self._request(
                "POST",
                url,
                content=b"{}",
                headers={
                    "Content-Type": "application/json",
                    "If-Match": str(temp.get("@odata.etag") or "*"),
                },
                what="removing a temporary voucher",
                mutating=True,
            )
            removed += 1
        return removed

    def check(self) -> CheckReport:
        """Proves the client credentials work, that the tenant serves what the console uses
        (`preflight`: the report says what differs) and, when it does, that an entity set
        answers with data."""
        self.token.get()
        report = self.preflight()
        if report.ok:
            url = self._set_url(self.entity_sets.accounts)
            response = self._request("GET", url, params={"$top": "1"}, what="the connection check")
            http.parse_json(response, service=SERVICE, what="the connection check")
        return report

    # ------------------------------------------------------------------ the tenant check
    def get_text(self, path: str) -> tuple[int, str]:
        """GET `path` under the projection root (`<Projection>.svc/`, `…/$metadata`) through
        the one request path (token, rate limit, bounded retries), answering (status, body)
        whatever IFS says, 403 and 404 included: for the tenant check, which reads a refusal
        as a finding. A 401 re-authenticates once and then raises AuthError; 429 and
        502–504 are retried, then raise Unreachable."""
        accept = "application/xml" if path.endswith("$metadata") else "application/json"
        response = self._request(
            "GET",
            self.odata_root + path.lstrip("/"),
            headers={"Accept": accept},
            what=f"reading {path}",
            answer_any=True,
        )
        return response.status_code, response.text

    def preflight(self, *, service_documents: bool = True) -> CheckReport:
        """`ml-console ifs check`: every projection the client uses (console/ifs/needs.py,
        under this client's entity-set names) read and compared with what the client sends.
        Reads each projection's service document (unless `service_documents` is false: the
        check before posting reads `$metadata` only) and its `$metadata`, kept for the rest
        of the process once read; at most two requests per projection."""
        report = check_tenant(
            tenant_needs(self.entity_sets),
            self._preflight_fetch,
            service_documents=service_documents,
        )
        failed = {r.projection for r in report.results if not r.ok}
        with _METADATA_LOCK:
            for projection in failed:
                _METADATA.pop(self.odata_root + f"{projection}.svc/$metadata", None)
        return report

    def _preflight_fetch(self, path: str) -> tuple[int, str]:
        if not path.endswith("$metadata"):
            return self.get_text(path)
        key = self.odata_root + path
        with _METADATA_LOCK:
            kept = _METADATA.get(key)
        if kept is not None:
            return 200, kept
        status, body = self.get_text(path)
        if status == 200:
            with _METADATA_LOCK:
                _METADATA[key] = body
        return status, body

    # ------------------------------------------------------------------ posting
    def post_voucher(self, voucher: Mapping[str, Any]) -> Voucher:
        """Create one voucher with its rows: one `$batch` request holding one change set
        (temporary voucher, rows, CreateVoucher), atomic. Raises ServiceError when IFS
        refuses it, UnknownOutcome when it may or may not have been committed: the caller
        must then look the voucher up by ReferenceNumber before posting again."""
        result = self.post_vouchers_batch([voucher])[0]
        if result.voucher is not None:
            return result.voucher
        assert result.error is not None
        raise result.error

    def post_vouchers_batch(self, vouchers: Sequence[Mapping[str, Any]]) -> list[BatchResult]:
        """Create many vouchers in one OData `$batch`, each in its own change set (a voucher
        IFS refuses fails alone). One result per voucher, in order. Raises UnknownOutcome when
        the whole answer is lost after sending (every voucher must then be looked up by
        ReferenceNumber)."""
        if not vouchers:
            return []
        for v in vouchers:
            if not v.get("Company") or not v.get("VoucherType"):
                raise ValueError("a voucher needs Company and VoucherType")
        service = self.entity_sets.voucher_entry.strip("/").rsplit("/", 1)[0]
        body, content_type, parts = batch_wire.build_voucher_batch(vouchers, self._wire)
        answers = self._send_batch(service, body, content_type, parts, what="posting vouchers")
        return [
            batch_wire.result_of(i, answers[i] if i < len(answers) else None, v)
            for i, v in enumerate(vouchers)
        ]

    def _send_batch(
        self, service: str, body: bytes, content_type: str, parts: int, *, what: str
    ) -> list[batch_wire.PartAnswer | list[batch_wire.PartAnswer]]:
        # A tenant may count each part against its limit: hold a slot per part beyond the
        # first (the request itself takes one), so that counting never meets a 429.
        if self.batch_counts_parts:
            for _ in range(parts - 1):
                self.limiter.acquire()
        with self._count_lock:
            self.batch_parts_made += parts
        response = self._post_batch(service, body, content_type, what=what, mutating=True)
        try:
            return _batch_answers(response)
        except ProtocolError as exc:
            raise UnknownOutcome(
                SERVICE, f"{what}: the $batch answered HTTP {response.status_code}: {exc}"
            ) from None

    def _get_batch(
        self, any_set: str, targets: Sequence[str], *, orderby: str | None
    ) -> list[list[dict[str, Any]]]:
        """Many GETs of one projection in `$batch` requests (up to `_GET_BATCH` each): each
        target's rows, every page (a part that answers a nextLink is followed by plain
        GETs). A read: safe to repeat, never an unknown outcome."""
        service = any_set.strip("/").rsplit("/", 1)[0]
        out: list[list[dict[str, Any]]] = []
        for start in range(0, len(targets), _GET_BATCH):
            chunk = targets[start : start + _GET_BATCH]
            paged = [_with_top(t, self.page_size) for t in chunk]
            body, content_type = batch_wire.build_get_batch(paged)
            answers = self._read_batch(service, body, content_type)
            if len(answers) != len(chunk):
                raise ProtocolError(
                    SERVICE,
                    f"{service}: the $batch answer has {len(answers)} parts for {len(chunk)} reads",
                )
            for target, answer in zip(chunk, answers, strict=True):
                if isinstance(answer, list) or not 200 <= answer.status < 300:
                    status = answer[0].status if isinstance(answer, list) else answer.status
                    code, message = (
                        batch_wire.error_of(answer) if not isinstance(answer, list) else ("", "")
                    )
                    if status == 403:
                        raise AuthError(
                            SERVICE,
                            f"HTTP 403 {code}: {message or 'the client may not read ' + target}",
                        )
                    raise ServiceError(SERVICE, status, code or f"HTTP{status}", message or target)
                try:
                    data = money.loads(answer.body)
                except ValueError:
                    raise ProtocolError(SERVICE, f"{service}: a batch part is not JSON") from None
                value = data.get("value") if isinstance(data, dict) else None
                if not isinstance(value, list):
                    raise ProtocolError(SERVICE, f"{service}: a batch part has no 'value' array")
                rows = [r for r in value if isinstance(r, dict)]
                link = data.get("@odata.nextLink")
                if isinstance(link, str) or len(value) >= self.page_size:
                    # More than a page: read the rest as plain paged GETs.
                    rows = self._get_rest(
                        service, target, link if isinstance(link, str) else None, rows
                    )
                out.append(rows)
        return out

    def _read_batch(
        self, service: str, body: bytes, content_type: str
    ) -> list[batch_wire.PartAnswer | list[batch_wire.PartAnswer]]:
        """One `$batch` of reads. An answer that is not a readable multipart body (a proxy
        or connection fault) is asked for once more, as a plain read would be: a second
        bad answer is reported."""
        what = f"reading {service} in a batch"
        for attempt in (1, 2):
            response = self._post_batch(service, body, content_type, what=what)
            try:
                return _batch_answers(response)
            except ProtocolError:
                if attempt == 2:
                    raise
                log.info("%s: the answer was not a readable batch; asking once more", what)
        raise AssertionError("unreachable")  # pragma: no cover

    def _post_batch(
        self, service: str, body: bytes, content_type: str, *, what: str, mutating: bool = False
    ) -> httpx.Response:
        """POST one multipart `$batch` to a projection's service root."""
        return self._request(
            "POST",
            self._set_url(service) + "/$batch",
            content=body,
            headers={"Content-Type": content_type, "Accept": "multipart/mixed"},
            what=what,
            mutating=mutating,
        )

    def _get_rest(
        self, service: str, target: str, link: str | None, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        path, _, query = target.partition("?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        base = self._set_url(service) + "/" + path
        state = PageState(self.page_size)
        step = state.next_after(len(rows), link)
        what = f"reading {path.rsplit('/', 1)[-1]}"
        while step is not None:
            kind, arg = step
            if kind == "link":
                url = urljoin(base, arg)
                if not same_origin(url, self.base_url):
                    raise ProtocolError(SERVICE, f"{what}: the nextLink points at another host")
                response = self._request("GET", url, what=what)
            else:
                response = self._request(
                    "GET",
                    base,
                    params={**params, "$top": str(self.page_size), "$skip": str(arg)},
                    what=what,
                )
            body = http.parse_json(response, service=SERVICE, what=what)
            step = _take_page(body, rows, state, what)
        return rows

    # ------------------------------------------------------------------ plumbing
    def _set_url(self, entity_set: str) -> str:
        return self.odata_root + entity_set.strip("/")

    def _before_request(self) -> None:
        self.limiter.acquire()
        with self._count_lock:
            self.requests_made += 1

    def _get_all(
        self,
        entity_set: str,
        *,
        filter: str,
        orderby: str,
        expand: str | None = None,
    ) -> list[dict[str, Any]]:
        base = self._set_url(entity_set)
        params: dict[str, str] = {"$filter": filter, "$orderby": orderby}
        if expand:
            params["$expand"] = expand
        params["$top"] = str(self.page_size)
        state = PageState(self.page_size)
        url: str = base
        query: dict[str, str] | None = params
        rows: list[dict[str, Any]] = []
        what = f"reading {entity_set.rsplit('/', 1)[-1]}"
        for _ in range(_MAX_PAGES):
            response = self._request("GET", url, params=query, what=what)
            try:
                body = http.parse_json(response, service=SERVICE, what=what)
            except ProtocolError:
                # A body cut short (a proxy or connection fault): a read, so ask once more;
                # a second bad body is reported.
                log.info("%s: the answer was not valid JSON; asking once more", what)
                response = self._request("GET", url, params=query, what=what)
                body = http.parse_json(response, service=SERVICE, what=what)
            step = _take_page(body, rows, state, what)
            if step is None:
                return rows
            kind, arg = step
            if kind == "link":
                url = urljoin(url, arg)
                if not same_origin(url, self.base_url):
                    raise ProtocolError(
                        SERVICE, f"{what}: the nextLink points at another host; not followed"
                    )
                query = None
            else:
                url, query = base, {**params, "$skip": str(arg)}
        raise ProtocolError(SERVICE, f"{what}: more than {_MAX_PAGES} pages; stopped")

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        what: str,
        mutating: bool = False,
        answer_any: bool = False,
    ) -> httpx.Response:
        """One logical request: rate limit, token, bounded retries of what is safe to
        retry. Returns a 2xx response or raises a typed error; with `answer_any`, also any
        other answer but 401, 429 and 502–504 (a read that takes a refusal as an answer)."""
        policy = http.retry_policy(
            max_attempts=6,
            max_total_s=self.max_retry_s,
            clock=self.clock,
            sleep=self.sleep,
        )
        flags = {"reauthed": False, "mi_retried": False}
        try:
            for attempt in policy:
                with attempt:
                    return self._send(
                        method, url, params, content, headers, what, mutating, flags, answer_any
                    )
        except http.TransientError as exc:
            raise Unreachable(SERVICE, f"{what}: {exc.message}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        what: str,
        mutating: bool,
        flags: dict[str, bool],
        answer_any: bool = False,
    ) -> httpx.Response:
        token = self.token.get()
        self._before_request()
        request_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        request_headers.update(headers or {})
        try:
            with self._inflight:
                response = self._http.request(
                    method, url, params=params, content=content, headers=request_headers
                )
        except httpx.HTTPError as exc:
            text = http.transport_error_text(exc)
            if mutating and not http.failed_before_send(exc):
                raise UnknownOutcome(
                    SERVICE, f"{what}: {text} after the request was sent"
                ) from None
            raise http.TransientError(text) from None
        return self._check(response, token, what, mutating, flags, answer_any)

    def _check(
        self,
        response: httpx.Response,
        token: str,
        what: str,
        mutating: bool,
        flags: dict[str, bool],
        answer_any: bool = False,
    ) -> httpx.Response:
        status = response.status_code
        if 200 <= status < 300:
            return response
        if status == 401:
            if flags["reauthed"]:
                raise AuthError(SERVICE, "IFS refused a freshly issued token (HTTP 401)")
            flags["reauthed"] = True
            self.token.invalidate(token)
            raise http.TransientError("HTTP 401", retry_after=0.0)
        if status == 429:
            # Not acted on: safe to repeat, even a POST.
            retry_after = http.parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                self.limiter.pause(retry_after)
            raise http.TransientError("rate-limited (HTTP 429)", retry_after=retry_after)
        if answer_any and status not in _TRANSIENT_READ_STATUSES:
            return response
        html = http.looks_like_html(response)
        code, message = ("", "") if html else _error_of(response)
        if code == MI_MODIFIED_ERROR and status >= 500:
            if flags["mi_retried"]:
                raise ServiceError(SERVICE, status, code, message)
            flags["mi_retried"] = True
            raise http.TransientError(f"{code}: {message}", retry_after=0.0)
        if status >= 500:
            described = http.describe_html(response, what) if html else f"HTTP {status}"
            if mutating:
                raise UnknownOutcome(
                    SERVICE,
                    f"{what}: HTTP {status} after the request was sent"
                    + (f" ({code}: {message})" if code else ""),
                )
            if status in _TRANSIENT_READ_STATUSES and not html:
                raise http.TransientError(f"{what}: {described}")
            if html:
                raise ProtocolError(SERVICE, described)
            raise ServiceError(SERVICE, status, code or f"HTTP{status}", message or what)
        if html:
            raise ProtocolError(SERVICE, http.describe_html(response, what))
        if status == 403:
            raise AuthError(
                SERVICE, f"HTTP 403 {code}: {message or 'the client may not use this projection'}"
            )
        raise ServiceError(SERVICE, status, code or f"HTTP{status}", message or what)

    def _model(self, model: type[M], row: Mapping[str, Any], what: str) -> M:
        try:
            return model.model_validate(row)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ()))
            raise ProtocolError(
                SERVICE, f"a {what} from IFS could not be read ({field}: {first.get('msg')})"
            ) from None

    def _models(self, model: type[M], rows: list[dict[str, Any]], what: str) -> list[M]:
        return [self._model(model, row, what) for row in rows]


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from an IFS error body {"error": {"code", "message"}}."""
    try:
        body = money.loads(response.content)
    except ValueError:
        text = " ".join(response.content[:200].decode("utf-8", "replace").split())
        return "", text
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "")[:500]


def _projection_of(entity_set: str) -> str:
    """`VoucherEntryAssistantHandling` of `VoucherEntryAssistantHandling.svc/VoucherSet`."""
    return entity_set.strip("/").split("/", 1)[0].removesuffix(".svc")


CURRENCY_CODE_REF = "CurrencyCodeRef"


def _rounding_of(row: Any) -> int | None:
    """CurrencyCode.CurrencyRounding of an expanded CurrencyCodeRef (None if absent)."""
    ref = row.get(CURRENCY_CODE_REF) if isinstance(row, dict) else None
    value = ref.get("CurrencyRounding") if isinstance(ref, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    return int(value) if value == int(value) and 0 <= value <= 9 else None


def _entity_set_name(entity_set: str) -> str:
    """`VoucherSet` of `VoucherEntryAssistantHandling.svc/VoucherSet`."""
    return entity_set.strip("/").rsplit("/", 1)[-1]


def _with_top(target: str, page_size: int) -> str:
    return target + ("&" if "?" in target else "?") + f"$top={page_size}"


_DEMANDS = {"Mandatory", "Blocked"}


def _account_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An AccountSet row as a code part A value with its demands."""
    demands = {
        c: str(row.get(f"ReqCode{c}"))
        for c in CODE_PARTS
        if str(row.get(f"ReqCode{c}")) in _DEMANDS
    }
    out = {
        **row,
        "CodePart": "A",
        "CodePartValue": row.get("Account"),
        "demands": demands,
    }
    for name in ("ReqQuantity", "ReqText", "TaxHandlingValue"):
        if not isinstance(row.get(name), str):
            out.pop(name, None)
    if not isinstance(row.get("TaxCodeMandatory"), bool):
        out.pop("TaxCodeMandatory", None)
    return out


def _group_rows(
    rows: Sequence[Mapping[str, Any]],
) -> dict[tuple[Any, ...], list[Mapping[str, Any]]]:
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        key = (r.get("Company"), r.get("AccountingYear"), r.get("VoucherType"), r.get("VoucherNo"))
        groups.setdefault(key, []).append(r)
    return groups


def _voucher_from_rows(rows: Sequence[Mapping[str, Any]], in_gl: bool) -> dict[str, Any]:
    """A voucher (header and rows) from its rows as IFS's row sets serve them."""
    first = rows[0]
    return {
        "Company": first.get("Company"),
        "VoucherType": first.get("VoucherType"),
        "VoucherNo": first.get("VoucherNo"),
        "AccountingYear": first.get("AccountingYear"),
        "AccountingPeriod": first.get("AccountingPeriod"),
        "VoucherDate": first.get("VoucherDate"),
        "ReferenceNumber": next(
            (r.get("ReferenceNumber") for r in rows if r.get("ReferenceNumber")), ""
        ),
        "VoucherRowArray": [dict(r) for r in sorted(rows, key=lambda r: r.get("RowNo") or 0)],
        "in_gl": in_gl,
    }


def _console_filter(company: str, since: date | None) -> str:
    """The company's vouchers of this console (its four reference prefixes), dated `since` or
    later when given."""
    prefixes = " or ".join(
        startswith_filter("ReferenceNumber", p) for p in ("EXP:", "REV:", "CARD:", "CARD-REV:")
    )
    parts = [eq_filter({"Company": company}), f"({prefixes})"]
    if since is not None:
        parts.append(f"VoucherDate ge {odata_literal(since)}")
    return " and ".join(parts)
