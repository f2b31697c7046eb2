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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any

from console import clock, coding, reversal, views
from console import session as session_module
from console.audit import Event
from console.config import default_approved_after
from console.errors import ConfigError, ConsoleError
from console.expensify.models import ExportReport, MalformedReport, PolicyInfo
from console.fetch import FetchOutcome, fetch, load_report
from console.flows import card_accrual, holdings, incremental, reversals
from console.flows.results import CycleSummary
from console.mapping import Hold, MappingOverrides, MappingRule, map_report, suggest_defaults
from console.plan import Plan, PlanBuilder, build_plan
from console.post import PostOutcome, PostProgress, label_posted, post_plan
from console.report_checks import ReportChecks
from console.session import EngineStatus, ServiceState, Session
from console.store import (
    DimensionRow,
    EvaluationRecord,
    HoldRecord,
    iso,
)
from console.validate import IfsReference, ValidatedReport, validate, validate_malformed

if TYPE_CHECKING:
    pass

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


class _KeptPolicies:
    """The Expensify client as fetch() reads it, with the policy read answered from the
    session's kept copy (Session.read_policies) instead of a request every cycle."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get_policies(self, policy_ids: Sequence[str]) -> dict[str, PolicyInfo]:
        return self._session.read_policies(policy_ids)

    def export_items(self, **filters: Any) -> Iterator[ExportReport | MalformedReport]:
        return self._session.expensify.export_items(**filters)

    # Isolating a report that breaks the export (fetch.py) goes to the client unchanged.
    def export_report_ids(self, *args: Any, **kwargs: Any) -> list[str]:
        return self._session.expensify.export_report_ids(*args, **kwargs)

    def export_reports_by_id(
        self, *args: Any, **kwargs: Any
    ) -> Iterator[ExportReport | MalformedReport]:
        return self._session.expensify.export_reports_by_id(*args, **kwargs)


# Posted reports are re-read (changes after posting, reimbursement) at most this often, in
# one export and download; a report a poll sees changed after posting is read at once.
WATCH_EVERY_S = 1800.0
WATCHED_CURSOR = "watched-at"
# What each cycle sent Expensify over the last hour: a scheduled cycle polls only while
# the loop stays within expensify.loop_share of the budget (Engine._over_loop_share).
SPEND_CURSOR = "expensify-spend"
SPEND_WINDOW_S = 3600.0
POLL_REQUESTS = 2  # export and download; the policy read and the re-read when due


class Engine(Session, views.ListQueries):
    """The console's facade on a session: what the TUI and every command call. Each method
    is one flow (a cycle, a reviewed post, a replay, a mapping change, a value check) or one
    read model; the flows of reversals, card accruals, close and adopt are modules beside
    this one and take the session."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What the last plan found per report, so the next plan re-evaluates only what
        # changed; and the accruals read back for the reversals due (incremental.py).
        self._evaluations = incremental.EvaluationCache()
        self._planned_on: date | None = None  # the day of the cached plan (coding.py)
        self._accruals = incremental.AccrualReader(lambda: self.ifs)
        # What this cycle read of IFS's vouchers before planning (flows/holdings.py): the
        # posting's lookup of what IFS already holds is answered from it.
        self._holdings_seen: tuple[date, dict[str, str]] | None = None

    def fetch(self, *, dry_run: bool = False) -> FetchOutcome:
        """Poll Expensify once (approvedAfter overlapping the last poll by a day, APPROVED and
        REIMBURSED, excluding our export label; one policy read) and store what came back."""
        with self.cycle_lock:
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
                    _KeptPolicies(self),
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

    def evaluate(
        self, report_ids: Sequence[str] | None = None, *, include_failed: bool = False
    ) -> list[ReportEvaluation]:
        """Map and validate pending, ready and held reports (or just `report_ids`) against one
        IfsReference read; update the hold queue (first_held kept) and statuses."""
        with self.cycle_lock:
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
        overrides = self.overrides()
        verdicts: list[_Verdict] = []
        previous = dict(keys)
        # all-zero reports, duplicate transactions, reports too big for one voucher request
        checks = ReportChecks.load(self.store, self.settings.ifs.max_batch_parts)
        # Raw JSON text a batch at a time, parsed one report at a time.
        for rid, _status, raw_text in self.store.iter_reports_raw_text(statuses, keys=keys):
            evaluation, _policy = self._evaluate_one(
                rid, raw_text, policies, ref, overrides, checks
            )
            take(evaluation)
            verdicts.append(_Verdict(rid, evaluation.company, tuple(evaluation.holds)))
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
        with self.cycle_lock:
            if evaluations is None:
                return self._evaluate_and_plan(report_ids, include_failed=False)
            # Only reports still to post: a posted or excluded report is never planned.
            return build_plan([e.validated for e in evaluations], self.settings.posting)

    def _evaluate_and_plan(self, report_ids: Sequence[str] | None, *, include_failed: bool) -> Plan:
        """evaluate() then plan, report by report: each report's voucher is planned as soon
        as it is validated, and its models dropped (at 10,000 reports, holding every
        evaluation until the plan was built cost some 200 MB). A planning error is raised
        after the evaluations are recorded, as evaluating first and planning after would.

        Incremental (console/flows/incremental.py): a report whose content, status and
        inputs (policy, overrides, IFS company and the values it looked up) are those of
        the last plan keeps that plan's verdict and voucher, unevaluated; only new, changed
        or affected reports are mapped, validated and recorded again."""
        posting = self.settings.posting
        builder = PlanBuilder(posting)
        statuses = EVALUATED_STATUSES + (("failed",) if include_failed else ())
        keys = self.store.report_keys(statuses, report_ids)
        if not keys:
            return builder.plan()
        cache = self._evaluations
        policies = self.policies()
        ref = self.reference()
        overrides = self.overrides()
        cache.inputs(posting, policies, overrides.targets, ref)
        if coding.dated_by_export(posting) and self._planned_on != self.today():
            cache.keep_only(set())  # vouchers dated by their export: yesterday's are stale
        self._planned_on = self.today()
        checks = ReportChecks.load(self.store, self.settings.ifs.max_batch_parts)
        # A report that shares a transaction with another is re-checked every time (which
        # of them holds depends on the others and on confirmations), and so is one sent back
        # in Expensify (its state is the store's, not its content's); both are rare, so cheap.
        sharing = {owner[1] for owners in checks.shared.values() for owner in owners}
        verdicts: list[_Verdict] = []
        previous: dict[str, str] = {}
        failure: list[Exception] = []
        for rid, status, raw_text in self.store.iter_reports_raw_text(statuses, keys=keys):
            digest = incremental.digest(raw_text)
            fresh = rid in sharing or rid in checks.sent_back
            hit = None if fresh else cache.get(rid, status, digest)
            if hit is not None:
                hit.add_to(builder)
                continue
            previous[rid] = status
            seen: set[tuple[str, str] | str] = set()
            evaluation, policy_id = self._evaluate_one(
                rid, raw_text, policies, incremental.recording(ref, seen), overrides, checks
            )
            verdicts.append(_Verdict(rid, evaluation.company, tuple(evaluation.holds)))
            if failure:
                cache.drop(rid)
                continue
            before = incremental.sizes(builder)
            try:
                builder.add(evaluation.validated)
            except Exception as exc:  # re-raised below, once the evaluations are recorded
                failure.append(exc)
                cache.drop(rid)
                continue
            entry = incremental.planned_entry(builder, before)
            if entry is None or status == "failed" or fresh:
                cache.drop(rid)
                continue
            cache.put(
                rid,
                incremental.Cached(
                    raw=digest,
                    status=evaluation.status,
                    policy_id=policy_id,
                    company=evaluation.company,
                    lookups=frozenset(seen),
                    entry=entry,
                ),
            )
        if report_ids is None:
            cache.keep_only({rid for rid, _status in keys})
        if verdicts:
            self._record_verdicts(verdicts, previous)
        if failure:
            raise failure[0]
        return builder.plan()

    def _evaluate_one(
        self,
        rid: str,
        raw_text: str,
        policies: dict[str, PolicyInfo],
        ref: IfsReference,
        overrides: MappingOverrides,
        checks: ReportChecks,
    ) -> tuple[ReportEvaluation, str]:
        """Map and validate one stored report: its evaluation and its policy ID."""
        raw = json.loads(raw_text)
        try:
            loaded: ExportReport | MalformedReport = load_report(raw)
        except ValueError:  # pydantic ValidationError is a ValueError
            loaded = MalformedReport(reportID=rid, what="unreadable", raw={})
        if isinstance(loaded, MalformedReport):
            validated = validate_malformed(loaded)
            company, policy_id = "", ""
        else:
            mapped = map_report(loaded, policies, self.settings.posting, overrides)
            validated = checks.apply(
                validate(mapped, ref, self.settings.posting, today=self.today())
            )
            company, policy_id = mapped.company or "", loaded.policyID
        holds = list(validated.holds)
        evaluation = ReportEvaluation(
            report_id=rid,
            status="held" if holds else "ready",
            holds=holds,
            company=company,
            validated=validated,
        )
        return evaluation, policy_id

    def post(
        self,
        plan: Plan,
        *,
        progress: Callable[[PostProgress], None] | None = None,
        dry_run: bool = False,
    ) -> PostOutcome:
        """Execute the plan unchanged, under the posting lock, then label what was posted.
        With dry_run: nothing is sent anywhere; a dry-run event records what would have been."""
        with self.cycle_lock:
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
                self.ensure_tenant()  # once per process; the cycle has asked already
                self.track("ifs", lambda: self.ledger().reconcile())
                if plan.vouchers:
                    self.audit.record(
                        "planned",
                        f"{len(plan.vouchers)} voucher(s) planned",
                        data={"references": [v.reference_number for v in plan.vouchers]},
                    )
                cfg = self.settings.ifs
                # Used once: a later post (a reviewed plan) reads IFS afresh.
                seen, self._holdings_seen = self._holdings_seen, None
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
                        batch_parts=cfg.max_batch_parts,
                        seen=seen,
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
        scheduled: bool = False,
    ) -> CycleSummary:
        """fetch → evaluate → plan → post → label: what `--auto` and the TUI's sync call.
        `scheduled` (a cycle of `--every`): posted reports are re-read only every
        WATCH_EVERY_S, to keep the loop's share of Expensify's request budget small."""
        with self._run(mode or ("dry-run" if dry_run else "sync"), dry_run) as summary:
            if dry_run:
                self._cycle(summary, dry_run, report_ids, progress, fetch, scheduled)
            else:
                with self.lock:
                    self._cycle(summary, dry_run, report_ids, progress, fetch, scheduled)
        return summary

    def post_reviewed(
        self, plan: Plan, *, progress: Callable[[PostProgress], None] | None = None
    ) -> CycleSummary:
        """The console's confirmed dry run: exactly the reviewed plan's vouchers, then its due
        reversals, nothing fetched or re-planned. A run of its own ("post-reviewed"), so the
        header, `info` and the audit trail show it like any sync."""
        with self._run("post-reviewed", dry_run=False) as summary, self.lock:
            self.ensure_tenant()
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
            reversals.post_due(self, plan, summary)
            reversal.settle_changes(self.store)
        return summary

    @contextlib.contextmanager
    def _run(self, mode: str, dry_run: bool) -> Iterator[CycleSummary]:
        """One recorded run: the runs row, run-started/run-finished events and the summary's
        requests, holds and failures, also when the body raises."""
        with self.cycle_lock, _paced_collector():
            self.keep_reads = not dry_run
            if mode != "post-reviewed":
                # A cycle reads IFS (and the policies) afresh; posting a reviewed plan
                # evaluates nothing, and the plan after it builds on what it read.
                self._policies = None
                self._reference = None
                self._accruals.forget()
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
            finally:
                self.keep_reads = True
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
        scheduled: bool = False,
    ) -> None:
        if not dry_run:
            # The tenant serves what the client sends (once per process), before anything
            # is sent: a drifted tenant stops the cycle here, with nothing posted.
            self.ensure_tenant()
            # Intents without outcome (a crash between POST and commit) first, before any post.
            self.track("ifs", lambda: self.ledger().reconcile())
        fetched_posted: set[str] = set()
        changed_after_post: list[str] = []
        if do_fetch and scheduled and self._over_loop_share():
            # This hour's polls have spent the loop's share of Expensify's budget: this
            # cycle re-checks and posts what is held, the next one polls.
            do_fetch = False
            skip_watch = True
        else:
            skip_watch = False
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
            summary.warnings += fo.notices  # e.g. reports approved before the poll window
        if report_ids is None and not skip_watch:
            # Re-read posted and held reports (dry run too), before planning: a held report
            # fixed in Expensify is evaluated in this cycle.
            if self._watch_due(changed_after_post, dry_run, scheduled):
                reversals.watch(self, changed_after_post)
        if not dry_run:
            # What IFS holds that the state does not know (a lost or restored state file),
            # before planning: those reports are not posted again, their reversals follow.
            self._holdings_seen = holdings.check_in_cycle(self, summary)
        plan = self._evaluate_and_plan(report_ids, include_failed=report_ids is not None)
        if report_ids is None:
            # Reversals due today; changes after posting (dry run too).
            self._accruals.prime(self._accruals_to_read())
            plan = reversals.prepare(self, plan, dry_run, self._accruals)
        summary.moved = reversal.moved(plan)
        summary.plan = plan
        summary.planned = len(plan.vouchers)
        outcome = self.post(plan, progress=progress, dry_run=dry_run)
        summary.posted = len(outcome.posted)
        summary.vouchers = [{"reportID": r, "voucher": v} for r, v in outcome.posted]
        summary.already_posted = len(fetched_posted | set(outcome.already_posted))
        summary.unknown = list(outcome.unknown)
        if not dry_run:
            reversals.post_due(self, plan, summary)
            reversal.settle_changes(self.store)
            # Imported here: card spend belongs to close, which a plain sync need not load.
            card_accrual.reverse_due_in_cycle(self, summary)
        self._label_warning(summary, outcome)

    def _over_loop_share(self) -> bool:
        """Whether this cycle's requests (the poll's export and download, plus the policy
        read and the re-read of posted reports when they are due) would take what this
        state file's cycles sent Expensify in the last hour past `expensify.loop_share` of
        its budget (limit_60s a minute)."""
        cfg = self.settings.expensify
        allowed = cfg.loop_share * cfg.limit_60s * SPEND_WINDOW_S / 60
        now = self.clock().timestamp()
        cost = POLL_REQUESTS
        try:
            kept = json.loads(self.store.cursor(session_module.POLICIES_CURSOR) or "{}")
            if not 0 <= now - float(kept.get("at", "nan")) < session_module.POLICY_TTL_S:
                cost += 1
        except (ValueError, TypeError, AttributeError):
            cost += 1
        try:
            watched = float(self.store.cursor(WATCHED_CURSOR) or "nan")
        except ValueError:
            watched = float("nan")
        if not 0 <= now - watched < WATCH_EVERY_S:
            # The re-read's export and download, and one job per unreadable report read alone.
            alone = len(reversal.unreadable_reports(self.store))
            cost += 2 + min(alone, reversal.UNREADABLE_CAP)
        return sum(n for _t, n in self._spend()) + cost > allowed

    def _spend(self) -> list[tuple[float, int]]:
        """(epoch, Expensify requests) of each cycle of the last SPEND_WINDOW_S."""
        now = self.clock().timestamp()
        try:
            kept = json.loads(self.store.cursor(SPEND_CURSOR) or "[]")
            spend = [(float(t), int(n)) for t, n in kept]
        except (ValueError, TypeError):
            spend = []
        return [(t, n) for t, n in spend if now - SPEND_WINDOW_S < t <= now]

    def _note_spend(self, requests: int) -> None:
        if requests:
            spend = [*self._spend(), (self.clock().timestamp(), requests)]
            self.store.set_cursor(json.dumps(spend), SPEND_CURSOR)

    def _watch_due(self, priority: Sequence[str], dry_run: bool, scheduled: bool) -> bool:
        """Whether this cycle re-reads posted reports: always, unless it is a scheduled
        cycle; then when a poll saw one changed, else once per WATCH_EVERY_S (the last read
        is kept in the store; a dry run reads and keeps nothing)."""
        now = self.clock().timestamp()
        if scheduled and not priority:
            try:
                last = float(self.store.cursor(WATCHED_CURSOR) or "nan")
            except ValueError:
                last = float("nan")
            if 0 <= now - last < WATCH_EVERY_S:
                return False
        if not dry_run:
            self.store.set_cursor(repr(now), WATCHED_CURSOR)
        return True

    def _finish(self, summary: CycleSummary, exp0: int, ifs0: int, error: str = "") -> None:
        summary.requests = {
            "expensify": (self._expensify.requests_made if self._expensify else 0) - exp0,
            "ifs": (self._ifs.requests_made if self._ifs else 0) - ifs0,
        }
        if not summary.dry_run:
            self._note_spend(summary.requests["expensify"])
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
        for waiting in reversal.posted_attention(self.store):
            summary.held_reports.append({"reportID": waiting.report_id, "reason": waiting.code})
            if waiting.warn:
                summary.warnings.append(waiting.message)
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
        self.audit.seal()  # the cycle's events end with a signed checkpoint

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
        with self.cycle_lock, self.lock:
            self.ensure_tenant()
            change, done = reversals.reverse_for_change(self, report_id)
            changed = change.kind == reversal.CAUSE_CHANGED
            summary = self.run_cycle(
                report_ids=[report_id] if changed else [], fetch=False, mode="confirm-change"
            )
            reversal.settle_changes(self.store)
            reversals.into_summary(done, summary)
            return summary

    def set_mapping(self, rule: MappingRule) -> list[str]:
        """Save an operator override (audited) and re-evaluate the reports it may affect;
        returns their IDs."""
        with self.cycle_lock:
            # What it was: the override it replaces, else what the mapping gives without one.
            previous = self.overrides().targets.get(
                (rule.policy_id, rule.kind, rule.source)
            ) or self._default_target(rule)
            self.store.save_mapping_rule(
                rule.kind, rule.policy_id, rule.source, {"target": rule.target}, self.actor
            )
            self.audit.record(
                "mapping-changed",
                f"{rule.kind} '{rule.source}' of policy {rule.policy_id or '(any)'}: "
                f"{previous or '(none)'} → {rule.target}",
                data={
                    "policy_id": rule.policy_id,
                    "kind": rule.kind,
                    "source": rule.source,
                    "previous": previous,
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

    def _default_target(self, rule: MappingRule) -> str | None:
        """What Expensify's coding maps `rule.source` to without an override (the policies
        as last read; None when unknown)."""
        policies = self._policies or {}
        for pid, policy in policies.items():
            if rule.policy_id and pid != rule.policy_id:
                continue
            for d in suggest_defaults(policy):
                if d.kind == rule.kind and d.source == rule.source and d.default_target:
                    return str(d.default_target)
        return None

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

    # ------------------------------------------------------------------ the TUI's seam
    # What the screens read and call instead of reaching into the store, IFS or the settings
    # (tests/tui/test_seam.py keeps it so). None of these posts or writes to Expensify.

    def report_detail(self, report_id: str) -> views.ReportDetail | None:
        """One stored report with its lines, holds, postings and exclusion (None: unknown)."""
        return self.store.report_detail(report_id)

    def posted_coding(self, report_id: str) -> views.PostedCoding | None:
        """How a posted report is in IFS: its voucher and each line's account and code parts
        as posted (None: the report has no posted accrual)."""
        return views.posted_coding(self.store, report_id)

    def report_statuses(self, report_ids: Iterable[str]) -> dict[str, str | None]:
        """Each report's stored status (None: not known to this console)."""
        return {rid: self.store.report_status(rid) for rid in report_ids}

    def hold_groups(self) -> list[views.HoldGroup]:
        """Held reports grouped by reason code and company (the Missing dimensions queue)."""
        return self.store.hold_groups()

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

    def plan_for_review(
        self, selection: Sequence[str] | None = None, *, refresh: bool = False
    ) -> Plan:
        """The plan the operator reviews before `post_reviewed`: the vouchers of the selected
        ready reports (all of them without a selection), plus the reversals due today and
        every report changed after posting, as a cycle's plan has them (what `--auto
        --dry-run` prints for the same store). Posts nothing and asks Expensify nothing; like
        plan() it records the evaluations. Watching posted reports and reconciling reversal
        intents stay a cycle's (reversals.prepare): this adds what prepare adds, without them."""
        with self.cycle_lock:
            if refresh:
                # The operator asked to read again: IFS's values and the accruals afresh.
                self._reference = None
                self._accruals.forget()
            plan = self.plan(selection)
            self._accruals.prime(self._accruals_to_read())
            return reversals.review_additions(self, plan, self._accruals)

    def _accruals_to_read(self) -> list[tuple[str, str]]:
        """(reference, company) of the posted accruals whose next-period reversal may be
        due today and none of whose groups is reversed yet: what the reversal planning
        will read back (the rest it reads one by one, if at all)."""
        today = self.today()
        done = reversal.reversed_groups(self.store)
        out: list[tuple[str, str]] = []
        for acc in self.store.posted_accruals():
            if done.get(acc.reference):
                continue
            try:
                approved = date.fromisoformat(acc.approved[:10])
            except ValueError:
                continue
            if clock.month_start(approved, 1) <= today:
                out.append((acc.reference, acc.company))
        return out

    def close_period(self) -> tuple[int, int]:
        """(year, month) the Close screen opens on: the operator's last choice, else the
        previous month through `tui.close_previous_month_until_day` of today's month (the
        engine's today: the as-of date when set), then the current month."""
        return views.close_period_choice(
            self.store.cursor(views.CLOSE_PERIOD_CURSOR),
            self.today(),
            self.settings.tui.close_previous_month_until_day,
        )

    def remember_close_period(self, year: int, month: int) -> None:
        """Keep the period the operator chose on Close for the next time it opens."""
        self.store.set_cursor(f"{year:04d}-{month:02d}", views.CLOSE_PERIOD_CURSOR)

    def include(self, report_id: str, reason: str) -> None:
        """Undo an exclusion, with a reason (audited with the exclusion it undoes); the report
        is evaluated again at once and posts like any other once ready."""
        if not reason.strip():
            raise ConfigError("including a report again needs a reason")
        with self.cycle_lock:
            with self.store.transaction():
                undone = self.store.include(report_id)
                if undone is None:
                    raise ConsoleError(f"report {report_id} is not excluded")
                self.audit.record(
                    "included",
                    f"included again: {reason.strip()}",
                    report_id=report_id,
                    data={
                        "excluded_reason": undone.reason,
                        "excluded_by": undone.actor,
                        "excluded_at": undone.at,
                    },
                )
            self.evaluate([report_id])
