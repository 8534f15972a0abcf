"""What a run tells its caller while it goes: typed events, delivered to an ``on_event`` callback.

The library never prints; the command line renders these (announcements, the progress bar, the
summary), and a Python caller may ignore them or log them::

    def show(event: Event) -> None:
        if isinstance(event, Progress):
            bar.update(1)

    bulk_events.import_file("customers.csv", event="registration", on_event=show)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .outcome import Outcome

if TYPE_CHECKING:
    from .importer import RunResult


@dataclass(frozen=True, slots=True)
class Detected:
    """The file is open: what the reader found (format, encoding, delimiter, sheet)."""

    input_name: str
    description: str
    row_estimate: int | None = None  # for a progress bar; may count blank rows too


@dataclass(frozen=True, slots=True)
class Recovered:
    """Rows an earlier run left in flight: now unknown, not resent without --retry-unknown."""

    rows: int


@dataclass(frozen=True, slots=True)
class Resuming:
    """Earlier runs already sent rows to this destination: they will be skipped."""

    already_sent: int
    remaining: int | None  # of this file's rows, about (the file's row estimate less those)


@dataclass(frozen=True, slots=True)
class Waiting:
    """Another run holds the journal; this one waits (``--wait``)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Stopping:
    """A stop was asked for (a signal): ``in_flight`` says whether requests are being finished."""

    cause: str  # "Ctrl-C", "SIGTERM"
    in_flight: bool


@dataclass(frozen=True, slots=True)
class Progress:
    """One row is decided."""

    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Finished:
    """The run is over; the report is written."""

    result: RunResult


Event = Detected | Recovered | Resuming | Waiting | Stopping | Progress | Finished
Emit = Callable[[Event], None]

__all__ = [
    "Detected",
    "Emit",
    "Event",
    "Finished",
    "Progress",
    "Recovered",
    "Resuming",
    "Stopping",
    "Waiting",
]
