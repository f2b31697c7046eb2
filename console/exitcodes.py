"""Exit codes of ml-console (design.md §2). The first that applies wins, in this order:
USAGE, DAMAGED_STATE, AUTH, UNREACHABLE, LOCKED, ATTENTION, OK; UNEXPECTED for anything else.
STALE is `ml-console status`'s own: no successful cycle for `alerts.stale_after`."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1
    USAGE = 2  # usage or configuration error, a missing credential included
    ATTENTION = 3  # some reports are held or failed (audit verify: chain broken)
    AUTH = 4  # authentication refused
    UNREACHABLE = 5  # a service stayed unreachable after bounded retries
    LOCKED = 6  # another run holds the posting lock
    DAMAGED_STATE = 7  # the state file is damaged, unreadable, read-only, full or too new
    STALE = 8  # `status`: no successful sync cycle for alerts.stale_after (for monitors)
