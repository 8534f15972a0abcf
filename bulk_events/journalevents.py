"""The run journal's ``events`` table: each key's state, looked up and written in batches.

A key's life and what each state means are in :mod:`bulk_events.journal`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from .journaldb import CHUNK, JournalPart, row_batches, statement_rows, utc_now

__all__ = ["STATES", "Entry", "EventRecords", "Mark", "State"]


class State(StrEnum):
    """Where a key is in its life (see :mod:`bulk_events.journal`); beside the report's
    ``Status``."""

    INFLIGHT = "inflight"  # its request is (or was, when a run crashed) on its way
    SENT = "sent"  # final
    FAILED = "failed"  # safe to send again
    UNKNOWN = "unknown"  # may have arrived: resent only with --retry-unknown


STATES = tuple(State)

# One statement inserts and updates (SQLite >= 3.24). A batch of marks is one statement, which
# SQLite applies in its own transaction (autocommit): the rows of its VALUES list apply in
# order, so a batch may take a key through several states. The writer thread pays for every time
# it releases the GIL to SQLite and takes it back from a busy event loop; executemany() inside
# BEGIN ... COMMIT released it twice per mark and three more times per batch.
#
# "sent" is final. An update that would move a sent key to another state sets its state to NULL,
# which the column's NOT NULL refuses: SQLite then undoes the whole statement, so the batch is
# refused whole, as the rule needs, without a second statement to check it.
_UPSERT_HEAD = (
    "INSERT INTO events (key, state, row, run_id, attempts, http_status, error, sent_at, "
    "updated_at) VALUES "
)
_UPSERT_TAIL = """
    ON CONFLICT (key) DO UPDATE SET
        state = CASE WHEN events.state = 'sent' AND excluded.state <> 'sent'
                     THEN NULL ELSE excluded.state END,
        row = excluded.row,
        run_id = excluded.run_id,
        attempts = excluded.attempts,
        http_status = excluded.http_status,
        error = excluded.error,
        sent_at = excluded.sent_at,
        updated_at = excluded.updated_at
