"""What the console uses of each IFS projection: the needs `ml-console ifs check` proves.

One list, built from the client's own entity-set names (`IfsEntitySets`, config
`[ifs.entity_sets]`), so a tenant's renamed projection is looked for where the client will
send its requests. Each need names the attributes the client sends, filters, orders or keys
on and reads, the navigations it follows and the bound actions it calls, with the type
family each must have (console/ifs/preflight.py). tests/clients/test_ifs_needs.py holds the
client to this list: every name in every request it sends during a posting, a lookup and the
reference reads must be here.

One need per config key (`ifs.entity_sets.<field>`): a finding names the key to set. Two
keys on one projection (the rate types and the rates) are two needs; the check reads the
projection's documents once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from console.ifs.models import CODE_PARTS
from console.ifs.preflight import ENUM_OR_TEXT, EntityNeed, ProjectionNeed

if TYPE_CHECKING:
    from console.ifs.client import IfsEntitySets

CONFIG_PREFIX = "ifs.entity_sets."
TEXT, NUMBER, DATE, BOOLEAN = "text", "number", "date", "boolean"
CODE_PART_FIELDS = tuple(f"Code{c}" for c in CODE_PARTS)

# A voucher row as the client reads it from the hold table's and the GL's row sets (lookups
# by ReferenceNumber, the reads behind adopt and the tie-out): keys, the voucher it belongs
# to, and the row itself.
_ROW_IDENTITY: Mapping[str, str] = {
    "Company": TEXT,
    "VoucherType": TEXT,
    "AccountingYear": NUMBER,
    "AccountingPeriod": NUMBER,
    "VoucherNo": NUMBER,
    "VoucherDate": DATE,
    "RowNo": NUMBER,
}
# A voucher row's own values: what a posting sends on each VoucherPosting and what a lookup
# reads back (console.ifs.models.VoucherRow).
_ROW_VALUES: Mapping[str, str] = {
    "Account": TEXT,
    **dict.fromkeys(CODE_PART_FIELDS, TEXT),
    "CurrencyCode": TEXT,
    "CurrencyRate": NUMBER,
    "CurrencyDebetAmount": NUMBER,
    "CurrencyCreditAmount": NUMBER,
    "DebetAmount": NUMBER,
    "CreditAmount": NUMBER,
    "Quantity": NUMBER,
    "Text": TEXT,
    "ReferenceNumber": TEXT,
    # The employee as the row's party (console/coding.py, employee_on = "party").
    "PartyTypeId": TEXT,
    # Tax (console/tax.py): IFS's tax code and tax fields on an expense row.
    "OptionalCode": TEXT,
    "TaxDirection": ENUM_OR_TEXT,
    "CurrencyTaxAmount": NUMBER,
    "TaxAmount": NUMBER,
    "CurrencyTaxBaseAmount": NUMBER,
    "TaxBaseAmount": NUMBER,
    # Read back, IFS's own tax rows say so: the tie-out and reversals skip them.
    "AutoTaxVouEntry": BOOLEAN,
}
VOUCHER_ROW_READ: Mapping[str, str] = {**_ROW_IDENTITY, **_ROW_VALUES}
# A row of the voucher assistant's temporary voucher (virtual VoucherPosting): what the
# client sends (and reads back from the answer), and the key it filters by.
VOUCHER_POSTING: Mapping[str, str] = {
    "Objkey": TEXT,
    "Company": TEXT,
    "RowNo": NUMBER,
    **_ROW_VALUES,
    # A billable line's project activity (console/line_coding.py): sent, never read back.
    "ProjectActivityId": NUMBER,
}
# The temporary voucher (virtual VoucherEntry): its header as sent, its key, and what the
# client reads back from the answer.
VOUCHER_ENTRY: Mapping[str, str] = {
    "Objkey": TEXT,
    "Company": TEXT,
    "VoucherType": TEXT,
    "VoucherDate": DATE,
    "AccountingYear": NUMBER,
    "AccountingPeriod": NUMBER,
    "UserGroup": TEXT,
    "VoucherStatus": ENUM_OR_TEXT,
    "AmountMethod": ENUM_OR_TEXT,
    "OpennedFrom": TEXT,
    "VoucherText2": TEXT,
}
VOUCHER_ENTITY = "VoucherEntry"  # the temporary voucher's entity type, as the actions bind
VOUCHER_ACTIONS = (f"{VOUCHER_ENTITY}_CreateVoucher", f"{VOUCHER_ENTITY}_RemoveTempVoucher")
VOUCHER_ROWS_NAV = "VoucherPostingArray"
HOLD_VOUCHER: Mapping[str, str] = {
    "Company": TEXT,
    "AccountingYear": NUMBER,
    "VoucherType": TEXT,
    "VoucherNo": NUMBER,
    "VoucherText2": TEXT,
}
ACCOUNT: Mapping[str, str] = {
    "Company": TEXT,
    "Account": TEXT,
    "Description": TEXT,
    "ValidFrom": DATE,
    "ValidUntil": DATE,
    **{f"ReqCode{c}": ENUM_OR_TEXT for c in CODE_PARTS},
    "ReqQuantity": ENUM_OR_TEXT,
    "ReqText": ENUM_OR_TEXT,
    "TaxCodeMandatory": BOOLEAN,
    "TaxHandlingValue": ENUM_OR_TEXT,
}
COMPANY_FINANCE: Mapping[str, str] = {"Company": TEXT, "CurrencyCode": TEXT}


def code_part_value(letter: str) -> Mapping[str, str]:
    """A value of code part B…J as CodePartValuesHandling's Code<X>Array serves it."""
    return {
        "Company": TEXT,
        f"Code{letter}": TEXT,
        "Description": TEXT,
        "ValidFrom": DATE,
        "ValidUntil": DATE,
    }


