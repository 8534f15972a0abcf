"""Which column is what, and the pandera schema that checks every row of a chunk at once.

A file's headers are matched to roles once (:func:`plan_columns`); each chunk is then normalised and
validated column-wise (:class:`RowValidator`). Every check is a vectorised string or numeric operation
on a whole column: element-wise Python checks make pandera a hundred times slower on large files.
Validation is lazy: every problem of every row is collected, not just the first.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from .errors import ColumnError, UsageError
from .phones import country_code, looks_national, to_international
from .values import (
    NUMBER_PATTERN,
    by_distinct_value,
    parse_booleans,
    parse_dates,
    parse_numbers,
)

TYPES = ("string", "integer", "number", "date", "boolean")
ROLES = ("email", "phone", "automation_id")

# Header spellings recognised without --map, compared after casefolding and removing spaces,
# dashes, dots and underscores ("E-mail Address" -> "emailaddress").
ALIASES: dict[str, frozenset[str]] = {
    "email": frozenset(
        {
            "email", "emailaddress", "mail", "emails",
            "почта", "электроннаяпочта", "элпочта", "емейл", "имейл", "емэйл",
            "електроннапошта", "електронапошта", "пошта", "елпошта", "імейл",
        }
    ),
    "phone": frozenset(
        {
            "phone", "phonenumber", "telephone", "tel", "mobile", "mobilephone", "cell",
            "cellphone", "msisdn",
            "телефон", "тел", "мобильный", "мобільний", "номертелефона", "номертелефону",
            "мобильныйтелефон", "мобільнийтелефон", "моб",
        }
    ),
    "automation_id": frozenset({"automationid"}),
}  # fmt: skip

_FOLD = re.compile(r"[\s\-._]+")


def fold(name: str) -> str:
    """The form in which header names are compared: case and separators ignored."""
    return _FOLD.sub("", name.strip().casefold())


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """One input column: its header as written, the key it becomes in the body, and its type."""

    source: str
    name: str
    role: str  # "email", "phone", "automation_id" or "variable"
    type: str = "string"


@dataclass(frozen=True)
class Layout:
    """How a file's columns become an event body."""

    columns: tuple[ColumnPlan, ...]
    country: str | None = None  # source header of the column giving each row's phone country

    def by_role(self, role: str) -> ColumnPlan | None:
        return next((c for c in self.columns if c.role == role), None)

    @property
    def variables(self) -> tuple[ColumnPlan, ...]:
        return tuple(c for c in self.columns if c.role == "variable")


def parse_assignments(
    values: Mapping[str, str] | list[str] | tuple[str, ...], option: str
) -> dict[str, str]:
    """Parse repeated ``NAME=VALUE`` options (``--type``, ``--map``) into a dict."""
    if isinstance(values, Mapping):
        return {str(k): str(v) for k, v in values.items()}
    result: dict[str, str] = {}
    for item in values:
        name, sep, value = item.rpartition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f'{option} takes COLUMN=VALUE, got "{item}"')
        result[name.strip()] = value.strip()
    return result


# Every column becomes a variable of every event, and validating one costs a fixed amount per
# chunk: a file wider than this is refused before a row is read (see the README).
MAX_COLUMNS = 2_000


