"""The pipeline: rows in -> validated bodies -> outcomes -> journal and report.

Data flows one way, in chunks, with back-pressure: the reader and validator (in a worker thread,
so the event loop keeps pacing requests) fill a bounded queue of jobs; a fixed pool of worker tasks
delivers them; the report takes chunks in input order as soon as every row of a chunk is decided.
Memory is bounded by a few chunks whatever the size of the file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from . import redact
from .delivery import Deliverer, Job, JournalWriter, RetryPolicy, utc_now
from .errors import (
    EXIT_INPUT,
    EXIT_OK,
    EXIT_ROWS,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    BulkEventsError,
    ColumnError,
    CredentialsError,
    DeliveryError,
    JournalBusyError,
    UsageError,
)
from .journal import Journal, Mark, SeenKeys, default_journal_path
from .outcome import OK_STATUSES, Outcome, Status
from .payload import build_bodies, event_key
from .ratelimit import RateLimiter
from .reader import Table, open_table
from .report import ReportWriter
from .schema import Layout, RowValidator, plan_columns
from .transport import ApiTransport, EventUrlTransport, Timeouts, Transport

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_API_URL = "https://api.sendpulse.com"
CHUNK_ROWS = 20_000


@dataclass
class ImportOptions:
    """Everything one import needs besides the file. The CLI and config files fill this in."""

    event: str | None = None
    url: str | None = field(default=None, repr=False)  # an event URL is a credential
    form: bool = False
    dry_run: bool = False
    sandbox: bool = False
    report: str | os.PathLike[str] | None = None
    state: str | os.PathLike[str] | None = None
    sheet: str | int | None = None
    encoding: str | None = None
    delimiter: str | None = None
    types: dict[str, str] = field(default_factory=dict)
    mapping: dict[str, str] = field(default_factory=dict)
    automation_id: int | None = None
    date_format: str | None = None
    default_country: str | None = None
    allow_duplicates: bool = False
    retry_unknown: bool = False
    only_failed: bool = False
    fresh: bool = False
    wait: bool = False
    rate: float = 10.0
    concurrency: int = 10
    max_attempts: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    grace: float = 30.0
    api_url: str | None = None
    client_id: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)
    client_id_env: str = "SENDPULSE_CLIENT_ID"  # where to find them when not given
    client_secret_env: str = "SENDPULSE_CLIENT_SECRET"
    progress: bool = False
    announce: bool = False  # say on stderr what was detected in the file
    chunk_rows: int = CHUNK_ROWS

    def check(self) -> None:
        """Reject impossible combinations with a one-line reason."""
        if self.sandbox and self.url:
            raise UsageError("--sandbox imitates the REST API: use it with --event, not --url")
        if bool(self.event) == bool(self.url):
            raise UsageError(
                "name the target: --event NAME (REST API) or --url EVENT_URL, one of them"
            )
        if self.url and not self.url.startswith(("http://", "https://")):
            raise UsageError("--url must be an http(s) event URL")
        if self.form and not self.url:
            raise UsageError("--form applies to --url (the event URL's form-data tab)")
        if self.rate < 0:
            raise UsageError(
                "--rate must be 0 (no limit) or a positive number of events per second"
            )
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if self.max_attempts < 1:
            raise UsageError("--max-attempts must be at least 1")
        if self.automation_id is not None and self.automation_id < 1:
            raise UsageError("--automation-id must be a positive whole number")
        if self.dry_run and self.sandbox:
            raise UsageError("--dry-run and --sandbox exclude each other")
        if self.date_format:
            _check_date_format(self.date_format)
        if self.default_country:
            self.default_country = _check_country(self.default_country)

    @property
    def api_base(self) -> str:
        return (self.api_url or os.environ.get("SENDPULSE_API_URL") or DEFAULT_API_URL).rstrip("/")

    @property
    def identity(self) -> str:
        """The destination, for keying the journal: a sandbox rehearsal never marks real rows sent."""
        if self.sandbox:
            return f"sandbox:events/name/{self.event}"
        if self.url:
            # The same event URL with or without a trailing slash is the same destination.
            return f"url:{self.url.strip().rstrip('/')}"
        return f"api:{self.api_base}/events/name/{self.event}"

    @property
    def journal_label(self) -> str:
        """A readable start for the default journal's file name (never a secret)."""
        if self.sandbox:
            return f"sandbox-{self.event}"
        if self.url:
            last = self.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
            # The event's number, never the secret hash before it.
            return "event-url-" + last if last.isdigit() and len(last) < 16 else "event-url"
        return self.event or "events"

    @property
    def target_label(self) -> str:
        if self.sandbox:
            return f'the local sandbox, event "{self.event}"'
        if self.url:
            return redact.redact_url(self.url)
        return f'SendPulse API {self.api_base}, event "{self.event}"'


