"""The IFS Cloud projections the simulator serves, as IFS's own 21R1 model files name them.

One model, two uses: the simulator's routes resolve every projection, entity set, key,
navigation and bound action through `PROJECTIONS`, and its `$metadata` is rendered from the
same objects (`metadata`), so the two cannot disagree. `expected_names()` gives the same
model as plain data, for whoever needs to compare a tenant's `$metadata` with what the
console uses.

Names come from IFS Cloud 21R1's ACCRUL model files (reference/ifs-cloud.md §0; the
extracted list is kept in tests/data/ifs_21r1_names.json, and tests/sim/test_ifs_model.py
holds this module to it). Only the attributes the console reads or writes, and the keys, are
modelled; a tenant has many more. One projection is not from those files: the general
ledger's voucher rows (component GENLED, not published with ACCRUL) — `ASSUMED` names it.

Enumerations are served as IFS's identifiers ("Approved", "Mandatory", "Open"), not as their
database values; `ENUMERATIONS` maps one to the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

from console.sim.odata import (
    EdmType,
    EntityType,
    Navigation,
    Property,
    edmx_document,
    entity_container,
    entity_type_elements,
)

CODE_PARTS = tuple("BCDEFGHIJ")
CODE_PART_FIELDS = tuple(f"Code{c}" for c in CODE_PARTS)

# Identifier (as served) -> database value, from the model's *.enumeration files.
ENUMERATIONS: dict[str, dict[str, str]] = {
    "AccountRequest": {"Can": "K", "Mandatory": "M", "Blocked": "S"},
    "AccountRequestText": {"Can": "K", "Mandatory": "M"},
    "VoucherStatus": {
        "Approved": "Confirmed",
        "NotApproved": "Waiting",
        "Error": "Error",
        "Cancelled": "Cancelled",
        "AwaitingApproval": "AwaitingApproval",
        "PartiallyApproved": "PartiallyApproved",
    },
    "AccYearPerStatus": {"Open": "O", "Closed": "C", "FinallyClosed": "F"},
    "DefAmountMethod": {"GrossAmountEntry": "GROSS", "NetAmountEntry": "NET"},
}

# The general ledger's row set: GENLED's projection files are not public. Observed on a real
# tenant: the project variant `GLVoucherRowsProjAnalysis.svc/GenLedProjVoucherRowSet`; the
# GL Voucher Rows Analysis page's projection is assumed to follow the same pattern.
GL_ROWS_PROJECTION = "GLVoucherRowsAnalysis"
GL_ROWS_SET = "GenLedVoucherRowSet"
ASSUMED: frozenset[str] = frozenset({GL_ROWS_PROJECTION})


def _s(name: str, max_length: int | None = None) -> Property:
    return Property(name, "Edm.String", max_length=max_length)


def _i(name: str, computed: bool = False) -> Property:
    return Property(name, "Edm.Int32", computed=computed)


def _n(name: str) -> Property:
    return Property(name, "Edm.Decimal")


def _d(name: str) -> Property:
    return Property(name, "Edm.Date")


def _b(name: str) -> Property:
    return Property(name, "Edm.Boolean")


def _e(name: str) -> Property:
    # An IFS enumeration attribute, served as its identifier (a string).
    return _s(name, 50)


# ---------------------------------------------------------------- voucher rows
_ROW_FIELDS: tuple[Property, ...] = (
    _s("Company", 20),
    _s("VoucherType", 3),
    _i("AccountingYear"),
    _i("AccountingPeriod"),
    _i("VoucherNo"),
    _d("VoucherDate"),
    _i("RowNo"),
    _s("Account", 20),
    *(_s(name, 20) for name in CODE_PART_FIELDS),
    _s("CurrencyCode", 3),
    _n("CurrencyRate"),
    _n("ConversionFactor"),
    _n("CurrencyDebetAmount"),
    _n("CurrencyCreditAmount"),
    _n("CurrencyAmount"),
    _n("DebetAmount"),
    _n("CreditAmount"),
    _n("Amount"),
    _n("Quantity"),
    _i("ProjectActivityId"),
    _s("ProcessCode", 10),
    _s("OptionalCode", 20),
    _e("TaxDirection"),
    _n("CurrencyTaxAmount"),
    _n("TaxAmount"),
    _n("CurrencyTaxBaseAmount"),
    _n("TaxBaseAmount"),
    _b("AutoTaxVouEntry"),
    _s("PartyTypeId", 20),
    _s("Text", 200),
    _s("ReferenceSerie", 20),
    _s("ReferenceNumber", 50),
    _s("TransCode", 100),
)
_ROW_KEY = ("Company", "VoucherType", "AccountingYear", "VoucherNo", "RowNo")

VOUCHER_ROW = EntityType("VoucherRow", _ROW_FIELDS, key=_ROW_KEY)
GEN_LED_VOUCHER_ROW = EntityType("GenLedVoucherRow", _ROW_FIELDS, key=_ROW_KEY)
# A row of a temporary voucher (virtual VoucherPosting using VoucherRow): keyed by Objkey,
# tied to its voucher by ParentObjkey.
VOUCHER_POSTING = EntityType(
    "VoucherPosting",
    (_s("Objkey", 50), _s("ParentObjkey", 50), *_ROW_FIELDS),
    key=("Objkey",),
)
# What a client may give on a temporary voucher's row (the rest is taken from the voucher).
POSTING_INPUT = frozenset(
    p.name
    for p in _ROW_FIELDS
    if p.name not in ("VoucherType", "AccountingYear", "AccountingPeriod", "VoucherNo")
    and p.name not in ("VoucherDate", "TransCode", "AutoTaxVouEntry")
)

_HEADER_FIELDS: tuple[Property, ...] = (
    _s("Company", 20),
    _s("VoucherType", 3),
    _i("VoucherNo", computed=True),
    _i("AccountingYear"),
    _i("AccountingPeriod"),
    _d("VoucherDate"),
    _s("UserGroup", 30),
    _e("VoucherStatus"),
    _e("AmountMethod"),
    _s("VoucherText2", 200),
)
# The temporary voucher of the voucher entry assistant (virtual VoucherEntry using Voucher).
VOUCHER_ENTRY_TEMP = EntityType(
    "VoucherEntry",
    (_s("Objkey", 50), *_HEADER_FIELDS, _s("OpennedFrom", 20)),
    key=("Objkey",),
    navigations=(Navigation("VoucherPostingArray", "VoucherPosting"),),
)
TEMP_INPUT = frozenset(
    {
        "Company",
        "VoucherType",
        "AccountingYear",
        "AccountingPeriod",
        "VoucherDate",
        "UserGroup",
        "VoucherStatus",
        "AmountMethod",
        "VoucherText2",
        "OpennedFrom",
    }
)
# A voucher in the hold table (VoucherHandling's entity VoucherEntry using Voucher).
VOUCHER_ENTRY_HOLD = EntityType(
    "VoucherEntry",
    _HEADER_FIELDS,
    key=("Company", "AccountingYear", "VoucherType", "VoucherNo"),
    navigations=(Navigation("VoucherRowArray", "VoucherRow"),),
)


# ---------------------------------------------------------------- reference data
def _code_part_value(name: str) -> tuple[Property, ...]:
    """What every code part's values have: Account (code part A) and CodeB..CodeJ alike."""
    return (
        _s("Company", 20),
        _s(name, 20),
        _s("Description", 100),
        _d("ValidFrom"),
        _d("ValidUntil"),
    )


