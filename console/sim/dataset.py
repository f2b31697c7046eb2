"""The simulators' world: one JSON dataset file, each side in its own system's vocabulary.

Shape fixed by design.md §3. Extra keys are allowed (and kept); the known keys mean what they
say and are validated, so a bad file is rejected with a message naming the bad key.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class DatasetError(ValueError):
    """A dataset file that cannot be loaded; the message names the bad key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


# ---------------------------------------------------------------- Expensify side
def credential_change(body: Any, id_key: str, secret_key: str) -> tuple[str, str | None]:
    """A control request that sets, rotates or revokes a credential: `{id, secret}` sets or
    rotates (the secret is returned), `{id, "revoke": true}` revokes (None is returned).
    ValueError says what is wrong, never echoing a value: it may be a real secret."""
    usage = f"expected {{{id_key!r}, {secret_key!r}}} or {{{id_key!r}, 'revoke': true}}"
    if not isinstance(body, dict):
        raise ValueError(f"credentials: {usage}")
    unknown = sorted(str(k) for k in set(body) - {id_key, secret_key, "revoke"})
    if unknown:
        raise ValueError(f"credentials: unknown key(s) {', '.join(unknown)}; {usage}")
    ident, secret, revoke = body.get(id_key), body.get(secret_key), body.get("revoke", False)
    if not isinstance(ident, str) or not ident.strip():
        raise ValueError(f"{id_key}: a non-empty string is required; {usage}")
    if not isinstance(revoke, bool):
        raise ValueError("revoke: true or false")
    if revoke:
        if secret_key in body:
            raise ValueError(f"credentials: either {secret_key} or revoke, not both")
        return ident, None
    if not isinstance(secret, str) or not secret:
        raise ValueError(f"{secret_key}: a non-empty string is required; {usage}")
    return ident, secret


class ExpensifyCredential(_Model):
    partnerUserID: str
    partnerUserSecret: str


class Category(_Model):
    name: str
    glCode: str = ""
    enabled: bool = True
    payrollCode: str = ""


class Tag(_Model):
    name: str
    glCode: str = ""
    enabled: bool = True


class TagLevel(_Model):
    name: str
    tags: list[Tag] = Field(default_factory=list)


class Employee(_Model):
    email: str
    role: str = "user"
    submitsTo: str = ""
    firstName: str = ""
    lastName: str = ""
    employeeID: str = ""  # Expensify fills the employee's Custom Field 1 with it
    customField2: str = ""
    payrollID: str = ""


class ReportField(_Model):
    name: str
    type: str = "text"
    values: list[str] = Field(default_factory=list)


class Policy(_Model):
    id: str
    name: str
    outputCurrency: str = "USD"
    type: str = "corporate"
    owner: str = ""
    role: str = "admin"
    # The policy list's approvalMode: OPTIONAL (Submit and Close: reports close on submission,
    # never approved), BASIC (Submit and Approve) or ADVANCED.
    approvalMode: str = "BASIC"
    categories: list[Category] = Field(default_factory=list)
    tags: list[TagLevel] = Field(default_factory=list)
    employees: list[Employee] = Field(default_factory=list)
    reportFields: list[ReportField] = Field(default_factory=list)


class Approver(_Model):
    email: str = ""
    date: str = ""


class Units(_Model):
    """Expensify's `units` of a distance or per-diem expense: how many, at what rate (cents
    per unit), of what ("mi", "km", "day")."""

    count: Decimal
    rate: int | None = None
    unit: str = ""


class Transaction(_Model):
    transactionID: str
    merchant: str = ""
    modifiedMerchant: str | None = None
    amount: int
    modifiedAmount: int | None = None
    currency: str = "USD"
    convertedAmount: int | None = None
    currencyConversionRate: Decimal | None = None
    category: str = ""
    categoryGlCode: str | None = None
    tag: str = ""
    tagGlCode: str | None = None
    created: str = ""
    modifiedCreated: str | None = None
    inserted: str | None = None
    reimbursable: bool = True
    billable: bool = False
    # Expensify's tax fields: the tax in the line's amount (integer minor units, in the
    # line's currency), the tax rate's code and name (reference/expensify.md §2c).
    taxAmount: int | None = None
    taxCode: str | None = None
    taxName: str | None = None
    taxRateName: str | None = None
    comment: str = ""
    cardID: str | None = None
    cardNumber: str | None = None
    mcc: str | None = None
    receiptID: str | None = None
    receiptURL: str | None = None
    # A distance or per-diem line's units (Expensify's `units`: count, rate, unit).
    units: Units | None = None

    @field_validator("amount", "modifiedAmount", "convertedAmount", "taxAmount", mode="before")
    @classmethod
    def _integer_minor_units(cls, v: Any) -> Any:
        # Money is integer minor units; reject 12.5 rather than silently truncating it.
        if isinstance(v, float) or (isinstance(v, Decimal) and v != v.to_integral_value()):
            raise ValueError("amounts are integer minor units (cents)")
        return v


