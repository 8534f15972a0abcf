"""A bulk-events report fed back in as input: every rule about it lives here.

A report holds bulk-events' own columns (:data:`~bulk_events.report.REPORT_COLUMNS`) and then the
original input's cells, formula-escaped in CSV and XLSX (a leading ``'``), with `` (input)``
added to an input header that clashed with one of ours. :func:`as_input` turns a table read from
such a file back into the original input: its columns, its cells, the escaping undone. A ``.jsonl``
report is read by :func:`open_jsonl_report` from each line's ``input`` object, under the
original file's row numbers. Nothing downstream needs to know a report was read.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bulk_events.errors import FileFormatError
from bulk_events.report import INPUT_SUFFIX, REPORT_COLUMNS, SENT_AS_COLUMNS

from .table import CELL_ERRORS, Detected, Source, Table, row_index

_ESCAPED = re.compile(r"^'+[=+\-@\t\r]")


def unescape_formula(value: str) -> str:
    """Undo :func:`~bulk_events.report.escape_formula` (one apostrophe before a formula start).

    >>> unescape_formula("'=1+1"), unescape_formula("''=x"), unescape_formula("'plain")
    ('=1+1', "'=x", "'plain")
    """
    if value and _ESCAPED.match(value):
        return value[1:]
    return value


def is_report(columns: Sequence[str]) -> bool:
    """Whether a file's header is that of a bulk-events report."""
    return tuple(c.strip() for c in columns[: len(REPORT_COLUMNS)]) == REPORT_COLUMNS


def own_columns_of_report(columns: Sequence[str]) -> int:
    """How many of a report's leading columns are bulk-events' own (with or without "sent as")."""
    own = len(REPORT_COLUMNS)
    after = tuple(c.strip() for c in columns[own : own + len(SENT_AS_COLUMNS)])
    return own + len(SENT_AS_COLUMNS) if after == SENT_AS_COLUMNS else own


def input_columns_of_report(columns: Sequence[str]) -> list[str]:
    """The original input columns inside a report's header, with their own names back."""
    names = [unescape_formula(n) for n in columns[own_columns_of_report(columns) :]]
    return [n[: -len(INPUT_SUFFIX)] if n.endswith(INPUT_SUFFIX) else n for n in names]


def as_input(table: Table) -> Table:
    """``table`` itself, or, when it is a CSV or XLSX report, the original input inside it."""
    if not is_report(table.columns):
        return table
    columns = input_columns_of_report(table.columns)
    source = _ReportCellsSource(table._source, table.columns, columns)
    detected = dataclasses.replace(table.detected, report=True)
    inner = Table(table.path, detected, columns, source)
    inner.row_estimate = table.row_estimate
    inner.hidden_rows = table.hidden_rows
    renamed = source.renamed
    inner.hidden_columns = [renamed[c] for c in table.hidden_columns if c in renamed]
    return inner


class _ReportCellsSource:
    """The input cells of a CSV/XLSX report: its own columns dropped, formula escaping undone."""

    def __init__(self, inner: Source, report_columns: list[str], columns: list[str]):
        self.inner = inner
        own = own_columns_of_report(report_columns)
        self.own = report_columns[:own]
        self.renamed = dict(zip(report_columns[own:], columns, strict=True))

    def frames(self, size: int) -> Iterator[pd.DataFrame]:
        for chunk in self.inner.frames(size):
            attrs = chunk.attrs
            frame = chunk.drop(columns=self.own).rename(columns=self.renamed)
            for column in frame.columns:
                values = frame[column]
                escaped = values.str.match(_ESCAPED)
                if escaped.any():
                    frame[column] = values.mask(escaped, values.str.slice(1))
            frame.attrs = _renamed_attrs(attrs, self.renamed)
            yield frame

    def close(self) -> None:
        self.inner.close()


def _renamed_attrs(attrs: dict[str, Any], renamed: dict[str, str]) -> dict[str, Any]:
    """A chunk's attrs with column names mapped to the input's (cell errors name columns)."""
    out = dict(attrs)
    if cell_errors := attrs.get(CELL_ERRORS):
        out[CELL_ERRORS] = {
            row: [(renamed[c], text) for c, text in cells if c in renamed]
            for row, cells in cell_errors.items()
        }
    return out


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
                yield pd.DataFrame(batch, columns=columns, index=row_index(numbers), dtype=object)
                numbers, batch = [], []
        if batch:
            yield pd.DataFrame(batch, columns=columns, index=row_index(numbers), dtype=object)

    def close(self) -> None:
        pass


def open_jsonl_report(path: Path) -> Table:
    """A ``.jsonl`` bulk-events report as a table of its input cells (anything else is refused)."""
    source = _JsonlReportSource(path, [])
    first = next(source._records(), None)
    if first is None:
        raise FileFormatError(f"{path.name} is empty")
    source.columns = [str(c) for c in first[1]]
    detected = Detected(format="jsonl", engine="json", report=True)
    return Table(path, detected, list(source.columns), source)
