"""The configuration of ml-console (design.md §5): a pydantic model of config.toml, where the
files live, and loading with environment overrides.

Where values come from, weakest first: the model's defaults, the config file, then environment
variables `ML_CONSOLE_<SECTION>__<KEY>` (`ML_CONSOLE_IFS__URL`,
`ML_CONSOLE_IFS__ENTITY_SETS__VOUCHERS`).
`load_settings` reports the source of every value, so `ml-console info` can say it.

Every section forbids unknown keys, and every problem is reported as one sentence naming the
file (or environment variable) and the dotted key. The config never holds a secret: those live
in the OS keyring (console.secrets).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from console import clock
from console.errors import ConfigError
from console.line_coding import (
    CODE_PARTS,
    EMPLOYEE_FIELDS,
    LineCodingFields,
    OptionalCodePart,
)
from console.tax import TaxPostingFields

APP_NAME = "ml-console"
ENV_HOME = "ML_CONSOLE_HOME"
ENV_CONFIG = "ML_CONSOLE_CONFIG"
ENV_PREFIX = "ML_CONSOLE_"
CONFIG_FILENAME = "config.toml"
STATE_FILENAME = "state.sqlite3"
LOG_FILENAME = "ml-console.log"

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}
_REALM_RE = re.compile(r"^[A-Za-z0-9._-]+$")


def parse_duration(text: str) -> float:
    """'15m' -> 900.0; accepts s, m and h suffixes or plain seconds; must be positive."""
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (try 30s, 15m or 1h)")
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def _checked_url(url: str, service: str) -> str:
    # Imported here: console.http pulls in httpx, which `--help` and `--version` must not pay for.
    from console.http import check_url

    try:
        return check_url(url, service=service)
    except ConfigError as exc:
        # check_url names the service first; the caller's message names the key instead.
        raise ValueError(str(exc).removeprefix(f"{service}: ")) from None


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"not a time zone: {value!r} (an IANA name such as UTC, Europe/Berlin or "
            "America/New_York)"
        ) from None
    return value


def _realm(value: str) -> str:
    if not _REALM_RE.match(value):
        raise ValueError(
            "must be a realm name of letters, digits, '.', '_' or '-' (it goes into the token URL)"
        )
    return value


# Checked string types of the settings: each service's base URL as its client will use it, an
# IANA time zone, a Keycloak realm name.
ExpensifyUrl = Annotated[str, AfterValidator(lambda url: _checked_url(url, "expensify"))]
IfsUrl = Annotated[str, AfterValidator(lambda url: _checked_url(url, "ifs"))]
TimeZoneName = Annotated[str, AfterValidator(_time_zone)]
RealmName = Annotated[str, AfterValidator(_realm)]


class _Section(BaseModel):
    # Strict: a value must have its key's type as TOML writes it. `page_size = true` is not 1
    # and `batch = "yes"` is not true: both are refused, naming the key (exit 2). Only TOML
    # integers widen to floats. Environment overrides are text, converted by `_env_value`.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


def default_approved_after(today: date) -> date:
    """The first poll's start when `expensify.approved_after` is unset: the first day of the
    month before last, so a first run sees the month being closed and the one before it."""
    return clock.month_start(today, -2)


class ExpensifyConfig(_Section):
    url: ExpensifyUrl = Field(
        "https://integrations.expensify.com",
        description="base URL; the client adds /Integration-Server/...",
    )
    export_label: str = Field(
        "ml-console", min_length=1, description="the markAsExported label set after posting"
    )
    approved_after: date | None = Field(
        None,
        strict=False,  # a TOML date, or the same date quoted ("2026-10-01", as design.md writes)
        description="where the first poll starts (unset: the first day of the month before last)",
    )
    policies: list[str] = Field(
        default_factory=list,
        description="policy IDs to read (default: the keys of [posting] company_by_policy)",
    )
    timezone: TimeZoneName = Field(
        "UTC",
        description="the workspace's time zone: Expensify's approval times (UTC) become "
        "voucher dates in it",
    )
    approval_date: Literal["last-approver", "first-approver", "approved"] = Field(
        "last-approver",
        description="with several approval levels, whose date dates the accrual "
        "('approved': Expensify's own field)",
    )
    timeout_s: float = Field(60.0, gt=0, allow_inf_nan=False, description="per request")
    limit_10s: int = Field(5, ge=1, description="client rate limit: requests per 10 s")
    limit_60s: int = Field(20, ge=1, description="client rate limit: requests per 60 s")
    loop_share: float = Field(
        0.10,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="share of limit_60s an --every loop may spend over an hour; a cycle "
        "past it skips its poll",
    )
    max_wait_s: float = Field(
        120.0, gt=0, allow_inf_nan=False, description="longest wait for a rate-limit slot"
    )


class IfsEntitySetsConfig(_Section):
    """`<Projection>.svc/<EntitySet>` names, IFS Cloud 21R1's by default (docs/ifs.md)."""

    accounts: str = Field("AccountsHandling.svc/AccountSet", min_length=1)
    code_part_values: str = Field("CodePartValuesHandling.svc/CompanyFinanceSet", min_length=1)
    periods: str = Field("UserGroupPerPeriodHandling.svc/AccountingPeriodSet", min_length=1)
    currency_rates: str = Field("CurrencyRatesHandling.svc/CurrencyRateSet", min_length=1)
    currency_types: str = Field("CurrencyRatesHandling.svc/CurrencyTypeSet", min_length=1)
    voucher_entry: str = Field("VoucherEntryAssistantHandling.svc/VoucherSet", min_length=1)
    hold_vouchers: str = Field("VoucherHandling.svc/VoucherSet", min_length=1)
    hold_voucher_rows: str = Field("VoucherRowsAnalysis.svc/VoucherRowSet", min_length=1)
    gl_voucher_rows: str = Field(
        "GLVoucherRowsAnalysis.svc/GenLedVoucherRowSet",
        min_length=1,
        description="ASSUMED: GENLED's projections are not public; check it on the tenant",
    )


