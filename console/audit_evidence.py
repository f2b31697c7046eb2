"""Evidence bundles: one period's audit events, provable without the console's secrets.

`ml-console audit export --evidence --period 2026-11 [--out FILE]` writes one zip file
(default `ml-console-evidence-2026-11.zip`):

    manifest.json       format, period, the segment's first and last event, the events of the
                        period (their seqs), the public key (PEM and fingerprint), the SHA-256
                        of every other file
    events.jsonl        the chain segment, one stored event per line exactly as stored (its
                        `data` and `transaction_ids` are the JSON text that was hashed),
                        `prev_hash` and `hash` included
    checkpoints.json    the signed checkpoints in the segment, their signatures decoded
    vouchers.json       each voucher of the period: reference, kind, report, company, voucher
                        date, IFS voucher number, plan hash (the digest of the voucher body sent),
                        who planned it (the intent event's actor) and who confirmed it (the
                        posting event's actor, and the run it was posted in), with the seqs of
                        those events
    public_key.pem      the audit key's public half
    verify_evidence.py  the checker (console/evidence_check.py: standard library + cryptography)
    README.txt          how to verify

Events of the period: every event recorded in that calendar month (UTC), and every event of
the period's vouchers (voucher date in the period; card vouchers by their period) and of their
reports, whenever recorded. The segment runs from the first of them to the first signed
checkpoint after the last of them, every event in between included (a chain cannot be checked
with holes), so the segment's own checkpoints prove it.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console import __version__, evidence_check
from console.audit import AuditLog
from console.errors import ConfigError, ConsoleError
from console.store import LedgerEntry, Store

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PERIOD_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
INTENT_TYPES = ("intent", "reversal-planned", "card-accrual-planned", "card-reversal-planned")
ROW_FIELDS = (*evidence_check.CHAIN_FIELDS, "prev_hash", "hash")

README = """ml-console evidence bundle for period {period}

What it proves: the events in events.jsonl (seq {first}-{last}) are exactly as the console
recorded them and were signed by the audit key below at the checkpoints in checkpoints.json;
every line of vouchers.json matches the events it cites.

Audit key fingerprint: {fingerprint}
Compare it with the fingerprint you were given (`ml-console audit key` on the console's
machine). A bundle checked only with the key it carries proves nothing on its own.

Verify, with no access to the console:
    pip install cryptography
    python verify_evidence.py . --public-key YOUR-COPY-OF-THE-KEY.pem      (unpacked)
    python verify_evidence.py {name} --public-key YOUR-COPY-OF-THE-KEY.pem
or with ml-console installed:
    ml-console audit verify --evidence {name} --public-key YOUR-COPY-OF-THE-KEY.pem
