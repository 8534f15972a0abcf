"""What happened to one row: an immutable value the report renders."""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum


class Status(StrEnum):
    """The status vocabulary of a row, shared by the report, the journal and the summary."""

    VALID = "valid"  # dry run: would be sent
    SENT = "sent"  # the service accepted it
    FAILED = "failed"  # the service refused it, or retries ran out; safe to try again
    INVALID = "invalid"  # the row's data does not pass validation; never sent
    SKIPPED = "skipped"  # a duplicate, or already sent by an earlier run
    UNKNOWN = "unknown"  # sent, but no answer came: the service may have taken it
    PENDING = "pending"  # never attempted (run stopped early); the next run sends it


OK_STATUSES = frozenset({Status.VALID, Status.SENT, Status.SKIPPED})


class SkipReason(StrEnum):
    """Why a row was decided without being sent (its ``error`` says it to people)."""

    DUPLICATE = "duplicate"  # the same event as an earlier row of the file
    ALREADY_SENT = "already_sent"  # an earlier run sent it
    NOT_SELECTED = "not_selected"  # --only-failed, and it did not fail before
    UNANSWERED_BEFORE = "unanswered_before"  # an earlier run sent it and got no answer
    CHANGED_CONTACT = "changed_contact"  # its contact got this event before, with other cells
    HIDDEN = "hidden"  # the sheet hides the row, and --hidden skip sends only what it shows


@dataclass(frozen=True)
class Outcome:
    """The final state of one input row.

    ``row`` is the row number a person sees in a spreadsheet program (the header is row 1).
    """

    row: int
    status: Status
    error: str = ""
    http_status: int | None = None
    attempts: int = 0
    sent_at: str | None = None
    response: str = ""
    reason: SkipReason | None = None


def _valid_maker() -> Callable[[int], Outcome]:
    # Outcome(row, Status.VALID), made by filling its __dict__ directly: a frozen dataclass's
    # __init__ goes through object.__setattr__ field by field, and a dry run makes one per row.
    # The fields left at their defaults are read from the class, as they are for any instance
    # whose __init__ was not run (the instance holds only what differs).
    new = object.__new__
    status = Status.VALID

    def valid(row: int) -> Outcome:
        outcome = new(Outcome)
        fields_ = outcome.__dict__
        fields_["row"] = row
        fields_["status"] = status
        return outcome

    return valid


valid = _valid_maker()
valid.__doc__ = """``Outcome(row, Status.VALID)``, made faster: a dry run's row that would be sent."""


def not_attempted(row: int, why: str = "the run stopped early") -> Outcome:
    """The outcome of a row the run never tried to send: pending, so the next run sends it."""
    return Outcome(row, Status.PENDING, f"not attempted: {why}")


def with_warning(outcome: Outcome, warning: str) -> Outcome:
    """A sent (or, in a dry run, valid) row that went out not quite as the file has it (a bad
    phone left out): its ``error`` holds the warning. Other outcomes keep their own error."""
    if not warning or outcome.error or outcome.status not in (Status.SENT, Status.VALID):
        return outcome
    return replace(outcome, error=warning)


status_of = operator.attrgetter("status")
reason_of = operator.attrgetter("reason")


def count_values(counts: Counter[str], members: Iterable[StrEnum | None]) -> None:
    """Add to ``counts`` how often each member's value comes up in ``members`` (None left
    out): a chunk's statuses or reasons counted in C, not row by row.

    >>> counts = Counter(); count_values(counts, [Status.VALID, None, Status.VALID])
    >>> counts
    Counter({'valid': 2})
    """
    for member, n in Counter(members).items():
        if member is not None:
            counts[member.value] += n
