"""Outside data on the way out: shown, never executed.

A category called `ESC[2J` must not clear the operator's terminal, a NUL must not cut a line
short, a report ID `@SUM(1+1)` or a merchant `=HYPERLINK(...)` must not run in a spreadsheet.
Every output of the command line goes through one of these:

- `visible(value)`: one printable line, as the TUI shows a cell (screens/literal.py uses it):
  C0 and C1 controls and DEL become `\\x1b`-style text, a tab a space, CR and LF `⏎`.
- `visible_text(text)`: a block of lines (the dry-run diff, the close report, `status`):
  the same, but its newlines stay newlines.
- `json_text(obj)`: JSON whose strings keep their exact value but carry no raw control
  character (json escapes C0 by itself; DEL and C1 are escaped here too).
- `csv_cell(value)`: a CSV cell a spreadsheet shows as text (OWASP's CSV injection rule: a
  cell starting with `=`, `+`, `-`, `@`, a tab or CR gets a leading `'`), made visible; a
  plain number such as `-12.50` stays a number.

HTML escapes `visible(value)` with `html.escape` (console/close_report.py).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

# C0/C1 controls and DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_NOT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
# DEL and C1: what json.dumps(ensure_ascii=False) leaves raw.
_JSON_RAW = re.compile(r"[\x7f-\x9f]")
# A cell that starts like this is a formula (or a DDE call) to a spreadsheet; the full-width
# forms count, since some spreadsheets fold them.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _shown(match: re.Match[str]) -> str:
    ch = match.group(0)
    if ch == "\t":
        return " "
    if ch in "\r\n":
        return "⏎"
    return f"\\x{ord(ch):02x}"


def visible(value: object) -> str:
    """The value as one printable line: control characters (ESC, NUL...) become `\\x1b` etc."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(_shown, text)


def visible_text(text: str) -> str:
    """Like `visible`, line by line: newlines are kept, every other control shown."""
    return _CONTROL_NOT_NEWLINE.sub(_shown, text)


def json_text(value: Any, **kwargs: Any) -> str:
    """json.dumps (non-ASCII kept readable) with no raw control character left in it."""
    kwargs.setdefault("ensure_ascii", False)
    return escape_json_text(json.dumps(value, **kwargs))


def escape_json_text(text: str) -> str:
    """A JSON text with its raw DEL and C1 characters (legal inside JSON strings, live in a
    terminal) written as \\u escapes: the same JSON value."""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def csv_cell(value: object) -> str:
    """A cell a spreadsheet shows as text; numbers (int, Decimal, `-12.50`) stay numbers."""
    if value is None:
        return ""
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        text = "'" + text
    return visible(text)
