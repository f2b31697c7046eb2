"""A small, explicit Expensify + IFS world for the map/validate/plan tests."""

from __future__ import annotations

import calendar
from datetime import date
from decimal import Decimal
from typing import Any

from console.config import PostingConfig
from console.expensify.models import ExportReport, PolicyInfo
from console.ifs.models import AccountingPeriod, CodePartValue, CurrencyRate
from console.mapping import MappingOverrides, map_report
from console.plan import PlannedVoucher, plan_voucher
from console.validate import IfsReference, ValidatedReport, validate


def Posting(**keys: Any) -> PostingConfig:
    """The `[posting]` config of this world (the real model: every key the stages read)."""
    return PostingConfig.model_validate(
        {
            "voucher_type": "X",
            "accrued_expenses_account": "2930",
            "card_clearing_account": "2940",
            "company_by_policy": {"POL-US": "10"},
            "code_part_by_tag_level": {"Cost Center": "B", "Project": "C"},
            "closed_period": "hold",
            **keys,
        }
    )


POLICY = PolicyInfo.model_validate(
    {
        "id": "POL-US",
        "name": "US Policy",
        "outputCurrency": "USD",
        "categories": [
            {"name": "Airfare", "glCode": "6110"},
            {"name": "Meals", "glCode": "6120"},
            {"name": "Old Stuff", "glCode": "6999", "enabled": False},
            {"name": "Uncoded", "glCode": ""},
        ],
        "tag_levels": [
            {
                "name": "Cost Center",
                "tags": [
                    {"name": "New Lab", "glCode": "CC-410"},
                    {"name": "Sales", "glCode": "CC-200"},
                    {"name": "Nowhere", "glCode": ""},
                ],
            },
            {"name": "Project", "tags": [{"name": "Apollo", "glCode": "PRJ-1"}]},
            {"name": "Region", "tags": [{"name": "EMEA", "glCode": "EM"}]},
        ],
    }
)
POLICIES = {"POL-US": POLICY}

ALWAYS = (date(2020, 1, 1), date(2099, 12, 31))


def cpv(code_part: str, value: str, valid: tuple[date, date] = ALWAYS, company: str = "10"):
    return CodePartValue(
        Company=company,
        CodePart=code_part,
        CodePartValue=value,
        ValidFrom=valid[0],
        ValidUntil=valid[1],
    )


def period(year: int, month: int, status: str = "Open", company: str = "10") -> AccountingPeriod:
    start = date(year, month, 1)
    end = date(year, month, calendar.monthrange(year, month)[1])
    return AccountingPeriod(
        Company=company,
        AccountingYear=year,
        AccountingPeriod=month,
        DateFrom=start,
        DateUntil=end,
        PeriodStatus=status,
    )


def rate(currency: str, valid_from: date, value: str, company: str = "10") -> CurrencyRate:
    return CurrencyRate(
        Company=company, CurrencyCode=currency, ValidFrom=valid_from, CurrencyRate=Decimal(value)
    )


DIMENSIONS = [
    cpv("A", "6110"),
    cpv("A", "6120"),
    cpv("A", "2930"),
    cpv("A", "2940"),
    cpv("B", "CC-410"),
    cpv("B", "CC-200"),
    cpv("C", "PRJ-1"),
]


def reference(
    dimensions: list[CodePartValue] | None = None,
    periods: list[AccountingPeriod] | None = None,
    rates: list[CurrencyRate] | None = None,
    currency: str = "USD",
) -> IfsReference:
    return IfsReference.build(
        {"10": currency},
        DIMENSIONS if dimensions is None else dimensions,
        [period(2026, m) for m in range(1, 13)] if periods is None else periods,
        [rate("EUR", date(2026, 10, 1), "1.05"), rate("EUR", date(2026, 11, 1), "1.08")]
        if rates is None
        else rates,
    )


def line(tid: str, amount: int, **kw: Any) -> dict[str, Any]:
    base = {
        "transactionID": tid,
        "merchant": f"Merchant {tid}",
        "amount": amount,
        "convertedAmount": amount,
        "currency": "USD",
        "category": "Airfare",
        "tag": "New Lab:Apollo",
        "reimbursable": True,
    }
    base.update(kw)
    return base


def report(lines: list[dict[str, Any]] | None = None, **kw: Any) -> ExportReport:
    base: dict[str, Any] = {
        "reportID": "R00123",
        "reportName": "Q4 Berlin trip",
        "policyID": "POL-US",
        "accountEmail": "ana.lopez@example.com",
        "currency": "USD",
        "status": "APPROVED",
        "approved": "2026-11-03 14:22:10",
        "transactions": lines if lines is not None else [line("T1", 12345)],
    }
    base.update(kw)
    return ExportReport.model_validate(base)


def run(
    rep: ExportReport,
    posting: Posting | None = None,
    ref: IfsReference | None = None,
    overrides: MappingOverrides | None = None,
) -> ValidatedReport:
    posting = posting or Posting()
    mapped = map_report(rep, POLICIES, posting, overrides or MappingOverrides())
    return validate(mapped, ref or reference(), posting)


def voucher(rep: ExportReport, posting: Posting | None = None, **kw: Any) -> PlannedVoucher:
    posting = posting or Posting()
    validated = run(rep, posting, **kw)
    assert validated.ok, validated.holds
    return plan_voucher(validated, posting)


def codes(validated: ValidatedReport) -> list[str]:
    return [h.code for h in validated.holds]
