"""Files only their owner may read: reports and sandbox records hold emails and phone numbers.

>>> with create_private("arrived.jsonl", append=True) as f:  # doctest: +SKIP
...     f.write(b'{"email": "a@example.com"}\\n')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

PRIVATE_MODE = 0o600


def create_private(
    path: str | os.PathLike[str], *, append: bool = False, exclusive: bool = False
) -> BinaryIO:
    """Open ``path`` for writing in binary mode, with permissions 0600 whatever the umask.

    A new file is created 0600; an existing one is truncated (or appended to, with ``append``)
    and its mode tightened to 0600 first, before a byte of personal data goes in.
    ``exclusive`` refuses a file (or a symlink) already there, for temporary files whose
    name must be new. Raises :class:`OSError` as :func:`open` does.
    """
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_APPEND if append else os.O_TRUNC
    if exclusive:
        flags |= os.O_EXCL
    fd = os.open(path, flags, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)  # the mode given to open() applies only to a new file
        return os.fdopen(fd, "ab" if append else "wb")
    except BaseException:
        os.close(fd)
        raise


def make_private_dirs(directory: str | os.PathLike[str]) -> None:
    """Create ``directory`` and any missing parents as 0700 (whatever the umask); leave existing
    ones alone. Raises :class:`OSError` when one cannot be made."""
    missing = []
    current = Path(directory).absolute()
    while not current.exists():
        missing.append(current)
        current = current.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process made it first
        os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask
