"""A chunk of cells -> validated, typed and keyed bodies: the part of triage that depends on the
chunk alone, so that it can run in a process of its own (:class:`CheckPool`) while the main
process reads the next chunk, decides the previous one against the journal and writes its report.

:class:`ChunkChecker` is picklable: it travels to a worker process as its settings and is built
again there (the pandera schema holds closures that pickle cannot carry).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import pandas as pd

from . import collector, spawner
from .columns import Chosen, event_name_problem
from .keys import contacts_of_whom, keyed_event
from .layout import Layout
from .payload import (
    Body,
    BodyColumns,
    build_bodies,
    encode_bodies,
    event_keys,
    keys_of,
    without_errors,
)
from .report import SentColumns
from .schema import RowValidator

SentAs = tuple[str | None, str | None, str | None]
log = logging.getLogger(__name__)


@dataclass
class Checked:
    """What :meth:`ChunkChecker.check` found in one chunk (rows by their index in the chunk
    once blank rows are left out)."""

    bodies: Sequence[Body | None]  # a list, or PackedBodies from the worker process
    errors: dict[int, list[str]]  # by row number
    blank: np.ndarray | None = None  # per row of the chunk: left out as blank (None: no row is)
    warnings: dict[int, str] = field(default_factory=dict)  # by index: sent not quite as read
    names: list[str] | None = None  # each row's own event (--event-column)
    counted: list[str] = field(default_factory=list)  # the event of each row with a body
    keys: list[bytes] | None = None  # each body's key (None: the caller keys them)
    contacts: list[bytes | None] | None = None  # each body's contact (without --key)
    sent_as: Sequence[SentAs | None] = field(default_factory=list)  # what goes out, per row
    national_phones: int = 0
    without_automation_id: set[int] = field(default_factory=set)  # indexes of such bodies


class ChunkChecker:
    """Validates a chunk, builds its bodies and keys them; nothing carried from one chunk to
    the next changes a result (the validator remembers parsed dates and numbers, see
    :class:`~bulk_events.values.Remembered`), so chunks may be checked in any process, in any
    order.

    ``identity_of`` (one destination per event, with --event-column) stays in the process that
    made the checker: a checker sent to another process leaves the keys to its caller.
    """

    def __init__(
        self,
        layout: Layout,
        validator: RowValidator,
        *,
        identity: str,
        chosen: Chosen | None = None,
        identity_of: Callable[[str], str] | None = None,
        sent_event: str | None = None,
    ) -> None:
        self.layout = layout
        self.validator = validator
        self.identity = identity
        self.chosen = chosen or Chosen(layout)
        self.identity_of = identity_of
        self.sent_event = sent_event

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["identity_of"] = None  # may hold credentials; the keys are then made by the caller
        state["keyed_here"] = self.identity_of is None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def check(self, chunk: pd.DataFrame) -> Checked:
        validated = self.validator.validate(chunk)
        # A row of cells holding only spaces looks blank in a spreadsheet program: treat it as
        # one (not reported), like the truly empty rows the reader already leaves out.
        blank = validated.blank
        mask: np.ndarray | None = None
        if blank is not None and blank.any():
            mask = blank.to_numpy(dtype=bool)
            validated = validated.without(blank[blank].index)
        columns = BodyColumns(validated, self.layout)
        ok = without_errors(validated)  # which rows get a body
        rows = validated.frame.index.tolist()
        checked = Checked([], validated.errors, mask)
        checked.national_phones = validated.national_phones
        where = {row: i for i, row in enumerate(rows)}
        checked.warnings = {
            where[row]: "; ".join(texts) for row, texts in validated.warnings.items() if texts
        }
        self._row_events(checked, ok, chunk if mask is None else chunk[~mask], rows)
        self._check_keys(checked, ok, columns, rows)
        encoded = encode_bodies(columns, ok)
        canonicals: list[bytes] | None = None
        if encoded is None:  # see encode_bodies: one by one
            checked.bodies = build_bodies(validated, self.layout, ok, columns)
        else:
            checked.bodies, canonicals = encoded
        positions = np.flatnonzero(ok)
        emails = _sent_values(columns, "email", ok)
        phones = _sent_values(columns, "phone", ok)
        if self.__dict__.get("keyed_here", True):
            events = checked.names
            names = [events[i] for i in positions.tolist()] if events else None
            identities = self.identities(names or [None] * len(positions))
            if canonicals is not None and not self.chosen.key:
                checked.keys = self._keys_of(identities, canonicals)
            else:
                bodies = checked.bodies
                sent = [bodies[i] for i in positions.tolist()]
                checked.keys = self.keys(identities, sent)  # type: ignore[arg-type]
            if not self.chosen.key:
                whos = [
                    e or p
                    for e, p in zip(emails[positions].tolist(), phones[positions].tolist(), strict=True)
                ]
                checked.contacts = contacts_of_whom(identities, whos)
        automation = columns.values("automation_id")
        lacking = positions if automation is None else positions[~automation[1][positions]]
        checked.without_automation_id = set(lacking.tolist())
        checked.sent_as = SentColumns(emails, phones, self.sent_event, ok.copy())
        return checked

    def _row_events(
        self, checked: Checked, ok: np.ndarray, frame: pd.DataFrame, rows: list[int]
    ) -> None:
        """Each row's event from the --event-column cell; a row without a usable one is invalid."""
        source = self.chosen.event
        if source is None:
            return
        names = frame[source].astype(str).str.strip().tolist()
        for i, (row, name) in enumerate(zip(rows, names, strict=True)):
            problem = event_name_problem(name, source)
            if problem:
                checked.errors.setdefault(row, []).append(problem)
                ok[i] = False
            elif ok[i]:
                checked.counted.append(name)
        checked.names = list(names)

    def _check_keys(
        self, checked: Checked, ok: np.ndarray, columns: BodyColumns, rows: list[int]
    ) -> None:
        """A row whose --key cells are all empty has nothing to be recognised by: invalid."""
        key = self.chosen.key
        if not key:
            return
        some = np.zeros(len(ok), dtype=bool)
        for name in key:
            column = columns.values(name)
            if column is not None:
                some |= column[1]
        shown = ", ".join(f'"{n}"' for n in key)
        message = (
            f"the --key column{'s' if len(key) > 1 else ''} {shown} "
            f"{'are' if len(key) > 1 else 'is'} empty: nothing identifies this event"
        )
        for i in np.flatnonzero(ok & ~some).tolist():
            checked.errors.setdefault(rows[i], []).append(message)
            ok[i] = False

    def _keys_of(self, identities: list[str], canonicals: list[bytes]) -> list[bytes]:
        """:meth:`keys` from the bodies' canonical bytes (see :func:`encode_bodies`)."""
        return _per_destination(identities, canonicals, keys_of, self.identity)

    def identities(self, events: Sequence[str | None]) -> list[str]:
        """The destination identity of each body, by its event (--event-column) or the run's."""
        of = self.identity_of
        if of is None:
            return [self.identity] * len(events)
        return [self.identity if e is None else of(e) for e in events]

    def keys(
        self, identities: Sequence[str], bodies: Sequence[Body], occurrence: int = 0
    ) -> list[bytes]:
        """Every body's key: :func:`event_keys` per destination (one for the whole chunk, or one
        per event with --event-column), or the --key columns' values."""
        key = self.chosen.key
        if key:
            return [
                keyed_event(ident, b, key, occurrence)
                for ident, b in zip(identities, bodies, strict=True)
            ]
        return _per_destination(
            identities,
            bodies,
            lambda ident, part: event_keys(ident, part, occurrence),
            self.identity,
        )


