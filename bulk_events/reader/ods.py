"""What an OpenDocument spreadsheet's content.xml says that python-calamine does not tell us.

One streaming pass (bounded memory, whatever the file claims) finds, per sheet, the area its
cells span (calamine holds that whole rectangle in memory, so a hostile file with two far-apart
cells, or a cell repeated a billion times, is refused from this), the cells LibreOffice shows as
TRUE/FALSE (it stores them as the numbers 1 and 0) and the cells shown as a duration rather than a
time of day (calamine hands those over as a time, or as ISO text, ``PT30H05M00S``, past 24 hours),
and the cells showing a formula error (calamine reads ``#N/A`` as an empty cell).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from defusedxml import ElementTree as SafeET

_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
_STYLE = "urn:oasis:names:tc:opendocument:xmlns:style:1.0"
_NUMBER = "urn:oasis:names:tc:opendocument:xmlns:datastyle:1.0"
_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_CALCEXT = "urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0"

_CELL = f"{{{_TABLE}}}table-cell"
_COVERED = f"{{{_TABLE}}}covered-table-cell"
_ROW = f"{{{_TABLE}}}table-row"
_SHEET = f"{{{_TABLE}}}table"
_VALUE_TYPE = f"{{{_OFFICE}}}value-type"
_ROWS_REPEATED = f"{{{_TABLE}}}number-rows-repeated"
_COLS_REPEATED = f"{{{_TABLE}}}number-columns-repeated"
_STYLE_NAME = f"{{{_TABLE}}}style-name"
_FORMULA = f"{{{_TABLE}}}formula"
_P = f"{{{_TEXT}}}p"
# LibreOffice's own mark of a formula whose result is an error; its text:p is what it shows.
_CALC_VALUE_TYPE = f"{{{_CALCEXT}}}value-type"
_MAX_MARKS = 100_000  # boolean/duration positions kept per sheet; more are not contact data
# Error cells kept per sheet: past this many the sheet is refused (see OdsSheet.errors).
MAX_ERRORS = 100_000


# (row, column), both 0-based -> what a cell showing a formula error shows (#N/A, #DIV/0!).
ShownErrors = dict[tuple[int, int], str]


@dataclass
class OdsSheet:
    rows: int = 0  # 1 + the last row (0-based) holding a value, 0 for an empty sheet
    columns: int = 0
    booleans: set[tuple[int, int]] = field(default_factory=set)  # (row, column), 0-based
    durations: set[tuple[int, int]] = field(default_factory=set)  # under a duration style
    # (row, column) -> what the cell shows (#DIV/0!, or LibreOffice's Err:502): a formula error.
    # Never cut short, as the marks above may be: a row missing from here would be sent with
    # the cell empty. Past MAX_ERRORS of them ``too_many_errors`` is set instead.
    errors: ShownErrors = field(default_factory=dict)
    too_many_errors: bool = False


def _styles(archive: zipfile.ZipFile, names: set[str]) -> tuple[set[str], set[str]]:
    """Names of the cell styles showing a boolean, and of those showing a duration (a time
    style that does not wrap at 24 hours, Excel's ``[h]:mm:ss``), from either XML part."""
    booleans: set[str] = set()
    durations: set[str] = set()
    cell_styles: dict[str, str] = {}
    for part in ("styles.xml", "content.xml"):
        if part not in names:
            continue
        with archive.open(part) as f:
            for _event, el in SafeET.iterparse(f, forbid_dtd=True):
                if el.tag == f"{{{_NUMBER}}}boolean-style":
                    booleans.add(el.get(f"{{{_STYLE}}}name", ""))
                elif el.tag == f"{{{_NUMBER}}}time-style":
                    if el.get(f"{{{_NUMBER}}}truncate-on-overflow") == "false":
                        durations.add(el.get(f"{{{_STYLE}}}name", ""))
                elif el.tag == f"{{{_STYLE}}}style":
                    data = el.get(f"{{{_STYLE}}}data-style-name")
                    if data:
                        cell_styles[el.get(f"{{{_STYLE}}}name", "")] = data
                elif el.tag == f"{{{_OFFICE}}}automatic-styles" and part == "content.xml":
                    break  # the tables follow: styles are all known
    return (
        {name for name, data in cell_styles.items() if data in booleans},
        {name for name, data in cell_styles.items() if data in durations},
    )


def _shows_boolean(cell: SafeET.Element, boolean_styles: set[str]) -> bool:
    """A number cell LibreOffice shows as TRUE/FALSE: under a boolean style, the result of
    TRUE()/FALSE() (how it saves an Excel boolean), or shown as the word itself."""
    if cell.get(_STYLE_NAME) in boolean_styles:
        return True
    if cell.get(_FORMULA, "").upper() in ("OF:=TRUE()", "OF:=FALSE()"):
        return True
    shown = cell.find(_P)
    return shown is not None and (shown.text or "").upper() in ("TRUE", "FALSE")


def _mark_error(
    sheet: OdsSheet, cell: SafeET.Element, row: int, rows: int, col: int, cols: int
) -> None:
    """Record a (possibly repeated) cell whose formula's result is an error."""
    if sheet.too_many_errors or len(sheet.errors) + rows * cols > MAX_ERRORS:
        sheet.too_many_errors = True
        return
    # The cell's own paragraphs: a comment on it (office:annotation) holds text:p of its own.
    shown = " ".join("".join(p.itertext()) for p in cell.findall(_P)).strip() or "#VALUE!"
    for r in range(row, row + rows):
        for c in range(col, col + cols):
            sheet.errors[r, c] = shown


def scan_ods(path: Path) -> dict[str, OdsSheet]:
    """Sheet name -> what :class:`OdsSheet` holds, from one streaming pass over content.xml."""
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        booleans, durations = _styles(archive, names)
        sheets: dict[str, OdsSheet] = {}
        with archive.open("content.xml") as f:
            sheet = OdsSheet()
            row = col = 0
            row_repeat = 1
            for event, el in SafeET.iterparse(f, events=("start", "end"), forbid_dtd=True):
                tag = el.tag
                if event == "start":
                    if tag == _SHEET:
                        sheet = sheets.setdefault(el.get(f"{{{_TABLE}}}name", ""), OdsSheet())
                        row = 0
                    elif tag == _ROW:
                        col = 0
                        row_repeat = int(el.get(_ROWS_REPEATED, "1"))
                    continue
                if tag in (_CELL, _COVERED):
                    repeat = int(el.get(_COLS_REPEATED, "1"))
                    kind = el.get(_VALUE_TYPE)
                    if kind is not None or len(el):  # a value, or text (a text:p child)
                        sheet.rows = max(sheet.rows, row + row_repeat)
                        sheet.columns = max(sheet.columns, col + repeat)
                        marks = None
                        if kind == "time" and el.get(_STYLE_NAME) in durations:
                            marks = sheet.durations
                        elif kind == "float" and _shows_boolean(el, booleans):
                            marks = sheet.booleans
                        if marks is not None and len(marks) < _MAX_MARKS:
                            marks.update(
                                (r, c)
                                for r in range(row, row + min(row_repeat, _MAX_MARKS))
                                for c in range(col, col + min(repeat, _MAX_MARKS))
                            )
                        if el.get(_CALC_VALUE_TYPE) == "error":
                            _mark_error(sheet, el, row, row_repeat, col, repeat)
                    col += repeat
                    el.clear()
                elif tag == _ROW:
                    row += row_repeat
                    el.clear()
        return sheets
