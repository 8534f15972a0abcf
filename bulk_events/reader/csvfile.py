"""CSV files -> rows of text cells, read in chunks by pandas' C parser.

:func:`open_csv` settles the encoding and delimiter (:mod:`.detect`), refuses what cannot be read
(a bad byte, a NUL, a giant line) before any row is handed out, and finds the header.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bulk_events.errors import FileFormatError

from .detect import (
    DAMAGED_UTF8,
    choose_delimiter,
    csv_field_limit,
    decode_error,
    encoding_from_bom,
    guess_single_byte_encoding,
    normalise_delimiter,
    normalise_encoding,
    open_text,
    read_sample,
    scan_text,
    utf16_without_bom,
)
from .table import (
    BLOCK,
    MAX_CELL_CHARS,
    Detected,
    Layout,
    Table,
    cell_too_big_error,
    column_letter,
    no_header_error,
    row_index,
)

_WIDTH_SAMPLE_RECORDS = 1000  # records after the header looked at to size the row


def open_csv(path: Path, head: bytes, encoding: str | None, delimiter: str | None) -> Table:
    name = path.name
    # Taken before the file is first scanned: every chunk is checked against it, so a file
    # still being written (or cut) stops the run before its partial last line is sent.
    stamp = _stamp(path)
    forced_delim = normalise_delimiter(delimiter) if delimiter is not None else None
    encoding_given = encoding is not None
    if encoding is not None:
        enc = normalise_encoding(encoding, head)
    else:
        enc = encoding_from_bom(head) or utf16_without_bom(head) or "utf-8"

    try:
        scan = scan_text(path, enc)
    except UnicodeError as exc:  # e.g. utf-16 forced on a file without a byte-order mark
        raise FileFormatError(
            f"cannot decode {name} as {enc} ({exc}); try another --encoding"
        ) from None
    # Many valid multi-byte characters before the bad byte mean a UTF-8 file with a damaged
    # byte: decoding it as cp125x instead would garble every row, so that is reported instead.
    utf8_failed = scan.bad_byte is not None and not encoding_given and enc == "utf-8"
    if utf8_failed and scan.multibyte_before_error < DAMAGED_UTF8:
        enc = guess_single_byte_encoding(path)
        scan = scan_text(path, enc)

    if scan.chars == 0 and scan.problem is None:
        raise FileFormatError(f"{name} is empty")  # nothing but a byte-order mark
    sample, sep_line = read_sample(path, enc)
    delim = forced_delim or sep_line or choose_delimiter(sample)
    hidden = 1 if sep_line else 0

    if scan.problem_at is not None:
        row = _row_at(path, enc, delim, scan.problem_at) - hidden
        if scan.bad_byte is not None:
            raise decode_error(path, enc, row, scan, encoding_given)
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
        stamp=stamp,
    )
    header = source.read_header()
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]  # a BOM that survived a forced "utf-8"
    layout = Layout.from_header(header)
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


def _records(path: Path, encoding: str, delimiter: str) -> Iterator[list[str]]:
    """Every record of the file as the csv module reads it (for looking, not for rows)."""
    with open_text(path, encoding) as f, csv_field_limit():
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
    """1-based record number (blank ones included) holding the character at ``char_offset``.

    Only the text before that character is read, in bounded pieces: the line at the offset may
    be the giant one being refused. A marker character stands for the one at the offset, so the
    last record read is the one holding it.
    """

    def lines() -> Iterator[str]:
        left = char_offset
        pending = ""  # the csv module takes each piece as a line: join pieces of one line
        with open_text(path, encoding) as f:
            while left > 0 and (piece := f.readline(min(left, BLOCK))):
                left -= len(piece)
                if pending.endswith("\r") and not piece.startswith("\n"):
                    yield pending  # a CR line end (a CR then LF may come in two pieces)
                    pending = ""
                pending += piece.replace("\x00", " ")
                if pending.endswith("\n"):
                    yield pending
                    pending = ""
        if pending.endswith("\r"):
            yield pending
            pending = ""
        yield pending + "x"

    number = 0
    with csv_field_limit():
        try:
            for _record in csv.reader(lines(), delimiter=delimiter):
                number += 1
        except csv.Error:  # a quoted cell over the limit before the offset: it is that row
            number += 1
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
        stamp: tuple[int, int] | None = None,
    ):
        self.path = path
        self.stamp = stamp
        self.encoding = encoding
        self.delimiter = delimiter
        self.header_record = header_record  # 0-based record index of the header in the file
        self.hidden = hidden  # records before row 1 (Excel's "sep=" line)
        self.width = width
        self.check_cell_size = check_cell_size
        self.layout: Layout
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
                        self._check_unchanged()
                        if chunk is not None:
                            yield chunk
                self._check_unchanged()
                return
            except pd.errors.ParserError as exc:
                found = _EXPECTED_FIELDS.search(str(exc))
                if not found or int(found.group(3)) > _MAX_COLUMNS:
                    raise self._translate(exc) from None
                self.width = min(max(int(found.group(3)), 2 * self.width), _MAX_COLUMNS)
            except (UnicodeDecodeError, ValueError) as exc:
                raise self._translate(exc) from None

    def _check_unchanged(self) -> None:
        """Refuse to hand on rows of a file whose size or mtime moved since it was first read:
        a file still being written ends in a partial line that would go out as a row."""
        if self.stamp is None:
            return
        now = _stamp(self.path)
        if now == self.stamp:
            return
        size, _ = self.stamp
        change = (
            "it is gone" if now is None else
            f"its size went from {size:,} to {now[0]:,} bytes" if now[0] != size else
            "it was modified"
        )  # fmt: skip
        raise FileFormatError(
            f"{self.path.name} changed while it was read ({change}); is it still being "
            "written? Run again once it is complete"
        )

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
                    raise no_header_error(column_letter(j), int(rows[filled.argmax()]))
        if self.check_cell_size:
            for j in kept:
                lengths = np.fromiter(map(len, values[j]), dtype=np.int64, count=len(rows))
                if lengths.max() > MAX_CELL_CHARS:
                    raise cell_too_big_error(int(rows[lengths.argmax()]), column_letter(j))
        keep = np.zeros(len(rows), dtype=bool)
        for j in kept:
            keep |= values[j] != ""
        if not keep.any():
            return None
        out = frame if kept == list(range(self.width)) else frame[kept]
        out = out.set_axis(names, axis=1).set_axis(row_index(rows), axis=0)
        return out if keep.all() else out[keep]

    def close(self) -> None:
        for reader in self._readers:
            with contextlib.suppress(Exception):
                reader.close()
        self._readers.clear()


def _stamp(path: Path) -> tuple[int, int] | None:
    """(size, mtime in ns) of ``path``; None when it cannot be looked at."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns
