"""Outcomes -> a per-row report (CSV, XLSX or JSONL), streamed, formula-safe and atomic.

The report has one line per non-blank input row, in input order: bulk-events' own columns first
(:data:`REPORT_COLUMNS`), then the row's original cells. It is written to a hidden temporary file
beside its final path and renamed into place at the end, so a reader never sees half a report.

Spreadsheet programs run a cell that starts with ``=``, ``+``, ``-``, ``@``, tab or CR as a formula
(OWASP "CSV injection"); in a CSV report such values, including text echoed from the service, are
written with a leading apostrophe, unless they are plain numbers such as ``-5`` or
``+380501234567``. An XLSX report holds typed cells instead: text is a string cell, which no
spreadsheet runs, so it needs no apostrophe (only a value that already starts with apostrophes
before a trigger gets one more, so that reading a report back in restores every value exactly).

A CSV report follows the input's convention (``delimiter``): a ``;``-separated input gets a
``;``-separated report, so that it opens as columns in the same user's Excel. Reports hold personal
data: they are created readable by their owner only (0600).

With ``sent_as`` the report also shows, beside the original cells, what actually went out
(:data:`SENT_AS_COLUMNS`: the normalised email and phone, and the event). :class:`ErrorsWriter`
writes only the rows to fix (invalid and failed), in a file that can be fed back in as input.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, overload

import numpy as np
import orjson
import pandas as pd

from .errors import UsageError
from .leftovers import claim, remove_orphans
from .outcome import Outcome, Status
from .private import create_private
from .report_xlsx import XlsxSheet

REPORT_COLUMNS = ("row", "status", "error", "http_status", "attempts", "sent_at", "response")
FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".jsonl": "jsonl"}
INPUT_SUFFIX = " (input)"
# What went out for a row, beside its original cells; a report's own columns like REPORT_COLUMNS
# (when present they follow REPORT_COLUMNS, before the input's cells).
SENT_AS_COLUMNS = ("sent_email", "sent_phone", "sent_event")
ERRORS_FORMATS = {".csv": "csv", ".xlsx": "xlsx"}
# The rows a person must fix before they can go out; what an errors file holds.
ERROR_STATUSES = frozenset({Status.INVALID, Status.FAILED})
# Nothing went out for these rows, so their "sent as" cells stay empty.
_NOTHING_SENT = frozenset({Status.INVALID, Status.PENDING})

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


# In a column's cells joined after a NUL each: some cell may start like a formula. A literal
# NUL first lets the regex engine skip ahead to each NUL (an ``\A|`` alternative would make it
# try every position: ten times slower).
_MAYBE_FORMULA = re.compile(r"\x00['=+\-@\t\r]")
# escape_formula's two tests in one expression, at the NUL before each cell of a column: a
# formula start that is no plain number (``$`` matched before a final newline too).
_ESCAPE_IN_COLUMN = re.compile(rf"\x00(?!{_PLAIN_NUMBER.pattern[1:-1]}\n?(?:\x00|\Z))'*[=+\-@\t\r]")


def escape_texts(values: list[str]) -> list[str]:
    """:func:`escape_formula` over a column of text, by regular expressions over the whole
    column joined by NUL: one scan for a cell that may start like a formula, then, only if
    there is one, a scan for the cells that need escaping (a formula start that is no plain
    number). A column whose cells hold a NUL themselves is escaped cell by cell."""
    if not values:
        return values
    joined = "\0" + "\0".join(values)
    if not _MAYBE_FORMULA.search(joined):
        return values
    if joined.count("\0") != len(values):  # a NUL inside a cell: the cells cannot be told apart
        return [escape_formula(v) for v in values]
    # A hit's NUL (before its cell, in ``joined``) is at that cell's first character's
    # position in the column joined without the leading NUL.
    hits = _cells_at(values, _ESCAPE_IN_COLUMN.finditer(joined))
    if not hits:
        return values
    out = list(values)
    for k in hits:
        out[k] = "'" + out[k]
    return out


def escape_column(values: pd.Series) -> list[str]:
    """:func:`escape_formula` over a whole column (see :func:`escape_texts`)."""
    return escape_texts(_as_text(values))


def report_format(path: str | os.PathLike[str]) -> str:
    """The report format chosen by the file's extension (CSV when it has none we know)."""
    suffix = Path(path).suffix.lower()
    if suffix and suffix not in FORMATS:
        raise UsageError(f"--report {Path(path).name}: use a .csv, .xlsx or .jsonl file name")
    return FORMATS.get(suffix, "csv")


