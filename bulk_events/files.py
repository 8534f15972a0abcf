"""Private files for the journal: 0700 folders, 0600 files, and the lock files that name their holder."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path

from . import private
from .errors import FileFormatError, JournalBusyError


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and any missing parents as 0700; leave existing ones alone."""
    try:
        private.make_private_dirs(directory)
    except OSError as exc:
        raise FileFormatError(f"cannot create the journal directory {directory}: {exc}") from exc


def create_private_file(path: Path) -> None:
    """Make sure the database exists with mode 0600 before SQLite opens it.

    SQLite creates the -wal and -shm files with the permissions of the database file, so they
    follow; an existing wider file (or sidecar) is narrowed.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise FileFormatError(f"cannot open the run journal {path}: {exc.strerror}") from exc
    try:
        _narrow(fd)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            sidecar = os.open(f"{path}{suffix}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _narrow(sidecar)
            finally:
                os.close(sidecar)


def _narrow(fd: int) -> None:
    mode = os.fstat(fd).st_mode
    if stat.S_IMODE(mode) & 0o077:
        os.fchmod(fd, stat.S_IMODE(mode) & 0o700)


def acquire_lock(path: Path, *, wait: bool, now: str) -> int:
    """Take the exclusive lock on ``<path>.lock`` and write who holds it (since ``now``); return its fd."""
    return lock_file(
        Path(f"{path}.lock"),
        wait=wait,
        now=now,
        busy=lambda holder: f"another bulk-events run is using {path} ({holder}); "
        "wait for it or pass --wait",
    )


def lock_file(
    lock_path: Path,
    *,
    wait: bool,
    now: str,
    busy: Callable[[str], str],
    journal: Path | None = None,
) -> int:
    """Take the exclusive lock on ``lock_path`` and write who holds it; return its fd.

    When another process holds it, raise :class:`JournalBusyError` with ``busy(holder)`` (the
    holder as ``pid N, started T[, journal J]``), or with ``wait`` block until it is free.
    """
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise FileFormatError(f"cannot open the journal lock {lock_path}: {exc.strerror}") from exc
    try:
        _narrow(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise FileFormatError(f"cannot lock {lock_path}: {exc.strerror}") from exc
            if not wait:
                raise JournalBusyError(busy(_holder(fd))) from None
            fcntl.flock(fd, fcntl.LOCK_EX)
        # The lock file is never deleted: unlinking a flock'ed file lets a third process lock a
        # fresh inode while the second still waits on the old one.
        os.ftruncate(fd, 0)
        line = f"pid {os.getpid()} started {now}"
        if journal is not None:
            line += f" journal {journal}"
        os.pwrite(fd, f"{line}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _holder(fd: int) -> str:
    """``pid N, started T`` from the lock file of the run that holds it, as far as known."""
    text = b""
    # The holder writes its line right after locking; give it a moment if we read too early.
    for _ in range(20):
        text = os.pread(fd, 4096, 0)
        if text.endswith(b"\n"):
            break
        time.sleep(0.01)
    found = re.fullmatch(rb"pid (\d+) started (\S+)(?: journal (.+))?\n", text)
    if found is None:
        return "pid unknown"
    holder = f"pid {found[1].decode()}, started {found[2].decode()}"
    if found[3]:
        holder += f", journal {found[3].decode(errors='replace')}"
    return holder
