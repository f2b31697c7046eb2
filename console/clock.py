"""What day it is, in one place, for the console, its commands and the simulators.

"Today" decides which reversals are due, which period the Close screen opens on, where the
first poll starts and which month the demo world closes. It is the machine's date (UTC)
unless an as-of date is set with `--as-of YYYY-MM-DD` or `ML_CONSOLE_AS_OF`: an operator
re-running a past day's cycle, or a test that must not depend on the calendar.

An as-of date moves "today" only. Audit timestamps, run records and token lifetimes stay on
the machine's clock: they say when something really happened. A cycle may look ahead with a
later as-of date, but nothing is posted with one (`refuse_future_posting`): a voucher dated
by tomorrow's rules cannot be taken back.

A leaf module (standard library only), so the simulators can import it without the core.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

AS_OF_ENV = "ML_CONSOLE_AS_OF"


class AsOfError(ValueError):
    """The as-of date is not a date, or is later than the machine's date where that matters."""


def machine_now() -> datetime:
    return datetime.now(UTC)


def parse_as_of(text: str) -> date:
    """`2026-11-30` → date; anything else is refused with the form to use."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise AsOfError(f"as-of date must be YYYY-MM-DD, e.g. 2026-11-30; got {text!r}") from None


def as_of() -> date | None:
    """The as-of date that is set (`--as-of` or ML_CONSOLE_AS_OF), or None."""
    raw = os.environ.get(AS_OF_ENV, "").strip()
    if not raw:
        return None
    try:
        return parse_as_of(raw)
    except AsOfError as exc:
        raise AsOfError(f"env {AS_OF_ENV}: {exc}") from None


def today(wall: Callable[[], datetime] = machine_now) -> date:
    """The as-of date when one is set, else the date of `wall` (the machine's clock, in UTC)."""
    return as_of() or wall().astimezone(UTC).date()


def now(wall: Callable[[], datetime] = machine_now) -> datetime:
    """`wall` moved to the as-of date (same time of day), for what a system stamps with "now"
    on the as-of day, e.g. the Expensify simulator approving a report."""
    moment = wall().astimezone(UTC)
    day = as_of()
    if day is None:
        return moment
    return datetime.combine(day, moment.timetz())


def refuse_future_posting(wall: Callable[[], datetime] = machine_now) -> None:
    """Raise AsOfError when an as-of date later than the machine's date is set."""
    day = as_of()
    machine_day = wall().astimezone(UTC).date()
    if day is not None and day > machine_day:
        raise AsOfError(
            f"as-of date {day.isoformat()} is later than this machine's date "
            f"{machine_day.isoformat()}: nothing is posted with a future as-of date "
            "(look ahead with --dry-run, or leave --as-of out)"
        )


def month_start(day: date, months: int = 0) -> date:
    """The first day of `day`'s month, moved by `months` (-1: the previous month's first)."""
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def month_end(day: date) -> date:
    """The last day of `day`'s month."""
    return month_start(day, 1) - timedelta(days=1)


def previous_period(day: date) -> str:
    """`YYYY-MM` of the month before `day`'s: the month being closed on that day."""
    first = month_start(day, -1)
    return f"{first.year:04d}-{first.month:02d}"
