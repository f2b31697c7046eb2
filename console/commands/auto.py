"""`ml-console --auto`: one headless sync cycle (or one per interval with --every).

stdout carries data only: the `--json` summary, or with `--dry-run` the plan as text. Every
diagnostic goes to stderr; a progress line only when stderr is a terminal. Structured log lines
(one JSON object each, never a secret) go to the log file, created 0600.

Exit codes (design.md §2), the first that applies: 2 configuration (a missing credential
included), 7 the state file is damaged (console/state_check.py), 4 authentication refused,
5 unreachable after bounded retries, 6 the posting lock is held, 3 reports held or failed,
0 nothing needs attention, 1 unexpected.

`--every` runs a cycle per interval until SIGTERM or SIGINT, which stop it cleanly between
cycles; a failed cycle is logged and the loop goes on; each cycle opens the engine afresh, so
a secret rotated in the keyring (or a corrected config) is picked up.

The posting lock wait: `ML_CONSOLE_LOCK_WAIT_S` seconds (default 10).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO, cast

from console.errors import AuthError, ConfigError, ConsoleError, LockHeld, Unreachable
from console.exitcodes import ExitCode
from console.textsafe import visible_text

if TYPE_CHECKING:
    from console.flows.cycle import Engine

LOCK_WAIT_ENV = "ML_CONSOLE_LOCK_WAIT_S"
log = logging.getLogger("ml_console")


# ------------------------------------------------------------------ logging
class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: at, level, logger, message, and any `fields` extra."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.levelno >= logging.ERROR:
            entry["traceback"] = "".join(traceback.format_exception(*record.exc_info))[-4000:]
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup_file_log(path: Path) -> logging.Handler | None:
    """Structured log lines to `path` (0600, in a 0700 folder). None when it cannot be opened
    (the run goes on; the reason is said on stderr)."""
    from console.config import ensure_private_dir, secure_file

    try:
        ensure_private_dir(path.parent)
        secure_file(path)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    except (OSError, ConsoleError) as exc:
        print(f"ml-console: cannot write the log file {path}: {exc}", file=sys.stderr)
        return None
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    # httpx logs every request URL at INFO; URLs carry no secret, but keep the file readable.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    return handler


# ------------------------------------------------------------------ progress
class ProgressLine:
    """A one-line progress bar on stderr, only where stderr is a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self._shown = False

    def __call__(self, p: Any) -> None:
        if not self.enabled or not p.total:
            return
        width = 30
        filled = int(width * p.done / p.total)
        bar = "█" * filled + "·" * (width - filled)
        self.stream.write(f"\rposting [{bar}] {p.done}/{p.total} {p.report_id:<12}")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False


# ------------------------------------------------------------------ one cycle
def exit_code_for(exc: BaseException) -> ExitCode:
    from console.state_check import DamagedState

    if isinstance(exc, ConfigError):
        return ExitCode.USAGE
    if isinstance(exc, DamagedState):
        return ExitCode.DAMAGED_STATE
    if isinstance(exc, AuthError):
        return ExitCode.AUTH
    if isinstance(exc, Unreachable):
        return ExitCode.UNREACHABLE
    if isinstance(exc, LockHeld):
        return ExitCode.LOCKED
    return ExitCode.UNEXPECTED


def lock_wait_s() -> float:
    raw = os.environ.get(LOCK_WAIT_ENV, "").strip()
    if not raw:
        return 10.0
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ConfigError(
            f"env {LOCK_WAIT_ENV}: must be a number of seconds (got {raw!r})"
        ) from None


def open_engine(actor: str = "auto") -> Engine:
    """The engine for a headless run: config must exist and both credentials be set."""
    from console.config import load_settings
    from console.errors import MissingCredential
    from console.flows.cycle import Engine
    from console.secrets import SecretStore
    from console.store import Store

    loaded = load_settings()
    if not loaded.exists:
        raise ConfigError(
            f"no config file at {loaded.paths.config_file}; run `ml-console` once to set up, "
            "or write one (see `ml-console info`)"
        )
    secrets = SecretStore()
    for service in ("expensify", "ifs"):
        if not secrets.has(service):
            flag = "--user-id ID" if service == "expensify" else "--client-id ID"
            raise MissingCredential(
                f"no {service} credentials in the keyring; set them with: "
                f"ml-console credentials set {service} {flag} --secret-stdin"
            )
    loaded.paths.ensure_dirs()
    store = Store(loaded.paths.state_file)
    return Engine(loaded.settings, store, secrets, actor=actor, lock_wait_s=lock_wait_s())


