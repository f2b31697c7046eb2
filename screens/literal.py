"""Text from Expensify shown literally: never Rich markup, never a terminal escape.

A merchant called `[bold]ACME` or one carrying `\x1b[31m` must reach the screen as exactly those
characters, visibly, and a 4,000-character merchant must not push the table apart. Every cell
that shows outside data goes through `literal()`.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text

from console.textsafe import visible

ELLIPSIS = "…"

# One printable line, as every output of the console shows outside data (console/textsafe.py):
# control characters (ESC included) become `\\x1b` etc., a tab a space, CR and LF `⏎`.
sanitize = visible


def truncate(text: str, max_cells: int) -> str:
    """Cut to at most `max_cells` terminal cells, ending in an ellipsis when cut."""
    if max_cells <= 0:
        return ""
    if cell_len(text) <= max_cells:
        return text
    out: list[str] = []
    used = 0
    for ch in text:
        width = cell_len(ch)
        if used + width > max_cells - 1:
            break
        out.append(ch)
        used += width
    return "".join(out) + ELLIPSIS


def literal(value: object, max_cells: int | None = 60, style: str = "") -> Text:
    """A Rich Text that shows `value` exactly (markup and escapes inert), cut to `max_cells`."""
    clean = sanitize(value)
    if max_cells is not None:
        clean = truncate(clean, max_cells)
    return Text(clean, style=style, no_wrap=True, overflow="ellipsis")
