"""The session: one store, one keyring, the configured services, and the day.

Thread-safety: the TUI calls flows from worker threads; the store serialises access to
SQLite and the clients are thread-safe, but one session runs one cycle at a time (the cycle
lock, on top of the cross-process posting lock).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Self, TypeVar

from console import clock
from console.audit import AuditLog, os_user
from console.errors import ConfigError, ConsoleError
from console.expensify.models import AccrualRule, PolicyInfo
from console.ifs.models import AccountingPeriod, CodePartValue, CurrencyRate
from console.ledger import Ledger
from console.mapping import MappingOverrides
from console.store import (
    APPROVAL_MODES,
    RECONCILIATION_FILE_SYSTEM,
    DimensionRow,
    PostingLock,
    RunRow,
    Store,
    utc_now,
)
from console.validate import IfsReference

T = TypeVar("T")
log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from console.audit_keys import AuditKeys
    from console.config import Settings
    from console.credentials import ExpensifyCredentials, IfsCredentials
    from console.expensify.client import ExpensifyClient
    from console.ifs.client import IfsClient
    from console.secrets import SecretStore


# Expensify's approval mode of a Submit-and-Close workspace (reports close on submission).
SUBMIT_AND_CLOSE = "OPTIONAL"
LOCK_WAIT_S = 10.0
# The policies (categories, tags: the mapping's defaults) change rarely; a mapping the
# operator fixes in Expensify shows within this long.
POLICY_TTL_S = 900.0
POLICIES_CURSOR = "expensify-policies"


@dataclass(frozen=True)
class ServiceState:
    state: str  # ok | error | unknown
    message: str = ""


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


def expensify_client(
    settings: Settings, source: Callable[[], ExpensifyCredentials], window: Store, **extra: Any
) -> ExpensifyClient:
    """An Expensify client as configured; `window` keeps the request window shared by every
    process on the state file."""
    from console.expensify.client import ExpensifyClient

    cfg = settings.expensify
    return ExpensifyClient(
        cfg.url,
        source,
        window=window,
        limit_10s=cfg.limit_10s,
        limit_60s=cfg.limit_60s,
        timeout_s=cfg.timeout_s,
        max_wait_s=cfg.max_wait_s,
        **extra,
    )


def ifs_client(settings: Settings, source: Callable[[], IfsCredentials], **extra: Any) -> IfsClient:
    """An IFS client as configured."""
    from console.ifs.client import IfsClient, IfsEntitySets

    cfg = settings.ifs
    return IfsClient(
        cfg.url,
        cfg.realm,
        source,
        page_size=cfg.page_size,
        requests_per_minute=cfg.requests_per_minute,
        concurrency=cfg.concurrency,
        timeout_s=cfg.timeout_s,
        scope=cfg.scope,
        entity_sets=IfsEntitySets(**cfg.entity_sets.model_dump()),
        user_group=cfg.user_group,
        **extra,
    )


def _audit_keys(secrets: SecretStore | None) -> AuditKeys | None:
    """The audit signing key in the session's keyring; none without a keyring."""
    if secrets is None:
        return None
    from console.audit_keys import AuditKeys

    return AuditKeys(secrets.backend, secrets.service)


