"""One column's cells, cleaned and read: emails, phones, whole numbers, invisible characters.

Every function takes a whole column (a Series of ``str``) and works on it at once: the same ``re``
and ``str`` calls pandas' ``.str`` accessor makes, run as list comprehensions over
``Series.tolist()``, without its per-cell wrappers (3-10x faster on text columns).
"""

from __future__ import annotations

import re
import unicodedata

import pandas as pd
from pandas.api.types import is_object_dtype

EMAIL_PATTERN = (
    r"(?!\.)(?!.*\.\.)[^\s@\"(),:;<>\[\]\\]{1,64}(?<!\.)"
    r"@(?=.{1,253}$)(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})"
)
# A plain ASCII address (lower case, as normalise_email leaves it) that EMAIL_PATTERN always
# accepts too: matched first, it spares most addresses the full pattern's look-arounds.
PLAIN_EMAIL_PATTERN = (
    r"(?=[^@]{1,64}@)[a-z0-9_%+-]+(?:\.[a-z0-9_%+-]+)*"
    r"@(?=.{1,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
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


def _texts(s: pd.Series, values: list[str]) -> pd.Series:
    return pd.Series(values, index=s.index, dtype=object, name=s.name)


def all_text(values: list[object]) -> bool:
    return set(map(type, values)) <= {str}


def normalise_email(s: pd.Series) -> pd.Series:
    values = s.tolist()
    if not all_text(values):
        return s.str.strip().str.lower()
    return _texts(s, [v.strip().lower() for v in values])


# "380501234567.0" as ``^(\+?\d+)\.0+$`` replaced by ``\1``: ``$`` also matches before a final
# newline, which the second group keeps.
_FLOAT_FRACTION = re.compile(r"(\+?\d+)\.0+(\n?)")


def drop_float_fraction(s: pd.Series) -> pd.Series:
    """ "380501234567.0" is a number that went through a float (an Excel export): the digits."""
    values = s.tolist()
    if not all_text(values):
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
    if not all_text(values):
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


def visible(value: str) -> str:
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


def empty(s: pd.Series | pd.DataFrame) -> pd.Series | pd.DataFrame:
    """Which cells are ``""``, as ``s == ""`` says: for object columns (what :mod:`.schema`
    cleans cells into) numpy compares the array in one C loop, several times faster than pandas'
    comparison (0.24 against 1.5 ms for 20,000 cells). Other columns are pandas' to compare."""
    dtypes = s.dtypes if isinstance(s, pd.DataFrame) else [s.dtype]
    if not all(is_object_dtype(dtype) for dtype in dtypes):
        return s == ""
    try:
        found = s.to_numpy() == ""
    except TypeError:  # pd.NA in it, whose truth is ambiguous: pandas handles it
        return s == ""
    if isinstance(s, pd.DataFrame):
        return pd.DataFrame(found, index=s.index, columns=s.columns)
    return pd.Series(found, index=s.index, name=s.name)
