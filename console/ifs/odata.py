"""OData v4 pieces of the IFS client: filter literals (the one place values are quoted)
and the paging rule.

Every value that goes into a `$filter` or a key predicate goes through `odata_literal`: a
report ID or a merchant with an apostrophe must never break out of its string.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

MAX_PAGE_SIZE = 5000  # IFS answers 500 for $top above this


def odata_literal(value: Any) -> str:
    """A Python value as an OData v4 literal: strings quoted with `'` (an embedded `'`
    doubled), Edm.Date as yyyy-mm-dd, DateTimeOffset in ISO form, numbers as is, booleans
    and null as keywords. Floats are refused: money and rates are Decimal here."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot express {value} as an OData literal")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("floats are not allowed in OData filters; use Decimal or int")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a datetime in an OData filter needs a time zone")
        text = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return text
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no OData literal for a {type(value).__name__}")


def eq_filter(fields: Mapping[str, Any]) -> str:
    """`A eq 'x' and B eq 2` for the non-None values (field names are ours, never input)."""
    parts = [f"{name} eq {odata_literal(v)}" for name, v in fields.items() if v is not None]
    return " and ".join(parts)


def startswith_filter(field: str, prefix: str) -> str:
    return f"startswith({field},{odata_literal(prefix)})"


def key_predicate(keys: Mapping[str, Any]) -> str:
    """`(Company='10',VoucherType='X')` for addressing one entity by its keys."""
    return "(" + ",".join(f"{k}={odata_literal(v)}" for k, v in keys.items()) + ")"


def clamp_page_size(size: int) -> int:
    return max(1, min(int(size), MAX_PAGE_SIZE))


def same_origin(url: str, base: str) -> bool:
    """The nextLink must point at the tenant we authenticated to: following it elsewhere
    would hand our bearer token to another host."""
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


class PageState:
    """Decides the next request of a paged read.

    Follow an absolute `@odata.nextLink` when the server gives one; without it, a page
    shorter than what we asked for is the last, and a full page asks for the next `$skip`.
    """

    def __init__(self, page_size: int) -> None:
        self.page_size = clamp_page_size(page_size)
        self.skip = 0
        self.pages = 0
        self.seen_links: set[str] = set()

    def next_after(self, rows: int, next_link: str | None) -> tuple[str, Any] | None:
        """("link", url) or ("skip", n) for the next request, or None when done."""
        self.pages += 1
        self.skip += rows
        if next_link:
            if next_link in self.seen_links:
                raise ValueError("the server repeated the same nextLink")
            self.seen_links.add(next_link)
            return ("link", next_link)
        if rows < self.page_size or rows == 0:
            return None
        return ("skip", self.skip)
