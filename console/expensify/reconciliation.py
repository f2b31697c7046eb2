"""Company-card spend from Expensify's reconciliation export (reference/expensify.md §5).

A `reconciliation` job with the project's template (reconciliation.ftl) answers a file name;
the file is downloaded from the `reconciliation` file system, as real clients do (the client
falls back to `integrationServer` where a tenant has no file there). The file is a JSON array
of cards, each with its reports and their expenses; expenses not yet on a report sit on the
report with ID 0.

What this module hands on is `CardSpend`: one expense, text HTML-unescaped, the amount as
integer minor units in the *spend* sign (a purchase positive, a refund negative), i.e. the
reconciliation data's inverted sign turned round. Reading is lenient: an object that cannot be
read is listed in `CardReconciliation.unreadable` with the reason, never silently dropped, and
never stops the rest; a file that is not a JSON array raises ProtocolError.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from console import money
from console.errors import ConfigError, ProtocolError
from console.expensify.models import MAX_AMOUNT_MINOR

if TYPE_CHECKING:
    from console.expensify.client import ExpensifyClient

SERVICE = "expensify"
ALL_FEEDS = "export_all_feeds"
# The two scopes real clients use; "Reported" is not confirmed (reference/expensify.md §0).
Scope = Literal["Unreported", "All"]


def reconciliation_template() -> str:
    """The project's reconciliation template, shipped inside the package."""
    try:
        return (
            resources.files("console.expensify").joinpath("reconciliation.ftl").read_text("utf-8")
        )
    except (FileNotFoundError, OSError) as exc:
        raise ConfigError(
            f"{SERVICE}: the template console/expensify/reconciliation.ftl is missing ({exc})"
        ) from None


# ---------------------------------------------------------------------- the file's shape
def _unescape(v: Any) -> Any:
    return html.unescape(v) if isinstance(v, str) else v


def _integer_cents(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("an amount is a boolean")
    if isinstance(v, float) or (hasattr(v, "to_integral_value") and v != v.to_integral_value()):
        raise ValueError("amounts are integer cents, got a fraction")
    if isinstance(v, int) and abs(v) > MAX_AMOUNT_MINOR:
        raise ValueError(f"amount {v} is out of range")
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CardExpense(_Model):
    transactionID: str = Field(min_length=1)
    reportID: str = ""
    cardID: str = ""
    maskedPAN: str = ""
    merchant: str = ""
    modifiedMerchant: str = ""
    originalAmount: int
    modifiedAmount: int | None = None
    amountModified: bool | None = None
    currency: str = Field(min_length=3)
    posted: date
    created: str = ""
    modifiedCreated: str = ""
    category: str = ""
    tag: str = ""
    comment: str = ""
    externalID: str = ""
    reimbursable: bool | None = None
    billable: bool | None = None

    _text = field_validator(
        "merchant", "modifiedMerchant", "category", "tag", "comment", mode="before"
    )(_unescape)
    _cents = field_validator("originalAmount", "modifiedAmount", mode="before")(_integer_cents)

    @property
    def spend_minor(self) -> int:
        """The effective amount in the spend sign: the edited amount where there is one (the
        data says 0 for "not edited", so the flag decides), else the original; negated, since
        reconciliation data holds a purchase as negative."""
        effective = (
            self.modifiedAmount
            if self.amountModified and self.modifiedAmount is not None
            else self.originalAmount
        )
        return -effective


class _CardHead(_Model):
    cardID: str = Field(min_length=1)
    cardName: str = ""
    bank: str = ""
    owner: str = ""

    _text = field_validator("cardName", mode="before")(_unescape)


class _ReportHead(_Model):
    reportID: str = ""
    reportName: str = ""
    status: str = ""
    policyID: str = ""
    submitterEmail: str = ""
    currency: str = ""


@dataclass(frozen=True)
class CardSpend:
    """One company-card expense, as the close and the card accrual use it."""

    card_id: str
    card_name: str
    bank: str
    owner: str  # the email the card is assigned to
    masked_pan: str
    transaction_id: str
    report_id: str  # "0": not on a report; negative: deleted
    policy_id: str  # the report's policy ("" for an unreported expense)
    amount_minor: int  # spend sign: a purchase is positive, a refund negative
    currency: str
    posted: date
    merchant: str
    category: str
    tag: str
    comment: str

    @property
    def reported(self) -> bool:
        return self.report_id not in ("", "0") and not self.report_id.startswith("-")

    @property
    def deleted(self) -> bool:
        return self.report_id.startswith("-")


@dataclass(frozen=True)
class Unreadable:
    where: str  # "card 123" / "card 123, expense 456"
    reason: str


@dataclass(frozen=True)
class CardReconciliation:
    spends: tuple[CardSpend, ...]
    unreadable: tuple[Unreadable, ...] = ()
    file_name: str = ""


def parse_reconciliation(content: bytes, *, file_name: str = "") -> CardReconciliation:
    """Read the reconciliation file leniently (see the module docstring)."""
    try:
        data = money.loads(content)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, list):
        raise ProtocolError(
            SERVICE,
            f"the card reconciliation file {file_name or ''} is not a JSON array of cards "
            f"({len(content)} bytes)".replace("  ", " "),
        )
    spends: list[CardSpend] = []
    bad: list[Unreadable] = []
    seen: set[str] = set()
    for i, raw_card in enumerate(data):
        try:
            card = _CardHead.model_validate(raw_card)
        except ValidationError as exc:
            bad.append(Unreadable(f"card #{i + 1}", _first_error(exc)))
            continue
        reports = raw_card.get("reports") if isinstance(raw_card, dict) else None
        for raw_report in reports if isinstance(reports, list) else []:
            try:
                report = _ReportHead.model_validate(raw_report)
            except ValidationError as exc:
                bad.append(Unreadable(f"card {card.cardID}, a report", _first_error(exc)))
                continue
            expenses = raw_report.get("transactions")
            for raw in expenses if isinstance(expenses, list) else []:
                try:
                    e = CardExpense.model_validate(raw)
                except ValidationError as exc:
                    tid = raw.get("transactionID") if isinstance(raw, dict) else None
                    where = f"card {card.cardID}, expense {tid or '(no transactionID)'}"
                    bad.append(Unreadable(where, _first_error(exc)))
                    continue
                if e.transactionID in seen:  # a split card listed twice: count it once
                    continue
                seen.add(e.transactionID)
                spends.append(
                    CardSpend(
                        card_id=card.cardID,
                        card_name=card.cardName,
                        bank=card.bank,
                        owner=card.owner,
                        masked_pan=e.maskedPAN,
                        transaction_id=e.transactionID,
                        report_id=e.reportID or report.reportID or "0",
                        policy_id=report.policyID,
                        amount_minor=e.spend_minor,
                        currency=e.currency.upper(),
                        posted=e.posted,
                        merchant=e.modifiedMerchant or e.merchant,
                        category=e.category,
                        tag=e.tag,
                        comment=e.comment,
                    )
                )
    return CardReconciliation(tuple(spends), tuple(bad), file_name)


