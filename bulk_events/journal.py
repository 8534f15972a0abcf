"""The run journal: a SQLite file that makes every run resumable and safe to repeat.

SendPulse has no idempotency key, so the journal is the only thing that keeps a row from being
sent twice. Each row is identified by a ``key`` (a 16-byte hash computed elsewhere) whose life is::

    (absent) -> inflight -> sent | failed | unknown
    failed | unknown -> inflight        (a later attempt)

A key is marked ``inflight`` and committed *before* its request goes out; its outcome is committed
when it comes. ``sent`` is final. A key still ``inflight`` when a run opens the journal was left by
a crash, so :meth:`Journal.open` turns it into ``unknown`` (it may or may not have been sent).

The journal holds no secrets and no personal data: only key hashes, row numbers, statuses, short
error texts and timestamps. It is private all the same (directory 0700, files 0600).

Example::

    with Journal.open(default_journal_path(target, "signup")) as journal:
        run_id = journal.start_run(input="contacts.csv", target="event order_paid")
        known = journal.lookup(keys)
        journal.write([Mark(key, "inflight", row=2, attempts=1)], run_id)
        ...  # send the request
        journal.write([Mark(key, "sent", row=2, attempts=1, http_status=200, sent_at=now)], run_id)
        journal.finish_run(run_id, journal.counts(), exit_code=0)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Self

from bulk_events.errors import BulkEventsError, FileFormatError, StorageError
from bulk_events.files import acquire_lock, create_private_file, lock_file, make_private_dirs

__all__ = [
    "SCHEMA_VERSION",
    "STATES",
    "Entry",
    "Journal",
    "Mark",
    "State",
    "default_journal_path",
    "destination_lock_path",
    "utc_now",
]


class State(StrEnum):
    """Where a key is in its life (see the module docstring); beside the report's ``Status``."""

    INFLIGHT = "inflight"  # its request is (or was, when a run crashed) on its way
    SENT = "sent"  # final
    FAILED = "failed"  # safe to send again
    UNKNOWN = "unknown"  # may have arrived: resent only with --retry-unknown


STATES = tuple(State)
SCHEMA_VERSION = 3
# The oldest schema a read-only reader (dry runs, inspect, status) understands: the events table
# is unchanged since 1, and what later versions added (contacts, progress columns) reads as absent.
_READABLE_FROM = 1

# SQLite's default limit is far higher, but short IN lists keep each statement small and cheap
# to prepare; the brief of the project fixes 500.
_CHUNK = 500
_BUSY_TIMEOUT_MS = 10_000
_RECOVERED_ERROR = "the run stopped before an answer came"

log = logging.getLogger(__name__)

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

# One statement for insert and update (SQLite >= 3.24). The WHERE makes ``sent`` final: an
# attempt to move a sent key elsewhere changes no row, which write() detects and refuses.
_UPSERT = """
    INSERT INTO events (key, state, row, run_id, attempts, http_status, error, sent_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET
        state = excluded.state,
        row = excluded.row,
        run_id = excluded.run_id,
        attempts = excluded.attempts,
        http_status = excluded.http_status,
        error = excluded.error,
        sent_at = excluded.sent_at,
        updated_at = excluded.updated_at
    WHERE events.state <> 'sent' OR excluded.state = 'sent'
"""

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


