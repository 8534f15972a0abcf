"""What a body holds and what identifies an event: ``--exclude``, ``--columns``, ``--event-column``
and ``--key``, applied to the layout :func:`~bulk_events.layout.plan_columns` made.

>>> from bulk_events.layout import plan_columns
>>> chosen = choose_columns(plan_columns(["Email", "Name", "LEID"]), exclude=["leid"])
>>> [c.name for c in chosen.layout.columns], chosen.left_out
(['email', 'Name'], ('LEID',))
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .errors import ColumnError, UsageError
from .layout import DEFAULT_AUTOMATION_ID_SOURCE, ColumnPlan, Layout

# What a REST API event name may be (it becomes part of the request's path).
EVENT_NAME = re.compile(r"[\w.-]{1,100}")


@dataclass(frozen=True)
class Chosen:
    """The layout of what bodies hold, and the columns that are read but not sent."""

    layout: Layout
    left_out: tuple[str, ...] = ()  # headers (as written) of columns no body holds
    event: str | None = None  # header of the column naming each row's event
    key: tuple[str, ...] = ()  # body names of the --key columns, in the order given


def choose_columns(
    layout: Layout,
    *,
    exclude: Sequence[str] = (),
    columns: Sequence[str] | None = None,
    event_column: str | None = None,
    key: Sequence[str] = (),
) -> Chosen:
    """Apply the user's choice of columns to ``layout``; names match a header or the name a
    column is sent as (``email`` for an "E-mail" column), ignoring case and surrounding spaces."""
    plans = [c for c in layout.columns if c.source != DEFAULT_AUTOMATION_ID_SOURCE]

    def find(name: str, option: str) -> ColumnPlan:
        wanted = name.strip().casefold()
        for c in plans:
            if wanted in (c.source.strip().casefold(), c.name.casefold()):
                return c
        shown = ", ".join(f'"{c.source.strip()}"' for c in plans)
        raise ColumnError(
            f'{option} names column "{name}", which the file does not have; columns: {shown}'
        )

    event = find(event_column, "--event-column") if event_column else None
    if event is not None and event.role != "variable":
        raise UsageError(f"--event-column {event_column}: that is the {event.role} column")
    dropped = {find(n, "--exclude").source for n in exclude}
    if columns is not None:
        wanted = {find(n, "--columns").source for n in columns}
        dropped |= {c.source for c in plans if c.role == "variable" and c.source not in wanted}
    if event is not None:
        dropped.add(event.source)
    kept = tuple(c for c in layout.columns if c.source not in dropped)
    if not any(c.role in ("email", "phone") for c in kept):
        raise UsageError("--exclude leaves no email or phone column: a body needs one of them")
    names = []
    for n in key:
        c = find(n, "--key")
        if c.source in dropped:
            raise UsageError(
                f'--key "{n}": that column is not sent, so it cannot identify an event'
            )
        names.append(c.name)
    left_out = tuple(c.source for c in plans if c.source in dropped)
    return Chosen(
        replace(layout, columns=kept),
        left_out=left_out,
        event=event.source if event else None,
        key=tuple(dict.fromkeys(names)),
    )


def event_name_problem(name: str, column: str) -> str:
    """Why a cell cannot name a REST API event (``""`` when it can)."""
    if not name:
        return f'the event cell (column "{column.strip()}") is empty: it names the row\'s event'
    if not EVENT_NAME.fullmatch(name):
        shown = name if len(name) <= 60 else name[:59] + "…"
        return (
            f'event "{shown}" (column "{column.strip()}") is not an event name '
            "(letters, digits, _ . - only)"
        )
    return ""
