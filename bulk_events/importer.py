"""One import run: open the file, the journal and the target, run the pipeline, sum it up.

The stages themselves are elsewhere (:mod:`.triage`, :mod:`.delivery`, :mod:`.pipeline` for the
queues between them); this module sets them up and tears them down. The library never prints:
it tells ``on_event`` what happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from . import spawner
from .checker import CheckPool, worth_a_process
from .columns import Chosen, choose_columns
from .delivery import Deliverer, JournalWriter, RetryPolicy
from .errors import (
    ColumnError,
    JournalBusyError,
    ReportError,
    ScratchError,
    ServiceUnavailable,
    StorageError,
    UsageError,
)
from .events import Detected, Emit, Event, Finished, Progress, Recovered, Resuming, Waiting
from .journal import Journal, default_journal_path
from .layout import Layout, plan_columns
from .options import ImportOptions, PathLike, Settings
from .outcome import Outcome, Status, count_values, reason_of
from .pipeline import pump
from .progress import RunProgress, keep_recording, record
from .ratelimit import RateLimiter
from .reader import Table, hidden_policy, open_table
from .report import ErrorsWriter, ReportWriter
from .schema import RowValidator
from .stopper import Stopper, install_signal_handlers
from .transport.base import Transport
from .triage import Triage

if TYPE_CHECKING:
    from .sandbox import Sandbox

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    journal_path: Path | None = None
    sandbox_record: Path | None = None
    reasons: Counter[str] = field(default_factory=Counter)  # skipped and unknown rows, by why
    per_event: Counter[str] = field(default_factory=Counter)  # --event-column: rows by event
    national_phones: int = 0  # phones that look national and go out without a country code
    without_automation_id: int = 0  # rows sent (or valid) with no automation_id
    errors_path: Path | None = None
    event: str = ""  # the destination's event (or the event URL's short label)
    dry_run: bool = False

    @property
    def rate(self) -> float:
        """Requests started per second while sending: what the rate limit is about."""
        if self.requests < 10 or self.sending_time < 0.5:
            return 0.0  # too few to mean anything
        return (self.requests - 1) / self.sending_time

    @property
    def next_step(self) -> str:
        """What to do now, as one line with the command (``233 pending: run the same command
        again``)."""
        from .status import next_step

        return next_step(self.counts, self.exit_code, self.stopped, dry_run=self.dry_run)

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready values (what ``import --json`` prints)."""
        counts = {s.value: self.counts.get(s.value, 0) for s in Status}
        return {
            "exit_code": self.exit_code,
            "counts": counts,
            "events": {self.event: counts} if self.event else {},
            "rows": sum(self.counts.values()),
            "input": self.input_name,
            "report": None if self.report_path is None else str(self.report_path),
            "errors": None if self.errors_path is None else str(self.errors_path),
            "journal": None if self.journal_path is None else str(self.journal_path),
            "sandbox_record": None if self.sandbox_record is None else str(self.sandbox_record),
            "stopped": self.stopped or None,
            "elapsed": round(self.elapsed, 3),
            "requests": self.requests,
            "rate": round(self.rate, 3),
            "dry_run": self.dry_run,
            "next_step": self.next_step,
        }


def default_report_path(input_path: Path, report_format: str = "csv") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path.cwd() / f"bulk-events-report-{input_path.stem}-{stamp}.{report_format}"


