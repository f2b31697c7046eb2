"""A virtual table over SQL: only the rows on screen exist, the rest stay in the database.

Modelled on Toolong's log view: a ScrollView whose `render_line` draws one row at a time from a
small page cache. Pages are fetched by a `RowSource` in thread workers, so a slow query shows a
`…` placeholder row for a moment instead of freezing the screen, and 200,000 audit events cost
no more memory than the forty rows in view.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import work
from textual.binding import BindingType
from textual.geometry import Region, Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from screens.keys import bindings
from screens.literal import literal
from screens.widgets import ControlMessage

PAGE_SIZE = 200
MAX_PAGES = 40  # the cache: 8,000 rows at most, whatever the table's size


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int = 0  # 0: takes the width the fixed columns leave (at least `min_width`)
    min_width: int = 8
    justify: str = "left"
    # Narrow terminals drop columns, highest `drop` first, until the rest fit whole (an
    # amount is never cut mid-number); 0: never dropped.
    drop: int = 0


@dataclass
class Row:
    """One row: `key` identifies it (report ID, event seq), `cells` are already literal Text or
    plain strings (which are made literal here), `payload` is whatever the screen needs."""

    key: str
    cells: dict[str, Text | str]
    payload: Any = None
    selectable: bool = True
    span: Text | None = None  # a full-width line instead of cells (group headings)


class RowSource(Protocol):
    """Where the rows come from. Both calls run in a worker thread."""

    def count(self) -> int: ...

    def fetch(self, offset: int, limit: int) -> Sequence[Row]: ...


@dataclass
class ListSource:
    """Rows already in memory (detail views, tests)."""

    rows: list[Row] = field(default_factory=list)

    def count(self) -> int:
        return len(self.rows)

    def fetch(self, offset: int, limit: int) -> Sequence[Row]:
        return self.rows[offset : offset + limit]


class VirtualTable(ScrollView, can_focus=True):
    """Keyboard-first table: arrows/j/k move, enter opens, space selects."""

    HELP = (
        "Arrows or j/k move the cursor, PgUp/PgDn page, Home/End jump. Enter opens the row, "
        "space marks it (marked rows are what the screen's actions work on)."
    )

    BINDINGS: ClassVar[list[BindingType]] = bindings("table")

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "virtual-table--header",
        "virtual-table--cursor",
        "virtual-table--marked",
        "virtual-table--placeholder",
    }

    DEFAULT_CSS = """
    VirtualTable { height: 1fr; }
    VirtualTable > .virtual-table--header { text-style: bold; background: $panel; }
    VirtualTable > .virtual-table--cursor { background: $secondary 60%; }
    VirtualTable:focus > .virtual-table--cursor { background: $secondary; }
    VirtualTable > .virtual-table--marked { text-style: bold; }
    VirtualTable > .virtual-table--placeholder { color: $text-muted; }
    """

    cursor_row: reactive[int] = reactive(0, always_update=True)
    total: reactive[int] = reactive(0)

    class Highlighted(ControlMessage["VirtualTable"]):
        def __init__(self, table: VirtualTable, row: Row | None) -> None:
            super().__init__(table)
            self.row = row

    class Opened(ControlMessage["VirtualTable"]):
        def __init__(self, table: VirtualTable, row: Row) -> None:
            super().__init__(table)
            self.row = row

    class MarksChanged(ControlMessage["VirtualTable"]):
        """The marks changed (marked, unmarked, all cleared)."""

    class Reloaded(ControlMessage["VirtualTable"]):
        """The count is known (after every reload)."""

        def __init__(self, table: VirtualTable, total: int) -> None:
            super().__init__(table)
            self.total = total

    def __init__(
        self,
        columns: Sequence[Column],
        source: RowSource | None = None,
        *,
        markable: bool = True,
        openable: bool = True,
        page_size: int = PAGE_SIZE,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns = list(columns)
        self.source: RowSource = source or ListSource()
        self.markable = markable
        self.openable = openable  # False: enter opens nothing here, so it is not offered
        self.page_size = page_size
        self.marked: dict[str, Row] = {}
        self._pages: OrderedDict[int, Sequence[Row]] = OrderedDict()
        self._loading: set[int] = set()
        self._generation = 0
        self._lock = threading.Lock()
        self._widths: list[int] = []
        self._strips: OrderedDict[tuple[int, int, bool, bool], Strip] = OrderedDict()
        self.loaded_once = False

    # ---- data -------------------------------------------------------------------------------

    def set_source(self, source: RowSource) -> None:
        self.source = source
        self.reload(keep_cursor=False)

    def reload(self, *, keep_cursor: bool = True) -> None:
        """Forget the cached pages and count again (after a filter change or a sync)."""
        self._generation += 1
        self._pages.clear()
        self._strips.clear()
        self._loading.clear()
        if not keep_cursor:
            self.cursor_row = 0
            self.scroll_to(y=0, animate=False)
        self._count(self._generation)

    @work(thread=True, group="vtable-count", exclusive=True, exit_on_error=False)
    def _count(self, generation: int) -> None:
        total = self.source.count()
        first = self.source.fetch(0, self.page_size) if total else []
        self.app.call_from_thread(self._counted, generation, total, first)

    def _counted(self, generation: int, total: int, first: Sequence[Row]) -> None:
        if generation != self._generation:
            return
        self._pages[0] = first
        self._strips.clear()
        self.total = total
        self.loaded_once = True
        self.virtual_size = Size(self.size.width, total + 1)
        if self.cursor_row >= total:
            self.cursor_row = max(0, total - 1)
        else:
            self.cursor_row = self.cursor_row
        self.refresh()
        self.post_message(self.Reloaded(self, total))

    def _request_page(self, page: int) -> None:
        if page in self._loading or page in self._pages:
            return
        self._loading.add(page)
        self._fetch_page(self._generation, page)

    @work(thread=True, group="vtable-pages", exit_on_error=False)
    def _fetch_page(self, generation: int, page: int) -> None:
        rows = self.source.fetch(page * self.page_size, self.page_size)
        self.app.call_from_thread(self._page_loaded, generation, page, rows)

    def _page_loaded(self, generation: int, page: int, rows: Sequence[Row]) -> None:
        if generation != self._generation:
            return
        self._loading.discard(page)
        self._pages[page] = rows
        self._strips.clear()
        while len(self._pages) > MAX_PAGES:
            self._pages.popitem(last=False)
        self.refresh()
        if page == self.cursor_row // self.page_size:
            self.post_message(self.Highlighted(self, self.row_at(self.cursor_row)))

    def row_at(self, index: int) -> Row | None:
        if index < 0 or index >= self.total:
            return None
        page, offset = divmod(index, self.page_size)
        rows = self._pages.get(page)
        if rows is None:
            self._request_page(page)
            return None
        self._pages.move_to_end(page)
        return rows[offset] if offset < len(rows) else None

    @property
    def cursor(self) -> Row | None:
        return self.row_at(self.cursor_row)

    # ---- layout and drawing ---------------------------------------------------------------------

    def _column_widths(self, width: int) -> list[int]:
        """Each column's width; 0 for a column dropped because the terminal is too narrow."""
        gutter = 2 if self.markable else 0
        shown = list(self.columns)

        def needed(cols: list[Column]) -> int:
            return sum(c.width or c.min_width for c in cols) + len(cols) - 1 + gutter

        while needed(shown) > width and any(c.drop for c in shown):
            shown.remove(max((c for c in shown if c.drop), key=lambda c: c.drop))
        fixed = sum(c.width for c in shown if c.width) + len(shown) - 1 + gutter
        flex = [c for c in shown if not c.width]
        spare = max(0, width - fixed)
        widths = []
        for c in self.columns:
            if c not in shown:
                widths.append(0)
            elif c.width:
                widths.append(c.width)
            else:
                widths.append(max(c.min_width, spare // max(1, len(flex))))
        return widths

    def on_resize(self) -> None:
        self._strips.clear()
        self._widths = self._column_widths(self.size.width)
        self.virtual_size = Size(self.size.width, self.total + 1)

    def _line(self, cells: list[Text], marked: bool) -> Text:
        line = Text(no_wrap=True)
        if self.markable:
            line.append("◉ " if marked else "  ")
        first = True
        for i, (cell, width) in enumerate(zip(cells, self._widths, strict=False)):
            if not width:
                continue  # dropped at this width
            if not first:
                line.append(" ")
            first = False
            cell = cell.copy()
            cell.truncate(width, overflow="ellipsis")
            cell.align(self.columns[i].justify, width)  # type: ignore[arg-type]
            line.append_text(cell)
        return line

    def _to_strip(self, text: Text, style: Style | None) -> Strip:
        width = self.size.width
        segments = list(text.render(self.app.console))
        segments = [s for s in segments if s.text != "\n"]
        strip = Strip(segments).crop_extend(0, width, None)
        if style is not None:
            strip = strip.apply_style(style)
        return strip.simplify()

    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y - 1
        if y > 0 and 0 <= index < self.total:
            row = self.row_at(index)
            if row is not None:
                key = (index, self.size.width, index == self.cursor_row, row.key in self.marked)
                strip = self._strips.get(key)
                if strip is None:
                    strip = self._render_row_line(y)
                    self._strips[key] = strip
                    while len(self._strips) > 400:
                        self._strips.popitem(last=False)
                return strip
        return self._render_row_line(y)

    def _render_row_line(self, y: int) -> Strip:
        if not self._widths:
            self._widths = self._column_widths(self.size.width)
        base = self.rich_style
        if y == 0:
            header = self._line([Text(c.title) for c in self.columns], False)
            hs = self.get_component_rich_style("virtual-table--header")
            return self._to_strip(header, base + hs)
        index = self.scroll_offset.y + y - 1
        if index >= self.total:
            return Strip([Segment(" " * self.size.width, base)])
        row = self.row_at(index)
        if row is None:
            ph = self.get_component_rich_style("virtual-table--placeholder")
            return self._to_strip(Text("  …"), base + ph)
        marked = row.key in self.marked
        if row.span is not None:
            style = base
            if index == self.cursor_row:
                style = style + self.get_component_rich_style("virtual-table--cursor")
            return self._to_strip(row.span, style)
        cells = [
            c if isinstance(c, Text) else literal(c, None)
            for c in (row.cells.get(col.key, "") for col in self.columns)
        ]
        style = base
        if marked:
            style = style + self.get_component_rich_style("virtual-table--marked")
        if index == self.cursor_row:
            style = style + self.get_component_rich_style("virtual-table--cursor")
        return self._to_strip(self._line(cells, marked), style)

    # ---- cursor and actions -------------------------------------------------------------------

    @property
    def _body_height(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def watch_cursor_row(self, old: int, new: int) -> None:
        top = int(self.scroll_offset.y)
        if new < top:
            self.scroll_to(y=new, animate=False, immediate=True)
            self.refresh()
        elif new >= top + self._body_height:
            self.scroll_to(y=new - self._body_height + 1, animate=False, immediate=True)
            self.refresh()
        else:
            for index in (old, new):  # only the two rows whose look changed
                if top <= index < top + self._body_height:
                    self.refresh(Region(0, index - top + 1, self.size.width, 1))
        if self.is_mounted:
            self.post_message(self.Highlighted(self, self.row_at(new)))

    def action_cursor(self, delta: int) -> None:
        if self.total:
            self.cursor_row = min(self.total - 1, max(0, self.cursor_row + delta))

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * self._body_height)

    def action_jump(self, where: int) -> None:
        if self.total:
            self.cursor_row = 0 if where == 0 else self.total - 1

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys that cannot act on this table are not offered (footer, help)."""
        if action == "open_row":
            return self.openable
        if action == "toggle_mark":
            return self.markable
        return True

    def action_open_row(self) -> None:
        row = self.cursor
        if row is not None:
            self.post_message(self.Opened(self, row))

    def action_toggle_mark(self) -> None:
        row = self.cursor
        if not self.markable or row is None:
            return
        if row.key in self.marked:
            del self.marked[row.key]
        elif row.selectable:
            self.marked[row.key] = row
        else:
            self.notify(f"{row.key} cannot be selected here", severity="warning")
        self._strips.clear()
        self.post_message(self.MarksChanged(self))
        self.action_cursor(1)
        self.refresh()

    def mark_all(self, predicate: Callable[[Row], bool]) -> int:
        """Marks every loaded row that passes (the screen loads what it needs first)."""
        added = 0
        for rows in self._pages.values():
            for row in rows:
                if row.selectable and predicate(row) and row.key not in self.marked:
                    self.marked[row.key] = row
                    added += 1
        self._strips.clear()
        self.refresh()
        return added

    def clear_marks(self) -> None:
        self.marked.clear()
        self._strips.clear()
        self.refresh()

    def on_click(self, event: Any) -> None:
        y = getattr(event, "y", None)
        if y is None or y == 0:
            return
        index = int(self.scroll_offset.y) + y - 1
        if 0 <= index < self.total:
            self.cursor_row = index