SentAs = tuple[str | None, str | None, str | None] | Mapping[str, str | None]
"""What went out for one row: ``(email, phone, event)``, or a mapping with those keys."""


class SentColumns(Sequence[tuple[str | None, str | None, str | None] | None]):
    """What goes out for each row of a chunk, held as columns: row ``i`` is ``(emails[i],
    phones[i], event)`` where ``has[i]`` (the row has a body), else None. The checker makes
    one per chunk; the report takes its columns as they are, without a tuple per row."""

    __slots__ = ("emails", "event", "has", "phones")

    def __init__(
        self, emails: np.ndarray, phones: np.ndarray, event: str | None, has: np.ndarray
    ) -> None:
        if not len(emails) == len(phones) == len(has):
            raise ValueError("emails, phones and has must be as long as each other")
        self.emails, self.phones, self.event, self.has = emails, phones, event, has

    def __len__(self) -> int:
        return len(self.has)

    @overload
    def __getitem__(self, i: int) -> tuple[str | None, str | None, str | None] | None: ...
    @overload
    def __getitem__(self, i: slice) -> SentColumns: ...
    def __getitem__(
        self, i: int | slice
    ) -> tuple[str | None, str | None, str | None] | SentColumns | None:
        if isinstance(i, slice):
            return SentColumns(self.emails[i], self.phones[i], self.event, self.has[i])
        return (self.emails[i], self.phones[i], self.event) if self.has[i] else None

    def shown(self, nothing: np.ndarray) -> list[list[str]]:
        """The three columns a report shows: empty where the row has no body, or where
        ``nothing`` (nothing went out for it)."""
        show = self.has & ~nothing
        hide = ~show

        def cells(column: np.ndarray) -> list[str]:
            out = column.copy()
            out[hide] = None
            return [v if type(v) is str else "" if v is None else str(v) for v in out.tolist()]

        event = "" if self.event is None else str(self.event)
        return [cells(self.emails), cells(self.phones), [event if s else "" for s in show.tolist()]]


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


def _sent_cells(status: Status, sent: SentAs | None) -> list[str]:
    if sent is None or status in _NOTHING_SENT:
        return ["", "", ""]
    if isinstance(sent, tuple):  # the usual case, tested first: an ABC check costs more
        values = list(sent)
    elif isinstance(sent, Mapping):
        values = [sent.get("email"), sent.get("phone"), sent.get("event")]
    else:
        values = list(sent)
    return ["" if v is None else str(v) for v in values]


def _sent_columns(outcomes: Sequence[Outcome], given: Sequence[SentAs | None]) -> list[list[str]]:
    """:func:`_sent_cells` of every row, as three columns (email, phone, event)."""
    nothing = _NOTHING_SENT
    if isinstance(given, SentColumns):
        shown = np.fromiter(
            (o.status in nothing for o in outcomes), dtype=bool, count=len(outcomes)
        )
        return given.shown(shown)
    picked = [
        _NONE_SENT if sent is None or o.status in nothing else sent
        for o, sent in zip(outcomes, given, strict=True)
    ]
    if all(type(sent) is tuple and len(sent) == 3 for sent in picked):  # the usual case
        return [
            [v if type(v) is str else "" if v is None else str(v) for v in column]
            for column in zip(*picked, strict=True)
        ] or [[], [], []]
    rows = [_sent_cells(o.status, sent) for o, sent in zip(outcomes, picked, strict=True)]
    return [list(column) for column in zip(*rows, strict=True)] or [[], [], []]


_NONE_SENT = (None, None, None)


