"""Dates, numbers and booleans as people type them, read a whole column at a time.

Each value is judged on its own, never by its neighbours: a row means the same wherever it stands
in a file. The common forms (ISO dates, plain numbers) are parsed by vectorised pandas operations;
only the rare rest goes through Python, once per distinct value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np
import pandas as pd

from .cells import empty

_Parsed = TypeVar("_Parsed", pd.Series, tuple[pd.Series, pd.Series])


def by_distinct_value(s: pd.Series, parse: Callable[[pd.Series], _Parsed]) -> _Parsed:
    """``parse(s)``, computed once per distinct value of ``s`` and spread back to every row.

    For element-wise parsers only (each value judged on its own), on columns that repeat: a
    million rows of dates hold a few thousand distinct ones. A column of mostly distinct values
    is parsed as it is.
    """
    if len(s) < 2:
        return parse(s)
    codes, uniques = pd.factorize(s.array, use_na_sentinel=False)
    if 2 * len(uniques) > len(s):
        return parse(s)
    result = parse(pd.Series(uniques, dtype=s.dtype, name=s.name))

    def spread(r: pd.Series) -> pd.Series:
        return pd.Series(r.array.take(codes), index=s.index, dtype=r.dtype, name=r.name)

    if isinstance(result, tuple):
        return tuple(spread(r) for r in result)  # type: ignore[return-value]
    return spread(result)


class Remembered(Generic[_Parsed]):
    """An element-wise parser (as for :func:`by_distinct_value`) that remembers its results for
    the values of earlier chunks: a file's dates repeat from chunk to chunk as well as within
    one (a million rows of signup dates hold a few thousand distinct ones), so each is parsed
    once per file, not once per chunk. Only values new to it are parsed.

    The parser's answer for a value never depends on the other values, so a chunk is read the
    same whatever came before it. Only text is remembered: a column holding anything else (a
    missing value, a number) is parsed as :func:`by_distinct_value` does, since 1, 1.0 and True
    look alike to an index, and a missing value finds nothing in one. Past :attr:`LIMIT` values
    the memory starts afresh with the chunk at hand (so it holds at most LIMIT values, or one
    chunk's distinct values if there are more).
    """

    LIMIT = 65_536

    def __init__(self, parse: Callable[[pd.Series], _Parsed]) -> None:
        self.parse: Callable[[pd.Series], _Parsed] = parse
        self._known: pd.Index | None = None  # the values seen, each once
        self._results: list[pd.Series] = []  # per part of the result: one entry per known value
        self._tuple = False
        self._named: list[bool] = []  # per part: it carries the name of the column parsed

    def __call__(self, s: pd.Series) -> _Parsed:
        if len(s) < 2:
            return self.parse(s)
        codes, uniques = pd.factorize(s.array, use_na_sentinel=False)
        if not all(type(u) is str for u in uniques.tolist()):
            return by_distinct_value(s, self.parse)
        at = None if self._known is None else self._known.get_indexer(uniques)
        new = np.ones(len(uniques), dtype=bool) if at is None else at < 0
        if new.any():
            afresh = self._known is None or len(self._known) + new.sum() > self.LIMIT
            learnt = uniques if afresh else uniques[new]
            self._learn(pd.Series(learnt, dtype=s.dtype, name=s.name), afresh)
            assert self._known is not None
            at = self._known.get_indexer(uniques)
        assert at is not None
        rows = at[codes]
        parts = [
            pd.Series(
                r.array.take(rows), index=s.index, dtype=r.dtype, name=s.name if n else r.name
            )
            for r, n in zip(self._results, self._named, strict=True)
        ]
        return tuple(parts) if self._tuple else parts[0]  # type: ignore[return-value]

    def _learn(self, values: pd.Series, afresh: bool) -> None:
        """Parse ``values`` (new to it, distinct) and keep their results; ``afresh``: instead
        of those kept so far."""
        result = self.parse(values)
        self._tuple = isinstance(result, tuple)
        made: list[pd.Series] = list(result) if isinstance(result, tuple) else [result]
        parts = [p.reset_index(drop=True) for p in made]
        self._named = [p.name is not None and p.name == values.name for p in made]
        if afresh or self._known is None:
            self._known, self._results = pd.Index(values.array, dtype=values.dtype), parts
            return
        self._known = self._known.append(pd.Index(values.array, dtype=values.dtype))
        self._results = [
            pd.concat([old, p], ignore_index=True)
            for old, p in zip(self._results, parts, strict=True)
        ]


TRUE_WORDS = frozenset({"true", "yes", "y", "1", "да", "так", "истина", "t"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "нет", "ні", "ложь", "f"})

# --- dates --------------------------------------------------------------------------------------

# A time after a date is dropped: the date goes out as written (no zone conversion).
_TIME = r"(?:(?:[T ]|,? +)\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?: ?[AaPp]\.?[Mm]\.?)?(?: ?(?:Z|UTC|GMT|[+-]\d{2}:?\d{2}))?)?"
_ISO_DATE = rf"^(?P<y>\d{{4}})[-/.](?P<m>\d{{1,2}})[-/.](?P<d>\d{{1,2}}){_TIME}$"
_DOTTED_DATE = rf"^(?P<d>\d{{1,2}})\.(?P<m>\d{{1,2}})\.(?P<y>\d{{4}}|\d{{2}})\.?{_TIME}$"
_SLASHED_DATE = rf"^(?P<a>\d{{1,2}})[/-](?P<b>\d{{1,2}})[/-](?P<y>\d{{4}}|\d{{2}}){_TIME}$"
_YEAR_WORD = r"(?: ?(?:г|р|року|рік|года|год)\.?)?"  # "27 ноября 2024 г.", "27 листопада 2024 р."
_WORD = r"[^\W\d_]+"
_DAY_MONTH_YEAR = (
    rf"^(?P<d>\d{{1,2}})(?:st|nd|rd|th)?[ .\-/]*(?P<m>{_WORD})\.?,?[ .\-/]*(?P<y>\d{{4}}|\d{{2}})"
    rf"{_YEAR_WORD}{_TIME}$"
)
_MONTH_DAY_YEAR = (
    rf"^(?P<m>{_WORD})\.? +(?P<d>\d{{1,2}})(?:st|nd|rd|th)?,? +(?P<y>\d{{4}}){_YEAR_WORD}{_TIME}$"
)


def _month_words() -> dict[str, int]:
    """Month names in English, Ukrainian and Russian: full, genitive ("листопада", "ноября")
    and the usual abbreviations, all lower-case and without a trailing dot."""
    table = [
        "january jan|february feb|march mar|april apr|may|june jun|july jul|august aug"
        "|september sep sept|october oct|november nov|december dec",
        "січень січня січ|лютий лютого лют|березень березня бер|квітень квітня квіт кві"
        "|травень травня трав тра|червень червня черв чер|липень липня лип|серпень серпня серп сер"
        "|вересень вересня вер|жовтень жовтня жовт жов|листопад листопада лист лис"
        "|грудень грудня груд гру",
        "январь января янв|февраль февраля фев февр|март марта мар|апрель апреля апр"
        "|май мая|июнь июня июн|июль июля июл|август августа авг|сентябрь сентября сен сент"
        "|октябрь октября окт|ноябрь ноября ноя нояб|декабрь декабря дек",
    ]
    words: dict[str, int] = {}
    for language in table:
        for month, names in enumerate(language.split("|"), start=1):
            for name in names.split():
                words[name] = month
    return words


MONTHS = _month_words()


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


def _fill(
    dates: pd.Series, rest: pd.Series, s: pd.Series, pattern: str, month_names: bool = False
) -> None:
    parts = s[rest].str.extract(pattern)
    found = parts["y"].notna()
    if month_names and found.any():
        parts["m"] = parts["m"].str.lower().map(MONTHS)
        found &= parts["m"].notna()
    if found.any():
        idx = found[found].index
        dates[idx] = _assemble(parts["y"][idx], parts["m"][idx], parts["d"][idx])


def parse_dates(s: pd.Series, date_format: str | None = None) -> tuple[pd.Series, pd.Series]:
    """Parse a text column into dates: ``(dates, ambiguous)``.

    Accepted: ISO ``2021-05-28`` (also ``2021/05/28``), day-first ``28.05.2021``, a month by name
    (``27 Nov 2024``, ``Nov 27, 2024``, ``27 листопада 2024``, ``27 ноября 2024 г.``), and slashed
    dates where one part over 12 says which is the day (``24/8/2020``, US ``3/14/2024``). A time
    after any of them is dropped. ``05/06/2021`` could be either, so it is marked ambiguous unless
    ``date_format`` (a strptime format) says how to read it.

    >>> parse_dates(pd.Series(["3/14/2024", "05/06/2021"]))[1].tolist()
    [False, True]
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
    _fill(dates, rest, s, _ISO_DATE)
    rest &= dates.isna()
    if date_format and rest.any():
        parsed = pd.to_datetime(s[rest], format=date_format, errors="coerce")
        dates[rest] = parsed.dt.normalize().astype("datetime64[s]")
        rest &= dates.isna()
    if not rest.any():
        return dates, ambiguous
    _fill(dates, rest, s, _DOTTED_DATE)  # 28.05.2021 is day-first everywhere it is used
    rest &= dates.isna()
    if rest.any():
        _fill(dates, rest, s, _DAY_MONTH_YEAR, month_names=True)
        rest &= dates.isna()
    if rest.any():
        _fill(dates, rest, s, _MONTH_DAY_YEAR, month_names=True)
        rest &= dates.isna()
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
        month_first = (second > 12) & (first <= 12)
        midx = month_first[month_first].index
        dates[midx] = _assemble(slashed["y"][midx], slashed["a"][midx], slashed["b"][midx])
        unclear = (first <= 12) & (second <= 12) & (first != second)
        ambiguous[unclear[unclear].index] = True
    return dates, ambiguous


# --- booleans -----------------------------------------------------------------------------------


def parse_booleans(s: pd.Series) -> pd.Series:
    """True/False for recognised words (TRUE/FALSE as Excel shows them, yes/no, 1/0, да/нет), else NA."""
    folded = s.str.strip().str.casefold()
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out[folded.isin(TRUE_WORDS)] = True
    out[folded.isin(FALSE_WORDS)] = False
    return out


# --- numbers ------------------------------------------------------------------------------------

NUMBER_PATTERN = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?"

CURRENCY_SIGNS = "$€£¥₴₽₸₹₩₪₺₼₾฿₫₱₦₡₲₵¢"
# ISO 4217 codes and local abbreviations that appear beside amounts in exports.
CURRENCY_CODES = frozenset(
    "USD EUR GBP UAH RUB PLN CHF JPY CNY CAD AUD NZD SEK NOK DKK CZK HUF RON BGN TRY KZT BYN "
    "GEL MDL AMD AZN ILS INR BRL MXN ZAR SGD HKD KRW THB AED SAR UZS KGS TJS TMT RSD ISK "
    "грн руб р".casefold().split()
)
_SPACES = " \u00a0\u202f\u2009"  # a space, no-break space, narrow no-break space, thin space
_AMOUNT = re.compile(
    rf"(?P<pre>[{CURRENCY_SIGNS}]|[^\W\d_]+\.?)?[{_SPACES}]?"
    rf"(?P<sign>[+\-\u2212])?[{_SPACES}]?"
    rf"(?P<pre2>[{CURRENCY_SIGNS}])?"
    rf"(?P<num>[.,]?\d(?:[\d.,{_SPACES}]*\d)?[.,]?)(?P<exp>[eE][+-]?\d{{1,3}})?"
    rf"[{_SPACES}]?(?P<post>[{CURRENCY_SIGNS}]|[^\W\d_]+\.?)?"
)
_SPACE_GROUPED = re.compile(rf"(\d{{1,3}}(?:[{_SPACES}]\d{{3}})+)(?:([.,])(\d+))?")
_GROUPED = {mark: re.compile(rf"\d{{1,3}}(?:\{mark}\d{{3}})+") for mark in ",."}


def _currency(word: str | None) -> bool:
    return word is None or word in CURRENCY_SIGNS or word.rstrip(".").casefold() in CURRENCY_CODES


def read_number(text: str, decimal_comma: bool = False) -> tuple[str | None, str]:
    """One number as typed -> ``(plain text such as "1234.50", "")`` or ``(None, reason)``.

    Spaces of any width group thousands; a currency sign or code before or after the amount is
    dropped. With both a comma and a dot the last one is the decimal separator. A single comma or
    dot followed by exactly three digits (``1,234``) is read by the file's convention
    (``decimal_comma``: a ";"-separated file) where it is the decimal separator, and refused as
    ambiguous where it would be a thousands separator.

    >>> read_number("1 234,50 ₴")
    ('1234.50', '')
    """
    m = _AMOUNT.fullmatch(text)
    if m is None:
        return None, "is not a number"
    pre, post, pre2 = m["pre"], m["post"], m["pre2"]
    for word in (pre, post):
        if not _currency(word):
            return None, f'is not a number ("{word}" is not a currency sign or code)'
    if sum(w is not None for w in (pre, pre2, post)) > 1:
        return None, "is not a number (two currency marks)"
    sign = "-" if m["sign"] in ("-", "\u2212") else ""
    num, exponent = m["num"], m["exp"] or ""
    here = " in a ';'-separated file" if decimal_comma else ""
    file_decimal = "," if decimal_comma else "."
    if any(c in _SPACES for c in num):
        grouped = _SPACE_GROUPED.fullmatch(num)
        if grouped is None:
            return None, "is not a number (spaces inside it do not group thousands in threes)"
        whole = re.sub(f"[{_SPACES}]", "", grouped[1])
        return (sign + whole + ("." + grouped[3] if grouped[3] else "") + exponent), ""
    commas, dots = num.count(","), num.count(".")
    if commas and dots:
        last = "," if num.rfind(",") > num.rfind(".") else "."
        other = "." if last == "," else ","
        if num.count(last) > 1:
            return None, f"is not a number (two decimal separators '{last}')"
        whole, fraction = num.rsplit(last, 1)
        if not fraction.isdigit() or not _GROUPED[other].fullmatch(whole):
            return None, (
                f"is not a number (thousands separator '{other}' must group digits in threes)"
            )
        return sign + whole.replace(other, "") + "." + fraction + exponent, ""
    if commas + dots == 0:
        return sign + num + exponent, ""
    mark = "," if commas else "."
    if commas + dots > 1:
        if _GROUPED[mark].fullmatch(num):
            return sign + num.replace(mark, "") + exponent, ""
        return None, (
            f"is not a number ('{mark}' appears {num.count(mark)} times "
            "but does not group thousands in threes)"
        )
    whole, fraction = num.split(mark)
    if fraction == "" and whole == "":
        return None, "is not a number"
    looks_grouped = len(fraction) == 3 and 1 <= len(whole) <= 3 and not whole.startswith("0")
    if looks_grouped and mark != file_decimal and not exponent:
        value = whole + fraction
        return None, (
            f"is ambiguous: '{mark}'{here} may separate thousands ({value}) or decimals "
            f"({whole}.{fraction}); write {value} or {whole}.{fraction}"
        )
    return sign + (whole or "0") + "." + fraction + exponent, ""


def parse_numbers(s: pd.Series, decimal_comma: bool = False) -> tuple[pd.Series, pd.Series]:
    """A text column of numbers as typed -> ``(plain text, reason)``, both aligned with ``s``.

    Plain numbers (``12.5``, ``-3``, ``1e3``) pass through untouched by a vectorised match; only
    the rest is read by :func:`read_number`, once per distinct value. ``reason`` is ``""`` where
    the value is a number (or empty) and says what is wrong where it is not.
    """
    reasons = pd.Series("", index=s.index, dtype=object)
    plain = empty(s) | s.str.fullmatch(NUMBER_PATTERN).fillna(False).astype(bool)
    if decimal_comma:  # a lone "1.234" may be 1234 here: not plain, let read_number decide
        plain &= ~s.str.fullmatch(r"[+-]?[1-9]\d{0,2}\.\d{3}").fillna(False).astype(bool)
    if plain.all():
        return s, reasons
    rest = s[~plain]
    cache = {v: read_number(v, decimal_comma) for v in pd.unique(rest)}
    read = [cache[v] for v in rest.tolist()]
    out = s.copy()
    out[rest.index] = [
        v if v is not None else t for (v, _), t in zip(read, rest.tolist(), strict=True)
    ]
    reasons[rest.index] = [r for _, r in read]
    return out, reasons


# --- what a column looks like -------------------------------------------------------------------


def suggest_type(sample: pd.Series, decimal_comma: bool = False) -> str | None:
    """``"date"``, ``"integer"`` or ``"number"`` when a sample of a string column looks like one
    (every non-empty value reads as it), else None: for ``inspect`` to suggest ``--type``.

    Codes whose leading zeros matter (``01234``) and phone-like digit strings (``+380…``, seven
    digits or more) are not numbers to anyone: they stay strings.

    >>> suggest_type(pd.Series(["27 Nov 2024", "3/14/2024"])), suggest_type(pd.Series(["01234"]))
    ('date', None)
    """
    values = sample.astype(object).fillna("").astype(str).str.strip()
    values = values[values != ""]
    if values.empty:
        return None
    dates, ambiguous = parse_dates(values)
    if (dates.notna() | ambiguous).all() and dates.notna().any():
        return "date"
    digits = values.str.replace(r"[\s\-().]", "", regex=True)
    if (values.str.match(r"0\d") | digits.str.fullmatch(r"\+?\d{7,}")).any():
        return None
    numbers, reasons = parse_numbers(values, decimal_comma)
    if (reasons != "").any():
        return None
    whole = numbers.str.fullmatch(r"[+-]?\d+(?:\.0*)?")
    if not numbers.str.fullmatch(NUMBER_PATTERN).fillna(False).all():
        return None
    return "integer" if whole.all() else "number"
