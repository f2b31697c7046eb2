"""Expensify Integration Server client.

One endpoint, every job a form field `requestJobDescription` (JSON) plus `template` for file
exports. Errors arrive inside HTTP 200 bodies as {"responseCode", "responseMessage"}. The
API allows 5 requests per 10 s and 20 per 60 s, so every request goes through a persistent
sliding-window limiter, authentication failures are never retried in a loop, and 429s are
waited out within a bound.

The export never marks reports: `export_reports` runs the file job without onFinish, and
`mark_exported` runs a second export of exactly the posted reportIDs with onFinish
markAsExported, once the caller has recorded the posts.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any, TypedDict, Unpack

import httpx
from pydantic import ValidationError

from console import http, money
from console.credentials import ExpensifyCredentials, ExpensifyCredentialSource
from console.errors import AuthError, ConfigError, ProtocolError, ServiceError, Unreachable
from console.expensify.limiter import MemoryWindowStore, RequestWindowStore, SlidingWindowLimiter
from console.expensify.models import (
    AccrualRule,
    ExportReport,
    ExportResult,
    MalformedReport,
    PolicyCategory,
    PolicyEmployee,
    PolicyInfo,
    PolicyTag,
    PolicyTagLevel,
)

log = logging.getLogger(__name__)

SERVICE = "expensify"
ENDPOINT = "/Integration-Server/ExpensifyIntegrations"
_AUTH_CODES = {401, 403, 407}
_AUTH_WORDS = ("authenticat", "credential", "not authorized", "unauthori")
# "not found" is here only for downloads right after the job that wrote the file: real
# clients record `{"responseMessage": "File not found"}` for a missing file, and "not ready"
# is undocumented, so the two cannot be told apart; the polling is bounded either way.
_NOT_READY_WORDS = ("not ready", "in progress", "being generated", "not found")
# Where each kind of file is downloaded from: report exports on the Integration Server, card
# reconciliation files on `reconciliation` (three real clients; reference/expensify.md §0).
FILE_SYSTEM_EXPORT = "integrationServer"
FILE_SYSTEM_RECONCILIATION = "reconciliation"
_TRANSIENT_BODY_CODES = {502, 503, 504}
# How many times a download is retried while the export file is not ready (each is a
# request against the 20-a-minute budget), and the pause between tries.
DOWNLOAD_TRIES = 4
DOWNLOAD_PAUSE_S = 2.0


# Isolating reports that stop the export template (export_items): words by which the export
# job's error is told to be the template's (the simulator: "Error while processing the
# template"; FreeMarker's own messages name the template), and the most exports one isolation
# may run (each is the job and its download: two requests against 20 a minute). One bad report
# among n takes about 2·log2(n) exports; 60 isolate a handful among thousands.
TEMPLATE_ERROR_WORDS = ("template", "freemarker")
MAX_ISOLATION_EXPORTS = 60


def default_template(name: str = "export.ftl") -> str:
    """One of the project's report templates, shipped inside the package."""
    try:
        return resources.files("console.expensify").joinpath(name).read_text("utf-8")
    except (FileNotFoundError, OSError) as exc:
        raise ConfigError(
            f"{SERVICE}: the export template console/expensify/{name} is missing ({exc})"
        ) from None


# The report states an export selects unless told otherwise.
EXPORT_STATES = ("APPROVED", "REIMBURSED")


class ExportFilters(TypedDict, total=False):
    """Which reports an export selects (the export methods' keywords; see _export_input):
    report_ids, start_date or approved_after must be given; states default to EXPORT_STATES;
    exclude_label leaves out reports marked exported with it; limit caps the count."""

    approved_after: date | None
    start_date: date | None
    report_ids: Sequence[str] | None
    states: Sequence[str]
    exclude_label: str | None
    policy_ids: Sequence[str] | None
    limit: int | None


class _Refused(Exception):
    """The service refused the credentials (auth failure), message safe to show."""


class _NotReady(Exception):
    """The export file is not ready for download yet."""


