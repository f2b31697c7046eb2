"""Alerts where the team already looks, and the health a monitor reads (`ml-console status`).

Four conditions (issue 15), checked at the end of every `--auto` cycle (`after_cycle`) and by
`ml-console alerts check`:

- **cycle-failed**: the cycle ended with an exit code other than 0 (nothing to do) and 3
  (reports held or failed): configuration, credentials, unreachable, lock, damaged state,
  unexpected. Every such cycle alerts.
- **voucher-refused**: IFS refused a voucher (a ledger entry that failed with IFS's answer)
  since the last check; the ledger id seen last is kept in the state file's cursor table.
- **held-too-long**: a report held longer than `alerts.held_after` hours; once per report
  (the IDs alerted are kept; a report released and held again later alerts again).
- **stale**: no successful sync cycle for `alerts.stale_after`; once per stale spell (until
  the next successful cycle).

Channels: a webhook (Slack and Teams incoming webhooks both take JSON `{"text": ...}`) and
e-mail over SMTP (STARTTLS by default; the login from the keyring, never the config; a
password is sent only over TLS or to a loopback server). An alert that cannot be sent is said
on stderr and never changes the cycle's exit code.

No secret reaches an alert: every text is scrubbed of the keyring's secrets, the webhook URL
and any URL's user info before it is sent (`scrub`).

Ages compare like with like: run records and holds are stamped with the machine's clock
(console/clock.py: an as-of date moves "today" only), so their ages are measured against
`clock.machine_now`; tests pass `now` or stamp their records with a fixed clock.
"""

from __future__ import annotations

import contextlib
import io
import json
import smtplib
import socket
import ssl
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, TextIO
from urllib.parse import urlsplit

from console import clock
from console.config import AlertsConfig, LoadedSettings
from console.errors import ConsoleError
from console.exitcodes import ExitCode
from console.http import is_loopback_host
from console.store import Store

HELD_ALERTED = "alerts.held_alerted"  # JSON list of report IDs alerted as held too long
LEDGER_SEEN = "alerts.ledger_seen"  # the highest ledger id checked for refusals
STALE_ALERTED = "alerts.stale_alerted"  # the last success (its finished stamp) alerted as stale
SUCCESS_MODES = ("sync",)  # a run that fetched, planned and posted: what a monitor waits for
NEVER = "never"

EXIT_MEANING = {
    ExitCode.UNEXPECTED: "unexpected error",
    ExitCode.USAGE: "configuration error or missing credential",
    ExitCode.AUTH: "authentication refused",
    ExitCode.UNREACHABLE: "a service stayed unreachable",
    ExitCode.LOCKED: "another run holds the posting lock",
    ExitCode.DAMAGED_STATE: "the local state file is damaged",
    ExitCode.STALE: "no successful cycle recently",
}
REDACTED = "[redacted]"