ACCOUNT = EntityType(
    "Account",
    (
        *_code_part_value("Account"),
        *(_e(f"ReqCode{c}") for c in CODE_PARTS),
        _e("ReqQuantity"),
        _e("ReqText"),
        _b("TaxCodeMandatory"),
        _e("TaxHandlingValue"),
    ),
    key=("Company", "Account"),
)


def _code_part_type(letter: str) -> EntityType:
    return EntityType(
        f"Code{letter}", _code_part_value(f"Code{letter}"), key=("Company", f"Code{letter}")
    )


CODE_PART_TYPES: dict[str, EntityType] = {c: _code_part_type(c) for c in CODE_PARTS}
COMPANY_FINANCE = EntityType(
    "CompanyFinance",
    (_s("Company", 20), _s("Description", 100), _s("CurrencyCode", 3)),
    key=("Company",),
    navigations=tuple(Navigation(f"Code{c}Array", f"Code{c}") for c in CODE_PARTS),
)
_PERIOD_FIELDS = (
    _s("Company", 20),
    _i("AccountingYear"),
    _i("AccountingPeriod"),
    _s("Description", 100),
    _d("DateFrom"),
    _d("DateUntil"),
    _e("YearEndPeriod"),
)
ACCOUNTING_PERIOD = EntityType(
    "AccountingPeriod", _PERIOD_FIELDS, key=("Company", "AccountingYear", "AccountingPeriod")
)
ACCOUNTING_YEAR = EntityType(
    "AccountingYear",
    (_s("Company", 20), _i("AccountingYear")),
    key=("Company", "AccountingYear"),
    navigations=(Navigation("AccountingPeriodDetailArray", "AccountingPeriod"),),
)
USER_GROUP_PERIOD = EntityType(
    "UserGroupPeriod",
    (
        _s("Company", 20),
        _i("AccountingYear"),
        _i("AccountingPeriod"),
        _s("UserGroup", 30),
        _s("LedgerId", 10),
        _e("PeriodStatus"),
    ),
    key=("Company", "AccountingYear", "AccountingPeriod", "UserGroup", "LedgerId"),
)
# UserGroupPerPeriodHandling's AccountingPeriod is a query keyed (year, period, company).
PERIOD_PER_USER_GROUP = EntityType(
    "AccountingPeriod",
    _PERIOD_FIELDS,
    key=("AccountingYear", "AccountingPeriod", "Company"),
    navigations=(Navigation("DetailUserGroups", "UserGroupPeriod"),),
)
CURRENCY_RATE = EntityType(
    "CurrencyRate",
    (
        _s("Company", 20),
        _s("CurrencyType", 10),
        _s("CurrencyCode", 3),
        _d("ValidFrom"),
        _n("CurrencyRate"),
        _n("ConvFactor"),
        _s("RefCurrencyCode", 3),
    ),
    key=("Company", "CurrencyType", "CurrencyCode", "ValidFrom"),
    # IFS's `reference CurrencyCodeRef(Company, CurrencyCode) to CurrencyCode(...)`.
    navigations=(Navigation("CurrencyCodeRef", "CurrencyCode", collection=False),),
)
CURRENCY_TYPE = EntityType(
    "CurrencyType",
    (
        _s("Company", 20),
        _s("CurrencyType", 10),
        _s("Description", 100),
        _b("Inverted"),
        _s("RefCurrencyCode", 3),
        _e("TypeDefault"),
    ),
    key=("Company", "CurrencyType"),
    # `reference CurrencyCodeRef(Company, RefCurrencyCode)`: the reference currency.
    navigations=(Navigation("CurrencyCodeRef", "CurrencyCode", collection=False),),
)
CURRENCY_CODE = EntityType(
    "CurrencyCode",
    (
        _s("Company", 20),
        _s("CurrencyCode", 3),
        _s("Description", 100),
        _i("CurrencyRounding"),
        _n("ConvFactor"),
        _b("Inverted"),
    ),
    key=("Company", "CurrencyCode"),
)


