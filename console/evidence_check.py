"""Check an ml-console audit chain and its signed checkpoints, and evidence bundles.

Standalone on purpose: the Python standard library and `cryptography` only, no other module
of ml-console. `ml-console audit verify` uses it, and every evidence bundle carries a copy as
`verify_evidence.py`, so an auditor can read the ~300 lines that decide, and run them without
the console, its state file or its keyring:

    pip install cryptography
    python verify_evidence.py ml-console-evidence-2026-11.zip --public-key audit-key.pem

The chain (console/audit.py): every event's `hash` is SHA-256 of the canonical JSON (sorted
keys, no spaces, UTF-8) of `prev_hash` and the event's fields as stored; `prev_hash` is the
hash of the event before it. A checkpoint is itself an event (`type` "checkpoint") whose
`data` holds an Ed25519 signature over the canonical JSON of
`{"purpose": "ml-console audit checkpoint", "seq": N, "hash": H, "at": AT}`: N and H are the
sequence number and hash of the event just before the checkpoint, AT the checkpoint's own
`at`. A good checkpoint proves every event up to it: rewriting any of them changes H.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PURPOSE = "ml-console audit checkpoint"
CHECKPOINT = "checkpoint"
BUNDLE_FORMAT = "ml-console-evidence/1"
CHAIN_FIELDS = (
    "seq",
    "at",
    "actor",
    "type",
    "report_id",
    "transaction_ids",
    "voucher",
    "summary",
    "request_digest",
    "response_digest",
    "data",
)
GENESIS = "0" * 64


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """The hash of one stored event (its fields as stored: `data` and `transaction_ids` are
    the JSON text the store holds)."""
    payload = {"prev_hash": prev_hash, **{k: row[k] for k in CHAIN_FIELDS}}
    return hashlib.sha256(canonical(payload).encode()).hexdigest()


def checkpoint_message(seq: int, hash_: str, at: str) -> bytes:
    """The bytes a checkpoint signs: the event it covers (seq and hash) and when."""
    return canonical({"purpose": PURPOSE, "seq": seq, "hash": hash_, "at": at}).encode()


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """`SHA256:` and the hex SHA-256 of the raw 32-byte public key."""
    return "SHA256:" + hashlib.sha256(raw_public_key(key)).hexdigest()


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(text: str) -> Ed25519PublicKey:
    """A public key as `ml-console audit key` prints it (PEM, other lines around it allowed)
    or as base64 of the raw 32 bytes. Raises ValueError."""
    begin, end = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"
    if begin in text and end in text:
        pem = text[text.index(begin) : text.index(end) + len(end)]
        key = serialization.load_pem_public_key(pem.encode("ascii"))
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM public key is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ValueError("not a PEM public key nor base64 of a raw Ed25519 key") from None
    if len(raw) != 32:
        raise ValueError("a raw Ed25519 public key has 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign_fields(signature: bytes, key_fingerprint: str, seq: int, hash_: str) -> dict[str, Any]:
    """The `data` of a checkpoint event."""
    return {
        "signed_seq": seq,
        "signed_hash": hash_,
        "key": key_fingerprint,
        "signature": base64.b64encode(signature).decode("ascii"),
    }


def checkpoint_problem(row: dict[str, Any], key: Ed25519PublicKey | None) -> str | None:
    """Why this checkpoint event proves nothing, or None when it is good."""
    try:
        data = json.loads(row["data"]) if isinstance(row["data"], str) else row["data"]
        signature = base64.b64decode(str(data["signature"]), validate=True)
        signed_seq, signed_hash = int(data["signed_seq"]), str(data["signed_hash"])
        signed_by = str(data.get("key", ""))
    except (ValueError, KeyError, TypeError):
        return "is unsigned (it carries no readable signature)"
    if signed_seq != row["seq"] - 1 or signed_hash != row["prev_hash"]:
        return (
            f"signs event {signed_seq} with hash {signed_hash[:12]}…, but the chain before it "
            f"ends at event {row['seq'] - 1} with hash {str(row['prev_hash'])[:12]}…: "
            "the events before it were rewritten"
        )
    if key is None:
        return f"cannot be checked: no public key to check it with (it names {signed_by})"
    expected = fingerprint(key)
    if signed_by != expected:
        return f"is signed by key {signed_by}, not by the audit key {expected}"
    try:
        key.verify(signature, checkpoint_message(signed_seq, signed_hash, str(row["at"])))
    except InvalidSignature:
        return "is mis-signed: its signature does not verify with the audit key"
    return None


@dataclass
class ChainReport:
    """What walking a chain (or a segment of it) found."""

    first_seq: int | None = None
    last_seq: int = 0
    checked: int = 0
    first_bad_seq: int | None = None  # the hash chain breaks here
    problem: str = ""
    checkpoints: int = 0  # good checkpoints before the first bad one
    signed_through: int = 0  # the last event a good checkpoint proves (0: none)
    bad_checkpoint: int | None = None  # the first unsigned or mis-signed checkpoint
    bad_checkpoint_problem: str = ""
    key_fingerprint: str = ""

    @property
    def unproven_from(self) -> int | None:
        """The first event no good checkpoint proves, or None when every event is proven."""
        if self.checked == 0 or self.signed_through >= self.last_seq:
            return None
        return max(self.signed_through + 1, self.first_seq or 1)

    @property
    def intact(self) -> bool:
        return self.first_bad_seq is None

    @property
    def ok(self) -> bool:
        return self.intact and self.bad_checkpoint is None and self.unproven_from is None

    def describe(self) -> str:
        if self.first_bad_seq is not None:
            return f"audit chain broken at event {self.first_bad_seq}: {self.problem}"
        if self.ok:
            return (
                f"audit chain intact and signed: {self.checked} events verified, the last "
                f"signed checkpoint proves events up to {self.signed_through} "
                f"(key {self.key_fingerprint})"
            )
        parts = [f"audit chain unproven from event {self.unproven_from}"]
        if self.bad_checkpoint is not None:
            parts.append(
                f"the checkpoint at event {self.bad_checkpoint} {self.bad_checkpoint_problem}"
            )
        if self.signed_through:
            parts.append(f"the last good checkpoint proves events up to {self.signed_through}")
        else:
            parts.append("no good checkpoint proves any event")
        if self.bad_checkpoint is None:
            parts.append(
                f"events {self.unproven_from}-{self.last_seq} come after the last signed "
                "checkpoint (the next cycle or command signs them; if none is coming, "
                "checkpoints were deleted)"
            )
        return "; ".join(parts) + f" ({self.checked} events hash-checked)"


def walk(
    rows: Iterable[dict[str, Any]], key: Ed25519PublicKey | None, *, segment: bool = False
) -> ChainReport:
    """Walk events in seq order: hashes, links, and every checkpoint's signature. A whole
    chain starts at event 1 from the genesis hash; a `segment` starts wherever its first
    event does, from that event's prev_hash (its checkpoints still prove it)."""
    report = ChainReport(key_fingerprint=fingerprint(key) if key is not None else "")
    expected_prev: str | None = None if segment else GENESIS
    expected_seq: int | None = None if segment else 1
    for row in rows:
        seq = int(row["seq"])
        if report.first_seq is None:
            report.first_seq = seq
        if expected_seq is not None and seq != expected_seq:
            report.first_bad_seq = expected_seq
            report.problem = (
                f"event {expected_seq} is missing (next stored event is {seq}): deleted"
            )
            return report
        if expected_prev is not None and row["prev_hash"] != expected_prev:
            report.first_bad_seq = seq
            report.problem = "does not follow the event before it (deleted, inserted or reordered)"
            return report
        if chain_hash(row["prev_hash"], row) != row["hash"]:
            report.first_bad_seq = seq
            report.problem = f"its content was edited ({row['type']} event)"
            return report
        if row["type"] == CHECKPOINT and report.bad_checkpoint is None:
            problem = checkpoint_problem(row, key)
            if problem is None:
                report.checkpoints += 1
                report.signed_through = seq
            else:
                report.bad_checkpoint = seq
                report.bad_checkpoint_problem = problem
        expected_prev = row["hash"]
        expected_seq = seq + 1
        report.checked += 1
        report.last_seq = seq
    return report