# ---------------------------------------------------------------- the writers


def _format_of(path: Path, formats: Mapping[str, str], option: str) -> str:
    suffix = path.suffix.lower()
    if suffix and suffix not in formats:
        names = [f".{f}" for f in formats.values()]
        listed = ", ".join(names[:-1]) + " or " + names[-1]
        raise UsageError(f"{option} {path.name}: use a {listed} file name")
    return formats.get(suffix, "csv")


def _check_delimiter(delimiter: str, option: str) -> str:
    if len(delimiter) != 1 or delimiter in "\"'\r\n" or delimiter.isalnum():
        raise UsageError(f'{option}: unusable delimiter "{delimiter}"; use one of , ; | or tab')
    return delimiter


class ReportWriter:
    """Write a report row by row, in input order; :meth:`commit` makes it appear at ``path``.

    ``delimiter`` and ``bom`` shape a CSV report (give the input's delimiter, so that the
    report opens like the input did); ``sent_as=True`` adds :data:`SENT_AS_COLUMNS`, filled
    from the ``sent_as`` values given to :meth:`write`.

    >>> with ReportWriter("out.csv", ["Email", "Name"], delimiter=";") as report:  # doctest: +SKIP
    ...     report.write(chunk, outcomes, sent_as=[("a@b.co", None, "signup"), ...])
    ...     report.commit()
    """

    option = "--report"
    formats: Mapping[str, str] = FORMATS

    def __init__(
        self,
        path: str | os.PathLike[str],
        input_columns: Sequence[str],
        *,
        delimiter: str = ",",
        bom: bool = True,
        sent_as: bool = False,
    ) -> None:
        self.path = Path(path)
        if self.path.is_symlink():
            self.path = self.path.resolve()  # write where the link points, not over the link
        if self.path.exists() and not self.path.is_file():
            raise UsageError(f"{self.option} {path}: exists and is not a regular file")
        self.format = _format_of(self.path, self.formats, self.option)
        self.delimiter = _check_delimiter(delimiter, self.option)
        self.bom = bom
        self.sent_as = sent_as
        own = [*REPORT_COLUMNS, *(SENT_AS_COLUMNS if sent_as else ())]
        ours = {c.casefold() for c in own}
        self.input_columns = list(input_columns)
        shown = [
            c + INPUT_SUFFIX if c.strip().casefold() in ours else c for c in self.input_columns
        ]
        self.header = [*own, *shown]
        self.rows = 0
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create the report folder {directory}: {exc.strerror}"
            ) from None
        self._tmp = directory / f".{self.path.name}.{os.getpid()}.tmp"
        remove_orphans(directory, self.path.name)
        self._file: IO[Any] | None = None
        self._xlsx: XlsxSheet | None = None
        self._claim: Path | None = None
        try:
            self._open()
        except OSError as exc:
            self._drop_claim()
            raise UsageError(f"cannot write the report {self.path}: {exc.strerror}") from None

    def _open(self) -> None:
        self._tmp.unlink(missing_ok=True)  # ours (same pid): a leftover of a reused pid
        raw = create_private(self._tmp, exclusive=True)
        self._claim = claim(self._tmp)
        if self.format == "csv":
            # utf-8-sig: Excel opens a UTF-8 CSV with Cyrillic correctly only with a BOM.
            encoding = "utf-8-sig" if self.bom else "utf-8"
            self._file = io.TextIOWrapper(raw, encoding=encoding, newline="")
            self._csv = csv.writer(self._file, delimiter=self.delimiter)
            # What makes csv.writer quote a field (QUOTE_MINIMAL): the delimiter, a quote, CR, LF.
            self._needs_quotes = re.compile(f'[{re.escape(self.delimiter)}"\r\n]')
            self._quote_chars = (self.delimiter, '"', "\r", "\n")
            self._csv.writerow([escape_formula(h) for h in self.header])
        elif self.format == "jsonl":
            self._file = raw
        else:
            self._file = raw  # the workbook is zipped into it at the end
            status = REPORT_COLUMNS.index("status")
            self._xlsx = XlsxSheet(self.header, status)

    def write(
        self,
        chunk: pd.DataFrame,
        outcomes: Sequence[Outcome],
        sent_as: Sequence[SentAs | None] | None = None,
    ) -> None:
        """Append the rows of one chunk with their outcomes (same order, same length).

        ``sent_as`` (with ``sent_as=True`` at construction) gives, parallel to ``outcomes``,
        what went out for each row; None where nothing did. Invalid and pending rows show
        nothing whatever is given.
        """
        if sent_as is not None and len(sent_as) != len(outcomes):
            raise ValueError("sent_as must have one entry per outcome")
        sent_rows: list[list[str]] | None = None
        sent_columns: list[list[str]] | None = None
        if self.sent_as:
            given = sent_as if sent_as is not None else [None] * len(outcomes)
            sent_columns = _sent_columns(outcomes, given)
            if self.format != "csv":
                sent_rows = [list(r) for r in zip(*sent_columns, strict=True)]
        columns = [chunk[c].tolist() for c in self.input_columns] if self.input_columns else []
        cells_by_row = zip(*columns, strict=True) if columns else ([] for _ in outcomes)
        if self.format == "jsonl":
            assert self._file is not None
            lines = []
            for i, (o, cells) in enumerate(zip(outcomes, cells_by_row, strict=True)):
                record = dict(zip(REPORT_COLUMNS, _outcome_cells(o), strict=True))
                record["http_status"] = o.http_status
                record["sent_at"] = o.sent_at
                if sent_rows is not None:
                    record["sent"] = dict(
                        zip(("email", "phone", "event"), sent_rows[i], strict=True)
                    )
                record["input"] = dict(zip(self.input_columns, cells, strict=True))
                lines.append(orjson.dumps(record))
            if lines:
                self._file.write(b"\n".join(lines) + b"\n")
        elif self.format == "csv":
            self._write_csv(chunk, outcomes, sent_columns)
        else:
            self._write_xlsx(chunk, outcomes, sent_rows)
        self.rows += len(outcomes)

    def _write_csv(
        self, chunk: pd.DataFrame, outcomes: Sequence[Outcome], sent: list[list[str]] | None
    ) -> None:
        """The chunk's lines in one write, built column by column: the same bytes as
        ``csv.writer`` (minimal quoting, CRLF) writing each row, at a fraction of its cost."""
        if not outcomes:
            return
        assert self._file is not None
        text = _STATUS_TEXT
        columns = [
            [str(o.row) for o in outcomes],
            [text[o.status] for o in outcomes],
            escape_texts([str(o.error) for o in outcomes]),
            ["" if o.http_status is None else str(o.http_status) for o in outcomes],
            [str(o.attempts) for o in outcomes],
            [o.sent_at or "" for o in outcomes],
            escape_texts([str(o.response) for o in outcomes]),
        ]
        if sent is not None:
            columns.extend(escape_texts(c) for c in sent)
        columns.extend(escape_column(chunk[c]) for c in self.input_columns)
        special = self._needs_quotes
        quote_chars = self._quote_chars
        for column in columns:
            joined = "\0".join(column)
            # One substring test per character (a memchr each) beats a character-class scan.
            if not any(ch in joined for ch in quote_chars):
                continue
            if self.delimiter == "\0":  # the separators themselves would match
                column[:] = [_quoted(v) if special.search(v) else v for v in column]
            else:
                _quote_cells(column, joined, special)
        line = self.delimiter.join
        self._file.write("\r\n".join(map(line, zip(*columns, strict=True))) + "\r\n")

    def _write_xlsx(
        self, chunk: pd.DataFrame, outcomes: Sequence[Outcome], sent_rows: list[list[str]] | None
    ) -> None:
        sheet = self._xlsx
        assert sheet is not None
        text = sheet.text_column
        errors = text([o.error for o in outcomes])
        responses = text([o.response for o in outcomes])
        sent = [text(list(c)) for c in zip(*sent_rows, strict=True)] if sent_rows else []
        inputs = [text(_as_text(chunk[c])) for c in self.input_columns]
        columns = [*sent, *inputs]
        cells_by_row = zip(*columns, strict=True) if columns else ([] for _ in outcomes)
        out = []
        for o, error, response, cells in zip(
            outcomes, errors, responses, cells_by_row, strict=True
        ):
            out.append(
                [
                    o.row,
                    str(o.status),
                    error,
                    o.http_status,
                    o.attempts,
                    o.sent_at,
                    response,
                    *cells,
                ]
            )
        sheet.append(out)

    def commit(self) -> Path:
        """Finish the file and move it into place; returns the final path."""
        self._close()
        os.replace(self._tmp, self.path)  # the file keeps its 0600
        self._drop_claim()
        return self.path

    def abort(self) -> None:
        """Throw the unfinished file away."""
        try:
            self._close(save=False)
        finally:
            self._tmp.unlink(missing_ok=True)
            self._drop_claim()

    def _close(self, save: bool = True) -> None:
        xlsx, self._xlsx = self._xlsx, None
        file, self._file = self._file, None
        if file is None:
            return
        try:
            if xlsx is not None and save:
                xlsx.save(file)
        finally:
            file.close()

    def _drop_claim(self) -> None:
        claim, self._claim = self._claim, None
        if claim is not None:
            claim.unlink(missing_ok=True)

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tmp.exists():
            self.abort()