# ---------------------------------------------------------------- projections
@dataclass(frozen=True)
class BoundAction:
    """`IfsApp.<Projection>.<Entity>_<Name>`, bound to one entity of `entity_set`."""

    name: str
    entity_set: str
    returns: EdmType | None = None

    def qualified(self, projection: str, entity: EntityType) -> str:
        return f"IfsApp.{projection}.{entity.name}_{self.name}"


@dataclass(frozen=True)
class Projection:
    name: str
    sets: Mapping[str, EntityType]
    extra_types: tuple[EntityType, ...] = ()
    actions: tuple[BoundAction, ...] = ()
    writable: frozenset[str] = field(default_factory=frozenset)  # sets that take POST

    @property
    def namespace(self) -> str:
        return f"IfsApp.{self.name}"

    @property
    def types(self) -> tuple[EntityType, ...]:
        seen: dict[str, EntityType] = {}
        for et in (*self.sets.values(), *self.extra_types):
            seen.setdefault(et.name, et)
        return tuple(seen.values())

    def type_named(self, name: str) -> EntityType | None:
        return next((t for t in self.types if t.name == name), None)

    def action(self, entity_set: str, qualified: str) -> BoundAction | None:
        entity = self.sets.get(entity_set)
        if entity is None:
            return None
        return next(
            (
                a
                for a in self.actions
                if a.entity_set == entity_set and a.qualified(self.name, entity) == qualified
            ),
            None,
        )


