"""Which rows of this run already claimed an event: duplicate detection for files of any size."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Self

from .errors import ScratchError
from .journal import transaction


@contextlib.contextmanager
def _scratch_errors() -> Iterator[None]:
    """A full or failing temporary folder is a storage fault (exit 74), said in one line."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise ScratchError(
            "cannot keep the list of rows this run met (a scratch file in the temporary "
            f"folder, TMPDIR): {exc}"
        ) from None


class SeenKeys:
    """Within-run duplicate detection that keeps a million keys out of Python's memory.

    The keys live in a private temporary SQLite database (``sqlite3.connect("")``): SQLite keeps
    a bounded page cache and spills the rest to an anonymous temporary file that disappears on
    close. Only the current batch is held in Python.

    Example::

        seen = SeenKeys()
        seen.first_rows([k1, k2, k1], [2, 3, 4])  # -> [None, None, 2]
        seen.first_rows([k2], [9])                # -> [3]
    """

    def __init__(self, *, cache_mib: int = 32) -> None:
        """Create the empty temporary store; ``cache_mib`` bounds SQLite's page cache."""
        with _scratch_errors():
            self._conn: sqlite3.Connection | None = self._create(cache_mib)

    @staticmethod
    def _create(cache_mib: int) -> sqlite3.Connection:
        # check_same_thread=False: the pipeline calls it from one worker thread at a time.
        conn = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        # Nothing here must survive a crash: no rollback journal, no fsync.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute(f"PRAGMA cache_size = -{int(cache_mib) * 1024}")
        # One upsert per key does a single B-tree descent: a new key is inserted; a key already
        # there gets ``pos`` (its position in the batch) set, and the trigger notes that
        # position with the row that claimed the key first. Reading ``dups`` back then names
        # only the duplicates, usually few. (A lookup pass before inserting measured slower.)
        conn.execute(
            "CREATE TABLE seen (key BLOB PRIMARY KEY, row INTEGER NOT NULL, pos INTEGER)"
            " WITHOUT ROWID"
        )
        conn.execute("CREATE TABLE dups (pos INTEGER NOT NULL, first_row INTEGER NOT NULL)")
        conn.execute(
            "CREATE TRIGGER seen_again AFTER UPDATE OF pos ON seen"
            " BEGIN INSERT INTO dups (pos, first_row) VALUES (NEW.pos, OLD.row); END"
        )
        return conn

    def first_rows(self, keys: Sequence[bytes], rows: Sequence[int]) -> list[int | None]:
        """For each ``(key, row)`` in order: the row that first claimed the key in this run, or
        None if this row is the first. Earlier rows of the same batch count too. A full or
        failing temporary folder raises :class:`~.errors.ScratchError`."""
        if len(keys) != len(rows):
            raise ValueError(f"{len(keys)} keys but {len(rows)} rows")
        conn = self._conn
        if conn is None:
            raise RuntimeError("SeenKeys is closed")
        with _scratch_errors(), transaction(conn, "BEGIN"):
            conn.executemany(
                "INSERT INTO seen (key, row) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET pos = ?3",
                zip(keys, rows, range(len(keys)), strict=True),
            )
            again = conn.execute("SELECT pos, first_row FROM dups").fetchall()
            conn.execute("DELETE FROM dups")
        result: list[int | None] = [None] * len(keys)
        for pos, first_row in again:
            result[pos] = first_row
        return result

    def close(self) -> None:
        """Drop the temporary store; safe to call twice."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
