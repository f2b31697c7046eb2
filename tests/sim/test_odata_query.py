"""OData query support of the IFS simulator, in isolation: $filter, $orderby, paging, keys, ETag."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from console.sim.odata import (
    EntityType,
    Navigation,
    ODataError,
    Property,
    edmx,
    form_etag,
    format_key_predicate,
    order_rows,
    parse_filter,
    parse_key_predicate,
    parse_query_options,
    rowid,
    run_query,
    select_fields,
)

ITEM = EntityType(
    "Item",
    (
        Property("Company", "Edm.String"),
        Property("Code", "Edm.String"),
        Property("Description", "Edm.String"),
        Property("ValidFrom", "Edm.Date"),
        Property("Year", "Edm.Int32"),
        Property("Rate", "Edm.Decimal"),
    ),
    key=("Company", "Code"),
    navigations=(Navigation("Children", "Item"),),
)

ROWS: list[dict[str, Any]] = [
    {
        "Company": "10",
        "Code": "6110",
        "Description": "Airfare",
        "ValidFrom": date(2020, 1, 1),
        "Year": 2026,
        "Rate": Decimal("1.08"),
    },
    {
        "Company": "10",
        "Code": "CC-410",
        "Description": "O'Brien lab",
        "ValidFrom": date(2026, 11, 3),
        "Year": 2025,
        "Rate": Decimal("0.925"),
    },
    {
        "Company": "20",
        "Code": "6120",
        "Description": None,
        "ValidFrom": date(2026, 12, 1),
        "Year": 2027,
        "Rate": None,
    },
]


def codes(expr: str) -> list[str]:
    keep = parse_filter(expr, ITEM)
    return [r["Code"] for r in ROWS if keep(r)]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("Company eq '10'", ["6110", "CC-410"]),
        ("Company ne '10'", ["6120"]),
        ("Year gt 2025", ["6110", "6120"]),
        ("Year ge 2026", ["6110", "6120"]),
        ("Year lt 2026", ["CC-410"]),
        ("Year le 2026", ["6110", "CC-410"]),
        ("Rate gt 1", ["6110"]),
        ("Rate eq 0.925", ["CC-410"]),
        ("Rate le 1.08 and Rate ge 1.08", ["6110"]),
        ("ValidFrom eq 2026-11-03", ["CC-410"]),
        ("ValidFrom le 2026-11-03", ["6110", "CC-410"]),
        ("ValidFrom gt 2026-11-03", ["6120"]),
        ("Description eq 'O''Brien lab'", ["CC-410"]),
        ("contains(Description,'''')", ["CC-410"]),
        ("Description eq null", ["6120"]),
        ("Description ne null", ["6110", "CC-410"]),
        ("Company eq '10' and Year eq 2025", ["CC-410"]),
        ("Company eq '20' or Year eq 2025", ["CC-410", "6120"]),
        ("not (Company eq '10')", ["6120"]),
        ("not Company eq '10'", ["6120"]),
        ("(Company eq '10' or Company eq '20') and Year ne 2026", ["CC-410", "6120"]),
        ("Company eq '10' and (Year eq 2025 or Year eq 2026)", ["6110", "CC-410"]),
        ("contains(Description,'lab')", ["CC-410"]),
        ("startswith(Code,'CC-')", ["CC-410"]),
        ("endswith(Code,'10')", ["6110", "CC-410"]),
        ("tolower(Description) eq 'airfare'", ["6110"]),
        ("toupper(Code) eq 'CC-410'", ["CC-410"]),
        ("length(Code) eq 6", ["CC-410"]),
        ("year(ValidFrom) eq 2020", ["6110"]),
        ("Year eq 2026 or true", ["6110", "CC-410", "6120"]),
        ("Code eq IfsApp.X.Enum'6110'", ["6110"]),
        ("  Company   eq\t'10'  and  Code eq '6110' ", ["6110"]),
    ],
)
def test_filter_selects_the_matching_rows(expr: str, expected: list[str]) -> None:
    assert codes(expr) == expected


def test_comparison_with_null_is_unknown_so_not_negates_to_unknown() -> None:
    # Rate of 6120 is null: "Rate gt 1" is unknown there, and so is its negation.
    assert codes("not (Rate gt 1)") == ["CC-410"]
    assert codes("contains(Description,'x') or Year eq 2027") == ["6120"]


@pytest.mark.parametrize(
    ("expr", "fragments"),
    [
        ("Company eqq '10'", ["'eqq'", "position 9", "comparison operator"]),
        ("Company eq '10", ["not closed", "position 12"]),
        ("Company eq '10' and", ["the end of the expression", "position 20"]),
        ("(Company eq '10'", ["expected ')'", "position 17"]),
        ("Company eq '10')", ["')'", "position 16"]),
        ("Company eq # ", ["'#'", "position 12"]),
        ("ValidFrom eq '2026-11-03'", ["cannot compare Edm.Date", "unquoted"]),
        ("Year eq '2026'", ["cannot compare Edm.Int32", "Edm.String"]),
        ("ValidFrom eq 2026-13-45", ["'2026-13-45' is not a calendar date"]),
        ("Company", ["not a condition"]),
        ("frobnicate(Code) eq 1", ["unknown function 'frobnicate'", "position 1"]),
        ("contains(Year,'1')", ["contains() needs Edm.String", "'Year' is Edm.Int32"]),
        ("Year eq 1 and Code", ["'and' needs a condition", "'Code' is Edm.String"]),
        ("", ["empty expression"]),
    ],
)
def test_malformed_filter_names_the_bad_token_and_position(expr: str, fragments: list[str]) -> None:
    with pytest.raises(ODataError) as info:
        parse_filter(expr, ITEM)
    assert info.value.status == 400
    assert info.value.code == "ODP_URI_SYNTAX_ERROR"
    for fragment in fragments:
        assert fragment in info.value.message


def test_unknown_property_is_named_in_filter_select_and_orderby() -> None:
    for params in (
        [("$filter", "Nope eq 1")],
        [("$select", "Code,Nope")],
        [("$orderby", "Nope desc")],
    ):
        with pytest.raises(ODataError) as info:
            parse_query_options(params, ITEM)
        assert info.value.status == 400
        assert "'Nope'" in info.value.message
        assert params[0][0] in info.value.message


def test_top_above_the_maximum_answers_500() -> None:
    with pytest.raises(ODataError) as info:
        parse_query_options([("$top", "5001")], ITEM, max_top=5000)
    assert info.value.status == 500
    assert "5001" in info.value.message and "5000" in info.value.message
    assert parse_query_options([("$top", "5000")], ITEM, max_top=5000).top == 5000


@pytest.mark.parametrize(
    ("name", "value", "status"),
    [
        ("$top", "-1", 400),
        ("$skip", "ten", 400),
        ("$count", "yes", 400),
        ("$search", "x", 501),
        ("$expand", "Nope", 400),
        ("$orderby", "Code sideways", 400),
        ("$format", "xml", 400),
    ],
)
def test_bad_query_option_values_are_refused(name: str, value: str, status: int) -> None:
    with pytest.raises(ODataError) as info:
        parse_query_options([(name, value)], ITEM)
    assert info.value.status == status
    assert name in info.value.message or value in info.value.message


def test_custom_query_options_are_ignored() -> None:
    opts = parse_query_options([("sap-client", "1"), ("$format", "json")], ITEM)
    assert opts.filter is None and opts.top is None


def test_orderby_several_keys_with_nulls_last_ascending_and_first_descending() -> None:
    ordered = order_rows(ROWS, [("Company", True), ("Code", False)])
    assert [r["Code"] for r in ordered] == ["6120", "6110", "CC-410"]
    assert [r["Code"] for r in order_rows(ROWS, [("Rate", False)])] == ["CC-410", "6110", "6120"]
    assert [r["Code"] for r in order_rows(ROWS, [("Rate", True)])] == ["6120", "6110", "CC-410"]


def test_run_query_cuts_server_pages_inside_skip_and_top() -> None:
    rows = [{"Code": f"{i:03d}"} for i in range(10)]
    opts = parse_query_options([("$skip", "1"), ("$top", "7")], ITEM)
    first = run_query(rows, opts, page_size=3)
    assert [r["Code"] for r in first.rows] == ["001", "002", "003"]
    assert (first.count, first.next_skip, first.next_top) == (10, 4, 4)
    opts.skip, opts.top = first.next_skip or 0, first.next_top
    second = run_query(rows, opts, page_size=3)
    assert [r["Code"] for r in second.rows] == ["004", "005", "006"]
    opts.skip, opts.top = second.next_skip or 0, second.next_top
    last = run_query(rows, opts, page_size=3)
    assert [r["Code"] for r in last.rows] == ["007"]
    assert last.next_skip is None
    no_top = run_query(rows, parse_query_options([], ITEM), page_size=4)
    assert (no_top.next_skip, no_top.next_top) == (4, None)


def test_select_keeps_only_the_named_fields_with_json_dates() -> None:
    assert select_fields(ROWS[0], ("Code", "ValidFrom")) == {
        "Code": "6110",
        "ValidFrom": "2020-01-01",
    }


def test_key_predicate_round_trip_with_quotes_and_integers() -> None:
    voucher = EntityType(
        "Voucher",
        (
            Property("Company", "Edm.String"),
            Property("VoucherType", "Edm.String"),
            Property("AccountingYear", "Edm.Int32"),
            Property("VoucherNo", "Edm.Int32"),
        ),
        key=("Company", "VoucherType", "AccountingYear", "VoucherNo"),
    )
    text = "Company='O''Neil',VoucherType='X',AccountingYear=2026,VoucherNo=12"
    values = parse_key_predicate(text, voucher, "VoucherSet")
    assert values == {
        "Company": "O'Neil",
        "VoucherType": "X",
        "AccountingYear": 2026,
        "VoucherNo": 12,
    }
    assert format_key_predicate(values, voucher) == text
    with pytest.raises(ODataError, match="lacks AccountingYear, VoucherNo"):
        parse_key_predicate("Company='10',VoucherType='X'", voucher, "VoucherSet")
    with pytest.raises(ODataError, match="'Text' is not a key of VoucherSet"):
        parse_key_predicate("Company='10',Text='x'", voucher, "VoucherSet")
    with pytest.raises(ODataError, match="Invalid value x for key AccountingYear"):
        parse_key_predicate(
            "Company='10',VoucherType='X',AccountingYear=x,VoucherNo=1", voucher, "VoucherSet"
        )


def test_etag_is_formed_as_ifs_forms_it() -> None:
    # IFS's own sample: objid AACIMGAAFAABpIHAAA, objversion 20191031132400.
    etag = form_etag("AACIMGAAFAABpIHAAA", datetime(2019, 10, 31, 13, 24, 0))
    assert etag == 'W/"Vy8iQUFDSU1HQUFGQUFCcElIQUFBOjIwMTkxMDMxMTMyNDAwIg=="'
    inner = base64.b64decode(etag[3:-1]).decode()
    assert inner == 'W/"AACIMGAAFAABpIHAAA:20191031132400"'


def test_rowids_are_oracle_shaped_and_unique() -> None:
    ids = {rowid(table, row) for table in range(1, 4) for row in range(500)}
    assert len(ids) == 1500
    assert all(len(i) == 18 for i in ids)


def test_edmx_has_keys_types_navigation_and_container() -> None:
    doc = ET.fromstring(edmx("IfsApp.Test", [ITEM], {"ItemSet": "Item"}))
    ns = {
        "edmx": "http://docs.oasis-open.org/odata/ns/edmx",
        "edm": "http://docs.oasis-open.org/odata/ns/edm",
    }
    entity = doc.find("edmx:DataServices/edm:Schema/edm:EntityType[@Name='Item']", ns)
    assert entity is not None
    keys = [p.get("Name") for p in entity.findall("edm:Key/edm:PropertyRef", ns)]
    assert keys == ["Company", "Code"]
    types = {p.get("Name"): p.get("Type") for p in entity.findall("edm:Property", ns)}
    assert types["ValidFrom"] == "Edm.Date" and types["Rate"] == "Edm.Decimal"
    nav = entity.find("edm:NavigationProperty", ns)
    assert nav is not None and nav.get("Type") == "Collection(IfsApp.Test.Item)"
    entity_set = doc.find("edmx:DataServices/edm:Schema/edm:EntityContainer/edm:EntitySet", ns)
    assert entity_set is not None and entity_set.get("EntityType") == "IfsApp.Test.Item"
