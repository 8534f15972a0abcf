"""The workbooks only python-calamine reads: .xls (Excel 97-2003), .ods (OpenDocument), .xlsb.

:func:`open_workbook` gives them the contract of :func:`~bulk_events.reader.excel.open_xlsx`:
cells rendered by :mod:`.render`, blank rows skipped but counted, the same sheet choice and the
same refusals. Before calamine opens a file (it holds every cell of the rectangle a sheet spans,
and for .xls and .ods it parses every sheet at once) the file is checked here: zip bombs and XML
entities in the zip-based formats, the area each sheet spans (from the file's own records, not
from what it claims), a password, damage.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

from bulk_events.errors import FileFormatError

from . import ole2
from .excel import _CalamineSource, _choose_sheet, _XlsxSource
from .ods import MAX_ERRORS, OdsSheet, ShownErrors, scan_ods
from .render import render
from .table import Detected, Table
from .ziparchive import password_protected, refuse_zip_bomb, scan_members

# Calamine keeps about 32 bytes per cell of the rectangle a sheet spans, empty ones included,
# for every sheet of a .xls or .ods at once: past this many cells in all, the file is refused
# (an .xlsx of the same sheets is streamed instead).
MAX_CELLS = 4_000_000
# A .xlsb sheet part bigger than this holds more than calamine should keep in memory.
MAX_SHEET_PART = 100 * 1000 * 1000

FORMAT_NAMES = {
    "xls": "Excel 97-2003 workbook (.xls)",
    "ods": "OpenDocument spreadsheet (.ods)",
    "xlsb": "Excel binary workbook (.xlsb)",
}
ODS_MIMETYPE = b"application/vnd.oasis.opendocument.spreadsheet"


def open_workbook(
    path: Path, kind: str, sheet: str | int | None, header_row: int | None = None
) -> Table:
    """Open a checked .xls, .ods or .xlsb (``kind``) at ``sheet`` (a name or a tab position);
    ``header_row`` as for :func:`~bulk_events.reader.excel.open_xlsx`."""
    name = path.name
    ods = _check_ods(path) if kind == "ods" else None
    misplaced = None
    xls_errors: dict[int, ShownErrors] = {}
    if kind == "xlsb":
        misplaced = _check_xlsb(path)
    elif kind == "xls":
        xls_errors = _check_xls(path)
    try:
        sheets, positions = _sheets(path)
        if not sheets:
            raise FileFormatError(f"{name} has no worksheets")
        chosen = _choose_sheet(name, sheets, sheet)
        source: _CalamineSource
        if ods is not None:
            source = _OdsSource(path, chosen, ods.get(chosen, OdsSheet()))
        else:
            source = _WorkbookSource(path, chosen, xls_errors.get(positions[chosen], {}))
    except FileFormatError:
        if misplaced is None:
            raise
        raise FileFormatError(
            f"{name} is an Excel binary workbook (.xlsb) with its parts outside the xl/ folder "
            f"where Excel keeps them ({misplaced}), which cannot be read here; open it in Excel "
            "and save it again, or save it as .xlsx or CSV"
        ) from None
    header_row = source.take_header(header_row, name, [n for n, _ in sheets], sheet is not None)
    layout = source.layout
    detected = Detected(
        format=kind,
        sheet=chosen,
        sheets=tuple(n for n, _ in sheets),
        engine="calamine",
        header_row=header_row,
        hidden_unknown=True,
    )
    table = Table(path, detected, list(layout.names), source)
    last_row = source.last_row()
    table.row_estimate = None if last_row is None else max(0, last_row - header_row)
    return table


def _sheets(path: Path) -> tuple[list[tuple[str, bool]], dict[str, int]]:
    """(name, visible) of every worksheet, in tab order, and each one's position among all the
    workbook's sheets (charts and macro sheets too); refuses a password or a damaged file."""
    from python_calamine import CalamineWorkbook, PasswordError, SheetTypeEnum, SheetVisibleEnum

    try:
        with path.open("rb") as f, CalamineWorkbook.from_filelike(f) as book:
            metadata = book.sheets_metadata
            return [
                (m.name, m.visible == SheetVisibleEnum.Visible)
                for m in metadata
                if m.typ == SheetTypeEnum.WorkSheet
            ], {m.name: i for i, m in enumerate(metadata)}
    except PasswordError:
        raise password_protected(path.name) from None
    except Exception:  # CalamineError and its kin: whatever a damaged file brings
        raise _damaged(path) from None


def _damaged(path: Path) -> FileFormatError:
    return FileFormatError(f"{path.name} is damaged: it cannot be read as a workbook")


def _too_big(path: Path, cells: int) -> FileFormatError:
    return FileFormatError(
        f"{path.name} spans {cells:,} cells, more than {MAX_CELLS:,} can be read from this "
        "format; delete the unused rows and columns, or save it as .xlsx or CSV"
    )