@dataclass
class RunResult:
    """What a run did; the per-row details are in the report."""

    counts: Counter[str]
    report_path: Path | None
    exit_code: int
    elapsed: float
    requests: int = 0
    sending_time: float = 0.0  # from the first request's start to the last one's
    sent: int = 0
    rows: int = 0
    stopped: str = ""  # why the run stopped early, if it did
    detected: str = ""  # what the reader found: format, encoding, delimiter, sheet
    input_name: str = ""
    announced: bool = False  # the detection was already shown at the start
    journal_path: Path | None = None
    sandbox_record: Path | None = None

    @property
    def rate(self) -> float:
        """Requests started per second while sending: what the rate limit is about."""
        if self.requests < 10 or self.sending_time < 0.5:
            return 0.0  # too few to mean anything
        return (self.requests - 1) / self.sending_time


def default_report_path(input_path: Path, report_format: str = "csv") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path.cwd() / f"bulk-events-report-{input_path.stem}-{stamp}.{report_format}"


class _Chunk:
    """The rows of one input chunk while their outcomes come in."""

    __slots__ = ("done", "frame", "on_done", "outcomes", "remaining")

    def __init__(self, frame: pd.DataFrame, on_done: Callable[[int], None]) -> None:
        self.frame = frame
        self.outcomes: list[Outcome | None] = [None] * len(frame)
        self.remaining = len(frame)
        self.done = asyncio.Event()
        self.on_done = on_done
        if self.remaining == 0:
            self.done.set()

    def set(self, index: int, outcome: Outcome) -> None:
        if self.outcomes[index] is None:
            self.remaining -= 1
            self.on_done(1)
        self.outcomes[index] = outcome
        if self.remaining == 0:
            self.done.set()


@dataclass
class _Prepared:
    frame: pd.DataFrame  # the original cells, for the report
    rows: list[int]
    bodies: list[dict[str, Any] | None]
    errors: dict[int, list[str]]
    positions: list[int] = field(default_factory=list)  # indexes of rows with a body
    keys: list[bytes] = field(default_factory=list)  # per position
    firsts: list[int | None] = field(default_factory=list)  # per position: earlier identical row
    entries: dict[bytes, Any] = field(default_factory=dict)  # what the journal knows


class _Preparer:
    """Everything CPU- or disk-bound about a chunk, run in a worker thread so that the event loop
    keeps pacing requests: validation, bodies, keys, duplicates, journal look-up."""

    def __init__(
        self,
        layout: Layout,
        validator: RowValidator,
        *,
        identity: str,
        allow_duplicates: bool,
    ) -> None:
        self.layout = layout
        self.validator = validator
        self.identity = identity
        self.allow_duplicates = allow_duplicates
        self.seen: SeenKeys | None = None
        self.journal: Any = None

    def __call__(self, chunk: pd.DataFrame) -> _Prepared:
        frame = chunk
        validated = self.validator.validate(frame)
        # A row of cells holding only spaces looks blank in a spreadsheet program: treat it as
        # one (not reported), like the truly empty rows the reader already leaves out.
        blank = validated.blank
        if blank is not None and blank.any():
            frame = frame[~blank]
            validated = validated.without(blank[blank].index)
        bodies = build_bodies(validated, self.layout)
        prepared = _Prepared(frame, frame.index.tolist(), bodies, validated.errors)
        prepared.positions = [i for i, b in enumerate(bodies) if b is not None]
        if prepared.positions and self.seen is not None:
            self._identify(prepared)
        return prepared

    def _identify(self, prepared: _Prepared) -> None:
        """Key every body; find in-file duplicates and what earlier runs did with each key."""
        assert self.seen is not None
        rows = [prepared.rows[i] for i in prepared.positions]
        bodies: list[dict[str, Any]] = [prepared.bodies[i] for i in prepared.positions]  # type: ignore[misc]
        base = [event_key(self.identity, b) for b in bodies]
        firsts = self.seen.first_rows(base, rows)
        keys = list(base)
        if self.allow_duplicates:
            # The n-th identical body in a file gets occurrence number n in its key, so each
            # occurrence is sent once, and re-sorting the file does not change which are sent.
            occurrence = 1
            todo = [j for j, f in enumerate(firsts) if f is not None]
            while todo:
                candidates = [event_key(self.identity, bodies[j], occurrence) for j in todo]
                claimed = self.seen.first_rows(candidates, [rows[j] for j in todo])
                for j, key in zip(todo, candidates, strict=True):
                    keys[j] = key
                todo = [j for j, f in zip(todo, claimed, strict=True) if f is not None]
                occurrence += 1
        prepared.keys = keys
        prepared.firsts = firsts
        prepared.entries = self.journal.lookup(keys) if self.journal is not None else {}