class ExpensifyClient(http.PooledClient):
    def __init__(
        self,
        base_url: str,
        credentials: ExpensifyCredentialSource,
        *,
        window: RequestWindowStore | None = None,
        limit_10s: int = 5,
        limit_60s: int = 20,
        timeout_s: float = 60.0,
        max_wait_s: float = 120.0,
        accrual: AccrualRule | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        template: str | None = None,
    ) -> None:
        self.base_url = http.check_url(base_url, service=SERVICE)
        self.url = self.base_url + ENDPOINT
        self._credentials = credentials
        self.window = window if window is not None else MemoryWindowStore()
        self.limit_10s = limit_10s
        self.limit_60s = limit_60s
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.sleep = sleep
        self._template = template
        self._http = http.make_client(timeout_s=timeout_s, max_connections=2)
        self._count_lock = threading.Lock()
        self._limiters: dict[str, SlidingWindowLimiter] = {}
        self.requests_made = 0
        # How each exported report's moment is read: zone, approver, what dates a voucher.
        self.accrual = accrual or AccrualRule()
        # Which file system served the last card reconciliation file (tried first next time).
        self.reconciliation_file_system = FILE_SYSTEM_RECONCILIATION

    def __repr__(self) -> str:
        return f"ExpensifyClient(url={self.base_url!r}, requests_made={self.requests_made})"

    def cancel_waits(self) -> None:
        """Requests waiting for the request limit give up now (the console is closing)."""
        for limiter in list(self._limiters.values()):
            limiter.cancel()

    @property
    def template(self) -> str:
        if self._template is None:
            self._template = default_template()
        return self._template

    def limiter_for(self, partner_user_id: str) -> SlidingWindowLimiter:
        """The limiter keyed by partnerUserID: the server counts per user, so a rotated
        user ID starts its own window."""
        limiter = self._limiters.get(partner_user_id)
        if limiter is None:
            limiter = SlidingWindowLimiter(
                self.window,
                f"expensify:{partner_user_id}",
                limits=((self.limit_10s, 10.0), (self.limit_60s, 60.0)),
                max_wait_s=self.max_wait_s,
                clock=self.clock,
                sleep=self.sleep,
                service=SERVICE,
            )
            self._limiters[partner_user_id] = limiter
        return limiter

    # ------------------------------------------------------------------ jobs
    def export_reports(self, **filters: Unpack[ExportFilters]) -> ExportResult:
        """Export reports with the shipped template (no marking), download the file and
        read it leniently: a bad report object becomes a MalformedReport."""
        content, file_name = self._export_file(filters)
        return parse_export(content, file_name=file_name, rule=self.accrual)

    def export_items(self, **filters: Unpack[ExportFilters]) -> Iterator[ExportItem]:
        """As export_reports, but the reports one at a time (see iter_export): the export
        runs, downloads and is checked before this returns; only parsing is left to the
        iteration.

        One report whose data stops the export template fails the whole job (FreeMarker
        renders all or nothing). Then the reports are isolated: the IDs the same filters
        select come from report_ids.ftl (which reads nothing but reportID), and halves of
        them are exported again by reportIDList until each failing export holds one report.
        That report comes back as a MalformedReport naming the export's error (held as
        `malformed:export-template:…`); every other report comes back as usual."""
        try:
            content, file_name = self._export_file(filters)
        except ServiceError as exc:
            if not is_template_error(exc):
                raise
            return self._isolate(filters, exc)
        return iter_export(content, file_name=file_name, rule=self.accrual)

    def export_reports_by_id(
        self,
        report_ids: Sequence[str],
        *,
        states: Sequence[str] = EXPORT_STATES,
        exclude_label: str | None = None,
    ) -> Iterator[ExportItem]:
        """export_items of exactly these reports (reportIDList)."""
        return self.export_items(report_ids=report_ids, states=states, exclude_label=exclude_label)

    def export_report_ids(self, **filters: Unpack[ExportFilters]) -> list[str]:
        """The IDs of the reports an export with these filters selects (report_ids.ftl: one
        job and one download, whatever the reports hold)."""
        input_settings = self._export_input(filters)
        name = self._run_export(
            input_settings, on_finish=None, template=default_template("report_ids.ftl")
        )
        content = self._download(name)
        try:
            ids = money.loads(content)
        except ValueError:
            ids = None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ProtocolError(SERVICE, f"the report ID export {name!r} is not a list of IDs")
        return _clean_ids([i for i in ids if "," not in i])

    def _isolate(self, filters: ExportFilters, failure: ServiceError) -> Iterator[ExportItem]:
        """The reports of a failed export, found by halves (see export_items). Raises the
        export's error when the IDs cannot be listed or the isolation needs more than
        MAX_ISOLATION_EXPORTS exports (nothing is lost: the cursor does not move)."""
        try:
            ids = self.export_report_ids(**filters)
        except ServiceError as exc:
            raise ServiceError(
                SERVICE,
                failure.status,
                failure.code,
                f"{failure.detail}; the reports could not be listed to find the one that "
                f"breaks it ({exc.detail})",
            ) from None
        log.warning(
            "expensify: the export template failed (%s); isolating the report(s) that break "
            "it among %d by exporting halves",
            failure.detail,
            len(ids),
        )
        budget = [MAX_ISOLATION_EXPORTS]
        items: list[ExportItem] = []
        if not self._resolve(ids, failure.detail, filters, budget, items, probed=False):
            # Every listed report exports cleanly, yet the whole export failed: the culprit
            # is one the IDs cannot name (no reportID). Held under a stand-in ID, not lost.
            what = "export-template-unidentified:" + " ".join(failure.detail.split())[:140]
            log.warning("expensify: a report without a usable reportID breaks the export")
            items.append(MalformedReport(reportID="", what=what))
        return iter(items)

    def _resolve(
        self,
        group: list[str],
        error: str | None,
        filters: ExportFilters,
        budget: list[int],
        out: list[ExportItem],
        *,
        probed: bool = True,
    ) -> bool:
        """Export `group` unless `error` says it fails already (`probed`: that exact group was
        exported; otherwise it is only inferred, and a single report is still exported on its
        own before it is held); on a template error split it in halves. Appends what it
        reads to `out`; True when the group held a culprit."""
        if not group:
            return False
        if error is None or (len(group) == 1 and not probed):
            if budget[0] <= 0:
                raise ServiceError(
                    SERVICE,
                    500,
                    "500",
                    f"the export template fails and {MAX_ISOLATION_EXPORTS} exports did not "
                    "isolate every report that breaks it; fix the reports named in the log, "
                    "or run again",
                )
            budget[0] -= 1
            try:
                content, file_name = self._export_file({**filters, "report_ids": group})
            except ServiceError as exc:
                if not is_template_error(exc):
                    raise
                error = exc.detail
            else:
                out.extend(iter_export(content, file_name=file_name, rule=self.accrual))
                return False
        if len(group) == 1:
            what = "export-template:" + " ".join(error.split())[:160]
            log.warning("expensify: report %s breaks the export template: %s", group[0], error)
            out.append(MalformedReport(reportID=group[0], what=what))
            return True
        half = len(group) // 2
        first, second = group[:half], group[half:]
        first_bad = self._resolve(first, None, filters, budget, out)
        # The whole group fails: with a clean first half, the culprit should be in the second
        # (split it without exporting it whole; a report is held only after failing alone).
        found = self._resolve(
            second, None if first_bad else error, filters, budget, out, probed=False
        )
        return first_bad or found

    def _export_file(self, filters: ExportFilters) -> tuple[bytes, str]:
        """Run an export with the shipped template (no marking) and download it: (bytes, name)."""
        file_name = self._run_export(self._export_input(filters), on_finish=None)
        return self._download(file_name), file_name

    def mark_exported(self, report_ids: Sequence[str], label: str) -> None:
        """Label exactly these reports as exported (an export of their IDs with onFinish
        markAsExported). Call only after the posts are recorded locally."""
        ids = _clean_ids(report_ids)
        if not ids:
            return
        if not label.strip():
            raise ValueError("the export label must not be empty")
        input_settings: dict[str, Any] = {
            "type": "combinedReportData",
            "filters": {"reportIDList": ",".join(ids)},
        }
        self._run_export(
            input_settings, on_finish=[{"actionName": "markAsExported", "label": label}]
        )

    def mark_reimbursed(self, report_ids: Sequence[str]) -> dict[str, Any]:
        """Set Approved reports to Reimbursed (report status updater). Returns the answer:
        `reportIDs` done (as strings: Expensify answers numbers), and where reports were
        skipped or failed `skippedReports`/`failedReports` (207; 200 when all were skipped)."""
        ids = _clean_ids(report_ids)
        if not ids:
            return {}
        job = {
            "type": "update",
            "inputSettings": {
                "type": "reportStatus",
                "status": "REIMBURSED",
                "filters": {"reportIDList": ",".join(ids)},
            },
        }
        response = self._call(job, what="the report status update")
        body = http.parse_json(response, service=SERVICE, what="the report status update")
        if not isinstance(body, dict):
            return {}
        done = body.get("reportIDs")
        if isinstance(done, list):  # report IDs are opaque strings here, whatever was sent
            body["reportIDs"] = [str(i) for i in done]
        return body

    def get_policies(self, policy_ids: Sequence[str]) -> dict[str, PolicyInfo]:
        """Categories, tags and employees of these policies, in one request."""
        ids = _clean_ids(policy_ids)
        if not ids:
            return {}
        # One request normally. A policy the user cannot see fails the whole request: real
        # clients record 410 (404 elsewhere), and the message need not name the policy. Then
        # each policy is asked alone, so the one missing becomes the engine's unknown-policy
        # hold instead of failing every report.
        try:
            return self._policy_info(ids)
        except ServiceError as exc:
            if not _is_missing_policy(exc):
                raise
            if len(ids) == 1:
                log.info("expensify does not know policy %s", ids[0])
                return {}
            log.info("expensify refused a policy of %s (%s); asking one at a time", ids, exc)
        result: dict[str, PolicyInfo] = {}
        for policy_id in ids:
            try:
                result.update(self._policy_info([policy_id]))
            except ServiceError as exc:
                if not _is_missing_policy(exc):
                    raise
                log.info("expensify does not know policy %s", policy_id)
        return result

    def _policy_info(self, ids: list[str]) -> dict[str, PolicyInfo]:
        job = {
            "type": "get",
            "inputSettings": {
                "type": "policy",
                "policyIDList": ids,
                "fields": ["categories", "tags", "employees"],
            },
        }
        body = self._get_json(job, what="the policy request")
        info = body.get("policyInfo")
        if not isinstance(info, dict):
            raise ProtocolError(SERVICE, "the policy answer has no policyInfo object")
        result: dict[str, PolicyInfo] = {}
        for policy_id, raw in info.items():
            if isinstance(raw, dict):
                result[str(policy_id)] = parse_policy(str(policy_id), raw)
        return result

    def list_policies(self) -> list[dict[str, Any]]:
        job = {"type": "get", "inputSettings": {"type": "policyList"}}
        body = self._get_json(job, what="the policy list")
        policies = body.get("policyList")
        if not isinstance(policies, list):
            raise ProtocolError(SERVICE, "the policy list answer has no policyList array")
        return [p for p in policies if isinstance(p, dict)]

    def approval_modes(self) -> dict[str, str]:
        """Each visible policy's approval mode from the policy list (`OPTIONAL` is Submit and
        Close, `BASIC` and `ADVANCED` approve; "" where the answer does not say)."""
        return {
            str(p.get("id")): str(p.get("approvalMode") or "")
            for p in self.list_policies()
            if p.get("id")
        }

    def check(self) -> None:
        """Proves the credentials work (one policyList request)."""
        self.list_policies()

    def run_job(
        self, job: dict[str, Any], *, template: str | None = None, what: str
    ) -> httpx.Response:
        """Send one job description (without credentials: they are added here), with a
        FreeMarker `template` for file jobs, through the limiter and the bounded retries every
        job gets. Returns the successful response; an error in the body raises as for any job
        (`what` names the job in that message)."""
        return self._call(job, what=what, template=template)

    def download(self, file_name: str) -> bytes:
        """The content of a file a job wrote on the Integration Server, polled (boundedly)
        until it is ready."""
        return self._download(file_name)

    def download_reconciliation(self, file_name: str) -> bytes:
        """A card reconciliation file: from the `reconciliation` file system, as real clients
        download it; where a tenant answers that it has no such file there, from
        `integrationServer` (the older way). The one that answered is kept in
        `reconciliation_file_system` (and tried first next time)."""
        systems = [self.reconciliation_file_system] + [
            fs
            for fs in (FILE_SYSTEM_RECONCILIATION, FILE_SYSTEM_EXPORT)
            if fs != self.reconciliation_file_system
        ]
        for attempt in range(1, DOWNLOAD_TRIES + 1):
            for system in systems:
                try:
                    content = self._download_once(file_name, system, "the reconciliation download")
                except _NotReady:
                    continue
                self.reconciliation_file_system = system
                return content
            if attempt < DOWNLOAD_TRIES:
                self.sleep(DOWNLOAD_PAUSE_S * attempt)
        raise Unreachable(
            SERVICE,
            f"the card reconciliation file {file_name} was not found on either file system "
            f"({', '.join(systems)}) after {DOWNLOAD_TRIES} tries",
        )

    # ------------------------------------------------------------------ internals
    def _export_input(self, selection: ExportFilters) -> dict[str, Any]:
        unknown = selection.keys() - ExportFilters.__optional_keys__
        if unknown:  # what a keyword parameter would refuse
            raise TypeError(f"unknown export filters: {', '.join(sorted(unknown))}")
        approved_after = selection.get("approved_after")
        start_date = selection.get("start_date")
        states = selection.get("states", EXPORT_STATES)
        exclude_label = selection.get("exclude_label")
        limit = selection.get("limit")
        filters: dict[str, Any] = {}
        ids = _clean_ids(selection.get("report_ids") or [])
        if ids:
            filters["reportIDList"] = ",".join(ids)
        if start_date is not None:
            filters["startDate"] = start_date.isoformat()
        if approved_after is not None:
            filters["approvedAfter"] = approved_after.isoformat()
        if not filters:
            raise ValueError("an export needs report_ids, start_date or approved_after")
        starts = [d for d in (start_date, approved_after) if d is not None]
        today = date.fromtimestamp(self.clock())
        if starts and (today - min(starts)).days > 365:
            # Current docs require endDate when the start is over a year back.
            filters["endDate"] = (today + timedelta(days=1)).isoformat()
        if exclude_label:
            filters["markedAsExported"] = exclude_label
        pids = _clean_ids(selection.get("policy_ids") or [])
        if pids:
            filters["policyIDList"] = ",".join(pids)
        settings: dict[str, Any] = {"type": "combinedReportData", "filters": filters}
        if states:
            settings["reportState"] = ",".join(s.strip().upper() for s in states)
        if limit is not None:
            if limit < 1:
                raise ValueError("limit must be at least 1")
            settings["limit"] = str(limit)
        return settings

    def _run_export(
        self,
        input_settings: dict[str, Any],
        *,
        on_finish: list[dict[str, Any]] | None,
        template: str | None = None,
    ) -> str:
        job: dict[str, Any] = {
            "type": "file",
            "onReceive": {"immediateResponse": ["returnRandomFileName"]},
            "inputSettings": input_settings,
            "outputSettings": {"fileExtension": "json", "fileBasename": "mlconsole"},
        }
        if on_finish:
            job["onFinish"] = on_finish
        response = self._call(
            job, template=template or self.template, what="the export job", file_name=True
        )
        return response.text.strip()

    def _download(self, file_name: str) -> bytes:
        for attempt in range(1, DOWNLOAD_TRIES + 1):
            try:
                return self._download_once(file_name, FILE_SYSTEM_EXPORT, "the export download")
            except _NotReady:
                if attempt == DOWNLOAD_TRIES:
                    break
                self.sleep(DOWNLOAD_PAUSE_S * attempt)
        raise Unreachable(
            SERVICE,
            f"the export file {file_name} was still not there after {DOWNLOAD_TRIES} downloads "
            "(Expensify answers 'File not found' for a file not written yet)",
        )

    def _download_once(self, file_name: str, file_system: str, what: str) -> bytes:
        job = {"type": "download", "fileName": file_name, "fileSystem": file_system}
        return self._call(job, what=what, not_ready_ok=True).content

    def _get_json(self, job: dict[str, Any], *, what: str) -> dict[str, Any]:
        response = self._call(job, what=what)
        try:
            body = http.parse_json(response, service=SERVICE, what=what)
        except ProtocolError:
            # A truncated answer (a connection cut mid-body by a proxy): this is a read, so
            # ask once more; a second bad body is the service's, and is reported.
            log.info("%s: the answer was not valid JSON; asking once more", what)
            response = self._call(job, what=what)
            body = http.parse_json(response, service=SERVICE, what=what)
        if not isinstance(body, dict):
            raise ProtocolError(SERVICE, f"answered {what} with JSON that is not an object")
        return body

    def _call(
        self,
        job: dict[str, Any],
        *,
        what: str,
        template: str | None = None,
        not_ready_ok: bool = False,
        file_name: bool = False,
    ) -> httpx.Response:
        """Send one job: limiter, bounded retries of transient failures and 429s, and one
        re-read of the credentials after a refusal. Returns a successful response (with
        `file_name`, one whose body is a file name: anything else, such as a JSON body cut by
        a proxy, is retried like a 5xx; a file job without onFinish only writes a file)."""
        creds = self._read_credentials()
        reread = False
        start = self.clock()
        seen_429 = [False]  # per call: a second 429 in a row waits out the long window
        for _ in range(2):  # the second pass only after rotated credentials
            policy = http.retry_policy(
                max_attempts=6,
                max_total_s=self.max_wait_s,
                initial_s=1.0,
                cap_s=30.0,
                clock=self.clock,
                sleep=self.sleep,
            )
            try:
                for attempt in policy:
                    with attempt:
                        response = self._send_once(
                            creds, job, template, what, start, seen_429, not_ready_ok=not_ready_ok
                        )
                        if file_name:
                            _check_file_name(response, what)
                        return response
            except http.TransientError as exc:
                raise Unreachable(SERVICE, f"{what}: {exc.message}") from None
            except _Refused as exc:
                if reread:
                    raise AuthError(SERVICE, str(exc)) from None
                reread = True
                fresh = self._read_credentials()
                if fresh == creds:
                    # Same credentials again: a second try would only be refused again and
                    # spend the request budget.
                    raise AuthError(SERVICE, str(exc)) from None
                log.info("expensify refused the credentials; retrying once with rotated ones")
                creds = fresh
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _read_credentials(self) -> ExpensifyCredentials:
        creds = self._credentials()
        if not creds.partner_user_id or not creds.partner_user_secret.get_secret_value():
            raise ConfigError(f"{SERVICE}: the partnerUserID or partnerUserSecret is empty")
        return creds

    def _send_once(
        self,
        creds: ExpensifyCredentials,
        job: dict[str, Any],
        template: str | None,
        what: str,
        start: float,
        seen_429: list[bool],
        *,
        not_ready_ok: bool,
    ) -> httpx.Response:
        limiter = self.limiter_for(creds.partner_user_id)
        remaining = self.max_wait_s - (self.clock() - start)
        stamp = limiter.acquire(deadline_s=max(0.0, remaining))
        description = dict(job)
        description["credentials"] = {
            "partnerUserID": creds.partner_user_id,
            "partnerUserSecret": creds.partner_user_secret.get_secret_value(),
        }
        form = {"requestJobDescription": json.dumps(description)}
        if template is not None:
            form["template"] = template
        with self._count_lock:
            self.requests_made += 1
        try:
            response = self._http.post(self.url, data=form)
        except httpx.HTTPError as exc:
            raise http.TransientError(http.transport_error_text(exc)) from None
        finally:
            limiter.settle(stamp)
        return self._check(response, what, limiter, seen_429, not_ready_ok=not_ready_ok)

    def _check(
        self,
        response: httpx.Response,
        what: str,
        limiter: SlidingWindowLimiter,
        seen_429: list[bool],
        *,
        not_ready_ok: bool,
    ) -> httpx.Response:
        status = response.status_code
        if http.looks_like_html(response):
            if status >= 500:
                # A gateway's error page (502/503/504 from a proxy): transient, like any 5xx.
                raise http.TransientError(http.describe_html(response, what))
            raise ProtocolError(SERVICE, http.describe_html(response, what))
        code, message = _error_in_body(response)
        if status == 429 or code == 429:
            retry_after = http.parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is None:
                retry_after = limiter.note_server_limit(repeated=seen_429[0])
            seen_429[0] = True
            raise http.TransientError(
                "still rate-limited (HTTP 429) after waiting", retry_after=retry_after
            )
        if status in _AUTH_CODES or (code is not None and _is_auth_failure(code, message)):
            raise _Refused(message or f"HTTP {status}")
        if status >= 500:
            raise http.TransientError(f"HTTP {status}" + (f": {message}" if message else ""))
        if code is not None and code in _TRANSIENT_BODY_CODES:
            raise http.TransientError(f"responseCode {code}: {message}")
        if not_ready_ok and (code is not None or status == 404) and _is_not_ready(message):
            raise _NotReady()
        if status >= 400 or code is not None:
            raise ServiceError(
                SERVICE, code or status, str(code or status), message or f"{what} failed"
            )
        return response