class Import:
    """One import run. Most callers want :func:`import_file`; this class lets a caller stop a run.

    >>> run = Import("customers.csv", event="registration", dry_run=True)  # doctest: +SKIP
    >>> result = run_sync(run.run())  # doctest: +SKIP
    """

    def __init__(
        self,
        path: PathLike,
        options: ImportOptions | None = None,
        *,
        transport: Transport | None = None,
        on_event: Emit | None = None,
        samples: int = 0,
        **settings: Unpack[Settings],
    ) -> None:
        if options is None:
            options = ImportOptions.from_settings(**settings)
        elif settings:
            raise UsageError("give either the options or settings, not both")
        self.path = Path(path)
        self.options = options
        self.samples: list[tuple[int, dict[str, Any]]] = []
        self._sample_limit = samples
        self.layout: Layout | None = None
        self.chosen: Chosen | None = None
        self.reasons: Counter[str] = Counter()
        self.journal_path: Path | None = None
        self._transport_override = transport
        self._on_event = on_event
        self.stopper = Stopper(options.delivery.grace, self._emit)
        self.progress: RunProgress | None = None

    def _emit(self, event: Event) -> None:
        if isinstance(event, Progress) and event.outcome.reason is not None:
            self.reasons[event.outcome.reason.value] += 1
        if self.progress is not None and isinstance(event, Progress):
            self.progress.add(event.outcome)
        if self._on_event is not None:
            self._on_event(event)

    def _emit_decided(self, outcomes: Sequence[Outcome]) -> None:
        """:meth:`_emit` of a ``Progress`` for each of many rows, the tallies in one go."""
        count_values(self.reasons, map(reason_of, outcomes))
        if self.progress is not None:
            self.progress.add_many(outcomes)
        on_event = self._on_event
        if on_event is not None:
            for outcome in outcomes:
                on_event(Progress(outcome))

    def request_stop(self, signum: int | None = None) -> None:
        """First call: finish what is in flight, start nothing new. Second call: stop at once."""
        self.stopper.request(signum)

    async def run(self) -> RunResult:
        started = time.monotonic()
        r = self.options.reading
        table = await asyncio.to_thread(
            open_table,
            self.path,
            sheet=r.sheet,
            encoding=r.encoding,
            delimiter=r.delimiter,
            header_row=r.header_row,
        )
        try:
            # A sheet that hides rows or columns stops here, before anything is sent, unless
            # --hidden says what to do with them.
            return await self._run_table(hidden_policy(table, r.hidden), started)
        finally:
            table.close()

    async def _run_table(self, table: Table, started: float) -> RunResult:
        o = self.options
        parallel = o.reading.parallel
        if parallel is None:
            parallel = worth_a_process(
                table.row_estimate, o.reading.chunk_rows, sending=not o.dry_run
            )
        # Chunks checked elsewhere: the process they are forked from starts now, and makes its
        # imports on another core while this one sets the run up.
        forks = spawner.start() if parallel else None
        try:
            return await self._run_checked(table, started, parallel, forks)
        finally:
            if forks is not None:
                forks.close()

    async def _run_checked(
        self, table: Table, started: float, parallel: bool, forks: spawner.Spawner | None
    ) -> RunResult:
        o, target = self.options, self.options.target
        layout, self.chosen = plan_layout(table, o, self.path.name)
        columns = list(table.columns)
        self.layout = layout
        validator = make_validator(table, layout, o)
        if not parallel:
            validator.ready()  # its imports made before the run says what it read
        log.info("reading %s: %s", self.path, table.detected.describe())
        self._emit(Detected(self.path.name, table.detected.describe(), table.row_estimate))
        report_path = Path(o.report) if o.report else default_report_path(self.path)
        delimiter = table.detected.delimiter or ","
        report = ReportWriter(report_path, columns, delimiter=delimiter, sent_as=True)
        errors: ErrorsWriter | None = None
        if o.errors:
            try:
                errors = ErrorsWriter(Path(o.errors), columns, delimiter=delimiter)
            except BaseException:
                report.abort()
                raise
        event_name = target.event or target.journal_name
        self.progress = RunProgress(table.row_estimate, event_name)
        journal_path = (
            Path(o.state)
            if o.state
            else default_journal_path(target.journal_identity, target.journal_name)
        )
        legacy = None if o.state or not target.event else self._legacy_journal(target.event)
        if o.dry_run and legacy is not None and legacy.exists() and not journal_path.exists():
            journal_path = legacy  # what an earlier version recorded, until a run adopts it
        self.journal_path = journal_path
        loop = asyncio.get_running_loop()
        installed = install_signal_handlers(loop, self.request_stop)
        journal: Journal | None = None
        transport: Transport | None = None
        sandbox: Sandbox | None = None
        deliverer: Deliverer | None = None
        writer: JournalWriter | None = None
        triage: Triage | None = None
        pool: CheckPool | None = None
        run_id = 0
        counts: Counter[str] = Counter()
        result: RunResult | None = None
        progress_task: asyncio.Task[None] | None = None
        try:
            limiter = RateLimiter(o.delivery.rate)
            if o.dry_run:
                journal = await asyncio.to_thread(Journal.open, journal_path, readonly=True)
            else:
                journal = await self._open_journal(journal_path)
                if legacy is not None:
                    journal.adopt(legacy)
                if o.selection.fresh:
                    journal.reset()
                if journal.recovered:
                    self._emit(Recovered(journal.recovered))
                already = journal.sent_by_earlier_runs(input=str(self.path), target=target.label)
                self.progress.already_sent = already
                if already:
                    estimate = table.row_estimate
                    left = None if estimate is None else max(0, estimate - already)
                    self._emit(Resuming(already, left))
                try:
                    transport, sandbox = await self._open_transport(limiter, report_path)
                except ServiceUnavailable as exc:
                    # Down at the start or in the middle, a caller learns it one way: a result
                    # with exit code 75, every row not sent pending.
                    self.stopper.fail(exc)
                run_id = journal.start_run(input=str(self.path), target=target.label)
                log.info("run %d: sending to %s; journal %s", run_id, target.label, journal.path)
                writer = JournalWriter(journal, run_id)
                if transport is not None:
                    deliverer = Deliverer(
                        transport,
                        limiter,
                        writer,
                        RetryPolicy(max_attempts=o.delivery.max_attempts),
                        stopper=self.stopper,
                        max_events=o.delivery.max_events,
                    )
                progress_task = asyncio.create_task(keep_recording(self.progress, writer, limiter))
            assert self.chosen is not None
            adopt = (
                None
                if o.state or journal.readonly
                else lambda event, j=journal: j.adopt(self._legacy_journal(event))
            )
            triage = Triage(
                layout,
                validator,
                identity=target.identity,
                selection=o.selection,
                journal=journal,
                chosen=self.chosen,
                identity_of=target.identity_of if target.event_column else None,
                run_id=run_id,
                on_new_event=adopt if target.event_column else None,
                sent_event=event_name,
                dry_run=o.dry_run,
            )
            if parallel:
                pool = CheckPool(triage.checker, forks=forks)
            await pump(
                table,
                triage,
                deliverer,
                report,
                counts,
                stopper=self.stopper,
                emit=self._emit,
                chunk_rows=o.reading.chunk_rows,
                concurrency=o.delivery.concurrency,
                samples=self.samples,
                sample_limit=self._sample_limit,
                errors=errors,
                pool=pool,
                emit_many=self._emit_decided,
            )
            written = _commit(report, self.stopper)
            errors_path = _commit(errors, self.stopper) if errors is not None else None
            if self.stopper.storage_error is not None:
                self.stopper.where = _where_it_stands(
                    self.stopper.storage_error, counts, written, journal
                )
            rows = sum(counts.values())
            result = RunResult(
                counts=counts,
                report_path=written,
                exit_code=self.stopper.exit_code(counts, o.invalid_allowed(rows)),
                elapsed=time.monotonic() - started,
                requests=deliverer.requests if deliverer else 0,
                sending_time=deliverer.sending_time if deliverer else 0.0,
                sent=counts.get(Status.SENT.value, 0),
                rows=sum(counts.values()),
                stopped=self.stopper.reason,
                detected=table.detected.describe(),
                input_name=self.path.name,
                journal_path=None if o.dry_run else journal.path,
                sandbox_record=_record_of(sandbox),
                reasons=self.reasons,
                per_event=triage.per_event,
                national_phones=triage.national_phones,
                without_automation_id=triage.without_automation_id,
                errors_path=errors_path,
                event=event_name,
                dry_run=o.dry_run,
            )
            self._emit(Finished(result))
            return result
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            if progress_task is not None:
                progress_task.cancel()
            if pool is not None:
                pool.close()
            if triage is not None:
                triage.close()
            with contextlib.suppress(OSError):  # a full disk: the temporary file goes anyway
                report.__exit__(None, None, None)
                if errors is not None:
                    errors.__exit__(None, None, None)
            if transport is not None:
                await transport.aclose()
            if sandbox is not None:
                await sandbox.stop()
            if writer is not None:
                writer.close()  # every mark queued is committed before the journal closes
            if journal is not None:
                try:
                    if run_id and result is not None:
                        record(self.progress, JournalWriter(journal, run_id))
                        journal.finish_run(run_id, dict(counts), result.exit_code, result.stopped)
                except StorageError as exc:  # the run's summary already says it
                    log.warning("could not record the end of the run: %s", exc)
                finally:
                    journal.close()

    def _legacy_journal(self, event: str) -> Path:
        """Where earlier versions kept the journal of one event (one file per event)."""
        return default_journal_path(*self.options.target.legacy_journal(event))

    async def _open_journal(self, path: Path) -> Journal:
        """Take the journal's lock; with --wait, poll for it so that Ctrl-C still works meanwhile."""
        told = False
        o = self.options
        while True:
            try:
                return Journal.open(path, destination=o.target.identity, fresh=o.selection.fresh)
            except JournalBusyError as exc:
                if not o.delivery.wait:
                    raise
                if not told:
                    self._emit(Waiting(str(exc)))
                    told = True
            if self.stopper.signal is not None:
                raise JournalBusyError(f"stopped while waiting for another run to release {path}")
            await asyncio.sleep(0.5)

    async def _open_transport(
        self, limiter: RateLimiter, report_path: Path
    ) -> tuple[Transport, Sandbox | None]:
        if self._transport_override is not None:
            await self._transport_override.open()
            return self._transport_override, None
        o = self.options
        return await o.target.open(
            limiter=limiter,
            concurrency=o.delivery.concurrency,
            timeouts=o.delivery.timeouts,
            credentials=o.credentials,
            sandbox_record=report_path.with_suffix(".sandbox.jsonl"),
        )