# ------------------------------------------------------------------ time
def parse_stamp(text: str) -> datetime:
    """A store stamp (`2026-11-30T08:00:00.000000Z`) or any ISO 8601 text, as aware UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _age_s(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    return max(0.0, (now - parse_stamp(stamp)).total_seconds())


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{int(seconds)}s"
    if seconds < 2 * 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


# ------------------------------------------------------------------ health (status)
@dataclass(frozen=True)
class Health:
    """What `ml-console status` prints and a monitor checks."""

    now: str
    today: str
    as_of: str | None
    stale_after_s: float
    last_cycle: dict[str, Any] | None
    last_success: dict[str, Any] | None
    stale: bool
    reports: dict[str, int]
    held: int
    held_by_reason: dict[str, int]
    failed: int
    oldest_wait: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def render_text(self) -> str:
        lines = [f"today {self.today}" + (f" (as of {self.as_of})" if self.as_of else "")]
        last = self.last_cycle
        if last is None:
            lines.append("last cycle: none recorded")
        else:
            state = "running" if last["finished"] is None else ("ok" if last["ok"] else "failed")
            lines.append(
                f"last cycle: #{last['id']} {last['mode']} by {last['actor']}, {state}, "
                f"started {last['started']} ({human_age(last['age_s'])} ago)"
                + (f"; error: {last['error']}" if last.get("error") else "")
            )
        success = self.last_success
        lines.append(
            "last successful sync: "
            + (
                f"#{success['id']} finished {success['finished']} "
                f"({human_age(success['age_s'])} ago)"
                if success
                else "never"
            )
        )
        lines.append(
            f"stale: {'YES' if self.stale else 'no'} "
            f"(after {human_age(self.stale_after_s)} without a successful sync)"
        )
        reasons = ", ".join(f"{code} {n}" for code, n in sorted(self.held_by_reason.items()))
        lines.append(f"held: {self.held}" + (f" ({reasons})" if reasons else ""))
        lines.append(f"failed: {self.failed}")
        wait = self.oldest_wait
        lines.append(
            "oldest wait: "
            + (
                f"report {wait['reportID']} held since {wait['since']} "
                f"({human_age(wait['age_s'])}): {wait['reason']}"
                if wait
                else "none"
            )
        )
        return "\n".join(lines) + "\n"


def _run_json(run: Any, now: datetime) -> dict[str, Any]:
    summary = run.summary or {}
    error = summary.get("error") or None
    return {
        "id": run.id,
        "mode": run.mode,
        "actor": run.actor,
        "started": run.started,
        "finished": run.finished,
        "ok": run.finished is not None and not error,
        "error": error,
        "posted": summary.get("posted"),
        "held": summary.get("held"),
        "failed": summary.get("failed"),
        "age_s": _age_s(run.finished or run.started, now),
    }


def last_success(store: Store, scan: int = 500) -> Any | None:
    """The newest finished sync run without an error, among the last `scan` runs."""
    for run in store.runs(limit=scan):
        if run.mode in SUCCESS_MODES and run.finished and not (run.summary or {}).get("error"):
            return run
    return None


def health(store: Store, stale_after_s: float, now: datetime | None = None) -> Health:
    """The console's health from the state file: last cycle, last success, holds."""
    now = now or clock.machine_now()
    runs = store.runs(limit=1)
    success = last_success(store)
    success_age = _age_s(success.finished, now) if success else None
    holds = store.holds()
    by_reason: dict[str, int] = {}
    primary: dict[str, Any] = {}
    for h in holds:
        if h.report_id not in primary:
            primary[h.report_id] = h
            by_reason[h.code] = by_reason.get(h.code, 0) + 1
    oldest = min(primary.values(), key=lambda h: (h.first_held, h.report_id), default=None)
    counts = store.status_counts()
    as_of = clock.as_of()
    return Health(
        now=now.astimezone(UTC).isoformat(timespec="seconds"),
        today=clock.today().isoformat(),
        as_of=as_of.isoformat() if as_of else None,
        stale_after_s=stale_after_s,
        last_cycle=_run_json(runs[0], now) if runs else None,
        last_success=(
            {"id": success.id, "finished": success.finished, "age_s": success_age}
            if success
            else None
        ),
        stale=success_age is None or success_age > stale_after_s,
        reports=counts,
        held=counts.get("held", 0),
        held_by_reason=by_reason,
        failed=counts.get("failed", 0),
        oldest_wait=(
            {
                "reportID": oldest.report_id,
                "reason": oldest.code,
                "since": oldest.first_held,
                "age_s": _age_s(oldest.first_held, now),
            }
            if oldest
            else None
        ),
    )


