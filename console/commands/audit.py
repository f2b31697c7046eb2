"""`ml-console audit verify | key | export`: the audit trail without the TUI.

- `audit verify [--public-key FILE]`: hashes and signed checkpoints of the local chain, with
  the audit key from the keyring (or the given public key). Exit 0 intact and signed; 3 broken
  or unproven, naming the first bad event or checkpoint and the first unproven event.
- `audit verify --evidence BUNDLE [--public-key FILE]`: an evidence bundle, with no state file,
  config or keyring (an auditor's machine).
- `audit key`: the audit key's public half (PEM) and fingerprint, for auditors; creates the
  key in the keyring on first use.
- `audit export [--format jsonl|csv] [--output FILE] [--report ID]`: events as they are.
- `audit export --evidence --period YYYY-MM [--out FILE]`: the period's evidence bundle.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.errors import ConfigError, ConsoleError
from console.exitcodes import ExitCode
from console.textsafe import visible_text

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def run_audit_command(args: argparse.Namespace) -> int:
    try:
        if args.audit_command == "verify":
            if getattr(args, "evidence", None):
                return _verify_bundle(args)
            return _verify(args)
        if args.audit_command == "key":
            return _key(args)
        if args.audit_command == "export":
            if getattr(args, "evidence", False):
                return _export_evidence(args)
            return _export(args)
        raise ConfigError(f"unknown audit command {args.audit_command!r}")
    except ConsoleError as exc:
        from console.commands.auto import exit_code_for

        print(f"ml-console: {exc}", file=sys.stderr)
        return int(exit_code_for(exc))


def _given_key(args: argparse.Namespace) -> Ed25519PublicKey | None:
    path = getattr(args, "public_key", None)
    if not path:
        return None
    from console.evidence_check import load_public_key

    try:
        return load_public_key(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the public key {path}: {exc}") from None


def _open_log() -> Any:
    from console.audit import AuditLog
    from console.audit_keys import AuditKeys
    from console.commands.state import _actor, _open_store

    loaded, store = _open_store()
    return AuditLog(store, _actor(loaded), keys=AuditKeys())


def _verify(args: argparse.Namespace) -> int:
    given = _given_key(args)
    log = _open_log()
    try:
        try:
            result = log.verify(given)
        except ConsoleError as exc:  # the keyring cannot be read: say so, check the hashes
            from console.audit import AuditLog

            result = AuditLog(log.store, log.actor).verify()
            text = visible_text(
                f"{result.describe()}; the signed checkpoints could not be checked ({exc}); "
                "pass the auditor's copy of the key with --public-key FILE"
            )
            sys.stdout.write(text + "\n")
            print(f"ml-console: {text}", file=sys.stderr)
            return int(ExitCode.ATTENTION)
    finally:
        log.store.close()
    said = visible_text(result.describe())  # event text is outside data: never raw
    sys.stdout.write(said + "\n")
    if result.ok:
        return int(ExitCode.OK)
    print(f"ml-console: {said}", file=sys.stderr)
    return int(ExitCode.ATTENTION)


def _verify_bundle(args: argparse.Namespace) -> int:
    from console.evidence_check import verify_bundle

    path = Path(args.evidence)
    if not path.exists():
        raise ConfigError(f"no evidence bundle at {path}")
    try:
        report = verify_bundle(path, _given_key(args))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the evidence bundle {path}: {exc}") from None
    sys.stdout.write(visible_text(report.describe()) + "\n")
    if report.ok:
        return int(ExitCode.OK)
    print(f"ml-console: evidence bundle {path} NOT verified", file=sys.stderr)
    return int(ExitCode.ATTENTION)


def _key(args: argparse.Namespace) -> int:
    from console.audit_keys import AuditKeys
    from console.evidence_check import fingerprint, public_pem

    key = AuditKeys().public_key(create=True)
    assert key is not None
    sys.stdout.write(f"fingerprint: {fingerprint(key)}\n{public_pem(key)}")
    print(
        "ml-console: the audit trail's Ed25519 public key; hand it (or its fingerprint) to "
        "your auditors through a channel of their choosing",
        file=sys.stderr,
    )
    return int(ExitCode.OK)


def _export(args: argparse.Namespace) -> int:
    from console.audit import AuditLog
    from console.commands.state import _actor, _open_store

    if getattr(args, "period", None):
        raise ConfigError("--period goes with --evidence")
    loaded, store = _open_store()
    try:
        log = AuditLog(store, _actor(loaded))
        if args.output:
            from console.config import secure_file

            path = secure_file(Path(args.output))
            with path.open("w", encoding="utf-8", newline="") as fh:
                n = log.export(fh, args.format, report_id=args.report)
        else:
            n = log.export(sys.stdout, args.format, report_id=args.report)
    finally:
        store.close()
    print(f"ml-console: exported {n} event(s)", file=sys.stderr)
    return int(ExitCode.OK)


def _export_evidence(args: argparse.Namespace) -> int:
    from console.audit_evidence import build_evidence, check_period

    if not args.period:
        raise ConfigError("--evidence needs --period YYYY-MM")
    period = check_period(args.period)
    out = Path(args.output or f"ml-console-evidence-{period}.zip")
    log = _open_log()
    try:
        key = log.keys.public_key(create=False)
        if key is None:
            raise ConfigError(
                "the keyring holds no audit signing key, so nothing is signed to prove; "
                "run a cycle first (or `ml-console audit key`)"
            )
        summary = build_evidence(log, period, out, key)
    finally:
        log.store.close()
    sys.stdout.write(f"{summary.path}\n")
    print(
        f"ml-console: evidence for {summary.period} written to {summary.path}: events "
        f"{summary.first_seq}-{summary.last_seq} ({summary.period_events} of the period), "
        f"{summary.vouchers} voucher(s), key {summary.fingerprint}"
        + ("; the newest events were signed first" if summary.sealed else ""),
        file=sys.stderr,
    )
    return int(ExitCode.OK)