def _check_file_name(response: httpx.Response, what: str) -> None:
    """The export job answers a bare file name; anything else (a truncated JSON body, a page)
    is a broken answer, retried."""
    name = response.text.strip()
    if not name or len(name) > 255 or any(c in name for c in "<>{}\n\r\"' /\\"):
        raise http.TransientError(
            f"{what} did not answer with a file name "
            f"(HTTP {response.status_code}, {len(response.content)} bytes)"
        )


def is_template_error(exc: ServiceError) -> bool:
    """The export job failed on the template (on a report's data it stops at), not on the
    request (a 4xx: a missing parameter, a template the service refuses)."""
    text = exc.detail.lower()
    return (
        exc.service == SERVICE
        and not 400 <= exc.status < 500
        and any(word in text for word in TEMPLATE_ERROR_WORDS)
    )


def _error_in_body(response: httpx.Response) -> tuple[int | None, str]:
    """(responseCode, responseMessage) when the body is an error object, else (None, "")."""
    head = response.content[:1].strip() or response.content.lstrip()[:1]
    if head != b"{":
        if response.status_code >= 400:
            return None, _short_text(response)
        return None, ""
    try:
        body = money.loads(response.content)
    except ValueError:
        return None, ""
    if not isinstance(body, dict):
        return None, ""
    message = str(body.get("responseMessage") or "")[:300]
    if "responseCode" not in body:
        # Real clients record errors with no responseCode: `{"responseMessage": "File not
        # found"}`. An object of nothing but a message is an error, never data.
        if message and set(body) <= {"responseMessage", "httpCode"}:
            return (404 if "not found" in message.lower() else 400), message
        return None, ""
    try:
        code = int(body["responseCode"])
    except (TypeError, ValueError):
        return None, ""
    if 200 <= code < 300:  # 207: partial success, the body says what was skipped
        return None, ""
    return code, message