# ------------------------------------------------------------------ alerts
@dataclass(frozen=True)
class Alert:
    kind: str  # cycle-failed | voucher-refused | held-too-long | stale | test
    title: str
    lines: tuple[str, ...] = ()

    def text(self) -> str:
        return "\n".join([f"ml-console: {self.title}", *self.lines])


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (and every URL's user info) replaced by [redacted]."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    # user:password@ in any URL that slipped into an error message
    out = []
    for word in text.split(" "):
        if "://" in word and "@" in word.split("://", 1)[1].split("/", 1)[0]:
            scheme, rest = word.split("://", 1)
            word = f"{scheme}://{REDACTED}@{rest.split('@', 1)[1]}"
        out.append(word)
    return " ".join(out)


def known_secrets(secrets: Any, cfg: AlertsConfig) -> list[str]:
    """Every secret an alert must never carry: the keyring's, and the webhook URL (its path
    and query are its token)."""
    found: list[str] = []
    if cfg.webhook_url:
        parts = urlsplit(cfg.webhook_url)
        found += [cfg.webhook_url, parts.path.strip("/"), parts.query]
        found += [p for p in parts.path.split("/") if len(p) >= 8]
    if secrets is None:
        return found
    readers: list[Callable[[], str]] = [
        lambda: str(secrets.expensify().partner_user_secret.get_secret_value()),
        lambda: str(secrets.ifs().client_secret.get_secret_value()),
        lambda: str(secrets.smtp()[1].get_secret_value()),
    ]
    for read in readers:
        with contextlib.suppress(Exception):
            found.append(read())
    return found


def _where(url: str) -> str:
    """A webhook URL shown without its token: scheme and host only."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def send_webhook(url: str, text: str, timeout_s: float) -> None:
    """POST `{"text": text}` (Slack and Teams incoming webhooks). Raises AlertNotSent."""
    import httpx

    try:
        response = httpx.post(url, json={"text": text}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise AlertNotSent(f"webhook {_where(url)}: {type(exc).__name__}") from None
    if response.status_code >= 300:
        raise AlertNotSent(f"webhook {_where(url)}: HTTP {response.status_code}")


def send_email(
    cfg: AlertsConfig,
    subject: str,
    text: str,
    login: tuple[str, str] | None,
    *,
    tls_context: ssl.SSLContext | None = None,
) -> None:
    """One e-mail to `cfg.email_to` over SMTP. Raises AlertNotSent."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = cfg.email_from or f"ml-console@{socket.getfqdn()}"
    message["To"] = ", ".join(cfg.email_to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="ml-console")
    message.set_content(text)
    where = f"smtp {cfg.smtp_host}:{cfg.smtp_port}"
    try:
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s) as smtp:
            smtp.ehlo()
            if cfg.smtp_starttls:
                smtp.starttls(context=tls_context or ssl.create_default_context())
                smtp.ehlo()
            if login is not None:
                if not cfg.smtp_starttls and not is_loopback_host(cfg.smtp_host):
                    raise AlertNotSent(
                        f"{where}: a password is sent only over TLS; set "
                        "alerts.smtp_starttls = true"
                    )
                smtp.login(login[0], login[1])
            smtp.send_message(message)
    except AlertNotSent:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise AlertNotSent(f"{where}: login refused ({exc.smtp_code})") from None
    except smtplib.SMTPResponseException as exc:
        raise AlertNotSent(f"{where}: refused ({exc.smtp_code})") from None
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise AlertNotSent(f"{where}: {type(exc).__name__}: {exc}") from None


class AlertNotSent(ConsoleError):
    """An alert could not be delivered on one channel (said on stderr, never fatal)."""