class Import:
    """One import run. Most callers want :func:`import_file`; this class lets a caller stop a run."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        options: ImportOptions,
        *,
        transport: Transport | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        samples: int = 0,
    ) -> None:
        options.check()
        self.samples: list[tuple[int, dict[str, Any]]] = []
        self._sample_limit = samples
        self.layout: Layout | None = None
        self.journal_path: Path | None = None
        self.path = Path(path)
        self.options = options
        self._transport_override = transport
        self.on_outcome = on_outcome
        self.stop_signal: int | None = None
        self.stop_error: DeliveryError | None = None
        self.read_error: BulkEventsError | None = None
        self._last_row_read = 0
        self._hard = False
        self._deliverer: Deliverer | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._stop_event: asyncio.Event | None = None
        self._progress: Any = None

    # -- stopping ---------------------------------------------------------------------------

    def request_stop(self, signum: int | None = None) -> None:
        """First call: finish what is in flight, start nothing new. Second call: stop at once."""
        if self.stop_signal is not None or (
            signum is None and self._stop_event and self._stop_event.is_set()
        ):
            self._hard_stop()
            return
        self.stop_signal = signum if signum is not None else 0
        self._soft_stop()
        if signum is not None:
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            doing = "finishing the requests in flight, then " if self._workers else ""
            print(
                f"bulk-events: {name}: {doing}writing the report; rows not attempted are pending "
                "(press Ctrl-C again to stop at once)",
                file=sys.stderr,
            )

    def _soft_stop(self, error: DeliveryError | None = None) -> None:
        if self._deliverer is not None:
            self._deliverer.stop(error)
        if self._stop_event is not None:
            self._stop_event.set()
        if self._workers:
            loop = asyncio.get_running_loop()
            loop.call_later(self.options.grace, self._hard_stop)

    def _on_delivery_stop(self, error: DeliveryError) -> None:
        if self.stop_error is None:
            self.stop_error = error
            log.warning("stopping: %s", error)  # the summary says it again at the end
        self._soft_stop()

    def _hard_stop(self) -> None:
        if self._hard:
            return
        self._hard = True
        if self._deliverer is not None:
            self._deliverer.stop()
        for task in self._workers:
            task.cancel()

    @property
    def _stopping(self) -> bool:
        return (
            self._hard
            or self.stop_signal is not None
            or self.stop_error is not None
            or self.read_error is not None
        )

    def _stop_reason(self) -> str:
        if self.read_error is not None:
            if not self._last_row_read:
                return f"error: {self.read_error}; no row was read or sent"
            last = self._last_row_read
            return (
                f"error: {self.read_error}; rows up to {last} are in the report, nothing after "
                f"row {last} was read or sent: fix the file and run the same command again"
            )
        return str(self.stop_error) if self.stop_error else ""

    # -- the run ----------------------------------------------------------------------------

    async def run(self) -> RunResult:
        started = time.monotonic()
        o = self.options
        table = await asyncio.to_thread(
            open_table, self.path, sheet=o.sheet, encoding=o.encoding, delimiter=o.delimiter
        )
        try:
            return await self._run_table(table, started)
        finally:
            table.close()

    async def _run_table(self, table: Table, started: float) -> RunResult:
        o = self.options
        columns = list(table.columns)
        try:
            layout = plan_columns(
                columns,
                types=o.types,
                mapping=o.mapping,
                file_label=self.path.name,
                default_automation_id=o.automation_id is not None,
            )
        except ColumnError as exc:
            sheets = table.detected.sheets
            if len(sheets) > 1 and o.sheet is None:
                listing = ", ".join(f'"{s}"' for s in sheets)
                raise ColumnError(
                    f"{exc}; that is the first sheet, pick another with --sheet (sheets: {listing})"
                ) from None
            raise
        validator = RowValidator(
            layout,
            date_format=o.date_format,
            default_automation_id=o.automation_id,
            default_country=o.default_country,
            decimal_comma=table.detected.delimiter == ";",
        )
        preparer = _Preparer(
            layout,
            validator,
            identity=o.identity,
            allow_duplicates=o.allow_duplicates,
        )
        self.layout = layout
        log.info("reading %s: %s", self.path, table.detected.describe())
        if self.options.announce:
            print(
                f"bulk-events: reading {self.path.name}: {table.detected.describe()}",
                file=sys.stderr,
            )
        for c in layout.columns:
            log.info(
                "column %r -> %s (%s)",
                c.source.strip(),
                c.name if c.role == "variable" else c.role,
                c.type,
            )

        report_path = Path(o.report) if o.report else default_report_path(self.path)
        self.report_path = report_path
        report = ReportWriter(report_path, columns)
        journal_path = (
            Path(o.state) if o.state else default_journal_path(o.identity, o.journal_label)
        )
        self.journal_path = journal_path
        self._stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed = self._install_signal_handlers(loop)
        journal: Any = None
        transport: Transport | None = None
        sandbox: Any = None
        run_id = 0
        counts: Counter[str] = Counter()
        result: RunResult | None = None
        try:
            limiter = RateLimiter(o.rate)
            if o.dry_run:
                journal = await asyncio.to_thread(Journal.open, journal_path, readonly=True)
            else:
                journal = await self._open_journal(journal_path)
                if o.fresh:
                    journal.reset()
                if journal.recovered:
                    print(
                        f"bulk-events: {journal.recovered} row(s) were in flight when an earlier run stopped; "
                        "they are unknown and not resent (--retry-unknown resends them)",
                        file=sys.stderr,
                    )
                transport, sandbox = await self._open_transport(limiter)
                run_id = journal.start_run(input=str(self.path), target=o.target_label)
                log.info("run %d: sending to %s; journal %s", run_id, o.target_label, journal.path)
            writer = JournalWriter(journal, run_id)
            if transport is not None:
                self._deliverer = Deliverer(
                    transport,
                    limiter,
                    writer,
                    RetryPolicy(max_attempts=o.max_attempts),
                    on_stop=self._on_delivery_stop,
                )
                if self.stop_signal is not None:
                    self._deliverer.stop()
            self._progress = _progress_bar(o.progress, table)
            await self._pump(table, preparer, journal, report, counts)
            report_path = report.commit()
            elapsed = time.monotonic() - started
            result = RunResult(
                counts=counts,
                report_path=report_path,
                exit_code=self._exit_code(counts),
                elapsed=elapsed,
                requests=self._deliverer.requests if self._deliverer else 0,
                sending_time=_sending_time(self._deliverer),
                sent=counts.get(Status.SENT.value, 0),
                rows=sum(counts.values()),
                stopped=self._stop_reason(),
                detected=table.detected.describe(),
                input_name=self.path.name,
                announced=o.announce,
                journal_path=None if o.dry_run else journal.path,
            )
            if sandbox is not None:
                result.sandbox_record = sandbox.record_path
            return result
        finally:
            if self._progress is not None:
                self._progress.total = self._progress.n  # the estimate counted blank rows too
                self._progress.close()
            for sig in installed:
                loop.remove_signal_handler(sig)
            report.__exit__(None, None, None)
            if transport is not None:
                await transport.aclose()
            if sandbox is not None:
                await sandbox.stop()
            if journal is not None:
                if run_id and result is not None:
                    journal.finish_run(run_id, dict(counts), result.exit_code)
                journal.close()

    async def _open_journal(self, path: Path) -> Journal:
        """Take the journal's lock; with --wait, poll for it so that Ctrl-C still works meanwhile."""
        told = False
        while True:
            try:
                return Journal.open(path)
            except JournalBusyError as exc:
                if not self.options.wait:
                    raise
                if not told:
                    print(f"bulk-events: {exc}; waiting", file=sys.stderr)
                    told = True
            if self.stop_signal is not None:
                raise JournalBusyError(f"stopped while waiting for another run to release {path}")
            await asyncio.sleep(0.5)

    def _exit_code(self, counts: Counter[str]) -> int:
        if self.read_error is not None:
            return self.read_error.exit_code
        if self.stop_signal:
            return EXIT_SIGTERM if self.stop_signal == signal.SIGTERM else EXIT_SIGINT
        if self.stop_error is not None:
            return self.stop_error.exit_code
        bad = sum(n for s, n in counts.items() if Status(s) not in OK_STATUSES)
        return EXIT_ROWS if bad else EXIT_OK

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        if threading.current_thread() is not threading.main_thread():
            return []
        installed: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_stop, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not on this platform
                pass
        return installed

    async def _open_transport(self, limiter: RateLimiter) -> tuple[Transport, Any]:
        o = self.options
        timeouts = Timeouts(connect=o.connect_timeout, read=o.read_timeout)
        if self._transport_override is not None:
            await self._transport_override.open()
            return self._transport_override, None
        sandbox = None
        if o.sandbox:
            from .sandbox import Sandbox

            record = self.report_path.with_suffix(".sandbox.jsonl")
            record.write_bytes(b"")  # what arrived in this rehearsal, not in an earlier one
            sandbox = Sandbox(
                rate_limit=max(10, int(o.rate) if o.rate else 10),
                latency=0.02,
                record=record,
                history=False,
            )
            base = await sandbox.start()
            transport: Transport = ApiTransport(
                base,
                sandbox.client_id,
                sandbox.client_secret,
                o.event or "",
                concurrency=o.concurrency,
                timeouts=timeouts,
                before_request=limiter.acquire,
            )
        elif o.url:
            transport = EventUrlTransport(
                o.url, form=o.form, concurrency=o.concurrency, timeouts=timeouts
            )
        else:
            client_id = o.client_id or os.environ.get(o.client_id_env)
            client_secret = o.client_secret or os.environ.get(o.client_secret_env)
            if not client_id or not client_secret:
                raise CredentialsError(
                    f"set {o.client_id_env} and {o.client_secret_env} (or use --dry-run / --sandbox)"
                )
            transport = ApiTransport(
                o.api_base,
                client_id,
                client_secret,
                o.event or "",
                concurrency=o.concurrency,
                timeouts=timeouts,
                before_request=limiter.acquire,
            )
        try:
            await transport.open()
        except BaseException:
            await transport.aclose()
            if sandbox is not None:
                await sandbox.stop()
            raise
        return transport, sandbox

    async def _pump(
        self,
        table: Table,
        preparer: _Preparer,
        journal: Any,
        report: ReportWriter,
        counts: Counter[str],
    ) -> None:
        o = self.options
        jobs: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=max(2 * o.concurrency, 64))
        chunks: asyncio.Queue[_Chunk | None] = asyncio.Queue(maxsize=2)
        deliverer = self._deliverer
        progress = self._progress

        def advance(n: int) -> None:
            if progress is not None:
                progress.update(n)

        async def produce() -> None:
            seen = preparer.seen = SeenKeys()
            preparer.journal = journal
            iterator: Iterator[pd.DataFrame] = table.chunks(o.chunk_rows)
            try:
                while True:
                    try:
                        chunk = await asyncio.to_thread(next, iterator, None)
                    except BulkEventsError as exc:
                        # A flaw found only while streaming (a stray value under no header, an
                        # unterminated quote): stop sending, finish what is in flight, and
                        # still write the report of every row read so far.
                        self.read_error = exc
                        self._soft_stop()
                        break
                    if chunk is None:
                        break
                    if len(chunk):
                        self._last_row_read = int(chunk.index[-1])
                    if self._stopping:
                        # The rest of the file after a stop: listed as pending without being
                        # validated, so Ctrl-C on a million-row file ends in seconds. The next
                        # run checks and sends them.
                        frame = chunk
                        work = _Chunk(frame, advance)
                        pending = Outcome(
                            0, Status.PENDING, "not attempted: the run stopped before this row"
                        )
                        for i, row in enumerate(frame.index.tolist()):
                            work.set(i, replace(pending, row=row))
                        await chunks.put(work)
                        continue
                    prepared = await asyncio.to_thread(preparer, chunk)
                    log.debug(
                        "rows %d-%d read and validated: %d invalid",
                        prepared.rows[0] if prepared.rows else 0,
                        prepared.rows[-1] if prepared.rows else 0,
                        len(prepared.errors),
                    )
                    work = _Chunk(prepared.frame, advance)
                    await chunks.put(work)
                    for i, job in self._classify(prepared, work):
                        if deliverer is None or deliverer.stopping or self._hard:
                            work.set(
                                i,
                                Outcome(
                                    job.row, Status.PENDING, "not attempted: the run stopped early"
                                ),
                            )
                        else:
                            await jobs.put(job)
            finally:
                seen.close()
                await chunks.put(None)
                for _ in self._workers:
                    await jobs.put(None)

        async def work_loop() -> None:
            assert deliverer is not None
            while True:
                job = await jobs.get()
                if job is None:
                    return
                chunk, index = job.slot
                try:
                    outcome = await deliverer.deliver(job)
                except asyncio.CancelledError:
                    chunk.set(index, self._cancelled(job, deliverer))
                    self._drain(jobs)
                    raise
                chunk.set(index, outcome)

        async def write_report() -> None:
            while True:
                work = await chunks.get()
                if work is None:
                    return
                await work.done.wait()
                outcomes = [o_ for o_ in work.outcomes if o_ is not None]
                await asyncio.to_thread(report.write, work.frame, outcomes)
                for outcome in outcomes:
                    counts[outcome.status.value] += 1
                    if self.on_outcome is not None:
                        self.on_outcome(outcome)

        self._workers = (
            [asyncio.create_task(work_loop()) for _ in range(o.concurrency)] if deliverer else []
        )
        producer = asyncio.create_task(produce())
        reporter = asyncio.create_task(write_report())
        try:
            worker_results = await asyncio.gather(*self._workers, return_exceptions=True)
            for r in worker_results:
                if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                    raise r
            # Workers that were cancelled no longer drain the queue: whatever is left is pending.
            while not producer.done():
                try:
                    job = await asyncio.wait_for(jobs.get(), 0.05)
                except TimeoutError:
                    continue
                if job is not None:
                    job.slot[0].set(
                        job.slot[1],
                        Outcome(job.row, Status.PENDING, "not attempted: the run was stopped"),
                    )
            await producer
            self._drain(jobs)
            await reporter
        except BaseException:
            for task in (producer, reporter, *self._workers):
                task.cancel()
            raise

    def _cancelled(self, job: Job, deliverer: Deliverer) -> Outcome:
        attempts = deliverer.attempts.get(job.key, 0)
        if job.key in deliverer.inflight:
            deliverer.inflight.pop(job.key, None)
            message = (
                "stopped while waiting for the answer: the service may have taken it; not resent"
            )
            deliverer.journal.record_now(
                [Mark(job.key, "unknown", job.row, attempts, error=message)]
            )
            return Outcome(job.row, Status.UNKNOWN, message, attempts=attempts)
        if attempts:
            return Outcome(job.row, Status.FAILED, "stopped before a retry", attempts=attempts)
        return Outcome(job.row, Status.PENDING, "not attempted: the run was stopped")

    def _drain(self, jobs: asyncio.Queue[Job | None]) -> None:
        """Whatever is left in the queue was never attempted: pending."""
        while not jobs.empty():
            job = jobs.get_nowait()
            if job is not None:
                job.slot[0].set(
                    job.slot[1],
                    Outcome(job.row, Status.PENDING, "not attempted: the run was stopped"),
                )

    def _classify(self, prepared: _Prepared, work: _Chunk) -> Iterator[tuple[int, Job]]:
        """Decide each row's fate before sending: invalid, duplicate, already sent, or a job."""
        o = self.options
        for i, row in enumerate(prepared.rows):
            if prepared.bodies[i] is None:
                reasons = prepared.errors.get(row, ["invalid"])
                work.set(i, Outcome(row, Status.INVALID, "; ".join(reasons)))
        keys, firsts, entries = prepared.keys, prepared.firsts, prepared.entries
        for j, i in enumerate(prepared.positions):
            row = prepared.rows[i]
            body: dict[str, Any] = prepared.bodies[i]  # type: ignore[assignment]
            if firsts[j] is not None and not o.allow_duplicates:
                work.set(
                    i,
                    Outcome(
                        row,
                        Status.SKIPPED,
                        f"duplicate of row {firsts[j]} (same event); --allow-duplicates sends both",
                    ),
                )
                continue
            entry = entries.get(keys[j])
            if entry is not None and entry.state == "sent":
                work.set(
                    i,
                    Outcome(
                        row,
                        Status.SKIPPED,
                        f"already sent at {entry.sent_at} (row {entry.row} then)",
                        entry.http_status,
                        entry.attempts,
                        entry.sent_at,
                    ),
                )
                continue
            if entry is not None and entry.state in ("unknown", "inflight") and not o.retry_unknown:
                work.set(
                    i,
                    Outcome(
                        row,
                        Status.UNKNOWN,
                        "sent by an earlier run with no answer: the service may have taken it; "
                        "not resent without --retry-unknown",
                        entry.http_status,
                        entry.attempts,
                    ),
                )
                continue
            if o.only_failed and (entry is None or entry.state not in ("failed", "unknown")):
                work.set(
                    i,
                    Outcome(
                        row,
                        Status.SKIPPED,
                        "not selected: --only-failed sends only rows that failed before",
                    ),
                )
                continue
            if o.dry_run:
                work.set(i, Outcome(row, Status.VALID))
                if len(self.samples) < self._sample_limit:
                    self.samples.append((row, body))
                continue
            yield i, Job(row=row, key=keys[j], body=body, slot=(work, i))


