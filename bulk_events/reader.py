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
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import io
import math
import re
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
from defusedxml import ElementTree as SafeET

from bulk_events.errors import FileFormatError, UsageError

__all__ = ["Detected", "Table", "open_table"]

MAX_CELL_CHARS = 1 << 20  # a cell beyond 1 MiB is not contact data; refuse before it eats memory
_BLOCK = 1 << 20  # read size of every streaming pass
# Above this much sheet XML (about 300k rows of 8 columns) calamine would hold ~200 MiB for the
# whole run: such sheets are streamed by openpyxl instead.
CALAMINE_MAX_SHEET_XML = 100 * 1000 * 1000
_SAMPLE_CHARS = 64 << 10  # text looked at to choose the delimiter
_WIDTH_SAMPLE_RECORDS = 1000  # records after the header looked at to size the row
# This many bytes of valid multi-byte UTF-8 before the first invalid byte make a file "UTF-8 with
# a damaged byte" rather than a legacy code page (where valid pairs only happen by accident).
_DAMAGED_UTF8 = 32

# Zip-bomb limits, checked against the zip directory before anything is decompressed.
_MAX_UNZIPPED_TOTAL = 1 << 30
_MAX_RATIO = 200
_RATIO_APPLIES_ABOVE = 50 * 1000 * 1000
_MAX_MEMBERS = 20_000

_DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_ALIASES = {
    "\\t": "\t",
    "tab": "\t",
    "comma": ",",
    "semicolon": ";",
    "pipe": "|",
    "|": "|",
}


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Detected:
    """What :func:`open_table` found out about a file, and how it will be read."""

    format: str  # "csv" | "xlsx"
    encoding: str | None = None  # csv only: "utf-8", "utf-8-sig", "utf-16", "cp1251", ...
    delimiter: str | None = None  # csv only: ",", ";", "\t", "|"
    sheet: str | None = None  # xlsx only: the sheet read
    sheets: tuple[str, ...] = ()  # xlsx only: every worksheet, in tab order
    engine: str = "pandas-c"  # what reads the rows: "pandas-c", "calamine" or "openpyxl"
    header_row: int = 1  # 1-based spreadsheet row of the header
    encoding_given: bool = False  # True when the caller forced the encoding
    delimiter_given: bool = False  # True when the caller forced the delimiter

    def describe(self) -> str:
        """One line for a person, e.g. ``CSV, cp1251 (detected), delimiter ";" (detected)``."""
        if self.format == "jsonl":
            return "a bulk-events JSONL report (its input cells, under their original row numbers)"
        if self.format == "xlsx":
            position = self.sheets.index(self.sheet) + 1 if self.sheet in self.sheets else 1
            return f'Excel sheet "{self.sheet}" ({position} of {len(self.sheets)})'
        how_enc = "given" if self.encoding_given else "detected"
        how_delim = "given" if self.delimiter_given else "detected"
        shown = "TAB" if self.delimiter == "\t" else f'"{self.delimiter}"'
        return f"CSV, {self.encoding} ({how_enc}), delimiter {shown} ({how_delim})"


class Table:
    """An opened spreadsheet: its header now, its rows on demand through :meth:`chunks`.

    ``columns`` are the header cells exactly as written (not stripped). Columns whose header is
    blank are left out; should one of them hold a value, :meth:`chunks` raises naming its letter.
    """

    def __init__(self, path: Path, detected: Detected, columns: list[str], source: _Source):
        self.path = path
        self.detected = detected
        self.columns = columns
        self._source = source
        # About how many rows follow the header (blank ones included), for a progress bar.
        self.row_estimate: int | None = None

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