# --------------------------------------------------------------------------- per-format checks


def _open_zip(path: Path, what: str) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise FileFormatError(f"{path.name} is damaged: it is not a readable {what}") from None
    members = archive.infolist()
    return archive, members


def _check_ods(path: Path) -> dict[str, OdsSheet]:
    archive, members = _open_zip(path, "OpenDocument spreadsheet")
    with archive:
        refuse_zip_bomb(path.name, members)
        names = {m.filename for m in members}
        if "META-INF/manifest.xml" in names:
            with archive.open("META-INF/manifest.xml") as f:
                if b"encryption-data" in f.read(1 << 20):
                    raise password_protected(path.name)
        scan_members(path.name, archive, members)
        if "content.xml" not in names:
            raise _damaged(path)
    try:
        sheets = scan_ods(path)
    except Exception:  # a parse error of any kind: the XML is broken or truncated
        raise _damaged(path) from None
    cells = sum(s.rows * s.columns for s in sheets.values())
    if cells > MAX_CELLS:
        raise _too_big(path, cells)
    if any(s.too_many_errors for s in sheets.values()):
        raise _too_many_errors(path)
    return sheets


def _check_xlsb(path: Path) -> str | None:
    """Refuse a zip bomb or a sheet too big to hold; return a part the workbook keeps outside
    ``xl/`` (which calamine looks in alone), if any, to name should calamine fail on it."""
    archive, members = _open_zip(path, "Excel binary workbook")
    with archive:
        refuse_zip_bomb(path.name, members)
        scan_members(path.name, archive, members)
        for m in members:
            if m.filename.startswith("xl/worksheets/") and m.file_size > MAX_SHEET_PART:
                raise FileFormatError(
                    f"{path.name} has a sheet too big to read from .xlsb; save it as .xlsx or CSV"
                )
        names = [m.filename for m in members]
        if "xl/workbook.bin" not in names:
            return next((n for n in names if n.lower().endswith("workbook.bin")), None)
        if "xl/_rels/workbook.bin.rels" not in names:
            return None
        with archive.open("xl/_rels/workbook.bin.rels") as f:
            rels = f.read(1 << 20).decode("utf-8", "replace")
    for target in re.findall(r"""Target\s*=\s*["']([^"']+)["']""", rels):
        if target.startswith("../") or (target.startswith("/") and not target.startswith("/xl/")):
            return target.lstrip("/")
    return None


# BIFF8 records that put a value in a cell: row at offset 0, column at offset 2.
_CELL_RECORDS = {0x0203, 0x027E, 0x00FD, 0x0204, 0x0205, 0x0006, 0x00D6}
_MULRK = 0x00BD
_BOF, _EOF, _FILEPASS = 0x0809, 0x000A, 0x002F
_BOUNDSHEET, _BOOLERR, _FORMULA = 0x0085, 0x0205, 0x0006
_MAY_SHOW_AN_ERROR = (_BOOLERR, _FORMULA)
# What Excel shows for each BIFF error code; any other code is shown as #VALUE!.
_BIFF_ERRORS = {
    0x00: "#NULL!",
    0x07: "#DIV/0!",
    0x0F: "#VALUE!",
    0x17: "#REF!",
    0x1D: "#NAME?",
    0x24: "#NUM!",
    0x2A: "#N/A",
    0x2B: "#GETTING_DATA",
}


def _check_xls(path: Path) -> dict[int, ShownErrors]:
    """Walk the Workbook stream's records: a password, the area every sheet's cells span, and
    the cells that show a formula error (calamine reads #N/A as an empty cell), by the sheet's
    position among the workbook's BOUNDSHEET records, which is its place in calamine's list of
    sheets. (Not by name: the name's bytes depend on the BIFF version and the code page.)"""
    try:
        stream = ole2.streams(path)
        part = "Workbook" if "Workbook" in stream else "Book"
        cells = 0
        extent = [0, 0]
        buffer = b""
        base = 0  # where in the stream ``buffer`` starts
        sheet_at: dict[int, int] = {}  # a sheet's BOF offset -> its position among the sheets
        sheets = 0  # BOUNDSHEET records so far
        errors: dict[int, ShownErrors] = {}
        current: ShownErrors | None = None  # the errors of the worksheet being walked
        for block in ole2.read_stream(path, part):
            buffer += block
            at = 0
            while at + 4 <= len(buffer):
                kind, length = struct.unpack_from("<HH", buffer, at)
                if at + 4 + length > len(buffer):
                    break
                offset = base + at
                body = buffer[at + 4 : at + 4 + length]
                at += 4 + length
                if kind in _CELL_RECORDS and length >= 4:
                    row, col = struct.unpack_from("<HH", body)
                    extent = [max(extent[0], row + 1), max(extent[1], col + 1)]
                    if (
                        current is not None
                        and kind in _MAY_SHOW_AN_ERROR
                        and (shown := _error_shown(kind, body)) is not None
                    ):
                        if len(current) >= MAX_ERRORS:
                            raise _too_many_errors(path)
                        current[row, col] = shown
                elif kind == _MULRK and length >= 6:
                    row = struct.unpack_from("<H", body)[0]
                    last = struct.unpack_from("<H", body, length - 2)[0]
                    extent = [max(extent[0], row + 1), max(extent[1], last + 1)]
                elif kind == _BOUNDSHEET and length >= 4:
                    sheet_at.setdefault(struct.unpack_from("<I", body)[0], sheets)
                    sheets += 1
                elif kind == _BOF:
                    extent = [0, 0]
                    position = sheet_at.get(offset)
                    current = None if position is None else errors.setdefault(position, {})
                elif kind == _EOF:
                    cells += extent[0] * extent[1]
                    extent = [0, 0]
                    current = None
                    if cells > MAX_CELLS:
                        raise _too_big(path, cells)
                elif kind == _FILEPASS:
                    raise password_protected(path.name)
            buffer = buffer[at:]
            base += at
    except ole2.Ole2Error:
        raise _damaged(path) from None
    return {position: shown for position, shown in errors.items() if shown}


