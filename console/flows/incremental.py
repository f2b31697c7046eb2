"""Re-planning incrementally: what the last plan found per report, and what it depended on.

A plan maps and validates every report still to post. After a write (a post, a mapping
change, an exclusion) most of that work would come out the same: the posted reports leave
the plan, the held ones stay held for the same reasons. `EvaluationCache` keeps, per
report, its raw content, the status its verdict left, its verdict and planned entry, and
what the verdict depended on: its policy (categories, tags, the operator's overrides), its
IFS company (currency, periods, rates) and each IFS code part value validation looked up.
The next plan re-evaluates only a report that is new or changed, whose status moved under
it, or whose inputs changed: a changed mapping re-evaluates the reports of that policy, a
new or changed IFS code part value the reports that looked that value up (a report held
for a missing dimension looked it up), changed periods or rates the reports of the company.

`AccrualReader` answers the reversal planning's read-back of posted accruals from one bulk
read per company (instead of one request per accrual) and keeps what it read between plans
of one session for a short while: the plan after posting 600 accruals whose reversals fall
due at once asks IFS once, not 600 times.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from console.expensify.models import PolicyInfo
from console.ifs.models import Voucher
from console.ledger import VoucherSender
from console.plan import HeldReport, PlanBuilder, PlannedVoucher, SkippedReport
from console.reference import ACCRUAL_PREFIX
from console.validate import CompanyReference, IfsReference

EVERYTHING = "*"  # a report whose evaluation read every value of its company
Key = tuple[str, str]  # (code part, value)
Entry = PlannedVoucher | HeldReport | SkippedReport


class _Recorder(Mapping[Key, Any]):
    """A company's code part values that note every key looked up (and whether the whole
    table was walked): what one report's validation depended on."""

    __slots__ = ("_seen", "_values")

    def __init__(self, values: Mapping[Key, Any], seen: set[Key | str]) -> None:
        self._values = values
        self._seen = seen

    def __getitem__(self, key: Key) -> Any:
        self._seen.add(key)
        return self._values[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, tuple):
            self._seen.add(key)
        return key in self._values

    def __iter__(self) -> Iterator[Key]:
        self._seen.add(EVERYTHING)
        return iter(self._values)

    def __len__(self) -> int:
        self._seen.add(EVERYTHING)
        return len(self._values)


def digest(raw_text: str) -> str:
    """A short fingerprint of a report's stored JSON (the cache keeps this, not the text)."""
    return hashlib.blake2b(raw_text.encode("utf-8"), digest_size=16).hexdigest()


def recording(ref: IfsReference, seen: set[Key | str]) -> IfsReference:
    """`ref` whose code part values record every look-up into `seen`."""
    return IfsReference(
        {
            name: replace(company, code_parts=_Recorder(company.code_parts, seen))
            for name, company in ref.companies.items()
        }
    )


@dataclass(frozen=True, slots=True)
class Cached:
    """One report's last evaluation and what it depended on."""

    raw: str  # digest() of the stored export JSON it was evaluated from
    status: str  # the status its verdict left in the store (held | ready)
    policy_id: str
    company: str
    lookups: frozenset[Key | str]
    entry: Entry

    def add_to(self, builder: PlanBuilder) -> None:
        """Put the planned entry where PlanBuilder.add put it."""
        if isinstance(self.entry, PlannedVoucher):
            builder.vouchers.append(self.entry)
        elif isinstance(self.entry, HeldReport):
            builder.held.append(self.entry)
        else:
            builder.skipped.append(self.entry)


def planned_entry(builder: PlanBuilder, sizes: tuple[int, int, int]) -> Entry | None:
    """What the builder's last add() planned, given its list sizes before it."""
    if len(builder.vouchers) > sizes[0]:
        return builder.vouchers[-1]
    if len(builder.held) > sizes[1]:
        return builder.held[-1]
    if len(builder.skipped) > sizes[2]:
        return builder.skipped[-1]
    return None


def sizes(builder: PlanBuilder) -> tuple[int, int, int]:
    return len(builder.vouchers), len(builder.held), len(builder.skipped)


@dataclass
class _Changes:
    everything: bool = False
    policies: set[str] = field(default_factory=set)
    companies: set[str] = field(default_factory=set)
    values: dict[str, set[Key]] = field(default_factory=dict)


def _company_changed(old: CompanyReference, new: CompanyReference) -> bool:
    """Anything of the company but its code part values changed (currency, periods, rates)."""
    return (
        old.currency != new.currency
        or old.periods != new.periods
        or dict(old.rates) != dict(new.rates)
    )


def _changed_values(old: Mapping[Key, Any], new: Mapping[Key, Any]) -> set[Key]:
    if old is new:
        return set()
    return {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}