def _per_destination(
    identities: Sequence[str],
    items: Sequence[Any],
    keys: Callable[[str, Sequence[Any]], list[bytes]],
    default: str,
) -> list[bytes]:
    """``keys(identity, items)`` for each destination's items (one call for a whole chunk, or
    one per event with --event-column), put back in the items' order."""
    if len(set(identities)) <= 1:
        return keys(identities[0] if identities else default, items)
    by_identity: dict[str, list[int]] = {}
    for j, ident in enumerate(identities):
        by_identity.setdefault(ident, []).append(j)
    out: list[bytes] = [b""] * len(items)
    for ident, at in by_identity.items():
        for j, k in zip(at, keys(ident, [items[j] for j in at]), strict=True):
            out[j] = k
    return out


def _sent_values(columns: BodyColumns, name: str, ok: np.ndarray) -> np.ndarray:
    """The column ``name``'s value in each row's body (None where it has none), an object array."""
    out = np.full(len(ok), None, dtype=object)
    column = columns.values(name)
    if column is not None:
        values, present = column
        has = present & ok
        out[has] = values[has]
    return out


# ------------------------------------------------------------------ in a process of its own


class CheckerGone(RuntimeError):
    """The worker process is gone (it could not start, or was killed): the caller checks the
    chunk itself instead."""


