"""Money helpers: integer minor units and Decimal, never float."""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")


def loads(text: str | bytes) -> Any:
    """Parse JSON with every number that has a fraction or exponent as Decimal."""
    return json.loads(text, parse_float=Decimal)


_MARK = "\u0000DEC:"
_MARK_RE = re.compile(r'"\\u0000DEC:(-?[0-9.]+)"')


def dumps(obj: Any, **kwargs: Any) -> str:
    """Serialise JSON with Decimals as exact JSON numbers (no float round trip)."""
    return _MARK_RE.sub(r"\1", json.dumps(_to_jsonable(obj), **kwargs))


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return _MARK + format(obj, "f")
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_jsonable(v) for v in obj]
    return obj


def minor_to_decimal(minor: int, exponent: int = 2) -> Decimal:
    """12345 cents -> Decimal('123.45')."""
    return (Decimal(minor) / (Decimal(10) ** exponent)).quantize(Decimal(1).scaleb(-exponent))


def decimal_to_minor(value: Decimal, exponent: int = 2) -> int:
    """Decimal('123.45') -> 12345; rounds half-up to the currency's minor unit."""
    q = value.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_UP)
    return int(q.scaleb(exponent))


def round_cents(value: Decimal) -> Decimal:
    """Round half-up to the cent."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def fmt_decimal(value: Decimal | None, currency: str = "", *, decimals: int = 2) -> str:
    """Decimal('1234.5') -> '1,234.50'; None -> ''; with a currency: '1,234.50 USD'. To a
    currency's own decimals where it has other than 2: Decimal('6173'), 0 -> '6,173'."""
    if value is None:
        return ""
    return f"{value:,.{decimals}f} {currency}".rstrip()


def fmt(minor: int, currency: str = "") -> str:
    """12345 -> '123.45', -5 -> '-0.05'; with a currency: '123.45 USD'."""
    text = f"{minor_to_decimal(minor):,.2f}"
    return f"{text} {currency}".rstrip()


Sides = tuple[Decimal | None, Decimal | None, Decimal | None, Decimal | None]


def row_sides(cur: Decimal, acc: Decimal) -> Sides:
    """A voucher row's (currency debit, currency credit, debit, credit) for signed amounts,
    debit positive, on one side (console.plan.row_pieces splits them so): the side follows
    the currency amount, and a currency-zero rounding row follows the accounting amount.
    Amounts are non-negative; the unused side is None."""
    if cur > 0 or (cur == 0 and acc > 0):
        return abs(cur), None, abs(acc), None
    return None, abs(cur), None, abs(acc)
