"""The pandera schema that checks every row of a chunk at once: :class:`RowValidator`.

A file's headers are matched to roles once (:func:`~bulk_events.layout.plan_columns`); each chunk
is then normalised (:mod:`.cells`) and validated column-wise here. Every check is a vectorised
string or numeric operation on a whole column: element-wise Python checks make pandera a hundred
times slower on large files. Validation is lazy: every problem of every row is collected, not just
the first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .cells import (
    EMAIL_PATTERN,
    INTEGER_PATTERN,
    PHONE_PATTERN,
    PLAIN_EMAIL_PATTERN,
    POSITIVE_INTEGER_PATTERN,
    all_text,
    drop_float_fraction,
    drop_text_marker,
    empty,
    fullmatches,
    invisible_characters,
    normalise_email,
    normalise_phone,
    visible,
)
from .layout import ColumnPlan, Layout
from .phones import country_code, looks_national, to_international
from .values import (
    NUMBER_PATTERN,
    Remembered,
    by_distinct_value,
    parse_booleans,
    parse_dates,
    parse_numbers,
)

if TYPE_CHECKING:
    import pandera.pandas as pa

# --- the pandera schema -------------------------------------------------------------------------


def _blank_or(pattern: str, plain: str | None = None) -> Callable[[pd.Series], pd.Series]:
    """Cells empty or matching ``pattern``; ``plain``, a cheaper pattern whose every match is a
    match of ``pattern`` too, is tried first."""
    match = re.compile(pattern).fullmatch
    if plain is not None:
        quick = re.compile(plain).fullmatch

        def check(s: pd.Series) -> pd.Series:
            return pd.Series(
                [
                    v == ""
                    or (isinstance(v, str) and (quick(v) is not None or match(v) is not None))
                    for v in s.tolist()
                ],
                index=s.index,
            )

        return check

    def check_all(s: pd.Series) -> pd.Series:
        return pd.Series(
            [v == "" or (isinstance(v, str) and match(v) is not None) for v in s.tolist()],
            index=s.index,
        )

    return check_all


def _positive_integer(s: pd.Series) -> pd.Series:
    return _blank_or(POSITIVE_INTEGER_PATTERN)(s) & ~fullmatches(s, r"\+?0+(?:\.0*)?")


def _each_distinct(check: Callable[[pd.Series], pd.Series]) -> Callable[[pd.Series], pd.Series]:
    """An element-wise check, run once per distinct value (automation ids, amounts, flags)."""
    return lambda s: by_distinct_value(s, check)


def _finite_number(s: pd.Series) -> pd.Series:
    """A number JSON can carry: 1e400 is infinite and would go out as null.

    Only a number with an exponent, or one longer than any finite float's digits (300 and more
    characters), can be that large: only those are read as floats to see, with those holding
    digits other than ASCII ones (which pandas does not read as a number).
    """
    shaped = _blank_or(NUMBER_PATTERN)(s).astype(bool)
    unsure = [
        type(v) is str and ("e" in v or "E" in v or len(v) > 300 or not v.isascii())
        for v in s.tolist()
    ]
    if not any(unsure):
        return shaped
    read = shaped & pd.Series(unsure, index=s.index)
    finite = shaped.copy()
    finite[read] = np.isfinite(pd.to_numeric(s[read], errors="coerce").astype(float).to_numpy())
    return finite


@dataclass
class ValidatedChunk:
    """A chunk after validation: the cleaned cells, every row's problems and warnings."""

    frame: pd.DataFrame  # cleaned cells, same index (row numbers) and column names as the input
    errors: dict[int, list[str]] = field(default_factory=dict)
    dates: dict[str, pd.Series] = field(default_factory=dict)  # parsed date columns
    booleans: dict[str, pd.Series] = field(default_factory=dict)
    blank: pd.Series | None = None  # rows whose every cell is empty or spaces
    # Rows that are sent, but not quite as the file has them (a bad phone left out): row -> notes.
    warnings: dict[int, list[str]] = field(default_factory=dict)
    # Phones of valid rows that seem to lack a country code and go out as written (no
    # default country or country column covered them): worth a warning before sending.
    national_phones: int = 0

    def without(self, rows: pd.Index) -> ValidatedChunk:
        """The same chunk minus ``rows`` (by row number)."""
        drop = set(rows.tolist())
        return ValidatedChunk(
            frame=self.frame.drop(index=rows),
            errors={r: e for r, e in self.errors.items() if r not in drop},
            dates={k: v.drop(index=rows) for k, v in self.dates.items()},
            booleans={k: v.drop(index=rows) for k, v in self.booleans.items()},
            warnings={r: w for r, w in self.warnings.items() if r not in drop},
            national_phones=self.national_phones,
        )


