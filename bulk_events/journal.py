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
import logging
import os
import sqlite3
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from bulk_events.errors import FileFormatError, StorageError
from bulk_events.files import acquire_lock, create_private_file, lock_file, make_private_dirs

from .journalcontacts import ContactHistory
from .journaldb import (
    READABLE_FROM,
    SCHEMA_VERSION,
    JournalDamaged,
    check_schema,
    connect,
    migrate,
    table_names,
    transaction,
    translate_errors,
    utc_now,
)
from .journalevents import STATES, Entry, EventRecords, Mark, State
from .journalfile import (
    create,
    default_journal_path,
    destination_lock_path,
    file_id,
    not_a_journal,
    refuse_if_damaged,
    rescue,
)
from .journalruns import RunRecords

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


_RECOVERED_ERROR = "the run stopped before an answer came"

log = logging.getLogger(__name__)


class Journal(EventRecords, RunRecords, ContactHistory):
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
        # The most parameters one statement may have (999 before SQLite 3.32).
        self._parameters = 999
        if conn is not None:
            self._parameters = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._lock_fds = [] if lock_fd is None else [lock_fd]
        self._closed = False
        self._mutex = threading.Lock()
        self._file_id = file_id(path) if conn is not None and not readonly else None
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
                create(path)
            refuse_if_damaged(path)
            create_private_file(path)  # narrows an existing file's (and its sidecars') mode
            with translate_errors(path, "cannot open the run journal"):
                conn = connect(str(path), uri=False)
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
                    check_schema(path, version, table_names(conn))
                    raise JournalDamaged(not_a_journal(path, "it is an empty SQLite database"))
                migrate(conn, path)
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
        refuse_if_damaged(path)
        uri = "file:" + urllib.request.pathname2url(str(path.absolute())) + "?mode=ro"
        with translate_errors(path, "cannot read the run journal"):
            conn = connect(uri, uri=True)
        try:
            with translate_errors(path, "cannot read the run journal"):
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                tables = table_names(conn)
                if version == 0 and not tables:
                    raise JournalDamaged(not_a_journal(path, "it is an empty SQLite database"))
                check_schema(path, version, tables)
                # Later versions only added tables and columns, which read as absent.
                if version < READABLE_FROM:
                    raise FileFormatError(
                        f"the run journal {path} is from an older bulk-events; "
                        "open it once without --dry-run to upgrade it"
                    )
        except BaseException:
            conn.close()
            raise
        return cls(path, conn, None, readonly=True)

    def reset(self) -> Path | None:
        """Forget every key (``--fresh``), keeping a copy of the old journal beside it.

        Done under this journal's lock, so no other run can be writing meanwhile. Returns the
        copy's path (None when there was nothing to forget).
        """
        if not any(self.counts().values()):
            return None
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        copy = self.path.with_name(f"{self.path.name}.{stamp}.old")
        with self._reading() as conn, translate_errors(self.path, "cannot copy the run journal"):
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

    def adopt(self, old: Path) -> int:
        """Take in the keys a per-event journal of an earlier version recorded at ``old`` (rows
        left in flight become unknown), then rename it to ``<old>.adopted``. Returns how many."""
        if self.readonly or not old.exists() or old.resolve() == self.path.resolve():
            return 0
        lock_fd = acquire_lock(old, wait=False, now=utc_now())
        try:
            with self._mutex, translate_errors(old, "cannot read the earlier run journal"):
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

    def _rows_per_statement(self, fields: int, most: int) -> int:
        """How many rows of ``fields`` parameters one statement may insert: ``most``, or fewer
        where SQLite allows fewer parameters."""
        return max(1, min(most, self._parameters // fields))

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection | None]:
        """The connection under the mutex; None for a read-only journal whose file is missing."""
        with self._mutex, translate_errors(self.path, "cannot read the run journal"):
            if self.fault:
                raise StorageError(self.fault)
            if self._closed:
                raise RuntimeError(f"the run journal {self.path} is closed")
            yield self._conn

    @contextlib.contextmanager
    def _writing(self, what: str, *, statements: int = 2) -> Iterator[sqlite3.Connection]:
        """One write transaction under the mutex; rolled back if the body raises.

        A body of one statement (``statements=1``) is its own transaction (see
        :func:`~bulk_events.journaldb.transaction`).
        """
        if self.readonly:
            raise RuntimeError(f"the run journal {self.path} is open read-only")
        with self._mutex, translate_errors(self.path, what, StorageError):
            conn = self._conn
            if self.fault:
                raise StorageError(self.fault)
            if self._closed or conn is None:
                raise RuntimeError(f"the run journal {self.path} is closed")
            self._check_file(conn)
            with transaction(conn, "BEGIN IMMEDIATE" if statements > 1 else None):
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
            current: tuple[int, int] | None = file_id(self.path)
        except FileNotFoundError:
            current = None
        except OSError as exc:
            raise StorageError(f"cannot check the run journal {self.path}: {exc.strerror}") from exc
        if current == self._file_id:
            return
        self.fault = rescue(conn, self.path, deleted=current is None)
        self._conn = None  # _rescue closed it
        raise StorageError(self.fault)


# -- helpers ----------------------------------------------------------------------------------


def _recover_inflight(conn: sqlite3.Connection) -> int:
    with transaction(conn):
        cur = conn.execute(
            "UPDATE events SET state = 'unknown', updated_at = ?, "
            "error = CASE WHEN error = '' THEN ? ELSE error END WHERE state = 'inflight'",
            (utc_now(), _RECOVERED_ERROR),
        )
    return cur.rowcount


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
