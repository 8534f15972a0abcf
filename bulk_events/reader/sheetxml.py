"""What a worksheet's XML says besides its values: hidden rows and columns, and the numbers under
date or time formats that calamine's typed values cannot show right.

Both Excel routes read the same :class:`SheetFacts`, so a hidden row is hidden whichever route
reads the sheet. :func:`scan_sheet` costs one streaming pass over the sheet's XML looking for a few
byte needles; only a sheet that has some (a ``hidden`` attribute, a cell in a date style holding a
negative or huge number, a cell in a time-only style) is parsed, element by element, in bounded
memory. The needles name the date styles, so a sheet of 12-digit phone numbers or negative amounts
in plain number cells stays on the fast path.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from defusedxml import ElementTree as SafeET

from .render import ELAPSED, TIME, past_last_date, render_serial
from .table import BLOCK, MAX_CELL_CHARS

_MAX_COLUMNS = 16_384  # Excel's last column, XFD
_HIDDEN = re.compile(rb"""\shidden\s*=\s*["'](?:1|true)["']""")
# A negative number, or one of seven digits or more or in exponent form (a serial that may be
# past 9999-12-31): the values a date format cannot show as calamine renders them.
_ODD_VALUE = rb"\s*(?:-|\+?(?:\d{7}|[\d.]+[eE]\+?\d))"
_NEGATIVE = re.compile(rb"<(?:\w+:)?v>\s*-")
_HUGE = re.compile(rb"<(?:\w+:)?v>" + _ODD_VALUE)
_LAST_CELL = re.compile(rb".*(<(?:\w+:)?c[\s>/])", re.DOTALL)  # up to the last cell's start
_KEEP = 64  # bytes carried from one block to the next so that no needle is cut in two
_CARRY_MAX = 2 * MAX_CELL_CHARS  # a longer cell is refused by the reader anyway


def _styled(styles: list[bytes], value: bytes) -> re.Pattern[bytes]:
    """A cell whose style is one of ``styles`` and whose value starts with ``value``: its
    style attribute, the rest of its attributes, an optional formula, then its ``<v>``.

    The pattern starts at the ``s`` of the style attribute, not at the cell's ``<``: a regular
    expression tried at every ``<`` of a sheet costs three times as much. It may also match an
    attribute whose name merely ends in ``s`` (no cell attribute does); a needle that matches
    too often only sends the sheet to the full parse, which decides."""
    return re.compile(
        rb"s\s*=\s*[\"'](?:"
        + b"|".join(styles)
        + rb")[\"'][^>]*>\s*"
        + rb"(?:<(?:\w+:)?f\b[^>]*/>\s*|<(?:\w+:)?f\b[^>]*>[^<]*</(?:\w+:)?f>\s*)?"
        + rb"<(?:\w+:)?v>"
        + value
    )


@dataclass(frozen=True)
class SheetFacts:
    """Hidden rows (sheet row numbers, only rows holding a value) and columns (0-based
    positions); ``serials``: row -> {position: text} for cells whose typed value from calamine
    would not show what their format shows (a negative serial, a time-only format, a serial past
    the last date); ``errors``: row -> positions of those that show an error (``#VALUE!``)."""

    hidden_rows: frozenset[int] = frozenset()
    hidden_columns: frozenset[int] = frozenset()
    serials: dict[int, dict[int, str]] = field(default_factory=dict)
    errors: dict[int, list[int]] = field(default_factory=dict)


def scan_sheet(
    path: Path,
    part: str,
    *,
    style_kinds: dict[int, str] | None = None,
    date1904: bool = False,
) -> SheetFacts:
    """Read ``part`` of the workbook at ``path``: hidden rows and columns, and (with
    ``style_kinds``, cell style index -> date/time kind) the serials calamine would misrender."""
    kinds = style_kinds or {}
    lossy = sorted(str(s).encode() for s, kind in kinds.items() if kind == TIME)
    needles = [_HIDDEN]
    if 0 in kinds:  # the default style is a date: every cell without an `s` is in it
        needles += [_NEGATIVE, _HUGE]
    elif kinds:
        needles.append(_styled(sorted(str(s).encode() for s in kinds), _ODD_VALUE))
    if lossy:
        needles.append(re.compile(rb"""\ss\s*=\s*["'](?:""" + b"|".join(lossy) + rb""")["']"""))
    try:
        with zipfile.ZipFile(path) as archive:
            if part not in archive.NameToInfo:
                part = part.replace("/", "\\")  # a zip whose writer named parts with "\\"
            if not _has_any(archive, part, needles):
                return SheetFacts()
            with archive.open(part) as f:
                return _parse(f, kinds, date1904)
    except (KeyError, SafeET.ParseError, zipfile.BadZipFile, OSError, ValueError):
        return SheetFacts()  # a broken sheet is the reading route's to report


def _has_any(archive: zipfile.ZipFile, part: str, needles: list[re.Pattern[bytes]]) -> bool:
    tail = b""
    with archive.open(part) as f:
        while block := f.read(BLOCK):
            window = tail + block
            if any(n.search(window) for n in needles):
                return True
            # Carried on: the last cell from its start (a cell needle spans a whole cell, formula
            # included; every cell before it was searched whole), and at least the last few bytes
            # for the short needles.
            last = _LAST_CELL.match(window)
            start = len(window) - _KEEP if last is None else min(last.start(1), len(window) - _KEEP)
            tail = window[max(0, start, len(window) - _CARRY_MAX) :]
    return False


def _column_index(ref: str) -> int:
    index = 0
    for ch in ref:
        if "A" <= ch <= "Z":
            index = index * 26 + ord(ch) - 64
        elif "a" <= ch <= "z":
            index = index * 26 + ord(ch) - 96
        else:
            break
    return index - 1


def _parse(f: object, kinds: dict[int, str], date1904: bool) -> SheetFacts:
    hidden_rows: set[int] = set()
    hidden_columns: set[int] = set()
    serials: dict[int, dict[int, str]] = {}
    errors: dict[int, list[int]] = {}
    row = 0
    column = -1
    row_hidden = row_has_value = False
    sheet_data = None
    for event, el in SafeET.iterparse(f, events=("start", "end"), forbid_dtd=True):
        local = el.tag.rpartition("}")[2]
        if event == "start":
            if local == "row":
                number = el.get("r")
                row = int(number) if number and number.isdigit() else row + 1
                column = -1
                row_hidden = el.get("hidden") in ("1", "true")
                row_has_value = False
            elif local == "sheetData":
                sheet_data = el
            continue
        if local == "c":
            ref = el.get("r")
            column = _column_index(ref) if ref else column + 1
            value = next((child.text for child in el if child.tag.rpartition("}")[2] == "v"), None)
            has_value = value is not None and value != ""
            if not has_value and el.get("t") == "inlineStr":
                has_value = any(t.text for t in el.iter() if t.tag.rpartition("}")[2] == "t")
            row_has_value = row_has_value or has_value
            kind = kinds.get(int(el.get("s") or 0)) if kinds else None
            if kind and has_value and el.get("t", "n") == "n" and value is not None:
                try:
                    number_value = float(value)
                except ValueError:
                    number_value = None
                past = number_value is not None and past_last_date(number_value, kind, date1904)
                if number_value is not None and (
                    kind == TIME or (number_value < 0 and kind != ELAPSED) or past
                ):
                    serials.setdefault(row, {})[column] = render_serial(
                        number_value, kind, date1904
                    )
                if past:
                    errors.setdefault(row, []).append(column)
            el.clear()
        elif local == "row":
            if row_hidden and row_has_value:
                hidden_rows.add(row)
            if sheet_data is not None:
                sheet_data.clear()  # rows are done with: keep memory flat on long sheets
        elif local == "col" and el.get("hidden") in ("1", "true"):
            try:
                low, high = int(el.get("min", "0")), int(el.get("max", "0"))
            except ValueError:
                continue
            hidden_columns.update(range(max(low, 1) - 1, min(high, _MAX_COLUMNS)))
    return SheetFacts(frozenset(hidden_rows), frozenset(hidden_columns), serials, errors)