class IfsConfig(_Section):
    url: IfsUrl = Field("https://acme.ifs.cloud", description="tenant base URL")
    realm: RealmName = Field("acme", description="the tenant's Keycloak realm")
    page_size: int = Field(1000, ge=1, le=5000, description="$top of paged reads")
    requests_per_minute: int = Field(
        900, ge=1, description="client limit, under the tenant's ~1000 per minute"
    )
    concurrency: int = Field(4, ge=1, le=64, description="requests in flight at once")
    timeout_s: float = Field(30.0, gt=0, allow_inf_nan=False, description="per request")
    scope: str = Field("openid microprofile-jwt", description="OAuth2 scope of the token")
    entity_sets: IfsEntitySetsConfig = Field(
        default_factory=IfsEntitySetsConfig,
        description="projection entity sets, as the tenant's API Explorer names them",
    )
    batch: bool = Field(False, description="send vouchers in OData $batch requests")
    batch_size: int = Field(50, ge=1, le=1000, description="vouchers per $batch request")
    max_batch_parts: int = Field(
        1000,
        ge=10,
        description="the most requests the tenant takes in one $batch (a voucher is its rows"
        " plus 2; batches of vouchers are cut to fit, and a report too big for one is held)",
    )
    batch_counts_parts: bool = Field(
        False,
        description="whether the tenant's rate limit counts each part of a $batch (IFS publishes"
        " no limit; every voucher is a $batch of several parts, so counting them would slow"
        " posting several-fold: set true only for a tenant known to count parts)",
    )
    tenant_name: str = Field("", description="shown in the TUI header")
    user_group: str = Field(
        "AC",
        min_length=1,
        description="the voucher user group the console posts as: its vouchers carry it and"
        " a period must be open to it (IFS keeps period status per user group)",
    )


