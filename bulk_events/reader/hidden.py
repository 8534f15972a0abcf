"""Rows and columns a sheet hides, and what to do with them: :func:`hidden_policy`.

Excel hides rows by hand or through an autofilter, and columns by hand; both are recorded in the
sheet (and read by :mod:`.sheetxml`). What a sheet hides is often what must not go out ("do not
contact" rows, internal notes), so a table that hides anything is not read until the caller says
``"skip"`` (read only what the sheet shows) or ``"include"`` (read everything).
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from bulk_events.errors import FileFormatError, UsageError

from .table import Source, Table

CHOICES = ("skip", "include")
# The key of ``frame.attrs`` under which a chunk read with ``skip`` lists the sheet row numbers it
# left out because the sheet hides them (so that no row is lost without a word).
HIDDEN_ROWS = "hidden_rows"


def hidden_policy(table: Table, choice: str | None) -> Table:
    """``table`` read by the rule ``choice`` gives for hidden rows and columns.

    ``None`` on a table that hides nothing returns it as it is; on one that hides rows or columns
    it raises a one-line :class:`FileFormatError` naming how many and both choices. ``"include"``
    returns the table as it is; ``"skip"`` one without the hidden columns whose chunks leave out
    the hidden rows, listing them under ``frame.attrs[HIDDEN_ROWS]``.

        >>> table = hidden_policy(open_table("list.xlsx"), "skip")   # doctest: +SKIP
    """
    if choice is not None and choice not in CHOICES:
        raise UsageError(f'--hidden must be "skip" or "include", not "{choice}"')
    rows, columns = table.hidden_rows, table.hidden_columns
    if not rows and not columns:
        return table
    if choice == "include":
        return table
    if choice is None:
        raise FileFormatError(f"{table.path.name} {describe_hidden(table)}; {_CHOOSE}")
    kept = [c for c in table.columns if c not in set(columns)]
    source = _ShownSource(table._source, rows, kept)
    shown = Table(table.path, table.detected, kept, source)
    shown.row_estimate = table.row_estimate
    return shown


_CHOOSE = (
    "say what to send: --hidden skip (only what the sheet shows) "
    "or --hidden include (every row and column)"
)


def describe_hidden(table: Table) -> str:
    """``hides 3 rows (5, 7, 9) and column "Note"``: what a table hides, for a person."""
    parts = []
    rows = sorted(table.hidden_rows)
    if rows:
        listed = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
        parts.append(f"{len(rows)} row{'s' if len(rows) != 1 else ''} ({listed})")
    columns = table.hidden_columns
    if columns:
        names = ", ".join(f'"{c.strip()}"' for c in columns)
        parts.append(f"column{'s' if len(columns) != 1 else ''} {names}")
    return "hides " + " and ".join(parts) + " (hidden in the sheet or by a filter)"


class _ShownSource:
    """The rows and columns a sheet shows."""

    def __init__(self, inner: Source, hidden_rows: frozenset[int], columns: list[str]):
        self.inner = inner
        self.hidden_rows = hidden_rows
        self.columns = columns

    def frames(self, size: int) -> Iterator[pd.DataFrame]:
        hidden = self.hidden_rows
        for chunk in self.inner.frames(size):
            attrs = dict(chunk.attrs)
            dropped = chunk.index.isin(list(hidden)) if hidden else None
            frame = chunk[self.columns]
            if dropped is not None and dropped.any():
                attrs[HIDDEN_ROWS] = [int(r) for r in chunk.index[dropped]]
                frame = frame[~dropped]
            frame.attrs = attrs
            if len(frame) or attrs.get(HIDDEN_ROWS):
                yield frame

    def close(self) -> None:
        self.inner.close()
