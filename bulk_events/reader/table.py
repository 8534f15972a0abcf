"""The :class:`Table` every reader returns, and the row handling all of them share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from bulk_events.errors import FileFormatError, UsageError

MAX_CELL_CHARS = 1 << 20  # a cell beyond 1 MiB is not contact data; refuse before it eats memory
BLOCK = 1 << 20  # read size of every streaming pass
# The key of ``frame.attrs`` under which a chunk lists the cells that show a formula error:
# row number -> [(column, "C7 shows #N/A"), ...]. Such a cell holds what it shows ("#N/A"), but
# it is no value: a row with one in a column that is sent is invalid.
CELL_ERRORS = "cell_errors"


class Source(Protocol):
    """What a :class:`Table` reads its rows from (one kind per file format)."""

    def frames(self, size: int) -> Iterator[pd.DataFrame]: ...

    def close(self) -> None: ...


_WORKBOOK_NAMES = {
    "xlsx": "Excel",
    "xls": "Excel 97-2003 (.xls)",
    "ods": "OpenDocument (.ods)",
    "xlsb": "Excel binary (.xlsb)",
}


@dataclass(frozen=True)
class Detected:
    """What :func:`open_table` found out about a file, and how it will be read."""

    format: str  # "csv" | "xlsx" | "xls" | "ods" | "xlsb" | "jsonl"
    encoding: str | None = None  # csv only: "utf-8", "utf-8-sig", "utf-16", "cp1251", ...
    delimiter: str | None = None  # csv only: ",", ";", "\t", "|"
    sheet: str | None = None  # xlsx only: the sheet read
    sheets: tuple[str, ...] = ()  # xlsx only: every worksheet, in tab order
    engine: str = "pandas-c"  # what reads the rows: "pandas-c", "calamine" or "openpyxl"
    header_row: int = 1  # 1-based spreadsheet row of the header
    encoding_given: bool = False  # True when the caller forced the encoding
    delimiter_given: bool = False  # True when the caller forced the delimiter
    report: bool = False  # a bulk-events report read back: its input cells, not its own columns
    hidden_unknown: bool = (
        False  # the format's reader cannot tell hidden rows/columns: all are read
    )

    def describe(self) -> str:
        """One line for a person, e.g. ``CSV, cp1251 (detected), delimiter ";" (detected)``."""
        if self.format == "jsonl":
            return "a bulk-events JSONL report (its input cells, under their original row numbers)"
        if self.format in _WORKBOOK_NAMES:
            position = self.sheets.index(self.sheet) + 1 if self.sheet in self.sheets else 1
            kind = _WORKBOOK_NAMES[self.format]
            text = f'{kind} sheet "{self.sheet}" ({position} of {len(self.sheets)})'
        else:
            how_enc = "given" if self.encoding_given else "detected"
            how_delim = "given" if self.delimiter_given else "detected"
            shown = "TAB" if self.delimiter == "\t" else f'"{self.delimiter}"'
            text = f"CSV, {self.encoding} ({how_enc}), delimiter {shown} ({how_delim})"
        if self.hidden_unknown:
            text += "; hidden rows and columns cannot be told in this format: all are read"
        if self.report:
            text += "; a bulk-events report: its input cells are read, its own columns ignored"
        return text


class Table:
    """An opened spreadsheet: its header now, its rows on demand through :meth:`chunks`.

    ``columns`` are the header cells as written (not stripped), control characters and line
    breaks inside them shown escaped (``Data\\x1b[32m1``). Columns whose header is blank are left
    out; should one of them hold a value, :meth:`chunks` raises naming its letter.
    """

    def __init__(self, path: Path, detected: Detected, columns: list[str], source: Source):
        self.path = path
        self.detected = detected
        self.columns = columns
        self._source = source
        # About how many rows follow the header (blank ones included), for a progress bar.
        self.row_estimate: int | None = None
        # What the sheet hides (Excel only): sheet row numbers of hidden rows holding values
        # (hidden by hand or by an autofilter), and the headers of hidden columns.
        self.hidden_rows: frozenset[int] = frozenset()
        self.hidden_columns: list[str] = []

    def chunks(self, size: int = 50_000) -> Iterator[pd.DataFrame]:
        """Yield DataFrames of at most ``size`` non-blank rows, in file order.

        Each has ``columns == self.columns``, a Python ``str`` in every cell (``""`` for an empty
        one) and, as index, the spreadsheet row number of each row. Blank rows are not yielded but
        still count, so the numbers match what a spreadsheet program shows.
        """
        if size < 1:
            raise UsageError(f"chunk size must be at least 1, not {size}")
        return self._source.frames(size)

    def close(self) -> None:
        """Release the file and any sheet held in memory."""
        self._source.close()

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Table {self.path.name}: {self.detected.describe()}, {len(self.columns)} columns>"


def column_letter(index: int) -> str:
    """0-based column index -> spreadsheet letters (0 -> A, 26 -> AA)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


@dataclass
class Layout:
    """Which positions of a row become which column, from the header cells."""

    names: list[str]
    kept: list[int]  # positions (0 = column A / first CSV field) of the named columns
    width: int  # number of header positions (named or not)
    blank_inside: list[int] = field(default_factory=list)  # unnamed positions before `width`

    @classmethod
    def from_header(cls, cells: list[str]) -> Layout:
        """Keep the named header cells, in their visible form (:func:`.header.visible_name`);
        refuse two names equal after strip + casefold."""
        from .header import visible_name

        cells = [visible_name(c) for c in cells]
        while cells and cells[-1].strip() == "":
            cells = cells[:-1]
        kept = [i for i, c in enumerate(cells) if c.strip() != ""]
        seen: dict[str, int] = {}
        for i in kept:
            key = cells[i].strip().casefold()
            if key in seen:
                first = seen[key]
                raise FileFormatError(
                    f'duplicate column "{cells[first].strip()}" '
                    f"(columns {column_letter(first)} and {column_letter(i)})"
                )
            seen[key] = i
        named = set(kept)
        blank = [i for i in range(len(cells)) if i not in named]
        return cls([cells[i] for i in kept], kept, len(cells), blank)


def no_header_error(letter: str, row: int) -> FileFormatError:
    return FileFormatError(
        f"column {letter} has no header but row {row} has a value in it; "
        "give the column a header or delete its values"
    )


def cell_too_big_error(row: int, letter: str) -> FileFormatError:
    return FileFormatError(
        f"row {row}, column {letter}, has a cell longer than 1 MiB; refusing to read it"
    )


def row_index(rows: Any) -> pd.Index:
    return pd.Index(np.asarray(rows, dtype=np.int64), name="row")
