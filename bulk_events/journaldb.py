"""The run journal's SQLite database: connections, transactions, the schema and its migrations.

A journal's schema version is SQLite's ``user_version``; :func:`migrate` brings an older journal
up to :data:`SCHEMA_VERSION` in one transaction, and :func:`check_schema` refuses a journal of a
newer bulk-events or a database that is not a journal. :func:`translate_errors` turns what SQLite
or the OS raise into one-line errors that name the journal.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from bulk_events.errors import BulkEventsError, FileFormatError

__all__ = [
    "CHUNK",
    "READABLE_FROM",
    "SCHEMA_VERSION",
    "JournalDamaged",
    "JournalPart",
    "check_schema",
    "connect",
    "migrate",
    "row_batches",
    "statement_rows",
    "table_names",
    "transaction",
    "translate_errors",
    "utc_now",
]

SCHEMA_VERSION = 3
# The oldest schema a read-only reader (dry runs, inspect, status) understands: the events table
# is unchanged since 1, and what later versions added (contacts, progress columns) reads as absent.
READABLE_FROM = 1

# Keys (or rows) per statement: SQLite allows far more, but short lists keep each statement small
# and cheap to prepare.
CHUNK = 500
_BUSY_TIMEOUT_MS = 10_000


def row_batches(
    values: Sequence[object], fields: int, sizes: Iterable[int]
) -> Iterator[tuple[str, Sequence[object]]]:
    """Cut ``values`` (``fields`` of them to a row, in order) into multi-row statements of
    ``sizes`` rows: each statement's ``VALUES`` list of placeholders, and its parameters."""
    row = "(" + ", ".join("?" * fields) + ")"
    start = 0
    for size in sizes:
        end = start + size * fields
        yield ", ".join([row] * size), values[start:end]
        start = end