_STATUS_TEXT = {status: status.value for status in Status}


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _quote_cells(column: list[str], joined: str, special: re.Pattern[str]) -> None:
    """Quote, in place, the cells of ``column`` (joined by NUL in ``joined``) that hold a
    character of ``special``: the cells are found from where the matches are in ``joined``."""
    for k in _cells_at(column, special.finditer(joined)):
        column[k] = _quoted(column[k])


def _cells_at(column: list[str], matches: Iterator[re.Match[str]]) -> list[int]:
    """The cells of ``column`` in which the matches start, where the positions are in
    ``"\0".join(column)``: each cell once, in order."""
    hits = np.fromiter((m.start() for m in matches), dtype=np.int64)
    ends = np.cumsum(np.fromiter((len(v) + 1 for v in column), dtype=np.int64, count=len(column)))
    cells: list[int] = np.unique(np.searchsorted(ends, hits, side="right")).tolist()
    return cells


def _as_text(values: pd.Series) -> list[str]:
    if values.hasnans:
        values = values.astype(object).fillna("")
    if not pd.api.types.is_string_dtype(values) or values.dtype == object:
        values = values.astype(str)
    return values.tolist()


class ErrorsWriter(ReportWriter):
    """Only the rows to fix (:data:`ERROR_STATUSES`: invalid and failed), laid out as a report:
    status and error first, then the input's own columns, so the file can be corrected in a
    spreadsheet and fed back in as input (the report's own columns are then ignored, and the
    journal keeps anything from going out twice). CSV or XLSX, by the file's extension.

    >>> with ErrorsWriter("fix-me.xlsx", ["Email", "Name"]) as errors:  # doctest: +SKIP
    ...     errors.write(chunk, outcomes)  # the other rows are left out
    ...     errors.commit()
    """

    option = "--errors"
    formats = ERRORS_FORMATS

    def __init__(
        self,
        path: str | os.PathLike[str],
        input_columns: Sequence[str],
        *,
        delimiter: str = ",",
        bom: bool = True,
    ) -> None:
        super().__init__(path, input_columns, delimiter=delimiter, bom=bom)

    def write(
        self,
        chunk: pd.DataFrame,
        outcomes: Sequence[Outcome],
        sent_as: Sequence[SentAs | None] | None = None,
    ) -> None:
        """Append the invalid and failed rows of one chunk (``sent_as`` is ignored)."""
        keep = [i for i, o in enumerate(outcomes) if o.status in ERROR_STATUSES]
        if len(keep) != len(outcomes):
            chunk = chunk.iloc[keep]
            outcomes = [outcomes[i] for i in keep]
        super().write(chunk, outcomes)