def utc_now() -> str:
    """The current time as ISO 8601 UTC with seconds, e.g. ``2026-11-27T10:15:00Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_journal_path(target_identity: str, label: str = "events") -> Path:
    """The per-user journal for one destination (an API event, or an event URL).

    ``$XDG_STATE_HOME/bulk-events/<label>-<12 hex>.sqlite`` (``~/.local/state`` when unset), the
    hex from sha256 of ``target_identity``, which may contain a secret: only its hash is in the name.

    One journal per destination, not per input file: a row is recognised by what it sends and
    where, so a renamed file, a dated nightly export (``customers-2026-11-27.csv``) or a report
    fed back in is still checked against every row already sent to that event::

        >>> default_journal_path("api:https://api.sendpulse.com/events/name/signup", "signup")  # doctest: +SKIP
        PosixPath('/home/me/.local/state/bulk-events/signup-3f9a0c1d2e4b.sqlite')
    """
    digest = _digest(target_identity)[:12]
    # The label is the user's own event name: keep letters (any script), digits, '.', '_', '-'.
    stem = re.sub(r"[^\w.-]+", "_", label).strip("._")[:64] or "events"
    return _state_dir() / f"{stem}-{digest}.sqlite"


def destination_lock_path(target_identity: str) -> Path:
    """The lock file a run holds for its destination, whichever journal it uses.

    ``$XDG_STATE_HOME/bulk-events/locks/<16 hex>.lock``, the hex from sha256 of the identity:
    two runs to one event can never overlap, even with two different ``--state`` files.
    """
    return _state_dir() / "locks" / f"{_digest(target_identity)[:16]}.lock"


def _state_dir() -> Path:
    state_home = os.environ.get("XDG_STATE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(state_home) if os.path.isabs(state_home) else Path.home() / ".local" / "state"
    return base / "bulk-events"


def _digest(identity: str) -> str:
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()


class Journal:
    """The run journal of one input file and target; see the module docstring.

    Open it with :meth:`open`. Every method is short and synchronous (fit to call from an event
    loop); one instance may be shared by threads, but is meant for one process at a time, which
    :meth:`open` enforces with a lock file.
    """

    path: Path
    recovered: int
    readonly: bool

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection | None,
        lock_fd: int | None,
        *,
        readonly: bool,
        recovered: int = 0,
    ) -> None:
        """Use :meth:`open`; this only stores what it prepared."""
        self.path = path
        self.readonly = readonly
        self.recovered = recovered
        self._conn = conn
        self._lock_fds = [] if lock_fd is None else [lock_fd]
        self._closed = False
        self._mutex = threading.Lock()
        self._file_id = _file_id(path) if conn is not None and not readonly else None
        self.fault = ""  # why the journal stopped being usable mid-run, for the summary

    def __repr__(self) -> str:
        mode = "readonly" if self.readonly else "writable"
        return f"<Journal {str(self.path)!r} {mode}>"

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        wait: bool = False,
        readonly: bool = False,
        destination: str | None = None,
        fresh: bool = False,
    ) -> Journal:
        """Open (creating if needed) the journal at ``path``.

        A writable journal takes an exclusive lock on ``<real path>.lock`` (symlinks resolved)
        for its whole life, so two runs can never share one journal; with ``destination`` (the
        Target's identity) it first takes that destination's lock in the per-user state folder
        (:func:`destination_lock_path`), so two journals for one event are never used at once.
        If another process holds either, this raises :class:`JournalBusyError` naming it, or
        with ``wait=True`` blocks until it is free. It then turns keys left ``inflight`` by a
        crashed run into ``unknown`` and counts them in ``recovered``.

        A file that exists but is empty or not a journal is refused with
        :class:`FileFormatError`, never silently started over (that would send every row again);
        with ``fresh=True`` it is moved aside to ``<name>.<stamp>.damaged`` and a new journal
        made. A new journal is built beside its path and renamed into place, so a journal at
        its path is always whole.

        ``readonly=True`` (dry runs, ``inspect``) takes no lock, recovers nothing and never
        creates the file: a missing journal reads as an empty one. A key may then show as
        ``inflight`` (a live run, or one that crashed): treat it as ``unknown``.
        """
        path = Path(os.path.realpath(path))
        if readonly:
            return cls._open_readonly(path)
        make_private_dirs(path.parent)
        locks: list[int] = []
        conn: sqlite3.Connection | None = None
        try:
            if destination is not None:
                lock_path = destination_lock_path(destination)
                make_private_dirs(lock_path.parent)
                locks.append(
                    lock_file(
                        lock_path,
                        wait=wait,
                        now=utc_now(),
                        journal=path,
                        busy=lambda holder: "another bulk-events run is sending to the same "
                        f"destination ({holder}); wait for it or pass --wait",
                    )
                )
            locks.append(acquire_lock(path, wait=wait, now=utc_now()))
            if fresh:
                _move_aside_if_damaged(path)
            if not path.exists():
                _create(path)
            _refuse_if_damaged(path)
            create_private_file(path)  # narrows an existing file's (and its sidecars') mode
            with _translate_errors(path, "cannot open the run journal"):
                conn = _connect(str(path), uri=False)
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise FileFormatError(
                        f"cannot use the run journal {path}: SQLite refused WAL mode ({mode})"
                    )
                # FULL: every commit is fsynced to the -wal file before COMMIT returns, so the
                # in-flight mark that precedes a request survives a power cut or a kernel crash,
                # not only a crash of this process (NORMAL would leave the last commits in the
                # page cache, and a request sent without its mark could be sent again). The
                # group commit of the delivery layer makes one fsync cover every mark of a
                # loop turn, so the cost is one fsync per batch, not per request.
                conn.execute("PRAGMA synchronous = FULL")
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    # Every journal is made whole before it appears at its path (see _create),
                    # so a database with no schema here was cut short or is someone else's.
                    _check_schema(path, version, _table_names(conn))
                    raise JournalDamaged(_not_a_journal(path, "it is an empty SQLite database"))
                _migrate(conn, path)
                recovered = _recover_inflight(conn)
            journal = cls(path, conn, None, readonly=False, recovered=recovered)
            journal._lock_fds = locks
            return journal
        except BaseException:
            if conn is not None:
                conn.close()
            for fd in reversed(locks):
                os.close(fd)
            raise

    @classmethod
    def _open_readonly(cls, path: Path) -> Journal:
        if not path.exists():
            return cls(path, None, None, readonly=True)
        _refuse_if_damaged(path)
        uri = "file:" + urllib.request.pathname2url(str(path.absolute())) + "?mode=ro"
        with _translate_errors(path, "cannot read the run journal"):
            conn = _connect(uri, uri=True)
        try:
            with _translate_errors(path, "cannot read the run journal"):
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                tables = _table_names(conn)
                if version == 0 and not tables:
                    raise JournalDamaged(_not_a_journal(path, "it is an empty SQLite database"))
                _check_schema(path, version, tables)
                # Later versions only added tables and columns, which read as absent.
                if version < _READABLE_FROM:
                    raise FileFormatError(
                        f"the run journal {path} is from an older bulk-events; "
                        "open it once without --dry-run to upgrade it"
                    )
        except BaseException:
            conn.close()
            raise
        return cls(path, conn, None, readonly=True)

    # -- runs ---------------------------------------------------------------------------------

    def start_run(self, *, input: str, target: str, argv_summary: str = "") -> int:
        """Record the start of a run and return its id.

        ``target`` is stored as given: pass a display form without secrets (no token, no hash
        part of an event URL).
        """
        with self._writing("cannot write the run journal") as conn:
            cur = conn.execute(
                "INSERT INTO runs (started_at, input, target, argv, pid) VALUES (?, ?, ?, ?, ?)",
                (utc_now(), input, target, argv_summary, os.getpid()),
            )
            run_id = cur.lastrowid
        assert run_id is not None
        return run_id

    def finish_run(
        self, run_id: int, counts: dict[str, int], exit_code: int, stopped: str = ""
    ) -> None:
        """Record the end of a run: its exit code, the counts it reported, why it stopped early."""
        with self._writing("cannot write the run journal") as conn:
            conn.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, counts_json = ?, stopped = ?, "
                "paused_until = NULL, pause_reason = NULL WHERE id = ?",
                (utc_now(), exit_code, json.dumps(counts, sort_keys=True), stopped, run_id),
            )

    def update_run(
        self,
        run_id: int,
        *,
        total: int | None,
        rate: float,
        paused_until: str | None = None,
        pause_reason: str | None = None,
        progress: dict[str, object] | None = None,
    ) -> None:
        """Record how far a run is (``bulk-events status`` reads it from another process)."""
        with self._writing("cannot write the run journal") as conn:
            conn.execute(
                "UPDATE runs SET updated_at = ?, total = ?, rate = ?, paused_until = ?, "
                "pause_reason = ?, progress_json = ? WHERE id = ?",
                (
                    utc_now(),
                    total,
                    rate,
                    paused_until,
                    pause_reason,
                    json.dumps(progress or {}, sort_keys=True),
                    run_id,
                ),
            )

    def runs(self, limit: int | None = None) -> list[dict[str, object]]:
        """The recorded runs, newest first, as column -> value (columns of an older schema are
        simply absent)."""
        with self._reading() as conn:
            if conn is None or "runs" not in _table_names(conn):
                return []
            cur = conn.execute(
                "SELECT * FROM runs ORDER BY id DESC LIMIT ?", (-1 if limit is None else limit,)
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def reset(self) -> Path | None:
        """Forget every key (``--fresh``), keeping a copy of the old journal beside it.

        Done under this journal's lock, so no other run can be writing meanwhile. Returns the
        copy's path (None when there was nothing to forget).
        """
        if not any(self.counts().values()):
            return None
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        copy = self.path.with_name(f"{self.path.name}.{stamp}.old")
        with self._reading() as conn, _translate_errors(self.path, "cannot copy the run journal"):
            assert conn is not None
            copy.touch(mode=0o600)
            target = sqlite3.connect(copy)
            try:
                conn.backup(target)
            finally:
                target.close()
        with self._writing("cannot reset the run journal") as conn:
            conn.execute("DELETE FROM events")
            conn.execute("DELETE FROM contacts")
        return copy

    # -- keys ---------------------------------------------------------------------------------

    def lookup(self, keys: Sequence[bytes]) -> dict[bytes, Entry]:
        """What the journal knows about ``keys``; keys it has never seen are absent."""
        unique = list(dict.fromkeys(keys))
        found: dict[bytes, Entry] = {}
        with self._reading() as conn:
            if conn is None:
                return found
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
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
        params = []
        for m in marks:
            if m.state not in STATES:
                raise ValueError(f"unknown journal state {m.state!r}; expected one of {STATES}")
            if not isinstance(m.key, bytes):
                raise TypeError(f"a journal key must be bytes, not {type(m.key).__name__}")
            params.append(
                (m.key, m.state, m.row, run_id, m.attempts, m.http_status, m.error, m.sent_at, now)
            )
        with self._writing("cannot write the run journal") as conn:
            changed = conn.executemany(_UPSERT, params).rowcount
            if changed != len(params):
                conn.rollback()
                refused = next(
                    (m for m in marks if m.state != "sent" and self._state_of(m.key) == "sent"),
                    None,
                )
                where = "" if refused is None else f" (key {refused.key.hex()}, row {refused.row})"
                raise ValueError(
                    f"journal refused a batch that moves a sent key to another state{where}: "
                    "a sent row is final"
                )

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

    # -- contact history ----------------------------------------------------------------------

    def remember_contacts(self, items: Sequence[tuple[bytes, bytes, bytes]]) -> None:
        """Record ``(event key, contact, digests)`` for events about to be sent."""
        if items:
            with self._writing("cannot write the run journal") as conn:
                conn.executemany("INSERT OR REPLACE INTO contacts VALUES (?, ?, ?)", items)

    def contact_history(
        self, contacts: Sequence[bytes], *, run_id: int
    ) -> dict[bytes, tuple[bytes, bytes, str]]:
        """For each contact that an earlier run (not ``run_id``) sent an event to: the latest
        such event's ``(key, digests, sent_at)``. Contacts with none are absent."""
        unique = list(dict.fromkeys(contacts))
        found: dict[bytes, tuple[bytes, bytes, str]] = {}
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            with self._reading() as conn:
                if conn is None or "contacts" not in _table_names(conn):
                    return found
                rows = conn.execute(
                    "SELECT c.contact, c.key, c.digests, e.sent_at FROM contacts c "
                    "JOIN events e ON e.key = c.key WHERE e.state = 'sent' AND "
                    f"e.run_id IS NOT ? AND c.contact IN ({','.join('?' * len(chunk))}) "
                    "ORDER BY e.sent_at",
                    [run_id, *chunk],
                ).fetchall()
            for contact, key, digests, sent_at in rows:
                found[contact] = (key, digests, sent_at or "")
        return found

    def known_contacts(self, keys: Sequence[bytes]) -> set[bytes]:
        """Which of these event keys an earlier run already decided to send (checked then)."""
        found: set[bytes] = set()
        for start in range(0, len(keys), _CHUNK):
            chunk = list(keys[start : start + _CHUNK])
            with self._reading() as conn:
                if conn is None or "contacts" not in _table_names(conn):
                    return found
                found.update(
                    key
                    for (key,) in conn.execute(
                        f"SELECT key FROM contacts WHERE key IN ({','.join('?' * len(chunk))})",
                        chunk,
                    )
                )
        return found

    def adopt(self, old: Path) -> int:
        """Take in the keys a per-event journal of an earlier version recorded at ``old`` (rows
        left in flight become unknown), then rename it to ``<old>.adopted``. Returns how many."""
        if self.readonly or not old.exists() or old.resolve() == self.path.resolve():
            return 0
        lock_fd = acquire_lock(old, wait=False, now=utc_now())
        try:
            with self._mutex, _translate_errors(old, "cannot read the earlier run journal"):
                conn = self._conn
                assert conn is not None
                conn.execute("ATTACH DATABASE ? AS old", (str(old),))
                try:
                    with transaction(conn):
                        added = conn.execute(
                            "INSERT OR IGNORE INTO events SELECT key, CASE state WHEN 'inflight' "
                            "THEN 'unknown' ELSE state END, row, NULL, attempts, http_status, "
                            "error, sent_at, updated_at FROM old.events"
                        ).rowcount
                finally:
                    conn.execute("DETACH DATABASE old")
            old.rename(old.with_name(old.name + ".adopted"))
        finally:
            os.close(lock_fd)
        return added

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Checkpoint the WAL into the database file, close it, then release the locks; safe to
        call twice. After a clean close the ``.sqlite`` file alone holds everything."""
        with self._mutex:
            self._closed = True
            conn, self._conn = self._conn, None
            locks, self._lock_fds = self._lock_fds, []
        try:
            if conn is not None:
                if not self.readonly and not self.fault:
                    try:
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    except sqlite3.Error as exc:  # a full disk: the WAL keeps it, still safe
                        log.warning("could not checkpoint the run journal %s: %s", self.path, exc)
                conn.close()
        finally:
            for fd in reversed(locks):
                os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection | None]:
        """The connection under the mutex; None for a read-only journal whose file is missing."""
        with self._mutex, _translate_errors(self.path, "cannot read the run journal"):
            if self.fault:
                raise StorageError(self.fault)
            if self._closed:
                raise RuntimeError(f"the run journal {self.path} is closed")
            yield self._conn

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction under the mutex; rolled back if the body raises."""
        if self.readonly:
            raise RuntimeError(f"the run journal {self.path} is open read-only")
        with self._mutex, _translate_errors(self.path, what, StorageError):
            conn = self._conn
            if self.fault:
                raise StorageError(self.fault)
            if self._closed or conn is None:
                raise RuntimeError(f"the run journal {self.path} is closed")
            self._check_file(conn)
            with transaction(conn, "BEGIN IMMEDIATE"):
                yield conn

    def _check_file(self, conn: sqlite3.Connection) -> None:
        """Refuse to write once the file at ``path`` is no longer the one opened (deleted, or
        replaced by a restore or a copy): commits would go to a file no later run will read,
        and that run would send every row again. Called under the mutex."""
        if self.fault:
            raise StorageError(self.fault)
        if self._file_id is None:
            return
        try:
            current: tuple[int, int] | None = _file_id(self.path)
        except FileNotFoundError:
            current = None
        except OSError as exc:
            raise StorageError(f"cannot check the run journal {self.path}: {exc.strerror}") from exc
        if current == self._file_id:
            return
        self.fault = _rescue(conn, self.path, deleted=current is None)
        self._conn = None  # _rescue closed it
        raise StorageError(self.fault)

    def _state_of(self, key: bytes) -> str | None:
        assert self._conn is not None
        row = self._conn.execute("SELECT state FROM events WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]


# -- helpers ----------------------------------------------------------------------------------


def _connect(database: str, *, uri: bool) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT), so a write()
    # is exactly one transaction. check_same_thread=False: the mutex in Journal serialises use.
    conn = sqlite3.connect(database, uri=uri, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    return conn


def _table_names(conn: sqlite3.Connection) -> set[str]:
    return {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }


def _check_schema(path: Path, version: int, tables: set[str]) -> None:
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
def transaction(conn: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    """One explicit transaction: committed when the body returns, rolled back if it raises.

    The connection must be in autocommit mode (``isolation_level=None``).
    """
    conn.execute(begin)
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    if conn.in_transaction:
        conn.execute("COMMIT")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    with transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        _check_schema(path, version, _table_names(conn))
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _split_statements(_MIGRATIONS[target]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")


def _split_statements(script: str) -> list[str]:
    # executescript() would COMMIT the open transaction first; run statement by statement so a
    # migration is all-or-nothing.
    without_comments = re.sub(r"--[^\n]*", "", script)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


def _recover_inflight(conn: sqlite3.Connection) -> int:
    with transaction(conn):
        cur = conn.execute(
            "UPDATE events SET state = 'unknown', updated_at = ?, "
            "error = CASE WHEN error = '' THEN ? ELSE error END WHERE state = 'inflight'",
            (utc_now(), _RECOVERED_ERROR),
        )
    return cur.rowcount


@contextlib.contextmanager
def _translate_errors(
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


class JournalDamaged(FileFormatError):
    """A journal file that is empty, cut short or not a journal: refused, never started over."""


def _not_a_journal(path: Path, why: str) -> str:
    return (
        f"the run journal {path} is not a bulk-events journal ({why}): restore it from a "
        "backup, or pass --fresh to move it aside and start afresh "
        "(rows it recorded as sent would then be sent again)"
    )


def _refuse_if_damaged(path: Path) -> None:
    """Refuse an empty file or one that is not a SQLite database before SQLite sees it: SQLite
    takes an empty file for a new database, and a run would then send every row again."""
    try:
        with path.open("rb") as f:
            header = f.read(16)
    except OSError as exc:
        raise FileFormatError(f"cannot read the run journal {path}: {exc.strerror}") from exc
    if not header:
        raise JournalDamaged(
            f"the run journal {path} is empty (0 bytes): it was cut short (a full disk, an "
            "interrupted copy or restore); restore it from a backup, or pass --fresh to move "
            "it aside and start afresh (rows it recorded as sent would then be sent again)"
        )
    if header != b"SQLite format 3\x00":
        raise JournalDamaged(_not_a_journal(path, "it is not an SQLite database"))


def _move_aside_if_damaged(path: Path) -> None:
    """For ``--fresh``: rename a damaged journal (and its sidecars) out of the way, keeping it."""
    if not path.exists():
        return
    try:
        Journal._open_readonly(path).close()
        return
    except JournalDamaged:
        pass
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.{stamp}.damaged")
    log.warning("moving the damaged run journal %s aside to %s", path, aside)
    try:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.rename(f"{path}{suffix}", f"{aside}{suffix}")
    except OSError as exc:
        raise FileFormatError(f"cannot move the damaged run journal {path} aside: {exc}") from exc


def _file_id(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _create(path: Path) -> None:
    """Make a new, empty journal at ``path`` whole or not at all.

    It is built beside its path and linked into place once its schema is committed and
    checkpointed, so a crash or a full disk never leaves a half-made journal that a later run
    could take for an empty one. Called under the journal's lock.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    _remove_database(tmp)
    try:
        create_private_file(tmp)
        with _translate_errors(path, "cannot create the run journal"):
            conn = _connect(str(tmp), uri=False)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                _migrate(conn, path)
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # someone put a file there meanwhile: it is checked like any other
        except OSError:
            os.replace(tmp, path)  # a file system without hard links; we hold the lock
    except OSError as exc:
        raise FileFormatError(f"cannot create the run journal {path}: {exc.strerror}") from exc
    finally:
        _remove_database(tmp)


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def _rescue(conn: sqlite3.Connection, path: Path, *, deleted: bool) -> str:
    """The journal's file vanished or was replaced under the run: save what the open connection
    still holds, and say where. Returns the message for the run's summary."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    target = path if deleted else path.with_name(f"{path.name}.{stamp}.saved")
    what = "was deleted" if deleted else "was replaced by another file"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.saved")
    try:
        _remove_database(tmp)
        create_private_file(tmp)
        copy = sqlite3.connect(tmp)
        try:
            conn.backup(copy)
            copy.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            copy.close()
        # Closing the last connection checkpoints the old -wal into the vanished file and
        # removes it, so it can never be replayed over the copy put back in its place.
        conn.close()
        os.link(tmp, target)
    except (OSError, sqlite3.Error) as exc:
        log.warning("could not save the run journal's open copy to %s: %s", target, exc)
        return (
            f"the run journal {path} {what} during the run, and its open copy could not be "
            f"saved ({exc}): rows this and earlier runs sent are no longer recorded, so a "
            "rerun would send them again; the report lists them"
        )
    finally:
        conn.close()
        _remove_database(tmp)
    if deleted:
        return (
            f"the run journal {path} was deleted during the run: the run stopped and wrote it "
            "back from its open copy, with every row recorded so far; run the same command again"
        )
    return (
        f"the run journal {path} was replaced by another file during the run: the run stopped "
        f"and saved its own journal as {target}; put that back in place of {path.name} before "
        "running again, or the rows it recorded as sent may be sent again"
    )
