"""Expensify Integration Server simulator (design.md §3, reference/expensify.md).

One endpoint, `POST /Integration-Server/ExpensifyIntegrations`, takes a form field
`requestJobDescription` (JSON; Expensify's parser also takes single quotes and trailing commas)
plus `template` / `data`, urlencoded or multipart. Jobs: `file` (report export rendered for the
project's export.ftl), `reconciliation` (company-card expenses rendered for the project's
reconciliation.ftl), `download`, `get` (policyList, policy) and `update` (reportStatus).
Job errors come back as HTTP 200 with `{"responseCode", "responseMessage"}` (a missing file,
as recorded, with no responseCode); only the rate limiter (and injected faults) use the HTTP
status. `/__sim/` routes inspect and steer it.
"""

from __future__ import annotations

import copy
import email.policy
import hmac
import itertools
import json
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Literal, cast
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from console import clock
from console.sim.dataset import (
    VALID_STATES,
    CardTransaction,
    Dataset,
    Policy,
    Report,
    Transaction,
    credential_change,
    validation_message,
)
from console.sim.export_render import (
    DISPLAY_STATUS,
    REPORT_IDS_TEMPLATE_PATH,
    TEMPLATE_PATH,
    OnError,
    RawReport,
    TemplateRenderError,
    export_model,
    field_table,
    render_export,
    render_fields,
    render_report_ids,
)
from console.sim.faults import FaultBook, RequestLog, SimMiddleware

ENDPOINT = "/Integration-Server/ExpensifyIntegrations"
RATE_LIMITED_MESSAGE = (
    "You have been rate-limited. Please try again later or contact help@expensify.com "
    "for assistance."
)
REPORT_STATES = ("OPEN", "SUBMITTED", "APPROVED", "REIMBURSED", "ARCHIVED")
POLICY_FIELDS = ("categories", "tags", "employees", "reportFields", "tax")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_BASENAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
RECONCILIATION_TEMPLATE_PATH = TEMPLATE_PATH.with_name("reconciliation.ftl")
# inputSettings.type of a reconciliation job: which card expenses. Real clients use these two;
# "Reported" is not confirmed (reference/expensify.md §0), so it is refused.
RECONCILIATION_TYPES = ("Unreported", "All")
ALL_FEEDS = "export_all_feeds"
# Generated files kept for download; the oldest go first, so a long benchmark stays bounded.
MAX_STORED_FILES = 256


class ExpensifySimSettings(BaseModel):
    """Behaviour switches; change them at runtime with `POST /__sim/settings`."""

    model_config = ConfigDict(extra="forbid")

    rate_limit: bool = True
    limit_10s: int = Field(default=5, ge=1)
    limit_60s: int = Field(default=20, ge=1)
    # responseCode (in an HTTP 200 body) for bad credentials; real clients see 401, 403 or 407.
    auth_error_code: int = 401
    # The first N download calls for a new file answer "not ready", as Expensify's own script
    # expected (it polled the download).
    download_not_ready: int = Field(default=0, ge=0)
    # When the export template stops on a value (a raw report's list where text belongs):
    # "fail" answers the file job with responseCode 500 naming the template error (the whole
    # export fails); "ignore" renders on as FreeMarker's IGNORE_HANDLER does. What the real
    # Integration Server does is undocumented.
    template_errors: Literal["fail", "ignore"] = "fail"
    # Which `fileSystem` serves a reconciliation job's file: "reconciliation", as three real
    # clients download it (observed); "integrationServer" for a tenant of the older way;
    # "either". Report export files are served on integrationServer only.
    reconciliation_file_system: Literal["reconciliation", "integrationServer", "either"] = (
        "reconciliation"
    )
    # How errors look. "recorded" (what real clients record): a policy the user cannot see
    # is 410 "Policy not found"; a missing file, and one not written yet (undocumented,
    # assumed the same), is `{"responseMessage": "File not found"}` with no responseCode.
    # "alternative": 404 naming the policy, 410 naming the file, 404 "not ready yet".
    error_shapes: Literal["recorded", "alternative"] = "recorded"

    @field_validator("auth_error_code")
    @classmethod
    def _error_code(cls, v: int) -> int:
        if not 400 <= v <= 599:
            raise ValueError("auth_error_code is an error code (400..599)")
        return v

    @classmethod
    def fast(cls) -> ExpensifySimSettings:
        """No rate limit: for tests and benchmarks."""
        return cls(rate_limit=False)