class CheckPool:
    """:meth:`ChunkChecker.check` in worker processes, for files big enough to pay for starting
    one (a second or so of imports, on another core). Chunks go to the workers in turn, each
    through a pipe, and each chunk's future gives its :class:`Checked`.

    The pool starts with one worker (or ``workers``). A caller kept waiting for result after
    result (checking is then the slower part of the run, as in a dry run) gets a second one,
    which takes every other chunk from then on. A run busy sending, or looking its rows up in a
    large journal, finds its checks ready and keeps one. Two at most (:attr:`MOST`): the main
    process's own work per chunk takes about three quarters of a worker's, so a third would
    only wait for it, and each worker holds its own imports (about 85 MB) and chunks.

    A worker is forked from ``forks`` (a :class:`~bulk_events.spawner.Spawner`: ready at once,
    its imports made), or else is ``python -m bulk_events.checker``: either way a process that
    imports nothing of the caller's program (multiprocessing's spawn would run an unguarded
    script again), ignores Ctrl-C (the main process decides how a run stops) and ends when its
    input pipe closes, also when the main process dies. A worker starts in the background:
    one that cannot start fails its chunks with :class:`CheckerGone`.

    >>> with CheckPool(checker) as pool:  # doctest: +SKIP
    ...     future = pool.submit(chunk)
    ...     checked = await pool.result(future)
    """

    MOST = 2
    WAITING = 0.25  # the share of the time between two results spent waiting for the second

    def __init__(
        self, checker: ChunkChecker, *, workers: int = 1, forks: spawner.Spawner | None = None
    ) -> None:
        self._checker = _pickled(checker)
        self._forks = forks
        self._workers = [_Worker(self._checker, self._forks) for _ in range(max(1, workers))]
        self._most = max(len(self._workers), min(self.MOST, _cores()))
        self._turn = 0  # chunks submitted: the next one goes to worker _turn % len(_workers)
        self._waits = 0  # results in a row that kept the caller waiting
        self._last: float | None = None  # when the last result was handed over
        self._closed = False

    @property
    def workers(self) -> int:
        """How many worker processes the pool has that have not ended."""
        return sum(not w.gone for w in self._workers)

    def submit(self, chunk: pd.DataFrame) -> Future[Checked]:
        """Send ``chunk`` to the next worker in turn, passing over any whose process ended
        (one that ended unnoticed yet fails the chunk with :class:`CheckerGone`); the future
        is its :class:`Checked`."""
        live = [w for w in self._workers if not w.gone] or self._workers
        worker = live[self._turn % len(live)]
        self._turn += 1
        return worker.submit(chunk)

    async def result(self, future: Future[Checked]) -> Checked:
        """The result of a chunk submitted here, once it is ready (see the class: a caller
        that keeps waiting for results gets a second worker)."""
        try:
            if future.done():
                checked = future.result()
                waited = 0.0
            else:
                started = time.monotonic()
                checked = await asyncio.wrap_future(future)
                waited = time.monotonic() - started
        except CheckerGone:
            self._most = 0  # a process was lost (perhaps to the memory limit): none is added
            raise
        now = time.monotonic()
        if self._last is not None:  # the first result waits for the worker's start-up
            # Kept waiting for a good part of the time between two results: checking is the
            # slower part of the run, for now. Twice in a row, and it is not a passing stall.
            kept = waited > self.WAITING * (now - self._last)
            self._waits = self._waits + 1 if kept else 0
            if self._waits >= 2 and len(self._workers) < self._most:
                self._grow()
        self._last = now
        return checked

    def _grow(self) -> None:
        self._waits = 0
        if self._closed:
            return
        # One that cannot start fails its chunks with CheckerGone, as one lost would.
        self._workers.append(_Worker(self._checker, self._forks))
        log.debug("checking chunks in %d processes from now", len(self._workers))

    def close(self) -> None:
        """Stop the workers: what they still have to do is dropped. Safe to call twice."""
        self._closed = True
        failed: list[Exception] = []
        for worker in self._workers:  # one that fails to stop leaves none of the rest running
            try:
                worker.close()
            except Exception as exc:
                failed.append(exc)
        if failed:
            raise failed[0]

    def __enter__(self) -> CheckPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Worker:
    """One worker process of a :class:`CheckPool`, answering its chunks in the order sent."""

    def __init__(self, checker: bytes, forks: spawner.Spawner | None = None) -> None:
        # One thread writes chunks, one reads results: each keeps its order, so the n-th
        # result read belongs to the n-th chunk written.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="check-send")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="check-receive")
        self._closed = False
        self.gone = False  # its process ended: what was sent to it comes back as CheckerGone
        # Started by the writer thread, so that the caller goes on (reading the first chunk)
        # while a spawner that has just started makes its imports.
        self._started = self._writer.submit(self._start, forks)
        self._writer.submit(self._send, checker)

    @property
    def proc(self) -> subprocess.Popen[bytes] | spawner.Forked:
        """The process, once it is started (OSError if it could not be)."""
        return self._started.result()

    @staticmethod
    def _start(forks: spawner.Spawner | None) -> subprocess.Popen[bytes] | spawner.Forked:
        """Forked by the spawner if there is one (ready at once), else a fresh interpreter."""
        if forks is not None:
            try:
                forked = forks.fork()
                log.debug("checking process %d forked by the spawner", forked.pid)
                return forked
            except OSError as exc:
                log.debug("no checking process from the spawner: %s", exc)
        return subprocess.Popen(
            [sys.executable, "-m", "bulk_events.checker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # Whatever befalls the worker, the run goes on without it (see CheckerGone): no
            # traceback of its own reaches the user's terminal.
            stderr=subprocess.DEVNULL,
            bufsize=0,
            env=spawner.child_env(),
            start_new_session=False,
        )

    def _send(self, data: bytes) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        _write(stdin, data)

    def _receive(self) -> Checked:
        try:
            proc = self.proc
        except OSError as exc:  # no process to be had (a limit, memory)
            self.gone = True
            raise CheckerGone(f"the checking process could not start: {exc}") from None
        stdout = proc.stdout
        assert stdout is not None
        answer = _read(stdout)
        if answer is None:
            self.gone = True
            code = proc.wait()
            raise CheckerGone(
                "the checking process ended" + (f" (exit code {code})" if code != -1 else "")
            )
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, Checked)
        return answer

    def submit(self, chunk: pd.DataFrame) -> Future[Checked]:
        # Pickled here, so that a chunk that cannot be sent fails at once; a worker that is
        # gone fails the send and, with the end of its output, every result still awaited.
        self._writer.submit(self._send, _pickled((chunk, dict(chunk.attrs))))
        return self._reader.submit(self._receive)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.shutdown(wait=False, cancel_futures=True)
        self._reader.shutdown(wait=False, cancel_futures=True)
        try:
            proc = self.proc
        except (OSError, CancelledError):  # it never started
            return
        if proc.poll() is None:
            proc.kill()  # it keeps nothing: what it was checking is not wanted any more
        # Its pipes closed before the wait: a process that the kill did not reach ends at the
        # end of its input (or on its next write).
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        proc.wait()