@dataclass
class Alerter:
    """Sends alerts on every configured channel; a failure is said on `stderr`, not raised."""

    cfg: AlertsConfig
    secrets: Any = None  # console.secrets.SecretStore, or None (no login, nothing to scrub)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    tls_context: ssl.SSLContext | None = None  # tests: trust a local server's certificate
    sent: list[str] = field(default_factory=list)  # channel names that delivered, for callers

    def send(self, alerts: Sequence[Alert]) -> int:
        """Send each alert; returns how many deliveries failed."""
        if not alerts or not self.cfg.enabled:
            return 0
        hidden = known_secrets(self.secrets, self.cfg)
        failures = 0
        for alert in alerts:
            text = scrub(alert.text(), hidden)
            subject = scrub(f"ml-console: {alert.title}", hidden)[:200]
            for channel, deliver in self._channels(subject, text):
                try:
                    deliver()
                    self.sent.append(channel)
                except Exception as exc:  # never fail the cycle for an alert
                    failures += 1
                    reason = scrub(str(exc) or type(exc).__name__, hidden)
                    print(f"ml-console: alert not sent ({alert.kind}): {reason}", file=self.stderr)
        return failures

    def _channels(self, subject: str, text: str) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        cfg = self.cfg
        if cfg.webhook_url:
            out.append(("webhook", lambda: send_webhook(cfg.webhook_url, text, cfg.timeout_s)))
        if cfg.email_to:

            def mail() -> None:
                login = None
                if self.secrets is not None:
                    stored = self.secrets.smtp()
                    if stored is not None:
                        login = (stored[0], stored[1].get_secret_value())
                send_email(cfg, subject, text, login, tls_context=self.tls_context)

            out.append(("email", mail))
        return out


class Transcript(io.TextIOBase):
    """A stream that passes everything on to `inner` and keeps the last diagnostic lines, so
    a failed cycle's alert can say what the operator would have read on stderr."""

    def __init__(self, inner: TextIO, keep: int = 20) -> None:
        super().__init__()
        self.inner = inner
        self.keep = keep
        self.lines: list[str] = []
        self._partial = ""

    def write(self, text: str) -> int:
        self.inner.write(text)
        self._partial += text
        *done, self._partial = self._partial.replace("\r", "\n").split("\n")
        self.lines = (self.lines + [line for line in done if line.strip()])[-self.keep :]
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()


# ------------------------------------------------------------------ the conditions
def cycle_failed_alert(code: int, detail: Sequence[str]) -> Alert | None:
    if code in (ExitCode.OK, ExitCode.ATTENTION):
        return None
    try:
        meaning = EXIT_MEANING.get(ExitCode(code), "unexpected error")
    except ValueError:
        meaning = "unexpected exit"
    lines = [line.strip() for line in detail if line.strip()][-5:]
    return Alert(
        "cycle-failed",
        f"the scheduled cycle failed: exit {code} ({meaning})",
        (f"host {socket.gethostname()}", *lines),
    )


def refused_alerts(store: Store, since: datetime | None = None) -> list[Alert]:
    """Vouchers IFS refused since the last check. The first check (no cursor yet) takes those
    sent from `since` on (the cycle's start), so history is not alerted when alerts are
    switched on."""
    seen_text = store.cursor(LEDGER_SEEN)
    entries = store.ledger_entries(outcomes=("failed",))
    if seen_text is not None:
        refused = [e for e in entries if e.id > int(seen_text)]
    else:
        refused = [e for e in entries if since and parse_stamp(e.intent_at) >= since]
    refused = [e for e in refused if e.error.startswith("IFS:")]
    newest = max((e.id for e in store.ledger_entries()), default=0)
    if seen_text is None or newest > int(seen_text):
        store.set_cursor(str(newest), LEDGER_SEEN)
    if not refused:
        return []
    lines = [
        f"{e.kind} {e.reference} (company {e.company}): {e.error.removeprefix('IFS:').strip()}"
        for e in refused[:20]
    ]
    if len(refused) > 20:
        lines.append(f"... and {len(refused) - 20} more")
    return [Alert("voucher-refused", f"IFS refused {len(refused)} voucher(s)", tuple(lines))]


