"""Phones as exports hold them: national numbers made international, countries read by name.

The ``phonenumbers`` library (and its table of country names) is imported only when a country is
known for some row: a file of international numbers never pays for it.
"""

from __future__ import annotations

import re
from functools import cache

import pandas as pd

# Names exports use that are not a country's English, Ukrainian or Russian name in phonenumbers.
_COUNTRY_ALIASES = {
    "uk": "GB", "great britain": "GB", "britain": "GB", "england": "GB", "scotland": "GB",
    "wales": "GB", "northern ireland": "GB", "united kingdom of great britain and northern ireland": "GB",
    "usa": "US", "us": "US", "united states of america": "US", "america": "US",
    "russian federation": "RU", "south korea": "KR", "korea republic of": "KR",
    "republic of korea": "KR", "czech republic": "CZ", "czechia": "CZ", "holland": "NL",
    "uae": "AE", "vietnam": "VN", "moldova republic of": "MD", "republic of moldova": "MD",
    "turkey": "TR", "turkiye": "TR", "ivory coast": "CI", "macedonia": "MK",
}  # fmt: skip


def fold_country(text: str) -> str:
    """``"U.S.A."`` -> ``"usa"``, ``"The Netherlands"`` -> ``"netherlands"``: how names compare."""
    text = re.sub(r"[^\w]+", " ", text.replace(".", "").casefold()).strip()
    return text[4:] if text.startswith("the ") else text


@cache
def _country_names() -> dict[str, str]:
    import phonenumbers
    from phonenumbers.geodata.locale import LOCALE_DATA

    names: dict[str, str] = {}
    for region in phonenumbers.SUPPORTED_REGIONS:
        data = LOCALE_DATA.get(region, {})
        for lang in ("aa", "uk", "ru"):  # "aa" holds the English name; "*xx" points at another
            name = data.get(lang, "")
            while name.startswith("*"):
                name = data.get(name[1:], "")
            if name:
                names.setdefault(fold_country(name), region)
    names.update(_COUNTRY_ALIASES)
    return names


def country_code(text: str) -> str | None:
    """An ISO 3166 alpha-2 code from a code or a name as exports hold it; None if unknown.

    >>> country_code("United States"), country_code("ua"), country_code("Atlantis")
    ('US', 'UA', None)
    """
    import phonenumbers

    folded = fold_country(text)
    if len(folded) == 2 and folded.upper() in phonenumbers.SUPPORTED_REGIONS:
        return folded.upper()
    return _country_names().get(folded)


def to_international(phones: pd.Series, countries: pd.Series) -> pd.Series:
    """Each phone in E.164 (``+380501234567``) read with its own row's country code; NA where
    the number is not a valid phone of that country. Empty phones stay ``""``."""
    import phonenumbers

    known: dict[tuple[str, str], str | None] = {}
    out: list[str | None] = []
    for raw, country in zip(phones.tolist(), countries.tolist(), strict=True):
        if raw == "":
            out.append("")
            continue
        key = (raw, country)
        if key not in known:
            try:
                number = phonenumbers.parse(raw, country or None)
                known[key] = (
                    phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                    if phonenumbers.is_valid_number(number)
                    else None
                )
            except phonenumbers.NumberParseException:
                known[key] = None
        out.append(known[key])
    return pd.Series(out, index=phones.index, dtype=object)


def looks_national(phones: pd.Series) -> pd.Series:
    """Phones that seem to lack a country code: no ``+`` and either a leading 0 (a trunk prefix,
    ``0501234567``, ``07700900123``) or ten digits or fewer (``6175550000``). ``380501234567``
    and ``19846270127`` are taken as international numbers written without the ``+``."""
    values = phones.tolist()
    if all(type(p) is str for p in values):  # the usual case: one pass in Python, not five
        return pd.Series(
            [p != "" and p[0] != "+" and (p[0] == "0" or len(p) <= 10) for p in values],
            index=phones.index,
            dtype=bool,
        )
    digits = phones.str.len()
    return (
        (phones != "") & ~phones.str.startswith("+") & (phones.str.startswith("0") | (digits <= 10))
    )