_LENGTH = struct.Struct("!Q")


def _pickled(item: object, *, memo: bool = True) -> bytes:
    """``item`` pickled; without the ``memo`` (for a result, which holds no object twice that
    matters and no cycle) in a third of the time: the memo keeps every object it wrote."""
    if memo:
        return pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    # Documented as deprecated, yet in every CPython: should it go, the memo is used.
    with contextlib.suppress(AttributeError):
        pickler.fast = True
    pickler.dump(item)
    return out.getvalue()


def _write(pipe: IO[bytes], data: bytes) -> None:
    """One item: its length, then its bytes, written in full (the os calls may write part)."""
    fd = pipe.fileno()
    view = memoryview(_LENGTH.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, size: int) -> bytes | None:
    out = bytearray(size)
    view = memoryview(out)
    while view:
        got = os.readv(fd, [view])
        if got == 0:
            return None  # the end of the pipe
        view = view[got:]
    return bytes(out)


def _read(pipe: IO[bytes]) -> Any:
    """The next item, or None at the end of the pipe."""
    fd = pipe.fileno()
    head = _read_exactly(fd, _LENGTH.size)
    if head is None:
        return None
    data = _read_exactly(fd, _LENGTH.unpack(head)[0])
    return None if data is None else pickle.loads(data)


