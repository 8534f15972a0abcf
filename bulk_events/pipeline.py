"""Queues and back-pressure: reader -> triage -> delivery workers -> report.

Data flows one way, in chunks: the reader and :class:`~.triage.Triage` (in a worker thread, so
the event loop keeps pacing requests) fill a bounded queue of ``(chunk, index, job)``; a fixed
pool of worker tasks delivers them; the report takes chunks in input order as soon as every row
of a chunk is decided. Memory is bounded by a few chunks whatever the size of the file. A send
cuts its first chunk into small pieces first, so that its first events leave once a thousand
rows are checked rather than a whole chunk.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, cast

import pandas as pd

from .checker import Checked, CheckerGone, CheckPool
from .delivery import Deliverer, Job
from .errors import BulkEventsError, FileFormatError, ReportError, StorageError
from .events import Emit, Progress
from .outcome import Outcome, Status, count_values, not_attempted, status_of, with_warning
from .reader import HIDDEN_ROWS, Table
from .report import ReportWriter, SentAs
from .stopper import Stopper
from .triage import Triage


class _Chunk:
    """The rows of one input chunk while their outcomes come in."""

    __slots__ = (
        "done",
        "emit",
        "emit_many",
        "frame",
        "outcomes",
        "remaining",
        "sent_as",
        "warnings",
    )

    def __init__(self, frame: pd.DataFrame, emit: Emit, emit_many: EmitMany | None = None) -> None:
        self.frame = frame
        self.emit_many = emit_many
        self.outcomes: list[Outcome | None] = [None] * len(frame)
        self.sent_as: Sequence[SentAs | None] | None = None  # what goes out for each row
        self.warnings: dict[int, str] = {}  # by index: rows that go out not quite as read
        self.remaining = len(frame)
        self.done = asyncio.Event()
        self.emit = emit
        if self.remaining == 0:
            self.done.set()

    def set_many(self, decided: list[tuple[int, Outcome]]) -> None:
        """:meth:`set` for many rows at once (a chunk's rows decided before sending)."""
        outcomes, warnings = self.outcomes, self.warnings
        new: list[Outcome] = []
        for index, outcome in decided:
            if index in warnings:
                outcome = with_warning(outcome, warnings[index])
            if outcomes[index] is None:
                new.append(outcome)
            outcomes[index] = outcome
        self.remaining -= len(new)
        if self.emit_many is not None:
            self.emit_many(new)
        else:
            for outcome in new:
                self.emit(Progress(outcome))
        if self.remaining == 0:
            self.done.set()

    def set(self, index: int, outcome: Outcome) -> None:
        if index in self.warnings:
            outcome = with_warning(outcome, self.warnings[index])
        if self.outcomes[index] is None:
            self.remaining -= 1
            self.emit(Progress(outcome))
        self.outcomes[index] = outcome
        if self.remaining == 0:
            self.done.set()


log = logging.getLogger(__name__)
EmitMany = Callable[[Sequence[Outcome]], None]  # many rows decided at once, in order
Work = tuple[_Chunk, int, Job]  # what the work queue carries: no back-pointer in the job


async def pump(
    table: Table,
    triage: Triage,
    deliverer: Deliverer | None,
    report: ReportWriter,
    counts: Counter[str],
    *,
    stopper: Stopper,
    emit: Emit,
    chunk_rows: int,
    concurrency: int,
    samples: list[tuple[int, dict[str, Any]]],
    sample_limit: int = 0,
    errors: ReportWriter | None = None,
    pool: CheckPool | None = None,
    emit_many: EmitMany | None = None,
) -> None:
    """Reader -> triage -> workers -> report, each stage behind a bounded queue.

    Without a deliverer (a dry run) every row that would be sent is ``valid``, and the first
    ``sample_limit`` bodies go to ``samples``. ``errors`` (an errors file) gets the same rows as
    the report; the report's "sent as" cells come from the triage (its ``sent_event``). With a
    ``pool`` each chunk is checked in a worker process, ahead of the one triaged here.
    ``emit_many`` takes the rows of a chunk decided at once, instead of one ``Progress`` each.
    """
    jobs: asyncio.Queue[Work | None] = asyncio.Queue(maxsize=max(2 * concurrency, 64))
    chunks: asyncio.Queue[_Chunk | None] = asyncio.Queue(maxsize=2)
    workers: list[asyncio.Task[None]] = []

    use_pool = pool is not None  # until its worker process is gone

    async def settle(chunk: pd.DataFrame, checking: Future[Checked] | None) -> None:
        """Triage one chunk (checked by the pool if ``checking``) and queue its rows."""
        nonlocal use_pool
        if stopper.stopping:
            # The rest of the file after a stop: listed as pending without being
            # validated, so Ctrl-C on a million-row file ends in seconds.
            if checking is not None:
                checking.cancel()
            work = _Chunk(chunk, emit, emit_many)
            work.set_many(_not_attempted(chunk, "the run stopped before this row"))
            await chunks.put(work)
            return
        try:
            checked = None
            if checking is not None:
                assert pool is not None
                try:
                    checked = await pool.result(checking)
                except CheckerGone as exc:  # this chunk is checked here, and so are the
                    # rest once no worker process is left
                    use_pool = pool.workers > 0
                    log.debug(
                        "%s; %s",
                        exc,
                        "the other checking process goes on"
                        if use_pool
                        else "checking chunks in this process from now",
                    )
            if checked is None:
                prepared = await asyncio.to_thread(triage.prepare, chunk)
            else:
                prepared = await asyncio.to_thread(triage.decide, chunk, checked)
        except StorageError as exc:  # the journal's history could not be read
            stopper.storage_failed(exc)
            prepared = None
        except Exception as exc:  # a bug: this chunk and the rest are pending
            stopper.internal_failed(exc, "while checking rows")
            prepared = None
        if prepared is None or stopper.stopping:
            work = _Chunk(chunk, emit, emit_many)
            work.set_many(_not_attempted(chunk, "the run stopped before this row"))
            await chunks.put(work)
            return
        work = _Chunk(prepared.frame, emit, emit_many)
        work.warnings = prepared.warnings
        work.sent_as = prepared.sent_as
        await chunks.put(work)
        # The rows decided already (and in a dry run every row) are set in one go;
        # only the Jobs of a real run go to the workers, one by one.
        decided: list[tuple[int, Outcome]] = []
        to_send: list[tuple[int, Job]] = []
        valid = Status.VALID
        bodies = prepared.bodies
        fates = list(triage.classify(prepared))
        if deliverer is None and all(isinstance(f, Outcome) for _, f in fates):
            # A dry run decides every row in the triage: the fates are the outcomes.
            outcomes = cast(list[tuple[int, Outcome]], fates)
            for i, outcome in outcomes:
                if len(samples) >= sample_limit:
                    break
                if outcome.status is valid:
                    body = bodies[i]
                    assert body is not None
                    samples.append((outcome.row, body))
            work.set_many(outcomes)
            return
        for i, fate in fates:
            if isinstance(fate, Outcome):
                decided.append((i, fate))
                if fate.status is valid and len(samples) < sample_limit:  # a dry run's
                    body = bodies[i]
                    assert body is not None
                    samples.append((fate.row, body))
            elif deliverer is None:  # a dry run
                decided.append((i, Outcome(fate.row, Status.VALID)))
                if len(samples) < sample_limit:
                    samples.append((fate.row, fate.body))
            else:
                to_send.append((i, fate))
        work.set_many(decided)
        for i, job in to_send:
            if stopper.stopping:
                work.set(i, not_attempted(job.row))
            else:
                await jobs.put((work, i, job))

    # Chunks read but not yet triaged, each with its check in the pool: one ahead per worker
    # process keeps each busy while this process triages; each more would hold another chunk,
    # its pickle and its result in memory.
    ahead: deque[tuple[pd.DataFrame, Future[Checked] | None]] = deque()

    async def produce() -> None:
        iterator: Iterator[pd.DataFrame] = table.chunks(chunk_rows)
        if deliverer is not None:
            iterator = _ramped(iterator)
        try:
            while True:
                if stopper.stop_reading:
                    # Out of grace after a stop: every row read so far is in the report, the
                    # rest of the file is left unread rather than keeping the process alive.
                    stopper.unread = True
                    break
                try:
                    chunk = await asyncio.to_thread(next, iterator, None)
                except StorageError as exc:
                    stopper.storage_failed(exc)
                    break
                except BulkEventsError as exc:
                    # A flaw found only while streaming (a stray value under no header, an
                    # unterminated quote, a file changing while read): stop sending, finish
                    # what is in flight, and still write the report of every row read so far.
                    stopper.read_failed(exc)
                    break
                except OSError as exc:  # the disk or the file itself failed under the reader
                    stopper.read_failed(FileFormatError(f"cannot read the input: {exc}"))
                    break
                except Exception as exc:  # a bug in the reader: stop as for a flaw in the file
                    stopper.internal_failed(exc, "while reading the file")
                    break
                if chunk is None:
                    break
                if len(chunk):
                    stopper.last_row_read = int(chunk.index[-1])
                if stopper.stopping or pool is None or not use_pool:
                    ahead.append((chunk, None))
                else:
                    try:
                        ahead.append((chunk, pool.submit(chunk)))
                    except Exception as exc:  # a worker that cannot start: as for a bug
                        stopper.internal_failed(exc, "while checking rows")
                        ahead.append((chunk, None))
                # In input order; a chunk that is not being checked elsewhere is settled now.
                depth = 0 if pool is None else pool.workers
                while ahead and (len(ahead) > depth or ahead[-1][1] is None):
                    await settle(*ahead.popleft())
            while ahead:
                await settle(*ahead.popleft())
        finally:
            await chunks.put(None)
            for _ in workers:
                await jobs.put(None)

    async def work_loop() -> None:
        assert deliverer is not None
        task = asyncio.current_task()
        while (item := await jobs.get()) is not None:
            chunk, index, job = item
            try:
                outcome = await deliverer.deliver(job)
            except Exception as exc:  # a bug: whether the request left cannot be told
                stopper.internal_failed(exc, "while sending")
                outcome = Outcome(
                    job.row,
                    Status.UNKNOWN,
                    f"internal error while sending: {type(exc).__name__}: {exc}; if its "
                    "request left, the journal has it in flight: unknown to the next run",
                )
            chunk.set(index, outcome)
            if task is not None and task.cancelling():
                _drain(jobs)
                raise asyncio.CancelledError

    failures: list[BaseException] = []
    report_failed = False

    async def write_report() -> None:
        nonlocal report_failed
        # Never ends early: if it did, the producer would wait for ever on a full queue.
        # A report that cannot be written stops the run; its chunks are still counted.
        while (work := await chunks.get()) is not None:
            await work.done.wait()
            outcomes = [o_ for o_ in work.outcomes if o_ is not None]
            if not (failures or report_failed):
                try:
                    await asyncio.to_thread(report.write, work.frame, outcomes, work.sent_as)
                    if errors is not None:
                        await asyncio.to_thread(errors.write, work.frame, outcomes)
                except OSError as exc:
                    report_failed = True
                    where = exc.filename or report.path
                    stopper.storage_failed(
                        ReportError(f"cannot write the report {where}: {exc.strerror or exc}")
                    )
                except Exception as exc:  # a bug: stop, finish, then let it be seen
                    failures.append(exc)
                    stopper.read_failed(
                        BulkEventsError(f"internal error writing the report: {exc}")
                    )
            count_values(counts, map(status_of, outcomes))

    if deliverer is not None:
        workers.extend(asyncio.create_task(work_loop()) for _ in range(concurrency))

        def cancel_workers() -> None:
            for task in workers:
                task.cancel()

        stopper.arm(cancel_workers)
    producer = asyncio.create_task(produce())
    reporter = asyncio.create_task(write_report())
    try:
        for r in await asyncio.gather(*workers, return_exceptions=True):
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                raise r
        # Workers that were cancelled no longer drain the queue: whatever is left is pending.
        while not producer.done():
            try:
                item = await asyncio.wait_for(jobs.get(), 0.05)
            except TimeoutError:
                continue
            if item is not None:
                item[0].set(item[1], not_attempted(item[2].row, "the run was stopped"))
        await producer
        _drain(jobs)
        await reporter
        if failures:
            raise failures[0]
    except BaseException:
        for task in (producer, reporter, *workers):
            task.cancel()
        raise


# The first chunk of a send is cut into pieces of these many rows, then the rest: the first
# events leave once a thousand rows are checked, not a whole chunk.
_RAMP = (1_000, 4_000)


def _ramped(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``chunks``, with the first cut as :data:`_RAMP` says (unless it lists hidden rows, which
    belong to the rows around them)."""
    first = next(chunks, None)
    if first is None:
        return
    start = 0
    if not first.attrs.get(HIDDEN_ROWS):
        for size in _RAMP:
            if len(first) - start <= 2 * size:  # too little left to be worth another cut
                break
            yield first.iloc[start : start + size]
            start += size
    yield first.iloc[start:] if start else first
    yield from chunks


def _not_attempted(frame: pd.DataFrame, why: str) -> list[tuple[int, Outcome]]:
    """Every row of ``frame`` as pending, by its index in the chunk."""
    return [(i, not_attempted(row, why)) for i, row in enumerate(frame.index.tolist())]


def _drain(jobs: asyncio.Queue[Work | None]) -> None:
    """Whatever is left in the queue was never attempted: pending."""
    while not jobs.empty():
        item = jobs.get_nowait()
        if item is not None:
            item[0].set(item[1], not_attempted(item[2].row, "the run was stopped"))
