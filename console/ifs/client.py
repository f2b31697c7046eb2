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
from dataclasses import replace
from datetime import date
from typing import Any, TypeVar
from urllib.parse import quote, urljoin

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from console import http, money
from console.credentials import IfsCredentialSource
from console.errors import AuthError, ProtocolError, ServiceError, UnknownOutcome, Unreachable
from console.ifs import batch as batch_wire
from console.ifs.batch import BatchResult
from console.ifs.models import (
    AccountingPeriod,
    CodePartValue,
    CurrencyRate,
    JournalTemplate,
    Voucher,
)
from console.ifs.odata import (
    PageState,
    clamp_page_size,
    eq_filter,
    key_predicate,
    odata_literal,
    same_origin,
    startswith_filter,
)
from console.ifs.ratelimit import RateLimiter
from console.ifs.token import TokenManager

log = logging.getLogger(__name__)

SERVICE = "ifs"
PROJECTION_ROOT = "/main/ifsapplications/projection/v1/"
MI_MODIFIED_ERROR = "MI_MODIFIED_ERROR"
_TRANSIENT_READ_STATUSES = {502, 503, 504}
_MAX_PAGES = 10_000

M = TypeVar("M", bound=BaseModel)


class IfsEntitySets(BaseModel):
    """`<Projection>.svc/<EntitySet>` for each thing the console reads or writes. A real
    tenant's names come from its API Explorer; the defaults are the simulator's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code_part_values: str = "AccountingCodePartValueHandling.svc/CodePartValueSet"
    periods: str = "AccountingPeriodHandling.svc/AccountingPeriodSet"
    currency_rates: str = "CurrencyRateHandling.svc/CurrencyRateSet"
    journal_templates: str = "ManualVoucherHandling.svc/JournalTemplateSet"
    vouchers: str = "ManualVoucherHandling.svc/VoucherSet"


class _RetryOnce(Exception):
    """Internal: MI_MODIFIED_ERROR, answered by repeating the request once."""


class IfsClient:
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
        batch_counts_parts: bool = True,
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
        self._templates: dict[tuple[str, str], JournalTemplate] = {}
        self._templates_lock = threading.Lock()
        self._template_read_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"IfsClient(url={self.base_url!r}, realm={self.realm!r}, "
            f"requests_made={self.requests_made})"
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IfsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads
    def code_part_values(self, company: str) -> list[CodePartValue]:
        """Every code part value (A = accounts, B..J) of the company, all pages."""
        rows = self._get_all(
            self.entity_sets.code_part_values,
            filter=eq_filter({"Company": company}),
            orderby="CodePart,CodePartValue",
        )
        return self._models(CodePartValue, rows, "code part value")

    def periods(self, company: str) -> list[AccountingPeriod]:
        rows = self._get_all(
            self.entity_sets.periods,
            filter=eq_filter({"Company": company}),
            orderby="AccountingYear,AccountingPeriod",
        )
        return self._models(AccountingPeriod, rows, "accounting period")

    def currency_rates(self, company: str, currency: str | None = None) -> list[CurrencyRate]:
        rows = self._get_all(
            self.entity_sets.currency_rates,
            filter=eq_filter({"Company": company, "CurrencyCode": currency}),
            orderby="CurrencyCode,ValidFrom",
        )
        return self._models(CurrencyRate, rows, "currency rate")

    def journal_template(
        self, company: str, voucher_type: str, *, refresh: bool = False
    ) -> JournalTemplate:
        """The template a voucher of this type is posted against, with its ETag. Cached;
        read again only when `refresh` (after IFS said the ETag went stale)."""
        key = (company, voucher_type)
        if not refresh:
            with self._templates_lock:
                cached = self._templates.get(key)
            if cached is not None:
                return cached
        # One read per template even when concurrent posts all miss the cache at once.
        with self._template_read_lock:
            if not refresh:
                with self._templates_lock:
                    cached = self._templates.get(key)
                if cached is not None:
                    return cached
            return self._read_journal_template(company, voucher_type, key)

    def _read_journal_template(
        self, company: str, voucher_type: str, key: tuple[str, str]
    ) -> JournalTemplate:
        url = self._set_url(self.entity_sets.journal_templates) + key_predicate(
            {"Company": company, "VoucherType": voucher_type}
        )
        response = self._request("GET", url, what="reading the journal template")
        body = http.parse_json(response, service=SERVICE, what="the journal template read")
        if not isinstance(body, dict):
            raise ProtocolError(SERVICE, "the journal template answer is not an object")
        etag = body.get("@odata.etag") or response.headers.get("ETag") or ""
        if not etag:
            raise ProtocolError(
                SERVICE,
                f"the journal template of company {company} voucher type {voucher_type} "
                "came without an ETag",
            )
        template = self._model(JournalTemplate, {**body, "@odata.etag": etag}, "journal template")
        with self._templates_lock:
            self._templates[key] = template
        return template

    def find_vouchers(self, reference: str, company: str | None = None) -> list[Voucher]:
        """Vouchers (with rows) carrying this ReferenceNumber: how an unknown outcome is
        resolved before anything is posted again."""
        rows = self._get_all(
            self.entity_sets.vouchers,
            filter=eq_filter({"ReferenceNumber": reference, "Company": company}),
            orderby="Company,AccountingYear,VoucherType,VoucherNo",
            expand="VoucherRowArray",
        )
        return self._models(Voucher, rows, "voucher")

    def vouchers_dated(self, company: str, prefix: str, first: date, last: date) -> list[Voucher]:
        """The company's vouchers dated `first`..`last` whose ReferenceNumber starts with
        `prefix`, without rows: one paged read, how the ledger learns before posting which
        references IFS already holds (a lost or restored state file must not post twice)."""
        flt = " and ".join(
            (
                eq_filter({"Company": company}),
                startswith_filter("ReferenceNumber", prefix),
                f"VoucherDate ge {odata_literal(first)}",
                f"VoucherDate le {odata_literal(last)}",
            )
        )
        rows = self._get_all(
            self.entity_sets.vouchers,
            filter=flt,
            orderby="Company,AccountingYear,VoucherType,VoucherNo",
        )
        return self._models(Voucher, rows, "voucher")

    def vouchers_with_prefix(self, prefix: str, company: str) -> list[Voucher]:
        """Every voucher of the company whose ReferenceNumber starts with `prefix`."""
        flt = (
            eq_filter({"Company": company}) + " and " + startswith_filter("ReferenceNumber", prefix)
        )
        rows = self._get_all(
            self.entity_sets.vouchers,
            filter=flt,
            orderby="Company,AccountingYear,VoucherType,VoucherNo",
            expand="VoucherRowArray",
        )
        return self._models(Voucher, rows, "voucher")

    def check(self) -> None:
        """Proves the client credentials work and the projection answers."""
        self.token.get()
        url = self._set_url(self.entity_sets.code_part_values)
        response = self._request("GET", url, params={"$top": "1"}, what="the connection check")
        http.parse_json(response, service=SERVICE, what="the connection check")

    # ------------------------------------------------------------------ posting
    def post_voucher(self, voucher: Mapping[str, Any]) -> Voucher:
        """Create one voucher with its rows (one POST, atomic). Raises UnknownOutcome when
        the POST may or may not have been committed; the caller must look the voucher up
        by ReferenceNumber before posting again."""
        company = str(voucher.get("Company") or "")
        voucher_type = str(voucher.get("VoucherType") or "")
        if not company or not voucher_type:
            raise ValueError("a voucher needs Company and VoucherType")
        template = self.journal_template(company, voucher_type)
        payload = money.dumps(dict(voucher)).encode("utf-8")
        url = self._set_url(self.entity_sets.vouchers)
        for attempt in (1, 2):
            try:
                response = self._request(
                    "POST",
                    url,
                    content=payload,
                    headers={"If-Match": template.etag, "Content-Type": "application/json"},
                    what="posting the voucher",
                    mutating=True,
                )
            except ServiceError as exc:
                if exc.status == 412 and attempt == 1:
                    # Someone edited the template: re-read it once for its new ETag.
                    log.info("journal template ETag stale; re-reading it once")
                    template = self.journal_template(company, voucher_type, refresh=True)
                    continue
                raise
            return self._created_voucher(response)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def post_vouchers_batch(self, vouchers: Sequence[Mapping[str, Any]]) -> list[BatchResult]:
        """Create many vouchers in one OData `$batch`, each in its own change set (a voucher
        IFS refuses fails alone). One result per voucher, in order. Raises UnknownOutcome when
        the whole answer is lost after sending (every voucher must then be looked up by
        ReferenceNumber); a stale template ETag is re-read once and those vouchers resent."""
        if not vouchers:
            return []
        keys: list[tuple[str, str]] = []
        for v in vouchers:
            key = (str(v.get("Company") or ""), str(v.get("VoucherType") or ""))
            if not all(key):
                raise ValueError("a voucher needs Company and VoucherType")
            keys.append(key)
        results: dict[int, BatchResult] = {}
        todo = list(range(len(vouchers)))
        refreshed: set[tuple[str, str]] = set()
        for _attempt in (1, 2):
            etags = {
                k: self.journal_template(*k, refresh=k in refreshed).etag
                for k in dict.fromkeys(keys[i] for i in todo)
            }
            answers = self._send_batch([(vouchers[i], etags[keys[i]]) for i in todo])
            stale: list[int] = []
            for pos, i in enumerate(todo):
                result = batch_wire.result_of(i, answers[pos] if pos < len(answers) else None)
                err = result.error
                if isinstance(err, ServiceError) and err.status == 412 and keys[i] not in refreshed:
                    stale.append(i)
                    continue
                results[i] = replace(result, index=i)
            if not stale:
                break
            log.info("journal template ETag stale in a batch; re-reading it once")
            refreshed |= {keys[i] for i in stale}
            todo = stale
        for i in todo:
            results.setdefault(
                i, BatchResult(i, error=ServiceError(SERVICE, 412, "ODP_PRECONDITION_FAILED", ""))
            )
        return [results[i] for i in range(len(vouchers))]

    def _send_batch(
        self, pairs: Sequence[tuple[Mapping[str, Any], str]]
    ) -> list[batch_wire.PartAnswer | list[batch_wire.PartAnswer]]:
        vouchers_set = self.entity_sets.vouchers.strip("/")
        service, _, entity_set = vouchers_set.rpartition("/")
        body, content_type = batch_wire.build_batch(pairs, entity_set)
        # A tenant may count each part against its limit: hold a slot per part beyond the
        # first (the request itself takes one), so that counting never meets a 429.
        if self.batch_counts_parts:
            for _ in range(len(pairs) - 1):
                self.limiter.acquire()
        with self._count_lock:
            self.batch_parts_made += len(pairs)
        response = self._request(
            "POST",
            self._set_url(service) + "/$batch",
            content=body,
            headers={"Content-Type": content_type, "Accept": "multipart/mixed"},
            what="posting a voucher batch",
            mutating=True,
        )
        try:
            return batch_wire.parse_batch_answer(
                response.content, response.headers.get("content-type", "")
            )
        except ProtocolError as exc:
            raise UnknownOutcome(
                SERVICE, f"the voucher batch answered HTTP {response.status_code}: {exc}"
            ) from None

    def _created_voucher(self, response: httpx.Response) -> Voucher:
        # The POST succeeded but an unreadable answer still leaves us without the voucher's
        # identity: that is an unknown outcome, not a failure to retry.
        try:
            body = http.parse_json(response, service=SERVICE, what="the voucher post")
            if not isinstance(body, dict):
                raise ProtocolError(SERVICE, "the voucher post answer is not an object")
            return Voucher.model_validate(body)
        except (ProtocolError, ValidationError) as exc:
            detail = str(exc) if isinstance(exc, ProtocolError) else "an unreadable voucher"
            raise UnknownOutcome(
                SERVICE, f"the voucher post answered HTTP {response.status_code} with {detail}"
            ) from None

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
            value = body.get("value") if isinstance(body, dict) else None
            if not isinstance(value, list):
                raise ProtocolError(SERVICE, f"{what}: the answer has no 'value' array")
            rows.extend(r for r in value if isinstance(r, dict))
            link = body.get("@odata.nextLink")
            try:
                step = state.next_after(len(value), link if isinstance(link, str) else None)
            except ValueError as exc:
                raise ProtocolError(SERVICE, f"{what}: {exc}") from None
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
    ) -> httpx.Response:
        """One logical request: rate limit, token, bounded retries of what is safe to
        retry. Returns a 2xx response or raises a typed error."""
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
                    return self._send(method, url, params, content, headers, what, mutating, flags)
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
        return self._check(response, token, what, mutating, flags)

    def _check(
        self,
        response: httpx.Response,
        token: str,
        what: str,
        mutating: bool,
        flags: dict[str, bool],
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
