"""Private files for the journal: 0700 folders, 0600 files, and the lock file that names its holder."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import time
from pathlib import Path

from .errors import FileFormatError, JournalBusyError


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and any missing parents as 0700; leave existing ones alone."""
    missing = []
    current = directory.absolute()
    while not current.exists():
        missing.append(current)
        current = current.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process made it first
        except OSError as exc:
            raise FileFormatError(f"cannot create the journal directory {d}: {exc}") from exc
        os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask


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
    lock_path = f"{path}.lock"
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
                raise JournalBusyError(
                    f"another bulk-events run is using {path} ({_holder(fd)}); "
                    "wait for it or pass --wait"
                ) from None
            fcntl.flock(fd, fcntl.LOCK_EX)
        # The lock file is never deleted: unlinking a flock'ed file lets a third process lock a
        # fresh inode while the second still waits on the old one.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} started {now}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _holder(fd: int) -> str:
    """``pid N, started T`` from the lock file of the run that holds it, as far as known."""
    text = b""
    # The holder writes its line right after locking; give it a moment if we read too early.
    for _ in range(20):
        text = os.pread(fd, 200, 0)
        if text.endswith(b"\n"):
            break
        time.sleep(0.01)
    found = re.fullmatch(rb"pid (\d+) started (\S+)\n", text)
    if found is None:
        return "pid unknown"
    return f"pid {found[1].decode()}, started {found[2].decode()}"