def plan_columns(
    headers: list[str],
    *,
    types: Mapping[str, str] | None = None,
    mapping: Mapping[str, str] | None = None,
    file_label: str = "the file",
    default_automation_id: bool = False,
    country_column: str | None = None,
) -> Layout:
    """Decide the role, body key and type of every column of a file.

    ``country_column`` names the column that gives each row's country (a code such as ``UA`` or
    a name such as ``United States``) for reading national phone numbers; it is still sent as a
    variable.

    >>> plan_columns(["E-mail", "Name"]).by_role("email").source
    'E-mail'
    """
    if len(headers) > MAX_COLUMNS:
        raise ColumnError(
            f"{file_label} has {len(headers):,} columns; bulk-events reads at most "
            f"{MAX_COLUMNS:,} (each column is a variable of the event): remove the columns "
            "that are not to be sent"
        )
    types = dict(types or {})
    mapping = dict(mapping or {})
    by_fold: dict[str, str] = {}
    for h in headers:
        by_fold.setdefault(h.strip().casefold(), h)

    def find(name: str, option: str) -> str:
        key = name.strip().casefold()
        if key in by_fold:
            return by_fold[key]
        shown = ", ".join(f'"{h.strip()}"' for h in headers)
        raise ColumnError(
            f'{option} names column "{name}", which {file_label} does not have; columns: {shown}'
        )

    targets: dict[str, str] = {}  # source header -> target name
    for source_name, target in mapping.items():
        targets[find(source_name, "--map")] = target.strip()

    roles: dict[str, list[str]] = {r: [] for r in ROLES}
    names: dict[str, str] = {}
    for h in headers:
        target = targets.get(h, h.strip())
        names[h] = target
        folded = fold(target)
        for role in ROLES:
            if h in targets and target.casefold() == role:
                roles[role].insert(0, h)  # an explicit --map wins over an alias
            elif h not in targets and folded in ALIASES[role]:
                roles[role].append(h)

    chosen: dict[str, str] = {}
    for role, candidates in roles.items():
        if not candidates:
            continue
        if len(candidates) > 1:
            explicit = [c for c in candidates if c in targets]
            exact = [c for c in candidates if names[c].casefold() == role]
            pick = explicit[:1] if len(explicit) == 1 else exact if len(exact) == 1 else []
            if not pick:
                a, b = candidates[:2]
                raise ColumnError(
                    f'columns "{a.strip()}" and "{b.strip()}" both look like the {role}; '
                    f'choose one with --map "{a.strip()}={role}"'
                )
            candidates = pick
        chosen[role] = candidates[0]

    if "email" not in chosen and "phone" not in chosen:
        shown = ", ".join(f'"{h.strip()}"' for h in headers) or "none"
        raise ColumnError(
            f"{file_label} has no email or phone column (columns: {shown}); "
            'name one with --map "COLUMN=email" or --map "COLUMN=phone"'
        )

    role_of = {src: role for role, src in chosen.items()}
    type_of: dict[str, str] = {}
    for column, type_name in types.items():
        if type_name not in TYPES:
            raise UsageError(
                f"--type {column}={type_name}: the type must be one of {', '.join(TYPES)}"
            )
        key = column.strip().casefold()
        source = next((h for h in headers if names[h].casefold() == key), None)
        if source is None:
            source = find(column, "--type")
        if source in role_of and type_name != "string":
            raise UsageError(
                f"--type {column}={type_name}: the {role_of[source]} column has a fixed type"
            )
        type_of[source] = type_name

    plans = []
    seen_names: dict[str, str] = {}
    for h in headers:
        role = role_of.get(h, "variable")
        name = role if role != "variable" else names[h]
        if not name:
            continue
        displaced = next((r for r, c in roles.items() if h in c and chosen.get(r) != h), None)
        if role == "variable" and displaced is not None and chosen[displaced] in targets:
            mapped = chosen[displaced].strip()
            raise ColumnError(
                f'--map "{mapped}={displaced}" makes "{mapped}" the {displaced} column, the role '
                f'"{h.strip()}" had; "{h.strip()}" would then go out as a variable named '
                f'"{name}", which is reserved: give it another name, e.g. --map "{h.strip()}='
                f'{h.strip()} (file)"'
            )
        folded_name = name.casefold()
        if folded_name in seen_names:
            raise ColumnError(
                f'columns "{seen_names[folded_name].strip()}" and "{h.strip()}" would both send "{name}"; '
                "rename one with --map"
            )
        seen_names[folded_name] = h
        if role == "variable" and folded_name in ROLES:
            raise ColumnError(
                f'column "{h.strip()}" would send "{name}", which is reserved; rename it with --map'
            )
        plans.append(ColumnPlan(source=h, name=name, role=role, type=type_of.get(h, "string")))
    if default_automation_id and "automation_id" not in chosen:
        # --automation-id with no such column: a column of empty cells that the default fills.
        plans.append(
            ColumnPlan(
                source=DEFAULT_AUTOMATION_ID_SOURCE, name="automation_id", role="automation_id"
            )
        )
    country = find(country_column, "--country-column") if country_column else None
    if country is not None and country in role_of:
        raise UsageError(
            f"--country-column {country_column}: that is the {role_of[country]} column"
        )
    return Layout(tuple(plans), country=country)