VALID_STATES = ("OPEN", "SUBMITTED", "APPROVED", "REIMBURSED", "ARCHIVED", "REJECTED")


class Report(_Model):
    reportID: str
    policyID: str
    reportName: str = ""
    accountEmail: str = ""
    managerEmail: str = ""
    currency: str = "USD"
    status: str = "APPROVED"
    created: str = ""
    submitted: str = ""
    approved: str | None = None
    reimbursed: str | None = None
    # The approval levels, first to last (each with its date); none: one, at `approved`.
    approvers: list[Approver] = Field(default_factory=list)
    # The report's fields by template name (`customField.<Field_Name>`), name -> value.
    customField: dict[str, str] = Field(default_factory=dict)
    exportLabels: list[str] = Field(default_factory=list)
    transactionList: list[Transaction] = Field(default_factory=list)

    @field_validator("reportID", mode="before")
    @classmethod
    def _id_as_string(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    @field_validator("status")
    @classmethod
    def _known_state(cls, v: str) -> str:
        if v not in VALID_STATES:
            raise ValueError(
                f"unknown report status {v!r}; expected one of {', '.join(VALID_STATES)}"
            )
        return v

    @property
    def total(self) -> int:
        return sum(
            t.convertedAmount if t.convertedAmount is not None else t.amount
            for t in self.transactionList
        )


class CardTransaction(_Model):
    """A company-card expense not on any report (Expensify's reconciliation data): the card it
    came from and the expense. `amount` follows the reconciliation sign convention, inverted
    (a purchase is negative, a refund positive); `modifiedAmount` likewise, 0 or absent when
    the amount was not edited. `reportID` 0 is unreported, negative is deleted."""

    cardID: str
    cardName: str = ""
    bank: str = ""
    owner: str  # the email the card is assigned to
    maskedPAN: str = ""
    transactionID: str
    reportID: int = 0
    amount: int
    modifiedAmount: int | None = None
    currency: str = "USD"
    posted: str  # yyyy-MM-dd, the day the bank posted it
    created: str = ""  # the sale date
    modifiedCreated: str | None = None
    merchant: str = ""
    modifiedMerchant: str | None = None
    category: str = ""
    tag: str = ""
    comment: str = ""
    externalID: str = ""
    reimbursable: bool = False
    billable: bool = False

    @field_validator("cardID", "transactionID", mode="before")
    @classmethod
    def _id_as_string(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("amount", "modifiedAmount", mode="before")
    @classmethod
    def _integer_minor_units(cls, v: Any) -> Any:
        if isinstance(v, float) or (isinstance(v, Decimal) and v != v.to_integral_value()):
            raise ValueError("amounts are integer minor units (cents)")
        return v

    @field_validator("posted")
    @classmethod
    def _posted_date(cls, v: str) -> str:
        try:
            date.fromisoformat(v)
        except ValueError:
            raise ValueError(f"posted is a date yyyy-MM-dd, got {v!r}") from None
        return v


class ExpensifyWorld(_Model):
    credentials: list[ExpensifyCredential] = Field(default_factory=list)
    policies: list[Policy] = Field(default_factory=list)
    reports: list[Report] = Field(default_factory=list)
    # Company-card expenses not on any report (the reconciliation export's report ID 0).
    cardTransactions: list[CardTransaction] = Field(default_factory=list)


# ---------------------------------------------------------------- IFS side
class IfsClient(_Model):
    client_id: str
    client_secret: str


_DEMAND = {"K", "M", "S"}  # IFS's AccountRequest: can, mandatory, blocked (database values)


class CodePartValue(_Model):
    """A code part value; on code part A (an account) also IFS's demands per code part
    (`ReqCodeB`…`ReqCodeJ`: K can, M mandatory, S blocked) and for quantity and text (K, M)."""

    CodePart: str
    CodePartValue: str
    Description: str = ""
    ValidFrom: date = date(2000, 1, 1)
    ValidUntil: date = date(2099, 12, 31)
    ReqCodeB: str = "K"
    ReqCodeC: str = "K"
    ReqCodeD: str = "K"
    ReqCodeE: str = "K"
    ReqCodeF: str = "K"
    ReqCodeG: str = "K"
    ReqCodeH: str = "K"
    ReqCodeI: str = "K"
    ReqCodeJ: str = "K"
    ReqQuantity: str = "K"
    ReqText: str = "K"
    TaxCodeMandatory: bool = False
    TaxHandlingValue: Literal["All", "Restricted", "Blocked"] = "All"

    @field_validator("CodePart")
    @classmethod
    def _code_part_letter(cls, v: str) -> str:
        if v not in tuple("ABCDEFGHIJ"):
            raise ValueError("CodePart must be one of A..J")
        return v

    @field_validator(*(f"ReqCode{c}" for c in "BCDEFGHIJ"))
    @classmethod
    def _demand(cls, v: str) -> str:
        if v not in _DEMAND:
            raise ValueError("a code part demand is K (can), M (mandatory) or S (blocked)")
        return v

    @field_validator("ReqQuantity", "ReqText")
    @classmethod
    def _demand_km(cls, v: str) -> str:
        if v not in ("K", "M"):
            raise ValueError("a quantity or text demand is K (can) or M (mandatory)")
        return v

    def demands(self) -> dict[str, str]:
        """Code part letter → K/M/S, for the code parts B..J."""
        return {c: str(getattr(self, f"ReqCode{c}")) for c in "BCDEFGHIJ"}


class Period(_Model):
    AccountingYear: int
    AccountingPeriod: int
    DateFrom: date
    DateUntil: date
    PeriodStatus: str = "Open"
    Description: str = ""


class CurrencyRate(_Model):
    CurrencyCode: str
    ValidFrom: date
    CurrencyRate: Decimal
    CurrencyType: str = "1"
    ConvFactor: Decimal = Decimal(1)  # the number of currency units the rate is quoted for


class TaxCode(_Model):
    """An IFS tax code (StatutoryFee): its rate and deductible share in percent, its type
    (`Tax`, or `NoTax` for exempt and out-of-scope codes), and the account IFS's posting
    control (AP1, tax received) gives its tax rows."""

    FeeCode: str = Field(min_length=1, max_length=20)
    Description: str = ""
    FeeRate: Decimal = Decimal(0)
    Deductible: Decimal = Decimal(100)
    FeeType: Literal["Tax", "NoTax"] = "Tax"
    Account: str = ""


class Currency(_Model):
    """A currency code's decimals and whether its rates are quoted inverted."""

    CurrencyCode: str
    Decimals: int = Field(default=2, ge=0, le=6)  # IFS: CurrencyRounding
    # IFS: "inverted quotation when reference currency": on the company's own currency it
    # turns every rate of the company round (amount × ConvFactor / rate).
    Inverted: bool = False
    ConvFactor: Decimal = Field(default=Decimal(1), gt=0)  # the currency's default factor


class UserGroupPeriod(_Model):
    AccountingYear: int
    AccountingPeriod: int
    PeriodStatus: str = "Open"


class UserGroup(_Model):
    """A voucher user group with its own status per period; a period it does not list has
    the period's own status."""

    UserGroup: str
    periods: list[UserGroupPeriod] = Field(default_factory=list)


class VoucherType(_Model):
    VoucherType: str
    Description: str = ""
    ApprovalRequired: bool = False  # vouchers of this type wait for approval before the GL


class Company(_Model):
    Company: str
    Name: str = ""
    CurrencyCode: str = "USD"
    code_part_values: list[CodePartValue] = Field(default_factory=list)
    periods: list[Period] = Field(default_factory=list)
    currency_rates: list[CurrencyRate] = Field(default_factory=list)
    voucher_types: list[VoucherType] = Field(default_factory=lambda: [VoucherType(VoucherType="X")])
    currencies: list[Currency] = Field(default_factory=list)
    user_groups: list[UserGroup] = Field(default_factory=list)
    tax_codes: list[TaxCode] = Field(default_factory=list)


class IfsWorld(_Model):
    realm: str = "demo"
    clients: list[IfsClient] = Field(default_factory=list)
    token_lifetime_s: int = 3600
    companies: list[Company] = Field(default_factory=list)
    # Seconds after which an approved voucher is updated to the general ledger (IFS's
    # "Update GL" run); None: only on POST /__sim/update-gl.
    gl_update_delay_s: float | None = Field(default=None, ge=0)


class Dataset(_Model):
    expensify: ExpensifyWorld = Field(default_factory=ExpensifyWorld)
    ifs: IfsWorld = Field(default_factory=IfsWorld)


def validation_message(err: ValidationError, what: str, *, prefix: str = "") -> str:
    """A control request's rejection, one line: `{prefix}{what}: loc: msg; …` (first five)."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or what}: {e['msg']}" for e in err.errors()[:5]]
    return f"{prefix}{what}: " + "; ".join(parts)


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"{source}: not a valid dataset:"]
    for e in err.errors()[:10]:
        loc = ".".join(str(p) for p in e["loc"])
        lines.append(f"  {loc}: {e['msg']}")
    if len(err.errors()) > 10:
        lines.append(f"  … and {len(err.errors()) - 10} more")
    return "\n".join(lines)


def parse_dataset(raw: Any, source: str = "dataset") -> Dataset:
    if not isinstance(raw, dict):
        raise DatasetError(f"{source}: a dataset is a JSON object with keys 'expensify' and 'ifs'")
    try:
        return Dataset.model_validate(raw)
    except ValidationError as err:
        raise DatasetError(_describe(err, source)) from None


def load_dataset(path: str | Path) -> Dataset:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DatasetError(f"{path}: cannot read dataset: {err.strerror}") from None
    try:
        raw = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"{path}: not JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    return parse_dataset(raw, str(path))