def held_alerts(store: Store, held_after_h: float, now: datetime) -> list[Alert]:
    """Reports held longer than `held_after_h` hours, each alerted once."""
    try:
        alerted = set(json.loads(store.cursor(HELD_ALERTED) or "[]"))
    except ValueError:
        alerted = set()
    first: dict[str, Any] = {}
    for h in store.holds():
        first.setdefault(h.report_id, h)
    # A report no longer held leaves the list: held again later, it alerts again.
    still = {rid for rid in alerted if rid in first}
    due = [
        h
        for rid, h in sorted(first.items())
        if rid not in still and (_age_s(h.first_held, now) or 0.0) > held_after_h * 3600
    ]
    if due or still != alerted:
        store.set_cursor(json.dumps(sorted(still | {h.report_id for h in due})), HELD_ALERTED)
    if not due:
        return []
    lines = [
        f"report {h.report_id}: {h.code} since {h.first_held} "
        f"({human_age(_age_s(h.first_held, now))})"
        for h in due[:20]
    ]
    if len(due) > 20:
        lines.append(f"... and {len(due) - 20} more")
    return [
        Alert(
            "held-too-long",
            f"{len(due)} report(s) held longer than {held_after_h:g}h",
            tuple(lines),
        )
    ]


def stale_alerts(store: Store, stale_after_s: float, now: datetime) -> list[Alert]:
    """No successful sync for `stale_after_s`: once per stale spell."""
    success = last_success(store)
    age = _age_s(success.finished, now) if success else None
    if age is not None and age <= stale_after_s:
        return []
    mark = success.finished if success else NEVER
    if store.cursor(STALE_ALERTED) == mark:
        return []
    store.set_cursor(str(mark), STALE_ALERTED)
    since = f"last success {success.finished} ({human_age(age)} ago)" if success else "never"
    return [
        Alert(
            "stale",
            f"no successful cycle for more than {human_age(stale_after_s)}",
            (f"host {socket.gethostname()}", since),
        )
    ]


def state_alerts(
    store: Store,
    cfg: AlertsConfig,
    now: datetime | None = None,
    since: datetime | None = None,
) -> list[Alert]:
    """The conditions read from the state file: refusals, long holds, staleness."""
    now = now or clock.machine_now()
    return [
        *refused_alerts(store, since),
        *held_alerts(store, cfg.held_after, now),
        *stale_alerts(store, cfg.stale_after_s, now),
    ]


def after_cycle(
    code: int,
    detail: Sequence[str] = (),
    *,
    started: datetime | None = None,
    stderr: TextIO | None = None,
    loaded: LoadedSettings | None = None,
    secrets: Any = None,
    now: datetime | None = None,
) -> list[Alert]:
    """The end-of-cycle hook of `--auto`: check every condition and send what applies.
    Never raises; returns the alerts it tried to send."""
    err = stderr or sys.stderr
    try:
        return _after_cycle(code, detail, err, loaded, secrets, now, started)
    except Exception as exc:
        print(f"ml-console: alerts not checked: {type(exc).__name__}: {exc}", file=err)
        return []


def _after_cycle(
    code: int,
    detail: Sequence[str],
    err: TextIO,
    loaded: LoadedSettings | None,
    secrets: Any,
    now: datetime | None,
    started: datetime | None,
) -> list[Alert]:
    from console.config import load_settings

    if loaded is None:
        try:
            loaded = load_settings()
        except ConsoleError:
            return []  # no readable config, no alert settings: the exit code says it
    cfg = loaded.settings.alerts
    if not cfg.enabled:
        return []
    if secrets is None:
        secrets = open_secrets()
    alerts: list[Alert] = []
    failed = cycle_failed_alert(code, detail)
    if failed is not None:
        alerts.append(failed)
    state_file = loaded.paths.state_file
    if state_file.exists() and code != ExitCode.DAMAGED_STATE:
        with Store(state_file) as store:
            alerts += state_alerts(store, cfg, now, started)
    Alerter(cfg, secrets, err).send(alerts)
    return alerts


def open_secrets() -> Any:
    """The keyring, or None when it cannot be opened (alerts go out without a login)."""
    from console.secrets import SecretStore

    try:
        return SecretStore()
    except ConsoleError:
        return None