DEFAULT_AUTOMATION_ID_SOURCE = "\x00--automation-id"


# --- column-wise normalisation and parsing ------------------------------------------------------

EMAIL_PATTERN = (
    r"(?!\.)(?!.*\.\.)[^\s@\"(),:;<>\[\]\\]{1,64}(?<!\.)"
    r"@(?=.{1,253}$)(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})"
)
PHONE_PATTERN = r"\+?\d{7,15}"
_PHONE_FORMATTING = r"[\s\-.()\u00a0\u2010-\u2015]"
INTEGER_PATTERN = r"[+-]?\d{1,18}(?:\.0*)?"
POSITIVE_INTEGER_PATTERN = r"\+?\d{1,18}(?:\.0*)?"

# Characters nobody sees in a cell: control characters, BOM, zero-width and bidi controls, soft
# hyphen. In an email or a phone they would make one visible address several "different" ones.
INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


# Cell-wise string work below runs as list comprehensions over ``Series.tolist()``: the same
# ``re`` and ``str`` calls pandas' ``.str`` accessor makes, without its per-cell wrappers (3-10x
# faster on text columns). They take the cleaned cells, which are all ``str``.


def _texts(s: pd.Series, values: list[str]) -> pd.Series:
    return pd.Series(values, index=s.index, dtype=object, name=s.name)


def _all_text(values: list[object]) -> bool:
    return set(map(type, values)) <= {str}


def normalise_email(s: pd.Series) -> pd.Series:
    values = s.tolist()
    if not _all_text(values):
        return s.str.strip().str.lower()
    return _texts(s, [v.strip().lower() for v in values])


# "380501234567.0" as ``^(\+?\d+)\.0+$`` replaced by ``\1``: ``$`` also matches before a final
# newline, which the second group keeps.
_FLOAT_FRACTION = re.compile(r"(\+?\d+)\.0+(\n?)")


def drop_float_fraction(s: pd.Series) -> pd.Series:
    """ "380501234567.0" is a number that went through a float (an Excel export): the digits."""
    values = s.tolist()
    if not _all_text(values):
        return s.str.replace(r"^(\+?\d+)\.0+$", r"\1", regex=True)
    if "." not in "".join(values):  # the usual case: one C scan
        return _texts(s, values)
    match = _FLOAT_FRACTION.fullmatch
    out = [v if (m := match(v)) is None else m[1] + m[2] for v in values]
    return _texts(s, out)


_PHONE_FORMATTING_RE = re.compile(_PHONE_FORMATTING)


def normalise_phone(s: pd.Series) -> pd.Series:
    # The fraction goes first, or removing the dot as formatting would add a digit.
    s = drop_float_fraction(s)
    values = s.tolist()
    if not _all_text(values):
        return s.str.replace(_PHONE_FORMATTING, "", regex=True)
    sub = _PHONE_FORMATTING_RE.sub
    return _texts(s, [sub("", v) for v in values])


def fullmatches(s: pd.Series, pattern: str | re.Pattern[str]) -> pd.Series:
    """For each cell, whether the whole of it matches ``pattern`` (False for a non-text cell)."""
    match = re.compile(pattern).fullmatch
    return pd.Series(
        [isinstance(v, str) and match(v) is not None for v in s.tolist()], index=s.index
    )