def open_table(
    path: str | Path,
    *,
    sheet: str | int | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> Table:
    """Open a CSV or Excel file for reading, detecting what is not given.

    ``sheet`` (Excel only) is a sheet name (exact, then ignoring case) or a tab position counted
    from 1; the default is the first visible sheet. ``encoding`` and ``delimiter`` (CSV only)
    override detection; the delimiter may be spelled ``"\\t"``, ``"tab"``, ``"semicolon"``...

        >>> table = open_table("customers.xlsx", sheet="Data")   # doctest: +SKIP
    """
    path = Path(path)
    name = path.name
    try:
        with path.open("rb") as f:
            head = f.read(_SAMPLE_CHARS)
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
        return _open_jsonl_report(path)
    kind = _sniff_kind(head, path)
    if kind == "xlsx":
        if encoding is not None or delimiter is not None:
            raise UsageError("encoding and delimiter apply to CSV files, not to Excel workbooks")
        return _open_xlsx(path, sheet)
    if sheet is not None:
        raise UsageError(f"{name} is a CSV file, which has no sheets")
    return _open_csv(path, head, encoding, delimiter)


# --------------------------------------------------------------------------- a JSONL report


class _JsonlReportSource:
    """A ``.jsonl`` report read back: each line's ``input`` cells, under the line's ``row`` (the
    row number in the original file). JSONL is never formula-escaped, so the cells are as read."""

    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        self.columns = columns

    def _records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        import orjson

        with self.path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise FileFormatError(f"{self.path.name}: line {number} is not JSON") from None
                cells = record.get("input") if isinstance(record, dict) else None
                if not isinstance(cells, dict):
                    raise FileFormatError(
                        f"{self.path.name}: line {number} is not a bulk-events report line "
                        '(no "input" object); only bulk-events reports can be read as JSONL'
                    )
                row = record.get("row")
                yield (row if isinstance(row, int) and row > 0 else number + 1), cells

    def frames(self, size: int) -> Iterator[pd.DataFrame]:
        columns = self.columns
        known = set(columns)
        numbers: list[int] = []
        batch: list[list[str]] = []
        previous = 0
        for number, cells in self._records():
            if number <= previous:
                raise FileFormatError(
                    f"{self.path.name}: row {number} comes after row {previous}; "
                    "is this several reports joined together? Feed them in one at a time"
                )
            if not known.issuperset(cells):
                extra = ", ".join(f'"{c}"' for c in cells if c not in known)
                raise FileFormatError(
                    f"{self.path.name}: row {number} has columns the first line lacks ({extra})"
                )
            previous = number
            numbers.append(number)
            batch.append(["" if cells.get(c) is None else str(cells[c]) for c in columns])
            if len(batch) >= size:
                yield pd.DataFrame(batch, columns=columns, index=_row_index(numbers), dtype=object)
                numbers, batch = [], []
        if batch:
            yield pd.DataFrame(batch, columns=columns, index=_row_index(numbers), dtype=object)

    def close(self) -> None:
        pass


def _open_jsonl_report(path: Path) -> Table:
    source = _JsonlReportSource(path, [])
    first = next(source._records(), None)
    if first is None:
        raise FileFormatError(f"{path.name} is empty")
    source.columns = [str(c) for c in first[1]]
    detected = Detected(format="jsonl", engine="json")
    return Table(path, detected, list(source.columns), source)


# --------------------------------------------------------------------------- what kind of file

_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_NOT_TEXT_MAGIC = {
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\x1f\x8b": "a gzip archive",
    b"Rar!": "a RAR archive",
    b"7z\xbc\xaf": "a 7-Zip archive",
}
_EXCEL_SUFFIXES = {".xlsx", ".xlsm", ".xltx", ".xltm", ".xls", ".xlsb", ".ods"}


def _sniff_kind(head: bytes, path: Path) -> str:
    """Return "xlsx" or "csv" from the first bytes, or raise for anything else."""
    name = path.name
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "xlsx"
    if head.startswith(_OLE2_MAGIC):
        raise FileFormatError(
            f"{name} is an old-style Excel 97-2003 workbook (.xls) or a password-protected one; "
            "open it in Excel and save it as .xlsx or CSV"
        )
    for magic, what in _NOT_TEXT_MAGIC.items():
        if head.startswith(magic):
            raise FileFormatError(f"{name} is {what}, not a CSV file or an Excel workbook")
    if path.suffix.lower() in _EXCEL_SUFFIXES:
        raise FileFormatError(f"{name} is not an Excel workbook (.xlsx/.xlsm)")
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if stripped.startswith((b"<?xml", b"<html", b"<!doctype html", b"<table")):
        raise FileFormatError(
            f"{name} is an XML or HTML file, not CSV; open it in Excel and save it as .xlsx or CSV"
        )
    return "csv"


def _column_letter(index: int) -> str:
    """0-based column index -> spreadsheet letters (0 -> A, 26 -> AA)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


# --------------------------------------------------------------------------- shared row handling


@dataclass
class _Layout:
    """Which positions of a row become which column, from the header cells."""

    names: list[str]
    kept: list[int]  # positions (0 = column A / first CSV field) of the named columns
    width: int  # number of header positions (named or not)
    blank_inside: list[int] = field(default_factory=list)  # unnamed positions before `width`

    @classmethod
    def from_header(cls, cells: list[str]) -> _Layout:
        """Keep the named header cells; refuse two names equal after strip + casefold."""
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
                    f"(columns {_column_letter(first)} and {_column_letter(i)})"
                )
            seen[key] = i
        named = set(kept)
        blank = [i for i in range(len(cells)) if i not in named]
        return cls([cells[i] for i in kept], kept, len(cells), blank)


def _no_header_error(letter: str, row: int) -> FileFormatError:
    return FileFormatError(
        f"column {letter} has no header but row {row} has a value in it; "
        "give the column a header or delete its values"
    )


def _cell_too_big_error(row: int, letter: str) -> FileFormatError:
    return FileFormatError(
        f"row {row}, column {letter}, has a cell longer than 1 MiB; refusing to read it"
    )


# --------------------------------------------------------------------------- CSV


def _open_csv(path: Path, head: bytes, encoding: str | None, delimiter: str | None) -> Table:
    name = path.name
    forced_delim = _normalise_delimiter(delimiter) if delimiter is not None else None
    encoding_given = encoding is not None
    if encoding is not None:
        enc = _normalise_encoding(encoding, head)
    else:
        enc = _encoding_from_bom(head) or _utf16_without_bom(head) or "utf-8"

    try:
        scan = _scan_text(path, enc)
    except UnicodeError as exc:  # e.g. utf-16 forced on a file without a byte-order mark
        raise FileFormatError(
            f"cannot decode {name} as {enc} ({exc}); try another --encoding"
        ) from None
    # Many valid multi-byte characters before the bad byte mean a UTF-8 file with a damaged
    # byte: decoding it as cp125x instead would garble every row, so that is reported instead.
    utf8_failed = scan.bad_byte is not None and not encoding_given and enc == "utf-8"
    if utf8_failed and scan.multibyte_before_error < _DAMAGED_UTF8:
        enc = _guess_single_byte_encoding(path)
        scan = _scan_text(path, enc)

    if scan.chars == 0 and scan.problem is None:
        raise FileFormatError(f"{name} is empty")  # nothing but a byte-order mark
    sample, sep_line = _read_sample(path, enc)
    delim = forced_delim or sep_line or _choose_delimiter(sample)
    hidden = 1 if sep_line else 0

    if scan.problem_at is not None:
        row = _row_at(path, enc, delim, scan.problem_at) - hidden
        if scan.bad_byte is not None:
            raise _decode_error(path, enc, row, scan, encoding_given)
        if scan.problem == "nul":
            raise FileFormatError(f"{name} has a NUL byte at row {row}; is this a text file?")
        raise FileFormatError(f"row {row} is longer than 1 MiB; refusing to read it")
    if scan.binary:
        raise FileFormatError(f"{name} is not a text file (it is full of control characters)")

    header_record, width = _find_header(path, enc, delim, skip=hidden)
    if header_record is None:
        raise FileFormatError(f"{name} has no data: every row is blank")

    source = _CsvSource(
        path=path,
        encoding=enc,
        delimiter=delim,
        header_record=header_record,
        hidden=hidden,
        width=width,
        check_cell_size=scan.quote_spans_lines,
    )
    header = source.read_header()
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]  # a BOM that survived a forced "utf-8"
    layout = _Layout.from_header(header)
    if not layout.kept:
        raise FileFormatError(f"{name} has no header row")
    source.layout = layout
    detected = Detected(
        format="csv",
        encoding=enc,
        delimiter=delim,
        engine="pandas-c",
        header_row=header_record + 1 - hidden,
        encoding_given=encoding_given,
        delimiter_given=forced_delim is not None,
    )
    table = Table(path, detected, list(layout.names), source)
    table.row_estimate = max(
        0, scan.line_ends - detected.header_row
    )  # one short without a final newline
    return table


def _normalise_delimiter(delimiter: str) -> str:
    key = delimiter if len(delimiter) == 1 else delimiter.strip().lower()
    key = _DELIMITER_ALIASES.get(key, key)
    if len(key) != 1 or key in '"\r\n':
        raise UsageError(
            f'unusable delimiter "{delimiter}"; use one character such as , ; | or "tab"'
        )
    return key


def _normalise_encoding(encoding: str, head: bytes) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise UsageError(f'unknown encoding "{encoding}"') from None
    if name == "utf-8" and head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"  # same text, minus the mark Excel puts first
    return name


def _encoding_from_bom(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _utf16_without_bom(head: bytes) -> str | None:
    """UTF-16 text of mostly ASCII has a NUL in every other byte; catch it before the NUL check."""
    sample = head[:4096]
    if len(sample) < 8:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
        return "utf-16-be"
    return None


@dataclass
class _Scan:
    """What one pass over the whole file found (the first problem only)."""

    chars: int = 0
    line_ends: int = 0  # LF count (CR where a file has no LF): about the number of lines
    quote_spans_lines: bool = False  # a quoted cell may hold a line break
    binary: bool = False
    problem: str | None = None  # "decode" | "nul" | "long"
    problem_at: int | None = None  # character offset of the problem
    bad_byte: int | None = None
    multibyte_before_error: int = 0  # bytes beyond one per character before a decode error


_CONTROL = re.compile("[\x01-\x08\x0e-\x1f\x7f]")


def _scan_text(path: Path, encoding: str) -> _Scan:
    """Decode the whole file in blocks, checking it is text, has no NUL and no giant line.

    One streaming pass with bounded memory: a bad byte at row 900,000 is found before any row
    is used. Lines longer than the cell limit are found here too; a giant cell that spans lines
    can only be quoted, so it is looked for per chunk, but only in files where some line holds an
    odd number of quotes (most files with quotes have none: their quoted cells end on the line).
    """
    scan = _Scan()
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    lines = _ByteLines() if _quote_and_line_ends_are_ascii(encoding) else _TextLines()
    bytes_done = 0
    with path.open("rb") as f:
        while True:
            block = f.read(_BLOCK)
            final = not block
            state = decoder.getstate()
            try:
                text = decoder.decode(block, final)
            except UnicodeDecodeError as exc:
                # exc.object is what the decoder held over plus this block: everything before
                # exc.start is good text that was not yet counted.
                good = exc.object[: exc.start].decode(encoding, errors="replace")
                scan.problem, scan.problem_at = "decode", scan.chars + len(good)
                scan.bad_byte = exc.object[exc.start]
                bytes_before = bytes_done - len(state[0]) + exc.start
                scan.multibyte_before_error = bytes_before - scan.problem_at
                return scan
            if text and not scan.chars:
                probe = text[:_SAMPLE_CHARS]
                scan.binary = len(_CONTROL.findall(probe)) > max(32, 0.05 * len(probe))
            nul = text.find("\x00")
            if nul >= 0:
                scan.problem, scan.problem_at = "nul", scan.chars + nul
                return scan
            long_line = lines.feed(block, text, bytes_done, scan.chars)
            if long_line is not None:
                if isinstance(lines, _ByteLines):
                    long_line = _char_offset(path, encoding, long_line)
                scan.problem, scan.problem_at = "long", long_line
                return scan
            scan.chars += len(text)
            scan.line_ends += text.count("\n") or text.count("\r")
            bytes_done += len(block)
            if final:
                scan.quote_spans_lines = lines.quote_spans_lines()
                return scan


def _quote_and_line_ends_are_ascii(encoding: str) -> bool:
    """True when '"', LF and CR are single ASCII bytes that never occur inside other characters
    (UTF-8 and the single-byte code pages; not UTF-16)."""
    try:
        return b'"\n\r'.decode(encoding) == '"\n\r'
    except UnicodeDecodeError:
        return False


class _ByteLines:
    """Line checks on the raw bytes, vectorised with numpy so they cost next to nothing: the
    longest line (CR or LF ends it), and whether some line holds an odd number of quote bytes,
    the only way a quoted cell can go on past a line break."""

    def __init__(self) -> None:
        self.line_len = 0  # bytes of the line still open at the end of the previous block
        self.line_start = 0  # its byte offset
        self.open_quote = False  # odd number of quotes since the last line end
        self.odd_line = False

    def feed(self, block: bytes, text: str, offset: int, chars: int) -> int | None:
        """Take the next block (at byte ``offset``); the byte offset of a too-long line, or None."""
        arr = np.frombuffer(block, dtype=np.uint8)
        ends = np.flatnonzero((arr == 0x0A) | (arr == 0x0D))
        self._quotes(arr, ends)
        if not len(ends):
            self.line_len += len(block)
            return self.line_start if self.line_len > MAX_CELL_CHARS else None
        if self.line_len + ends[0] > MAX_CELL_CHARS:
            return self.line_start
        if len(ends) > 1:
            gaps = np.diff(ends) - 1
            longest = int(gaps.argmax())
            if gaps[longest] > MAX_CELL_CHARS:
                return offset + int(ends[longest]) + 1
        self.line_start = offset + int(ends[-1]) + 1
        self.line_len = len(block) - int(ends[-1]) - 1
        return None

    def _quotes(self, arr: Any, ends: Any) -> None:
        if self.odd_line:
            return
        quotes = np.flatnonzero(arr == 0x22)
        if not len(quotes) and not self.open_quote:
            return
        if not len(ends):
            self.open_quote ^= bool(len(quotes) & 1)
            return
        before = np.searchsorted(quotes, ends)  # quotes before each line end
        per_line = np.diff(before, prepend=0)
        per_line[0] += self.open_quote
        if (per_line & 1).any():
            self.odd_line = True
        self.open_quote = bool((len(quotes) - int(before[-1])) & 1)

    def quote_spans_lines(self) -> bool:
        return self.odd_line or self.open_quote


class _TextLines:
    """The same line checks on decoded text, for encodings such as UTF-16 where bytes will not do."""

    def __init__(self) -> None:
        self.line_len = 0
        self.line_start = 0
        self.has_quote = False

    def feed(self, block: bytes, text: str, offset: int, chars: int) -> int | None:
        """Take the next decoded block (at character ``chars``); a too-long line's offset, or None."""
        if not text:
            return None
        self.has_quote = self.has_quote or '"' in text
        lines = text.splitlines(keepends=True)
        position, length, start = chars, self.line_len, self.line_start
        for line in lines:
            if length + len(line) > MAX_CELL_CHARS:
                return start
            position += len(line)
            start, length = position, 0
        last = lines[-1]
        if last[-1] in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029":
            self.line_len, self.line_start = 0, chars + len(text)
        elif len(lines) == 1:
            self.line_len += len(last)
        else:
            self.line_len, self.line_start = len(last), chars + len(text) - len(last)
        return None

    def quote_spans_lines(self) -> bool:
        return self.has_quote


def _char_offset(path: Path, encoding: str, byte_offset: int) -> int:
    """The character offset of a byte offset, as the decoded text counts (BOM excluded)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    chars = 0
    with path.open("rb") as f:
        left = byte_offset
        while left > 0 and (block := f.read(min(_BLOCK, left))):
            chars += len(decoder.decode(block))
            left -= len(block)
    return chars


def _decode_error(path: Path, encoding: str, row: int, scan: _Scan, given: bool) -> FileFormatError:
    name = path.name
    byte = f"byte 0x{scan.bad_byte:02x}"
    if not given:
        shown = encoding.removesuffix("-sig")
        return FileFormatError(
            f"{name} looks like {shown} but has an invalid {byte} at row {row}; "
            "fix that row, or pass --encoding if the file is in another encoding"
        )
    guess = _detect_encoding_quietly(path)
    hint = f"try --encoding {guess}" if guess and guess != encoding else "check the file"
    return FileFormatError(f"cannot decode {name} as {encoding} at row {row} ({byte}); {hint}")


def _detect_encoding_quietly(path: Path) -> str | None:
    """The encoding detection would pick, for a hint after a forced one failed (None: no idea)."""
    with path.open("rb") as f:
        head = f.read(_SAMPLE_CHARS)
    enc = _encoding_from_bom(head) or _utf16_without_bom(head)
    if enc:
        return enc
    scan = _scan_text(path, "utf-8")
    if scan.bad_byte is None:
        return "utf-8"
    if scan.multibyte_before_error >= _DAMAGED_UTF8:
        return None
    return _guess_single_byte_encoding(path)


# Letter frequencies of Ukrainian and Russian text together (percent, rough), used to tell
# cp1251 from the encodings that put Cyrillic letters on other byte values.
_CYRILLIC_LETTERS = "оеаинтсрвлкмдпуяыьгзбчйхжшюцщэфъёіїєґ"
_CYRILLIC_PERCENT = (
    "10 8 8 6.5 6.5 6 5 4.5 4.5 4.4 3.4 3.2 3 2.8 2.6 2 1.9 1.7 1.7 1.6 "
    "1.6 1.4 1.2 1 0.9 0.7 0.6 0.5 0.4 0.3 0.3 0.04 0.1 5 0.6 0.4 0.05"
)
_CYRILLIC_FREQ = dict(zip(_CYRILLIC_LETTERS, map(float, _CYRILLIC_PERCENT.split()), strict=True))
# Code page -> prior (log-likelihood per high byte): Excel on Windows writes cp1251, so the others
# must fit somewhat better to win (mac-cyrillic differs from cp1251 in capitals only).
_CYRILLIC_CANDIDATES = {
    "cp1251": 0.0,
    "koi8_r": -0.3,
    "koi8_u": -0.35,
    "mac_cyrillic": -0.3,
    "cp866": -0.3,
}
_ENOUGH_HIGH_BYTES = 200_000


def _guess_single_byte_encoding(path: Path) -> str:
    """Pick the legacy encoding of a file that is not UTF-8.

    Cyrillic words are runs of high bytes, Latin accents sit between ASCII letters: which kind of
    neighbour the high bytes have separates cp1251 from cp1252. Among the Cyrillic code pages
    (cp1251, koi8, mac-cyrillic, cp866 put letters on different bytes) the one whose letters are
    distributed like real text wins. Only code pages that can decode every byte present qualify.
    """
    hist = np.zeros(256, dtype=np.int64)
    high_high = high_letter = 0
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            arr = np.frombuffer(block, dtype=np.uint8)
            hist += np.bincount(arr, minlength=256)
            if high_high + high_letter < _ENOUGH_HIGH_BYTES:
                high = arr >= 0x80
                lower = arr | 0x20
                letter = (lower >= 0x61) & (lower <= 0x7A)
                high_high += int(np.count_nonzero(high[:-1] & high[1:]))
                high_letter += int(
                    np.count_nonzero((high[:-1] & letter[1:]) | (letter[:-1] & high[1:]))
                )
    present = bytes(b for b in range(0x80, 0x100) if hist[b])

    def decodes(enc: str) -> bool:
        try:
            present.decode(enc)
        except UnicodeDecodeError:
            return False
        return True

    if high_high > high_letter:
        best, best_score = None, -math.inf
        total = int(sum(int(hist[b]) for b in present))
        for enc, prior in _CYRILLIC_CANDIDATES.items():
            if not decodes(enc):
                continue
            score = prior * total
            for b in present:
                char = bytes([b]).decode(enc)
                freq = _CYRILLIC_FREQ.get(char.lower(), 0.001 if not char.isalpha() else 0.05)
                weight = 1.0 if char.islower() or not char.isalpha() else 0.7
                score += int(hist[b]) * math.log(freq * weight)
            if score > best_score:
                best, best_score = enc, score
        if best is not None:
            return codecs.lookup(best).name
    return "cp1252" if decodes("cp1252") else "latin-1"


def _open_text(path: Path, encoding: str) -> Any:
    """A text stream that never fails on bytes: for looking, not for reading rows."""
    return path.open(encoding=encoding, errors="replace", newline="")


@contextlib.contextmanager
def _csv_field_limit() -> Iterator[None]:
    """Let the csv module see cells as large as ours (its default stops at 128 KiB).

    The limit is process-wide; it is only ever raised, never put back, so that two threads
    reading at once cannot restore it under each other.
    """
    if csv.field_size_limit() < MAX_CELL_CHARS * 4:
        csv.field_size_limit(MAX_CELL_CHARS * 4)
    yield


_SEP_LINE = re.compile(r"sep=(.)\r?\n?$")


def _read_sample(path: Path, encoding: str) -> tuple[str, str | None]:
    """The first characters of the file cut at a line end, and the `sep=X` line Excel honours."""
    with _open_text(path, encoding) as f:
        sample = f.read(_SAMPLE_CHARS)
        more = bool(f.read(1))
    sample = sample.lstrip("\ufeff")
    first_line = sample.splitlines(keepends=True)[0] if sample else ""
    found = _SEP_LINE.match(first_line)
    sep = found.group(1) if found and found.group(1) not in '"\r\n' else None
    if sep:
        sample = sample[len(first_line) :]
    if more:
        cut = max(sample.rfind("\n"), sample.rfind("\r"))
        if cut > 0:
            sample = sample[: cut + 1]
    return sample, sep


def _choose_delimiter(sample: str) -> str:
    """The delimiter that splits the header and gives most rows the header's field count.

    Quotes are honoured (csv module), so a `;` file with commas inside values, or a `,` file
    with quoted `;`, is not fooled. Consistency decides first; then more fields; then the order
    , ; TAB |. A file no candidate splits is one column, read with ",".
    """
    best, best_key = ",", None
    with _csv_field_limit():
        for rank, delim in enumerate(_DELIMITERS):
            lines = io.StringIO(sample, newline="")
            records = [r for r in csv.reader(lines, delimiter=delim) if any(r)]
            if not records or len(records[0]) < 2:
                continue
            fields = len(records[0])
            body = records[1:51]
            same = sum(len(r) == fields for r in body) / len(body) if body else 1.0
            key = (round(same, 1), fields, -rank)
            if best_key is None or key > best_key:
                best, best_key = delim, key
    return best


def _records(path: Path, encoding: str, delimiter: str) -> Iterator[list[str]]:
    """Every record of the file as the csv module reads it (for looking, not for rows)."""
    with _open_text(path, encoding) as f, _csv_field_limit():
        first = True
        for record in csv.reader(f, delimiter=delimiter):
            if first and record and record[0].startswith("\ufeff"):
                record[0] = record[0][1:]
            first = False
            yield record


def _find_header(path: Path, encoding: str, delimiter: str, skip: int) -> tuple[int | None, int]:
    """(0-based record index of the first non-blank record, widest record seen near it)."""
    header = None
    width = 0
    for index, record in enumerate(_records(path, encoding, delimiter)):
        if index < skip:
            continue
        if header is None:
            if any(record):
                header, width = index, len(record)
            continue
        width = max(width, len(record))
        if index - header >= _WIDTH_SAMPLE_RECORDS:
            break
    return header, width


def _row_at(path: Path, encoding: str, delimiter: str, char_offset: int) -> int:
    """1-based record number (blank ones included) holding the character at ``char_offset``."""
    consumed = 0

    def lines() -> Iterator[str]:
        nonlocal consumed
        with _open_text(path, encoding) as f:
            for line in f:
                consumed += len(line)
                yield line.replace("\x00", " ")

    number = 0
    with _csv_field_limit():
        for _record in csv.reader(lines(), delimiter=delimiter):
            number += 1
            if consumed > char_offset:
                break
    return max(number, 1)


_EXPECTED_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_PANDAS_ERRORS = (pd.errors.ParserError, UnicodeDecodeError, ValueError)
_MAX_COLUMNS = 16_384  # Excel's last column, XFD


_EOF_IN_STRING = re.compile(r"EOF inside string starting at row (\d+)")


class _CsvSource:
    """Reads the rows of a checked CSV file with pandas' C parser, in chunks."""

    def __init__(
        self,
        *,
        path: Path,
        encoding: str,
        delimiter: str,
        header_record: int,
        hidden: int,
        width: int,
        check_cell_size: bool,
    ):
        self.path = path
        self.encoding = encoding
        self.delimiter = delimiter
        self.header_record = header_record  # 0-based record index of the header in the file
        self.hidden = hidden  # records before row 1 (Excel's "sep=" line)
        self.width = width
        self.check_cell_size = check_cell_size
        self.layout: _Layout
        self._readers: list[Any] = []

    def _reader(self, **kwargs: Any) -> Any:
        # Every value as text, nothing turned into NaN, blank lines kept so that record
        # index -> row number stays exact. No skiprows: with CR-only line ends pandas skips a
        # wrong number of them; the records before the header are dropped here instead.
        return pd.read_csv(
            self.path,
            sep=self.delimiter,
            encoding=self.encoding,
            encoding_errors="strict",
            header=None,
            names=range(self.width),
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            quotechar='"',
            doublequote=True,
            engine="c",
            **kwargs,
        )

    def _row(self, record_index: int) -> int:
        """1-based spreadsheet row of a 0-based record index counted from the file's start."""
        return record_index + 1 - self.hidden

    def _translate(self, exc: Exception) -> FileFormatError:
        name = self.path.name
        message = str(exc)
        if found := _EXPECTED_FIELDS.search(message):
            saw, line = int(found.group(3)), int(found.group(2))
            return FileFormatError(
                f"row {line - self.hidden} has {saw} cells, more than a spreadsheet's "
                f"{_MAX_COLUMNS:,} columns; check the quotes and delimiters around that row"
            )
        if found := _EOF_IN_STRING.search(message):
            return FileFormatError(
                f"unterminated quoted value starting at row {self._row(int(found.group(1)))}"
            )
        if isinstance(exc, UnicodeDecodeError):
            return FileFormatError(f"cannot decode {name} as {self.encoding}")
        return FileFormatError(f"cannot read {name} as CSV: it is malformed")

    def read_header(self) -> list[str]:
        try:
            frame = self._reader(nrows=self.header_record + 1)
        except _PANDAS_ERRORS as exc:
            raise self._translate(exc) from None
        if len(frame) <= self.header_record:
            return []
        return [str(v) for v in frame.iloc[self.header_record].tolist()]

    def frames(self, size: int) -> Iterator[pd.DataFrame]:
        """Yield chunks; a row wider than any seen so far restarts the parser with more room.

        pandas' C parser needs the row width up front (taken from the first rows). A wider row
        later, say with trailing empty cells, makes it stop: it is then run again with room for
        that row, dropping the records already yielded, as Excel would show extra cells too
        (empty ones are nothing; a value there has no header, which is refused).
        """
        done = self.header_record  # records up to here are handled (blank lines, `sep=`, header)
        while True:
            reader = self._reader(chunksize=size)
            self._readers.append(reader)
            try:
                with reader:
                    for frame in reader:
                        records = np.asarray(frame.index, dtype=np.int64)
                        if records[0] <= done:
                            after = records > done
                            frame, records = frame[after], records[after]
                            if not len(frame):
                                continue
                        chunk = self._chunk(frame, records)
                        done = int(records[-1])
                        if chunk is not None:
                            yield chunk
                return
            except pd.errors.ParserError as exc:
                found = _EXPECTED_FIELDS.search(str(exc))
                if not found or int(found.group(3)) > _MAX_COLUMNS:
                    raise self._translate(exc) from None
                self.width = min(max(int(found.group(3)), 2 * self.width), _MAX_COLUMNS)
            except (UnicodeDecodeError, ValueError) as exc:
                raise self._translate(exc) from None

    def _chunk(self, frame: pd.DataFrame, records: Any) -> pd.DataFrame | None:
        """Records -> the rows a person sees (blank ones dropped); None if none is left."""
        kept, names = self.layout.kept, self.layout.names
        named = set(kept)
        rows = records + 1 - self.hidden
        values = {j: frame[j].to_numpy(dtype=object) for j in range(self.width)}
        for j in range(self.width):
            if j not in named:
                filled = values[j] != ""
                if filled.any():
                    raise _no_header_error(_column_letter(j), int(rows[filled.argmax()]))
        if self.check_cell_size:
            for j in kept:
                lengths = np.fromiter(map(len, values[j]), dtype=np.int64, count=len(rows))
                if lengths.max() > MAX_CELL_CHARS:
                    raise _cell_too_big_error(int(rows[lengths.argmax()]), _column_letter(j))
        keep = np.zeros(len(rows), dtype=bool)
        for j in kept:
            keep |= values[j] != ""
        if not keep.any():
            return None
        out = frame if kept == list(range(self.width)) else frame[kept]
        out = out.set_axis(names, axis=1).set_axis(_row_index(rows), axis=0)
        return out if keep.all() else out[keep]

    def close(self) -> None:
        for reader in self._readers:
            with contextlib.suppress(Exception):
                reader.close()
        self._readers.clear()


def _row_index(rows: Any) -> pd.Index:
    return pd.Index(np.asarray(rows, dtype=np.int64), name="row")


# --------------------------------------------------------------------------- XLSX: safety checks

_ENTITY_NEEDLES = tuple(
    needle.encode(enc)
    for needle in ("<!DOCTYPE", "<!ENTITY")
    for enc in ("utf-8", "utf-16-le", "utf-16-be")
)


@dataclass
class _Workbook:
    sheets: list[tuple[str, bool]]  # (name, visible) of every worksheet, in tab order
    pad_formats: dict[str, list[tuple[str, str]]]  # format code -> tokens, for formats in use
    xml_sizes: dict[str, int]  # sheet name -> unpacked size of its XML part


def _inspect_xlsx(path: Path) -> _Workbook:
    """Refuse what is not a safe .xlsx; list its sheets and the zero-padding formats it uses."""
    name = path.name
    not_workbook = FileFormatError(f"{name} is not an Excel workbook (.xlsx/.xlsm)")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise not_workbook from None
    with archive:
        members = archive.infolist()
        _refuse_zip_bomb(name, members)
        names = {m.filename for m in members}
        if "xl/workbook.bin" in names:
            raise FileFormatError(
                f"{name} is a binary Excel workbook (.xlsb); save it as .xlsx or CSV"
            )
        if "mimetype" in names and "content.xml" in names:
            raise FileFormatError(f"{name} is an OpenDocument spreadsheet; save it as .xlsx or CSV")
        _scan_members(name, archive, members)
        workbook_part = _office_document_part(archive, names)
        if workbook_part is None or workbook_part not in names:
            raise not_workbook
        try:
            return _read_workbook_parts(archive, names, workbook_part)
        except (SafeET.ParseError, KeyError, ValueError) as exc:
            raise FileFormatError(f"{name} is damaged: its workbook part cannot be read") from exc


def _refuse_zip_bomb(name: str, members: list[zipfile.ZipInfo]) -> None:
    if len(members) > _MAX_MEMBERS:
        raise FileFormatError(f"{name} has {len(members)} parts; refusing to read it")
    total = 0
    for m in members:
        total += m.file_size
        ratio = m.file_size / max(m.compress_size, 1)
        if m.file_size > _RATIO_APPLIES_ABOVE and ratio > _MAX_RATIO:
            raise FileFormatError(
                f"{name} looks like a zip bomb ({m.filename} unpacks {ratio:.0f} times larger); "
                "refusing to read it"
            )
    if total > _MAX_UNZIPPED_TOTAL:
        raise FileFormatError(
            f"{name} would unpack to {total / (1 << 30):.1f} GiB; refusing to read it"
        )


def _scan_members(name: str, archive: zipfile.ZipFile, members: list[zipfile.ZipInfo]) -> None:
    """Decompress every part once, streaming: CRCs verify the sizes the directory declared, and no
    part may declare XML entities (billion laughs, external entities)."""
    keep = max(len(n) for n in _ENTITY_NEEDLES) - 1
    for member in members:
        if member.is_dir():
            continue
        tail = b""
        try:
            with archive.open(member) as part:
                while block := part.read(_BLOCK):
                    window = tail + block
                    if any(n in window for n in _ENTITY_NEEDLES):
                        raise FileFormatError(
                            f"{name} contains XML entity declarations; refusing to read it"
                        )
                    tail = window[-keep:]
        except FileFormatError:
            raise
        except RuntimeError:  # zipfile: "File is encrypted, password required"
            raise FileFormatError(f"{name} is encrypted; save it without a password") from None
        except NotImplementedError:
            raise FileFormatError(f"{name} uses an unsupported zip compression") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            raise FileFormatError(
                f"{name} is damaged (its part {member.filename} is corrupt)"
            ) from None


def _parse_xml(archive: zipfile.ZipFile, part: str) -> Any:
    with archive.open(part) as f:
        return SafeET.parse(f, forbid_dtd=True).getroot()


def _named(root: Any, local: str) -> Iterator[Any]:
    """Elements by local name whatever the namespace (transitional and strict OOXML differ)."""
    return (el for el in root.iter() if el.tag.rpartition("}")[2] == local)


def _relationship_id(el: Any) -> str:
    """The ``r:id`` attribute, whatever its namespace."""
    return next((v for k, v in el.attrib.items() if k.endswith("}id")), "")


def _rels(archive: zipfile.ZipFile, names: set[str], part: str) -> dict[str, tuple[str, str]]:
    """Relationship id -> (type, absolute target part) for a part."""
    folder = PurePosixPath(part).parent
    rels_part = str(folder / "_rels" / (PurePosixPath(part).name + ".rels"))
    if rels_part.startswith("./"):
        rels_part = rels_part[2:]
    if rels_part not in names:
        return {}
    out = {}
    for rel in _named(_parse_xml(archive, rels_part), "Relationship"):
        target = rel.get("Target", "")
        absolute = target.lstrip("/") if target.startswith("/") else _normpath(folder / target)
        out[rel.get("Id", "")] = (rel.get("Type", ""), absolute)
    return out


def _normpath(p: PurePosixPath) -> str:
    parts: list[str] = []
    for piece in p.parts:
        if piece == "..":
            if parts:
                parts.pop()
        elif piece not in (".", ""):
            parts.append(piece)
    return "/".join(parts)


def _office_document_part(archive: zipfile.ZipFile, names: set[str]) -> str | None:
    for rel_type, target in _rels(archive, names, "").values():
        if rel_type.endswith("/officeDocument"):
            return target
    return "xl/workbook.xml" if "xl/workbook.xml" in names else None


def _read_workbook_parts(
    archive: zipfile.ZipFile, names: set[str], workbook_part: str
) -> _Workbook:
    rels = _rels(archive, names, workbook_part)
    root = _parse_xml(archive, workbook_part)
    sheets = []
    sizes = {}
    for el in _named(root, "sheet"):
        rel_type, part = rels.get(_relationship_id(el), ("", ""))
        if rel_type and not rel_type.endswith("/worksheet"):
            continue  # chart sheets and macro sheets have no cells to read
        name = el.get("name", "")
        sheets.append((name, el.get("state", "visible") == "visible"))
        sizes[name] = archive.getinfo(part).file_size if part in names else 0
    styles = next((t for rt, t in rels.values() if rt.endswith("/styles")), None)
    pads = _pad_formats(archive, styles) if styles in names else {}
    return _Workbook(sheets, pads, sizes)


_PAD_TOKEN = re.compile(r'"[^"]*"|\\.|0+|[-+() ]')


def _pad_tokens(code: str) -> list[tuple[str, str]] | None:
    """Tokens of a format made only of 0s and literals (``00000``, ``"UA"000000``,
    ``000-000-0000``), or None for any other format."""
    section = code.split(";")[0]
    tokens: list[tuple[str, str]] = []
    pos = 0
    for match in _PAD_TOKEN.finditer(section):
        if match.start() != pos:
            return None
        text = match.group()
        pos = match.end()
        if text[0] == "0":
            tokens.append(("0", text))
        elif text[0] == '"':
            tokens.append(("lit", text[1:-1]))
        elif text[0] == "\\":
            tokens.append(("lit", text[1]))
        else:
            tokens.append(("lit", text))
    if pos != len(section) or not any(kind == "0" for kind, _ in tokens):
        return None
    if len(tokens) == 1 and tokens[0][1] == "0":
        return None  # plain "0": nothing to pad
    return tokens


def _pad_formats(archive: zipfile.ZipFile, styles_part: str) -> dict[str, list[tuple[str, str]]]:
    """Zero-padding custom number formats that some cell style actually uses."""
    root = _parse_xml(archive, styles_part)
    custom = {el.get("numFmtId"): el.get("formatCode", "") for el in _named(root, "numFmt")}
    used = {xf.get("numFmtId") for xfs in _named(root, "cellXfs") for xf in xfs}
    pads = {}
    for fmt_id, code in custom.items():
        if fmt_id in used and (tokens := _pad_tokens(code)) is not None:
            pads[code] = tokens
    return pads


# --------------------------------------------------------------------------- XLSX: cells


def _render(value: Any) -> str:
    """A cell value from calamine or openpyxl -> the text a person sees (see module rules)."""
    if value is None:
        return ""
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "TRUE" if value else "FALSE"
    if kind is int:
        return str(value) if abs(value) < 10**16 else _render_float(float(value))
    if kind is float:
        return _render_float(value)
    if kind is dt.datetime:
        value = _round_to_second(value)
        if value.hour == value.minute == value.second == 0:
            return value.date().isoformat()
        return value.isoformat(timespec="seconds")
    if kind is dt.date:
        return value.isoformat()
    if kind is dt.time:
        moment = _round_to_second(dt.datetime.combine(dt.date(2000, 1, 1), value))
        return moment.time().isoformat(timespec="seconds")
    if kind is dt.timedelta:
        return str(dt.timedelta(seconds=round(value.total_seconds())))
    return str(value)


def _render_float(value: float) -> str:
    if not math.isfinite(value):
        return ""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    text = repr(value)
    if len(text) <= 15:  # at most 15 digits already: the common case, and the cheap one
        return text
    # Excel keeps and shows 15 significant digits: 0.1+0.2 reads 0.3, not 0.30000000000000004.
    shown = float(f"{value:.15g}")
    if shown.is_integer() and abs(shown) < 1e16:
        return str(int(shown))
    return repr(shown)


def _round_to_second(moment: dt.datetime) -> dt.datetime:
    # Stored as fractions of a day, times come back a microsecond off; both engines must agree.
    if moment.microsecond >= 500_000:
        moment += dt.timedelta(seconds=1)
    return moment.replace(microsecond=0)


def _render_padded(value: float | int, tokens: list[tuple[str, str]]) -> str:
    """A number under a zero-padding format, as Excel shows it: 1234 under 00000 -> 01234."""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    whole = int(Decimal(repr(abs(value))).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    zeros = sum(len(text) for kind, text in tokens if kind == "0")
    digits = str(whole).zfill(zeros)
    extra = len(digits) - zeros  # digits that do not fit go into the first placeholder run
    out = []
    pos = 0
    for kind, text in tokens:
        if kind == "0":
            take = len(text) + extra
            extra = 0
            out.append(digits[pos : pos + take])
            pos += take
        else:
            out.append(text)
    sign = "-" if value < 0 and whole else ""
    return sign + "".join(out)


def _open_xlsx(path: Path, sheet: str | int | None, engine: str | None = None) -> Table:
    """Open a checked workbook with the engine that fits it (``engine``, for tests, forces one).

    calamine is about five times faster but holds the whole sheet in memory (about twice the
    sheet's XML) for as long as the table is open, and it cannot see number formats. So openpyxl
    (streaming, bounded memory) reads workbooks with zero-padding formats, and sheets too big to
    hold. Both render cells the same way.
    """
    name = path.name
    workbook = _inspect_xlsx(path)
    all_names = tuple(n for n, _ in workbook.sheets)
    if not all_names:
        raise FileFormatError(f"{name} has no worksheets")
    chosen = _choose_sheet(name, workbook.sheets, sheet)
    too_big = workbook.xml_sizes.get(chosen, 0) > CALAMINE_MAX_SHEET_XML
    engine = engine or ("openpyxl" if workbook.pad_formats or too_big else "calamine")
    source: _XlsxSource
    if engine == "calamine":
        source = _CalamineSource(path, chosen)
    else:
        source = _OpenpyxlSource(path, chosen, workbook.pad_formats)
    try:
        header_row, header = source.header()
        listing = ", ".join(f'"{n}"' for n in all_names)
        if header_row is None:
            raise FileFormatError(f'sheet "{chosen}" in {name} is empty; sheets: {listing}')
        layout = _Layout.from_header(header)
        if not layout.kept:
            raise FileFormatError(f'sheet "{chosen}" in {name} has no header row')
    except BaseException:
        source.close()
        raise
    source.layout = layout
    source.header_row = header_row
    detected = Detected(
        format="xlsx",
        sheet=chosen,
        sheets=all_names,
        engine=engine,
        header_row=header_row,
    )
    table = Table(path, detected, list(layout.names), source)
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


class _XlsxSource:
    """Common row handling of both engines: each yields (row number, cells from column A)."""

    def __init__(self, path: Path, sheet: str):
        self.path = path
        self.sheet = sheet
        self.layout: _Layout
        self.header_row = 1

    def rows(self) -> Iterator[tuple[int, list[str]]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def last_row(self) -> int | None:
        """The sheet's last used row number as the workbook states it, if it does."""
        return None

    def header(self) -> tuple[int | None, list[str]]:
        for number, cells in self.rows():
            if any(cells):
                return number, cells
        return None, []

    def frames(self, size: int) -> Iterator[pd.DataFrame]:
        layout = self.layout
        kept, width = layout.kept, layout.width
        names = layout.names
        unnamed = layout.blank_inside
        simple = kept == list(range(width))
        numbers: list[int] = []
        batch: list[list[str]] = []
        for number, cells in self.rows():
            if number <= self.header_row or not any(cells):
                continue
            if len(cells) > width and any(cells[width:]):
                j = width + next(i for i, v in enumerate(cells[width:]) if v)
                raise _no_header_error(_column_letter(j), number)
            for j in unnamed:
                if j < len(cells) and cells[j]:
                    raise _no_header_error(_column_letter(j), number)
            if simple:
                row = cells[:width]
                if len(row) < width:
                    row += [""] * (width - len(row))
            else:
                row = [cells[j] if j < len(cells) else "" for j in kept]
            if max(map(len, row)) > MAX_CELL_CHARS:
                j = next(k for k, text in zip(kept, row, strict=True) if len(text) > MAX_CELL_CHARS)
                raise _cell_too_big_error(number, _column_letter(j))
            numbers.append(number)
            batch.append(row)
            if len(batch) >= size:
                yield self._to_frame(names, numbers, batch)
                numbers, batch = [], []
        if batch:
            yield self._to_frame(names, numbers, batch)

    @staticmethod
    def _to_frame(names: list[str], numbers: list[int], batch: list[list[str]]) -> pd.DataFrame:
        columns = zip(*batch, strict=True)
        data = dict(zip(names, (list(c) for c in columns), strict=True))
        return pd.DataFrame(data, index=_row_index(numbers), dtype="str")

    def _damaged(self) -> FileFormatError:
        return FileFormatError(f'{self.path.name} is damaged: sheet "{self.sheet}" cannot be read')

    def close(self) -> None:  # pragma: no cover - overridden
        pass


class _CalamineSource(_XlsxSource):
    """The fast path: python-calamine (Rust) reads the sheet; we render its typed values."""

    def __init__(self, path: Path, sheet: str):
        super().__init__(path, sheet)
        from python_calamine import CalamineWorkbook

        try:
            self._book = CalamineWorkbook.from_path(str(path))
            self._sheet = self._book.get_sheet_by_name(sheet)
        except Exception:  # CalamineError and its kin: whatever a damaged file brings
            raise self._damaged() from None

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        start = self._sheet.start
        if start is None:
            return  # an empty sheet (and iter_rows() would fail on it)
        # iter_rows() yields every row from the sheet's first row (leading ones empty) but only
        # the columns from the first used one: pad those back so position 0 is column A.
        pad = [""] * start[1]
        try:
            for number, values in enumerate(self._sheet.iter_rows(), start=1):
                cells = [v if type(v) is str else _render(v) for v in values]
                yield number, pad + cells if pad else cells
        except Exception:
            raise self._damaged() from None

    def last_row(self) -> int | None:
        return self._sheet.height or None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._book.close()


class _OpenpyxlSource(_XlsxSource):
    """The path for workbooks whose number formats change what a person sees (``00000``)."""

    def __init__(self, path: Path, sheet: str, pads: dict[str, list[tuple[str, str]]]):
        super().__init__(path, sheet)
        import openpyxl

        self._pads = pads
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._book = openpyxl.load_workbook(
                    path, read_only=True, data_only=True, keep_links=False
                )
            self._sheet = self._book[sheet]
        except Exception:  # openpyxl raises many kinds on a broken file
            raise self._damaged() from None

    def last_row(self) -> int | None:
        try:
            return self._sheet.max_row  # from the sheet's <dimension>, when it has one
        except Exception:
            return None

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        pads = self._pads
        sheet = self._sheet
        sheet.reset_dimensions()  # the stored dimension can be wrong; read what is there
        try:
            for number, cells in enumerate(sheet.iter_rows(min_row=1, min_col=1), start=1):
                out = []
                for cell in cells:
                    value = cell.value
                    kind = type(value)
                    if kind is str:
                        # Error cells (#N/A) read as empty, as calamine gives them.
                        out.append("" if cell.data_type == "e" else value)
                    elif (kind is int or kind is float) and cell.number_format in pads:
                        out.append(_render_padded(value, pads[cell.number_format]))
                    else:
                        out.append(_render(value))
                while out and not out[-1]:
                    out.pop()
                yield number, out
        except Exception:  # openpyxl raises many kinds on a broken sheet
            raise self._damaged() from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._book.close()


_Source = _CsvSource | _XlsxSource | _JsonlReportSource
