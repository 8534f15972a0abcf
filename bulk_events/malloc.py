"""One malloc arena for the whole process, where the C library is glibc.

glibc gives each thread that allocates its own arena (up to eight per core) and keeps freed
memory in each of them. bulk-events moves every chunk through a few threads (reading, checking,
the report, the journal's writer), so the same frames were being held in several arenas at once:
a 1M-row dry run peaked at 241 MB with the default and at 198 MB with one arena, and spent less
CPU (fewer fresh pages to fault in). The threads allocate in turn, not all at once, so one arena
costs no contention that shows. :func:`use_one_arena` is for a program's entry point (the CLI,
the checker process); the library never changes it for a program that imports it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
ENV = {"MALLOC_ARENA_MAX": "1"}  # the same for a child process, read by glibc as it starts


def use_one_arena() -> bool:
    """Ask glibc for one arena from now on; False where that is not possible (not glibc, or
    the user set MALLOC_ARENA_MAX themselves: theirs stands)."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(_M_ARENA_MAX, 1))