def drop_text_marker(s: pd.Series) -> pd.Series:
    """``'+19846270127`` -> ``+19846270127``: the apostrophe spreadsheet exports put before a
    value to keep it text. Checked on the whole column at once; most columns have none."""
    values = s.tolist()
    if not values or "\n'" not in "\n" + "\n".join(values):
        return s
    return s.str.replace(r"^'\s*", "", regex=True)


def invisible_characters(s: pd.Series) -> pd.Series:
    """For each cell, ``""`` or a reason naming the first invisible character and its position."""
    reasons = pd.Series("", index=s.index, dtype=object)
    values = s.tolist()
    if not values or INVISIBLE.search(" ".join(values)) is None:  # the usual case: one C scan
        return reasons
    for i, v in enumerate(values):
        m = INVISIBLE.search(v)
        if m is not None:
            ch = m.group()
            kind = (
                "a control character"
                if unicodedata.category(ch) == "Cc"
                else "an invisible character"
            )
            name = unicodedata.name(ch, "")
            reasons.iat[i] = (
                f"has {kind} U+{ord(ch):04X}{f' ({name})' if name else ''} at position "
                f"{m.start() + 1}; remove it"
            )
    return reasons


def _shown(value: str) -> str:
    """A cell for a message: invisible characters written as \\uXXXX so that they show."""
    return INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


_WHOLE = re.compile(r"([+-]?\d{1,18})(?:\.0*)?")


def to_integers(s: pd.Series) -> list[int | None]:
    """Whole numbers (``123``, Excel's ``123.0``) as Python ints; other cells None."""
    match = _WHOLE.fullmatch
    out: list[int | None] = []
    for v in s.tolist():
        m = match(v) if isinstance(v, str) else None
        out.append(int(m.group(1)) if m else None)
    return out


def to_numbers(s: pd.Series) -> list[int | float | None]:
    """Numbers as JSON numbers: whole ones as ints (``12`` not ``12.0``)."""
    values = pd.to_numeric(s.where(s != ""), errors="coerce").tolist()
    out: list[int | float | None] = []
    for v in values:
        if v != v:
            out.append(None)
        elif float(v).is_integer() and abs(v) < 2**53:
            out.append(int(v))
        else:
            out.append(float(v))
    return out


# --- the pandera schema -------------------------------------------------------------------------


def _blank_or(pattern: str) -> Callable[[pd.Series], pd.Series]:
    match = re.compile(pattern).fullmatch

    def check(s: pd.Series) -> pd.Series:
        return pd.Series(
            [v == "" or (isinstance(v, str) and match(v) is not None) for v in s.tolist()],
            index=s.index,
        )

    return check


def _positive_integer(s: pd.Series) -> pd.Series:
    return _blank_or(POSITIVE_INTEGER_PATTERN)(s) & ~fullmatches(s, r"\+?0+(?:\.0*)?")


def _each_distinct(check: Callable[[pd.Series], pd.Series]) -> Callable[[pd.Series], pd.Series]:
    """An element-wise check, run once per distinct value (automation ids, amounts, flags)."""
    return lambda s: by_distinct_value(s, check)


def _finite_number(s: pd.Series) -> pd.Series:
    """A number JSON can carry: 1e400 is infinite and would go out as null."""
    shaped = _blank_or(NUMBER_PATTERN)(s)
    values = pd.to_numeric(s.where(shaped & (s != "")), errors="coerce")
    return (s == "") | (shaped & np.isfinite(values.astype(float)))


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
    text = _shown(str(value))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f'"{text}"'


_PLAIN_PHONE = "is not a phone number (7 to 15 digits, an optional leading +)"


