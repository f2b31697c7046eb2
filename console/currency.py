"""IFS's currency rules: how a transaction-currency amount becomes an accounting amount.

IFS Cloud 21R1 (ACCRUL's CurrencyAmount.plsql, `Calc_Amount`; docs/currency.md):
- a rate is quoted for `ConvFactor` units of the currency (JPY per 100: rate 0.6650 USD for
  100 JPY) and the accounting amount is ``amount × (rate / ConvFactor)``;
- where the company's accounting currency (the rate type's reference currency) is marked
  `Inverted` ("inverted quotation when reference currency"), the rate says how many units of
  the currency one `ConvFactor` of accounting currency buys, and the accounting amount is
  ``amount × (1 / (rate / ConvFactor))``;
- amounts are rounded with Oracle's ROUND (half away from zero, which is Decimal's
  ROUND_HALF_UP) to the currency's `CurrencyRounding` ("No of Decimals in Amount").

Pure: no I/O. Money stays Decimal.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, localcontext

from console.ifs.models import CurrencyRate

ONE = Decimal(1)

# ISO 4217 minor units that are not 2, for a currency IFS told us nothing about (its
# CurrencyRounding always wins). IFS's own company templates set these the same way.
_ISO_DECIMALS: Mapping[str, int] = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI"),
        0,
    ),
    **dict.fromkeys(("VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}


def iso_decimals(currency: str) -> int:
    """ISO 4217's number of decimals of a currency (2 where the table has no exception)."""
    return _ISO_DECIMALS.get(currency.upper(), 2)


def round_to(amount: Decimal, decimals: int) -> Decimal:
    """Oracle's ROUND(amount, decimals): half away from zero, to `decimals` places."""
    return amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class CurrencyRule:
    """How one currency converts into a company's accounting currency on one day.

    `rate` is IFS's `CurrencyRate` as quoted (per `conv_factor` units, inverted or not);
    `decimals` and `accounting_decimals` are the two currencies' `CurrencyRounding`."""

    currency: str
    accounting_currency: str
    rate: Decimal = ONE
    conv_factor: Decimal = ONE
    inverted: bool = False
    decimals: int = 2
    accounting_decimals: int = 2

    @property
    def same_currency(self) -> bool:
        return self.currency == self.accounting_currency

    @property
    def unit_rate(self) -> Decimal:
        """Accounting-currency units for one unit of the currency (for display and bounds)."""
        if self.same_currency:
            return ONE
        factor = self.conv_factor or ONE
        with localcontext() as ctx:
            ctx.prec = 34
            if self.inverted:
                return factor / self.rate
            return self.rate / factor

    def transaction_amount(self, amount: Decimal) -> Decimal:
        """An amount in the currency, rounded to the currency's decimals."""
        return round_to(amount, self.decimals)

    def accounting_amount(self, amount: Decimal) -> Decimal:
        """IFS's Calc_Amount: the currency amount in the accounting currency, rounded to
        the accounting currency's decimals. Computed in one exact step (multiply first,
        divide once) so that no intermediate quotient is cut short."""
        if self.same_currency:
            return round_to(amount, self.accounting_decimals)
        factor = self.conv_factor or ONE
        with localcontext() as ctx:
            ctx.prec = 60
            exact = amount * factor / self.rate if self.inverted else amount * self.rate / factor
        return round_to(exact, self.accounting_decimals)

    def describe(self) -> str:
        """'0.6650 USD per 100 JPY', '1.2700 USD per 1 GBP (inverted: …)' for the dry run."""
        if self.same_currency:
            return f"{self.currency} (rate 1)"
        factor = format(self.conv_factor.normalize(), "f")
        if self.inverted:
            return (
                f"{self.rate} {self.currency} per {factor} {self.accounting_currency} "
                "(inverted quotation)"
            )
        return f"{self.rate} {self.accounting_currency} per {factor} {self.currency}"


