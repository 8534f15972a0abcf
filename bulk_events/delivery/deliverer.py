"""Deliver one event: rate limit, journal marks, retries, acting on each attempt's verdict.

What each answer means is :func:`bulk_events.delivery.verdict.judge`; when too many events fail
the :class:`~bulk_events.delivery.breaker.Breaker` trips; what stops the run is the
:class:`~bulk_events.stopper.Stopper`. A delivery cancelled mid-request records its own row as
``unknown`` (the service may have taken it): nothing outside the deliverer needs to know.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bulk_events.errors import (
    AuthRejected,
    DeliveryError,
    EventLimitReached,
    QuotaSpent,
    StorageError,
)
from bulk_events.journal import Mark, State, utc_now
from bulk_events.outcome import Outcome, Status, not_attempted
from bulk_events.ratelimit import RateLimiter
from bulk_events.stopper import Stopper
from bulk_events.transport.base import MaybeSent, NotSent, Reply, Transport, Unsendable

from .breaker import Breaker
from .verdict import Kind, Verdict, judge
from .writer import JournalWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry what is safe to retry."""

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    quota_wait: float = 120.0  # a Retry-After longer than this means "quota exhausted": stop
    max_429_in_a_row: int = 12  # so many 429s with no success between them: stop, quota exhausted
    # A 429 without the per-second code and without Retry-After is a quota's: after so many
    # refusal episodes with no success between them, the quota is spent (a few seconds, not
    # a minute of backoffs).
    quota_429s: int = 3
    quota_pause: float = 1.0  # the pause after the first such 429; doubled after each one
    breaker_window: int = 20
    breaker_failures: int = 16

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter (AWS architecture blog): spreads retries out."""
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))


@dataclass(frozen=True, slots=True)
class Job:
    """One row to deliver."""

    row: int
    key: bytes
    body: dict[str, Any]
    event: str | None = None  # the row's own REST API event (--event-column), else the target's


@dataclass(slots=True)
class _Progress:
    """One job's state while it is delivered (lives only in its delivery's frame)."""

    attempts: int = 0
    in_flight: bool = False
    last: Outcome | None = None
    reauthenticated: bool = False
    marked: bool = False  # journaled in flight, the request not yet answered
    verdict: Verdict | None = None  # the answer to the current attempt, once it came


_NOT_LEFT = "not sent: the run stopped before this request left"


class Deliverer:
    """Sends jobs through a transport under a rate limiter, journaling every step."""

    def __init__(
        self,
        transport: Transport,
        limiter: RateLimiter,
        journal: JournalWriter,
        policy: RetryPolicy | None = None,
        *,
        stopper: Stopper | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_events: int | None = None,
    ) -> None:
        self.transport = transport
        self._ready = getattr(transport, "ready", None)
        self.limiter = limiter
        self.journal = journal
        self.policy = policy or RetryPolicy()
        self.stopper = stopper or Stopper()
        self._clock = clock
        self._breaker = Breaker(self.policy.breaker_window, self.policy.breaker_failures)
        self._429_in_a_row = 0
        self._quota_in_a_row = 0
        self.max_events = max_events
        self.events = 0  # events (rows) this run has started to send
        self._last_pause = float("-inf")  # when the run last paused for a 429
        self.requests = 0
        self.first_start: float | None = None  # clock time of the first request
        self.last_start: float | None = None  # clock time of the latest request

    @property
    def sending_time(self) -> float:
        """From the first request's start to the last one's."""
        if self.first_start is None or self.last_start is None:
            return 0.0
        return self.last_start - self.first_start

    async def deliver(self, job: Job) -> Outcome:
        """Deliver one job; the returned outcome is already in the journal.

        If the calling task is cancelled meanwhile, the outcome says what is known (``unknown``
        when a request was on its way), is journaled, and is returned; the task stays cancelled
        (``asyncio.current_task().cancelling()``), so its caller should stop after storing it.
        """
        progress = _Progress()
        try:
            return await self._deliver(job, progress)
        except asyncio.CancelledError:
            return self._interrupted(job, progress)
        except StorageError as exc:
            self.stopper.storage_failed(exc)
            return self._unrecorded(job, progress)

    def _unrecorded(self, job: Job, progress: _Progress) -> Outcome:
        """The journal could not record a mark: say what really happened to the row."""
        v, attempts = progress.verdict, progress.attempts
        if v is None:  # its in-flight mark failed, so this attempt never left
            return progress.last or not_attempted(job.row, "the journal cannot be written")
        note = "the journal could not record this answer: the next run lists the row as unknown"
        if v.kind is Kind.SENT:
            return Outcome(job.row, Status.SENT, note, v.http_status, attempts, utc_now(), v.detail)
        if v.kind is Kind.UNKNOWN:
            return Outcome(job.row, Status.UNKNOWN, f"{v.message}; {note}", attempts=attempts)
        return Outcome(
            job.row, Status.FAILED, f"{v.message}; {note}", v.http_status, attempts, None, v.detail
        )

    def _interrupted(self, job: Job, progress: _Progress) -> Outcome:
        attempts = progress.attempts
        if progress.in_flight:
            message = (
                "stopped while waiting for the answer: the service may have taken it; not resent"
            )
            try:
                self.journal.record_now(
                    [Mark(job.key, State.UNKNOWN, job.row, attempts, error=message)]
                )
            except StorageError as exc:  # still in flight in the journal: unknown next run
                self.stopper.storage_failed(exc)
            return Outcome(job.row, Status.UNKNOWN, message, attempts=attempts)
        if progress.marked:
            self.journal.record_now(
                [Mark(job.key, State.FAILED, job.row, attempts, error=_NOT_LEFT)]
            )
        if attempts:
            return Outcome(job.row, Status.FAILED, "stopped before a retry", attempts=attempts)
        return not_attempted(job.row, "the run was stopped")

    def _stop(self, error: DeliveryError) -> None:
        self.stopper.fail(error)

    def _finish(self, ok: bool, note: str = "") -> None:
        """Feed the circuit breaker: ``ok`` is whether the service itself worked."""
        if ok:
            self._429_in_a_row = 0
            self._quota_in_a_row = 0
        tripped = self._breaker.record(ok, note)
        if tripped is not None:
            self._stop(tripped)

    async def _mark(self, job: Job, state: State, attempts: int, **fields: Any) -> None:
        await self.journal.record(Mark(job.key, state, job.row, attempts, **fields))

    async def _deliver(self, job: Job, progress: _Progress) -> Outcome:
        ready = self._ready
        if self.max_events is not None and not self.stopper.stopping:
            if self.events >= self.max_events:
                self._stop(
                    EventLimitReached(
                        f"stopped after --max-events {self.max_events}: the rest are pending; "
                        "run the same command again to send the next ones"
                    )
                )
                return not_attempted(job.row, f"--max-events {self.max_events} reached")
            self.events += 1
        while True:
            if self.stopper.stopping:
                return progress.last or not_attempted(job.row)
            if ready is not None:
                # A token renewal happens here, before this request takes a turn of the rate
                # limit: no turn is held (and then spent in a burst) while the token is fetched.
                await ready()
            attempts = progress.attempts + 1
            progress.verdict = None
            # The in-flight mark is durable before the turn is taken: nothing stands between the
            # turn and the socket, so the request leaves when the limiter says.
            await self.journal.record(Mark(job.key, State.INFLIGHT, job.row, attempts))
            progress.marked = True
            # A stop that came while the mark was being committed finds this request in flight
            # (marked, its turn granted at once): it leaves, like every request in flight. A
            # stop while it waits for its turn keeps it from leaving.
            at_once = self.limiter.unlimited
            with await self.limiter.take() as slot:
                if self.stopper.stopping and not at_once:
                    await self._unmark(job, progress)
                    return progress.last or not_attempted(job.row)
                progress.attempts = attempts
                self.requests += 1
                started = self.last_start = self._clock()
                if self.first_start is None:
                    self.first_start = started
                progress.in_flight = True
                answer: Reply | NotSent | MaybeSent
                try:
                    answer = await (
                        self.transport.send(job.body, event=job.event)
                        if job.event
                        else self.transport.send(job.body)
                    )
                except Unsendable as exc:
                    progress.in_flight = progress.marked = False
                    return await self._unsendable(job, attempts, exc)
                except (NotSent, MaybeSent) as exc:
                    answer = exc
                progress.in_flight = False
                progress.marked = False
            sent_clock = slot.left if slot.left is not None else started
            verdict = progress.verdict = judge(answer)
            if isinstance(answer, Reply) and log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "row %d: attempt %d: HTTP %d %s",
                    job.row,
                    attempts,
                    answer.status,
                    verdict.detail,
                )
            outcome = await self._act(job, progress, verdict, sent_clock)
            if outcome is not None:
                return outcome

    async def _unmark(self, job: Job, progress: _Progress) -> None:
        """The run stopped between the in-flight mark and the request: it never left."""
        progress.marked = False
        await self._mark(job, State.FAILED, progress.attempts, error=_NOT_LEFT)

    async def _act(
        self, job: Job, progress: _Progress, v: Verdict, sent_clock: float
    ) -> Outcome | None:
        """Journal one attempt's verdict and act on it; the row's outcome, or None to resend."""
        attempts = progress.attempts
        if v.kind is Kind.SENT:  # the common case first
            sent_at = utc_now()
            await self.journal.record(
                Mark(job.key, State.SENT, job.row, attempts, v.http_status, "", sent_at)
            )
            self._finish(True)
            if self.limiter.current_rate < self.limiter.rate:
                self.limiter.recover()
            return Outcome(job.row, Status.SENT, "", v.http_status, attempts, sent_at, v.detail)

        def failed(message: str = v.message) -> Outcome:
            return Outcome(job.row, Status.FAILED, message, v.http_status, attempts, None, v.detail)

        if v.kind is Kind.UNKNOWN:
            log.warning("row %d: %s: unknown", job.row, v.message)
            await self._mark(job, State.UNKNOWN, attempts, error=v.message)
            self._finish(False, v.note)
            return Outcome(job.row, Status.UNKNOWN, v.message, attempts=attempts)
        if v.kind is Kind.RETRY:
            return await self._retry_later(job, progress, v)
        if v.kind is Kind.RATE_LIMITED:
            # The pause (or stop) comes first: no other request leaves while this answer's
            # mark is being committed.
            decided = self._rate_limited(job, progress, v, sent_clock)
            await self._mark(
                job, State.FAILED, attempts, http_status=v.http_status, error=v.message
            )
            return decided
        await self._mark(job, State.FAILED, attempts, http_status=v.http_status, error=v.message)
        if v.kind is Kind.REFUSED:
            self._finish(v.service_ok, v.note)
            return failed()
        return await self._reauthenticate(job, progress, v, failed)

    def _rate_limited(
        self, job: Job, progress: _Progress, v: Verdict, sent_clock: float
    ) -> Outcome | None:
        """A 429: the service did not take the event; until it does, the row waits."""
        attempts = progress.attempts
        progress.last = Outcome(
            job.row,
            Status.PENDING,
            f"{v.message}: not taken by the service; run again later",
            v.http_status,
            attempts,
            None,
            v.detail,
        )
        if self.stopper.stopping:
            return progress.last
        if attempts >= self.policy.max_attempts + 5:
            self._finish(False, v.message)
            return progress.last
        if sent_clock < self._last_pause:
            # An echo of a 429 the run already reacted to: this request left before that
            # pause. Counting it again would slow down (or stop) the run once per request in
            # flight, not once per refusal episode.
            return None
        if v.retry_after is None and not v.per_second:
            return self._quota_refusal(v, progress.last)
        self._429_in_a_row += 1
        wait = (
            v.retry_after
            if v.retry_after is not None
            else self.policy.backoff(self._429_in_a_row) + 1.0
        )
        if wait > self.policy.quota_wait or self._429_in_a_row >= self.policy.max_429_in_a_row:
            self._stop(
                QuotaSpent(
                    f"SendPulse keeps refusing with 429 ({v.detail or 'too many requests'}): "
                    f"the quota looks exhausted; the rest are pending, {_resume_hint(v, wait)}"
                )
            )
            return progress.last
        self.limiter.pause(wait)
        self.limiter.slow_down()
        self._last_pause = self._clock()
        log.info(
            "429 from the service: every request waits %.1f s, then %.1f events/s",
            wait,
            self.limiter.current_rate,
        )
        return None

    def _quota_refusal(self, v: Verdict, pending: Outcome) -> Outcome | None:
        """A 429 that is not about the pace: once may be a blip, repeated it is a spent quota."""
        self._quota_in_a_row += 1
        if self._quota_in_a_row >= self.policy.quota_429s:
            self._stop(
                QuotaSpent(
                    f"SendPulse's quota is spent ({v.detail or 'HTTP 429'}, "
                    f"{self._quota_in_a_row} times in a row): every row not taken is pending; "
                    f"{_resume_hint(v, None)}"
                )
            )
            return pending
        wait = self.policy.quota_pause * 2 ** (self._quota_in_a_row - 1)
        self.limiter.pause(wait)
        self._last_pause = self._clock()
        log.info(
            "429 from the service (not the per-second limit): every request waits %.1f s", wait
        )
        return None

    async def _unsendable(self, job: Job, attempts: int, exc: Unsendable) -> Outcome:
        """The request could not be made: it never left, and every other would fail alike."""
        message = f"not sent: {exc.reason}"
        await self._mark(job, State.FAILED, attempts, error=message)
        self._stop(DeliveryError(f"{message}; the rest are pending"))
        return Outcome(job.row, Status.FAILED, message, attempts=attempts)

    async def _reauthenticate(
        self, job: Job, progress: _Progress, v: Verdict, failed: Callable[..., Outcome]
    ) -> Outcome | None:
        renewed = False
        if not progress.reauthenticated:
            progress.reauthenticated = True
            try:
                renewed = await self.transport.reauthenticate(v.auth_generation)
            except DeliveryError as exc:  # the token endpoint itself is failing
                self._stop(exc)
                return failed(f"{v.message}; {exc}")
        if renewed:
            progress.last = Outcome(
                job.row, Status.FAILED, v.message, v.http_status, progress.attempts
            )
            return None
        self._stop(
            AuthRejected(
                f"SendPulse rejected the credentials mid-run ({v.detail or 'HTTP 401'}); "
                "the rest are pending"
            )
        )
        return failed()

    async def _retry_later(self, job: Job, progress: _Progress, v: Verdict) -> Outcome | None:
        """Safe to retry: the service did not take the event. Back off, or give up."""
        attempts = progress.attempts
        if attempts < self.policy.max_attempts:
            log.info("row %d: attempt %d: %s; will retry", job.row, attempts, v.message)
        await self._mark(job, State.FAILED, attempts, http_status=v.http_status, error=v.message)
        progress.last = Outcome(job.row, Status.FAILED, v.message, v.http_status, attempts)
        if attempts >= self.policy.max_attempts:
            self._finish(False, v.message)
            return Outcome(
                job.row,
                Status.FAILED,
                f"{v.message} (gave up after {attempts} attempts)",
                v.http_status,
                attempts,
            )
        await self._sleep_unless_stopped(self.policy.backoff(attempts))
        return None

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        end = asyncio.get_running_loop().time() + seconds
        while not self.stopper.stopping:
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.25))


def _resume_hint(v: Verdict, wait: float | None) -> str:
    """When to run again, as far as the answer tells."""
    if wait is not None and wait > 0 and v.retry_after is not None:
        at = datetime.now().astimezone() + timedelta(seconds=wait)
        return f"the service says to retry after {at:%Y-%m-%d %H:%M}: run the same command then"
    text = v.detail.lower()
    if "minute" in text:
        return "a per-minute quota: run the same command again in a minute"
    if "day" in text or "daily" in text:
        return "a daily quota: run the same command again tomorrow"
    return (
        "run the same command again later: in a minute for a per-minute quota, "
        "tomorrow for a daily one"
    )