class RowValidator:
    """Normalise and validate chunks of a file laid out by a :class:`Layout`.

    ``default_country`` reads national phone numbers of rows whose country is not known otherwise;
    the layout's country column (see :func:`plan_columns`) gives each row its own.
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
        # Per chunk: column source -> one reason per row ("" where the cell is fine).
        self._reasons: dict[str, pd.Series] = {}
        self._converted: pd.Series | None = None  # phones read with a known country
        self._blank: pd.Series | None = None
        self.schema = self._build_schema()

    def _check(
        self, column: ColumnPlan, fn: Callable[[pd.Series], pd.Series], message: str
    ) -> pa.Check:
        # The error text carries the column's source name, so a failure maps back to it.
        return pa.Check(fn, error=f"{column.source}\x1f{message}")

    def _fine(self, source: str) -> Callable[[pd.Series], pd.Series]:
        """A check that passes where clean() found nothing wrong with the cell."""

        def check(s: pd.Series) -> pd.Series:
            reasons = self._reasons.get(source)
            if reasons is None or not reasons.index.equals(s.index):
                return pd.Series(True, index=s.index)
            return reasons == ""

        return check

    def _unless_reason(
        self, source: str, fn: Callable[[pd.Series], pd.Series]
    ) -> Callable[[pd.Series], pd.Series]:
        """``fn``, but passing cells that already have a more precise reason (said once)."""
        fine = self._fine(source)
        return lambda s: fn(s) | ~fine(s)

    def _build_schema(self) -> pa.DataFrameSchema:
        columns: dict[str, pa.Column] = {}
        for c in self.layout.columns:
            checks: list[pa.Check] = []
            if c.role == "email":
                checks.append(self._check(c, self._fine(c.source), ""))
                checks.append(
                    self._check(
                        c,
                        self._unless_reason(c.source, _blank_or(EMAIL_PATTERN)),
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
                        _each_distinct(lambda s: (s == "") | parse_booleans(s).notna()),
                        "is not true/false (or yes/no, 1/0)",
                    )
                )
            elif c.type == "date":
                checks.append(
                    self._check(
                        c,
                        lambda s: (s == "") | ~self._dates(s)[1],
                        "is ambiguous (day or month first?); pass --date-format, e.g. --date-format %d/%m/%Y",
                    )
                )
                checks.append(
                    self._check(
                        c,
                        lambda s: (s == "") | self._dates(s)[0].notna() | self._dates(s)[1],
                        "is not a date (use 2021-05-28, 28.05.2021 or 27 Nov 2021)",
                    )
                )
            columns[c.source] = pa.Column(checks=checks, nullable=False, required=True)
        contact = [c for c in self.layout.columns if c.role in ("email", "phone")]
        sources = [c.source for c in contact]

        def has_contact(df: pd.DataFrame) -> pd.Series:
            present = pd.Series(False, index=df.index)
            for source in sources:
                present |= df[source] != ""
            return present

        frame_checks = [pa.Check(has_contact, error="\x1fno email or phone")]
        return pa.DataFrameSchema(columns, checks=frame_checks, strict=False, coerce=False)

    def _dates(self, s: pd.Series) -> tuple[pd.Series, pd.Series]:
        """A date column's parse, computed once per chunk for all checks and the body."""
        parsed = self._parsed.get(str(s.name))
        if parsed is not None and parsed[0].index.equals(s.index):
            return parsed
        return by_distinct_value(s, lambda d: parse_dates(d, self.date_format))

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
            if not _all_text(values):
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
                s, reasons = by_distinct_value(s, lambda n: parse_numbers(n, self.decimal_comma))
                self._reasons[c.source] = reasons
            cleaned[c.source] = s
        frame = pd.DataFrame(cleaned, index=chunk.index) if cleaned else pd.DataFrame(index=chunk.index)
        # Rows of nothing but spaces look blank in a spreadsheet program: noted here, before any
        # default fills a cell or an invalid phone is emptied, so the pipeline can leave them out.
        present = [c.source for c in self.layout.columns if c.source in chunk.columns]
        self._blank = (frame[present] == "").all(axis=1) if present else None
        if self.default_automation_id is not None:
            aid = self.layout.by_role("automation_id")
            if aid is not None:
                frame[aid.source] = frame[aid.source].mask(
                    frame[aid.source] == "", str(self.default_automation_id)
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
        try:
            self.schema.validate(frame, lazy=True, inplace=True)
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
