"""What the Expensify client hands the engine: typed, unescaped, integer money.

The export rows come from the project's own template (export.ftl): one JSON object per report
with its `transactions`. Text fields are HTML-unescaped here (Expensify serves `&amp;`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator


def _unescape(v: Any) -> Any:
    return html.unescape(v) if isinstance(v, str) else v


# The largest amount accepted, in minor units: a trillion in major units, far beyond any expense
# report, and within SQLite's 64-bit integers even when summed over 10,000 lines.
MAX_AMOUNT_MINOR = 10**14


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class ExportTransaction(_Model):
    transactionID: str
    reportID: str = ""
    merchant: str = ""
    modifiedMerchant: str = ""
    amount: int
    modifiedAmount: int | None = None
    convertedAmount: int | None = None
    currency: str = ""
    currencyConversionRate: str = ""
    category: str = ""
    categoryGlCode: str = ""
    tag: str = ""
    tagGlCode: str = ""
    comment: str = ""
    created: str = ""
    modifiedCreated: str = ""
    inserted: str = ""
    reimbursable: bool = True
    billable: bool = False
    # The tax in the line's amount, as Expensify holds it (integer minor units of the line's
    # own currency) and its tax rate's code and names; None/"" where the line has no tax.
    taxAmount: int | None = None
    taxCode: str = ""
    taxName: str = ""
    taxRateName: str = ""
    cardID: str = ""
    cardNumber: str = ""
    mcc: str = ""
    receiptID: str = ""
    receiptURL: str = ""
    # A distance or per-diem line's units (Expensify's `units.count/rate/unit`): the count
    # is the row's Quantity where the account demands one (console/line_coding.py).
    unitsCount: Decimal | None = None
    unitsRate: Decimal | None = None
    unitsUnit: str = ""

    _unescape_text = field_validator(
        "merchant",
        "modifiedMerchant",
        "comment",
        "category",
        "tag",
        "taxName",
        "taxRateName",
        mode="before",
    )(_unescape)

    @field_validator("amount", "modifiedAmount", "convertedAmount", "taxAmount", mode="before")
    @classmethod
    def _integer_cents(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("amount is a boolean")
        if isinstance(v, float):
            raise ValueError("amounts are integer cents, got a fraction")
        if hasattr(v, "to_integral_value") and v != v.to_integral_value():
            raise ValueError("amounts are integer cents, got a fraction")
        if isinstance(v, int) and abs(v) > MAX_AMOUNT_MINOR:
            # Beyond any real expense, and beyond what the state file's integers hold.
            raise ValueError(f"amount {v} is out of range (more than {MAX_AMOUNT_MINOR} cents)")
        return v

    @field_validator("unitsCount", "unitsRate", mode="before")
    @classmethod
    def _units_number(cls, v: Any) -> Any:
        # Read exactly (the client parses JSON numbers as Decimal), never as a float.
        if isinstance(v, bool) or isinstance(v, float):
            raise ValueError("a units number must be an exact number")
        if isinstance(v, int):
            return Decimal(v)
        return v

    @property
    def posted_amount(self) -> int:
        """The amount posted: convertedAmount (report currency), else modified, else amount."""
        if self.convertedAmount is not None:
            return self.convertedAmount
        if self.modifiedAmount:
            return self.modifiedAmount
        return self.amount

    @property
    def display_merchant(self) -> str:
        return self.modifiedMerchant or self.merchant

    @property
    def expense_date(self) -> str:
        return self.modifiedCreated or self.created

    @property
    def tag_values(self) -> list[str]:
        """One tag name per level, in the policy's level order ("New Lab:Apollo")."""
        return [p for p in self.tag.split(":")] if self.tag else []


@dataclass(frozen=True)
class AccrualRule:
    """How the client reads a report's moment (ExportReport.as_accrued): the workspace's
    time zone (expensify.timezone), whose approval counts (expensify.approval_date) and
    what dates the voucher (posting.voucher_date)."""

    zone: str = "UTC"
    approval: str = "last-approver"
    # posting.voucher_date: "approved", "submitted", "last-expense" or "exported" (the last is
    # the day the console posts, set by validation: the report keeps its approval here).
    dated_by: str = "approved"


class ExportApprover(_Model):
    """One approval level of a report: who approved, and when (UTC, like `approved`)."""

    email: str = ""
    date: str = ""


APPROVED_FORMAT = "%Y-%m-%d %H:%M:%S"  # Expensify's `approved`, observed in real responses
# Display statuses of a report closed without approval (Submit-and-Close: "Closed"; the
# reconciliation template calls the state "Archived").
CLOSED_STATUSES = ("closed", "archived")
# Which approval dates a report's accrual: `expensify.approval_date`.
APPROVAL_DATES = ("last-approver", "first-approver", "approved")


def _as_text(v: Any) -> Any:
    """An ID or field value as text: one the template printed as a number (`?c`) is the same
    value; text is HTML-unescaped like Expensify's other text."""
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return _unescape(v)


