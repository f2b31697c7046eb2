"""The engine facade: what the TUI and `--auto` both call, and nothing else.

One cycle is fetch → evaluate (map + validate against ONE read of IFS's reference data) →
plan → post (under the posting lock) → label. Every step leaves audit events; a dry run
writes nothing to IFS or Expensify, moves no cursor, and is recorded as a dry-run event.

Thread-safety: the TUI calls these methods from worker threads; the store serialises access
to SQLite and the clients are thread-safe, but one Engine runs one cycle at a time (a cycle
lock inside, on top of the cross-process posting lock).
"""

from __future__ import annotations

import contextlib
import gc
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from console import clock, reversal, views
from console.audit import AuditLog, Event, os_user
from console.config import default_approved_after
from console.errors import ConfigError, ConsoleError
from console.expensify.models import AccrualRule, ExportReport, MalformedReport, PolicyInfo
from console.fetch import FetchOutcome, fetch, load_report
from console.ifs.models import AccountingPeriod, CodePartValue, CurrencyRate
from console.ledger import Ledger
from console.mapping import Hold, MappingOverrides, MappingRule, map_report
from console.plan import Plan, PlanBuilder, build_plan
from console.post import PostOutcome, PostProgress, label_posted, post_plan
from console.store import (
    APPROVAL_MODES,
    RECONCILIATION_FILE_SYSTEM,
    DimensionRow,
    EvaluationRecord,
    HoldRecord,
    PostingLock,
    RunRow,
    Store,
    iso,
    utc_now,
)
from console.validate import IfsReference, ValidatedReport, validate, validate_malformed

if TYPE_CHECKING:
    from console.config import Settings
    from console.expensify.client import ExpensifyClient
    from console.ifs.client import IfsClient
    from console.secrets import SecretStore

__all__ = [
    "CycleSummary",
    "Engine",
    "EngineStatus",
    "FetchOutcome",
    "PostOutcome",
    "PostProgress",
    "ReportEvaluation",
    "ServiceState",
    "ValueCheck",
]

EVALUATED_STATUSES = ("pending", "held", "ready")
# Expensify's approval mode of a Submit-and-Close workspace (reports close on submission).
SUBMIT_AND_CLOSE = "OPTIONAL"
LOCK_WAIT_S = 10.0


@dataclass(frozen=True)
class ReportEvaluation:
    """One report after map + validate: ready to post, or held with its reasons."""

    report_id: str
    status: str  # ready | held
    holds: list[Hold]
    company: str
    validated: ValidatedReport

    @property
    def reason(self) -> str:
        return self.holds[0].code if self.holds else ""


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What the store and the audit log keep of one report's evaluation."""

    report_id: str
    company: str
    holds: tuple[Hold, ...]

    @property
    def reason(self) -> str:
        return self.holds[0].code if self.holds else ""


@dataclass(frozen=True)
class ValueCheck:
    """A live look at one IFS code part value (the mapping editor asks before saving)."""

    company: str
    code_part: str
    value: str
    exists: bool
    description: str = ""
    valid_from: date | None = None
    valid_until: date | None = None
    valid_on: dict[date, bool] = field(default_factory=dict)
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.exists and all(self.valid_on.values())


@dataclass(frozen=True)
class ServiceState:
    state: str  # ok | error | unknown
    message: str = ""


# Objects a cycle allocates before the young generation is collected. A cycle holds every
# report it evaluates and plans, so with the default (700) the collector walked that growing
# heap in full again and again (8 full collections at 5,000 reports) and its cost grew faster
# than the reports; at this size the young collections are fewer and a 5,000-report dry run
# needs no full collection.
CYCLE_GC_THRESHOLD = 10_000


@contextlib.contextmanager
def _paced_collector() -> Iterator[None]:
    """Raise the collector's young-generation threshold for one cycle, then restore it."""
    saved = gc.get_threshold()
    gc.set_threshold(max(saved[0], CYCLE_GC_THRESHOLD), *saved[1:])
    try:
        yield
    finally:
        gc.set_threshold(*saved)


@dataclass(frozen=True)
class EngineStatus:
    environment: str
    services: dict[str, ServiceState]
    ifs_token_refresh_s: float | None
    rate_budget_in_use: float  # 0..1 of the IFS per-minute budget
    last_run: RunRow | None
    counts: dict[str, int]
    actor: str
    as_of: str | None = None  # the as-of date the engine works on, when one is set


