"""What a run shows on the terminal: its events as they come, and the summary at the end.

:class:`Renderer` takes the run's events (:mod:`bulk_events.events`) and shows what was detected,
a progress bar, stops and waits on stderr; :func:`summary` turns the run's result into the lines
printed when it ends (counts, notes, where the report and journal are, the next step).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from .events import Detected, Event, Finished, Progress, Recovered, Resuming, Stopping, Waiting
from .outcome import Status

if TYPE_CHECKING:
    from .importer import RunResult

__all__ = ["Renderer", "notes", "summary"]

_STATUS_ORDER = [s.value for s in Status]
_PENDING = Status.PENDING
_SEND_COUNTS = (Status.SENT, Status.FAILED, Status.UNKNOWN)
_DRY_RUN_COUNTS = (Status.VALID, Status.INVALID, Status.SKIPPED)
DRAW_EVERY = 0.05  # seconds between moves of the progress bar (tqdm redraws at most every 0.1)


class _BarStream:
    """A stream for log handlers while the bar is shown: each line goes above the bar."""

    def __init__(self, write: Any) -> None:
        self._write = write

    def write(self, text: str) -> int:
        if text.strip():
            self._write(text.rstrip("\n"))
        return len(text)

    def flush(self) -> None:
        pass


class Renderer:
    """Shows a run's events on stderr: what was detected, the progress bar, stops and waits.

    While the bar is shown every message (and every log line) is written above it, never
    through it; when the run stops early the bar stays where the run stopped.
    """

    def __init__(
        self,
        progress: bool,
        *,
        dry_run: bool = False,
        on_start: Callable[[], object] | None = None,
    ) -> None:
        self.progress = progress  # on a terminal: announce at the start, show a bar
        self._on_start = on_start  # called once the run says what it read (Detected)
        self.announced = False
        self._bar: Any = None
        # Beside the bar: what a run sends, or what a dry run finds.
        self._counted = _DRY_RUN_COUNTS if dry_run else _SEND_COUNTS
        self._counts: dict[str, int] = dict.fromkeys((s.value for s in self._counted), 0)
        self._unshown = 0  # rows decided since the bar was last moved
        self._next_draw = 0.0  # when the bar is moved next (time.monotonic)
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []

    def say(self, message: str) -> None:
        """Write one message on stderr (above the bar while it is shown)."""
        if self._bar is not None:
            from tqdm import tqdm

            self._move_bar()  # a message often means a wait: the bar shows every row till now

            tqdm.write(message, file=sys.stderr)
        else:
            click.echo(message, err=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            # A pending row was never attempted: the bar does not count it, so after Ctrl-C
            # it stays where the run stopped instead of running to the end of the file.
            status = event.outcome.status
            if self._bar is not None and status is not _PENDING:
                if status in self._counted:
                    self._counts[status.value] += 1
                # Moved a few times a second, not once a row: a dry run decides tens of
                # thousands of rows a second, and the bar's own work per row would cost the
                # run a few percent of its time.
                self._unshown += 1
                now = time.monotonic()
                if now >= self._next_draw:
                    self._next_draw = now + DRAW_EVERY
                    self._move_bar()
        elif isinstance(event, Detected):
            if self._on_start is not None:
                self._on_start()
            if self.progress:
                click.echo(
                    f"bulk-events: reading {event.input_name}: {event.description}", err=True
                )
                self.announced = True
                self._start_bar(event.row_estimate)
        elif isinstance(event, Resuming):
            left = "" if event.remaining is None else f"; about {event.remaining} remain"
            self.say(
                f"bulk-events: resuming: {event.already_sent} row(s) of this file already sent by "
                f"earlier runs (skipped){left}"
            )
        elif isinstance(event, Recovered):
            self.say(
                f"bulk-events: {event.rows} row(s) were in flight when an earlier run stopped; "
                "they are unknown and not resent (--retry-unknown resends them)"
            )
        elif isinstance(event, Waiting):
            self.say(f"bulk-events: {event.reason}; waiting")
        elif isinstance(event, Stopping):
            doing = "finishing the requests in flight, then " if event.in_flight else ""
            self.say(
                f"bulk-events: {event.cause}: {doing}writing the report; rows not attempted are "
                "pending (press Ctrl-C again to stop at once)"
            )
        elif isinstance(event, Finished):
            result = event.result
            self.close(complete=not result.stopped and result.exit_code not in (130, 143))

    def _start_bar(self, total: int | None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            unit="row",
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.1,
        )
        self._bar.set_postfix_str(self._postfix(), refresh=False)
        stream = _BarStream(lambda line: tqdm.write(line, file=sys.stderr))
        for name in ("bulk_events", "aiohttp", "py.warnings"):
            for handler in logging.getLogger(name).handlers:
                if isinstance(handler, logging.StreamHandler):
                    self._handlers.append((handler, handler.setStream(stream)))

    def _postfix(self) -> str:
        # Written out here: tqdm's own formatting of numbers shortens 30000 to "3e+4".
        return ", ".join(f"{name}={n}" for name, n in self._counts.items())

    def _move_bar(self) -> None:
        self._bar.set_postfix_str(self._postfix(), refresh=False)
        self._bar.update(self._unshown)
        self._unshown = 0

    def close(self, complete: bool = False) -> None:
        """Put the log handlers back and close the bar (``complete``: at the end of the file)."""
        for handler, stream in self._handlers:
            handler.setStream(stream)
        self._handlers.clear()
        if self._bar is not None:
            self._move_bar()  # the rows decided since it last moved
            if complete:
                self._bar.total = self._bar.n  # the estimate counted blank rows too
            self._bar.refresh()
            self._bar.close()
            self._bar = None


def summary(result: RunResult, dry_run: bool, announced: bool, plan: str = "") -> str:
    """The lines printed when a run ends; ``announced``: the input was already named at its start."""
    parts = [f"{result.counts[s]} {s}" for s in _STATUS_ORDER if result.counts.get(s)]
    rows = sum(result.counts.values())
    line = f"bulk-events: {rows} row{'s' if rows != 1 else ''}: {', '.join(parts) or 'none'}"
    if not dry_run:
        line += f" in {result.elapsed:.1f} s"
        if result.requests:
            rate = f"{result.rate:.1f} requests/s, " if result.rate else ""
            line += f" ({rate}{result.requests} request{'s' if result.requests != 1 else ''})"
    lines = [line, *notes(result)]
    if result.detected and not announced:
        lines.insert(0, f"bulk-events: read {result.input_name}: {result.detected}")
    if result.stopped:
        lines.append(f"bulk-events: {result.stopped}")
    if plan:
        lines.append(f"bulk-events: sending {plan}")
    lines.append(f"report: {result.report_path or 'not written'}")
    if result.sandbox_record:
        lines.append(f"sandbox: what arrived is in {result.sandbox_record}")
    if result.errors_path:
        lines.append(f"errors: {result.errors_path} (the rows to fix; feed it back in as input)")
    if result.journal_path:
        lines.append(f"journal: {result.journal_path}")
    lines.append(f"next: {result.next_step}")
    return "\n".join(lines)


def notes(result: RunResult) -> list[str]:
    """What a person should know besides the counts: per-event counts, held-back changed rows
    and phones going out without a country code."""
    lines = []
    if result.per_event:
        shown = ", ".join(f"{e} {n}" for e, n in sorted(result.per_event.items()))
        lines.append(f"bulk-events: rows by event: {shown}")
    changed = result.reasons.get("changed_contact", 0)
    if changed:
        lines.append(
            f"bulk-events: {changed} of them: contact already received this event in an earlier "
            "run, with other cells (see the report); --key COLUMN says what makes an event new, "
            "--resend-changed sends them"
        )
    hidden = result.reasons.get("hidden", 0)
    if hidden:
        lines.append(
            f"bulk-events: {hidden} of them: hidden in the sheet, not sent (--hidden skip; "
            "--hidden include sends them)"
        )
    if result.national_phones:
        n = result.national_phones
        lines.append(
            f"bulk-events: warning: {n} phone{' looks' if n == 1 else 's look'} national (no "
            "country code) and would go out as written; --default-country CC or "
            "--country-column COLUMN makes them international"
        )
    return lines