def _short_text(response: httpx.Response) -> str:
    text = response.content[:300].decode("utf-8", "replace")
    return " ".join(text.split())


def _is_auth_failure(code: int, message: str) -> bool:
    lowered = message.lower()
    return code in _AUTH_CODES or any(word in lowered for word in _AUTH_WORDS)


def _is_missing_policy(exc: ServiceError) -> bool:
    """A policy the credentials cannot see: 410 as real clients record it, or 404."""
    return exc.status in (404, 410) and "polic" in exc.detail.lower()


def _is_not_ready(message: str) -> bool:
    lowered = message.lower()
    return any(word in lowered for word in _NOT_READY_WORDS)


def _clean_ids(ids: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for raw in ids:
        value = str(raw).strip()
        if not value:
            continue
        if "," in value:
            raise ValueError(f"an ID must not contain a comma: {value!r}")
        seen.setdefault(value, None)
    return list(seen)


# ---------------------------------------------------------------------- reading the file
# JSON whitespace, as json.decoder skips it between values.
_JSON_WS = re.compile(r"[ \t\n\r]*")
# What str.strip() strips (Unicode whitespace).
_SPACE = re.compile(r"\s*")
# Bytes of the export decoded at a time when reading it (_ArrayReader).
READ_CHUNK = 1 << 20
# Characters a JSON number may still need after the window's end ("1.5e+" then "3").
_NUMBER_LOOKAHEAD = 8
# Numbers with a fraction or exponent as Decimal, as console.money.loads reads them.
_DECODER = json.JSONDecoder(parse_float=Decimal)

ExportItem = ExportReport | MalformedReport


def parse_export(
    content: bytes, *, file_name: str = "", rule: AccrualRule | None = None
) -> ExportResult:
    """Read the export file: a JSON array with one object per report. Each object that
    cannot be read becomes a MalformedReport (reportID "" when it has none to hold it by);
    a file that is not such an array raises."""
    reports: list[ExportReport] = []
    malformed: list[MalformedReport] = []
    for item in iter_export(content, file_name=file_name, rule=rule):
        if isinstance(item, ExportReport):
            reports.append(item)
        else:
            malformed.append(item)
    return ExportResult(reports=reports, malformed=malformed, file_name=file_name)


def iter_export(
    content: bytes, *, file_name: str = "", rule: AccrualRule | None = None
) -> Iterator[ExportItem]:
    """The export file's reports one at a time, so that a caller storing them as they come
    never holds the whole file as objects (at 10,000 reports that is hundreds of MB), nor as
    one string (see _ArrayReader).

    The file is read through once before this returns (a broken file raises here, before
    any report is handed out), then read again as the items are taken. The items are those
    of `parse_export`, interleaved in file order: an ExportReport for each readable report,
    a MalformedReport for each object that is not one. A report ID that occurs twice with
    different content is trusted in neither copy: neither is handed out as a report, and
    the differing copy comes as a `duplicate-reportID` MalformedReport. Each report's
    moment is read by `rule` (ExportReport.as_accrued; default: UTC, Expensify's approval).
    """
    try:
        ids = [_report_id(item) for item in _ArrayReader(content)]
    except _NotAnArray:
        raise _bad_file(content, file_name) from None
    first: dict[str, int] = {}  # report ID -> index of its first copy
    repeated: set[str] = set()
    for index, report_id in enumerate(ids):
        if report_id is not None and first.setdefault(report_id, index) != index:
            repeated.add(report_id)
    disagreeing: set[int] = set()  # copies that differ from their report's first copy
    if repeated:  # rare: one more read, keeping only the first copies of repeated IDs
        copies: dict[str, Any] = {}
        for index, item in enumerate(_ArrayReader(content)):
            report_id = ids[index]
            if report_id not in repeated:
                continue
            if first[report_id] == index:
                copies[report_id] = item
            elif item != copies[report_id]:
                disagreeing.add(index)
    bad = {ids[i] for i in disagreeing}
    return _export_items(content, ids, first, disagreeing, bad, rule or AccrualRule())


def _export_items(
    content: bytes,
    ids: list[str | None],
    first: dict[str, int],
    disagreeing: set[int],
    bad: set[str | None],
    rule: AccrualRule,
) -> Iterator[ExportItem]:
    for index, item in enumerate(_ArrayReader(content)):
        report_id = ids[index]
        # No position in the message: the same broken entry must give the same hold on every
        # poll, wherever it sits in the file.
        if not isinstance(item, dict):
            yield MalformedReport(
                reportID="",
                what="the export has an entry that is not a report object",
                raw={"entry": item},
            )
            continue
        if report_id is None:
            yield MalformedReport(
                reportID="", what="the export gives this report no usable reportID", raw=item
            )
            continue
        if first[report_id] != index:
            if index in disagreeing:
                yield MalformedReport(reportID=report_id, what="duplicate-reportID", raw=item)
            continue
        try:
            report = ExportReport.model_validate({**item, "reportID": report_id})
        except ValidationError as exc:
            yield MalformedReport(reportID=report_id, what=_describe_invalid(exc), raw=item)
            continue
        if report_id not in bad:  # a report whose duplicate disagreed is not trusted
            yield report.as_accrued(rule)


def _report_id(item: Any) -> str | None:
    """The report ID an export entry is held by, or None when it has none."""
    if not isinstance(item, dict):
        return None
    report_id = item.get("reportID")
    if isinstance(report_id, int) and not isinstance(report_id, bool):
        report_id = str(report_id)
    if not isinstance(report_id, str) or not report_id.strip():
        return None
    return report_id.strip()


class _NotAnArray(Exception):
    """The file is not one well-formed JSON array (_bad_file says what it is instead)."""


class _ArrayReader:
    """The elements of the JSON array that UTF-8 `content` holds (a BOM and surrounding
    whitespace allowed, as `json.loads(content.decode("utf-8-sig").strip())` reads it),
    parsed one at a time from a window of decoded text.

    Never the whole file as one str: a str of text with one character beyond Latin-1 takes
    2 bytes per character, with one emoji 4, so a 45 MB export decoded whole could take
    180 MB. An element cut by the end of the window is parsed again once more text is
    decoded (the window doubles while one element does not fit). Raises _NotAnArray where
    the text stops being such an array, possibly after elements were handed out."""

    def __init__(self, content: bytes) -> None:
        self._content = content
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")("replace")
        self._read = 0  # bytes of content decoded so far
        self._done = False  # every byte decoded and the decoder flushed
        self._text = ""  # the window
        self._at = 0  # where the next value starts in the window

    def _more(self, size: int) -> bool:
        """Decode up to `size` more bytes into the window, dropping what was read."""
        if self._done:
            return False
        chunk = self._content[self._read : self._read + size]
        self._read += len(chunk)
        self._done = self._read >= len(self._content)
        self._text = self._text[self._at :] + self._decoder.decode(chunk, self._done)
        self._at = 0
        return True

    def _skip(self, space: re.Pattern[str]) -> bool:
        """Step over whitespace; False at the end of the file."""
        while True:
            self._at = space.match(self._text, self._at).end()  # type: ignore[union-attr]
            if self._at < len(self._text):
                return True
            if not self._more(READ_CHUNK):
                return False

    def _value(self) -> Any:
        """The JSON value at the window's position, reading on while it may be cut short."""
        size = READ_CHUNK
        while True:
            try:
                value, end = _DECODER.raw_decode(self._text, self._at)
            except ValueError:
                end = -1
            # A number at the window's end may go on ("12" of "125", "1.5e" of "1.5e3").
            if end >= 0 and (self._done or len(self._text) - end > _NUMBER_LOOKAHEAD):
                self._at = end
                return value
            if not self._more(size):
                if end < 0:
                    raise _NotAnArray
                self._at = end
                return value
            size *= 2

    def __iter__(self) -> Iterator[Any]:
        if not self._skip(_SPACE) or self._text[self._at] != "[":
            raise _NotAnArray
        self._at += 1
        if not self._skip(_JSON_WS):
            raise _NotAnArray
        if self._text[self._at] == "]":
            self._at += 1
        else:
            while True:
                yield self._value()
                if not self._skip(_JSON_WS):
                    raise _NotAnArray
                mark = self._text[self._at]
                self._at += 1
                if mark == "]":
                    break
                if mark != "," or not self._skip(_JSON_WS):
                    raise _NotAnArray
        if self._skip(_SPACE):  # anything but whitespace after the array
            raise _NotAnArray


def _bad_file(content: bytes, file_name: str) -> ProtocolError:
    """What the export file is instead of a JSON array of reports (read whole: this is the
    error path)."""
    text = content.decode("utf-8-sig", "replace").strip()
    if text.startswith("<"):
        return ProtocolError(
            SERVICE, f"the export file {file_name!r} is an HTML page, not the JSON export"
        )
    try:
        data = money.loads(text)
    except ValueError as exc:
        reason = getattr(exc, "msg", type(exc).__name__)
        return ProtocolError(
            SERVICE,
            f"the export file {file_name!r} is not valid JSON ({reason}); check that "
            "console/expensify/export.ftl renders JSON",
        )
    if isinstance(data, dict) and "responseCode" in data:
        return ProtocolError(
            SERVICE,
            f"the download of {file_name!r} answered an error instead of the file: "
            f"{data.get('responseCode')} {str(data.get('responseMessage', ''))[:200]}",
        )
    if isinstance(data, list):  # pragma: no cover - _ArrayReader reads every JSON array
        return ProtocolError(SERVICE, f"the export file {file_name!r} could not be read")
    return ProtocolError(
        SERVICE,
        f"the export file {file_name!r} is JSON but not a list of reports "
        f"(got a {type(data).__name__})",
    )


def _describe_invalid(exc: ValidationError) -> str:
    first = exc.errors()[0]
    path = ".".join(str(p) for p in first.get("loc", ())) or "report"
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = exc.error_count() - 1
    suffix = f" (+{more} more)" if more > 0 else ""
    return f"{path}: {msg}{suffix}"[:200]


# ---------------------------------------------------------------------- policies
def parse_policy(policy_id: str, raw: dict[str, Any]) -> PolicyInfo:
    categories = [
        PolicyCategory.model_validate(c)
        for c in raw.get("categories") or []
        if isinstance(c, dict) and c.get("name")
    ]
    employees = [
        PolicyEmployee.model_validate(e)
        for e in raw.get("employees") or []
        if isinstance(e, dict) and e.get("email")
    ]
    return PolicyInfo(
        id=str(raw.get("id") or policy_id),
        name=str(raw.get("name") or ""),
        outputCurrency=str(raw.get("outputCurrency") or ""),
        categories=categories,
        tag_levels=parse_tag_levels(raw.get("tags")),
        employees=employees,
    )


def parse_tag_levels(tags: Any) -> list[PolicyTagLevel]:
    """Both shapes Expensify answers: a list of levels [{name, tags: [...]}], or a flat
    list of tags whose names join the levels with ':' ("Parent:Child"). A flat list has no
    level names; its levels are called "Tag", "Tag 2", ... (Expensify's default name)."""
    if isinstance(tags, dict):
        # {levelName: [tags]} or {levelName: {"tags": [tags]}}
        tags = [
            {"name": name, "tags": v.get("tags") if isinstance(v, dict) else v}
            for name, v in tags.items()
        ]
    if not isinstance(tags, list):
        return []
    levels: list[PolicyTagLevel] = []
    flat: list[dict[str, Any]] = []
    for item in tags:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("tags"), list):
            levels.append(
                PolicyTagLevel(
                    name=str(item.get("name") or f"Tag {len(levels) + 1}"),
                    tags=[
                        PolicyTag.model_validate(t)
                        for t in item["tags"]
                        if isinstance(t, dict) and t.get("name")
                    ],
                )
            )
        elif item.get("name"):
            flat.append(item)
    if flat:
        # The flat shape repeats a child under every parent ("A:Apollo", "B:Apollo"): one
        # tag per name and level, enabled when any of its paths is.
        by_depth: dict[int, dict[str, PolicyTag]] = {}
        for item in flat:
            parts = str(item["name"]).split(":")
            tag = PolicyTag.model_validate({**item, "name": parts[-1]})
            level = by_depth.setdefault(len(parts), {})
            known = level.get(tag.name)
            if known is None:
                level[tag.name] = tag
            elif tag.enabled and not known.enabled:
                level[tag.name] = known.model_copy(update={"enabled": True})
        for depth in sorted(by_depth):
            name = "Tag" if depth == 1 else f"Tag {depth}"
            levels.append(PolicyTagLevel(name=name, tags=list(by_depth[depth].values())))
    return levels