# ---------------------------------------------------------------------- evidence bundles
@dataclass
class BundleReport:
    chain: ChainReport
    period: str = ""
    key_fingerprint: str = ""
    key_source: str = ""
    problems: list[str] = field(default_factory=list)
    vouchers: int = 0
    period_events: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        head = (
            f"evidence for period {self.period}: {self.chain.checked} events, "
            f"{self.period_events} of the period, {self.vouchers} voucher(s); "
            f"key {self.key_fingerprint} ({self.key_source})"
        )
        if self.ok:
            return (
                head + f"\nverified: events {self.chain.first_seq}-{self.chain.last_seq} are"
                " intact and signed, every voucher claim matches its events"
            )
        return head + "\nNOT verified:\n" + "\n".join(f"- {p}" for p in self.problems)


def read_bundle(path: Path) -> dict[str, bytes]:
    """The files of a bundle (a zip, or a directory it was unpacked into), by name."""
    if path.is_dir():
        return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    with zipfile.ZipFile(path) as zf:
        return {
            Path(info.filename).name: zf.read(info) for info in zf.infolist() if not info.is_dir()
        }


def _events(blob: bytes) -> Iterator[dict[str, Any]]:
    for line in io.StringIO(blob.decode("utf-8")):
        if line.strip():
            yield json.loads(line)