def prepare() -> None:
    """Import what checking needs, before a checking process freezes its imports (see
    :mod:`bulk_events.collector`): pandera too, which :class:`RowValidator` imports only when
    it first validates, so that a main process handing its chunks over never does."""
    import pandera.pandas  # noqa: F401


def _serve() -> None:
    """The worker process: a checker, then chunk after chunk, each answered with its result."""
    # A signal to the whole process group (Ctrl-C, or SIGTERM to a job) is for the main
    # process: it decides how the run stops, and ends this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing printed by accident may corrupt the results
    checker = _read(stdin)
    if not isinstance(checker, ChunkChecker):
        return
    prepare()
    collector.settle()  # everything is imported now (see bulk_events.collector)
    while (item := _read(stdin)) is not None:
        chunk, attrs = item
        chunk.attrs = attrs
        try:
            answer = _pickled(checker.check(chunk), memo=False)
        except Exception as exc:  # a bug: the main process reports it, as it would its own
            answer = _pickled(RuntimeError(f"{type(exc).__name__}: {exc}"))
        try:
            _write(stdout, answer)
        except BrokenPipeError:
            return


def worth_a_process(rows: int | None, chunk_rows: int, *, sending: bool = False) -> bool:
    """Whether a file of about ``rows`` rows pays for a worker process: a few chunks at least,
    and a second core to run it on. A send pays from two chunks of a file of some size: its
    event loop, not the reading, is what the run waits for, and every row checked elsewhere
    leaves it more time (a 50,000-row send 2 to 5% faster; a dry run of as many rows 9% slower, so
    it waits for more)."""
    if rows is None or _cores() < 2:
        return False
    if sending:
        return rows >= 2 * chunk_rows and rows >= 40_000
    return rows >= 3 * chunk_rows and rows >= 50_000


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


if __name__ == "__main__":
    # Run as a script this module is ``__main__``: serve with the importable one, so that what
    # is pickled names bulk_events.checker's classes.
    from bulk_events.checker import _serve as serve

    serve()