class EvaluationCache:
    """Each report's last evaluation, kept between the plans of one engine (see the module
    doc). Not thread-safe by itself: the engine's cycle lock guards it."""

    def __init__(self) -> None:
        self.entries: dict[str, Cached] = {}
        self._posting: object = None
        self._policies: Mapping[str, PolicyInfo] | None = None
        self._overrides: Mapping[tuple[str, str, str], str] | None = None
        self._reference: IfsReference | None = None
        self._changes = _Changes()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self.entries.clear()

    def inputs(
        self,
        posting: object,
        policies: Mapping[str, PolicyInfo],
        overrides: Mapping[tuple[str, str, str], str],
        reference: IfsReference,
    ) -> None:
        """The inputs of this plan: note what changed since the last one."""
        changes = _Changes()
        if posting is not self._posting:
            changes.everything = True
        if self._policies is not None and policies is not self._policies:
            for pid in self._policies.keys() | policies.keys():
                if self._policies.get(pid) != policies.get(pid):
                    changes.policies.add(pid)
        if self._overrides is not None and overrides != self._overrides:
            for key in self._overrides.keys() | overrides.keys():
                if self._overrides.get(key) != overrides.get(key):
                    if key[0] == "":  # a rule for every policy
                        changes.everything = True
                    changes.policies.add(key[0])
        old_ref = self._reference
        if old_ref is not None and reference is not old_ref:
            for name in old_ref.companies.keys() | reference.companies.keys():
                old, new = old_ref.companies.get(name), reference.companies.get(name)
                if old is None or new is None or _company_changed(old, new):
                    changes.companies.add(name)
                    continue
                changed = _changed_values(old.code_parts, new.code_parts)
                if changed:
                    changes.values[name] = changed
        self._posting, self._policies, self._reference = posting, policies, reference
        self._overrides = dict(overrides)
        self._changes = changes

    def get(self, report_id: str, status: str, raw: str) -> Cached | None:
        """The cached evaluation when it still holds: same content, the status its verdict
        left, and none of its inputs changed."""
        found = self.entries.get(report_id)
        ch = self._changes
        if (
            found is None
            or found.status != status
            or found.raw != raw
            or ch.everything
            or found.policy_id in ch.policies
            or found.company in ch.companies
        ):
            self.misses += 1
            return None
        changed = ch.values.get(found.company)
        if changed and (EVERYTHING in found.lookups or not found.lookups.isdisjoint(changed)):
            self.misses += 1
            return None
        self.hits += 1
        return found

    def put(self, report_id: str, cached: Cached) -> None:
        self.entries[report_id] = cached

    def drop(self, report_id: str) -> None:
        self.entries.pop(report_id, None)

    def keep_only(self, report_ids: set[str]) -> None:
        """Forget reports no longer evaluated (posted, excluded)."""
        for rid in [r for r in self.entries if r not in report_ids]:
            del self.entries[rid]


# Below this many accruals to read back for a company, one request each is cheaper than
# reading every accrual voucher of the company.
BULK_MIN = 20
# How long a read-back accrual is trusted between plans (a cycle always reads again).
ACCRUAL_TTL_S = 600.0


class AccrualReader:
    """The reversal planning's `find_vouchers`, answered from one bulk read of the
    company's accrual vouchers (with rows) where many are wanted, kept for ACCRUAL_TTL_S.
    Everything else goes to the IFS client unchanged."""

    def __init__(
        self,
        ifs: Callable[[], VoucherSender],
        *,
        ttl_s: float = ACCRUAL_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ifs = ifs
        self.ttl_s = ttl_s
        self.clock = clock
        self._found: dict[tuple[str, str], tuple[float, list[Voucher]]] = {}
        self.requests = 0  # reads this reader sent (bulk or single), for tests and benches

    def forget(self) -> None:
        self._found.clear()

    def _fresh(self, key: tuple[str, str], now: float) -> list[Voucher] | None:
        hit = self._found.get(key)
        if hit is None or now - hit[0] > self.ttl_s:
            return None
        return hit[1]

    def prime(self, wanted: Sequence[tuple[str, str]]) -> None:
        """Read back these (reference, company) accruals ahead, in one read per company
        where at least BULK_MIN of them are not known yet."""
        now = self.clock()
        by_company: dict[str, set[str]] = {}
        for reference, company in wanted:
            if self._fresh((reference, company), now) is None:
                by_company.setdefault(company, set()).add(reference)
        ifs = self._ifs()
        bulk = getattr(ifs, "vouchers_with_prefix", None)
        if bulk is None:
            return
        for company, references in sorted(by_company.items()):
            if len(references) < BULK_MIN:
                continue
            self.requests += 1
            found: dict[str, list[Voucher]] = {r: [] for r in references}
            for v in bulk(ACCRUAL_PREFIX, company):
                if v.ReferenceNumber in found:
                    found[v.ReferenceNumber].append(v)
            for reference, vouchers in found.items():
                self._found[(reference, company)] = (now, vouchers)

    # ---- VoucherSender
    def find_vouchers(self, reference: str, company: str | None = None) -> list[Voucher]:
        now = self.clock()
        key = (reference, company or "")
        hit = self._fresh(key, now)
        if hit is not None:
            return list(hit)
        self.requests += 1
        vouchers = self._ifs().find_vouchers(reference, company)
        self._found[key] = (now, vouchers)
        return list(vouchers)

    def post_voucher(self, voucher: Mapping[str, Any]) -> Voucher:
        return self._ifs().post_voucher(voucher)

    def vouchers_dated(self, company: str, prefix: str, first: date, last: date) -> list[Voucher]:
        return self._ifs().vouchers_dated(company, prefix, first, last)
