"""Group commit of journal marks on a thread of their own, so the event loop only paces and sends."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Sequence
from typing import Any

from bulk_events.journal import Journal, Mark

# What the loop hands the writer thread once per loop turn: the turn's marks and their waiters.
_Batch = tuple[list[Mark], list["asyncio.Future[None]"]]


class JournalWriter:
    """Group commit: marks go into as few transactions as the disk allows, off the event loop.

    A caller awaits its mark's commit, so a row is marked in flight on disk before its request is
    sent and its outcome is on disk before its worker takes the next row: a crash can leave at most
    one row per worker undecided.

    The marks of one event-loop turn are handed to a writer thread in one piece; while it commits
    (SQLite releases the GIL while it writes and fsyncs), the next turns' marks queue up, and the
    thread takes all of them into its next transaction. Marks are committed in the order they
    were recorded. One wake-up of the loop per transaction resolves every waiter of it.
    :meth:`close` stops the thread once what is queued is written.
    """

    def __init__(self, journal: Journal, run_id: int) -> None:
        self.journal = journal
        self.run_id = run_id
        self._marks: list[Mark] = []
        self._futures: list[asyncio.Future[None]] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    async def record(self, mark: Mark) -> None:
        """Write ``mark``; returns once it is committed."""
        loop = self._loop
        if loop is None:
            loop = self._start()
        future = loop.create_future()
        self._marks.append(mark)
        self._futures.append(future)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._hand_over)
        await future

    def record_now(self, marks: Sequence[Mark]) -> None:
        """Write at once, outside the loop's rhythm (when a delivery is being torn down)."""
        if marks:
            self.journal.write(marks, self.run_id)

    def progress(self, **fields: Any) -> None:
        """Record how far the run is in its ``runs`` row (see :meth:`Journal.update_run`)."""
        self.journal.update_run(self.run_id, **fields)

    def close(self) -> None:
        """Write what is queued, then stop the writer thread (safe to call twice)."""
        self._closed = True
        thread, self._thread = self._thread, None
        if thread is not None:
            if self._marks:
                self._hand_over()
            self._queue.put(None)
            thread.join()

    def _start(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise RuntimeError("the journal writer is closed")
        loop = self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()
        return loop

    def _hand_over(self) -> None:
        """End of a loop turn: pass its marks to the writer thread."""
        self._scheduled = False
        batch = (self._marks, self._futures)
        self._marks, self._futures = [], []
        self._queue.put(batch)

    def _run(self) -> None:
        """The writer thread: take every batch queued so far, commit them as one, tell the loop."""
        get, get_nowait = self._queue.get, self._queue.get_nowait
        stop = False
        while not stop:
            first = get()
            if first is None:
                return
            marks, futures = first
            while True:  # whatever queued up meanwhile joins this transaction
                try:
                    more = get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                marks = marks + more[0]
                futures = futures + more[1]
            error: BaseException | None = None
            try:
                self.journal.write(marks, self.run_id)
            except Exception as exc:  # the journal failing is fatal for every waiter
                error = exc
            self._wake(futures, error)

    def _wake(self, futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
        loop = self._loop
        assert loop is not None
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, futures, error)


def _resolve(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    """On the loop: let every waiter of one transaction go on (a cancelled one is done already)."""
    if error is None:
        for f in futures:
            if not f.done():
                f.set_result(None)
    else:
        for f in futures:
            if not f.done():
                f.set_exception(error)