@dataclass
class CycleSummary:
    """The outcome of one cycle; `to_json()` is the `--json` object of design.md §2."""

    dry_run: bool = False
    fetched: int = 0
    posted: int = 0
    already_posted: int = 0
    held: int = 0
    failed: int = 0
    unchanged: int = 0
    excluded: int = 0
    held_reports: list[dict[str, str]] = field(default_factory=list)
    failed_reports: list[dict[str, str]] = field(default_factory=list)
    vouchers: list[dict[str, str]] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=lambda: {"expensify": 0, "ifs": 0})
    planned: int = 0
    unknown: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    started: str = ""
    finished: str = ""
    run_id: int | None = None
    plan: Plan | None = None
    # console/reversal.py: reversals posted this cycle, vouchers moved out of a closed period
    reversals: list[dict[str, str]] = field(default_factory=list)
    moved: list[dict[str, str]] = field(default_factory=list)
    as_of: str | None = None  # the as-of date the run worked on, when one was set

    @property
    def needs_attention(self) -> bool:
        return bool(self.held or self.failed or self.unknown)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dry_run": self.dry_run,
            "fetched": self.fetched,
            "posted": self.posted,
            "already_posted": self.already_posted,
            "held": self.held,
            "failed": self.failed,
            "unchanged": self.unchanged,
            "excluded": self.excluded,
            "planned": self.planned,
            "held_reports": self.held_reports,
            "failed_reports": self.failed_reports,
            "unknown_outcome": self.unknown,
            "vouchers": self.vouchers,
            "reversals": self.reversals,
            "moved": self.moved,
            "requests": dict(self.requests),
            "warnings": self.warnings,
            "started": self.started,
            "finished": self.finished,
        }
        if self.as_of:
            out["as_of"] = self.as_of
        if self.dry_run and self.plan is not None:
            out["plan"] = self.plan.to_json()
        return out


