"""Outcomes -> a per-row report (CSV, XLSX or JSONL), streamed, formula-safe and atomic.

The report has one line per non-blank input row, in input order: bulk-events' own columns first
(:data:`REPORT_COLUMNS`), then the row's original cells. It is written to a hidden temporary file
beside its final path and renamed into place at the end, so a reader never sees half a report.

Spreadsheet programs run a cell that starts with ``=``, ``+``, ``-``, ``@``, tab or CR as a formula
(OWASP "CSV injection"); such values, including text echoed from the service, are written with a
leading apostrophe, unless they are plain numbers such as ``-5`` or ``+380501234567``.
"""

from __future__ import annotations

import csv
import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson
import pandas as pd

from .errors import UsageError
from .outcome import Outcome

REPORT_COLUMNS = ("row", "status", "error", "http_status", "attempts", "sent_at", "response")
FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".jsonl": "jsonl"}
INPUT_SUFFIX = " (input)"

_TRIGGER = re.compile(r"^'*[=+\-@\t\r]")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def escape_formula(value: str) -> str:
    """Neutralise a value a spreadsheet would run as a formula.

    >>> escape_formula("=HYPERLINK(...)"), escape_formula("-5"), escape_formula("hello")
    ("'=HYPERLINK(...)", '-5', 'hello')

    Values that already start with apostrophes before a trigger get one more, so that
    :func:`bulk_events.reader.report_input.unescape_formula` restores every value exactly.
    """
    if value and _TRIGGER.match(value) and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value


_FIRST = frozenset("=+-@\t\r'")


def escape_column(values: pd.Series) -> list[str]:
    """:func:`escape_formula` over a whole column: a cheap first-character test per cell, the
    regular expressions only for the few cells that start like a formula."""
    if values.hasnans:
        values = values.astype(object).fillna("")
    if not pd.api.types.is_string_dtype(values) or values.dtype == object:
        values = values.astype(str)
    return [escape_formula(v) if v[:1] in _FIRST else v for v in values.tolist()]


def report_format(path: str | os.PathLike[str]) -> str:
    """The report format chosen by the file's extension (CSV when it has none we know)."""
    suffix = Path(path).suffix.lower()
    if suffix and suffix not in FORMATS:
        raise UsageError(f"--report {Path(path).name}: use a .csv, .xlsx or .jsonl file name")
    return FORMATS.get(suffix, "csv")


def _outcome_cells(o: Outcome) -> list[Any]:
    return [
        o.row,
        o.status,  # a StrEnum: written as its value
        o.error,
        "" if o.http_status is None else o.http_status,
        o.attempts,
        o.sent_at or "",
        o.response,
    ]


def _remove_orphans(directory: Path, name: str) -> None:
    """Delete half-written reports left by runs that were killed (they hold personal data):
    this report's, and the default-named ones (whose names carry a time, so differ per run)."""
    patterns = {f".{glob.escape(name)}.*.tmp", ".bulk-events-report-*.*.tmp"}
    for tmp in {p for pattern in patterns for p in directory.glob(pattern)}:
        pid = tmp.name[: -len(".tmp")].rsplit(".", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:  # alive, someone else's
            pass


class ReportWriter:
    """Write a report row by row, in input order; :meth:`commit` makes it appear at ``path``.

    >>> with ReportWriter("out.csv", ["Email", "Name"]) as report:  # doctest: +SKIP
    ...     report.write(chunk, outcomes)
    ...     report.commit()
    """

    def __init__(self, path: str | os.PathLike[str], input_columns: Sequence[str]) -> None:
        self.path = Path(path)
        if self.path.is_symlink():
            self.path = self.path.resolve()  # write where the link points, not over the link
        if self.path.exists() and not self.path.is_file():
            raise UsageError(f"--report {path}: exists and is not a regular file")
        self.format = report_format(self.path)
        ours = {c.casefold() for c in REPORT_COLUMNS}
        self.input_columns = list(input_columns)
        shown = [
            c + INPUT_SUFFIX if c.strip().casefold() in ours else c for c in self.input_columns
        ]
        self.header = [*REPORT_COLUMNS, *shown]
        self.rows = 0
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create the report folder {directory}: {exc.strerror}"
            ) from None
        self._tmp = directory / f".{self.path.name}.{os.getpid()}.tmp"
        _remove_orphans(directory, self.path.name)
        self._file: IO[Any] | None = None
        self._book: Any = None
        self._sheet: Any = None
        try:
            self._open()
        except OSError as exc:
            raise UsageError(f"cannot write the report {self.path}: {exc.strerror}") from None

    def _open(self) -> None:
        if self.format == "csv":
            # utf-8-sig: Excel opens a UTF-8 CSV with Cyrillic correctly only with a BOM.
            self._file = open(self._tmp, "w", encoding="utf-8-sig", newline="")  # noqa: SIM115 - streamed, closed in _close
            self._csv = csv.writer(self._file)
            self._csv.writerow([escape_formula(h) for h in self.header])
        elif self.format == "jsonl":
            self._file = open(self._tmp, "wb")  # noqa: SIM115 - streamed, closed in _close
        else:
            from openpyxl import Workbook

            self._book = Workbook(write_only=True)
            self._sheet = self._book.create_sheet("report")
            self._sheet.append([escape_formula(h) for h in self.header])

    def write(self, chunk: pd.DataFrame, outcomes: Sequence[Outcome]) -> None:
        """Append the rows of one chunk with their outcomes (same order, same length)."""
        columns = [chunk[c].tolist() for c in self.input_columns] if self.input_columns else []
        cells_by_row = zip(*columns, strict=True) if columns else ([] for _ in outcomes)
        if self.format == "jsonl":
            assert self._file is not None
            lines = []
            for o, cells in zip(outcomes, cells_by_row, strict=True):
                record = dict(zip(REPORT_COLUMNS, _outcome_cells(o), strict=True))
                record["http_status"] = o.http_status
                record["sent_at"] = o.sent_at
                record["input"] = dict(zip(self.input_columns, cells, strict=True))
                lines.append(orjson.dumps(record))
            if lines:
                self._file.write(b"\n".join(lines) + b"\n")
        else:
            # Escaping column by column (vectorised) rather than cell by cell: the report is
            # written for every row of a million-row file.
            escaped = [escape_column(chunk[c]) for c in self.input_columns]
            cells_by_row = zip(*escaped, strict=True) if escaped else ([] for _ in outcomes)
            out = []
            for o, cells in zip(outcomes, cells_by_row, strict=True):
                row = _outcome_cells(o)
                row[2] = escape_formula(str(row[2]))
                row[6] = escape_formula(str(row[6]))
                row.extend(cells)
                out.append(row)
            if self.format == "csv":
                self._csv.writerows(out)
            else:
                for row in out:
                    self._sheet.append(row)
        self.rows += len(outcomes)

    def commit(self) -> Path:
        """Finish the file and move it into place; returns the final path."""
        self._close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Throw the unfinished file away."""
        self._close()
        self._tmp.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._book is not None:
            self._book.save(self._tmp)
            self._book = None

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tmp.exists():
            self.abort()
