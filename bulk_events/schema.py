"""Which column is what, and the pandera schema that checks every row of a chunk at once.

A file's headers are matched to roles once (:func:`plan_columns`); each chunk is then normalised and
validated column-wise (:class:`RowValidator`). Every check is a vectorised string or numeric operation
on a whole column: element-wise Python checks make pandera a hundred times slower on large files.
Validation is lazy: every problem of every row is collected, not just the first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from .errors import ColumnError, UsageError

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


def plan_columns(
    headers: list[str],
    *,
    types: Mapping[str, str] | None = None,
    mapping: Mapping[str, str] | None = None,
    file_label: str = "the file",
    default_automation_id: bool = False,
) -> Layout:
    """Decide the role, body key and type of every column of a file.

    >>> plan_columns(["E-mail", "Name"]).by_role("email").source
    'E-mail'
    """
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
    return Layout(tuple(plans))


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
NUMBER_PATTERN = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?"
TRUE_WORDS = frozenset({"true", "yes", "y", "1", "да", "так", "истина", "t"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "нет", "ні", "ложь", "f"})

_ISO_DATE = r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
_DOTTED_DATE = r"^(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>\d{4}|\d{2})$"
_SLASHED_DATE = r"^(?P<a>\d{1,2})[/-](?P<b>\d{1,2})[/-](?P<y>\d{4}|\d{2})$"


def normalise_email(s: pd.Series) -> pd.Series:
    return s.str.strip().str.lower()


def drop_float_fraction(s: pd.Series) -> pd.Series:
    """ "380501234567.0" is a number that went through a float (an Excel export): the digits."""
    return s.str.replace(r"^(\+?\d+)\.0+$", r"\1", regex=True)


def normalise_phone(s: pd.Series) -> pd.Series:
    # The fraction goes first, or removing the dot as formatting would add a digit.
    return drop_float_fraction(s).str.replace(_PHONE_FORMATTING, "", regex=True)


def _years(y: pd.Series) -> pd.Series:
    y = pd.to_numeric(y, errors="coerce")
    return y.where(y >= 100, y.where(y >= 69, y + 2000).where(y < 69, y + 1900))


def _assemble(y: pd.Series, m: pd.Series, d: pd.Series) -> pd.Series:
    frame = pd.DataFrame(
        {
            "year": _years(y),
            "month": pd.to_numeric(m, errors="coerce"),
            "day": pd.to_numeric(d, errors="coerce"),
        }
    )
    ok = frame.notna().all(axis=1)
    out = pd.Series(pd.NaT, index=y.index, dtype="datetime64[s]")
    if ok.any():
        out[ok] = pd.to_datetime(frame[ok].astype("int64"), errors="coerce")
    return out


def parse_dates(s: pd.Series, date_format: str | None = None) -> tuple[pd.Series, pd.Series]:
    """Parse a text column into dates: ``(dates, ambiguous)``.

    Accepted: ISO ``2021-05-28`` (a time part is dropped), day-first ``28.05.2021``, and slashed
    ``24/8/2020`` where the first number can only be a day. ``05/06/2021`` could be either, so it
    is marked ambiguous unless ``date_format`` (a strptime format) says how to read it. Each value
    is judged on its own, never by its neighbours, so a row means the same wherever it stands.
    """
    dates = pd.Series(pd.NaT, index=s.index, dtype="datetime64[s]")
    ambiguous = pd.Series(False, index=s.index)
    if s.empty:
        return dates, ambiguous
    # Fast path for plain ISO dates (what Excel date cells become): parsed in C.
    plain = pd.to_datetime(s, format="%Y-%m-%d", errors="coerce")
    found = plain.notna()
    if found.any():
        dates[found] = plain[found].astype("datetime64[s]")
    rest = ~found & (s != "")
    if not rest.any():
        return dates, ambiguous
    iso = s[rest].str.extract(_ISO_DATE)
    found = iso["y"].notna()
    if found.any():
        idx = found[found].index
        dates[idx] = _assemble(iso["y"][idx], iso["m"][idx], iso["d"][idx])
    rest = rest & dates.isna()
    if date_format and rest.any():
        parsed = pd.to_datetime(s[rest], format=date_format, errors="coerce")
        dates[rest] = parsed.dt.normalize().astype("datetime64[s]")
        rest = rest & dates.isna()
    if not rest.any():
        return dates, ambiguous
    dotted = s[rest].str.extract(_DOTTED_DATE)  # 28.05.2021 is day-first everywhere it is used
    found = dotted["y"].notna()
    if found.any():
        idx = found[found].index
        dates[idx] = _assemble(dotted["y"][idx], dotted["m"][idx], dotted["d"][idx])
    rest = rest & dates.isna()
    if date_format or not rest.any():
        return dates, ambiguous  # slashed dates follow the format the user gave, or are invalid
    slashed = s[rest].str.extract(_SLASHED_DATE)
    found = slashed["y"].notna()
    if found.any():
        idx = found[found].index
        first = pd.to_numeric(slashed["a"][idx])
        second = pd.to_numeric(slashed["b"][idx])
        day_first = (first > 12) | (first == second)
        pidx = day_first[day_first].index
        dates[pidx] = _assemble(slashed["y"][pidx], slashed["b"][pidx], slashed["a"][pidx])
        unclear = (first <= 12) & (second <= 12) & (first != second)
        ambiguous[unclear[unclear].index] = True
    return dates, ambiguous


def parse_booleans(s: pd.Series) -> pd.Series:
    """True/False for recognised words (TRUE/FALSE as Excel shows them, yes/no, 1/0, да/нет), else NA."""
    folded = s.str.strip().str.casefold()
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out[folded.isin(TRUE_WORDS)] = True
    out[folded.isin(FALSE_WORDS)] = False
    return out


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
    def check(s: pd.Series) -> pd.Series:
        return (s == "") | s.str.fullmatch(pattern).fillna(False).astype(bool)

    return check


def _finite_number(s: pd.Series) -> pd.Series:
    """A number JSON can carry: 1e400 is infinite and would go out as null."""
    shaped = _blank_or(NUMBER_PATTERN)(s)
    values = pd.to_numeric(s.where(shaped & (s != "")), errors="coerce")
    return (s == "") | (shaped & np.isfinite(values.astype(float)))


@dataclass
class ValidatedChunk:
    """A chunk after validation: the cleaned cells and every row's problems."""

    frame: pd.DataFrame  # cleaned cells, same index (row numbers) and column names as the input
    errors: dict[int, list[str]] = field(default_factory=dict)
    dates: dict[str, pd.Series] = field(default_factory=dict)  # parsed date columns
    booleans: dict[str, pd.Series] = field(default_factory=dict)
    blank: pd.Series | None = None  # rows whose every cell is empty or spaces

    def without(self, rows: pd.Index) -> ValidatedChunk:
        """The same chunk minus ``rows`` (by row number)."""
        drop = set(rows.tolist())
        return ValidatedChunk(
            frame=self.frame.drop(index=rows),
            errors={r: e for r, e in self.errors.items() if r not in drop},
            dates={k: v.drop(index=rows) for k, v in self.dates.items()},
            booleans={k: v.drop(index=rows) for k, v in self.booleans.items()},
        )


