"""The one encoder and parser of the ReferenceNumber on every voucher the console posts.

design.md §4 fixes the shapes; the reference is how exactly-once, adopt, the tie-out and
the reversals find a voucher in IFS again, so every module builds and reads it here:

    EXP:{reportID}:{version}             accrual of one report (version: 8 hex digits)
    REV:{reportID}:{version}             reversal of that accrual
    REV:{reportID}:{version}:card        reversal of only its company-card credit
    CARD:{YYYY-MM}:{company}             accrual of a period's unreported card spend
    CARD-REV:{YYYY-MM}:{company}         its reversal

A report ID is free text from Expensify (colons, slashes, quotes, spaces, unicode), so a
reference is parsed from its fixed ends inward: prefix on the left, version (and the
optional `:card`) on the right, and everything between is the report ID. Splitting on the
first colon once linked report `JH16` to report `JH16:1`'s voucher.

IFS holds ReferenceNumber as TEXT of length 50 (VoucherRow.entity in IFS Cloud 21R1's
ACCRUL model; IFS databases use character length semantics). A reference longer than that
is refused with `ReferenceTooLong`, never cut: a cut reference would name another report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

REFERENCE_MAX = 50  # characters: VoucherRow.ReferenceNumber, TEXT(50)
VERSION_LENGTH = 8  # hex digits of the content version

ACCRUAL_PREFIX = "EXP:"
REVERSAL_PREFIX = "REV:"
CARD_PREFIX = "CARD:"
CARD_REVERSAL_PREFIX = "CARD-REV:"
CARD_ONLY_SUFFIX = ":card"

Kind = Literal["accrual", "reversal", "card-accrual", "card-reversal"]
KINDS: tuple[Kind, ...] = ("accrual", "reversal", "card-accrual", "card-reversal")
PREFIXES: dict[Kind, str] = {
    "accrual": ACCRUAL_PREFIX,
    "reversal": REVERSAL_PREFIX,
    "card-accrual": CARD_PREFIX,
    "card-reversal": CARD_REVERSAL_PREFIX,
}

_VERSION_RE = re.compile(rf"[0-9a-f]{{{VERSION_LENGTH}}}")
_PERIOD_RE = re.compile(r"\d{4}-\d{2}")


class ReferenceTooLong(ValueError):
    """The reference would not fit IFS's ReferenceNumber; nothing may be posted with it."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        super().__init__(
            f"the reference {reference!r} has {len(reference)} characters; IFS's"
            f" ReferenceNumber holds at most {REFERENCE_MAX}"
        )


@dataclass(frozen=True)
class Reference:
    """A parsed reference. `report_id`/`version` for report vouchers, `period`/`company` for
    card vouchers; `card_only` for the reversal of an accrual's card credit alone."""

    kind: Kind
    report_id: str = ""
    version: str = ""
    card_only: bool = False
    period: str = ""
    company: str = ""

    def encode(self) -> str:
        if self.kind == "accrual":
            text = f"{ACCRUAL_PREFIX}{self.report_id}:{self.version}"
        elif self.kind == "reversal":
            text = f"{REVERSAL_PREFIX}{self.report_id}:{self.version}"
            text += CARD_ONLY_SUFFIX if self.card_only else ""
        elif self.kind == "card-accrual":
            text = f"{CARD_PREFIX}{self.period}:{self.company}"
        else:
            text = f"{CARD_REVERSAL_PREFIX}{self.period}:{self.company}"
        return text

    @property
    def accrual(self) -> Reference:
        """The accrual this voucher reverses (itself for an accrual)."""
        if self.kind == "reversal":
            return Reference("accrual", report_id=self.report_id, version=self.version)
        if self.kind == "card-reversal":
            return Reference("card-accrual", period=self.period, company=self.company)
        return self


def _checked(text: str) -> str:
    if len(text) > REFERENCE_MAX:
        raise ReferenceTooLong(text)
    return text


def accrual(report_id: str, version: str) -> str:
    """`EXP:{reportID}:{version}`; raises ReferenceTooLong beyond IFS's length."""
    return _checked(Reference("accrual", report_id=report_id, version=version).encode())


def reversal(report_id: str, version: str, *, card_only: bool = False) -> str:
    """`REV:{reportID}:{version}[:card]`; raises ReferenceTooLong beyond IFS's length."""
    ref = Reference("reversal", report_id=report_id, version=version, card_only=card_only)
    return _checked(ref.encode())


def card_accrual(period: str, company: str) -> str:
    return _checked(Reference("card-accrual", period=period, company=company).encode())


def card_reversal(period: str, company: str) -> str:
    return _checked(Reference("card-reversal", period=period, company=company).encode())


def fits(report_id: str) -> bool:
    """Whether every reference of this report (its longest is a card-only reversal) fits."""
    longest = Reference("reversal", report_id=report_id, version="0" * VERSION_LENGTH)
    return len(longest.encode()) + len(CARD_ONLY_SUFFIX) <= REFERENCE_MAX


def max_report_id_length() -> int:
    return REFERENCE_MAX - len(REVERSAL_PREFIX) - 1 - VERSION_LENGTH - len(CARD_ONLY_SUFFIX)


def parse(text: str | None) -> Reference | None:
    """The reference this console wrote, or None for any other text (a manual voucher, an
    adopted one, a reference of another tool)."""
    if not text:
        return None
    if text.startswith(CARD_REVERSAL_PREFIX) or text.startswith(CARD_PREFIX):
        kind: Kind = "card-reversal" if text.startswith(CARD_REVERSAL_PREFIX) else "card-accrual"
        rest = text.removeprefix(CARD_REVERSAL_PREFIX if kind == "card-reversal" else CARD_PREFIX)
        period, sep, company = rest.partition(":")
        if not sep or not company or not _PERIOD_RE.fullmatch(period):
            return None
        return Reference(kind, period=period, company=company)
    for prefix, kind in ((ACCRUAL_PREFIX, "accrual"), (REVERSAL_PREFIX, "reversal")):
        if not text.startswith(prefix):
            continue
        rest = text.removeprefix(prefix)
        card_only = False
        if kind == "reversal" and rest.endswith(CARD_ONLY_SUFFIX):
            head = rest.removesuffix(CARD_ONLY_SUFFIX)
            # `REV:{id}:{v}:card`, unless the report ID itself ends so and this is `…:{v}`.
            if _VERSION_RE.fullmatch(head.rpartition(":")[2]):
                rest, card_only = head, True
        report_id, sep, version = rest.rpartition(":")
        if not sep or not report_id or not _VERSION_RE.fullmatch(version):
            return None
        return Reference(kind, report_id=report_id, version=version, card_only=card_only)
    return None


def report_of(text: str | None) -> str | None:
    """The report ID an accrual reference (`EXP:`) names; None for anything else."""
    ref = parse(text)
    return ref.report_id if ref is not None and ref.kind == "accrual" else None
