"""Which rows of this run already claimed an event: duplicate detection for files of any size."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Self

import numpy as np

from .errors import ScratchError
from .journal import transaction

KEY_BYTES = 16  # the size of an event key (payload.event_key, keys.keyed_event)
# An event key is a 16-byte BLAKE2b digest; within one run it is told apart by its first 12
# bytes, as a contact is (keys.contact_of). Two of five million keys share 96 bits with a
# probability of about 1e-16, and memory holds 16 bytes a key (its 12 and a 4-byte row), not 24.
STORED_BYTES = 12
MEMORY_KEYS = 6_000_000  # about 96 MB of digests and rows (a five-million-row file); beyond: disk
_MAX_ROW = (1 << 32) - 1  # rows are held as 4-byte numbers; a file longer than that goes to disk
_RUN_CAP = 1 << 18  # sorted runs are merged up to this size, so a merge never copies much


def _stored(key: bytes) -> bytes:
    """What is kept of a key: an event key's first :data:`STORED_BYTES`, any other key whole."""
    return key[:STORED_BYTES] if len(key) == KEY_BYTES else key


class _MemoryKeys:
    """The keys seen so far as a few sorted numpy runs of 12-byte digests (16 bytes a key with
    its row): a batch is looked up with one ``searchsorted`` per run, not one probe per key."""

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted keys "S12", rows uint32)
        self.size = 0

    def first_rows(self, keys: Sequence[bytes], rows: Sequence[int]) -> list[int | None]:
        n = len(keys)
        if n == 0:
            return []
        whole = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(n, KEY_BYTES)
        k = np.ascontiguousarray(whole[:, :STORED_BYTES]).view(f"S{STORED_BYTES}").ravel()
        r = np.asarray(rows, dtype=np.int64)
        # Within the batch: group identical keys; the first of each group (stable sort: the
        # earliest position) is the group's leader.
        order = np.argsort(k, kind="stable")
        sk = k[order]
        lead = np.ones(n, dtype=bool)
        lead[1:] = sk[1:] != sk[:-1]
        group = np.cumsum(lead) - 1  # per sorted position: its group
        leaders = order[lead]  # batch position of each group's first occurrence
        unique = sk[lead]
        # Against earlier batches: runs hold disjoint keys, so a key is found in one at most.
        earlier = np.full(len(unique), -1, dtype=np.int64)
        for run_keys, run_rows in self.runs:
            at = np.searchsorted(run_keys, unique)
            inside = at < len(run_keys)
            hit = np.zeros(len(unique), dtype=bool)
            hit[inside] = run_keys[at[inside]] == unique[inside]
            earlier[hit] = run_rows[at[hit]]
        # A group's claim: the earlier batch's row, else its leader's row in this batch.
        fresh = earlier < 0
        claim = np.where(fresh, r[leaders], earlier)
        first = np.empty(n, dtype=np.int64)
        first[order] = claim[group]
        answer = ~(np.zeros(n, dtype=bool))
        answer[leaders[fresh]] = False  # the first row of a new key: no earlier row
        result = np.full(n, None, dtype=object)
        result[answer] = first[answer].tolist()  # Python ints, not numpy scalars
        if fresh.any():
            self._add(unique[fresh], r[leaders[fresh]].astype(np.uint32))
        return result.tolist()  # type: ignore[no-any-return]

    def _add(self, keys: np.ndarray, rows: np.ndarray) -> None:
        self.runs.append((keys, rows))
        self.size += len(keys)
        # Merge the newest runs while the older one is no bigger (a binary counter), up to a
        # cap: few runs to search, and no merge copies more than a quarter-million keys.
        while len(self.runs) > 1:
            (ak, ar), (bk, br) = self.runs[-2], self.runs[-1]
            if len(ak) > len(bk) or len(ak) + len(bk) > _RUN_CAP:
                break
            keys_ = np.concatenate([ak, bk])
            order = np.argsort(keys_, kind="stable")
            self.runs[-2:] = [(keys_[order], np.concatenate([ar, br])[order])]

    def items(self) -> Iterator[tuple[bytes, int]]:
        """Every key with its row, one run at a time (never a list of two million tuples); the
        keys' exact bytes, which numpy's byte strings would give without trailing NULs."""
        for run_keys, run_rows in self.runs:
            raw = run_keys.tobytes()
            for i, row in enumerate(run_rows.tolist()):
                yield raw[i * STORED_BYTES : (i + 1) * STORED_BYTES], row


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
    """Within-run duplicate detection that keeps a million keys out of Python's objects.

    Up to ``memory_keys`` keys live in memory as compact sorted arrays of their digests
    (:class:`_MemoryKeys`, 16 bytes a key; see :data:`STORED_BYTES`). Past that, or for a key
    of another size, they move to a private temporary SQLite database (``sqlite3.connect("")``): SQLite keeps a bounded
    page cache and spills the rest to an anonymous temporary file that disappears on close.
    Either way the answers are the same.

    Example::

        seen = SeenKeys()
        seen.first_rows([k1, k2, k1], [2, 3, 4])  # -> [None, None, 2]
        seen.first_rows([k2], [9])                # -> [3]
    """

    def __init__(self, *, cache_mib: int = 32, memory_keys: int = MEMORY_KEYS) -> None:
        """An empty store; ``memory_keys`` bounds the keys held in memory, ``cache_mib`` the
        page cache of the on-disk store once there is one."""
        self._cache_mib = int(cache_mib)
        self._memory_keys = int(memory_keys)
        self._memory: _MemoryKeys | None = _MemoryKeys()
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def _open_disk(self) -> sqlite3.Connection:
        # check_same_thread=False: the pipeline calls it from one worker thread at a time.
        conn = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        # Nothing here must survive a crash: no rollback journal, no fsync.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute(f"PRAGMA cache_size = -{self._cache_mib * 1024}")
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

    def _spill(self) -> sqlite3.Connection:
        """Move the keys held in memory to the on-disk store, which takes every key from now."""
        with _scratch_errors():
            conn = self._open_disk()
        memory, self._memory = self._memory, None
        if memory is not None and memory.size:
            with _scratch_errors(), transaction(conn, "BEGIN"):
                conn.executemany("INSERT INTO seen (key, row) VALUES (?, ?)", memory.items())
        self._conn = conn
        return conn

    def first_rows(self, keys: Sequence[bytes], rows: Sequence[int]) -> list[int | None]:
        """For each ``(key, row)`` in order: the row that first claimed the key in this run, or
        None if this row is the first. Earlier rows of the same batch count too. A full or
        failing temporary folder raises :class:`~.errors.ScratchError`."""
        if len(keys) != len(rows):
            raise ValueError(f"{len(keys)} keys but {len(rows)} rows")
        if self._closed:
            raise RuntimeError("SeenKeys is closed")
        memory = self._memory
        if memory is not None:
            fits = memory.size + len(keys) <= self._memory_keys
            in_range = not rows or (min(rows) >= 0 and max(rows) <= _MAX_ROW)
            if fits and in_range and all(len(k) == KEY_BYTES for k in keys):
                return memory.first_rows(keys, rows)
        conn = self._conn if self._conn is not None else self._spill()
        with _scratch_errors(), transaction(conn, "BEGIN"):
            conn.executemany(
                "INSERT INTO seen (key, row) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET pos = ?3",
                zip(map(_stored, keys), rows, range(len(keys)), strict=True),
            )
            again = conn.execute("SELECT pos, first_row FROM dups").fetchall()
            conn.execute("DELETE FROM dups")
        result: list[int | None] = [None] * len(keys)
        for pos, first_row in again:
            result[pos] = first_row
        return result

    def close(self) -> None:
        """Drop the store; safe to call twice."""
        self._closed = True
        self._memory = None
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
