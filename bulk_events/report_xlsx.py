"""The ``.xlsx`` report's sheet: typed cells, a frozen bold header, an autofilter, a colour per
status and column widths from the first rows, in openpyxl's write-only (streaming) mode."""

from __future__ import annotations

import re
from typing import IO, Any

from .outcome import Status

# Fill colours per status (Excel's own "good / bad / neutral" shades, plus grey and blue).
STATUS_COLOURS = {
    Status.SENT: "C6EFCE",
    Status.VALID: "E2EFDA",
    Status.FAILED: "FFC7CE",
    Status.INVALID: "FFC7CE",
    Status.UNKNOWN: "FFEB9C",
    Status.SKIPPED: "D9D9D9",
    Status.PENDING: "DDEBF7",
}
MAX_COLUMN_WIDTH = 50
_MIN_COLUMN_WIDTH = 6
_WIDTH_SAMPLE_ROWS = 200  # widths come from the header and the first rows: the sheet streams
# openpyxl refuses these control characters in a cell (XML 1.0 cannot hold them).
_ILLEGAL_XML = re.compile(r"[\000-\010\013\014\016-\037]")
_LOOKS_ESCAPED = re.compile(r"^'+[=+\-@\t\r]")
_ERROR_LITERALS = frozenset({"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"})
_XLSX_FIRST = frozenset("='#")


class XlsxSheet:
    """A write-only openpyxl sheet (memory stays flat however many rows) with typed cells, a
    frozen, bold header, an autofilter over the data, a fill per status and capped widths.

    The header goes out with the first rows: in a streamed sheet the column widths must be known
    before any row, and they are measured on the header and the first rows."""

    def __init__(self, header: list[str], status_column: int | None) -> None:
        from openpyxl import Workbook
        from openpyxl.cell import Cell, WriteOnlyCell
        from openpyxl.styles import Font, PatternFill

        self._cell_type = WriteOnlyCell
        self._cell_class = Cell
        self.book = Workbook(write_only=True)
        self.sheet = self.book.create_sheet("report")
        self.header = header
        self.status_column = status_column
        self.rows = 0
        self._started = False
        self._bold = Font(bold=True)
        # One style per status, made once: setting .fill on every row's cell would look the
        # fill up in the workbook's style tables again for each of a million rows.
        self._status_styles = {}
        for status, colour in STATUS_COLOURS.items():
            template = WriteOnlyCell(self.sheet)
            template.fill = PatternFill("solid", start_color=colour, end_color=colour)
            self._status_styles[str(status)] = template._style

    def text_column(self, values: list[str]) -> list[Any]:
        """Cells for a column of text: strings stay strings (also ``=…`` and ``#N/A``), characters
        XML cannot hold become U+FFFD."""
        if _ILLEGAL_XML.search("\n".join(values)):
            values = [_ILLEGAL_XML.sub("\ufffd", v) for v in values]
        return [self._text(v) if v[:1] in _XLSX_FIRST else v for v in values]

    def _text(self, value: str) -> Any:
        if _LOOKS_ESCAPED.match(value):
            return "'" + value  # still text; the reader's unescape gives the value back
        if (value.startswith("=") and len(value) > 1) or value in _ERROR_LITERALS:
            cell = self._cell_type(self.sheet, value=value)
            cell.data_type = "s"  # openpyxl would take it for a formula or an error code
            return cell
        return value

    def append(self, rows: list[list[Any]]) -> None:
        if not self._started:
            self._start(rows)
        column = self.status_column
        for row in rows:
            if column is not None:
                status = str(row[column])
                cell = self._cell_type(self.sheet, value=status)
                style = self._status_styles.get(status)
                if style is not None:
                    cell._style = style  # shared, never changed: a written cell is gone
                row[column] = cell
            self.sheet.append(row)
        self.rows += len(rows)

    def _start(self, first_rows: list[list[Any]]) -> None:
        from openpyxl.utils import get_column_letter

        self._started = True
        widths = [len(h) for h in self.header]
        for row in first_rows[:_WIDTH_SAMPLE_ROWS]:
            for i, value in enumerate(row):
                shown = value.value if isinstance(value, self._cell_class) else value
                length = len(str(shown)) if shown is not None else 0
                if length > widths[i]:
                    widths[i] = length
        for i, width in enumerate(widths, start=1):
            self.sheet.column_dimensions[get_column_letter(i)].width = min(
                max(width + 2, _MIN_COLUMN_WIDTH), MAX_COLUMN_WIDTH
            )
        self.sheet.freeze_panes = "A2"
        names = self.text_column(list(self.header))
        cells = []
        for name in names:
            cell = name if isinstance(name, self._cell_class) else self._cell_type(self.sheet, name)
            cell.font = self._bold
            cells.append(cell)
        self.sheet.append(cells)

    def save(self, file: IO[bytes]) -> None:
        from openpyxl.utils import get_column_letter

        if not self._started:
            self._start([])
        last = get_column_letter(max(len(self.header), 1))
        self.sheet.auto_filter.ref = f"A1:{last}{self.rows + 1}"
        self.book.save(file)
