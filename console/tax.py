"""Tax: Expensify's tax on a line → IFS's tax code, its net and its recoverable tax.

How IFS takes tax on a manual voucher (its 21R1 model and server code; docs/tax.md): a row
carries the tax code (`OptionalCode`), `TaxDirection` (`TaxReceived` for input tax on a cost
account), the tax in both currencies (`CurrencyTaxAmount`, `TaxAmount`, signed like the row)
and the base (`CurrencyTaxBaseAmount`, `TaxBaseAmount`). IFS then adds the tax row itself
(`AutoTaxVouEntry` true, account from its posting control AP1 for the code) and records the
tax item its VAT return reads. So the console sends the expense row at its net with those
fields, never a tax row of its own; the plan shows the row IFS will add (`kind="tax"`), which
balances the voucher and is left out of the POST body.

Per line (pure, no I/O):
- a line on an account in `tax_exempt_accounts` posts its gross with no tax code;
- an Expensify tax code maps to an IFS tax code through `tax_code_by_policy[policy]`, then
  `tax_code_by_expensify`; no Expensify tax code takes the policy's `""` entry, then
  `default_tax_code` (empty: no tax code); an Expensify code neither table names holds the
  report (`unmapped-tax:{code}`);
- an IFS code in `non_recoverable_tax_codes` keeps the tax in the expense: the row posts the
  gross with the code and a tax of 0 (IFS's tax code has Deductible 0 %);
- otherwise the row posts gross − tax, and IFS posts the tax.

Expensify's `taxAmount` is in the line's own currency (as `amount`); a line converted to the
report currency has its tax converted in the same proportion (`convertedAmount / amount`),
rounded half-up to the cent, so net + tax = the converted gross exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from pydantic import BaseModel, Field, field_validator


class Hold(NamedTuple):
    """A tax problem as console.mapping.Hold takes it (`Hold(*problem)`): this module sits
    below the stages (it is part of the config), so it names holds without importing them."""

    code: str
    message: str
    transaction_id: str = ""


TAX_RECEIVED = "TaxReceived"  # IFS's TaxDirection for input tax (cost and asset accounts)
ZERO = Decimal("0.00")
NO_CODE = ""  # the key of a policy's table for lines without an Expensify tax code


class TaxPostingFields(BaseModel):
    """The `[posting]` keys of tax (console.config.PostingConfig takes them in)."""

    tax_code_by_expensify: dict[str, str] = Field(
        default_factory=dict, description="Expensify tax code -> IFS tax code (every policy)"
    )
    tax_code_by_policy: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='per Expensify policy: Expensify tax code -> IFS tax code; "" names the '
        "code of lines without an Expensify tax code",
    )
    default_tax_code: str = Field(
        "",
        description="IFS tax code of lines without an Expensify tax code (empty: none; for "
        "accounts IFS demands a tax code on, a no-tax or 0 % code)",
    )
    tax_exempt_accounts: list[str] = Field(
        default_factory=list,
        description="accounts whose lines post their gross without a tax code",
    )
    non_recoverable_tax_codes: list[str] = Field(
        default_factory=list,
        description="IFS tax codes whose tax stays in the expense (Deductible 0 % in IFS)",
    )

    @field_validator("tax_code_by_expensify")
    @classmethod
    def _codes(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_table(value, "tax_code_by_expensify")

    @field_validator("tax_code_by_policy")
    @classmethod
    def _policy_codes(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for policy, table in value.items():
            if not policy.strip():
                raise ValueError("tax_code_by_policy has an empty policy ID")
            _check_table(table, f"tax_code_by_policy.{policy}", allow_no_code=True)
        return value

    @field_validator("default_tax_code")
    @classmethod
    def _default(cls, value: str) -> str:
        if value and not value.strip():
            raise ValueError("default_tax_code is blank; leave it empty or name an IFS tax code")
        _check_length(value.strip(), "default_tax_code")
        return value.strip()

    @field_validator("tax_exempt_accounts", "non_recoverable_tax_codes")
    @classmethod
    def _no_blanks(cls, value: list[str]) -> list[str]:
        if any(not v.strip() for v in value):
            raise ValueError("an entry is empty; name an IFS account or tax code")
        return [v.strip() for v in value]


IFS_TAX_CODE_MAX = 20  # VoucherRow's OptionalCode (VARCHAR2(20) in IFS)


def _check_length(code: str, where: str) -> None:
    if len(code) > IFS_TAX_CODE_MAX:
        raise ValueError(
            f"{where}: IFS tax code {code!r} is longer than IFS's {IFS_TAX_CODE_MAX} characters"
        )


def _check_table(
    table: dict[str, str], where: str, *, allow_no_code: bool = False
) -> dict[str, str]:
    for source, target in table.items():
        if not source.strip() and not allow_no_code:
            raise ValueError(f"{where} has an empty Expensify tax code")
        if not target.strip():
            raise ValueError(
                f"{where}: the Expensify tax code {source!r} maps to an empty IFS code"
            )
        _check_length(target.strip(), where)
    return {k.strip(): v.strip() for k, v in table.items()}


@dataclass(frozen=True)
class LineTax:
    """A line's tax as the voucher takes it: amounts in report-currency minor units, signed
    like the line (a refund's tax is negative)."""

    code: str  # IFS tax code ("" where the row carries none)
    expensify_code: str
    gross_minor: int
    tax_minor: int  # Expensify's tax on the line, in report currency
    recoverable: bool  # False: the tax stays in the expense (or no code carries it)

    @property
    def posted_tax_minor(self) -> int:
        """The tax IFS posts to its tax account (0 where it stays in the expense)."""
        return self.tax_minor if self.recoverable and self.code else 0


def _report_tax_minor(tx: Any) -> int:
    """Expensify's tax of a line in the report currency, signed like the posted amount."""
    raw = tx.taxAmount or 0
    gross = tx.posted_amount
    if raw == 0 or gross == 0:
        return 0
    if tx.convertedAmount is not None and tx.amount and tx.convertedAmount != tx.amount:
        converted = Decimal(abs(raw)) * Decimal(abs(tx.convertedAmount)) / Decimal(abs(tx.amount))
        magnitude = int(converted.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    else:
        magnitude = abs(raw)
    return magnitude if gross > 0 else -magnitude


def line_tax(
    report: Any, tx: Any, account: str | None, posting: TaxPostingFields
) -> tuple[LineTax | None, Hold | None]:
    """The tax of one line (an ExportReport's ExportTransaction) under the posting config,
    or the hold that stops it."""

    tables: Mapping[str, Mapping[str, str]] = posting.tax_code_by_policy
    by_expensify: Mapping[str, str] = posting.tax_code_by_expensify
    default: str = posting.default_tax_code
    exempt: list[str] = posting.tax_exempt_accounts
    non_recoverable: list[str] = posting.non_recoverable_tax_codes
    policy_table = tables.get(report.policyID, {})
    expensify_code = tx.taxCode.strip()
    tax_minor = _report_tax_minor(tx)
    gross = tx.posted_amount
    where = f"report {report.reportID}, line {tx.transactionID}"
    if tax_minor and abs(tax_minor) >= abs(gross):
        return None, Hold(
            "malformed:tax-exceeds-amount",
            f"Report {report.reportID}: line {tx.transactionID} has tax {tax_minor} cents on an "
            f"amount of {gross} cents; correct the tax in Expensify.",
            tx.transactionID,
        )
    if account is not None and account in exempt:
        return LineTax("", expensify_code, gross, tax_minor, False), None
    if not expensify_code:
        code = policy_table.get(NO_CODE) or default
        if tax_minor and not code:
            return None, Hold(
                "unmapped-tax:(none)",
                f"The expense {where} carries tax ({tax_minor} cents) without an Expensify "
                f'tax code; set default_tax_code or a "" entry in tax_code_by_policy for '
                f"{report.policyID} in the posting config.",
                tx.transactionID,
            )
    else:
        found = policy_table.get(expensify_code) or by_expensify.get(expensify_code)
        if not found:
            name = tx.taxRateName or tx.taxName
            named = f" ({name})" if name else ""
            return None, Hold(
                f"unmapped-tax:{expensify_code}",
                f"The expense {where} has Expensify tax code '{expensify_code}'{named}, which "
                f"has no IFS tax code: add it to tax_code_by_expensify (or to "
                f"tax_code_by_policy for {report.policyID}) in the posting config.",
                tx.transactionID,
            )
        code = found
    if not code:
        return None, None
    return LineTax(code, expensify_code, gross, tax_minor, code not in non_recoverable), None


# ---------------------------------------------------------------- the row's tax fields


@dataclass(frozen=True, slots=True)
class RowTax:
    """IFS's tax fields of an expense row (VoucherPosting), signed as IFS wants them: the
    tax and base have the sign of the row (debit positive)."""

    code: str
    currency_tax: Decimal
    tax: Decimal
    currency_base: Decimal
    base: Decimal
    direction: str = TAX_RECEIVED

    def to_ifs(self) -> dict[str, Any]:
        return {
            "OptionalCode": self.code,
            "TaxDirection": self.direction,
            "CurrencyTaxAmount": self.currency_tax,
            "TaxAmount": self.tax,
            "CurrencyTaxBaseAmount": self.currency_base,
            "TaxBaseAmount": self.base,
        }


def row_tax(
    lt: LineTax,
    to_major: Callable[[int], Decimal],
    to_accounting: Callable[[Decimal], Decimal],
) -> RowTax:
    """The row's tax fields: `to_major` turns report-currency minor units into a Decimal,
    `to_accounting` a signed report-currency amount into the accounting currency (as the
    planner rounds it)."""
    currency_tax = to_major(lt.posted_tax_minor)
    # Gross and tax rounded each (a currency with fewer decimals than Expensify's hundredths),
    # so that base + tax = gross exactly (IFS's base: the amount without the tax).
    currency_base = to_major(lt.gross_minor) - to_major(lt.tax_minor)
    return RowTax(
        code=lt.code,
        currency_tax=currency_tax,
        tax=to_accounting(currency_tax),
        currency_base=currency_base,
        base=to_accounting(currency_base),
    )


# ---------------------------------------------------------------- IFS's demands per account


def demand_holds(
    company: str, found: Any, account: str, tax_code: str, where: str, tid: str
) -> list[Hold]:
    """Holds for what IFS demands of an account's rows about tax (AccountsHandling's
    TaxCodeMandatory and TaxHandlingValue), given the tax code a row carries ("" for none):
    IFS refuses such a row at posting (TAXCODEMAND3, ACCOUNTBLOCKED)."""

    if not tax_code and getattr(found, "TaxCodeMandatory", False):
        return [
            Hold(
                f"account-demand:{account}:tax",
                f"{where}: IFS company {company} requires a tax code on account {account}, and "
                "this row has none; map the line's Expensify tax code (tax_code_by_expensify), "
                "set default_tax_code for lines without one, or change the account's tax "
                "demand in IFS.",
                tid,
            )
        ]
    if tax_code and getattr(found, "TaxHandlingValue", "All") == "Blocked":
        return [
            Hold(
                f"account-demand:{account}:tax-blocked",
                f"{where}: IFS company {company} blocks tax codes on account {account}, and "
                f"this row carries {tax_code}; list the account in tax_exempt_accounts or "
                "change its tax handling in IFS.",
                tid,
            )
        ]
    return []
