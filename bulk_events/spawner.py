"""A warm process that checking processes are forked from (Linux only).

A checking process started as a fresh interpreter spends half a second or more importing
pandas, pandera and bulk-events before it checks its first chunk, and a run that grows to two
pays that twice, on the cores that do the checking. A :class:`Spawner` is one interpreter that
makes those imports once, started as soon as a run knows that its file is worth checking
elsewhere, and then forks a checking process on request, ready at once and sharing its
imported pages with it.

The spawner has a single thread and does nothing but wait for requests, so forking it is safe
(forking a process that runs threads is not; it refuses to, should its imports ever start
one). It runs in a session of its own and ignores Ctrl-C and SIGTERM, as the checking
processes do: the main process decides how a run stops. It ends when its socket to the main
process closes, also when that process dies, once the processes it forked have ended. Each
forked process is handed over with a pidfd, so that the main process watches and kills it
without the risk of signalling a stranger that took over its pid.

This module imports only the standard library: starting a spawner costs the caller nothing
of pandas' imports.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from . import malloc

_PID = struct.Struct("!Q")
# A forked process needs none of these: without them numpy's maths libraries start no threads
# in the spawner, which must have one thread only to be forked safely.
_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def child_env() -> dict[str, str]:
    """The environment of a process of bulk-events' own (the spawner, a checking process):
    this one's, with one malloc arena unless the user chose otherwise (see
    :mod:`bulk_events.malloc`), and this process's import path."""
    env = {**malloc.ENV, **os.environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def supported() -> bool:
    """Whether this system can fork checking processes this way (Linux: fork, pidfds, file
    descriptors passed over a Unix socket)."""
    return sys.platform.startswith("linux") and hasattr(os, "pidfd_open")


class Forked:
    """A process forked by the spawner: its pipes, and a pidfd to watch and kill it by.

    Like :class:`subprocess.Popen` for what a checking process needs (``stdin``, ``stdout``,
    ``pid``, :meth:`poll`, :meth:`kill`, :meth:`wait`), except that it is not this process's
    child, so its exit code is not known: :meth:`poll` gives None while it runs and -1 after.
    """

    def __init__(self, pid: int, pidfd: int, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self.pid = pid
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.returncode: int | None = None
        self._pidfd = pidfd

    def poll(self) -> int | None:
        return self.wait(0)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait (at most ``timeout`` seconds, None: for ever) for the process to end."""
        if self.returncode is None:
            ready, _, _ = select.select([self._pidfd], [], [], timeout)
            if ready:
                self.returncode = -1
                os.close(self._pidfd)
        return self.returncode

    def kill(self) -> None:
        # Gone already, or signals refused (a sandbox's policy): it ends anyway once its input
        # closes, which its pool does next.
        if self.returncode is None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)


class Spawner:
    """One warm interpreter (``python -m bulk_events.spawner``) that forks checking processes
    on request; see the module. :meth:`fork` may be called from any thread."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {**child_env(), **_ONE_THREAD}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bulk_events.spawner", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=[theirs.fileno()],
                env=env,
                # Ctrl-C at the terminal, and a signal to the run's process group, are for the
                # main process: it decides how a run stops, and this one ends with it.
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._socket = ours
        self._lock = threading.Lock()

    def fork(self) -> Forked:
        """A new checking process, forked once the spawner has made its imports (this waits
        for them); OSError if the spawner is gone."""
        child_in, to_child = os.pipe()
        from_child, child_out = os.pipe()
        try:
            with self._lock:
                socket.send_fds(self._socket, [b"f"], [child_in, child_out])
                data, fds, _, _ = socket.recv_fds(self._socket, _PID.size, 1)
        except OSError:
            os.close(to_child)
            os.close(from_child)
            raise
        finally:
            os.close(child_in)
            os.close(child_out)
        if len(data) != _PID.size or len(fds) != 1:
            for fd in (to_child, from_child, *fds):
                os.close(fd)
            raise OSError("the spawner could not fork a checking process")
        return Forked(
            _PID.unpack(data)[0],
            fds[0],
            open(to_child, "wb", buffering=0),
            open(from_child, "rb", buffering=0),
        )

    def close(self) -> None:
        """End the spawner, and wait for it: it waits for the processes it forked, which end
        when their input closes (when their pool is closed), so that their use of the machine
        is counted to this process's children, as their peak memory is."""
        with contextlib.suppress(OSError):
            self._socket.close()
        self.proc.wait()


def start() -> Spawner | None:
    """A new spawner, or None where this system cannot fork this way (see :func:`supported`)
    or no process is to be had: checking processes then start afresh."""
    if not supported():
        return None
    try:
        return Spawner()
    except OSError:
        return None


# ------------------------------------------------------------------ the spawner process


def _serve(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, _reap)
    sock = socket.socket(fileno=fd)
    # Here, not at the top: the caller's side of this module imports only the standard library.
    from bulk_events import checker, collector

    checker.prepare()
    collector.settle()  # frozen before forking: the forked processes share these pages
    entry = checker._serve
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 1, 2)
        except OSError:
            return
        if not data:  # the main process closed the socket, or ended
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            with contextlib.suppress(ChildProcessError):
                while True:
                    os.wait()
            return
        if len(fds) != 2:
            for f in fds:
                os.close(f)
            continue
        try:
            pidfd = _fork(sock, fds, entry)
        finally:
            for f in fds:
                os.close(f)
        try:
            if pidfd is None:  # no process to be had (a limit, memory): the caller is told
                sock.send(_PID.pack(0))
            else:
                socket.send_fds(sock, [_PID.pack(pidfd[0])], [pidfd[1]])
                os.close(pidfd[1])
        except OSError:
            return


def _fork(sock: socket.socket, fds: list[int], entry: Callable[[], None]) -> tuple[int, int] | None:
    """Fork a process that runs ``entry`` with ``fds`` as its stdin and stdout; its pid and a
    pidfd, or None if it cannot be forked."""
    if _threads() != 1:  # something started a thread: forking is no longer safe
        return None
    # SIGCHLD is held until the pidfd is open: a process that ends at once stays a zombie until
    # then, so that its pid cannot have been reaped and taken by another.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                sock.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                os.dup2(fds[0], 0)
                os.dup2(fds[1], 1)
                for f in fds:
                    os.close(f)
                entry()
                code = 0
            finally:
                os._exit(code)
        return pid, os.pidfd_open(pid)
    except OSError:
        return None
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


def _threads() -> int:
    """How many threads this process runs (the kernel's count: those of C libraries too)."""
    try:
        return int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[17])
    except (OSError, ValueError, IndexError):
        return 0


def _reap(signum: int, frame: object) -> None:
    """Collect every forked process that has ended (their exit codes are not wanted)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


if __name__ == "__main__":
    from bulk_events.spawner import _serve as serve

    serve(int(sys.argv[1]))