def run_once(
    args: argparse.Namespace,
    *,
    stdout: TextIO,
    stderr: TextIO,
    opener: Callable[[], Engine] = open_engine,
) -> int:
    """One cycle; prints its data on stdout and returns the exit code."""
    dry_run = bool(getattr(args, "dry_run", False))
    as_json = bool(getattr(args, "json", False))
    progress = ProgressLine(stderr)
    try:
        engine = opener()
    except ConsoleError as exc:
        print(f"ml-console: {exc}", file=stderr)
        log.error("cycle not started", extra={"fields": {"error": str(exc)}})
        return int(exit_code_for(exc))
    try:
        # A cycle of `--every` spares Expensify's request budget (Engine.run_cycle).
        scheduled = bool(getattr(args, "every", None))
        summary = engine.run_cycle(dry_run=dry_run, progress=progress, scheduled=scheduled)
    except ConsoleError as exc:
        progress.close()
        print(f"ml-console: {visible_text(str(exc))}", file=stderr)
        log.error("cycle failed", extra={"fields": {"error": str(exc), "kind": type(exc).__name__}})
        return int(exit_code_for(exc))
    except Exception as exc:
        progress.close()
        from console.state_check import classify

        damaged = classify(exc, engine.store.path)
        if damaged is not None:  # the disk filled up, the file turned read-only or bad
            print(f"ml-console: {damaged}", file=stderr)
            log.error("cycle failed", extra={"fields": {"error": str(damaged)}})
            return int(ExitCode.DAMAGED_STATE)
        said = visible_text(str(exc))
        print(f"ml-console: unexpected error: {type(exc).__name__}: {said}", file=stderr)
        log.error("cycle failed unexpectedly", exc_info=True)
        return int(ExitCode.UNEXPECTED)
    finally:
        engine.close()
    progress.close()
    data = summary.to_json()
    if as_json:
        stdout.write(json.dumps(data, default=str) + "\n")
    elif dry_run and summary.plan is not None:
        # The diff shows names, categories and tags from Expensify: never a live escape.
        stdout.write(visible_text(summary.plan.render_text().rstrip("\n")) + "\n")
    stdout.flush()
    for warning in summary.warnings:
        print(f"ml-console: warning: {visible_text(warning)}", file=stderr)
    print(
        f"ml-console: {'dry run: ' if dry_run else ''}fetched {summary.fetched}, "
        f"{'planned ' + str(summary.planned) if dry_run else 'posted ' + str(summary.posted)}, "
        f"already posted {summary.already_posted}, held {summary.held}, failed {summary.failed}",
        file=stderr,
    )
    log.info(
        "cycle finished",
        extra={
            "fields": {
                k: data[k]
                for k in (
                    "dry_run",
                    "fetched",
                    "posted",
                    "already_posted",
                    "held",
                    "failed",
                    "unchanged",
                    "requests",
                )
            }
        },
    )
    return int(ExitCode.ATTENTION if summary.needs_attention else ExitCode.OK)


def run_auto_command(
    args: argparse.Namespace,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    opener: Callable[[], Engine] = open_engine,
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    handler = None
    try:
        from console.config import resolve_paths

        handler = setup_file_log(resolve_paths().log_file)
    except ConsoleError as exc:
        print(f"ml-console: {exc}", file=err)
        return int(exit_code_for(exc))
    try:
        every = getattr(args, "every", None)
        if not every:
            return run_alerted(args, out, err, opener)
        return _loop(args, float(every), out, err, opener)
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def run_alerted(
    args: argparse.Namespace, out: TextIO, err: TextIO, opener: Callable[[], Any]
) -> int:
    """One cycle, then the alerts (console/alerts.py: [alerts] in config); an alert never
    changes the exit code."""
    from console.alerts import Transcript, after_cycle

    started = datetime.now(UTC)
    transcript = Transcript(err)
    code = run_once(args, stdout=out, stderr=cast(TextIO, transcript), opener=opener)
    after_cycle(code, transcript.lines, started=started, stderr=err)
    return code


def _loop(
    args: argparse.Namespace,
    every_s: float,
    out: TextIO,
    err: TextIO,
    opener: Callable[[], Engine],
    wait: Callable[[threading.Event, float], bool] | None = None,
) -> int:
    """A cycle per `every_s` until a signal; `wait(stop, seconds)` waits between cycles and
    says whether to stop (default: the stop event's wait; bench/latency_bench.py drives the
    loop on a simulated clock with its own)."""
    stop = threading.Event()
    pause = wait or (lambda event, seconds: event.wait(seconds))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        print("ml-console: stopping after this cycle", file=err)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    cycles = 0
    try:
        while not stop.is_set():
            cycles += 1
            code = run_alerted(args, out, err, opener)
            log.info("loop cycle done", extra={"fields": {"cycle": cycles, "exit_code": code}})
            if code == ExitCode.USAGE and cycles == 1:
                return code  # a config that never worked will not start working by waiting
            if pause(stop, every_s):
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("loop stopped", extra={"fields": {"cycles": cycles}})
    return 0 if code in (ExitCode.OK, ExitCode.ATTENTION) else code