def _commit(report: ReportWriter, stopper: Stopper) -> Path | None:
    """Move a finished report into place; None when it could not be written."""
    if isinstance(stopper.storage_error, ReportError):
        return None
    try:
        return report.commit()
    except OSError as exc:
        stopper.storage_failed(
            ReportError(f"cannot write the report {report.path}: {exc.strerror or exc}")
        )
        return None


def make_validator(table: Table, layout: Layout, o: ImportOptions) -> RowValidator:
    """The validator of a run's rows, as the options and the file's own conventions ask."""
    return RowValidator(
        layout,
        date_format=o.schema.date_format,
        default_automation_id=o.schema.automation_id,
        default_country=o.schema.default_country,
        decimal_comma=table.detected.delimiter == ";",
        email_alone=True,  # a good email with a bad phone goes out without the phone
    )


def plan_layout(table: Table, o: ImportOptions, file_label: str) -> tuple[Layout, Chosen]:
    """The columns' layout and what each body holds (a report fed back in reads as its input:
    see the reader)."""
    try:
        layout = plan_columns(
            list(table.columns),
            types=o.schema.types,
            mapping=o.schema.map,
            file_label=file_label,
            default_automation_id=o.schema.automation_id is not None,
            country_column=o.schema.country_column,
        )
        b = o.body
        chosen = choose_columns(
            layout,
            exclude=b.exclude,
            columns=b.columns,
            event_column=o.target.event_column,
            key=b.key,
        )
        layout = chosen.layout
    except ColumnError as exc:
        sheets = table.detected.sheets
        if len(sheets) > 1 and o.reading.sheet is None:
            listing = ", ".join(f'"{s}"' for s in sheets)
            raise ColumnError(
                f"{exc}; that is the first sheet, pick another with --sheet (sheets: {listing})"
            ) from None
        raise
    for c in layout.columns:
        role = c.name if c.role == "variable" else c.role
        log.info("column %r -> %s (%s)", c.source.strip(), role, c.type)
    return layout, chosen