class ExportReport(_Model):
    reportID: str
    reportName: str = ""
    status: str = ""
    policyID: str = ""
    policyName: str = ""
    accountEmail: str = ""
    submitterName: str = ""
    managerEmail: str = ""
    currency: str = ""
    total: int | None = None
    created: str = ""
    submitted: str = ""
    approved: str = ""
    reimbursed: str = ""
    approvers: list[ExportApprover] = Field(default_factory=list)
    # The submitter's employee fields (posting.employee_id_field names the one holding the ID
    # the accrued-expenses row carries, console/coding.py).
    employeeCustomField1: str = ""
    employeeCustomField2: str = ""
    submitterPayrollID: str = ""
    submitterUserID: str = ""
    # The report's fields (`customField.<Field_Name>`, non-alphanumerics as "_"), name → value:
    # code parts from report fields (console/code_sources.py).
    reportFields: dict[str, str] = Field(default_factory=dict)
    transactions: list[ExportTransaction] = Field(default_factory=list)
    # Set by the client (never by Expensify, see as_accrued): the zone `approved` is written
    # in, the timestamp as Expensify sent it (UTC) when that changed it, and "submitted" when
    # a report closed without approval takes its submission as its moment.
    approvalZone: str = ""
    approvedUTC: str = ""
    approvedFrom: str = ""

    _unescape_text = field_validator("reportName", "policyName", "submitterName", mode="before")(
        _unescape
    )

    @field_validator(
        "employeeCustomField1",
        "employeeCustomField2",
        "submitterPayrollID",
        "submitterUserID",
        mode="before",
    )
    @classmethod
    def _employee_field(cls, v: Any) -> Any:
        return _as_text(v)

    @field_validator("reportFields", mode="before")
    @classmethod
    def _report_fields(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): _as_text(x) for k, x in v.items()}
        return v

    @property
    def approved_date(self) -> str:
        """yyyy-mm-dd part of the approval timestamp."""
        return self.approved[:10]

    def as_accrued(self, rule: AccrualRule) -> ExportReport:
        """This report as the console accrues it: `approved` becomes the moment that dates
        its voucher, in the workspace's day.

        The moment (`rule.dated_by`, posting.voucher_date): the approval, whose date
        `rule.approval` picks (APPROVAL_DATES: the last approver's, the first's, or
        Expensify's `approved`, which is undocumented for several levels; `approved` where no
        approver is listed); the submission; or the last expense's date. A report closed
        without approval (a Submit-and-Close workspace) takes its submission. `approvedFrom`
        names the source when it is not Expensify's `approved`.

        A timestamp is read as UTC, as Expensify sends it, and written in `rule.zone` (IANA),
        the workspace's time zone (`approvedUTC` keeps what was sent when that changed it). A
        value that is not a `yyyy-MM-dd HH:mm:ss` timestamp is left for validation to hold."""
        if self.approvalZone:  # done already (a stored report read back)
            return self
        zone = rule.zone
        update: dict[str, str] = {"approvalZone": zone}
        moment_text, source = self._moment(rule.approval, rule.dated_by)
        if source:
            update.update(approved=moment_text, approvedFrom=source)
        if zone != "UTC":
            try:
                moment = datetime.strptime(moment_text.strip(), APPROVED_FORMAT)
            except ValueError:
                moment = None
            if moment is not None:
                local = moment.replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
                update.update(approved=local.strftime(APPROVED_FORMAT), approvedUTC=moment_text)
        return self.model_copy(update=update)

    def _moment(self, approval: str, dated_by: str) -> tuple[str, str]:
        """(the timestamp that dates the voucher, its source; "" for `approved` itself)."""
        closed = self.status.strip().lower() in CLOSED_STATUSES
        never_approved = not self.approved.strip() and closed and self.submitted.strip()
        if not self.approved.strip() and not never_approved:
            return self.approved, ""  # not approved: validation holds it
        if dated_by in ("submitted", "submission") and self.submitted.strip():
            return self.submitted, "submitted"
        if dated_by == "last-expense":
            days = sorted(t.expense_date[:10] for t in self.transactions if t.expense_date)
            if days:
                # A date, no time: the expense's own day, nothing to convert.
                return f"{days[-1]}", "last-expense"
        if never_approved:
            # "approved" (and "exported", until validation dates it) of a report closed
            # without approval: its submission.
            return self.submitted, "submitted"
        dated = [a for a in self.approvers if a.date.strip()]
        if approval != "approved" and dated:
            chosen = dated[-1] if approval == "last-approver" else dated[0]
            if chosen.date != self.approved:
                return chosen.date, approval
        return self.approved, ""


class MalformedReport(_Model):
    """A report object in the export that could not be read; held as `malformed:{what}`."""

    reportID: str
    what: str
    raw: dict[str, Any] = Field(default_factory=dict)


class ExportResult(_Model):
    reports: list[ExportReport] = Field(default_factory=list)
    malformed: list[MalformedReport] = Field(default_factory=list)
    file_name: str = ""


class PolicyCategory(_Model):
    name: str
    glCode: str = ""
    enabled: bool = True

    _u = field_validator("name", mode="before")(_unescape)


class PolicyTag(_Model):
    name: str
    glCode: str = ""
    enabled: bool = True

    _u = field_validator("name", mode="before")(_unescape)


class PolicyTagLevel(_Model):
    name: str
    tags: list[PolicyTag] = Field(default_factory=list)


class PolicyEmployee(_Model):
    email: str
    role: str = ""
    submitsTo: str = ""
    employeeID: str = ""


class PolicyInfo(_Model):
    id: str
    name: str = ""
    outputCurrency: str = ""
    categories: list[PolicyCategory] = Field(default_factory=list)
    tag_levels: list[PolicyTagLevel] = Field(default_factory=list)
    employees: list[PolicyEmployee] = Field(default_factory=list)