def _first_error(exc: ValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(p) for p in e["loc"]) or "the object"
    return f"{where}: {e['msg']}"


# ---------------------------------------------------------------------- the job
def reconciliation_job(
    *, start: date, end: date, domain: str, feed: str = ALL_FEEDS, scope: Scope = "Unreported"
) -> dict[str, Any]:
    """The requestJobDescription of a reconciliation export (credentials are added by the
    client)."""
    if end < start:
        raise ValueError(f"the window ends ({end}) before it starts ({start})")
    if not domain.strip() or "@" in domain:
        raise ValueError(f"not a domain: {domain!r}")
    return {
        "type": "reconciliation",
        "inputSettings": {
            "type": scope,
            "startDate": start.isoformat(),
            "endDate": end.isoformat(),
            "domain": domain.strip(),
            "feed": feed,
            "async": False,
        },
        "outputSettings": {"fileExtension": "json"},
    }


def export_card_spend(
    client: ExpensifyClient,
    *,
    start: date,
    end: date,
    domains: Sequence[str],
    feed: str = ALL_FEEDS,
    scope: Scope = "Unreported",
) -> CardReconciliation:
    """Card expenses posted from `start` to `end` (inclusive) on the cards of these domains:
    one reconciliation job and one download per domain (two requests each)."""
    spends: list[CardSpend] = []
    bad: list[Unreadable] = []
    names: list[str] = []
    template = reconciliation_template()
    for domain in sorted({d.strip().lower() for d in domains if d.strip()}):
        job = reconciliation_job(start=start, end=end, domain=domain, feed=feed, scope=scope)
        response = client.run_job(job, template=template, what="the card reconciliation job")
        name = _file_name(response.content)
        part = parse_reconciliation(client.download_reconciliation(name), file_name=name)
        known = {s.transaction_id for s in spends}
        spends.extend(s for s in part.spends if s.transaction_id not in known)
        bad.extend(part.unreadable)
        names.append(name)
    return CardReconciliation(tuple(spends), tuple(bad), ",".join(names))


def _file_name(body: bytes) -> str:
    """The file name a reconciliation job answers: `{"responseCode":200,"filename":…}`, or
    plain text as the report export answers."""
    text = body.decode("utf-8", "replace").strip()
    name: Any = text
    if text.startswith("{"):
        try:
            name = money.loads(text).get("filename")
        except (ValueError, AttributeError):
            name = None
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 255
        or any(c in name for c in "<>{}\n\r\"' /\\")
    ):
        raise ProtocolError(
            SERVICE,
            f"the card reconciliation job did not answer with a file name ({len(body)} bytes)",
        )
    return name