class Session:
    """What every flow works with: the settings, the store and its audit log, the posting
    lock, the clients (built lazily from the keyring), the IFS reference data read once per
    cycle, and the day the console works on. Flows (console/flows/) take a Session; nothing
    here runs a flow."""

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
        audit_keys: AuditKeys | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.secrets = secrets
        self.actor = actor
        self.clock = clock
        self.audit = AuditLog(store, actor, keys=audit_keys or _audit_keys(secrets))
        self.lock = PostingLock(str(store.path) + ".lock", actor, wait_s=lock_wait_s)
        self._expensify = expensify
        self._ifs = ifs
        self.cycle_lock = threading.RLock()
        self._policies: dict[str, PolicyInfo] | None = None
        # False during a dry run: what it reads is not kept in the store.
        self.keep_reads = True
        self._reference: IfsReference | None = None
        self._modes_read: tuple[str, dict[str, str]] | None = None
        self._service_state: dict[str, ServiceState] = {
            "expensify": ServiceState("unknown"),
            "ifs": ServiceState("unknown"),
        }
        # Whether this session's IFS tenant passed the check before posting.
        self._tenant_checked = False
        self._tenant_lock = threading.Lock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(
        cls,
        *,
        actor: str | None = None,
        lock_wait_s: float | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> Self:
        """From the configured paths (--home / ML_CONSOLE_HOME) and the OS keyring. `clock`:
        what "now" is for the store's records and the session (the machine's by default; the
        TUI passes its own, so a console on a fixed clock records on it too)."""
        now = clock or utc_now
        from console.config import load_settings
        from console.secrets import SecretStore

        loaded = load_settings()
        loaded.paths.ensure_dirs()
        settings = loaded.settings
        who = actor or settings.operator.name or os_user()
        store = Store(loaded.paths.state_file, clock=now)
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
            clock=now,
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
            cfg = self.settings.expensify
            self._expensify = expensify_client(
                self.settings,
                self._secrets().expensify_source,
                self.store,
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
            self._ifs = ifs_client(
                self.settings,
                self._secrets().ifs_source,
                batch_counts_parts=self.settings.ifs.batch_counts_parts,
            )
        return self._ifs

    def ensure_tenant(self) -> None:
        """Before this session's first posting (or anything that may write to IFS): prove
        the tenant serves every projection, entity set, attribute, navigation and action the
        client uses (`ml-console ifs check`, reading each projection's `$metadata`: at most
        one request per projection, once per process). Raises TenantDrift (exit 2) naming
        the first difference: then nothing is sent."""
        with self._tenant_lock:
            if self._tenant_checked:
                return
            from console.ifs.preflight import TenantDrift

            report = self.track("ifs", lambda: self.ifs.preflight(service_documents=False))
            if not report.ok:
                error = TenantDrift(report, outcome="nothing was posted")
                self._service_state["ifs"] = ServiceState("error", str(error))
                raise error
            self._tenant_checked = True

    def ledger(self) -> Ledger:
        """The posting ledger on this engine's store, audit log and IFS client."""
        return Ledger(self.store, self.audit, self.ifs)

    def interrupt(self) -> None:
        """Wakes work that waits for Expensify's request limit (it ends as Unreachable, nothing
        sent); safe from any thread, before close() when a worker may still be running."""
        if self._expensify is not None:
            self._expensify.cancel_waits()

    def close(self) -> None:
        # Every command that wrote events ends with a signed checkpoint over them.
        try:
            self.audit.seal()
        except (ConsoleError, sqlite3.Error, OSError) as exc:
            log.warning("audit checkpoint not written: %s", exc)
        for client in (self._expensify, self._ifs):
            if client is not None:
                client.close()
        self.lock.release()
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ stages
    def _policy_ids(self) -> list[str]:
        return list(self.settings.expensify.policies or self.settings.posting.company_by_policy)

    def track(self, service: str, call: Callable[[], T]) -> T:
        """Run a service call, remembering the service's connection state for status()."""
        try:
            result = call()
        except ConsoleError as exc:
            if getattr(exc, "service", service) == service:
                self._service_state[service] = ServiceState("error", str(exc))
            raise
        self._service_state[service] = ServiceState("ok")
        return result

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
        """The configured Expensify policies: read once per engine, and kept in the store for
        POLICY_TTL_S between engines (one `get` request at most that often)."""
        if self._policies is None:
            self._policies = self.read_policies(self._policy_ids())
        return self._policies

    def read_policies(self, ids: Sequence[str]) -> dict[str, PolicyInfo]:
        """These policies (categories, tags, employees), from the copy kept in the store
        when it is younger than POLICY_TTL_S, else read from Expensify (and kept, unless
        this is a dry run). A `--every 1m` loop opens an engine per cycle: without the
        kept copy each cycle spent one of Expensify's 20 requests a minute on them."""
        if not ids:
            return {}
        wanted = sorted(ids)
        now = self.clock().timestamp()
        raw = self.store.cursor(POLICIES_CURSOR)
        if raw:
            try:
                data = json.loads(raw)
                age = now - float(data["at"])
                if data["ids"] == wanted and 0 <= age < POLICY_TTL_S:
                    return {
                        str(k): PolicyInfo.model_validate(v) for k, v in data["policies"].items()
                    }
            except (ValueError, KeyError, TypeError):
                pass  # unreadable: read again
        policies: dict[str, PolicyInfo] = self.track(
            "expensify", lambda: self.expensify.get_policies(wanted)
        )
        if self.keep_reads:
            kept = {k: v.model_dump(mode="json") for k, v in policies.items()}
            self.store.set_cursor(
                json.dumps({"at": now, "ids": wanted, "policies": kept}), POLICIES_CURSOR
            )
        return policies

    def go_on_without_policies(self) -> None:
        """Expensify could not be read: work on without its policies for the rest of this
        session (the close reads the local copy instead and says so)."""
        self._policies = {}

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
        with self.cycle_lock:
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

    def overrides(self) -> MappingOverrides:
        return MappingOverrides.from_store_rows(self.store.mapping_rules())

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