Exit 0: verified. Exit 3: not verified, each problem named.
"""


class EvidenceRefused(ConsoleError):
    """The chain is broken or mis-signed: no evidence can be built on it (exit 3)."""

    exit_code = 3


@dataclass
class EvidenceSummary:
    path: Path
    period: str
    first_seq: int
    last_seq: int
    period_events: int
    vouchers: int
    fingerprint: str
    sealed: bool = False
    notes: list[str] = field(default_factory=list)


def check_period(text: str) -> str:
    if not PERIOD_RE.match(text.strip()):
        raise ConfigError(f"the period must be YYYY-MM, e.g. 2026-11; got {text!r}")
    return text.strip()


def _in_period(entry: LedgerEntry, period: str) -> bool:
    if entry.kind.startswith("card-") and entry.period:
        return entry.period == period
    return entry.voucher_date[:7] == period


def _raw_rows(store: Store) -> Iterator[dict[str, Any]]:
    for row in store.iter_audit_rows():
        yield {k: row[k] for k in ROW_FIELDS}


def _reference(row: dict[str, Any]) -> str | None:
    try:
        data = json.loads(row["data"] or "{}")
    except ValueError:
        return None
    ref = data.get("reference") if isinstance(data, dict) else None
    return ref if isinstance(ref, str) else None


def build_evidence(
    log: AuditLog, period: str, out: Path, public_key: Ed25519PublicKey
) -> EvidenceSummary:
    """Verify the chain, sign what is unsigned, and write the period's bundle to `out`."""
    period = check_period(period)
    store = log.store
    result = log.verify(public_key)
    sealed = False
    if not result.chain_intact or result.bad_checkpoint is not None:
        raise EvidenceRefused(f"no evidence from a chain that does not verify: {result.describe()}")
    if result.unproven_from is not None:
        # Unsigned newest events (a command that could not reach the keyring): sign them now.
        if log.seal(always=True) is None:
            raise EvidenceRefused(
                f"events from {result.unproven_from} on are not signed and cannot be now"
                + (f" ({log.seal_problem})" if log.seal_problem else "")
            )
        sealed = True

    entries = [
        e
        for e in store.ledger_entries(outcomes=("posted",))
        if _in_period(e, period) and e.voucher_no
    ]
    refs = {e.reference: e for e in entries}
    report_ids = {e.report_id for e in entries if e.report_id}
    wanted: set[int] = set()
    intents: dict[str, dict[str, Any]] = {}
    postings: dict[str, dict[str, Any]] = {}
    run_of: dict[int, str] = {}
    checkpoints: list[int] = []
    run_mode = ""
    for row in _raw_rows(store):
        seq = int(row["seq"])
        if row["type"] == "run-started":
            run_mode = str(row["summary"]).split(" ", 1)[0]
        if row["type"] == evidence_check.CHECKPOINT:
            checkpoints.append(seq)
            continue
        ref = _reference(row)
        mine = ref in refs if ref else False
        if mine and ref is not None:
            if row["type"] in INTENT_TYPES:
                intents[ref] = row
            elif row["voucher"]:
                postings[ref] = row
                run_of[seq] = run_mode
        if mine or str(row["at"])[:7] == period or (row["report_id"] in report_ids):
            wanted.add(seq)
    if not wanted:
        raise ConfigError(f"the audit trail holds no event of period {period}")
    first, last_needed = min(wanted), max(wanted)
    closing = next((c for c in checkpoints if c > last_needed), None)
    if closing is None:
        raise EvidenceRefused(
            f"no signed checkpoint follows event {last_needed} of the period: nothing proves it"
        )

    segment = [r for r in _raw_rows_between(store, first, closing)]
    vouchers = []
    for ref, entry in sorted(refs.items(), key=lambda kv: (kv[1].voucher_date, kv[0])):
        posted = postings.get(ref)
        if posted is None:
            continue  # posted before the audit trail recorded it (e.g. a restored file)
        intent = intents.get(ref)
        vouchers.append(
            {
                "reference": ref,
                "kind": entry.kind,
                "report_id": entry.report_id or None,
                "company": entry.company,
                "voucher_date": entry.voucher_date,
                "voucher_no": posted["voucher"],
                "plan_hash": intent["request_digest"] if intent else entry.body_digest,
                "planned_by": intent["actor"] if intent else None,
                "intent_seq": intent["seq"] if intent else None,
                "confirmed_by": posted["actor"],
                "posted_seq": posted["seq"],
                "posted_at": posted["at"],
                "run": run_of.get(int(posted["seq"]), ""),
            }
        )
    cps = []
    for row in segment:
        if row["type"] == evidence_check.CHECKPOINT:
            data = json.loads(row["data"])
            cps.append({"seq": row["seq"], "at": row["at"], **data})
    files: dict[str, bytes] = {
        "events.jsonl": "".join(
            json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in segment
        ).encode("utf-8"),
        "checkpoints.json": _json(cps),
        "vouchers.json": _json(vouchers),
        "public_key.pem": evidence_check.public_pem(public_key).encode("ascii"),
        "verify_evidence.py": resources.files("console").joinpath("evidence_check.py").read_bytes(),
    }
    fp = evidence_check.fingerprint(public_key)
    files["README.txt"] = README.format(
        period=period, first=first, last=closing, fingerprint=fp, name=out.name
    ).encode("utf-8")
    manifest = {
        "format": evidence_check.BUNDLE_FORMAT,
        "period": period,
        "console_version": __version__,
        "segment": {"first_seq": first, "last_seq": closing},
        "period_events": sorted(wanted),
        "public_key": {
            "algorithm": "Ed25519",
            "pem": evidence_check.public_pem(public_key),
            "fingerprint": fp,
        },
        "files": {name: hashlib.sha256(blob).hexdigest() for name, blob in sorted(files.items())},
    }
    files["manifest.json"] = _json(manifest)
    _write_zip(out, files)
    return EvidenceSummary(
        out, period, first, closing, len(wanted), len(vouchers), fp, sealed=sealed
    )


def _raw_rows_between(store: Store, first: int, last: int) -> Iterator[dict[str, Any]]:
    for row in _raw_rows(store):
        if first <= int(row["seq"]) <= last:
            yield row
        elif int(row["seq"]) > last:
            return


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _write_zip(out: Path, files: dict[str, bytes]) -> None:
    from console.config import secure_file

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = secure_file(out.with_name(out.name + ".part"))
    # Fixed timestamps: the same chain and period give the same bytes.
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            zf.writestr(info, files[name])
    tmp.replace(out)