def _error_shown(kind: int, body: bytes) -> str | None:
    """What a BOOLERR or FORMULA record's cell shows, if that is a formula error."""
    if kind == _BOOLERR and len(body) >= 8 and body[7] == 1:
        return _BIFF_ERRORS.get(body[6], "#VALUE!")
    # A formula's cached result: 0xFFFF in its last two bytes marks a non-number, and type 2
    # in its first byte an error, whose code is the third.
    if kind == _FORMULA and len(body) >= 14 and body[12:14] == b"\xff\xff" and body[6] == 2:
        return _BIFF_ERRORS.get(body[8], "#VALUE!")
    return None


def _too_many_errors(path: Path) -> FileFormatError:
    return FileFormatError(
        f"{path.name} has more than {MAX_ERRORS:,} cells showing a formula error on one sheet; "
        "fix the formulas, or save it as .xlsx"
    )


# --------------------------------------------------------------------------- .ods cells

_ISO_DURATION = re.compile(r"^-?PT(\d+)H(\d+)M(\d+(?:\.\d+)?)S$")


class _WorkbookSource(_CalamineSource):
    """calamine's source for .xlsx, opened by content: calamine would go by the file's name."""

    def __init__(self, path: Path, sheet: str, errors: ShownErrors | None = None):
        _XlsxSource.__init__(self, path, sheet)
        # No sheet XML to consult: calamine's typed values are all there is, but for the cells
        # the format's own scan found showing a formula error, which calamine reads as empty.
        # They are put in as shown (as a serial's text is for .xlsx) and listed per row.
        self._serials, self._errors = {}, {}
        for (row, col), shown in sorted((errors or {}).items()):
            self._serials.setdefault(row + 1, {})[col] = shown
            self._errors.setdefault(row + 1, []).append(col)
        from python_calamine import CalamineWorkbook

        try:
            with path.open("rb") as f:
                self._book = CalamineWorkbook.from_filelike(f)
            self._sheet = self._book.get_sheet_by_name(sheet)
        except Exception:  # CalamineError and its kin: whatever a damaged file brings
            raise self._damaged() from None


class _OdsSource(_WorkbookSource):
    """calamine's cells with what it misses in .ods put right: booleans and long durations."""

    def __init__(self, path: Path, sheet: str, marks: OdsSheet):
        super().__init__(path, sheet, marks.errors)
        self._marks = marks

    def _rendered(self, number: int, values: list[Any], first: int) -> list[str]:
        booleans, durations = self._marks.booleans, self._marks.durations
        if not booleans and not durations:
            return super()._rendered(number, values, first)
        row = number - 1
        return [
            _ods_cell(v, (row, j) in booleans, (row, j) in durations)
            for j, v in enumerate(values, start=first)
        ]


def _ods_cell(value: object, boolean: bool, duration: bool) -> str:
    if boolean and type(value) is float and value in (0.0, 1.0):
        return "TRUE" if value else "FALSE"
    if duration and type(value) is str and (found := _ISO_DURATION.match(value)):
        hours, minutes, seconds = found.groups()
        span = dt.timedelta(hours=int(hours), minutes=int(minutes), seconds=float(seconds))
        return render(-span if value.startswith("-") else span)
    if duration and type(value) is dt.time:
        midnight = dt.datetime.combine(dt.date(2000, 1, 1), dt.time())
        return render(dt.datetime.combine(midnight.date(), value) - midnight)
    return value if type(value) is str else render(value)
