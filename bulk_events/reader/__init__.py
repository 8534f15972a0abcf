"""A spreadsheet file -> rows of cells as a person sees them, streamed in bounded chunks.

:func:`open_table` works out what a file is (CSV encoding and delimiter, or which sheet of an
Excel workbook), checks it is safe and sane to read, and returns a :class:`Table` whose
:meth:`Table.chunks` yields DataFrames of strings indexed by the row number a spreadsheet program
shows. Nothing here validates or types values: that happens downstream.

    >>> with open_table("customers.csv") as table:           # doctest: +SKIP
    ...     print(table.detected.describe(), table.columns)
    ...     for chunk in table.chunks(10_000):
    ...         for row, email in chunk["Email"].items(): ...

Every problem becomes a one-line :class:`~bulk_events.errors.FileFormatError` (or
:class:`~bulk_events.errors.UsageError` for a bad option). Most are found by :func:`open_table`
before any row is handed out; a few structural ones (a value under a column with no header, an
unterminated quote, a row wider than the header) only show up while streaming and are raised from
:meth:`Table.chunks` naming the row.

A bulk-events report fed back in reads as the original input (:mod:`.report_input`). The parts:
:mod:`.detect` (what a file is, a CSV's encoding and delimiter), :mod:`.csvfile`, :mod:`.excel`,
:mod:`.render` (cells as a person sees them) and :mod:`.table` (what they all return).
"""

from __future__ import annotations

from pathlib import Path

from bulk_events.errors import FileFormatError, UsageError

from .calamine import open_workbook
from .csvfile import open_csv
from .detect import SAMPLE_CHARS, sniff_kind
from .excel import open_xlsx
from .hidden import HIDDEN_ROWS, describe_hidden, hidden_policy
from .report_input import as_input, open_jsonl_report
from .table import CELL_ERRORS, MAX_CELL_CHARS, Detected, Table

__all__ = [
    "CELL_ERRORS",
    "HIDDEN_ROWS",
    "MAX_CELL_CHARS",
    "Detected",
    "Table",
    "describe_hidden",
    "hidden_policy",
    "open_table",
]


def open_table(
    path: str | Path,
    *,
    sheet: str | int | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    header_row: int | None = None,
) -> Table:
    """Open a CSV file or a workbook (.xlsx/.xlsm, .xls, .ods, .xlsb), detecting what is not given.

    ``sheet`` (workbooks only) is a sheet name (exact, then ignoring case) or a tab position counted
    from 1; the default is the first visible sheet. ``encoding`` and ``delimiter`` (CSV only)
    override detection; the delimiter may be spelled ``"\\t"``, ``"tab"``, ``"semicolon"``...
    ``header_row`` (workbooks only) is the sheet row of the header; by default it is the first row,
    or the row below a title that names an email or phone column (:mod:`.header`).

        >>> table = open_table("customers.xlsx", sheet="Data")   # doctest: +SKIP
    """
    path = Path(path)
    name = path.name
    try:
        with path.open("rb") as f:
            head = f.read(SAMPLE_CHARS)
    except FileNotFoundError:
        raise FileFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FileFormatError(f"{path} is a folder, not a file") from None
    except PermissionError:
        raise FileFormatError(f"cannot read {path}: permission denied") from None
    except OSError as exc:
        raise FileFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise FileFormatError(f"{name} is empty")

    if path.suffix.lower() == ".jsonl":
        if sheet is not None or encoding is not None or delimiter is not None:
            raise UsageError("--sheet, --encoding and --delimiter do not apply to a .jsonl report")
        return open_jsonl_report(path)
    if header_row is not None and (isinstance(header_row, bool) or header_row < 1):
        raise UsageError(f"--header-row must be a row number from 1, not {header_row}")
    kind = sniff_kind(head, path)
    if kind != "csv" and (encoding is not None or delimiter is not None):
        raise UsageError("encoding and delimiter apply to CSV files, not to Excel workbooks")
    if kind == "xlsx":
        return as_input(open_xlsx(path, sheet, header_row=header_row))
    if kind in ("xls", "ods", "xlsb"):
        return as_input(open_workbook(path, kind, sheet, header_row))
    if sheet is not None:
        raise UsageError(f"{name} is a CSV file, which has no sheets")
    if header_row is not None:
        raise UsageError(
            "--header-row applies to Excel sheets; delete the lines above a CSV header"
        )
    return as_input(open_csv(path, head, encoding, delimiter))
