"""Where the header is: the first row, or the row below a title that names the contact column.

A sheet often starts with a title ("Customers, May 2024") and a blank row above its header.
:func:`find_header` takes the first non-blank row when it names an email or phone column (or
when no row does); otherwise the one row below it that does and has data under it. When two rows
could be the header it refuses, naming ``--header-row`` and the rows to choose from: it never
guesses. ``header_row`` given says where the header is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bulk_events.errors import FileFormatError
from bulk_events.layout import ALIASES, fold

# Characters a terminal would act on or a one-line message cannot hold: C0 and C1 controls, DEL,
# the Unicode line and paragraph separators.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(found: re.Match[str]) -> str:
    ch = found.group()
    if ch in _NAMED:
        return _NAMED[ch]
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def _edge(ch: str) -> bool:
    """Surrounding whitespace, which names are compared without: kept as written."""
    return ch in "\t\n\r" or (ch.isspace() and not _INVISIBLE.match(ch))


def visible_name(text: str) -> str:
    r"""A header (or a name given for one) in the one form it is compared, printed and sent in:
    control characters and line breaks inside it shown escaped, so that every message stays one
    line and the printed name can be given back to ``--map``. Surrounding whitespace is left as it
    is (names are compared without it), and escaping twice changes nothing.

    >>> visible_name("Data\x1b[32m1"), visible_name("First\nname"), visible_name(" Email\n")
    ('Data\\x1b[32m1', 'First\\nname', ' Email\n')
    """
    if not _INVISIBLE.search(text) or not text.strip():
        return text
    start, end = 0, len(text)
    while start < end and _edge(text[start]):
        start += 1
    while end > start and _edge(text[end - 1]):
        end -= 1
    return text[:start] + _INVISIBLE.sub(_escape, text[start:end]) + text[end:]


LOOK_AHEAD = 20  # non-blank rows looked at for a header below a title
_CONTACT = ALIASES["email"] | ALIASES["phone"]


def names_a_contact_column(cells: list[str]) -> bool:
    """Whether a row holds a header cell for email or phone (``E-mail``, ``Phone number``...)."""
    return any(fold(c) in _CONTACT for c in cells if c)


def find_header(
    rows: Iterable[tuple[int, list[str]]], header_row: int | None, where: str
) -> tuple[int | None, list[str]]:
    """(row number, cells) of the header among ``rows`` (row number, cells), or (None, []) when
    every row is blank. ``where`` names the sheet in messages (``sheet "Data" in list.xlsx``)."""
    if header_row is not None:
        for number, cells in rows:
            if number == header_row:
                if not any(c.strip() for c in cells):
                    raise FileFormatError(f"{where}: row {header_row} (--header-row) is blank")
                return number, cells
            if number > header_row:
                break
        raise FileFormatError(f"{where} has no row {header_row} (--header-row)")
    seen: list[tuple[int, list[str]]] = []
    for number, cells in rows:
        if not any(c.strip() for c in cells):
            continue
        seen.append((number, cells))
        if len(seen) > LOOK_AHEAD:
            break
    if not seen:
        return None, []
    first = seen[0]
    if names_a_contact_column(first[1]):
        return first
    # A candidate names a contact column and has a non-blank row under it.
    candidates = [i for i in range(1, len(seen) - 1) if names_a_contact_column(seen[i][1])]
    if not candidates:
        return first
    if len(candidates) > 1:
        a, b = (seen[i][0] for i in candidates[:2])
        raise FileFormatError(
            f"{where}: rows {a} and {b} both look like the header; "
            f"say which with --header-row {a} or --header-row {b}"
        )
    at = candidates[0]
    number, cells = seen[at]
    above_number, above = seen[at - 1]
    if sum(1 for c in above if c.strip()) > 1:
        raise FileFormatError(
            f"{where}: row {number} looks like the header, but row {above_number} above it holds "
            f"several cells (a second header row?); say which with --header-row {number} "
            f"or --header-row {above_number}"
        )
    return number, cells