VOUCHER_ENTRY_ASSISTANT = "VoucherEntryAssistantHandling"

PROJECTIONS: dict[str, Projection] = {
    p.name: p
    for p in (
        Projection(
            VOUCHER_ENTRY_ASSISTANT,
            {"VoucherSet": VOUCHER_ENTRY_TEMP},
            extra_types=(VOUCHER_POSTING,),
            actions=(
                BoundAction("CreateVoucher", "VoucherSet", "Edm.Int32"),
                BoundAction("RemoveTempVoucher", "VoucherSet"),
            ),
            writable=frozenset({"VoucherSet"}),
        ),
        Projection("VoucherHandling", {"VoucherSet": VOUCHER_ENTRY_HOLD}, (VOUCHER_ROW,)),
        Projection("VoucherRowsAnalysis", {"VoucherRowSet": VOUCHER_ROW}),
        Projection(GL_ROWS_PROJECTION, {GL_ROWS_SET: GEN_LED_VOUCHER_ROW}),
        Projection("AccountsHandling", {"AccountSet": ACCOUNT}),
        *(Projection(f"Code{c}Handling", {f"Code{c}Set": CODE_PART_TYPES[c]}) for c in CODE_PARTS),
        Projection(
            "CodePartValuesHandling",
            {"CompanyFinanceSet": COMPANY_FINANCE},
            tuple(CODE_PART_TYPES.values()),
        ),
        Projection(
            "AccountingPeriodsHandling",
            {"AccountingYearSet": ACCOUNTING_YEAR},
            (ACCOUNTING_PERIOD,),
        ),
        Projection(
            "UserGroupPerPeriodHandling",
            {"AccountingPeriodSet": PERIOD_PER_USER_GROUP},
            (USER_GROUP_PERIOD,),
        ),
        Projection(
            "CurrencyRatesHandling",
            {"CurrencyRateSet": CURRENCY_RATE, "CurrencyTypeSet": CURRENCY_TYPE},
            (CURRENCY_CODE,),
        ),
        Projection("CurrencyCodesHandling", {"CurrencyCodeSet": CURRENCY_CODE}),
    )
}


# ---------------------------------------------------------------- $metadata
def metadata(projection: Projection, omit: frozenset[str] = frozenset()) -> str:
    """EDMX 4.0 for one projection: entity types with keys, navigations, the bound actions
    and the container. `omit` leaves names out (a tenant that lacks them): `Type.Attribute`
    or `Type.Navigation`, a bound action as `$metadata` names it (`VoucherEntry_CreateVoucher`),
    an entity set's name."""
    ns = projection.namespace
    out: list[str] = []
    for et in projection.types:
        out.extend(entity_type_elements(et, ns, omit))
    for action in projection.actions:
        entity = projection.sets[action.entity_set]
        if f"{entity.name}_{action.name}" in omit:
            continue
        out.append(f'<Action Name={quoteattr(entity.name + "_" + action.name)} IsBound="true">')
        out.append(
            f'<Parameter Name="it" Type={quoteattr(ns + "." + entity.name)} Nullable="false"/>'
        )
        if action.returns is not None:
            out.append(f"<ReturnType Type={quoteattr(action.returns)}/>")
        out.append("</Action>")
    sets = {name: et.name for name, et in projection.sets.items() if name not in omit}
    out.extend(entity_container(ns, sets))
    return edmx_document(ns, out)


def expected_names() -> dict[str, Any]:
    """The model as plain data: per projection its entity sets (→ entity type), and per type
    its keys, attributes (→ Edm type), navigations (→ target type) and bound actions (their
    qualified names). What a preflight compares a tenant's `$metadata` with."""
    out: dict[str, Any] = {}
    for p in PROJECTIONS.values():
        out[p.name] = {
            "assumed": p.name in ASSUMED,
            "entity_sets": {s: et.name for s, et in p.sets.items()},
            "types": {
                t.name: {
                    "keys": list(t.key),
                    "attributes": {prop.name: prop.type for prop in t.properties},
                    "navigations": {n.name: n.target for n in t.navigations},
                }
                for t in p.types
            },
            "actions": [a.qualified(p.name, p.sets[a.entity_set]) for a in p.actions],
        }
    return out