"""
_MARK_FIELDS = 9
# At most so many marks per statement (SQLite's own limit on parameters may lower it): a batch
# of up to this many, as many as --concurrency makes in one loop turn, is one statement of its
# own length; SQLite's statement cache then holds at most this many of them (about 1 KB a row).
# A longer batch is written in statements of this length and the rest in powers of two.
_MARKS_PER_STATEMENT = 128


class _Refused(Exception):
    """A batch of marks broke the rule that "sent" is final (see :func:`_unsent`)."""


def _unsent(exc: sqlite3.IntegrityError) -> bool:
    """Whether SQLite refused a statement for moving a sent key to another state."""
    return "events.state" in str(exc)


_ENTRY_COLUMNS = "key, state, row, run_id, attempts, http_status, error, sent_at, updated_at"


@dataclass(frozen=True, slots=True)
class Entry:
    """What the journal knows about one key."""

    key: bytes
    state: State
    row: int | None
    run_id: int | None
    attempts: int
    http_status: int | None
    error: str
    sent_at: str | None
    updated_at: str


@dataclass(frozen=True, slots=True)
class Mark:
    """One state change to record for a key."""

    key: bytes
    state: State | str
    row: int
    attempts: int = 0
    http_status: int | None = None
    error: str = ""
    sent_at: str | None = None


class EventRecords(JournalPart):
    """The events part of :class:`~bulk_events.journal.Journal`."""

    def lookup(self, keys: Sequence[bytes]) -> dict[bytes, Entry]:
        """What the journal knows about ``keys``; keys it has never seen are absent."""
        unique = list(dict.fromkeys(keys))
        found: dict[bytes, Entry] = {}
        with self._reading() as conn:
            if conn is None:
                return found
        for start in range(0, len(unique), CHUNK):
            chunk = unique[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            # The mutex is taken per chunk, so a long lookup in a worker thread holds up a
            # write() from the event loop by one chunk (milliseconds), not the whole lookup.
            with self._reading() as conn:
                assert conn is not None  # only close() clears it, and then _reading raises
                rows = conn.execute(
                    f"SELECT {_ENTRY_COLUMNS} FROM events WHERE key IN ({marks})", chunk
                ).fetchall()
            for key, state, *rest in rows:
                found[key] = Entry(key, State(state), *rest)
        return found

    def write(self, marks: Sequence[Mark], run_id: int) -> None:
        """Record ``marks`` in one transaction, committed before this returns.

        Marks apply in order, so one batch may take a key through several states. ``sent`` is
        final: a mark that would move a sent key to another state is a bug in the caller, and
        the whole batch is refused with :class:`ValueError`.
        """
        if not marks:
            return
        now = utc_now()
        params: list[object] = []
        for m in marks:
            if m.state not in STATES:
                raise ValueError(f"unknown journal state {m.state!r}; expected one of {STATES}")
            if not isinstance(m.key, bytes):
                raise TypeError(f"a journal key must be bytes, not {type(m.key).__name__}")
            params += (m.key, m.state, m.row, run_id, m.attempts, m.http_status, m.error)
            params += (m.sent_at, now)
        most = self._rows_per_statement(_MARK_FIELDS, _MARKS_PER_STATEMENT)
        sizes = [len(marks)] if len(marks) <= most else statement_rows(len(marks), most)
        try:
            with self._writing("cannot write the run journal", statements=len(sizes)) as conn:
                for rows, part in row_batches(params, _MARK_FIELDS, sizes):
                    try:
                        conn.execute(_UPSERT_HEAD + rows + _UPSERT_TAIL, part)
                    except sqlite3.IntegrityError as exc:
                        if not _unsent(exc):
                            raise
                        raise _Refused from None  # rolled back whole, on the way out
        except _Refused:
            refused = self._refused(marks)
            where = "" if refused is None else f" (key {refused.key.hex()}, row {refused.row})"
            raise ValueError(
                f"journal refused a batch that moves a sent key to another state{where}: "
                "a sent row is final"
            ) from None

    def _refused(self, marks: Sequence[Mark]) -> Mark | None:
        """The first of ``marks`` that would move a sent key to another state, given what the
        journal holds (the batch itself was rolled back) and the batch's own earlier marks."""
        states = {key: entry.state for key, entry in self.lookup([m.key for m in marks]).items()}
        for m in marks:
            if m.state != "sent" and states.get(m.key) == "sent":
                return m
            states[m.key] = State(m.state)
        return None

    def counts(self) -> dict[str, int]:
        """How many keys are in each state (every state is present, possibly 0)."""
        result = dict.fromkeys((s.value for s in State), 0)
        with self._reading() as conn:
            if conn is None:
                return result
            for state, number in conn.execute("SELECT state, count(*) FROM events GROUP BY state"):
                result[state] = number
        return result

    def sent_by_earlier_runs(self, *, input: str, target: str) -> int:
        """How many keys earlier runs over ``input`` to ``target`` left ``sent`` (a journal of one
        destination also holds what other files sent there: those are not counted)."""
        with self._reading() as conn:
            if conn is None:
                return 0
            (number,) = conn.execute(
                "SELECT count(*) FROM events WHERE state = 'sent' AND run_id IN "
                "(SELECT id FROM runs WHERE input = ? AND target = ?)",
                (input, target),
            ).fetchone()
        return int(number)

    def keys_in_state(self, state: str) -> Iterator[bytes]:
        """Every key in ``state``, in key order.

        Reads in pages, so the journal may be written between two items without holding a read
        transaction open (which would keep WAL checkpoints from finishing).
        """
        if state not in STATES:
            raise ValueError(f"unknown journal state {state!r}; expected one of {STATES}")
        return self._pages_of_keys(state)

    def _pages_of_keys(self, state: str) -> Iterator[bytes]:
        last = b""
        while True:
            with self._reading() as conn:
                if conn is None:
                    return
                page = [
                    key
                    for (key,) in conn.execute(
                        "SELECT key FROM events WHERE state = ? AND key > ? ORDER BY key LIMIT ?",
                        (state, last, 1000),
                    )
                ]
            yield from page
            if len(page) < 1000:
                return
            last = page[-1]
