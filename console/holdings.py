"""What IFS holds of this console's vouchers, against what the local state knows.

The state file is a record, not the truth: IFS is. A state file lost, restored from an older
backup or swapped in from another home knows fewer vouchers than IFS holds, and its cycles
would otherwise forget the reversals those vouchers are due (a reversal is planned from the
ledger's posted accruals). `Holdings` is one read of IFS (console/flows/holdings.py) turned
into what the state lacks — each voucher of ours IFS holds that the ledger has no posted
(or possibly posted) entry for — and the references IFS holds more than once (two
installations posting at the same instant: only a lock in IFS could prevent that, so it is
reported, never hidden). Pure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from console.ifs.models import Voucher
from console.ledger import voucher_label
from console.reference import Reference
from console.reference import parse as parse_reference

GROUP_REIMBURSABLE = "reimbursable"  # console/reversal.py's credit groups
GROUP_CARD = "card"


@dataclass(frozen=True)
class Held:
    """One voucher of ours IFS holds."""

    reference: Reference
    text: str  # the ReferenceNumber
    voucher: Voucher

    @property
    def label(self) -> str:
        return voucher_label(self.voucher)


@dataclass
class Holdings:
    """Vouchers of ours IFS holds (one per ReferenceNumber: the first; the others are in
    `twice`)."""

    held: dict[str, Held] = field(default_factory=dict)
    twice: dict[str, tuple[str, ...]] = field(default_factory=dict)  # reference → labels
    read: int = 0  # vouchers read

    @classmethod
    def of(cls, vouchers: Iterable[Voucher]) -> Holdings:
        out = cls()
        labels: dict[str, list[str]] = defaultdict(list)
        for v in vouchers:
            out.read += 1
            parsed = parse_reference(v.ReferenceNumber)
            if parsed is None:
                continue  # a manual voucher, or a reference of another tool
            labels[v.ReferenceNumber].append(voucher_label(v))
            out.held.setdefault(v.ReferenceNumber, Held(parsed, v.ReferenceNumber, v))
        out.twice = {ref: tuple(ls) for ref, ls in sorted(labels.items()) if len(ls) > 1}
        return out

    def of_kind(self, *kinds: str) -> list[Held]:
        return [h for _ref, h in sorted(self.held.items()) if h.reference.kind in kinds]

    def unknown(self, known: Iterable[str]) -> list[Held]:
        """The vouchers whose reference the state does not know (`known`: the references of
        its posted or possibly posted ledger entries)."""
        seen = set(known)
        return [h for ref, h in sorted(self.held.items()) if ref not in seen]


def twice_warnings(twice: Mapping[str, Sequence[str]]) -> list[str]:
    """One sentence per reference IFS holds more than once."""
    return [
        f"IFS holds {ref} {len(labels)} times (vouchers {', '.join(labels)}): another"
        " installation posted it at the same moment, or it was entered by hand; reverse all"
        " but one in IFS (docs/reliability.md)"
        for ref, labels in twice.items()
    ]


def reversed_groups(held: Held, accrued_account: str, card_account: str) -> tuple[str, ...]:
    """The credit groups a reversal IFS holds reversed: `:card` names the card credit alone;
    otherwise its balancing rows' accounts say (an accrual of card lines only is reversed
    under the plain reference)."""
    if held.reference.card_only:
        return (GROUP_CARD,)
    accounts = {r.Account for r in held.voucher.VoucherRowArray}
    groups = [
        g
        for g, account in ((GROUP_REIMBURSABLE, accrued_account), (GROUP_CARD, card_account))
        if account in accounts
    ]
    return tuple(groups) or (GROUP_REIMBURSABLE,)


def card_amount(voucher: Voucher, card_account: str) -> tuple[Decimal, str]:
    """(expense net in the voucher's currency, currency) of a card accrual IFS holds: what
    the ledger records as its amount."""
    total = Decimal("0")
    currency = ""
    for row in voucher.VoucherRowArray:
        currency = currency or row.CurrencyCode
        if row.Account == card_account:
            continue
        total += (row.CurrencyDebetAmount or Decimal("0")) - (
            row.CurrencyCreditAmount or Decimal("0")
        )
    return total, currency
