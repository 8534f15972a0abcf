"""Before sending: validate a chunk, key its bodies, and decide each row's fate from what the file
and the journal say: invalid, duplicate, already sent, unanswered before, not selected, or a Job.

Everything here is CPU- or disk-bound, so the pipeline runs :class:`Triage` in a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .delivery.deliverer import Job
from .journal import Entry, Journal, State
from .options import Selection
from .outcome import Outcome, SkipReason, Status
from .payload import build_bodies, event_key
from .schema import Layout, RowValidator
from .seen import SeenKeys


@dataclass
class Prepared:
    """One chunk, validated and keyed."""

    frame: pd.DataFrame  # the original cells, for the report
    rows: list[int]
    bodies: list[dict[str, Any] | None]
    errors: dict[int, list[str]]
    positions: list[int] = field(default_factory=list)  # indexes of rows with a body
    keys: list[bytes] = field(default_factory=list)  # per position
    firsts: list[int | None] = field(default_factory=list)  # per position: earlier identical row
    entries: dict[bytes, Entry] = field(default_factory=dict)  # what the journal knows


class Triage:
    """Validates, keys and classifies chunk after chunk of one file (one instance per run)."""

    def __init__(
        self,
        layout: Layout,
        validator: RowValidator,
        *,
        identity: str,
        selection: Selection,
        journal: Journal,
    ) -> None:
        self.layout = layout
        self.validator = validator
        self.identity = identity
        self.selection = selection
        self.journal = journal
        self.seen = SeenKeys()

    def close(self) -> None:
        self.seen.close()

    def prepare(self, chunk: pd.DataFrame) -> Prepared:
        frame = chunk
        validated = self.validator.validate(frame)
        # A row of cells holding only spaces looks blank in a spreadsheet program: treat it as
        # one (not reported), like the truly empty rows the reader already leaves out.
        blank = validated.blank
        if blank is not None and blank.any():
            frame = frame[~blank]
            validated = validated.without(blank[blank].index)
        bodies = build_bodies(validated, self.layout)
        prepared = Prepared(frame, frame.index.tolist(), bodies, validated.errors)
        prepared.positions = [i for i, b in enumerate(bodies) if b is not None]
        if prepared.positions:
            self._identify(prepared)
        return prepared

    def _identify(self, prepared: Prepared) -> None:
        """Key every body; find in-file duplicates and what earlier runs did with each key."""
        rows = [prepared.rows[i] for i in prepared.positions]
        bodies = [b for b in prepared.bodies if b is not None]
        base = [event_key(self.identity, b) for b in bodies]
        firsts = self.seen.first_rows(base, rows)
        keys = list(base)
        if self.selection.allow_duplicates:
            # The n-th identical body in a file gets occurrence number n in its key, so each
            # occurrence is sent once, and re-sorting the file does not change which are sent.
            occurrence = 1
            todo = [j for j, f in enumerate(firsts) if f is not None]
            while todo:
                candidates = [event_key(self.identity, bodies[j], occurrence) for j in todo]
                claimed = self.seen.first_rows(candidates, [rows[j] for j in todo])
                for j, key in zip(todo, candidates, strict=True):
                    keys[j] = key
                todo = [j for j, f in zip(todo, claimed, strict=True) if f is not None]
                occurrence += 1
        prepared.keys = keys
        prepared.firsts = firsts
        prepared.entries = self.journal.lookup(keys)

    def classify(self, prepared: Prepared) -> Iterator[tuple[int, Outcome | Job]]:
        """Each row's fate by its index in the chunk: an outcome already, or a Job to send."""
        for i, row in enumerate(prepared.rows):
            if prepared.bodies[i] is None:
                reasons = prepared.errors.get(row, ["invalid"])
                yield i, Outcome(row, Status.INVALID, "; ".join(reasons))
        for j, i in enumerate(prepared.positions):
            body = prepared.bodies[i]
            assert body is not None
            yield i, self._decide(prepared.rows[i], prepared.keys[j], body, prepared, j)

    def _decide(
        self, row: int, key: bytes, body: dict[str, Any], prepared: Prepared, j: int
    ) -> Outcome | Job:
        s = self.selection
        first = prepared.firsts[j]
        if first is not None and not s.allow_duplicates:
            return Outcome(
                row,
                Status.SKIPPED,
                f"duplicate of row {first} (same event); --allow-duplicates sends both",
                reason=SkipReason.DUPLICATE,
            )
        entry = prepared.entries.get(key)
        state = entry.state if entry is not None else None
        if entry is not None and state is State.SENT:
            return Outcome(
                row,
                Status.SKIPPED,
                f"already sent at {entry.sent_at} (row {entry.row} then)",
                entry.http_status,
                entry.attempts,
                entry.sent_at,
                reason=SkipReason.ALREADY_SENT,
            )
        if entry is not None and state in (State.UNKNOWN, State.INFLIGHT) and not s.retry_unknown:
            return Outcome(
                row,
                Status.UNKNOWN,
                "sent by an earlier run with no answer: the service may have taken it; "
                "not resent without --retry-unknown",
                entry.http_status,
                entry.attempts,
                reason=SkipReason.UNANSWERED_BEFORE,
            )
        if s.only_failed and state not in (State.FAILED, State.UNKNOWN):
            return Outcome(
                row,
                Status.SKIPPED,
                "not selected: --only-failed sends only rows that failed before",
                reason=SkipReason.NOT_SELECTED,
            )
        return Job(row=row, key=key, body=body)