class Engine:
    """The sync core behind one store, one keyring and the configured services."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        secrets: SecretStore | None,
        *,
        actor: str,
        clock: Callable[[], datetime] = utc_now,
        expensify: ExpensifyClient | None = None,
        ifs: IfsClient | None = None,
        lock_wait_s: float = LOCK_WAIT_S,
    ) -> None:
        self.settings = settings
        self.store = store
        self.secrets = secrets
        self.actor = actor
        self.clock = clock
        self.audit = AuditLog(store, actor)
        self.lock = PostingLock(str(store.path) + ".lock", actor, wait_s=lock_wait_s)
        self._expensify = expensify
        self._ifs = ifs
        self._cycle_lock = threading.RLock()
        self._policies: dict[str, PolicyInfo] | None = None
        self._reference: IfsReference | None = None
        self._modes_read: tuple[str, dict[str, str]] | None = None
        self._service_state: dict[str, ServiceState] = {
            "expensify": ServiceState("unknown"),
            "ifs": ServiceState("unknown"),
        }

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(cls, *, actor: str | None = None, lock_wait_s: float | None = None) -> Engine:
        """From the configured paths (--home / ML_CONSOLE_HOME) and the OS keyring."""
        from console.config import load_settings
        from console.secrets import SecretStore

        loaded = load_settings()
        loaded.paths.ensure_dirs()
        settings = loaded.settings
        who = actor or settings.operator.name or os_user()
        store = Store(loaded.paths.state_file)
        try:
            secrets = SecretStore()
        except BaseException:
            store.close()
            raise
        return cls(
            settings,
            store,
            secrets,
            actor=who,
            lock_wait_s=LOCK_WAIT_S if lock_wait_s is None else lock_wait_s,
        )

    def today(self) -> date:
        """The day the engine works on: the as-of date when one is set, else the clock's date.
        Due reversals, the default close period and the first poll's start follow it."""
        try:
            return clock.today(self.clock)
        except clock.AsOfError as exc:
            raise ConfigError(str(exc)) from None

    @staticmethod
    def as_of_text() -> str | None:
        """The as-of date when one is set (ISO), for run records and the header."""
        try:
            day = clock.as_of()
        except clock.AsOfError as exc:
            raise ConfigError(str(exc)) from None
        return day.isoformat() if day else None

    def _secrets(self) -> SecretStore:
        if self.secrets is None:
            raise ConfigError("this command was opened without the keyring")
        return self.secrets

    @property
    def expensify(self) -> ExpensifyClient:
        if self._expensify is None:
            from console.expensify.client import ExpensifyClient

            cfg = self.settings.expensify
            self._expensify = ExpensifyClient(
                cfg.url,
                self._secrets().expensify_source,
                window=self.store,
                limit_10s=cfg.limit_10s,
                limit_60s=cfg.limit_60s,
                timeout_s=cfg.timeout_s,
                max_wait_s=cfg.max_wait_s,
                accrual=AccrualRule(
                    cfg.timezone, cfg.approval_date, self.settings.posting.voucher_date
                ),
            )
            learned = self.store.cursor(RECONCILIATION_FILE_SYSTEM)
            if learned:
                self._expensify.reconciliation_file_system = learned
        return self._expensify

    def note_reconciliation_file_system(self) -> None:
        """Keep the file system that served the last card reconciliation file (`info` shows
        it; the next run tries it first)."""
        if self._expensify is not None:
            used = self._expensify.reconciliation_file_system
            if self.store.cursor(RECONCILIATION_FILE_SYSTEM) != used:
                self.store.set_cursor(used, RECONCILIATION_FILE_SYSTEM)

    @property
    def ifs(self) -> IfsClient:
        if self._ifs is None:
            from console.ifs.client import IfsClient, IfsEntitySets

            cfg = self.settings.ifs
            self._ifs = IfsClient(
                cfg.url,
                cfg.realm,
                self._secrets().ifs_source,
                page_size=cfg.page_size,
                requests_per_minute=cfg.requests_per_minute,
                concurrency=cfg.concurrency,
                timeout_s=cfg.timeout_s,
                scope=cfg.scope,
                entity_sets=IfsEntitySets(**cfg.entity_sets.model_dump()),
                # Not in every config yet: counting each $batch part is the safe default.
                batch_counts_parts=cfg.batch_counts_parts,
            )
        return self._ifs

    def ledger(self) -> Ledger:
        """The posting ledger on this engine's store, audit log and IFS client."""
        return Ledger(self.store, self.audit, self.ifs)

    def close(self) -> None:
        for client in (self._expensify, self._ifs):
            if client is not None:
                client.close()
        self.lock.release()
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ stages
    def _policy_ids(self) -> list[str]:
        return list(self.settings.expensify.policies or self.settings.posting.company_by_policy)

    def track(self, service: str, call: Callable[[], Any]) -> Any:
        """Run a service call, remembering the service's connection state for status()."""
        try:
            result = call()
        except ConsoleError as exc:
            if getattr(exc, "service", service) == service:
                self._service_state[service] = ServiceState("error", str(exc))
            raise
        self._service_state[service] = ServiceState("ok")
        return result

    def fetch(self, *, dry_run: bool = False) -> FetchOutcome:
        """Poll Expensify once (approvedAfter overlapping the last poll by a day, APPROVED and
        REIMBURSED, excluding our export label; one policy read) and store what came back."""
        with self._cycle_lock:
            cfg = self.settings.expensify
            configured = self._policy_ids()
            modes = self.approval_modes(keep=not dry_run) if configured else {}
            # A policy the credentials do not see is neither asked for nor exported (it would
            # fail the policy read); each cycle's warnings name it instead.
            ids = [p for p in configured if not modes or p in modes]
            closed = [p for p in ids if modes.get(p) == SUBMIT_AND_CLOSE]
            outcome: FetchOutcome = self.track(
                "expensify",
                lambda: fetch(
                    self.expensify,
                    self.store,
                    self.audit,
                    configured_start=cfg.approved_after or default_approved_after(self.today()),
                    export_label=cfg.export_label,
                    policy_ids=ids,
                    now=clock.now(self.clock),
                    dry_run=dry_run,
                    closed_policy_ids=closed,
                ),
            )
            outcome.unseen_policies = [p for p in configured if p not in ids]
            self._policies = outcome.policies
            return outcome

    def approval_modes(self, *, keep: bool = True) -> dict[str, str]:
        """Each policy the credentials see, with its approval mode (`OPTIONAL`: Submit and
        Close). Read from Expensify's policy list once a day (one request), kept in the
        store in between: modes rarely change, and the cycle's budget is 4 requests. A dry
        run (`keep=False`) writes nothing to the store: it reads the list when none is kept."""
        today = self.today().isoformat()
        cached = self._cached_modes()
        if cached is not None and cached[0] == today:
            return cached[1]
        modes: dict[str, str] = self.track("expensify", self.expensify.approval_modes)
        self._modes_read = (today, modes)
        if keep:
            self.store.set_cursor(json.dumps({"day": today, "modes": modes}), APPROVAL_MODES)
        return modes

    def _cached_modes(self) -> tuple[str, dict[str, str]] | None:
        """The last policy list read: by this engine (a dry run keeps it only here), else
        the one kept in the store."""
        if self._modes_read is not None:
            return self._modes_read
        raw = self.store.cursor(APPROVAL_MODES)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return (str(data["day"]), {str(k): str(v) for k, v in data["modes"].items()})
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def policy_sync_states(self) -> dict[str, str]:
        """How each configured policy is synced, from the last policy list read (no request):
        `approved` (approved and reimbursed reports, by approval), `closed` (Submit and
        Close: closed reports, by submission), `not visible` or `not read yet`."""
        cached = self._cached_modes()
        return {
            pid: (
                "not read yet"
                if cached is None
                else "not visible"
                if pid not in cached[1]
                else "closed"
                if cached[1][pid] == SUBMIT_AND_CLOSE
                else "approved"
            )
            for pid in self._policy_ids()
        }

    def policies(self) -> dict[str, PolicyInfo]:
        """The configured Expensify policies, read once per engine (one `get` request)."""
        if self._policies is None:
            ids = self._policy_ids()
            self._policies = (
                self.track("expensify", lambda: self.expensify.get_policies(ids)) if ids else {}
            )
        return self._policies

    def _company_currencies(
        self, policies: dict[str, PolicyInfo], rates: Sequence[CurrencyRate]
    ) -> dict[str, str]:
        """Each configured company's accounting currency. IFS's API as configured does not
        serve it, so: the config table posting.currency_by_company wins; otherwise, of the
        currencies of the mapped policies (their output
        currency and the currencies of their reports), the one IFS quotes no exchange rate for
        (IFS quotes rates against the accounting currency); failing that, the first mapped
        policy's output currency."""
        explicit = self.settings.posting.currency_by_company
        quoted: dict[str, set[str]] = {}
        for r in rates:
            if r.CurrencyRate != 1:
                quoted.setdefault(r.Company, set()).add(r.CurrencyCode)
        candidates: dict[str, list[str]] = {}
        seen = self.store.currencies_by_policy()
        for policy_id, company in self.settings.posting.company_by_policy.items():
            policy = policies.get(policy_id)
            options = candidates.setdefault(company, [])
            if policy is not None and policy.outputCurrency:
                options.append(policy.outputCurrency)
            options.extend(sorted(seen.get(policy_id, set()) - set(options)))
        out: dict[str, str] = {}
        for company in set(self.settings.posting.company_by_policy.values()):
            if company in explicit:
                out[company] = explicit[company]
                continue
            options = candidates.get(company, [])
            unquoted = [c for c in options if c not in quoted.get(company, set())]
            if unquoted:
                out[company] = unquoted[0]
            elif options:
                out[company] = options[0]
        return out

    def reference(self, *, refresh: bool = False) -> IfsReference:
        """IFS's reference data (code part values, periods, rates) for every configured
        company: read once per cycle (paged), cached in the store's dimension table."""
        with self._cycle_lock:
            if self._reference is not None and not refresh:
                return self._reference
            policies = self.policies()
            values: list[CodePartValue] = []
            periods: list[AccountingPeriod] = []
            rates: list[CurrencyRate] = []
            fetched_at = self.store.now()
            for company in sorted(set(self.settings.posting.company_by_policy.values())):
                company_values, company_periods, company_rates = self.track(
                    "ifs", partial(self._read_company, company)
                )
                values.extend(company_values)
                periods.extend(company_periods)
                rates.extend(company_rates)
                self.store.replace_dimensions(
                    company,
                    (
                        DimensionRow(
                            company=company,
                            code_part=v.CodePart,
                            value=v.CodePartValue,
                            description=v.Description,
                            valid_from=v.ValidFrom.isoformat(),
                            valid_until=v.ValidUntil.isoformat(),
                            fetched_at=fetched_at,
                        )
                        for v in company_values
                    ),
                )
            currencies = self._company_currencies(policies, rates)
            self._reference = IfsReference.build(currencies, values, periods, rates)
            return self._reference

    def _read_company(
        self, company: str
    ) -> tuple[list[CodePartValue], list[AccountingPeriod], list[CurrencyRate]]:
        ifs = self.ifs
        return ifs.code_part_values(company), ifs.periods(company), ifs.currency_rates(company)

    def _overrides(self) -> MappingOverrides:
        return MappingOverrides.from_store_rows(self.store.mapping_rules())

    def evaluate(
        self, report_ids: Sequence[str] | None = None, *, include_failed: bool = False
    ) -> list[ReportEvaluation]:
        """Map and validate pending, ready and held reports (or just `report_ids`) against one
        IfsReference read; update the hold queue (first_held kept) and statuses."""
        with self._cycle_lock:
            evaluations: list[ReportEvaluation] = []
            self._evaluate(report_ids, include_failed, evaluations.append)
            return evaluations

    def _evaluate(
        self,
        report_ids: Sequence[str] | None,
        include_failed: bool,
        take: Callable[[ReportEvaluation], None],
    ) -> None:
        """evaluate(), handing each report's evaluation to `take` as it is made instead of
        returning them all: a caller keeping only what it needs (the cycle keeps the
        voucher) never holds every report's models at once. The store and the audit log
        are updated after the last report, as evaluate() does."""
        statuses = EVALUATED_STATUSES + (("failed",) if include_failed else ())
        keys = self.store.report_keys(statuses, report_ids)
        if not keys:
            return
        policies = self.policies()
        ref = self.reference()
        overrides = self._overrides()
        posting = self.settings.posting
        verdicts: list[_Verdict] = []
        previous = dict(keys)
        # Raw JSON text a batch at a time, parsed one report at a time.
        for rid, _status, raw_text in self.store.iter_reports_raw_text(statuses, keys=keys):
            raw = json.loads(raw_text)
            try:
                loaded: ExportReport | MalformedReport = load_report(raw)
            except ValueError as exc:  # pydantic ValidationError is a ValueError
                loaded = MalformedReport(reportID=rid, what="unreadable", raw={})
                del exc
            if isinstance(loaded, MalformedReport):
                validated = validate_malformed(loaded)
                company = ""
            else:
                mapped = map_report(loaded, policies, posting, overrides)
                validated = validate(mapped, ref, posting)
                company = mapped.company or ""
            holds = list(validated.holds)
            take(
                ReportEvaluation(
                    report_id=rid,
                    status="held" if holds else "ready",
                    holds=holds,
                    company=company,
                    validated=validated,
                )
            )
            verdicts.append(_Verdict(rid, company, tuple(holds)))
        self._record_verdicts(verdicts, previous)

    def _record_verdicts(self, verdicts: Sequence[_Verdict], previous: dict[str, str]) -> None:
        """Statuses and the hold queue in the store, with the mapped, held and released
        events, in one transaction."""
        with self.store.transaction():
            before = {h.report_id: h.code for h in self.store.holds(list(previous))}
            changes = self.store.apply_evaluations(
                EvaluationRecord(
                    v.report_id, v.company, tuple(HoldRecord(h.code, h.message) for h in v.holds)
                )
                for v in verdicts
            )
            newly = set(changes["newly_held"])

            def events() -> Iterator[Event]:
                for ev in verdicts:
                    if previous.get(ev.report_id) == "pending":
                        yield Event(
                            type="mapped",
                            report_id=ev.report_id,
                            summary=(
                                f"mapped to company {ev.company or '?'}: "
                                + (f"held ({ev.reason})" if ev.holds else "ready to post")
                            ),
                        )
                    if ev.holds and (
                        ev.report_id in newly or before.get(ev.report_id) != ev.reason
                    ):
                        yield Event(
                            type="held",
                            report_id=ev.report_id,
                            summary=ev.holds[0].message,
                            data={"codes": [h.code for h in ev.holds]},
                        )
                for rid in changes["released"]:
                    yield Event(
                        type="released",
                        report_id=rid,
                        summary="every hold cleared: the report can be posted",
                    )

            self.audit.append(events())

    def plan(
        self,
        report_ids: Sequence[str] | None = None,
        *,
        evaluations: Iterable[ReportEvaluation] | None = None,
    ) -> Plan:
        """The exact vouchers this cycle would post (what the dry run prints and post()
        executes unchanged), with every held report and its reasons."""
        with self._cycle_lock:
            if evaluations is None:
                return self._evaluate_and_plan(report_ids, include_failed=False)
            # Only reports still to post: a posted or excluded report is never planned.
            return build_plan([e.validated for e in evaluations], self.settings.posting)

    def _evaluate_and_plan(self, report_ids: Sequence[str] | None, *, include_failed: bool) -> Plan:
        """evaluate() then plan, report by report: each report's voucher is planned as soon
        as it is validated, and its models dropped (at 10,000 reports, holding every
        evaluation until the plan was built cost some 200 MB). A planning error is raised
        after the evaluations are recorded, as evaluating first and planning after would."""
        builder = PlanBuilder(self.settings.posting)
        failure: list[Exception] = []

        def take(evaluation: ReportEvaluation) -> None:
            if failure:
                return
            try:
                builder.add(evaluation.validated)
            except Exception as exc:  # re-raised below, once the evaluations are recorded
                failure.append(exc)

        self._evaluate(report_ids, include_failed, take)
        if failure:
            raise failure[0]
        return builder.plan()

    def post(
        self,
        plan: Plan,
        *,
        progress: Callable[[PostProgress], None] | None = None,
        dry_run: bool = False,
    ) -> PostOutcome:
        """Execute the plan unchanged, under the posting lock, then label what was posted.
        With dry_run: nothing is sent anywhere; a dry-run event records what would have been."""
        with self._cycle_lock:
            if dry_run:
                self.audit.record(
                    "dry-run",
                    f"dry run: {len(plan.vouchers)} voucher(s) would be posted, "
                    f"{len(plan.held)} report(s) held",
                    data={
                        "would_post": [v.reference_number for v in plan.vouchers],
                        "held": [h.report_id for h in plan.held],
                    },
                )
                return PostOutcome()
            with self.lock:
                self.track("ifs", lambda: self.ledger().reconcile())
                if plan.vouchers:
                    self.audit.record(
                        "planned",
                        f"{len(plan.vouchers)} voucher(s) planned",
                        data={"references": [v.reference_number for v in plan.vouchers]},
                    )
                cfg = self.settings.ifs
                outcome: PostOutcome = self.track(
                    "ifs",
                    lambda: post_plan(
                        plan,
                        self.ifs,
                        self.store,
                        self.audit,
                        progress=progress,
                        concurrency=cfg.concurrency,
                        batch_size=cfg.batch_size if cfg.batch else 0,
                    ),
                )
                try:
                    outcome.labelled = self.track(
                        "expensify",
                        lambda: label_posted(
                            self.expensify,
                            self.store,
                            self.audit,
                            self.settings.expensify.export_label,
                        ),
                    )
                except ConsoleError as exc:
                    # Posted and recorded: the label follows on the next cycle.
                    outcome.label_error = str(exc)
                return outcome

    def run_cycle(
        self,
        *,
        dry_run: bool = False,
        report_ids: Sequence[str] | None = None,
        progress: Callable[[PostProgress], None] | None = None,
        fetch: bool = True,
        mode: str | None = None,
    ) -> CycleSummary:
        """fetch → evaluate → plan → post → label: what `--auto` and the TUI's sync call."""
        with self._run(mode or ("dry-run" if dry_run else "sync"), dry_run) as summary:
            if dry_run:
                self._cycle(summary, dry_run, report_ids, progress, fetch)
            else:
                with self.lock:
                    self._cycle(summary, dry_run, report_ids, progress, fetch)
        return summary

    def post_reviewed(
        self, plan: Plan, *, progress: Callable[[PostProgress], None] | None = None
    ) -> CycleSummary:
        """The console's confirmed dry run: exactly the reviewed plan's vouchers, then its due
        reversals, nothing fetched or re-planned. A run of its own ("post-reviewed"), so the
        header, `info` and the audit trail show it like any sync."""
        with self._run("post-reviewed", dry_run=False) as summary, self.lock:
            summary.plan = plan
            summary.planned = len(plan.vouchers)
            summary.moved = reversal.moved(plan)
            if plan.vouchers:
                outcome = self.post(plan, progress=progress)
                summary.posted = len(outcome.posted)
                summary.vouchers = [{"reportID": r, "voucher": v} for r, v in outcome.posted]
                summary.already_posted = len(outcome.already_posted)
                summary.unknown = list(outcome.unknown)
                self._label_warning(summary, outcome)
            reversal.post_due(self, plan, summary)
            reversal.settle_changes(self.store)
        return summary

    @contextlib.contextmanager
    def _run(self, mode: str, dry_run: bool) -> Iterator[CycleSummary]:
        """One recorded run: the runs row, run-started/run-finished events and the summary's
        requests, holds and failures, also when the body raises."""
        with self._cycle_lock, _paced_collector():
            self._policies = None
            self._reference = None
            summary = CycleSummary(
                dry_run=dry_run, started=iso(self.clock()), as_of=self.as_of_text()
            )
            exp0 = self._expensify.requests_made if self._expensify else 0
            ifs0 = self._ifs.requests_made if self._ifs else 0
            summary.run_id = self.store.start_run(self.actor, mode)
            started: dict[str, Any] = {"run": summary.run_id}
            if summary.as_of:
                started["as_of"] = summary.as_of
            self.audit.record(
                "run-started",
                f"{mode} started" + (f" as of {summary.as_of}" if summary.as_of else ""),
                data=started,
            )
            try:
                yield summary
            except BaseException as exc:
                self._finish(summary, exp0, ifs0, error=str(exc) or type(exc).__name__)
                raise
            self._finish(summary, exp0, ifs0)

    @staticmethod
    def _label_warning(summary: CycleSummary, outcome: PostOutcome) -> None:
        if outcome.label_error:
            summary.warnings.append(
                f"posted, but the Expensify export label could not be set yet: "
                f"{outcome.label_error}; it is set on the next cycle"
            )

    def _cycle(
        self,
        summary: CycleSummary,
        dry_run: bool,
        report_ids: Sequence[str] | None,
        progress: Callable[[PostProgress], None] | None,
        do_fetch: bool,
    ) -> None:
        if not dry_run:
            # Intents without outcome (a crash between POST and commit) first, before any post.
            self.track("ifs", lambda: self.ledger().reconcile())
        fetched_posted: set[str] = set()
        changed_after_post: list[str] = []
        if do_fetch:
            fo = self.fetch(dry_run=dry_run)
            summary.fetched = fo.count
            for rid in fo.fetched:
                status = self.store.report_status(rid)
                if status == "posted":
                    fetched_posted.add(rid)
                elif status == "excluded":
                    summary.excluded += 1
            summary.unchanged = len([r for r in fo.unchanged if r not in fetched_posted])
            changed_after_post = list(fo.changed_after_post)
            summary.warnings += [
                f"policy {pid} is configured but not visible to these Expensify credentials: "
                "its reports cannot be synced (share the workspace with the API user, or "
                "remove it from [posting] company_by_policy)"
                for pid in fo.unseen_policies
            ]
        plan = self._evaluate_and_plan(report_ids, include_failed=report_ids is not None)
        if report_ids is None:
            # Watch posted reports; reversals due today; changes after posting (dry run too).
            plan = reversal.prepare(self, plan, changed_after_post, dry_run)
        summary.moved = reversal.moved(plan)
        summary.plan = plan
        summary.planned = len(plan.vouchers)
        outcome = self.post(plan, progress=progress, dry_run=dry_run)
        summary.posted = len(outcome.posted)
        summary.vouchers = [{"reportID": r, "voucher": v} for r, v in outcome.posted]
        summary.already_posted = len(fetched_posted | set(outcome.already_posted))
        summary.unknown = list(outcome.unknown)
        if not dry_run:
            reversal.post_due(self, plan, summary)
            reversal.settle_changes(self.store)
            # Imported here: card spend belongs to close, which a plain sync need not load.
            from console import card_accrual

            card_accrual.reverse_due_in_cycle(self, summary)
        self._label_warning(summary, outcome)

    def _finish(self, summary: CycleSummary, exp0: int, ifs0: int, error: str = "") -> None:
        summary.requests = {
            "expensify": (self._expensify.requests_made if self._expensify else 0) - exp0,
            "ifs": (self._ifs.requests_made if self._ifs else 0) - ifs0,
        }
        held = self.store.holds()
        first: dict[str, str] = {}
        for h in held:
            first.setdefault(h.report_id, h.code)
        # The primary reason is the one the report row carries.
        rows = {
            r.report_id: r.reason
            for r in self.store.pending_reports(status="held", limit=1_000_000)
        }
        summary.held_reports = [
            {"reportID": rid, "reason": reason or first.get(rid, "")}
            for rid, reason in sorted(rows.items())
        ]
        summary.held_reports += reversal.change_holds(self.store)
        summary.held = len(summary.held_reports)
        failed = self.store.pending_reports(status="failed", limit=1_000_000)
        # A reversal IFS refused this run is not a report state: keep it beside the failed
        # reports, or the run would end 0 with the accrual left standing.
        refused_reversals = [
            f for f in summary.failed_reports if f["reason"].startswith(reversal.FAILED_PREFIX)
        ]
        summary.failed_reports = [
            {"reportID": r.report_id, "reason": r.reason} for r in failed
        ] + refused_reversals
        summary.failed = len(summary.failed_reports)
        summary.finished = iso(self.clock())
        # The run record keeps the summary without the plan (serialising it is the dry
        # run's largest single cost, and it is dropped here anyway).
        data = replace(summary, plan=None).to_json()
        if error:
            data["error"] = error
        if summary.run_id is not None:
            self.store.finish_run(summary.run_id, data)
        self.audit.record(
            "run-finished",
            (
                f"finished: {summary.posted} posted, {summary.held} held, "
                f"{summary.failed} failed" + (f"; error: {error}" if error else "")
            ),
            data={"run": summary.run_id, "requests": summary.requests, "error": error},
        )

    # ------------------------------------------------------------------ operator actions
    def exclude(self, report_id: str, reason: str) -> None:
        """Take a report out of posting for good, with a reason (audited)."""
        if not reason.strip():
            raise ConfigError("an exclusion needs a reason")
        with self.store.transaction():
            status = self.store.report_status(report_id)
            if status is None:
                raise ConsoleError(f"report {report_id} is not known to this console")
            if not self.store.exclude(report_id, reason.strip(), self.actor):
                raise ConsoleError(
                    f"report {report_id} is {status}; a posted report cannot be excluded"
                )
            self.audit.record(
                "excluded",
                f"excluded: {reason.strip()}",
                report_id=report_id,
                data={"previous_status": status},
            )

    def replay(
        self,
        report_ids: Sequence[str] | None = None,
        *,
        held: bool = False,
        progress: Callable[[PostProgress], None] | None = None,
    ) -> CycleSummary:
        """Re-check and post the given reports (held or failed), or every held one."""
        ids = list(report_ids or [])
        if held:
            ids += [r.report_id for r in self.store.pending_reports(status="held", limit=10**6)]
        ids = list(dict.fromkeys(ids))
        if not ids:
            raise ConfigError("name the reports to replay, or use --held")
        unknown = [rid for rid in ids if self.store.report_status(rid) is None]
        if unknown:
            raise ConsoleError(f"unknown report(s): {', '.join(unknown)}")
        self.audit.record_many(
            Event(type="replayed", report_id=rid, summary="replay requested") for rid in ids
        )
        return self.run_cycle(report_ids=ids, progress=progress, fetch=False, mode="replay")

    def confirm_change(self, report_id: str) -> CycleSummary:
        """The operator confirms a report changed (or rejected) after posting: its old accrual
        is reversed once and, when changed, the new version posts as a new accrual."""
        return reversal.confirm_change(self, report_id)  # type: ignore[no-any-return]

    def set_mapping(self, rule: MappingRule) -> list[str]:
        """Save an operator override (audited) and re-evaluate the reports it may affect;
        returns their IDs."""
        with self._cycle_lock:
            self.store.save_mapping_rule(
                rule.kind, rule.policy_id, rule.source, {"target": rule.target}, self.actor
            )
            self.audit.record(
                "mapping-changed",
                f"{rule.kind} '{rule.source}' of policy {rule.policy_id or '(any)'} → "
                f"{rule.target}",
                data={
                    "policy_id": rule.policy_id,
                    "kind": rule.kind,
                    "source": rule.source,
                    "target": rule.target,
                },
            )
            affected = [
                r.report_id
                for r in self.store.pending_reports(
                    status=("pending", "held", "ready"), limit=10**6
                )
                if not rule.policy_id or r.policy_id == rule.policy_id
            ]
            if affected:
                self.evaluate(affected)
            return affected

    def check_value(
        self, company: str, code_part: str, value: str, on_dates: Sequence[date]
    ) -> ValueCheck:
        """Live IFS look-up of one code part value: exists? description? valid on each date?"""
        values = self.track("ifs", lambda: self.ifs.code_part_values(company))
        found = next(
            (v for v in values if v.CodePart == code_part and v.CodePartValue == value), None
        )
        if found is None:
            return ValueCheck(
                company,
                code_part,
                value,
                False,
                message=f"{value} is not a code part {code_part} value in IFS company {company}",
            )
        self.store.upsert_dimension(
            DimensionRow(
                company,
                code_part,
                value,
                found.Description,
                found.ValidFrom.isoformat(),
                found.ValidUntil.isoformat(),
                self.store.now(),
            )
        )
        valid = {d: found.valid_on(d) for d in on_dates}
        bad = [d.isoformat() for d, ok in valid.items() if not ok]
        message = (
            f"{value} ({found.Description}) is valid from {found.ValidFrom} to {found.ValidUntil}"
            + (f"; not valid on {', '.join(bad)}" if bad else "")
        )
        return ValueCheck(
            company,
            code_part,
            value,
            True,
            found.Description,
            found.ValidFrom,
            found.ValidUntil,
            valid,
            message,
        )

    def status(self) -> EngineStatus:
        """Environment, each service's last known state, token and rate budget, last run."""
        token_s: float | None = None
        budget = 0.0
        if self._ifs is not None:
            try:
                token_s = self._ifs.token.seconds_to_refresh()
            except ConsoleError:
                token_s = None
            budget = float(self._ifs.limiter.budget_in_use())
        runs = self.store.runs(1)
        return EngineStatus(
            environment=self.settings.environment or "production",
            services=dict(self._service_state),
            ifs_token_refresh_s=token_s,
            rate_budget_in_use=max(0.0, min(1.0, budget)),
            last_run=runs[0] if runs else None,
            counts=self.store.status_counts(),
            actor=self.actor,
            as_of=self.as_of_text(),
        )

    def check_services(self) -> dict[str, ServiceState]:
        """Prove both connections (the TUI's header and `credentials check` use this)."""
        for name, call in (("expensify", self.expensify.check), ("ifs", self.ifs.check)):
            try:
                self.track(name, call)
            except ConsoleError:
                pass
        return dict(self._service_state)

    # ------------------------------------------------------------------ the TUI's seam
    # What the screens read and call instead of reaching into the store, IFS or the settings
    # (tests/tui/test_seam.py keeps it so). None of these posts or writes to Expensify.

    def pending_reports(
        self,
        filter_text: str = "",
        status: str | Sequence[str] | None = None,
        *,
        offset: int = 0,
        limit: int = 200,
    ) -> list[views.ReportRow]:
        """One page of stored reports in these statuses, newest approval first, filtered."""
        return self.store.pending_reports(filter_text, status, offset=offset, limit=limit)

    def count_reports(
        self, filter_text: str = "", status: str | Sequence[str] | None = None
    ) -> int:
        """How many stored reports pending_reports() pages through."""
        return self.store.count_reports(filter_text, status)

    def report_detail(self, report_id: str) -> views.ReportDetail | None:
        """One stored report with its lines, holds, postings and exclusion (None: unknown)."""
        return self.store.report_detail(report_id)

    def report_statuses(self, report_ids: Iterable[str]) -> dict[str, str | None]:
        """Each report's stored status (None: not known to this console)."""
        return {rid: self.store.report_status(rid) for rid in report_ids}

    def hold_groups(self) -> list[views.HoldGroup]:
        """Held reports grouped by reason code and company (the Missing dimensions queue)."""
        return self.store.hold_groups()

    def audit_page(
        self,
        flt: views.AuditFilter | None = None,
        *,
        before_seq: int | None = None,
        limit: int = 200,
    ) -> list[views.AuditRow]:
        """One page of audit events, newest first; pass the last row's seq as before_seq."""
        return self.store.audit_page(flt, before_seq=before_seq, limit=limit)

    def audit_count(self, flt: views.AuditFilter | None = None) -> int:
        """How many audit events match the filter."""
        return self.store.audit_count(flt)

    def verify_audit(self) -> views.VerifyResult:
        """Walk the audit log's hash chain; name the first event edited, deleted or moved."""
        return self.audit.verify()

    def mapping_view(self) -> views.MappingView:
        """The mapping editor's rows: every category and tag value of the configured policies
        (one policy read) with default, override and the reports still to post that use it,
        and the IFS values cached per code part as hints. IFS's reference data is read first
        (once per cycle) to refresh that cache; offline, the cached values still hint."""
        policies = self.policies()
        with contextlib.suppress(Exception):
            self.reference()
        return views.mapping_view(self.store, policies, self.settings.posting)

    def plan_for_review(self, selection: Sequence[str] | None = None) -> Plan:
        """The plan the operator reviews before `post_reviewed`: the vouchers of the selected
        ready reports (all of them without a selection), plus the reversals due today and
        every report changed after posting, as a cycle's plan has them (what `--auto
        --dry-run` prints for the same store). Posts nothing and asks Expensify nothing; like
        plan() it records the evaluations. Watching posted reports and reconciling reversal
        intents stay a cycle's (reversal.prepare): this adds what prepare adds, without them."""
        with self._cycle_lock:
            plan = self.plan(selection)
            today = self.today()
            reference = self.reference()
            posting = self.settings.posting
            due: reversal.ReversalPlan = self.track(
                "ifs",
                lambda: reversal.due_reversals(self.ifs, self.store, reference, posting, today),
            )
            changes = [
                reversal.preview_change(self, change, reference, today)
                for change in self.store.report_changes(("open", "confirmed"))
            ]
            return replace(plan, reversals=due.reversals, changes=changes)