def verify_bundle(path: Path, public_key: Ed25519PublicKey | None = None) -> BundleReport:
    """Verify a bundle with `public_key` (the one the auditor was given), or else with the key
    the bundle carries (then compare its fingerprint with the one you were given)."""
    files = read_bundle(path)
    try:
        manifest = json.loads(files["manifest.json"])
        events = list(_events(files["events.jsonl"]))
        vouchers = json.loads(files.get("vouchers.json", b"[]"))
    except (KeyError, ValueError) as exc:
        report = BundleReport(ChainReport())
        report.problems.append(f"not an ml-console evidence bundle ({exc})")
        return report
    source = "given by you"
    if public_key is None:
        public_key = load_public_key(str(manifest["public_key"]["pem"]))
        source = "carried by the bundle: compare this fingerprint with the one you were given"
    chain = walk(events, public_key, segment=True)
    report = BundleReport(
        chain,
        period=str(manifest.get("period", "")),
        key_fingerprint=fingerprint(public_key),
        key_source=source,
        vouchers=len(vouchers),
    )
    if manifest.get("format") != BUNDLE_FORMAT:
        report.problems.append(f"unknown bundle format {manifest.get('format')!r}")
    carried = str(manifest.get("public_key", {}).get("fingerprint", ""))
    if carried != report.key_fingerprint:
        report.problems.append(
            f"the bundle names key {carried}, not the key it is checked with "
            f"{report.key_fingerprint}"
        )
    for name, want in dict(manifest.get("files", {})).items():
        got = hashlib.sha256(files.get(name, b"")).hexdigest()
        if got != want:
            report.problems.append(f"{name} does not match its SHA-256 in the manifest")
    if not chain.intact:
        report.problems.append(chain.describe())
    elif chain.bad_checkpoint is not None:
        report.problems.append(chain.describe())
    by_seq = {int(e["seq"]): e for e in events}
    period_seqs = [int(s) for s in manifest.get("period_events", [])]
    report.period_events = len(period_seqs)
    missing = [s for s in period_seqs if s not in by_seq]
    if missing:
        report.problems.append(f"events of the period missing from the bundle: {missing[:10]}")
    if period_seqs and max(period_seqs) > chain.signed_through:
        report.problems.append(
            f"event {max(period_seqs)} of the period is not proven by a signed checkpoint "
            f"(the last good checkpoint proves events up to {chain.signed_through})"
        )
    for claim in vouchers:
        report.problems.extend(_claim_problems(claim, by_seq))
    return report


def _claim_problems(claim: dict[str, Any], by_seq: dict[int, dict[str, Any]]) -> list[str]:
    """A voucher line of vouchers.json against the events it cites."""
    ref = claim.get("reference", "?")
    out: list[str] = []
    posted = by_seq.get(int(claim.get("posted_seq") or 0))
    if posted is None:
        return [f"{ref}: its posted event {claim.get('posted_seq')} is not in the bundle"]
    data = json.loads(posted["data"]) if posted["data"] else {}
    if data.get("reference") != ref or posted["voucher"] != claim.get("voucher_no"):
        out.append(
            f"{ref}: event {posted['seq']} does not record voucher {claim.get('voucher_no')}"
        )
    if posted["actor"] != claim.get("confirmed_by"):
        out.append(f"{ref}: event {posted['seq']} was not written by {claim.get('confirmed_by')}")
    intent_seq = claim.get("intent_seq")
    if intent_seq is not None:
        intent = by_seq.get(int(intent_seq))
        if intent is None:
            out.append(f"{ref}: its intent event {intent_seq} is not in the bundle")
        else:
            if intent["request_digest"] != claim.get("plan_hash"):
                out.append(f"{ref}: the plan hash differs from intent event {intent_seq}")
            if intent["actor"] != claim.get("planned_by"):
                out.append(f"{ref}: intent event {intent_seq} was not written by the planner")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`python verify_evidence.py BUNDLE [--public-key FILE]`: exit 0 verified, 3 not."""
    args = list(sys.argv[1:] if argv is None else argv)
    key: Ed25519PublicKey | None = None
    if "--public-key" in args:
        i = args.index("--public-key")
        key = load_public_key(Path(args[i + 1]).read_text(encoding="utf-8"))
        del args[i : i + 2]
    if len(args) != 1:
        print("usage: verify_evidence.py BUNDLE [--public-key FILE]", file=sys.stderr)
        return 2
    report = verify_bundle(Path(args[0]), key)
    print(report.describe())
    return 0 if report.ok else 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