def statement_rows(count: int, most: int) -> list[int]:
    """How many rows each statement of a multi-row INSERT of ``count`` rows takes: ``most`` at
    a time, and the rest in powers of two, so that SQLite's statement cache (which keeps each
    shape of statement it prepared, about 1 KB a row) holds a few shapes, not one per count.

    >>> statement_rows(1100, 500)
    [500, 500, 64, 32, 4]
    """
    sizes = [most] * (count // most)
    rest = count % most
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


# Each entry migrates the schema from version N-1 to N, inside one transaction; later versions
# append here and bump SCHEMA_VERSION.
_MIGRATIONS: dict[int, str] = {
    1: """
        CREATE TABLE runs (
            id          INTEGER PRIMARY KEY,
            started_at  TEXT NOT NULL,
            finished_at TEXT,
            input       TEXT NOT NULL,
            target      TEXT NOT NULL,
            argv        TEXT NOT NULL DEFAULT '',
            exit_code   INTEGER,
            counts_json TEXT,
            pid         INTEGER NOT NULL
        );
        -- WITHOUT ROWID: the 16-byte key is the only lookup path, so the table is one B-tree
        -- ordered by key instead of a rowid table plus a separate key index.
        CREATE TABLE events (
            key         BLOB PRIMARY KEY,
            state       TEXT NOT NULL
                        CHECK (state IN ('inflight', 'sent', 'failed', 'unknown')),
            row         INTEGER,
            run_id      INTEGER REFERENCES runs (id),
            attempts    INTEGER NOT NULL DEFAULT 0,
            http_status INTEGER,
            error       TEXT NOT NULL DEFAULT '',
            sent_at     TEXT,
            updated_at  TEXT NOT NULL
        ) WITHOUT ROWID;
    """,
    # Contact history: which contact each event went to (a hash of destination and email or
    # phone) and a short digest of each variable's value, so that a changed row of a contact
    # who already received the event is recognised and its changed columns can be named.
    2: """
        CREATE TABLE contacts (
            key         BLOB PRIMARY KEY REFERENCES events (key),
            contact     BLOB NOT NULL,
            digests     BLOB NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX contacts_by_contact ON contacts (contact);
    """,
    # A run's progress while it goes, written about once a second, for `bulk-events status`.
    3: """
        ALTER TABLE runs ADD COLUMN updated_at TEXT;
        ALTER TABLE runs ADD COLUMN total INTEGER;
        ALTER TABLE runs ADD COLUMN rate REAL;
        ALTER TABLE runs ADD COLUMN paused_until TEXT;
        ALTER TABLE runs ADD COLUMN pause_reason TEXT;
        ALTER TABLE runs ADD COLUMN stopped TEXT;
        ALTER TABLE runs ADD COLUMN progress_json TEXT;
    """,
}


_LAST_SECOND: tuple[int, str] = (0, "")


def utc_now() -> str:
    """The current time as ISO 8601 UTC with seconds, e.g. ``2026-11-27T10:15:00Z``."""
    # Asked twice per event while sending: the text is made once per second.
    global _LAST_SECOND
    second = int(time.time())
    if second != _LAST_SECOND[0]:
        _LAST_SECOND = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _LAST_SECOND[1]


def connect(database: str, *, uri: bool) -> sqlite3.Connection:
    """A connection to the journal at ``database`` (a path, or a ``file:`` URI with ``uri``)."""
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT), so a write()
    # is exactly one transaction. check_same_thread=False: the mutex in Journal serialises use.
    conn = sqlite3.connect(database, uri=uri, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    return conn


def table_names(conn: sqlite3.Connection) -> set[str]:
    """The database's own tables (SQLite's internal ones left out)."""
    return {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }


def check_schema(path: Path, version: int, tables: set[str]) -> None:
    """Refuse a journal of a newer bulk-events, or a database that is not a journal."""
    if version > SCHEMA_VERSION:
        raise FileFormatError(
            f"the run journal {path} was written by a newer bulk-events "
            f"(schema {version}, this one knows {SCHEMA_VERSION}); upgrade bulk-events"
        )
    if version == 0 and tables:
        raise JournalDamaged(f"{path} is a SQLite database but not a bulk-events run journal")
    if version > 0 and not {"runs", "events"} <= tables:
        raise FileFormatError(f"{path} is not a bulk-events run journal (tables are missing)")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, begin: str | None = "BEGIN IMMEDIATE") -> Iterator[None]:
    """One explicit transaction: committed when the body returns, rolled back if it raises.

    The connection must be in autocommit mode (``isolation_level=None``). With ``begin=None``
    the body must be a single statement: SQLite runs it as a transaction of its own, committed
    (and with ``synchronous = FULL`` fsynced) before it returns, or undone whole.
    """
    if begin is None:
        yield
        return
    conn.execute(begin)
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    if conn.in_transaction:
        conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the journal's schema up to :data:`SCHEMA_VERSION`, all or nothing."""
    with transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        check_schema(path, version, table_names(conn))
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _split_statements(_MIGRATIONS[target]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")


def _split_statements(script: str) -> list[str]:
    # executescript() would COMMIT the open transaction first; run statement by statement so a
    # migration is all-or-nothing.
    without_comments = re.sub(r"--[^\n]*", "", script)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


@contextlib.contextmanager
def translate_errors(
    path: Path, what: str, error: type[BulkEventsError] = FileFormatError
) -> Iterator[None]:
    """Turn a SQLite or OS error into a one-line ``error`` that names the journal.

    Opening uses FileFormatError (exit 2: nothing was sent); writing during a run uses
    StorageError (exit 74: rows may have been sent), a full disk included.
    """
    try:
        yield
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            raise JournalDamaged(
                f"the run journal {path} is damaged or not a database ({exc}); "
                "restore it from a backup, or pass --fresh to move it aside and start afresh "
                "(rows it recorded as sent would then be sent again)"
            ) from exc
        raise error(f"{what} {path}: {exc}") from exc
    except OSError as exc:
        raise error(f"{what} {path}: {exc.strerror or exc}") from exc


class JournalPart:
    """What the parts of :class:`~bulk_events.journal.Journal` (its events, runs and contact
    history, each in a module of its own) use of the journal, which defines all of it."""

    if TYPE_CHECKING:

        def _reading(self) -> AbstractContextManager[sqlite3.Connection | None]: ...
        def _writing(
            self, what: str, *, statements: int = 2
        ) -> AbstractContextManager[sqlite3.Connection]: ...
        def _rows_per_statement(self, fields: int, most: int) -> int: ...


class JournalDamaged(FileFormatError):
    """A journal file that is empty, cut short or not a journal: refused, never started over."""
