"""Excel workbooks -> rows of text cells, by one of two readers.

:func:`open_xlsx` has the workbook checked and its parts listed by :mod:`.workbook` before any
cell is read, then reads the chosen sheet with python-calamine (fast, holds the sheet) or
openpyxl (streaming, and the only one that sees number formats). Both render cells through
:mod:`.render`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from bulk_events.errors import FileFormatError

from .header import find_header
from .render import past_last_date, render, render_padded, render_serial
from .sheetxml import SheetFacts, scan_sheet
from .table import (
    CELL_ERRORS,
    MAX_CELL_CHARS,
    Detected,
    Layout,
    Table,
    cell_too_big_error,
    column_letter,
    no_header_error,
    row_index,
)
from .workbook import inspect_xlsx, raw_shared_strings

log = logging.getLogger(__name__)

# Above this much sheet XML (about 300k rows of 8 columns) calamine would hold ~200 MiB for the
# whole run: such sheets are streamed by openpyxl instead.
CALAMINE_MAX_SHEET_XML = 100 * 1000 * 1000

# What Excel shows for a formula error; anything else in an error cell is shown as #VALUE!.
ERROR_CODES = frozenset(
    [
        "#NULL!",
        "#DIV/0!",
        "#VALUE!",
        "#REF!",
        "#NAME?",
        "#NUM!",
        "#N/A",
        "#GETTING_DATA",
        "#SPILL!",
        "#CALC!",
        "#FIELD!",
        "#BLOCKED!",
        "#CONNECT!",
        "#BUSY!",
        "#UNKNOWN!",
        "#PYTHON!",
    ]
)
_OOXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def decode_ooxml_escapes(text: str) -> str:
    """Decode OOXML's ``_xHHHH_`` escapes (``_x000D_`` is a carriage return, ``_x005F_`` a "_").

    >>> decode_ooxml_escapes("a_x000D_b"), decode_ooxml_escapes("_x005F_x000D_")
    ('a\\rb', '_x000D_')
    """
    if "_x" not in text:
        return text
    return _OOXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def open_xlsx(
    path: Path, sheet: str | int | None, engine: str | None = None, header_row: int | None = None
) -> Table:
    """Open a checked workbook with the engine that fits it (``engine``, for tests, forces one).
    ``header_row`` says where the header is; by default :func:`.header.find_header` finds it.

    calamine is about five times faster but holds the whole sheet in memory (about twice the
    sheet's XML) for as long as the table is open, and it can see neither number formats nor
    formula errors (it reads #N/A as empty). So openpyxl (streaming, bounded memory) reads
    workbooks with zero-padding formats, sheets holding error cells, and sheets too big to
    hold. Both render cells the same way.
    """
    name = path.name
    workbook = inspect_xlsx(path)
    all_names = tuple(n for n, _ in workbook.sheets)
    if not all_names:
        raise FileFormatError(f"{name} has no worksheets")
    chosen = _choose_sheet(name, workbook.sheets, sheet)
    too_big = workbook.xml_sizes.get(chosen, 0) > CALAMINE_MAX_SHEET_XML
    errors = workbook.parts.get(chosen) in workbook.error_parts
    wants_openpyxl = workbook.pad_formats or too_big or errors
    forced = engine is not None
    engine = engine or ("openpyxl" if wants_openpyxl and not workbook.backslashes else "calamine")
    part = workbook.parts.get(chosen, "")
    facts = scan_sheet(
        path,
        part,
        style_kinds=workbook.style_kinds if engine == "calamine" else None,
        date1904=workbook.date1904,
    )

    def openpyxl_source() -> _OpenpyxlSource:
        return _OpenpyxlSource(
            path,
            chosen,
            workbook.pad_formats,
            workbook.strings_part,
            workbook.style_kinds,
            workbook.date1904,
        )

    source: _XlsxSource
    if engine == "calamine":
        try:
            source = _CalamineSource(path, chosen, facts)
        except FileFormatError:
            # calamine refuses whole workbooks over a part it does not know (a macro or dialog
            # sheet beside the worksheets): openpyxl reads the worksheets and passes those by.
            if forced or workbook.backslashes:
                raise
            engine = "openpyxl"
            source = openpyxl_source()
    else:
        source = openpyxl_source()
    header_row = source.take_header(header_row, name, list(all_names), sheet is not None)
    layout = source.layout
    detected = Detected(
        format="xlsx",
        sheet=chosen,
        sheets=all_names,
        engine=engine,
        header_row=header_row,
    )
    table = Table(path, detected, list(layout.names), source)
    table.hidden_rows = frozenset(r for r in facts.hidden_rows if r > header_row)
    table.hidden_columns = [
        n for n, j in zip(layout.names, layout.kept, strict=True) if j in facts.hidden_columns
    ]
    last_row = source.last_row()
    table.row_estimate = None if last_row is None else max(0, last_row - header_row)
    return table


def _choose_sheet(name: str, sheets: list[tuple[str, bool]], wanted: str | int | None) -> str:
    names = [n for n, _ in sheets]
    listing = ", ".join(f'"{n}"' for n in names)
    if wanted is None:
        return next((n for n, visible in sheets if visible), names[0])
    if isinstance(wanted, str):
        if wanted in names:
            return wanted
        folded = [n for n in names if n.casefold() == wanted.strip().casefold()]
        if len(folded) == 1:
            return folded[0]
        if not wanted.strip().isdigit():
            raise FileFormatError(f'no sheet "{wanted}" in {name}; sheets: {listing}')
        wanted = int(wanted.strip())
    if isinstance(wanted, bool) or not 1 <= wanted <= len(names):
        raise FileFormatError(
            f"no sheet number {wanted} in {name} (it has {len(names)}); sheets: {listing}"
        )
    return names[wanted - 1]


_NO_ERRORS: list[int] = []


class _XlsxSource:
    """Common row handling of both engines: each yields (row number, cells from column A, the
    positions of the cells that show a formula error)."""

    def __init__(self, path: Path, sheet: str):
        self.path = path
        self.sheet = sheet
        self.layout: Layout
        self.header_row = 1

    def rows(self) -> Iterator[tuple[int, list[str], list[int]]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def last_row(self) -> int | None:
        """The sheet's last used row number as the workbook states it, if it does."""
        return None

    def take_header(
        self, header_row: int | None, name: str, sheets: list[str], sheet_given: bool
    ) -> int:
        """Find the header (``header_row`` when given) and set :attr:`layout` from it; returns
        its row. Refuses an empty sheet (suggesting ``--sheet`` beside others) or one with no
        header row; closes the source when it refuses."""
        try:
            where = f'sheet "{self.sheet}" in {name}'
            listing = ", ".join(f'"{n}"' for n in sheets)
            hint = "; pick another with --sheet" if not sheet_given and len(sheets) > 1 else ""
            found, header = self.header(
                header_row, where, f"{hint}; sheets: {listing}" if len(sheets) > 1 else ""
            )
            if found is None:
                raise FileFormatError(f"{where} is empty{hint}; sheets: {listing}")
            layout = Layout.from_header(header)
            if not layout.kept:
                raise FileFormatError(f"{where} has no header row")
        except BaseException:
            self.close()
            raise
        self.layout, self.header_row = layout, found
        return found

    def header(
        self, header_row: int | None, where: str, sheets: str = ""
    ) -> tuple[int | None, list[str]]:
        """The header row (see :func:`.header.find_header`); one showing a formula error is
        refused, naming the cell (``sheets`` ends that message: other sheets to pick)."""
        flagged: dict[int, list[int]] = {}

        def rows() -> Iterator[tuple[int, list[str]]]:
            for number, cells, errors in self.rows():
                if errors:
                    flagged[number] = errors
                yield number, cells

        number, cells = find_header(rows(), header_row, where)
        if number is not None and number in flagged:
            j = flagged[number][0]
            raise FileFormatError(
                f"{where}: header cell {column_letter(j)}{number} shows {cells[j]}, a formula "
                f"error, not a column name; name every column in the header row{sheets}"
            )
        return number, cells

    def frames(self, size: int) -> Iterator[pd.DataFrame]:
        layout = self.layout
        kept, width = layout.kept, layout.width
        names = layout.names
        unnamed = layout.blank_inside
        simple = kept == list(range(width))
        position = {j: i for i, j in enumerate(kept)}
        numbers: list[int] = []
        batch: list[list[str]] = []
        cell_errors: dict[int, list[tuple[str, str]]] = {}
        for number, cells, errors in self.rows():
            if number <= self.header_row or not any(cells):
                continue
            if len(cells) > width and any(cells[width:]):
                j = width + next(i for i, v in enumerate(cells[width:]) if v)
                raise no_header_error(column_letter(j), number)
            for j in unnamed:
                if j < len(cells) and cells[j]:
                    raise no_header_error(column_letter(j), number)
            if simple:
                row = cells[:width]
                if len(row) < width:
                    row += [""] * (width - len(row))
            else:
                row = [cells[j] if j < len(cells) else "" for j in kept]
            if max(map(len, row)) > MAX_CELL_CHARS:
                j = next(k for k, text in zip(kept, row, strict=True) if len(text) > MAX_CELL_CHARS)
                raise cell_too_big_error(number, column_letter(j))
            if errors:
                cell_errors[number] = [
                    (names[position[j]], f"{column_letter(j)}{number} shows {cells[j]}")
                    for j in errors
                    if j in position
                ]
            numbers.append(number)
            batch.append(row)
            if len(batch) >= size:
                yield self._to_frame(names, numbers, batch, cell_errors)
                numbers, batch, cell_errors = [], [], {}
        if batch:
            yield self._to_frame(names, numbers, batch, cell_errors)

    @staticmethod
    def _to_frame(
        names: list[str],
        numbers: list[int],
        batch: list[list[str]],
        cell_errors: dict[int, list[tuple[str, str]]],
    ) -> pd.DataFrame:
        columns = zip(*batch, strict=True)
        data = dict(zip(names, (list(c) for c in columns), strict=True))
        frame = pd.DataFrame(data, index=row_index(numbers), dtype="str")
        frame.attrs[CELL_ERRORS] = cell_errors
        return frame

    def _damaged(self) -> FileFormatError:
        return FileFormatError(f'{self.path.name} is damaged: sheet "{self.sheet}" cannot be read')

    def close(self) -> None:  # pragma: no cover - overridden
        pass


class _CalamineSource(_XlsxSource):
    """The fast path: python-calamine (Rust) reads the sheet; we render its typed values, but for
    the few cells whose typed value loses what the format shows (a negative serial under a date
    format comes back as a time of day), which the sheet scan rendered from their serials."""

    def __init__(self, path: Path, sheet: str, facts: SheetFacts | None = None):
        super().__init__(path, sheet)
        self._serials = facts.serials if facts is not None else {}
        self._errors = facts.errors if facts is not None else {}
        from python_calamine import CalamineWorkbook

        try:
            self._book = CalamineWorkbook.from_path(str(path))
            self._sheet = self._book.get_sheet_by_name(sheet)
        except Exception:  # CalamineError and its kin: whatever a damaged file brings
            raise self._damaged() from None

    def rows(self) -> Iterator[tuple[int, list[str], list[int]]]:
        start = self._sheet.start
        if start is None:
            return  # an empty sheet (and iter_rows() would fail on it)
        # iter_rows() yields every row from the sheet's first row (leading ones empty) but only
        # the columns from the first used one: pad those back so position 0 is column A.
        pad = [""] * start[1]
        serials = self._serials
        errors = self._errors
        rendered = self._rendered
        try:
            for number, values in enumerate(self._sheet.iter_rows(), start=1):
                cells = rendered(number, values, start[1])
                if pad:
                    cells = pad + cells
                if serials and number in serials:
                    for j, text in serials[number].items():
                        if j < len(cells):
                            cells[j] = text
                yield number, cells, errors.get(number, _NO_ERRORS) if errors else _NO_ERRORS
        except Exception:
            raise self._damaged() from None

    def _rendered(self, number: int, values: list[Any], first: int) -> list[str]:
        """Row ``number``'s typed values as shown; ``first`` is the column of the first."""
        return [v if type(v) is str else render(v) for v in values]

    def last_row(self) -> int | None:
        return self._sheet.height or None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._book.close()


class _OpenpyxlSource(_XlsxSource):
    """The path for workbooks whose number formats change what a person sees (``00000``), and for
    sheets holding formula errors, which openpyxl can see."""

    def __init__(
        self,
        path: Path,
        sheet: str,
        pads: dict[str, list[tuple[str, str]]],
        strings_part: str | None = None,
        style_kinds: dict[int, str] | None = None,
        date1904: bool = False,
    ):
        super().__init__(path, sheet)
        import openpyxl

        self._pads = pads
        self._kinds = style_kinds or {}
        self._date1904 = date1904
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._book = openpyxl.load_workbook(
                    path, read_only=True, data_only=True, keep_links=False
                )
            for warning in caught:  # "Unknown extension...": for the log, not the terminal
                log.info("openpyxl on %s: %s", path.name, warning.message)
            # Numbers come as stored: dates and times are rendered from their serials by the
            # same rules as calamine's cells (openpyxl would turn -1 into 1899-12-29).
            self._book._date_formats = set()
            self._book._timedelta_formats = set()
            self._sheet = self._book[sheet]
            if strings_part is not None:
                self._use_raw_strings(strings_part)
        except Exception:  # openpyxl raises many kinds on a broken file
            raise self._damaged() from None

    def _use_raw_strings(self, part: str) -> None:
        """Give openpyxl the shared strings as written, escapes and all: it decodes only
        ``_x005F_``, after which a literal ``_x000D_`` and an escaped CR look the same. Every
        string is then decoded once, in :meth:`rows`, as calamine does."""
        strings = getattr(self._sheet, "_shared_strings", None)
        if not isinstance(strings, list):
            return
        raw = raw_shared_strings(self.path, part)
        if len(raw) == len(strings):
            strings[:] = raw

    def last_row(self) -> int | None:
        try:
            return self._sheet.max_row  # from the sheet's <dimension>, when it has one
        except Exception:
            return None

    def rows(self) -> Iterator[tuple[int, list[str], list[int]]]:
        pads = self._pads
        kinds = self._kinds
        date1904 = self._date1904
        sheet = self._sheet
        sheet.reset_dimensions()  # the stored dimension can be wrong; read what is there
        try:
            for number, cells in enumerate(self._quiet(sheet.iter_rows(min_row=1, min_col=1)), 1):
                out = []
                errors = _NO_ERRORS
                for j, cell in enumerate(cells):
                    value = cell.value
                    kind = type(value)
                    if cell.data_type == "e":
                        # A formula error is shown, and flagged: it is not a value to send.
                        errors = [*errors, j]
                        out.append(value if value in ERROR_CODES else "#VALUE!")
                    elif kind is str:
                        out.append(decode_ooxml_escapes(value))
                    elif (kind is int or kind is float) and (
                        date_kind := kinds.get(getattr(cell, "_style_id", 0) or 0)
                    ):
                        if past_last_date(value, date_kind, date1904):
                            errors = [*errors, j]  # it shows #VALUE!: no value either
                        out.append(render_serial(value, date_kind, date1904))
                    elif (kind is int or kind is float) and cell.number_format in pads:
                        out.append(render_padded(value, pads[cell.number_format]))
                    else:
                        out.append(render(value))
                while out and not out[-1]:
                    out.pop()
                yield number, out, errors
        except Exception:  # openpyxl raises many kinds on a broken sheet
            raise self._damaged() from None

    def _quiet(self, rows: Iterator[Any]) -> Iterator[Any]:
        """openpyxl's rows, its warnings ("... extension is not supported", "serial value
        outside the limits for dates") sent to the log rather than to the user's terminal.
        Rows are fetched in batches inside the catch, so the warning filters are never left
        changed while the caller holds a row."""
        said: set[str] = set()
        while True:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                batch = list(itertools.islice(rows, 1000))
            for warning in caught:
                if (text := str(warning.message)) not in said and len(said) < 20:
                    said.add(text)
                    log.info("openpyxl on %s: %s", self.path.name, text)
            if not batch:
                return
            yield from batch

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._book.close()
