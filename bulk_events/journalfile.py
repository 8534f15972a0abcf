"""The run journal's file: where it lives, refused when damaged, made whole, rescued if it vanishes.

One journal per destination lives in the per-user state folder (:func:`default_journal_path`),
beside the lock files of the destinations (:func:`destination_lock_path`). SQLite takes an empty file for a new database, so a journal cut short by a full disk would
otherwise start over and send every row again: :func:`refuse_if_damaged` looks at the file
before SQLite does, :func:`create` builds a new journal beside its path and links it into place,
and :func:`rescue` saves what an open connection still holds when the file is deleted or
replaced during a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from bulk_events.errors import FileFormatError
from bulk_events.files import create_private_file

from .journaldb import JournalDamaged, connect, migrate, translate_errors

__all__ = [
    "create",
    "default_journal_path",
    "destination_lock_path",
    "file_id",
    "not_a_journal",
    "refuse_if_damaged",
    "remove_database",
    "rescue",
]

log = logging.getLogger("bulk_events.journal")


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


def not_a_journal(path: Path, why: str) -> str:
    """The message that refuses a file that is not a journal, and says what to do."""
    return (
        f"the run journal {path} is not a bulk-events journal ({why}): restore it from a "
        "backup, or pass --fresh to move it aside and start afresh "
        "(rows it recorded as sent would then be sent again)"
    )


def refuse_if_damaged(path: Path) -> None:
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
        raise JournalDamaged(not_a_journal(path, "it is not an SQLite database"))


def file_id(path: Path) -> tuple[int, int]:
    """What tells this file from another put at its path later: its device and inode."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def create(path: Path) -> None:
    """Make a new, empty journal at ``path`` whole or not at all.

    It is built beside its path and linked into place once its schema is committed and
    checkpointed, so a crash or a full disk never leaves a half-made journal that a later run
    could take for an empty one. Called under the journal's lock.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    remove_database(tmp)
    try:
        create_private_file(tmp)
        with translate_errors(path, "cannot create the run journal"):
            conn = connect(str(tmp), uri=False)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                migrate(conn, path)
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
        remove_database(tmp)


def remove_database(path: Path) -> None:
    """Remove a database and its sidecars, those that exist."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def rescue(conn: sqlite3.Connection, path: Path, *, deleted: bool) -> str:
    """The journal's file vanished or was replaced under the run: save what the open connection
    still holds, and say where. Returns the message for the run's summary."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    target = path if deleted else path.with_name(f"{path.name}.{stamp}.saved")
    what = "was deleted" if deleted else "was replaced by another file"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.saved")
    try:
        remove_database(tmp)
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
        remove_database(tmp)
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