def same_currency_rule(currency: str, decimals: int) -> CurrencyRule:
    """A report in the company's own currency: rate 1, the currency's decimals on both sides."""
    return CurrencyRule(currency, currency, decimals=decimals, accounting_decimals=decimals)


@dataclass(frozen=True)
class CurrencyBook:
    """One company's rates (IFS's CurrencyRate rows of the default rate type, by currency
    and ValidFrom) and its currencies' decimals, as read once per cycle."""

    rates: Mapping[str, tuple[tuple[date, ...], tuple[CurrencyRate, ...]]] = field(
        default_factory=dict
    )
    decimals: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, rates: Iterable[CurrencyRate]) -> dict[str, CurrencyBook]:
        """Per company: its rates and every decimals IFS gave (the rate's currency's and the
        rate type's reference currency's CurrencyRounding)."""
        by_day: dict[str, dict[str, dict[date, CurrencyRate]]] = {}
        decimals: dict[str, dict[str, int]] = {}
        for r in rates:
            by_day.setdefault(r.Company, {}).setdefault(r.CurrencyCode, {})[r.ValidFrom] = r
            known = decimals.setdefault(r.Company, {})
            if r.CurrencyRounding is not None:
                known[r.CurrencyCode] = r.CurrencyRounding
            if r.RefCurrencyCode and r.RefCurrencyRounding is not None:
                known[r.RefCurrencyCode] = r.RefCurrencyRounding
        out: dict[str, CurrencyBook] = {}
        for company, currencies in by_day.items():
            ordered = {
                code: (tuple(sorted(days)), tuple(days[d] for d in sorted(days)))
                for code, days in currencies.items()
            }
            out[company] = cls(ordered, decimals.get(company, {}))
        return out

    def decimals_of(self, currency: str) -> int:
        """IFS's CurrencyRounding of the currency; ISO 4217's where IFS did not say."""
        found = self.decimals.get(currency)
        return found if found is not None else iso_decimals(currency)

    def rule_on(self, currency: str, accounting_currency: str, day: date) -> CurrencyRule | None:
        """The rule for a report in `currency` dated `day`: rate 1 in the company's own
        currency; otherwise IFS's rate with the latest ValidFrom on or before `day` (None
        when there is none, or it is not positive)."""
        if currency == accounting_currency:
            return same_currency_rule(currency, self.decimals_of(currency))
        entry = self.rates.get(currency)
        if entry is None:
            return None
        days, rows = entry
        i = bisect.bisect_right(days, day) - 1
        if i < 0 or rows[i].CurrencyRate <= 0:
            return None
        row = rows[i]
        return CurrencyRule(
            currency=currency,
            accounting_currency=accounting_currency,
            rate=row.CurrencyRate,
            conv_factor=row.ConvFactor if row.ConvFactor > 0 else ONE,
            inverted=row.Inverted,
            decimals=self.decimals_of(currency),
            accounting_decimals=self.decimals_of(accounting_currency),
        )


def rule_for(
    rule: CurrencyRule | None, currency: str, accounting_currency: str, unit_rate: Decimal
) -> CurrencyRule:
    """The rule a voucher is planned with: the validated one, or (where the caller had only a
    rate per unit) that rate with two decimals on both sides, as before IFS's rules were read."""
    if rule is not None:
        return rule
    if currency == accounting_currency:
        return CurrencyRule(currency, currency)
    return CurrencyRule(currency, accounting_currency, rate=unit_rate)


def line_amounts(rule: CurrencyRule, expensify_amount: Decimal) -> tuple[Decimal, Decimal]:
    """(currency amount, accounting amount) of one line, signs kept. Expensify's amount is in
    hundredths of any currency (docs/currency.md): it is rounded to the currency's decimals
    first, and the accounting amount converts what is posted in the currency."""
    posted = rule.transaction_amount(expensify_amount)
    return posted, rule.accounting_amount(posted)
