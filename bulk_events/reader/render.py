"""Cell values -> the text a person sees in a spreadsheet program.

Both Excel routes (calamine and openpyxl) hand their typed values to :func:`render`, so a cell
reads the same whichever route read it: numbers without float noise (15 significant digits, as
Excel shows them), whole numbers without ".0", dates as ISO text, TRUE/FALSE.

A number under a date or time format is rendered from its serial by :func:`render_serial`, by the
kind :func:`format_kind` gives the format (the README's reading contract):

* ``"date"`` (the format shows a day, month or year): ``2024-05-01`` or ``2024-05-01T13:45:10``;
  a serial in [0, 1) is Excel's day 0, no date: the time of day it holds, ``12:00:00``;
* ``"time"`` (hours, minutes, seconds, AM/PM or A/P and no date part): the time of day the clock
  shows, whole days dropped as Excel drops them (1.5 under ``h:mm`` -> ``12:00:00``);
* ``"elapsed"`` (``[h]``, ``[hh]``, ``[m]``, ``[mm]``, ``[s]``, ``[ss]``): a duration in hours,
  ``H:MM:SS`` (1 -> ``24:00:00``, 12.3 -> ``295:12:00``, -0.25 -> ``-6:00:00``);
* a negative serial under a date or time format reads as the number itself (``-1.2``): Excel
  shows ``#####`` there, and the number is what the cell holds;
* a serial past 9999-12-31 under a date or time format shows ``#VALUE!`` (:data:`NO_DATE`):
  like a formula error it is no value, and the reader flags the cell (:func:`past_last_date`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

_PAD_TOKEN = re.compile(r'"[^"]*"|\\.|0+|[-+() ]')


def pad_tokens(code: str) -> list[tuple[str, str]] | None:
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


DATE, TIME, ELAPSED = "date", "time", "elapsed"
_LAST_SERIAL = 2958466  # 9999-12-31 is serial 2958465: anything from here on is no date
# Built-in format ids without a code in the file: 14-22 and 45-47 are the classic ones; 27-36 and
# 50-58 are East Asian locale dates.
_BUILTIN_KINDS = {
    **dict.fromkeys(range(14, 18), DATE),
    **dict.fromkeys(range(18, 22), TIME),
    22: DATE,
    **dict.fromkeys(range(27, 37), DATE),
    45: TIME,
    46: ELAPSED,
    47: TIME,
    **dict.fromkeys(range(50, 59), DATE),
}


NO_DATE = "#VALUE!"  # what a serial past the last date shows under a date or time format


def past_last_date(value: float, kind: str, date1904: bool = False) -> bool:
    """Whether a number under a format of ``kind`` is past 9999-12-31, so that the cell shows
    :data:`NO_DATE` (an elapsed time has no last day).

    >>> past_last_date(2994626, "date"), past_last_date(2994626, "elapsed"), past_last_date(1, "time")
    (True, False, False)
    """
    return kind != ELAPSED and value >= _LAST_SERIAL - (1462 if date1904 else 0)


def builtin_kind(format_id: int) -> str | None:
    """The kind of a built-in number format id (14 is a date, 46 ``[h]:mm:ss``...), or None."""
    return _BUILTIN_KINDS.get(format_id)


def format_kind(code: str) -> str | None:
    """``"date"``, ``"time"``, ``"elapsed"`` or None (a number format) for a format code.

    Only the first section counts; quoted text, ``\\x`` and ``_x`` escapes, ``*x`` fills and
    ``[...]`` (colours, locales, conditions) are no date parts, except the elapsed ``[h]``, ``[m]``,
    ``[s]``. These are the rules calamine follows, so both routes agree on what is a date.

    >>> format_kind("dd/mm/yyyy;@"), format_kind("h:mm A/P"), format_kind("[h]:mm"), format_kind("0.00")
    ('date', 'time', 'elapsed', None)
    """
    letters: list[str] = []
    escaped = quoted = False
    bracket = ""
    in_bracket = False
    ampm = False
    for ch in code:
        if escaped:
            escaped = False
        elif quoted:
            quoted = ch != '"'
        elif in_bracket:
            if ch == "]":
                in_bracket = False
                if bracket and bracket[0] in "hms" and bracket == bracket[0] * len(bracket):
                    return ELAPSED
            else:
                bracket += ch.lower()
        elif ch in "_\\*":
            escaped = True
        elif ch == '"':
            quoted = True
        elif ch == "[":
            in_bracket, bracket = True, ""
        elif ch == ";":
            break
        else:
            low = ch.lower()
            if low == "a" and not ampm:
                ampm = True  # AM/PM or A/P: a clock, if an h, m, p or / follows
            elif ampm and low in "pm/":
                letters.append("h")
            elif not ampm and low in "dmhys":
                letters.append(low)
    if not letters:
        return None
    if "d" in letters or "y" in letters:
        return DATE
    if "m" in letters and "h" not in letters and "s" not in letters:
        return DATE  # m alone is a month; next to h or s it is minutes
    return TIME


def render_serial(value: float, kind: str, date1904: bool = False) -> str:
    """A number under a format of ``kind`` -> its text (rules in the module docstring).

    >>> render_serial(45000.5, "date"), render_serial(0.25, "date"), render_serial(1.5, "time")
    ('2023-03-15T12:00:00', '06:00:00', '12:00:00')
    >>> render_serial(12.3, "elapsed"), render_serial(-1.2, "date"), render_serial(3e6, "date")
    ('295:12:00', '-1.2', '#VALUE!')
    """
    if not math.isfinite(value):
        return ""
    if kind == ELAPSED:
        return _render_elapsed(round(value * 86400))
    if value < 0:
        return _render_float(float(value))
    if past_last_date(value, kind, date1904):
        return NO_DATE
    seconds = round(value * 86400)
    days, second_of_day = divmod(seconds, 86400)
    clock = dt.time(second_of_day // 3600, second_of_day // 60 % 60, second_of_day % 60)
    if kind == TIME or days == 0:
        return clock.isoformat()
    if date1904:
        day = dt.date(1904, 1, 1) + dt.timedelta(days=days)
    elif days >= 61:
        day = dt.date(1899, 12, 30) + dt.timedelta(days=days)
    else:  # Excel's made-up 1900-02-29 (serial 60) reads as the 28th, as both libraries read it
        day = dt.date(1899, 12, 31) + dt.timedelta(days=min(days, 59))
    if second_of_day == 0:
        return day.isoformat()
    return dt.datetime.combine(day, clock).isoformat(timespec="seconds")


def _render_elapsed(seconds: int) -> str:
    sign = "-" if seconds < 0 else ""
    hours, rest = divmod(abs(seconds), 3600)
    return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"


def render(value: Any) -> str:
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
    if kind is dt.timedelta:  # an elapsed time ([h]:mm:ss): hours, not "1 day, 6:00:00"
        return _render_elapsed(round(value.total_seconds()))
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


def render_padded(value: float | int, tokens: list[tuple[str, str]]) -> str:
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
