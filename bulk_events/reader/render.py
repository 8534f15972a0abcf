"""Cell values -> the text a person sees in a spreadsheet program.

Both Excel routes (calamine and openpyxl) hand their typed values to :func:`render`, so a cell
reads the same whichever route read it: numbers without float noise (15 significant digits, as
Excel shows them), whole numbers without ".0", dates as ISO text, TRUE/FALSE.
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
    if kind is dt.timedelta:
        return str(dt.timedelta(seconds=round(value.total_seconds())))
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