def _quote(value: object, limit: int = 60) -> str:
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f'"{text}"'


class RowValidator:
    """Normalise and validate chunks of a file laid out by a :class:`Layout`."""

    def __init__(
        self,
        layout: Layout,
        *,
        date_format: str | None = None,
        default_automation_id: int | None = None,
        default_country: str | None = None,
        decimal_comma: bool = False,
    ) -> None:
        self.layout = layout
        # In a ";"-separated CSV (what Excel writes where the comma is the decimal separator),
        # 12,50 in a number column means 12.5.
        self.decimal_comma = decimal_comma
        self.date_format = date_format
        self.default_automation_id = default_automation_id
        self.default_country = default_country
        self._parsed: dict[str, tuple[pd.Series, pd.Series]] = {}
        self._blank: pd.Series | None = None
        self.schema = self._build_schema()

    def _check(
        self, column: ColumnPlan, fn: Callable[[pd.Series], pd.Series], message: str
    ) -> pa.Check:
        # The error text carries the column's source name, so a failure maps back to it.
        return pa.Check(fn, error=f"{column.source}\x1f{message}")

    def _build_schema(self) -> pa.DataFrameSchema:
        columns: dict[str, pa.Column] = {}
        for c in self.layout.columns:
            checks: list[pa.Check] = []
            if c.role == "email":
                checks.append(
                    self._check(c, _blank_or(EMAIL_PATTERN), "is not a valid email address")
                )
            elif c.role == "phone":
                if self.default_country:
                    checks.append(
                        self._check(
                            c,
                            self._phone_check,
                            f"is not a valid phone number for {self.default_country}",
                        )
                    )
                else:
                    checks.append(
                        self._check(
                            c,
                            _blank_or(PHONE_PATTERN),
                            "is not a phone number (7 to 15 digits, an optional leading +)",
                        )
                    )
            elif c.role == "automation_id":
                checks.append(
                    self._check(
                        c,
                        lambda s: (
                            _blank_or(POSITIVE_INTEGER_PATTERN)(s)
                            & ~s.str.fullmatch(r"\+?0+(?:\.0*)?").fillna(False).astype(bool)
                        ),
                        "is not a positive whole number",
                    )
                )
            elif c.type == "integer":
                checks.append(self._check(c, _blank_or(INTEGER_PATTERN), "is not a whole number"))
            elif c.type == "number":
                checks.append(
                    self._check(c, _finite_number, "is not a number (use a dot for decimals)")
                )
            elif c.type == "boolean":
                checks.append(
                    self._check(
                        c,
                        lambda s: (s == "") | parse_booleans(s).notna(),
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
                        "is not a date (use 2021-05-28 or 28.05.2021)",
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
        return parse_dates(s, self.date_format)

    def _phone_check(self, s: pd.Series) -> pd.Series:
        return (s == "") | self.international_phones(s).notna()

    def international_phones(self, s: pd.Series) -> pd.Series:
        """Phones turned into E.164 (``+380501234567``) with --default-country; invalid ones NA."""
        import phonenumbers  # only needed with --default-country

        cache: dict[str, str | None] = {}
        out: list[str | None] = []
        for raw in s.tolist():
            if raw == "":
                out.append("")
                continue
            if raw not in cache:
                try:
                    number = phonenumbers.parse(raw, self.default_country)
                    ok = phonenumbers.is_valid_number(number)
                    cache[raw] = (
                        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                        if ok
                        else None
                    )
                except phonenumbers.NumberParseException:
                    cache[raw] = None
            out.append(cache[raw])
        return pd.Series(out, index=s.index, dtype=object)

    def clean(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """Trim every cell; lower-case emails; strip formatting from phones."""
        frame = pd.DataFrame(index=chunk.index)
        for c in self.layout.columns:
            if c.source not in chunk.columns:  # the --automation-id stand-in column
                frame[c.source] = pd.Series("", index=chunk.index, dtype=object)
                continue
            s = chunk[c.source]
            if s.hasnans:  # the reader gives "" for an empty cell; other callers may not
                s = s.astype(object).fillna("")
            s = s.astype(str).str.strip()
            if c.role == "email":
                s = normalise_email(s)
            elif c.role == "phone":
                # With --default-country, phonenumbers reads the formatting itself.
                s = drop_float_fraction(s) if self.default_country else normalise_phone(s)
            elif c.type == "number" and self.decimal_comma:
                s = s.str.replace(r"^([+-]?\d*),(\d+)$", r"\1.\2", regex=True)
            frame[c.source] = s
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
        """Clean a chunk and collect every problem of every row (lazy validation)."""
        frame = self.clean(chunk)
        self._parsed = {}
        for c in self.layout.variables:
            if c.type == "date":
                self._parsed[c.source] = self._dates(frame[c.source])
        errors: dict[int, list[str]] = {}
        try:
            self.schema.validate(frame, lazy=True, inplace=True)
        except pa.errors.SchemaErrors as exc:
            cases = exc.failure_cases
            seen: set[tuple[int, str]] = set()
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
                if not source:  # the frame-wide check, reported once per row
                    if (row, message) in seen:
                        continue
                    seen.add((row, message))
                    errors.setdefault(row, []).append(message)
                    continue
                plan = next((c for c in self.layout.columns if c.source == source), None)
                label = plan.name if plan else str(column)
                if source in chunk.columns:  # show the cell as the person typed it
                    value = str(chunk.at[row, source]).strip()
                errors.setdefault(row, []).append(f"{label} {_quote(value)} {message}")
        # Cells the reader found showing a formula error (#N/A): no value, so the row is invalid.
        sent = {c.source for c in self.layout.columns}
        for row, cells in chunk.attrs.get("cell_errors", {}).items():
            if shown := [text for column, text in cells if column in sent]:
                errors.setdefault(int(row), []).extend(shown)
        if self.default_country:
            phone = self.layout.by_role("phone")
            if phone is not None:
                frame[phone.source] = self.international_phones(frame[phone.source]).fillna("")
        result = ValidatedChunk(frame=frame, errors=errors, blank=self._blank)
        for c in self.layout.variables:
            if c.type == "date":
                result.dates[c.source] = self._dates(frame[c.source])[0]
            elif c.type == "boolean":
                result.booleans[c.source] = parse_booleans(frame[c.source])
        self._parsed = {}
        return result
