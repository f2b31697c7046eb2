"""Filter literals, paging decisions and the URL policy: pure functions, no HTTP."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from console.errors import ConfigError
from console.http import check_url, parse_retry_after
from console.ifs.odata import (
    MAX_PAGE_SIZE,
    PageState,
    clamp_page_size,
    eq_filter,
    key_predicate,
    odata_literal,
    same_origin,
    startswith_filter,
)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("EXP:R1:abc", "'EXP:R1:abc'"),
        ("O'Brien", "'O''Brien'"),
        ("''", "''''''"),
        ("x' or 1 eq 1 or 'a' eq 'a", "'x'' or 1 eq 1 or ''a'' eq ''a'"),
        (date(2026, 11, 3), "2026-11-03"),
        (datetime(2026, 1, 1, 12, 0, tzinfo=UTC), "2026-01-01T12:00:00Z"),
        (Decimal("1.08"), "1.08"),
        (Decimal("1E+2"), "100"),
        (42, "42"),
        (True, "true"),
        (None, "null"),
    ],
)
def test_odata_literal(value, literal):
    assert odata_literal(value) == literal


def test_odata_literal_refuses_floats_and_naive_datetimes():
    with pytest.raises(TypeError):
        odata_literal(1.08)
    with pytest.raises(ValueError):
        odata_literal(datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        odata_literal(Decimal("NaN"))


def test_filters_quote_every_value():
    assert eq_filter({"Company": "10", "CurrencyCode": None, "AccountingYear": 2026}) == (
        "Company eq '10' and AccountingYear eq 2026"
    )
    assert (
        startswith_filter("ReferenceNumber", "EXP:O'N") == "startswith(ReferenceNumber,'EXP:O''N')"
    )
    assert (
        key_predicate({"Company": "1'0", "VoucherType": "X"}) == "(Company='1''0',VoucherType='X')"
    )


def test_page_size_is_clamped_to_5000():
    assert clamp_page_size(10_000) == MAX_PAGE_SIZE == 5000
    assert clamp_page_size(0) == 1
    assert PageState(99_999).page_size == 5000


def test_paging_rule():
    state = PageState(100)
    assert state.next_after(100, None) == ("skip", 100)
    assert state.next_after(100, "https://h/x?$skip=200") == ("link", "https://h/x?$skip=200")
    assert state.next_after(40, None) is None
    repeat = PageState(10)
    repeat.next_after(10, "https://h/a")
    with pytest.raises(ValueError, match="same nextLink"):
        repeat.next_after(10, "https://h/a")


def test_same_origin():
    assert same_origin("https://acme.ifs.cloud/main/x?$skip=1", "https://acme.ifs.cloud")
    assert not same_origin("https://evil.example/main/x", "https://acme.ifs.cloud")
    assert not same_origin("http://acme.ifs.cloud/x", "https://acme.ifs.cloud")


@pytest.mark.parametrize(
    "url",
    [
        "https://acme.ifs.cloud",
        "https://acme.ifs.cloud/",
        "http://127.0.0.1:8080",
        "http://127.5.0.1",
        "http://[::1]:9000",
        "http://localhost:5000/",
    ],
)
def test_check_url_accepts_https_and_loopback(url):
    assert check_url(url, service="ifs") == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://acme.ifs.cloud", "plain http"),
        ("http://10.0.0.5", "plain http"),
        ("ftp://acme.ifs.cloud", "https://"),
        ("acme.ifs.cloud", "https://"),
        ("", "https://"),
        ("https://user:pw@acme.ifs.cloud", "user name or password"),
        ("https://acme.ifs.cloud/?token=1", "query"),
    ],
)
def test_check_url_refuses_the_rest(url, says):
    with pytest.raises(ConfigError, match=says) as info:
        check_url(url, service="expensify")
    assert str(info.value).startswith("expensify:")
    assert "pw@" not in str(info.value) or "user name" in str(info.value)


def test_retry_after_forms():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