class JobError(Exception):
    """A job Expensify refuses: answered as `{"responseCode", "responseMessage"}`."""

    def __init__(self, code: int, message: str, http_status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


def _error_response(status: int, message: str) -> Response:
    return JSONResponse({"responseCode": status, "responseMessage": message}, status_code=status)


def _job_error(err: JobError) -> Response:
    return JSONResponse(
        {"responseCode": err.code, "responseMessage": err.message}, status_code=err.http_status
    )


class _FileMissing(Exception):
    """A download of a file the simulator does not serve (or not yet): answered in the
    configured error shape."""


class _StoredFile:
    def __init__(
        self, owner: str, content: bytes, not_ready_polls: int, *, reconciliation: bool = False
    ) -> None:
        self.owner = owner
        self.content = content
        self.not_ready_polls = not_ready_polls
        self.reconciliation = reconciliation


class ExpensifySim:
    """The simulator's state and its ASGI app. Thread-safe: uvicorn may serve it from another
    thread while tests read its state."""

    def __init__(
        self,
        dataset: Dataset,
        settings: ExpensifySimSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        world = dataset.expensify
        self.settings = settings or ExpensifySimSettings()
        self._clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        # partnerUserID -> partnerUserSecret; None once revoked (POST /__sim/credentials).
        self._secrets: dict[str, str | None] = {
            c.partnerUserID: c.partnerUserSecret for c in world.credentials
        }
        self._policies: dict[str, Policy] = {p.id: p.model_copy(deep=True) for p in world.policies}
        # Dataset reports, and raw ones (POST /__sim/reports with "raw": true) kept as given.
        self._reports: dict[str, Report | RawReport] = {
            r.reportID: r.model_copy(deep=True) for r in world.reports
        }
        self._raw_keys = itertools.count(1)
        self._files: dict[str, _StoredFile] = {}
        self._emails: list[dict[str, Any]] = []
        self._calls: dict[str, deque[float]] = {}
        self._template = _normalise_template(TEMPLATE_PATH.read_text(encoding="utf-8"))
        self._ids_template = _normalise_template(
            REPORT_IDS_TEMPLATE_PATH.read_text(encoding="utf-8")
        )
        self._reconciliation_template = _normalise_template(
            RECONCILIATION_TEMPLATE_PATH.read_text(encoding="utf-8")
        )
        self._card_transactions: list[CardTransaction] = [
            t.model_copy(deep=True) for t in world.cardTransactions
        ]
        self.faults = FaultBook(seed)
        self.requests = RequestLog()
        self.app = Starlette(
            routes=[
                Route(ENDPOINT, self._integrations, methods=["POST"]),
                Route("/__sim/requests", self._get_requests, methods=["GET"]),
                Route("/__sim/requests/reset", self._reset_requests, methods=["POST"]),
                Route("/__sim/faults", self._faults_route, methods=["GET", "POST", "DELETE"]),
                Route("/__sim/reports", self._reports_route, methods=["GET", "POST"]),
                Route("/__sim/emails", self._get_emails, methods=["GET"]),
                Route("/__sim/settings", self._settings_route, methods=["GET", "POST"]),
                Route("/__sim/credentials", self._credentials_route, methods=["GET", "POST"]),
            ],
            middleware=[
                Middleware(
                    SimMiddleware,
                    faults=self.faults,
                    log=self.requests,
                    error_response=_error_response,
                )
            ],
            exception_handlers={_BadBody: _bad_body},
        )

    # ------------------------------------------------------------ state accessors
    def report(self, report_id: str) -> Report:
        """A copy of the report as the simulator holds it now (KeyError if unknown or raw)."""
        with self._lock:
            report = self._reports[report_id]
            if isinstance(report, RawReport):
                raise KeyError(f"{report_id} is a raw report; see raw_report()")
            return report.model_copy(deep=True)

    def raw_report(self, key: str) -> dict[str, Any]:
        """A copy of a raw report as it was given (KeyError if unknown or not raw)."""
        with self._lock:
            report = self._reports[key]
            if not isinstance(report, RawReport):
                raise KeyError(f"{key} is not a raw report")
            return copy.deepcopy(report.raw)

    def labels(self, report_id: str) -> list[str]:
        """The export labels (markAsExported) on a report."""
        with self._lock:
            return list(self._reports[report_id].exportLabels)

    # ------------------------------------------------------------ the integration endpoint
    async def _integrations(self, request: Request) -> Response:
        try:
            form = _parse_form(request.headers.get("content-type", ""), await request.body())
            job = _job_description(form)
            partner = _partner_user_id(job)
            self._check_rate_limit(partner)
            self._authenticate(job, partner)
            return self._run(job, form, partner or "")
        except JobError as err:
            return _job_error(err)
        except _FileMissing:
            # As real clients record it: no responseCode (reference/expensify.md §0).
            return JSONResponse({"responseMessage": "File not found"})

    def _check_rate_limit(self, partner: str | None) -> None:
        settings = self.settings
        if not settings.rate_limit or partner is None:
            return
        now = self._clock()
        with self._lock:
            calls = self._calls.setdefault(partner, deque())
            while calls and calls[0] <= now - 60:
                calls.popleft()
            in_10s = sum(1 for t in calls if t > now - 10)
            limited = in_10s >= settings.limit_10s or len(calls) >= settings.limit_60s
            # Every job counts, refused ones included: hammering keeps a client limited.
            calls.append(now)
        if limited:
            raise JobError(429, RATE_LIMITED_MESSAGE, http_status=429)

    def _authenticate(self, job: dict[str, Any], partner: str | None) -> None:
        creds = job.get("credentials")
        secret = creds.get("partnerUserSecret") if isinstance(creds, dict) else None
        with self._lock:
            expected = self._secrets.get(partner) if partner is not None else None
        if (
            expected is None
            or not isinstance(secret, str)
            or not hmac.compare_digest(secret.encode(), expected.encode())
        ):
            raise JobError(self.settings.auth_error_code, "Authentication error")

    def _run(self, job: dict[str, Any], form: dict[str, str], partner: str) -> Response:
        kind = job.get("type")
        if kind == "file":
            return self._file_job(job, form.get("template"), partner)
        if kind == "reconciliation":
            return self._reconciliation_job(job, form.get("template"), partner)
        if kind == "download":
            return self._download_job(job, partner)
        if kind == "get":
            return self._get_job(job)
        if kind == "update":
            return self._update_job(job)
        raise JobError(410, "Argument 'type' is missing or malformed")

    # ------------------------------------------------------------ file (report export)
    def _file_job(self, job: dict[str, Any], template: str | None, partner: str) -> Response:
        on_receive = job.get("onReceive")
        if not isinstance(on_receive, dict) or on_receive.get("immediateResponse") != [
            "returnRandomFileName"
        ]:
            raise JobError(
                410,
                "Argument 'onReceive' is missing or malformed: "
                'expected {"immediateResponse":["returnRandomFileName"]}',
            )
        inp = _object(job, "inputSettings")
        if inp.get("type") != "combinedReportData":
            raise JobError(410, "Argument 'inputSettings.type' is missing or malformed")
        selection = _ExportSelection.parse(inp)
        out = _object(job, "outputSettings")
        ext = out.get("fileExtension")
        if not isinstance(ext, str) or not ext:
            raise JobError(410, "Required parameter 'outputSettings.fileExtension' is missing")
        if ext != "json":
            raise JobError(
                410, f"File extension '{ext}' is not rendered by the simulator (only json)"
            )
        basename = out.get("fileBasename", "export")
        if not isinstance(basename, str) or not _BASENAME_RE.fullmatch(basename):
            raise JobError(410, "Argument 'outputSettings.fileBasename' is malformed")
        if template is None:
            raise JobError(410, "Required parameter 'template' is missing")
        ids_only = _normalise_template(template) == self._ids_template
        if _normalise_template(template) != self._template and not ids_only:
            raise JobError(
                410,
                "The simulator renders only the project's report export templates "
                "(console/expensify/export.ftl, report_ids.ftl); this template differs from them",
            )
        actions = _on_finish_actions(job.get("onFinish"))
        test = job.get("test") in ("true", True)

        with self._lock:
            chosen = selection.select(self._reports.values(), self._policies)
            model = export_model(chosen, self._policies.values())
            try:
                ignore = self.settings.template_errors == "ignore"
                if ids_only:
                    content = render_report_ids(model).encode("utf-8")
                else:
                    mode: OnError = "ignore" if ignore else "rethrow"
                    content = render_export(model, mode).encode("utf-8")
            except TemplateRenderError as err:
                raise JobError(500, f"Error while processing the template: {err}") from None
            name = f"{basename}{uuid.UUID(int=self._rng.getrandbits(128), version=4)}.{ext}"
            self._files[name] = _StoredFile(partner, content, self.settings.download_not_ready)
            while len(self._files) > MAX_STORED_FILES:
                del self._files[next(iter(self._files))]
            if not test:
                self._finish(actions, chosen, name, partner)
        return PlainTextResponse(name)

    def _finish(
        self,
        actions: list[dict[str, Any]],
        chosen: list[Report | RawReport],
        name: str,
        partner: str,
    ) -> None:
        for action in actions:
            if action["actionName"] == "markAsExported":
                for r in chosen:
                    if action["label"] not in r.exportLabels:
                        r.exportLabels.append(action["label"])
            else:
                self._emails.append(
                    {
                        "partnerUserID": partner,
                        "recipients": action["recipients"],
                        "message": action.get("message", ""),
                        "filenames": [name],
                        "reportIDs": [r.reportID for r in chosen],
                    }
                )

    # ------------------------------------------------------------ reconciliation (cards)
    def _reconciliation_job(
        self, job: dict[str, Any], template: str | None, partner: str
    ) -> Response:
        """Company-card expenses of a domain posted in a date window, rendered for the project's
        reconciliation.ftl; answers `{"responseCode":200,"filename":…}` (download as usual)."""
        inp = _object(job, "inputSettings")
        kind = inp.get("type")
        if kind not in RECONCILIATION_TYPES:
            raise JobError(
                410,
                f"Argument 'inputSettings.type' is missing or malformed: use "
                f"{', '.join(RECONCILIATION_TYPES)}",
            )
        start = _date_filter(inp, "startDate")
        end = _date_filter(inp, "endDate")
        if start is None or end is None:
            raise JobError(410, "Required parameters 'startDate' and 'endDate' are missing")
        domain = inp.get("domain")
        if not isinstance(domain, str) or not domain.strip() or "@" in domain:
            raise JobError(410, "Required parameter 'domain' is missing or malformed")
        feed = inp.get("feed", ALL_FEEDS)
        if not isinstance(feed, str) or not feed:
            raise JobError(410, "Argument 'feed' is malformed")
        out = job.get("outputSettings") or {"fileExtension": "json"}
        ext = out.get("fileExtension") if isinstance(out, dict) else None
        if ext != "json":
            raise JobError(
                410, f"File extension '{ext}' is not rendered by the simulator (only json)"
            )
        if template is None:
            raise JobError(410, "Required parameter 'template' is missing")
        if _normalise_template(template) != self._reconciliation_template:
            raise JobError(
                410,
                "The simulator renders only the project's reconciliation template "
                "(console/expensify/reconciliation.ftl); this template differs from it",
            )
        with self._lock:
            cards = self._card_model(kind, start, end, domain.strip().lower(), feed)
            content = render_reconciliation({"cards": cards}).encode("utf-8")
            name = f"is_reconciliation_{self._rng.getrandbits(48)}.{ext}"
            self._files[name] = _StoredFile(
                partner, content, self.settings.download_not_ready, reconciliation=True
            )
            while len(self._files) > MAX_STORED_FILES:
                del self._files[next(iter(self._files))]
        return JSONResponse({"responseCode": 200, "responseMessage": "OK", "filename": name})

    def _card_model(
        self, kind: str, start: str, end: str, domain: str, feed: str
    ) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """The `cards` map (as (card, reports) pairs, since a card hash cannot be a dict key):
        each card's expenses grouped by report, unreported ones on the report with ID 0."""
        cards: dict[str, dict[str, Any]] = {}
        reports: dict[str, dict[int, dict[str, Any]]] = {}

        def wanted(owner: str, bank: str, posted: str) -> bool:
            return (
                owner.lower().endswith("@" + domain)
                and (feed == ALL_FEEDS or bank == feed)
                and start <= posted[:10] <= end
            )

        def add(card: dict[str, Any], report: dict[str, Any], expense: dict[str, Any]) -> None:
            cards.setdefault(card["ID"], card)
            by_report = reports.setdefault(card["ID"], {})
            by_report.setdefault(report["ID"], report)["transactionList"].append(expense)

        known = {t.cardID: t for t in self._card_transactions}
        if kind in ("Unreported", "All"):
            for t in self._card_transactions:
                if (t.reportID == 0 or kind == "All") and wanted(t.owner, t.bank, t.posted):
                    add(
                        _card_hash(t.cardID, t.cardName, t.bank, t.owner),
                        _report_zero(t),
                        _card_expense(t),
                    )
        if kind == "All":
            for r in self._reports.values():
                if isinstance(r, RawReport):
                    continue
                for line in r.transactionList:
                    if not line.cardID or not wanted(
                        r.accountEmail, _bank_of(known, line), line.created
                    ):
                        continue
                    card = known.get(line.cardID)
                    add(
                        _card_hash(
                            line.cardID,
                            card.cardName if card else "",
                            card.bank if card else "",
                            r.accountEmail,
                        ),
                        _reported_hash(r),
                        _reported_expense(r, line),
                    )
        return [
            (cards[cid], [reports[cid][rid] for rid in sorted(reports[cid])])
            for cid in sorted(cards)
        ]

    # ------------------------------------------------------------ download
    def _download_job(self, job: dict[str, Any], partner: str) -> Response:
        name = job.get("fileName")
        if not isinstance(name, str) or not name:
            raise JobError(410, "Required parameter 'fileName' is missing")
        system = job.get("fileSystem", "integrationServer")
        if system not in ("integrationServer", "reconciliation"):
            raise JobError(410, f"Argument 'fileSystem' is malformed: '{system}'")
        alternative = self.settings.error_shapes == "alternative"
        with self._lock:
            stored = self._files.get(name)
            if stored is None or stored.owner != partner or not self._serves(stored, system):
                if alternative:
                    raise JobError(410, f"File '{name}' was not found")
                raise _FileMissing()
            if stored.not_ready_polls > 0:
                stored.not_ready_polls -= 1
                if alternative:
                    raise JobError(404, f"File '{name}' is not ready yet; try again shortly")
                raise _FileMissing()
            content = stored.content
        return Response(content, media_type="application/json")

    def _serves(self, stored: _StoredFile, system: str) -> bool:
        if not stored.reconciliation:
            return system == "integrationServer"
        wanted = self.settings.reconciliation_file_system
        return wanted == "either" or system == wanted

    # ------------------------------------------------------------ get (policies)
    def _get_job(self, job: dict[str, Any]) -> Response:
        inp = _object(job, "inputSettings")
        kind = inp.get("type")
        with self._lock:
            if kind == "policyList":
                admin_only = inp.get("adminOnly") in (True, "true")
                rows = [
                    {
                        "id": p.id,
                        "name": p.name,
                        "type": p.type,
                        "role": p.role,
                        "owner": p.owner,
                        "outputCurrency": p.outputCurrency,
                        "approvalMode": p.approvalMode,
                    }
                    for p in self._policies.values()
                    if not admin_only or p.role == "admin"
                ]
                return JSONResponse({"responseCode": 200, "policyList": rows})
            if kind == "policy":
                return JSONResponse({"responseCode": 200, "policyInfo": self._policy_info(inp)})
        raise JobError(410, "Argument 'inputSettings.type' is missing or malformed")

    def _policy_info(self, inp: dict[str, Any]) -> dict[str, Any]:
        ids = inp.get("policyIDList")
        if ids is None:
            raise JobError(410, "Required parameter 'policyIDList' is missing")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise JobError(410, "'policyIDList' must be a JSON array of policy IDs")
        fields = inp.get("fields")
        if fields is None:
            raise JobError(410, "Required parameter 'fields' is missing")
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise JobError(410, "'fields' must be a JSON array")
        for f in fields:
            if f not in POLICY_FIELDS:
                raise JobError(410, f"Field '{f}' is not supported; use {', '.join(POLICY_FIELDS)}")
        info: dict[str, Any] = {}
        for pid in ids:
            policy = self._policies.get(pid)
            if policy is None:
                if self.settings.error_shapes == "alternative":
                    raise JobError(404, f"Policy '{pid}' not found or not shared with this user")
                raise JobError(410, "Policy not found")
            info[pid] = {f: _policy_field(policy, f) for f in fields}
        return info

    # ------------------------------------------------------------ update (report status)
    def _update_job(self, job: dict[str, Any]) -> Response:
        inp = _object(job, "inputSettings")
        if inp.get("type") != "reportStatus":
            raise JobError(
                410, f"Update type '{inp.get('type')}' is not supported by the simulator"
            )
        status = inp.get("status")
        if status != "REIMBURSED":
            raise JobError(410, f"Status '{status}' is not supported")
        filters = inp.get("filters")
        ids = filters.get("reportIDList") if isinstance(filters, dict) else None
        if not isinstance(ids, str) or not ids.strip():
            raise JobError(410, "Required parameter 'filters.reportIDList' is missing")
        # The as-of day, when one is set: the demo world lives on that day.
        now = clock.now().strftime("%Y-%m-%d %H:%M:%S")
        done: list[str] = []
        skipped: list[dict[str, str]] = []
        failed: list[dict[str, str]] = []
        with self._lock:
            for rid in _comma_list(ids):
                report = self._reports.get(rid)
                if report is None:
                    failed.append({"reportID": rid, "reason": "Report not found"})
                elif report.status != "APPROVED":
                    reason = f"Report is {report.status}; only Approved reports can be Reimbursed"
                    skipped.append({"reportID": rid, "reason": reason})
                else:
                    report.status = "REIMBURSED"
                    report.reimbursed = now
                    done.append(rid)
        # Real answers list numeric report IDs as JSON numbers (reference/expensify.md §0).
        ids_done: list[int | str] = [int(r) if r.isdigit() else r for r in done]
        if failed or (skipped and done):
            return JSONResponse(
                {
                    "responseCode": 207,
                    "reportIDs": ids_done,
                    "skippedReports": skipped,
                    "failedReports": failed,
                }
            )
        if skipped:
            # A run that skipped every report was observed answering 200, not 207.
            return JSONResponse({"responseCode": 200, "reportIDs": [], "skippedReports": skipped})
        return JSONResponse({"responseCode": 200, "reportIDs": ids_done})

    # ------------------------------------------------------------ control routes
    async def _get_requests(self, request: Request) -> Response:
        return JSONResponse(self.requests.snapshot())

    async def _reset_requests(self, request: Request) -> Response:
        self.requests.reset()
        return JSONResponse(self.requests.snapshot())

    async def _faults_route(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.faults.clear()
        elif request.method == "POST":
            body = await _json_body(request)
            try:
                self.faults.add_posted(body)
            except ValidationError as err:
                return _bad_request(validation_message(err, "fault", prefix="invalid "))
        return JSONResponse(self.faults.describe())

    async def _reports_route(self, request: Request) -> Response:
        if request.method == "GET":
            with self._lock:
                rows = [
                    {
                        "reportID": r.reportID,
                        "policyID": r.policyID,
                        "status": r.status,
                        "approved": r.approved,
                        "reimbursed": r.reimbursed,
                        "labels": list(r.exportLabels),
                        # Only raw reports say so: the dataset ones keep their row shape.
                        **({"raw": True} if isinstance(r, RawReport) else {}),
                    }
                    for r in self._reports.values()
                ]
            return JSONResponse(rows)
        body = await _json_body(request, "the body is one report object")
        clear = body.pop("clearLabels", False) is True
        if body.get("raw") is True:
            return self._post_raw_report(body, clear)
        try:
            report = Report.model_validate(body)
        except ValidationError as err:
            return _bad_request(validation_message(err, "report", prefix="invalid "))
        with self._lock:
            old = self._reports.get(report.reportID)
            _keep_labels(report, old, clear)
            # A replaced report keeps its place in the export order.
            self._reports[report.reportID] = report
            labels = list(report.exportLabels)
        return JSONResponse({"reportID": report.reportID, "created": old is None, "labels": labels})

    def _post_raw_report(self, body: dict[str, Any], clear: bool) -> Response:
        """`{"raw": true, "report": {...}}`: store the report exactly as given, mistyped or
        missing fields and all, for the template to render as it would a broken record. Only
        `status` must be a state the simulator can select on. A report without a usable
        reportID is stored under a generated key (`raw-N`), returned as `key`."""
        unknown = sorted(set(body) - {"raw", "report"})
        if unknown:
            return _bad_request(f"raw report: unknown key(s) {', '.join(unknown)}")
        raw = body.get("report")
        if not isinstance(raw, dict):
            return _bad_request('raw report: expected {"raw": true, "report": {...}}')
        status = raw.get("status", "APPROVED")
        if status not in VALID_STATES:
            return _bad_request(
                f"raw report: status must be one of {', '.join(VALID_STATES)} even in a raw "
                "report (the simulator selects on it)"
            )
        rid = raw.get("reportID")
        if isinstance(rid, int) and not isinstance(rid, bool):
            rid = str(rid)
        with self._lock:
            if isinstance(rid, str) and rid:
                key = rid
            else:
                key = f"raw-{next(self._raw_keys)}"
                while key in self._reports:
                    key = f"raw-{next(self._raw_keys)}"
            report = RawReport(copy.deepcopy(raw), key, status)
            old = self._reports.get(key)
            _keep_labels(report, old, clear)
            self._reports[key] = report
            labels = list(report.exportLabels)
        return JSONResponse(
            {
                "reportID": raw.get("reportID"),
                "key": key,
                "raw": True,
                "created": old is None,
                "labels": labels,
            }
        )

    async def _get_emails(self, request: Request) -> Response:
        with self._lock:
            return JSONResponse(copy.deepcopy(self._emails))

    async def _credentials_route(self, request: Request) -> Response:
        """Set, rotate or revoke a partnerUserID's secret (as regenerating it on
        expensify.com/tools/integrations would); GET lists the IDs. No answer holds a secret."""
        if request.method == "POST":
            body = await _json_body(request)
            try:
                partner, secret = credential_change(body, "partnerUserID", "partnerUserSecret")
            except ValueError as err:
                return _bad_request(str(err))
            with self._lock:
                known = partner in self._secrets
                if secret is None and not known:
                    return JSONResponse(
                        {"error": f"partnerUserID: unknown ID {partner!r}"}, status_code=404
                    )
                self._secrets[partner] = secret
            row: dict[str, Any] = {"partnerUserID": partner, "active": secret is not None}
            if secret is not None:
                row["created"] = not known
            return JSONResponse(row)
        with self._lock:
            rows = [
                {"partnerUserID": pid, "active": secret is not None}
                for pid, secret in self._secrets.items()
            ]
        return JSONResponse({"credentials": rows})

    async def _settings_route(self, request: Request) -> Response:
        if request.method == "POST":
            body = await _json_body(request, "the body is an object of settings to change")
            try:
                self.settings = ExpensifySimSettings.model_validate(
                    {**self.settings.model_dump(), **body}
                )
            except ValidationError as err:
                return _bad_request(validation_message(err, "settings", prefix="invalid "))
        return JSONResponse(self.settings.model_dump())


# ------------------------------------------------------------------ the reconciliation model
# The order of reconciliation.ftl.
CARD_FIELDS = field_table("cardID=ID cardName=name bank owner")
CARD_REPORT_FIELDS = field_table(
    "reportID=ID reportName=name status policyID submitterEmail currency"
)
CARD_EXPENSE_FIELDS = field_table("""
    transactionID=ID reportID cardID maskedPAN merchant=originalMerchant modifiedMerchant
    originalAmount:n modifiedAmount:n amountModified:b currency posted
    created=originalCreated modifiedCreated category tag comment externalID
    reimbursable:b billable:b
""")


def render_reconciliation(model: dict[str, Any]) -> str:
    """What FreeMarker writes for reconciliation.ftl with this model (`cards` as (card,
    reports) pairs, in map order)."""
    out: list[str] = ["["]
    cards = model.get("cards") or []
    for i, (card, reports) in enumerate(cards):
        out.append("{" + render_fields(card, CARD_FIELDS) + ',"reports":[')
        for j, report in enumerate(reports):
            out.append("{" + render_fields(report, CARD_REPORT_FIELDS) + ',"transactions":[')
            expenses = report.get("transactionList") or []
            out.append(
                ",".join("{" + render_fields(e, CARD_EXPENSE_FIELDS) + "}" for e in expenses)
            )
            out.append("]}" + ("," if j < len(reports) - 1 else ""))
        out.append("]}" + ("," if i < len(cards) - 1 else ""))
    out.append("]")
    return "".join(out)


def _card_hash(card_id: str, name: str, bank: str, owner: str) -> dict[str, Any]:
    return {"ID": card_id, "name": name, "bank": bank, "owner": owner}


def _report_zero(t: CardTransaction) -> dict[str, Any]:
    # Unreported expenses hang off a placeholder report with ID 0 (deleted ones keep theirs).
    return {"ID": t.reportID, "name": None, "status": None, "policyID": None,
            "submitterEmail": None, "currency": None, "transactionList": []}  # fmt: skip


def _card_expense(t: CardTransaction) -> dict[str, Any]:
    return {
        "ID": t.transactionID,
        "reportID": t.reportID,
        "cardID": t.cardID,
        "maskedPAN": t.maskedPAN,
        "originalMerchant": t.merchant,
        "modifiedMerchant": t.modifiedMerchant,
        "originalAmount": t.amount,
        # Reconciliation data says 0 for an amount that was not edited.
        "modifiedAmount": t.modifiedAmount or 0,
        "amountModified": t.modifiedAmount is not None,
        "currency": t.currency,
        "posted": t.posted,
        "originalCreated": t.created or t.posted,
        "modifiedCreated": t.modifiedCreated or t.created or t.posted,
        "category": t.category,
        "tag": t.tag,
        "comment": t.comment,
        "externalID": t.externalID,
        "reimbursable": t.reimbursable,
        "billable": t.billable,
    }


def _bank_of(known: dict[str, CardTransaction], line: Transaction) -> str:
    card = known.get(line.cardID or "")
    return card.bank if card else ""


def _reported_hash(r: Report) -> dict[str, Any]:
    return {
        "ID": int(r.reportID) if r.reportID.isdigit() else r.reportID,
        "name": r.reportName,
        "status": DISPLAY_STATUS.get(r.status, r.status.title()),
        "policyID": r.policyID,
        "submitterEmail": r.accountEmail,
        "currency": r.currency,
        "transactionList": [],
    }


def _reported_expense(r: Report, t: Transaction) -> dict[str, Any]:
    # The reconciliation data inverts the sign the report export uses.
    return {
        "ID": t.transactionID,
        "reportID": int(r.reportID) if r.reportID.isdigit() else r.reportID,
        "cardID": t.cardID,
        "maskedPAN": t.cardNumber,
        "originalMerchant": t.merchant,
        "modifiedMerchant": t.modifiedMerchant,
        "originalAmount": -t.amount,
        "modifiedAmount": -(t.modifiedAmount or 0),
        "amountModified": t.modifiedAmount is not None,
        "currency": t.currency,
        "posted": t.created,
        "originalCreated": t.created,
        "modifiedCreated": t.modifiedCreated or t.created,
        "category": t.category,
        "tag": t.tag,
        "comment": t.comment,
        "externalID": None,
        "reimbursable": t.reimbursable,
        "billable": t.billable,
    }


# ------------------------------------------------------------------ report selection
class _ExportSelection:
    """inputSettings of a combinedReportData export: which reports, how many."""

    def __init__(self) -> None:
        self.states: set[str] = set(REPORT_STATES)
        self.limit: int | None = None
        self.report_ids: set[str] | None = None
        self.policy_ids: set[str] | None = None
        self.start: str | None = None
        self.end: str | None = None
        self.approved_after: str | None = None
        self.not_marked: str | None = None
        self.employee: str | None = None

    @classmethod
    def parse(cls, inp: dict[str, Any]) -> _ExportSelection:
        sel = cls()
        states = inp.get("reportState")
        if states is not None:
            if not isinstance(states, str):
                raise JobError(410, "Argument 'reportState' is malformed")
            sel.states = set()
            for s in _comma_list(states):
                if s not in REPORT_STATES:
                    raise JobError(
                        410, f"Report state '{s}' is not supported; use {', '.join(REPORT_STATES)}"
                    )
                sel.states.add(s)
        limit = inp.get("limit")
        if limit is not None:
            # Expensify documents limit as a string holding an integer.
            if not isinstance(limit, str) or not limit.strip().isdigit() or int(limit) < 1:
                raise JobError(
                    410, "Argument 'limit' is malformed: a string holding a positive integer"
                )
            sel.limit = int(limit)
        employee = inp.get("employeeEmail")
        if employee is not None:
            if not isinstance(employee, str) or "@" not in employee:
                raise JobError(410, "Argument 'employeeEmail' is malformed")
            if "OPEN" in sel.states and states is not None:
                raise JobError(410, "OPEN reports cannot be exported with 'employeeEmail'")
            sel.employee = employee
            sel.states.discard("OPEN")
        filters = inp.get("filters", {})
        if not isinstance(filters, dict):
            raise JobError(410, "Argument 'filters' is malformed")
        if "reportIDList" in filters:
            sel.report_ids = set(_comma_list(_text(filters, "reportIDList")))
        if "policyIDList" in filters:
            sel.policy_ids = set(_comma_list(_text(filters, "policyIDList")))
        sel.start = _date_filter(filters, "startDate")
        sel.end = _date_filter(filters, "endDate")
        sel.approved_after = _date_filter(filters, "approvedAfter")
        if "markedAsExported" in filters:
            sel.not_marked = _text(filters, "markedAsExported")
        if sel.report_ids is None and sel.start is None and sel.approved_after is None:
            raise JobError(
                410, "One of the filters 'reportIDList', 'startDate' or 'approvedAfter' is required"
            )
        # Current docs: endDate is required once the start is more than a year back. "Today"
        # is the as-of day when one is set, so a test world does not age out.
        year_ago = (clock.today() - timedelta(days=365)).isoformat()
        starts = [d for d in (sel.start, sel.approved_after) if d is not None]
        if sel.end is None and starts and min(starts) < year_ago:
            raise JobError(410, "Required parameter 'endDate' is missing")
        return sel

    def select(
        self, reports: Iterable[Report | RawReport], policies: dict[str, Policy]
    ) -> list[Report | RawReport]:
        chosen = (r for r in reports if self._keeps(r, policies))
        return list(itertools.islice(chosen, self.limit))

    def _keeps(self, r: Report | RawReport, policies: dict[str, Policy]) -> bool:
        state = "OPEN" if r.status == "REJECTED" else r.status
        if state not in self.states:
            return False
        if self.report_ids is not None and r.reportID not in self.report_ids:
            return False
        if self.policy_ids is not None and r.policyID not in self.policy_ids:
            return False
        if self.employee is not None and not _visible_to(self.employee, r, policies):
            return False
        if self.start is not None or self.end is not None:
            # startDate/endDate test the later of the submitted and created dates, inclusive.
            day = max((d[:10] for d in (r.submitted, r.created) if d), default=None)
            if day is None:
                return False
            if self.start is not None and day < self.start:
                return False
            if self.end is not None and day > self.end:
                return False
        # approvedAfter drops reports approved before or ON that day; unapproved ones pass.
        if (
            self.approved_after is not None
            and r.approved
            and r.approved[:10] <= self.approved_after
        ):
            return False
        return not (self.not_marked is not None and self.not_marked in r.exportLabels)


def _visible_to(account: str, r: Report | RawReport, policies: dict[str, Policy]) -> bool:
    """Whether `account` (a file job's employeeEmail: "the reports will be exported from that
    account") sees the report: all of a policy it administers or owns; else the reports it
    submitted and those its policy's employee list has submitted to it."""
    me = account.strip().lower()
    submitter = r.accountEmail.strip().lower()
    if submitter == me:
        return True
    policy = policies.get(r.policyID)
    if policy is None:
        return False
    if policy.owner.strip().lower() == me:
        return True
    for e in policy.employees:
        email = e.email.strip().lower()
        if email == me and e.role.lower() == "admin":
            return True
        if email == submitter and e.submitsTo.strip().lower() == me:
            return True
    return False


def _date_filter(filters: dict[str, Any], key: str) -> str | None:
    if key not in filters:
        return None
    value = filters[key]
    text = value if isinstance(value, str) else json.dumps(value)
    try:
        if not _DATE_RE.fullmatch(text):
            raise ValueError
        date.fromisoformat(text)
    except ValueError:
        raise JobError(410, f"Malformed date '{text}'. Expected format is yyyy-MM-dd") from None
    return text


# ------------------------------------------------------------------ helpers
def _policy_field(policy: Policy, field: str) -> Any:
    extra = policy.model_extra or {}
    if field == "categories":
        return [
            {"name": c.name, "enabled": c.enabled, "glCode": c.glCode, "payrollCode": c.payrollCode}
            for c in policy.categories
        ]
    if field == "tags":
        if extra.get("tagShape") == "flat":
            return _flat_tags(policy)
        return [
            {
                "name": level.name,
                "tags": [
                    {"name": t.name, "enabled": t.enabled, "glCode": t.glCode} for t in level.tags
                ],
            }
            for level in policy.tags
        ]
    if field == "employees":
        rows = []
        for e in policy.employees:
            row = {"email": e.email, "role": e.role, "submitsTo": e.submitsTo}
            if e.employeeID:
                row["employeeID"] = e.employeeID
            rows.append(row)
        return rows
    if field == "reportFields":
        return [
            {"name": f.name, "type": f.type, "values": list(f.values)} for f in policy.reportFields
        ]
    return copy.deepcopy(extra.get("tax", {}))


def _flat_tags(policy: Policy) -> list[dict[str, Any]]:
    """The flat tag shape: one entry per path `Parent`, `Parent:Child`, … with the glCode of
    its last level, so every level's code stays readable."""
    rows: list[dict[str, Any]] = []
    paths: list[tuple[str, bool]] = [("", True)]
    for level in policy.tags:
        paths = [
            (f"{prefix}:{t.name}" if prefix else t.name, enabled and t.enabled)
            for prefix, enabled in paths
            for t in level.tags
        ]
        glcodes = {t.name: t.glCode for t in level.tags}
        rows.extend(
            {"name": p, "enabled": en, "glCode": glcodes[p.rsplit(":", 1)[-1]]} for p, en in paths
        )
    return rows


def _normalise_template(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).rstrip()


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise JobError(410, f"Argument '{key}' is malformed: expected a string")
    return value


def _object(job: dict[str, Any], key: str) -> dict[str, Any]:
    value = job.get(key)
    if value is None:
        raise JobError(410, f"Required parameter '{key}' is missing")
    if not isinstance(value, dict):
        raise JobError(410, f"Argument '{key}' is missing or malformed")
    return value


def _on_finish_actions(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    actions = raw if isinstance(raw, list) else [raw]
    for a in actions:
        name = a.get("actionName") if isinstance(a, dict) else None
        if name == "markAsExported":
            if not isinstance(a.get("label"), str) or not a["label"]:
                raise JobError(410, "Required parameter 'label' of markAsExported is missing")
        elif name == "email":
            if not isinstance(a.get("recipients"), str) or not a["recipients"].strip():
                raise JobError(410, "Required parameter 'recipients' of email is missing")
        elif name == "sftpUpload":
            raise JobError(410, "onFinish action 'sftpUpload' is not supported by the simulator")
        else:
            raise JobError(410, "Argument 'onFinish' is malformed: unknown actionName")
    return cast(list[dict[str, Any]], actions)


def _partner_user_id(job: dict[str, Any]) -> str | None:
    creds = job.get("credentials")
    partner = creds.get("partnerUserID") if isinstance(creds, dict) else None
    return partner if isinstance(partner, str) else None


def _parse_form(content_type: str, body: bytes) -> dict[str, str]:
    """The form fields of an urlencoded or multipart body (first value of each name)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
        msg = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        if not isinstance(msg, EmailMessage) or not msg.is_multipart():
            raise JobError(500, "Malformed multipart/form-data body")
        fields: dict[str, str] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str):
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
                fields.setdefault(
                    name, data.decode(part.get_content_charset() or "utf-8", "replace")
                )
        return fields
    if media in ("", "application/x-www-form-urlencoded"):
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise JobError(500, "The request body is not UTF-8") from None
        return {k: v[0] for k, v in parsed.items()}
    raise JobError(
        500, f"Unsupported content type '{media}': send a form (urlencoded or multipart)"
    )


def _job_description(form: dict[str, str]) -> dict[str, Any]:
    text = form.get("requestJobDescription")
    if text is None:
        raise JobError(500, "Required parameter 'requestJobDescription' is missing")
    try:
        job = json.loads(text)
    except json.JSONDecodeError as strict:
        try:
            job = json.loads(_lenient_to_strict(text))
        except (json.JSONDecodeError, ValueError):
            raise JobError(
                500,
                f"requestJobDescription is not valid JSON: {strict.msg} "
                f"at line {strict.lineno} column {strict.colno}",
            ) from None
    if not isinstance(job, dict):
        raise JobError(500, "requestJobDescription is not a JSON object")
    return job


def _lenient_to_strict(text: str) -> str:
    """Rewrite single-quoted strings and trailing commas (as Expensify's own script sent them)
    into strict JSON."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            quote, i = c, i + 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise ValueError("unterminated string")
                ch = text[i]
                if ch == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    buf.append(nxt if nxt == "'" else ch + nxt)
                    i += 2
                    continue
                i += 1
                if ch == quote:
                    break
                buf.append('\\"' if ch == '"' else ch)
            out.append('"' + "".join(buf) + '"')
            continue
        if c == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] in "}]":
                i += 1
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _keep_labels(report: Report | RawReport, old: Report | RawReport | None, clear: bool) -> None:
    """A report posted again keeps the export labels it had (its own added after), unless the
    request clears them."""
    if old is not None and not clear:
        report.exportLabels = old.exportLabels + [
            label for label in report.exportLabels if label not in old.exportLabels
        ]


class _BadBody(Exception):
    """A control request whose body is not the JSON it should be (answered 400)."""


async def _json_body(request: Request, not_object: str | None = None) -> Any:
    """The control body's JSON; with `not_object`, the error for one that is not an object."""
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _BadBody(f"the body is not JSON: {err}") from None
    if not_object is not None and not isinstance(body, dict):
        raise _BadBody(not_object)
    return body


async def _bad_body(request: Request, exc: Exception) -> Response:
    return _bad_request(str(exc))


def _bad_request(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=400)
