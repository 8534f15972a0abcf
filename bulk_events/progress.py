"""How far a run is, as it goes: counts of the rows decided so far, the achieved rate over time,
the most frequent errors. The run writes a snapshot into its journal's ``runs`` row about once a
second (:meth:`RunProgress.snapshot`), so that ``bulk-events status`` in another terminal can
tell how far it is without touching the run.

>>> progress = RunProgress(total=3, event="registration")
>>> progress.add(Outcome(2, Status.SENT))
>>> progress.counts["sent"], progress.snapshot()["total"]
(1, 3)
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .outcome import Outcome, Status, count_values, status_of

if TYPE_CHECKING:
    from .delivery import JournalWriter
    from .ratelimit import RateLimiter

log = logging.getLogger(__name__)

BUCKET = 10.0  # seconds per point of the rate series
MAX_POINTS = 360  # the series is coarsened (buckets doubled) beyond this many points
RATE_WINDOW = 30.0  # the "current rate" is over the last this many seconds
TOP_ERRORS = 10
EXAMPLES = 3
_ERROR_KINDS = frozenset({Status.INVALID, Status.FAILED, Status.UNKNOWN})
_NOTED = _ERROR_KINDS | {Status.SENT}  # what add() does more with than count
# The journal holds no personal data: a cell value quoted in a message is masked, which also
# lets "email "a@x" is not valid" and "email "b@y" is not valid" count as one error.
_QUOTED = re.compile(r'"[^"]*"|“[^”]*”')
_ROW = re.compile(r"\brow \d+")


def error_kind(message: str) -> str:
    """A message without the row's own values: what several rows may have in common."""
    return _ROW.sub("row …", _QUOTED.sub('"…"', message))[:300]


class RunProgress:
    """Live tallies of one run; fed every row's outcome with :meth:`add`."""

    def __init__(
        self,
        total: int | None,
        event: str = "",
        *,
        already_sent: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.event = event
        self.already_sent = already_sent  # by earlier runs, to this destination
        self.counts: Counter[str] = Counter()
        self._clock = clock
        self._started = clock()
        self.bucket = BUCKET
        self.series: list[int] = []  # rows sent per bucket since the start
        self._recent: deque[tuple[float, int]] = deque()  # (second, sent in it)
        self._errors: Counter[str] = Counter()
        self._examples: dict[str, list[int]] = {}

    def add(self, outcome: Outcome) -> None:
        """One row is decided."""
        self.counts[outcome.status.value] += 1
        if outcome.status is Status.SENT:
            self._sent_now()
        if outcome.status in _ERROR_KINDS and outcome.error:
            self._error(outcome)

    def _error(self, outcome: Outcome) -> None:
        """Tally an error of one row under its kind, with a few example rows."""
        kind = f"{outcome.status.value}: {error_kind(outcome.error)}"
        self._errors[kind] += 1
        rows = self._examples.setdefault(kind, [])
        if len(rows) < EXAMPLES:
            rows.append(outcome.row)
        if len(self._errors) > 10 * TOP_ERRORS:  # keep memory flat on odd files
            for rare, _ in self._errors.most_common()[5 * TOP_ERRORS :]:
                del self._errors[rare]
                self._examples.pop(rare, None)

    def add_many(self, outcomes: Sequence[Outcome]) -> None:
        """Many rows are decided (a chunk's): :meth:`add` of each, the counts in one go (a
        dry run's chunk, every row valid but a few, is tallied in C, not row by row)."""
        statuses = list(map(status_of, outcomes))
        count_values(self.counts, statuses)
        sent = Status.SENT
        for outcome in itertools.compress(outcomes, map(_NOTED.__contains__, statuses)):
            if outcome.status is sent:
                self._sent_now()
            elif outcome.error:
                self._error(outcome)

    def _sent_now(self) -> None:
        elapsed = self._clock() - self._started
        index = int(elapsed // self.bucket)
        while index >= MAX_POINTS:  # coarsen: two buckets become one
            pairs = [self.series[i : i + 2] for i in range(0, len(self.series), 2)]
            self.series = [sum(p) for p in pairs]
            self.bucket *= 2
            index = int(elapsed // self.bucket)
        if len(self.series) <= index:
            self.series.extend([0] * (index + 1 - len(self.series)))
        self.series[index] += 1
        second = float(int(elapsed))
        if self._recent and self._recent[-1][0] == second:
            self._recent[-1] = (second, self._recent[-1][1] + 1)
        else:
            self._recent.append((second, 1))

    @property
    def decided(self) -> int:
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        """Rows sent per second over the last :data:`RATE_WINDOW` seconds."""
        elapsed = self._clock() - self._started
        while self._recent and self._recent[0][0] < elapsed - RATE_WINDOW:
            self._recent.popleft()
        window = min(RATE_WINDOW, elapsed)
        if window < 1.0:
            return 0.0
        return sum(n for _, n in self._recent) / window

    def errors(self) -> list[dict[str, Any]]:
        """The most frequent errors: message, count, example rows."""
        return [
            {"error": kind, "count": n, "rows": self._examples.get(kind, [])}
            for kind, n in self._errors.most_common(TOP_ERRORS)
        ]

    def snapshot(self) -> dict[str, Any]:
        """What the journal keeps of the run's progress (JSON-ready)."""
        total = self.total if self.total is None else max(self.total, self.decided)
        return {
            "total": total,
            "counts": dict(self.counts),
            "events": {self.event: dict(self.counts)} if self.event else {},
            "already_sent": self.already_sent,
            "bucket": self.bucket,
            "series": list(self.series),
            "errors": self.errors(),
        }


__all__ = ["RunProgress", "error_kind"]


def record(
    progress: RunProgress | None, writer: JournalWriter, limiter: RateLimiter | None = None
) -> None:
    """Write how far the run is into its journal's ``runs`` row (read by ``bulk-events status``)."""
    if progress is None:
        return
    pause = limiter.paused_for if limiter is not None else 0.0
    until = None
    if pause > 0:
        until = datetime.fromtimestamp(time.time() + pause, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    snapshot = progress.snapshot()
    writer.progress(
        total=snapshot["total"],
        rate=round(progress.rate, 3),
        paused_until=until,
        pause_reason="the service answered 429 (too many requests)" if until else None,
        progress=snapshot,
    )


async def keep_recording(
    progress: RunProgress | None, writer: JournalWriter, limiter: RateLimiter
) -> None:
    """About once a second, :func:`record` (until cancelled)."""
    while True:
        await asyncio.sleep(1.0)
        try:
            record(progress, writer, limiter)
        except Exception:  # progress is for people: it must never stop the run
            log.debug("could not record the run's progress", exc_info=True)