CODE_PART_ARRAYS = tuple(f"Code{c}Array" for c in CODE_PARTS)
PERIOD: Mapping[str, str] = {
    "Company": TEXT,
    "AccountingYear": NUMBER,
    "AccountingPeriod": NUMBER,
    "Description": TEXT,
    "DateFrom": DATE,
    "DateUntil": DATE,
}
PERIOD_STATUS_NAV = "DetailUserGroups"
USER_GROUP_PERIOD: Mapping[str, str] = {
    "UserGroup": TEXT,
    "LedgerId": TEXT,
    "PeriodStatus": ENUM_OR_TEXT,
}
CURRENCY_TYPE: Mapping[str, str] = {
    "Company": TEXT,
    "CurrencyType": TEXT,
    "TypeDefault": ENUM_OR_TEXT,
    "Inverted": BOOLEAN,
    "RefCurrencyCode": TEXT,
}
CURRENCY_RATE: Mapping[str, str] = {
    "Company": TEXT,
    "CurrencyType": TEXT,
    "CurrencyCode": TEXT,
    "ValidFrom": DATE,
    "CurrencyRate": NUMBER,
    "ConvFactor": NUMBER,
    "RefCurrencyCode": TEXT,
}
# Both read with `$expand=CurrencyCodeRef`: the currency's "No of Decimals in Amount".
CURRENCY_CODE_REF = "CurrencyCodeRef"
CURRENCY_CODE: Mapping[str, str] = {"CurrencyCode": TEXT, "CurrencyRounding": NUMBER}

# What each config key is for, in the order the report lists them.
WHY: Mapping[str, str] = {
    "voucher_entry": "posting: temporary voucher, its rows, CreateVoucher, RemoveTempVoucher",
    "hold_vouchers": "the header text of vouchers in the hold table (adopt)",
    "hold_voucher_rows": "lookups by ReferenceNumber in the hold table (exactly once)",
    "gl_voucher_rows": "lookups by ReferenceNumber in the general ledger (exactly once)",
    "accounts": "accounts with their validity and code-part demands",
    "code_part_values": "the company's currency and code part values B-J",
    "periods": "periods and their status for the console's user group",
    "currency_types": "the default rate type, whether it is inverted, its currency's decimals",
    "currency_rates": "exchange rates with ConvFactor and each currency's decimals",
}
# Not in IFS's published 21R1 model (docs/ifs.md): a tenant must confirm them.
ASSUMED = frozenset({"gl_voucher_rows"})


def projection_of(entity_set: str) -> str:
    """`VoucherEntryAssistantHandling` of `VoucherEntryAssistantHandling.svc/VoucherSet`."""
    return entity_set.strip("/").split("/", 1)[0].removesuffix(".svc")


def set_name_of(entity_set: str) -> str:
    """`VoucherSet` of `VoucherEntryAssistantHandling.svc/VoucherSet`."""
    return entity_set.strip("/").rsplit("/", 1)[-1]


def _entities(field: str, set_name: str) -> tuple[EntityNeed, ...]:
    if field == "voucher_entry":
        return (
            EntityNeed(
                set_name, VOUCHER_ENTRY, navigations=(VOUCHER_ROWS_NAV,), actions=VOUCHER_ACTIONS
            ),
            EntityNeed(f"{set_name}/{VOUCHER_ROWS_NAV}", VOUCHER_POSTING),
        )
    if field == "hold_vouchers":
        return (EntityNeed(set_name, HOLD_VOUCHER),)
    if field in ("hold_voucher_rows", "gl_voucher_rows"):
        return (EntityNeed(set_name, VOUCHER_ROW_READ),)
    if field == "accounts":
        return (EntityNeed(set_name, ACCOUNT),)
    if field == "code_part_values":
        return (
            EntityNeed(set_name, COMPANY_FINANCE, navigations=CODE_PART_ARRAYS),
            *(EntityNeed(f"{set_name}/Code{c}Array", code_part_value(c)) for c in CODE_PARTS),
        )
    if field == "periods":
        return (
            EntityNeed(set_name, PERIOD, navigations=(PERIOD_STATUS_NAV,)),
            EntityNeed(f"{set_name}/{PERIOD_STATUS_NAV}", USER_GROUP_PERIOD),
        )
    if field in ("currency_types", "currency_rates"):
        fields = CURRENCY_TYPE if field == "currency_types" else CURRENCY_RATE
        return (
            EntityNeed(set_name, fields, navigations=(CURRENCY_CODE_REF,)),
            EntityNeed(f"{set_name}/{CURRENCY_CODE_REF}", CURRENCY_CODE),
        )
    raise ValueError(f"no needs known for ifs.entity_sets.{field}")


def tenant_needs(entity_sets: IfsEntitySets | None = None) -> list[ProjectionNeed]:
    """Every projection the client uses, under the names `entity_sets` gives them, with
    what it uses of each: one need per `ifs.entity_sets.<field>`."""
    if entity_sets is None:
        from console.ifs.client import IfsEntitySets

        entity_sets = IfsEntitySets()
    names = entity_sets.model_dump()
    out = []
    for field in WHY:
        value = str(names[field])
        projection = projection_of(value)
        out.append(
            ProjectionNeed(
                projection=projection,
                config_key=CONFIG_PREFIX + field,
                entity_sets=_entities(field, set_name_of(value)),
                assumed=field in ASSUMED,
                why=WHY[field],
                namespace=f"IfsApp.{projection}" if field == "voucher_entry" else "",
            )
        )
    return out


def projections(needs: list[ProjectionNeed]) -> list[str]:
    """The distinct projections of `needs`, in order: what one check reads."""
    return list(dict.fromkeys(n.projection for n in needs))