def _where_it_stands(
    error: StorageError, counts: Counter[str], report: Path | None, journal: Journal | None
) -> str:
    """After a storage fault: what this run sent and what the journal knows, for the summary."""
    sent = counts.get(Status.SENT.value, 0)
    done = f"this run sent {sent} row{'' if sent == 1 else 's'}"
    if isinstance(error, ReportError):
        where = f"the journal {journal.path}" if journal is not None else "the journal"
        return (
            f"{done} and {where} records every outcome: free some space and run the same "
            "command again (rows sent are skipped, the report is written in full)"
        )
    if report is None:
        return f"{done}; the report could not be written either"
    if isinstance(error, ScratchError):
        return (
            f"{done}, listed in the report {report}, and the journal records every outcome: "
            "free some space in the temporary folder (or point TMPDIR at another) and run the "
            "same command again"
        )
    return (
        f"{done}, listed in the report {report}; rows the journal could not record are "
        "unknown to the next run, which does not resend them without --retry-unknown"
    )


def _record_of(sandbox: Sandbox | None) -> Path | None:
    """Where a sandbox rehearsal wrote what arrived."""
    record = sandbox.record_path if sandbox is not None else None
    return Path(record) if record is not None else None


async def run_import(
    path: PathLike,
    options: ImportOptions | None = None,
    *,
    on_event: Emit | None = None,
    **settings: Unpack[Settings],
) -> RunResult:
    """Run one import inside a running event loop."""
    return await Import(path, options, on_event=on_event, **settings).run()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh event loop: uvloop's where it is installed (about
    a third more requests per CPU-second than asyncio's own loop), asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def import_file(
    path: PathLike, *, on_event: Emit | None = None, **settings: Unpack[Settings]
) -> RunResult:
    """Turn a spreadsheet into SendPulse events; returns counts and the report's path.

    Settings are named as on the command line (``map=``, ``types=``, ``rate=`` ...); see
    :class:`~bulk_events.options.Settings`. Nothing is printed: pass ``on_event`` to follow along.

    >>> result = import_file("customers.xlsx", event="registration", dry_run=True)  # doctest: +SKIP
    >>> result.counts["valid"], result.report_path
    """
    return run_sync(run_import(path, on_event=on_event, **settings))


__all__ = ["Import", "ImportOptions", "RunResult", "import_file", "run_import", "run_sync"]