ReversalRule = Literal["next-period-start", "on-reimbursement", "none"]
# The report-level employee fields of Expensify's export (reference/expensify.md §2c).
EmployeeIdField = Literal[
    "", "employeeCustomField1", "employeeCustomField2", "submitterPayrollID", "submitterUserID"
]
VOUCHER_DATE_ALIASES = {"approval": "approved", "submission": "submitted"}


def _code_part_letter(part: str, source: str) -> str:
    """`part` as a code part letter B..J (uppercased); `source`, what maps to it, names it."""
    norm = part.strip().upper()
    if norm not in CODE_PARTS:
        raise ValueError(
            f"{source} maps to {part!r}; a code part must be one of B to J (A is the account)"
        )
    return norm


def _letters_by_source(value: dict[str, str]) -> dict[str, str]:
    """A source -> code part table with each letter B..J (uppercased); an employee field must
    be one the export carries."""
    out: dict[str, str] = {}
    for source, part in value.items():
        norm = _code_part_letter(part, repr(source))
        name = source.removeprefix("employee:")
        if source.startswith("employee:") and name not in EMPLOYEE_FIELDS:
            raise ValueError(
                f"{name!r} is not an employee field: one of {', '.join(EMPLOYEE_FIELDS)}"
            )
        out[source] = norm
    return out


