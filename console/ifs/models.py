"""IFS Cloud entities as the client reads and writes them (IFS PascalCase field names).

Amounts are Decimal (JSON parsed with Decimal); dates are Edm.Date (yyyy-mm-dd).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

CODE_PARTS = tuple("BCDEFGHIJ")  # A is the Account


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class CodePartValue(_Model):
    """A code part value. For code part A (an account, from AccountsHandling's AccountSet)
    also IFS's demands: `demands` maps a code part letter to "Mandatory" or "Blocked" (a
    part that can be given is left out), and `ReqQuantity`/`ReqText` say "Mandatory" when
    IFS requires a quantity or a text on the account's rows."""

    Company: str
    CodePart: str
    CodePartValue: str
    Description: str = ""
    ValidFrom: date
    ValidUntil: date
    demands: dict[str, str] = Field(default_factory=dict)
    ReqQuantity: str = "Can"
    ReqText: str = "Can"
    # Tax (console/tax.py): IFS refuses a row without a tax code on an account with
    # TaxCodeMandatory, and one with a tax code on an account whose TaxHandlingValue is Blocked.
    TaxCodeMandatory: bool = False
    TaxHandlingValue: str = "All"

    def valid_on(self, day: date) -> bool:
        return self.ValidFrom <= day <= self.ValidUntil


class AccountingPeriod(_Model):
    Company: str
    AccountingYear: int
    AccountingPeriod: int
    DateFrom: date
    DateUntil: date
    PeriodStatus: str = "Open"
    Description: str = ""

    @property
    def is_open(self) -> bool:
        return self.PeriodStatus.lower() == "open"

    @property
    def label(self) -> str:
        return f"{self.AccountingYear}-{self.AccountingPeriod:02d}"


class CurrencyRate(_Model):
    """A rate as IFS quotes it: `CurrencyRate` accounting-currency units for `ConvFactor`
    units of the currency (or the other way round when the rate type is `Inverted`)."""

    Company: str
    CurrencyCode: str
    ValidFrom: date
    CurrencyRate: Decimal
    CurrencyType: str = "1"
    ConvFactor: Decimal = Decimal(1)
    Inverted: bool = False
    # The currencies' "No of Decimals in Amount" (CurrencyCode.CurrencyRounding), read through
    # the CurrencyCodeRef references of the rate and of its rate type (the reference, i.e.
    # accounting, currency); None where the tenant did not say.
    RefCurrencyCode: str | None = None
    CurrencyRounding: int | None = None
    RefCurrencyRounding: int | None = None

    @property
    def unit_rate(self) -> Decimal:
        """Accounting-currency units for one unit of the currency."""
        factor = self.ConvFactor or Decimal(1)
        if self.Inverted:
            return factor / self.CurrencyRate if self.CurrencyRate else Decimal(0)
        return self.CurrencyRate / factor


class VoucherRow(_Model):
    RowNo: int | None = None
    Account: str
    CodeB: str | None = None
    CodeC: str | None = None
    CodeD: str | None = None
    CodeE: str | None = None
    CodeF: str | None = None
    CodeG: str | None = None
    CodeH: str | None = None
    CodeI: str | None = None
    CodeJ: str | None = None
    CurrencyCode: str
    CurrencyRate: Decimal
    CurrencyDebetAmount: Decimal | None = None
    CurrencyCreditAmount: Decimal | None = None
    DebetAmount: Decimal | None = None
    CreditAmount: Decimal | None = None
    Quantity: Decimal | None = None
    # IFS's "Identity" of the row: the employee on the accrued-expenses row when
    # posting.employee_on = "party" (console/coding.py).
    PartyTypeId: str | None = None
    Text: str = ""
    ReferenceNumber: str = ""
    # Tax (console/tax.py): the tax code and IFS's tax fields, signed like the row; IFS's own
    # tax rows, added for a row with a tax code, are read back with AutoTaxVouEntry true.
    OptionalCode: str | None = None
    TaxDirection: str | None = None
    CurrencyTaxAmount: Decimal | None = None
    TaxAmount: Decimal | None = None
    CurrencyTaxBaseAmount: Decimal | None = None
    TaxBaseAmount: Decimal | None = None
    AutoTaxVouEntry: bool | None = None


class Voucher(_Model):
    Company: str
    VoucherType: str
    VoucherNo: int | None = None
    AccountingYear: int
    AccountingPeriod: int
    VoucherDate: date
    ReferenceNumber: str = ""
    Text: str = ""
    VoucherRowArray: list[VoucherRow] = Field(default_factory=list)
    # Where IFS holds it: the hold table (not yet updated to the GL) or the general ledger.
    in_gl: bool = False