def _quote(value: object, limit: int = 60) -> str:
    text = visible(str(value))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f'"{text}"'


_PLAIN_PHONE = "is not a phone number (7 to 15 digits, an optional leading +)"


class RowValidator:
    """Normalise and validate chunks of a file laid out by a :class:`Layout`.

    ``default_country`` reads national phone numbers of rows whose country is not known otherwise;
    the layout's country column (see :func:`~bulk_events.layout.plan_columns`) gives each row its own.
    ``email_alone``: a row whose email is good but whose phone is not goes out by its email alone
    (the phone left out of the body, the reason in :attr:`ValidatedChunk.warnings`) instead of
    being invalid.
    """

    def __init__(
        self,
        layout: Layout,
        *,
        date_format: str | None = None,
        default_automation_id: int | None = None,
        default_country: str | None = None,
        decimal_comma: bool = False,
        email_alone: bool = False,
    ) -> None:
        self.layout = layout
        self.email_alone = email_alone
        # In a ";"-separated CSV (what Excel writes where the comma is the decimal separator),
        # 12,50 in a number column means 12.5 and 1.234,50 means 1234.5.
        self.decimal_comma = decimal_comma
        self.date_format = date_format
        self.default_automation_id = default_automation_id
        self.default_country = default_country
        self._parsed: dict[str, tuple[pd.Series, pd.Series]] = {}
        # Dates and numbers repeat down a file: each distinct one is read once (see Remembered).
        self._read_dates = Remembered(lambda d: parse_dates(d, self.date_format))
        self._read_numbers = Remembered(lambda n: parse_numbers(n, self.decimal_comma))
        # Per chunk: column source -> one reason per row ("" where the cell is fine).
        self._reasons: dict[str, pd.Series] = {}
        self._converted: pd.Series | None = None  # phones read with a known country
        self._blank: pd.Series | None = None

    def ready(self) -> None:
        """Build the schema now rather than at the first chunk (a process that checks its
        rows itself imports pandera before it reads them)."""
        self.schema  # noqa: B018

    @functools.cached_property
    def schema(self) -> pa.DataFrameSchema:
        """The pandera schema, built when first used: a process that only hands its chunks to
        checking processes (see :class:`~bulk_events.checker.CheckPool`) never imports pandera."""
        return self._build_schema()

    def __getstate__(self) -> dict[str, object]:
        """Pickled as its settings (the schema's checks are closures): rebuilt on unpickling."""
        return {
            "layout": self.layout,
            "date_format": self.date_format,
            "default_automation_id": self.default_automation_id,
            "default_country": self.default_country,
            "decimal_comma": self.decimal_comma,
            "email_alone": self.email_alone,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def _check(
        self, column: ColumnPlan, fn: Callable[[pd.Series], pd.Series], message: str
    ) -> pa.Check:
        # The error text carries the column's source name, so a failure maps back to it.
        # ignore_na=False: cleaned columns hold no NaN (and nullable=False refuses one), so
        # pandera's own look for missing cells before and after every check finds nothing.
        import pandera.pandas as pa

        return pa.Check(fn, error=f"{column.source}\x1f{message}", ignore_na=False)

    def _fine(self, source: str) -> Callable[[pd.Series], pd.Series]:
        """A check that passes where clean() found nothing wrong with the cell."""

        def check(s: pd.Series) -> pd.Series:
            reasons = self._reasons.get(source)
            if reasons is None or not reasons.index.equals(s.index):
                return pd.Series(True, index=s.index)
            return empty(reasons)

        return check

    def _unless_reason(
        self, source: str, fn: Callable[[pd.Series], pd.Series]
    ) -> Callable[[pd.Series], pd.Series]:
        """``fn``, but passing cells that already have a more precise reason (said once)."""
        fine = self._fine(source)
        return lambda s: fn(s) | ~fine(s)

    def _build_schema(self) -> pa.DataFrameSchema:
        import pandera.pandas as pa

        columns: dict[str, pa.Column] = {}
        for c in self.layout.columns:
            checks: list[pa.Check] = []
            if c.role == "email":
                checks.append(self._check(c, self._fine(c.source), ""))
                checks.append(
                    self._check(
                        c,
                        self._unless_reason(c.source, _blank_or(EMAIL_PATTERN, PLAIN_EMAIL_PATTERN)),
                        "is not a valid email address",
                    )
                )
            elif c.role == "phone":
                checks.append(self._check(c, self._fine(c.source), ""))
            elif c.role == "automation_id":
                checks.append(
                    self._check(
                        c,
                        _each_distinct(_positive_integer),
                        "is not a positive whole number",
                    )
                )
            elif c.type == "integer":
                checks.append(self._check(c, self._fine(c.source), ""))
                checks.append(
                    self._check(
                        c,
                        self._unless_reason(c.source, _each_distinct(_blank_or(INTEGER_PATTERN))),
                        "is not a whole number",
                    )
                )
            elif c.type == "number":
                checks.append(self._check(c, self._fine(c.source), ""))
                checks.append(
                    self._check(
                        c,
                        self._unless_reason(c.source, _each_distinct(_finite_number)),
                        "is too large for a number",
                    )
                )
            elif c.type == "boolean":
                checks.append(
                    self._check(
                        c,
                        _each_distinct(lambda s: empty(s) | parse_booleans(s).notna()),
                        "is not true/false (or yes/no, 1/0)",
                    )
                )
            elif c.type == "date":
                checks.append(
                    self._check(
                        c,
                        lambda s: empty(s) | ~self._dates(s)[1],
                        "is ambiguous (day or month first?); pass --date-format, e.g. --date-format %d/%m/%Y",
                    )
                )
                checks.append(
                    self._check(
                        c,
                        lambda s: empty(s) | self._dates(s)[0].notna() | self._dates(s)[1],
                        "is not a date (use 2021-05-28, 28.05.2021 or 27 Nov 2021)",
                    )
                )
            columns[c.source] = pa.Column(checks=checks, nullable=False, required=True)
        contact = [c for c in self.layout.columns if c.role in ("email", "phone")]
        sources = [c.source for c in contact]

        def has_contact(df: pd.DataFrame) -> pd.Series:
            present = pd.Series(False, index=df.index)
            for source in sources:
                present |= ~empty(df[source])
            return present

        frame_checks = [pa.Check(has_contact, error="\x1fno email or phone", ignore_na=False)]
        return pa.DataFrameSchema(columns, checks=frame_checks, strict=False, coerce=False)

    def _dates(self, s: pd.Series) -> tuple[pd.Series, pd.Series]:
        """A date column's parse, computed once per chunk for all checks and the body."""
        parsed = self._parsed.get(str(s.name))
        if parsed is not None and parsed[0].index.equals(s.index):
            return parsed
        return self._read_dates(s)

    def international_phones(self, s: pd.Series) -> pd.Series:
        """Phones turned into E.164 (``+380501234567``) with the default country; invalid ones NA."""
        return to_international(s, pd.Series(self.default_country or "", index=s.index))

    def _countries(self, chunk: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        """Each row's country code for its phone (``""`` if none), and which rows' country
        cells name no country (those are not read with the default: that would be a guess)."""
        index = chunk.index
        default = self.default_country or ""
        source = self.layout.country
        if source is None or source not in chunk.columns:
            return pd.Series(default, index=index, dtype=object), pd.Series(False, index=index)
        cells = chunk[source].astype(object).fillna("").astype(str).str.strip()
        codes = {v: (country_code(v) if v else default) or "" for v in pd.unique(cells)}
        looked_up = cells.map(codes).astype(object)
        return looked_up, (cells != "") & (looked_up == "")

    def _phones(self, chunk: pd.DataFrame, s: pd.Series) -> pd.Series:
        """The phone column as sent; notes each cell's reason and which phones a country read."""
        reasons = invisible_characters(s)
        countries, unknown = self._countries(chunk)
        converted = (countries != "") & (s != "")
        out = normalise_phone(s)
        if converted.any():
            # phonenumbers reads the formatting itself; a float's ".0" would be a digit to it.
            international = to_international(
                drop_float_fraction(s[converted]), countries[converted]
            )
            out[converted] = international.fillna(out[converted])
            bad = international.isna()
            for row in bad[bad].index:
                code = countries.at[row]
                if self.layout.country is not None and chunk.at[row, self.layout.country] != "":
                    code = f'{code} (column "{self.layout.country.strip()}")'
                reasons.at[row] = reasons.at[row] or f"is not a valid phone number for {code}"
        plain = ~converted & (s != "")
        if plain.any():
            national = plain & unknown
            if national.any():
                national &= ~out.str.startswith("+")
            for row in national[national].index:
                country = str(chunk.at[row, self.layout.country]).strip()  # type: ignore[index]
                reasons.at[row] = reasons.at[row] or (
                    f'cannot be made international: the country "{country}" is not a country '
                    "name or ISO code"
                )
            shaped = fullmatches(out[plain], PHONE_PATTERN)
            for row in shaped[~shaped].index:
                reasons.at[row] = reasons.at[row] or _PLAIN_PHONE
        self._reasons[str(s.name)] = reasons
        self._converted = converted
        return out

    def clean(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """Trim every cell; lower-case emails; strip formatting from phones; read numbers."""
        # Columns are gathered first and framed once: adding them to a DataFrame one by one
        # costs time in the number of columns already there, quadratic for a very wide file.
        cleaned: dict[str, pd.Series] = {}
        self._reasons = {}
        self._converted = None
        for c in self.layout.columns:
            if c.source not in chunk.columns:  # the --automation-id stand-in column
                cleaned[c.source] = pd.Series("", index=chunk.index, dtype=object)
                continue
            s = chunk[c.source]
            if s.hasnans:  # the reader gives "" for an empty cell; other callers may not
                s = s.astype(object).fillna("")
            values = s.tolist()
            if not all_text(values):
                values = s.astype(str).tolist()
            s = pd.Series([v.strip() for v in values], index=chunk.index, dtype=object)
            s.name = c.source
            if c.role != "variable" or c.type != "string":
                # A spreadsheet's text marker ('+19846270127) is not part of the value. In string
                # variables it stays: they are the cell's text as written.
                s = drop_text_marker(s)
            if c.role == "email":
                self._reasons[c.source] = invisible_characters(s)
                s = normalise_email(s)
            elif c.role == "phone":
                s = self._phones(chunk, s)
            elif c.type in ("number", "integer"):
                s, reasons = self._read_numbers(s)
                self._reasons[c.source] = reasons
            cleaned[c.source] = s
        frame = pd.DataFrame(cleaned, index=chunk.index) if cleaned else pd.DataFrame(index=chunk.index)
        # Rows of nothing but spaces look blank in a spreadsheet program: noted here, before any
        # default fills a cell or an invalid phone is emptied, so the pipeline can leave them out.
        present = [c.source for c in self.layout.columns if c.source in chunk.columns]
        self._blank = empty(frame[present]).all(axis=1) if present else None
        if self.default_automation_id is not None:
            aid = self.layout.by_role("automation_id")
            if aid is not None:
                frame[aid.source] = frame[aid.source].mask(
                    empty(frame[aid.source]), str(self.default_automation_id)
                )
        return frame

    def validate(self, chunk: pd.DataFrame) -> ValidatedChunk:
        """Clean a chunk and collect every problem of every row (lazy validation).

        With ``email_alone``, a row whose email is good but whose phone is not goes out by its
        email alone: the phone is left out of its body and the row gets a warning naming the cell.
        """
        frame = self.clean(chunk)
        self._parsed = {}
        for c in self.layout.variables:
            if c.type == "date":
                self._parsed[c.source] = self._dates(frame[c.source])
        errors: dict[int, list[str]] = {}
        phone_problems: dict[int, list[str]] = {}
        email_bad: set[int] = set()
        email = self.layout.by_role("email")
        phone = self.layout.by_role("phone")
        schema = self.schema
        import pandera.pandas as pa

        try:
            schema.validate(frame, lazy=True, inplace=True)
        except pa.errors.SchemaErrors as exc:
            cases = exc.failure_cases
            for column, tag, value, index in zip(
                cases["column"].tolist(),
                cases["check"].tolist(),
                cases["failure_case"].tolist(),
                cases["index"].tolist(),
                strict=True,
            ):
                if index is None or index != index:
                    continue
                row = int(index)
                source, _, message = str(tag).partition("\x1f")
                if not source:  # the frame-wide check
                    text = message
                else:
                    reasons = self._reasons.get(source)
                    if reasons is not None and reasons.at[row]:
                        message = reasons.at[row]
                    plan = next((c for c in self.layout.columns if c.source == source), None)
                    label = plan.name if plan else str(column)
                    if source in chunk.columns:  # show the cell as the person typed it
                        value = str(chunk.at[row, source]).strip()
                    text = f"{label} {_quote(value)} {message}"
                    if phone is not None and source == phone.source:
                        phone_problems.setdefault(row, []).append(text)
                        continue
                    if email is not None and source == email.source:
                        email_bad.add(row)
                found = errors.setdefault(row, [])
                if text not in found:  # the frame-wide check reports once per column
                    found.append(text)
        # Cells the reader found showing a formula error (#N/A): no value, so the row is invalid.
        sent_columns = {c.source for c in self.layout.columns}
        for row, cells in chunk.attrs.get("cell_errors", {}).items():
            if shown := [text for column, text in cells if column in sent_columns]:
                errors.setdefault(int(row), []).extend(shown)
        warnings: dict[int, list[str]] = {}
        if phone is not None and phone_problems:
            for row, texts in phone_problems.items():
                by_email = (
                    self.email_alone
                    and email is not None
                    and row not in email_bad
                    and frame.at[row, email.source] != ""
                )
                if by_email:
                    frame.at[row, phone.source] = ""
                    warnings[row] = [
                        f"{t[0].upper()}{t[1:]}: sent by email alone, without the phone"
                        for t in texts
                    ]
                else:
                    errors.setdefault(row, []).extend(texts)
        national = 0
        if phone is not None:
            sent = frame[phone.source]
            candidates = looks_national(sent)
            if self._converted is not None:
                candidates &= ~self._converted
            if errors:
                candidates &= ~sent.index.isin(list(errors))
            national = int(candidates.sum())
        result = ValidatedChunk(
            frame=frame,
            errors=errors,
            blank=self._blank,
            warnings=warnings,
            national_phones=national,
        )
        for c in self.layout.variables:
            if c.type == "date":
                result.dates[c.source] = self._dates(frame[c.source])[0]
            elif c.type == "boolean":
                result.booleans[c.source] = by_distinct_value(frame[c.source], parse_booleans)
        self._parsed = {}
        self._reasons = {}
        return result