class PostingConfig(_Section, TaxPostingFields, LineCodingFields):
    voucher_type: str = Field("X", min_length=1)
    voucher_date: Literal["approved", "submitted", "last-expense", "exported"] = Field(
        "approved",
        description="what dates a voucher: the approval, the submission, the last expense or"
        " the day the console posts it (a Submit-and-Close report, never approved, takes its"
        " submission for 'approved'); 'approval' and 'submission' are read as before",
    )
    employee_id_field: EmployeeIdField = Field(
        "",
        description="the Expensify employee field holding the employee's ID for the"
        " accrued-expenses row (employeeCustomField1, employeeCustomField2,"
        " submitterPayrollID, submitterUserID); empty: the row names no employee",
    )
    employee_on: Literal["code-part", "party"] = Field(
        "code-part",
        description="where the accrued-expenses row carries the employee's ID: in"
        " employee_code_part, or as the row's party (IFS's Identity, PartyTypeId)",
    )
    employee_code_part: OptionalCodePart = Field(
        "", description="the code part (B..J) of the employee on the accrued-expenses row"
    )
    accrued_expenses_account: str = Field(
        "2930", min_length=1, description="credit account for reimbursable lines"
    )
    card_clearing_account: str = Field(
        "2940", min_length=1, description="credit account for company-card lines"
    )
    card_clearing_account_by_card: dict[str, str] = Field(
        default_factory=dict,
        description="a company card's own clearing account: Expensify cardID (or the card"
        " number as the export masks it) -> account; other cards use card_clearing_account",
    )
    company_by_policy: dict[str, str] = Field(
        default_factory=dict, description="Expensify policy ID -> IFS company"
    )
    currency_by_company: dict[str, str] = Field(
        default_factory=dict,
        description="IFS company -> its accounting currency (IFS's voucher API does not serve"
        " it; a company missing here is inferred from the one currency IFS quotes no rate for)",
    )
    code_part_by_tag_level: dict[str, str] = Field(
        default_factory=lambda: {"Cost Center": "B", "Project": "C"},
        description="Expensify tag level -> IFS code part (B..J)",
    )
    code_part_by_report_field: dict[str, str] = Field(
        default_factory=dict,
        description="Expensify report field -> IFS code part (B..J), for lines whose tags"
        " leave it empty",
    )
    code_part_by_employee_field: dict[str, str] = Field(
        default_factory=dict,
        description="Expensify employee field (employeeCustomField1/2, submitterPayrollID,"
        " submitterUserID) -> IFS code part (B..J): the employee's default, after tags and"
        " report fields",
    )
    code_part_sources_by_policy: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='per policy, replaces both tables: {"report:<field>" = "B",'
        ' "employee:<field>" = "C"}',
    )
    closed_period: Literal["hold", "next-open"] = Field(
        "hold", description='a closed period: "hold" the report, or post to the "next-open"'
    )
    reversal: dict[str, ReversalRule] = Field(
        default_factory=dict,
        description="per credit account: next-period-start, on-reimbursement or none",
    )

    @field_validator("voucher_date", mode="before")
    @classmethod
    def _voucher_date(cls, value: Any) -> Any:
        # The names before issue 16 stay valid: configs written with them keep working.
        return VOUCHER_DATE_ALIASES.get(value, value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _employee_needs_a_place(self) -> PostingConfig:
        if (
            self.employee_id_field
            and self.employee_on == "code-part"
            and not self.employee_code_part
        ):
            raise ValueError(
                "employee_id_field is set and employee_on is 'code-part', but"
                " employee_code_part is not: name the code part (B..J) that carries the employee"
            )
        return self

    @field_validator("code_part_by_report_field")
    @classmethod
    def _report_field_code_parts(cls, value: dict[str, str]) -> dict[str, str]:
        return _letters_by_source(value)

    @field_validator("code_part_by_employee_field")
    @classmethod
    def _employee_field_code_parts(cls, value: dict[str, str]) -> dict[str, str]:
        _letters_by_source({f"employee:{k}": v for k, v in value.items()})  # raises if bad
        return {k: v.strip().upper() for k, v in value.items()}

    @field_validator("code_part_sources_by_policy")
    @classmethod
    def _policy_sources(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for policy, table in value.items():
            for key in table:
                kind, _, name = key.partition(":")
                if kind not in ("report", "employee") or not name.strip():
                    raise ValueError(
                        f"policy {policy!r}: {key!r} must be 'report:<field>' or 'employee:<field>'"
                    )
            out[policy] = _letters_by_source(table)
        return out

    @field_validator("company_by_policy")
    @classmethod
    def _companies(cls, value: dict[str, str]) -> dict[str, str]:
        for policy, company in value.items():
            if not policy.strip() or not company.strip():
                raise ValueError("policy IDs and companies must not be empty")
        return value

    @field_validator("code_part_by_tag_level")
    @classmethod
    def _code_parts(cls, value: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for level, part in value.items():
            norm = _code_part_letter(part, f"the tag level {level!r}")
            if norm in out.values():
                raise ValueError(f"code part {norm} is mapped from more than one tag level")
            out[level] = norm
        return out


class OperatorConfig(_Section):
    name: str = Field("", description="actor in audit events (empty: the OS user)")


class SyncConfig(_Section):
    every: str = Field("", description='default interval of --auto --every, like "15m"')
    recheck_held_s: int = Field(
        30, ge=1, description="seconds between the TUI's background re-checks of held reports"
    )
    auto_replay: bool = Field(False, description="re-post held reports once they are valid")

    @field_validator("every")
    @classmethod
    def _every(cls, value: str) -> str:
        if value.strip():
            parse_duration(value)
        return value.strip()

    @property
    def every_s(self) -> float | None:
        return parse_duration(self.every) if self.every else None


class TuiConfig(_Section):
    keys: dict[str, str] = Field(
        default_factory=dict, description="binding id -> key, remaps the TUI's bindings"
    )
    theme: str = Field("ml-console", min_length=1)
    close_previous_month_until_day: int = Field(
        10,
        ge=0,
        le=31,
        description="Close opens on the previous month through this day, then on the current"
        " one (0: always the current one)",
    )

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        for binding, key in value.items():
            if not key.strip():
                raise ValueError(f"the binding {binding!r} has an empty key")
        return value


class AlertsConfig(_Section):
    """Where the team hears about trouble (console/alerts.py). Nothing is sent while neither
    a webhook nor an e-mail recipient is set. The SMTP password is never here: it lives in the
    keyring (`ml-console alerts smtp-login`)."""

    webhook_url: str = Field(
        "",
        description="Slack/Teams incoming webhook (JSON {text}); it is a credential: "
        "keep this file private",
    )
    email_to: list[str] = Field(default_factory=list, description="e-mail recipients")
    email_from: str = Field("", description="sender address (default: ml-console@<host>)")
    smtp_host: str = Field("", description="SMTP server for e-mail alerts")
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_starttls: bool = Field(
        True,
        description="upgrade with STARTTLS before logging in (a password is only sent "
        "over TLS or to a loopback server)",
    )
    timeout_s: float = Field(10.0, gt=0, allow_inf_nan=False, description="per alert sent")
    held_after: float = Field(
        72.0,
        gt=0,
        allow_inf_nan=False,
        description="hours a report may stay held before an alert (once per report)",
    )
    stale_after: str = Field(
        "2h", description="no successful cycle for this long: alert, and `status` exits 8"
    )

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: str) -> str:
        value = value.strip()
        if value and not re.match(r"^https?://[^/\s]+", value):
            # Never echo the URL: a webhook URL carries its token.
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("email_to")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        for address in value:
            if not re.match(r"^[^@\s]+@[^@\s]+$", address):
                raise ValueError(f"not an e-mail address: {address!r}")
        return value

    @field_validator("stale_after")
    @classmethod
    def _stale(cls, value: str) -> str:
        parse_duration(value)
        return value.strip()

    @model_validator(mode="after")
    def _smtp_needed(self) -> AlertsConfig:
        if self.email_to and not self.smtp_host:
            raise ValueError("email_to is set but smtp_host is not")
        return self

    @property
    def stale_after_s(self) -> float:
        return parse_duration(self.stale_after)

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url or self.email_to)


class Settings(_Section):
    environment: str = Field("", description='"demo" for the demo')
    expensify: ExpensifyConfig = Field(default_factory=ExpensifyConfig)
    ifs: IfsConfig = Field(default_factory=IfsConfig)
    posting: PostingConfig = Field(default_factory=PostingConfig)
    operator: OperatorConfig = Field(default_factory=OperatorConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    tui: TuiConfig = Field(default_factory=TuiConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)

    # The policy list as derived at validation, to tell "still the default" from "edited"
    # after a setup screen changes company_by_policy in place.
    _derived_policies: list[str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _default_policies(self) -> Settings:
        if not self.expensify.policies and self.posting.company_by_policy:
            self.expensify.policies = list(self.posting.company_by_policy)
            self._derived_policies = list(self.expensify.policies)
        return self

    @property
    def policies_are_derived(self) -> bool:
        """True when expensify.policies is just the default, the keys of
        posting.company_by_policy (then or now): saving leaves it out so it keeps following."""
        policies = self.expensify.policies
        return policies == list(self.posting.company_by_policy) or (
            self._derived_policies is not None and policies == self._derived_policies
        )


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class Paths:
    home: Path | None
    config_file: Path
    state_file: Path
    log_dir: Path
    log_file: Path

    def ensure_dirs(self) -> None:
        """Create the home (if any), the state folder and the log folder, private (0700)."""
        if self.home is not None:
            ensure_private_dir(self.home)
        ensure_private_dir(self.state_file.parent)
        ensure_private_dir(self.log_dir)


def _env_path(environ: Mapping[str, str], name: str) -> Path | None:
    value = environ.get(name, "").strip()
    return Path(value).expanduser().absolute() if value else None


def resolve_paths(
    home: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Paths:
    """Where config, state and logs live: `home` (or $ML_CONSOLE_HOME) puts everything under
    one folder; otherwise platformdirs' user config, data and log folders. `config` (or
    $ML_CONSOLE_CONFIG) names the config file in either case."""
    env = os.environ if environ is None else environ
    home_dir = Path(home).expanduser().absolute() if home else _env_path(env, ENV_HOME)
    config_file = Path(config).expanduser().absolute() if config else _env_path(env, ENV_CONFIG)
    if home_dir is not None:
        config_dir, data_dir, log_dir = home_dir, home_dir, home_dir / "logs"
    else:
        config_dir = Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
        data_dir = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
        log_dir = Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))
    return Paths(
        home=home_dir,
        config_file=config_file or config_dir / CONFIG_FILENAME,
        state_file=data_dir / STATE_FILENAME,
        log_dir=log_dir,
        log_file=log_dir / LOG_FILENAME,
    )


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) readable by its owner only (0700); an existing
    folder of ours is tightened to 0700, since it holds financial state and logs."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            folder.mkdir(mode=0o700)
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
    if not path.is_dir():
        raise ConfigError(f"{path} exists but is not a folder")
    if path.stat().st_uid == os.getuid() and (path.stat().st_mode & 0o777) != 0o700:
        os.chmod(path, 0o700)
    return path


def secure_file(path: Path) -> Path:
    """Create `path` if missing and make it readable and writable by its owner only (0600)."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    return path


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    sources: dict[str, str]  # dotted key -> "default" | "config.toml: /path" | "env NAME"
    paths: Paths
    exists: bool  # False: no config file yet (the TUI shows setup; --auto exits 2)

    def source_of(self, key: str) -> str:
        return self.sources.get(key, "default")


class SettingsError(ConfigError):
    """One or more problems in the config; `problems` holds one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _model_field(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    """The sub-model type of field `name`, or None for a leaf (or unknown) field."""
    info = model.model_fields.get(name)
    if info is None:
        return None
    ann = info.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _leaf_kind(path: list[str]) -> str | None:
    """'list', 'dict' or 'scalar' for a known leaf key path; None if the path is unknown."""
    model: type[BaseModel] = Settings
    for i, part in enumerate(path):
        info = model.model_fields.get(part)
        if info is None:
            return None
        sub = _model_field(model, part)
        if sub is not None:
            if i == len(path) - 1:
                return "table"
            model = sub
            continue
        if i != len(path) - 1:
            return None
        origin = getattr(info.annotation, "__origin__", None)
        if origin is list:
            return "list"
        return "dict" if origin is dict else "scalar"
    return None


def leaf_keys(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[str]:
    """Every dotted key of the model whose value is not itself a section."""
    for name in model.model_fields:
        sub = _model_field(model, name)
        if sub is not None:
            yield from leaf_keys(sub, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def settings_items(settings: Settings) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every leaf of `settings`, in declaration order."""
    for key in leaf_keys():
        value: Any = settings
        for part in key.split("."):
            value = getattr(value, part)
        yield key, value


def _flatten_data(
    data: Mapping[str, Any], model: type[BaseModel] | None, prefix: str = ""
) -> Iterator[str]:
    """Dotted keys present in raw config data, descending only into known sections."""
    for key, value in data.items():
        sub = _model_field(model, key) if model is not None else None
        if sub is not None and isinstance(value, dict):
            yield from _flatten_data(value, sub, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError([f"{path}: not valid TOML: {exc}"]) from None
    except IsADirectoryError:
        raise SettingsError([f"{path}: is a folder, not a config file"]) from None
    except OSError as exc:
        raise SettingsError([f"{path}: cannot be read: {exc.strerror}"]) from None


def _env_value(name: str, raw: str, path: list[str]) -> Any:
    """An environment string as the value its key expects: lists and tables are parsed
    (JSON, a TOML inline value, or for lists plain comma-separated text); scalars stay text
    and pydantic converts them as it would a TOML string."""
    kind = _leaf_kind(path)
    if kind not in ("list", "dict", "table"):
        return _env_scalar(name, raw, path)
    text = raw.strip()
    if kind == "list" and not text.startswith("["):
        return [item.strip() for item in text.split(",") if item.strip()]
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        example = '["a", "b"]' if kind == "list" else '{ "POL-US" = "10" }'
        raise SettingsError(
            [
                f"env {name}: [{'.'.join(path[:-1])}] {path[-1]}: must be a JSON or TOML "
                f"{'list' if kind == 'list' else 'table'}, like {example}"
            ]
        ) from None


def _env_scalar(name: str, raw: str, path: list[str]) -> Any:
    """An environment string as the scalar its key expects: the settings are strict, so a
    whole number, a number or true/false is converted here (anything else stays text and the
    model names the key if it is wrong)."""
    model: type[BaseModel] = Settings
    for part in path[:-1]:
        model = _model_field(model, part) or model
    info = model.model_fields.get(path[-1])
    kind = info.annotation if info is not None else None
    text = raw.strip()
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    elif kind is int:
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
    elif kind is float:
        try:
            return float(text)
        except ValueError:
            pass
    return raw


def _env_overrides(environ: Mapping[str, str]) -> Iterator[tuple[str, list[str], str]]:
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and "__" in name[len(ENV_PREFIX) :]:
            path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
            if all(path):
                yield name, path, environ[name]


def load_settings(
    paths: Paths | None = None, *, environ: Mapping[str, str] | None = None
) -> LoadedSettings:
    """Settings from defaults, the config file (if it exists) and the environment.

    Raises SettingsError (exit 2) naming every bad key and value with where it came from.
    """
    env = os.environ if environ is None else environ
    paths = paths or resolve_paths(environ=env)
    exists = paths.config_file.exists()
    data: dict[str, Any] = _read_toml(paths.config_file) if exists else {}

    sources: dict[str, str] = dict.fromkeys(leaf_keys(), "default")
    file_label = f"{CONFIG_FILENAME}: {paths.config_file}"
    for key in _flatten_data(data, Settings):
        sources[key] = file_label

    for name, path, raw in _env_overrides(env):
        target = data
        for part in path[:-1]:
            node = target.get(part)
            if not isinstance(node, dict):
                node = target[part] = {}
            target = node
        value = target[path[-1]] = _env_value(name, raw, path)
        dotted = ".".join(path)
        sources[dotted] = f"env {name}"
        if _leaf_kind(path) == "table" and isinstance(value, dict):  # a whole section at once
            for key in sources:
                if key.startswith(dotted + "."):
                    sources[key] = f"env {name}"

    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(
            [_describe(err, sources, paths.config_file) for err in exc.errors()]
        ) from None
    if sources.get("expensify.policies") == "default" and settings.expensify.policies:
        sources["expensify.policies"] = "default (the keys of [posting] company_by_policy)"
    return LoadedSettings(settings=settings, sources=sources, paths=paths, exists=exists)


def _split_loc(loc: tuple[str, ...]) -> tuple[list[str], str, list[str]]:
    """(section path, key, rest) of an error location: rest is a dict key or list index."""
    model: type[BaseModel] = Settings
    section: list[str] = []
    for i, part in enumerate(loc):
        sub = _model_field(model, part)
        if sub is not None and i < len(loc) - 1:
            section.append(part)
            model = sub
            continue
        return section, part, list(loc[i + 1 :])
    return section[:-1], section[-1] if section else "", []


_FIXED_MESSAGES = {
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": 'must be text in quotes, like "abc"',
    "date_parsing": "must be a date like 2026-10-01",
    "date_type": "must be a date like 2026-10-01",
    "date_from_datetime_parsing": "must be a date like 2026-10-01",
    "date_from_datetime_inexact": "must be a date like 2026-10-01, without a time",
    "dict_type": 'must be a table, like { "key" = "value" }',
    "list_type": 'must be a list, like ["a", "b"]',
    "model_type": "must be a table (a [section])",
    "model_attributes_type": "must be a table (a [section])",
    "string_too_short": "must not be empty",
    "missing": "is required",
}


def _describe(err: Mapping[str, Any], sources: Mapping[str, str], config_file: Path) -> str:
    loc = tuple(str(p) for p in err["loc"])
    section, key, rest = _split_loc(loc)
    dotted = ".".join([*section, key])
    where = sources.get(dotted, "default")
    if not where.startswith("env "):  # a default is never wrong alone: blame the file
        where = str(config_file)
    header = f"[{'.'.join(section)}] " if section else ""
    kind = err["type"]
    ctx = err.get("ctx") or {}

    if kind == "extra_forbidden":
        parent: type[BaseModel] = Settings
        for part in section:
            parent = _model_field(parent, part) or parent
        known = [k for k in parent.model_fields if k != key]
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        if not section and isinstance(err.get("input"), dict):
            return f"{where}: unknown section [{key}]{hint}"
        return f"{where}: {header}unknown key '{key}'{hint}"

    if kind == "less_than_equal":
        message = f"must be at most {ctx.get('le')}"
    elif kind == "greater_than_equal":
        message = f"must be at least {ctx.get('ge')}"
    elif kind == "greater_than":
        message = f"must be more than {ctx.get('gt')}"
    elif kind == "less_than":
        message = f"must be less than {ctx.get('lt')}"
    elif kind == "literal_error":
        message = f"must be {ctx.get('expected')}"
    elif kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error") or err["msg"]).removeprefix("Value error, ")
    else:
        text = str(err["msg"])
        message = _FIXED_MESSAGES.get(kind, text[:1].lower() + text[1:])
    value = err.get("input")
    if kind != "missing" and isinstance(value, str | int | float | bool | date):
        if not (isinstance(value, float) and math.isnan(value)) and kind != "value_error":
            shown = repr(value)
            message += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    raw_rest = list(err["loc"])[len(loc) - len(rest) :]  # ints are list indexes, str dict keys
    name = key + "".join(f"[{r}]" if isinstance(r, int) else f"[{r!r}]" for r in raw_rest)
    return f"{where}: {header}{name}: {message}"


# --------------------------------------------------------------------------- saving


_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY_RE.match(key) else _toml_string(key)


def toml_value(value: Any) -> str:
    """One TOML value: scalars, dates, lists and (inline) tables of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("cannot write a non-finite number to TOML")
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ", ".join(f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _section_lines(model: BaseModel, name: str, settings: Settings) -> list[str]:
    lines = [f"[{name}]"]
    subsections: list[tuple[str, BaseModel]] = []
    for field_name, info in type(model).model_fields.items():
        value = getattr(model, field_name)
        if isinstance(value, BaseModel):
            subsections.append((f"{name}.{field_name}", value))
            continue
        comment = f"  # {info.description}" if info.description else ""
        if value is None:  # unset: TOML has no null; the key stays visible, commented out
            lines.append(f"# {_toml_key(field_name)} ={comment}")
            continue
        line = f"{_toml_key(field_name)} = {toml_value(value)}"
        if name == "expensify" and field_name == "policies" and settings.policies_are_derived:
            line = "# policies = []"  # derived from company_by_policy; stays so when that changes
        lines.append(line + comment)
    for sub_name, sub in subsections:
        lines.append("")
        lines.extend(_section_lines(sub, sub_name, settings))
    return lines


def render_settings(settings: Settings) -> str:
    """config.toml text for `settings`: every key, with a short comment where it helps."""
    lines = [
        "# ml-console configuration (design.md §5). Edit freely; unknown keys are rejected.",
        "# Secrets are never kept here: `ml-console credentials set` puts them in the keyring.",
        "",
        f"environment = {toml_value(settings.environment)}",
    ]
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            lines.append("")
            lines.extend(_section_lines(value, name, settings))
    return "\n".join(lines) + "\n"


def save_settings(settings: Settings, path: Path) -> Path:
    """Write `settings` to `path` as a readable config.toml, atomically and private (0600)."""
    path = Path(path)
    if not path.parent.exists():
        ensure_private_dir(path.parent)
    text = render_settings(settings)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path