def _check_date_format(fmt: str) -> None:
    """A --date-format must read back a date it wrote: %d/%m/%Y yes, %Q or "dd.mm" no."""
    sample = datetime(2021, 5, 28)
    try:
        ok = "%" in fmt and datetime.strptime(sample.strftime(fmt), fmt).date() == sample.date()
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(
            f'--date-format "{fmt}" cannot read a whole date; use strptime codes such as %d/%m/%Y'
        )


def _check_country(code: str) -> str:
    import phonenumbers

    region = code.strip().upper()
    if phonenumbers.country_code_for_region(region) == 0:
        raise UsageError(
            f'--default-country "{code}" is not a two-letter country code such as UA, PL or US'
        )
    return region


def _sending_time(deliverer: Deliverer | None) -> float:
    if deliverer is None or deliverer.first_start is None or deliverer.last_start is None:
        return 0.0
    return deliverer.last_start - deliverer.first_start


def _progress_bar(enabled: bool, table: Table) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    total = getattr(table, "row_estimate", None)
    return tqdm(total=total, unit="row", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)


async def run_import(
    path: str | os.PathLike[str], options: ImportOptions, **kwargs: Any
) -> RunResult:
    """Run one import inside a running event loop."""
    return await Import(path, options, **kwargs).run()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh event loop: uvloop's where it is installed (about
    a third more requests per CPU-second than asyncio's own loop), asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def import_file(path: str | os.PathLike[str], **options: Any) -> RunResult:
    """Turn a spreadsheet into SendPulse events; returns counts and the report's path.

    >>> result = import_file("customers.xlsx", event="registration", dry_run=True)  # doctest: +SKIP
    >>> result.counts["valid"], result.report_path
    """
    return run_sync(run_import(path, ImportOptions(**options)))


__all__ = [
    "EXIT_INPUT",
    "BulkEventsError",
    "Import",
    "ImportOptions",
    "RunResult",
    "import_file",
    "run_import",
    "utc_now",
]
