"""Deliver one event: rate limit, journal, retries, and the verdict on what the service said.

The outcome table (also in the README):

=============================================  ===========================================
what happened                                  what the row becomes
=============================================  ===========================================
2xx, body not ``"result": false``              ``sent``
2xx with ``"result": false``                   ``failed``, with the service's message
401                                            a fresh token (once per run, shared), resend;
                                               still 401: ``failed`` and the run stops
429 (with or without ``Retry-After``)          the whole run pauses and slows down; retried
5xx, 408, connection not made                  retried with backoff and full jitter, then ``failed``
other 4xx                                      ``failed`` at once: the data is wrong
sent, but no answer (timeout, dropped)         ``unknown``: never resent without --retry-unknown
=============================================  ===========================================
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from .errors import AuthRejected, DeliveryError, ServiceUnavailable
from .journal import Mark
from .outcome import Outcome, Status
from .ratelimit import RateLimiter
from .transport import MaybeSent, NotSent, Reply, Transport

log = logging.getLogger(__name__)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry what is safe to retry."""

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    quota_wait: float = 120.0  # a Retry-After longer than this means "quota exhausted": stop
    max_429_in_a_row: int = 12  # so many 429s with no success between them: stop, quota exhausted
    breaker_window: int = 20
    breaker_failures: int = 16

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter (AWS architecture blog): spreads retries out."""
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))


@dataclass(slots=True)
class Job:
    """One row to deliver."""

    row: int
    key: bytes
    body: dict[str, Any]
    slot: Any  # where the outcome goes (the pipeline's chunk and index)


_TAG = re.compile(r"<[^>]+>")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)


def service_message(reply: Reply) -> str:
    """The useful part of an answer: the service's message, or the gist of an HTML page."""
    text = reply.text.strip()
    try:
        data = orjson.loads(text) if text[:1] in "{[" else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        parts = [str(data[k]) for k in ("message", "error_description", "error") if data.get(k)]
        code = data.get("error_code")
        if code is not None:
            parts.append(f"error_code {code}")
        if parts:
            return "; ".join(dict.fromkeys(parts))
    if "<" in text:
        title = _TITLE.search(text)
        text = title.group(1) if title else _TAG.sub(" ", text)
    return " ".join(text.split())[:200]


def is_refusal(reply: Reply) -> bool:
    """A 2xx answer whose body says the event was not taken (``{"result": false}``)."""
    text = reply.text.strip()
    if not text.startswith("{"):
        return False
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("result") is False


class JournalWriter:
    """Group commit: every mark requested in the same event-loop turn goes into one transaction.

    A caller awaits its mark's commit, so a row is marked in flight on disk before its request is
    sent and its outcome is on disk before its worker takes the next row: a crash can leave at most
    one row per worker undecided.
    """

    def __init__(self, journal: Any, run_id: int) -> None:
        self.journal = journal
        self.run_id = run_id
        self._pending: list[tuple[Mark, asyncio.Future[None]]] = []
        self._scheduled = False

    async def record(self, mark: Mark) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((mark, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        await future

    def record_now(self, marks: list[Mark]) -> None:
        """Write at once, outside the loop's rhythm (used when the run is being torn down)."""
        if marks:
            self.journal.write(marks, self.run_id)

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        try:
            self.journal.write([m for m, _ in batch], self.run_id)
        except Exception as exc:  # the journal failing is fatal for every waiter
            for _, f in batch:
                if not f.done():
                    f.set_exception(exc)
            return
        for _, f in batch:
            if not f.done():
                f.set_result(None)


class Deliverer:
    """Sends jobs through a transport under a rate limiter, journaling every step."""

    def __init__(
        self,
        transport: Transport,
        limiter: RateLimiter,
        journal: JournalWriter,
        policy: RetryPolicy | None = None,
        *,
        on_stop: Callable[[DeliveryError], None] | None = None,
    ) -> None:
        self.transport = transport
        self.limiter = limiter
        self.journal = journal
        self.policy = policy or RetryPolicy()
        self.on_stop = on_stop
        self.stopping = False
        self.inflight: dict[bytes, Job] = {}
        self.attempts: dict[bytes, int] = {}
        self._recent: deque[bool] = deque(maxlen=self.policy.breaker_window)
        self._429_in_a_row = 0
        self._last_pause = 0.0  # when the run last paused for a 429
        self._last_error = ""
        self.requests = 0
        self.first_start: float | None = None  # loop time of the first request
        self.last_start: float | None = None  # loop time of the latest request

    def stop(self, error: DeliveryError | None = None) -> None:
        """Start no new request; ``error`` says why the run stops early."""
        if error is not None and not self.stopping and self.on_stop is not None:
            self.on_stop(error)
        self.stopping = True

    def _finish(self, ok: bool, error: str = "") -> None:
        """Feed the circuit breaker: ``ok`` is whether the service itself worked."""
        self._recent.append(ok)
        if ok:
            self._429_in_a_row = 0
            return
        self._last_error = error
        window = self.policy.breaker_window
        failures = self._recent.count(False)
        if len(self._recent) >= window and failures >= self.policy.breaker_failures:
            self.stop(
                ServiceUnavailable(
                    f"stopped early: {failures} of the last {window} events failed "
                    f"(last: {error}); the rest are pending, run again later"
                )
            )

    def _not_attempted(self, job: Job, attempts: int, last: Outcome | None) -> Outcome:
        if attempts == 0 or last is None:
            return Outcome(job.row, Status.PENDING, "not attempted: the run stopped early")
        return last

    async def _mark(self, job: Job, state: str, attempts: int, **fields: Any) -> None:
        await self.journal.record(
            Mark(key=job.key, state=state, row=job.row, attempts=attempts, **fields)
        )

    async def deliver(self, job: Job) -> Outcome:
        """Deliver one job; the returned outcome is already in the journal."""
        outcome = await self._deliver(job)
        # Kept only while a job is under way (a cancelled one is read by the pipeline): a
        # million-row run must not keep a million entries.
        self.attempts.pop(job.key, None)
        return outcome

    async def _deliver(self, job: Job) -> Outcome:
        attempts = 0
        last: Outcome | None = None
        reauthenticated_from: int | None = None
        while True:
            if self.stopping:
                return self._not_attempted(job, attempts, last)
            await self.limiter.acquire()
            if self.stopping:
                return self._not_attempted(job, attempts, last)
            attempts += 1
            self.requests += 1
            self.last_start = time.monotonic()
            if self.first_start is None:
                self.first_start = self.last_start
            await self._mark(job, "inflight", attempts)
            self.inflight[job.key] = job
            self.attempts[job.key] = attempts
            # A job stays in `inflight` if the run is torn down (cancelled) during the request:
            # the pipeline then records it as unknown.
            sent_at_clock = time.monotonic()
            try:
                reply = await self.transport.send(job.body)
            except NotSent as exc:
                self.inflight.pop(job.key, None)
                reply = None
                reason = f"not sent: {exc.reason}"
                status = None
            except MaybeSent as exc:
                self.inflight.pop(job.key, None)
                log.warning("row %d: no answer after sending (%s): unknown", job.row, exc.reason)
                message = (
                    f"no answer after sending ({exc.reason}); not resent, to avoid a duplicate"
                )
                await self._mark(job, "unknown", attempts, error=message)
                self._finish(False, exc.reason)
                return Outcome(job.row, Status.UNKNOWN, message, attempts=attempts)
            else:
                self.inflight.pop(job.key, None)

            if reply is not None:
                status = reply.status
                detail = service_message(reply)
                log.debug("row %d: attempt %d: HTTP %d %s", job.row, attempts, status, detail)
                if 200 <= status < 300 and not is_refusal(reply):
                    sent_at = utc_now()
                    await self._mark(job, "sent", attempts, http_status=status, sent_at=sent_at)
                    self._finish(True)
                    if self.limiter.current_rate < self.limiter.rate:
                        self.limiter.recover()
                    return Outcome(job.row, Status.SENT, "", status, attempts, sent_at, detail)
                if 200 <= status < 300:
                    message = f"refused: {detail or 'result false'}"
                    await self._mark(job, "failed", attempts, http_status=status, error=message)
                    self._finish(True)  # the service works; it refused this row's data
                    return Outcome(job.row, Status.FAILED, message, status, attempts, None, detail)
                if status == 401:
                    renewed = False
                    message = f"HTTP 401: {detail or 'unauthorized'}"
                    await self._mark(job, "failed", attempts, http_status=status, error=message)
                    if reauthenticated_from is None:
                        reauthenticated_from = reply.auth_generation
                        try:
                            renewed = await self.transport.reauthenticate(reply.auth_generation)
                        except DeliveryError as exc:  # the token endpoint itself is failing
                            self.stop(exc)
                            return Outcome(
                                job.row,
                                Status.FAILED,
                                f"{message}; {exc}",
                                status,
                                attempts,
                                None,
                                detail,
                            )
                    if renewed:
                        last = Outcome(job.row, Status.FAILED, message, status, attempts)
                        continue
                    self.stop(
                        AuthRejected(
                            f"SendPulse rejected the credentials mid-run ({detail or 'HTTP 401'}); "
                            "the rest are pending"
                        )
                    )
                    return Outcome(job.row, Status.FAILED, message, status, attempts, None, detail)
                if status == 429:
                    message = f"HTTP 429: {detail or 'too many requests'}"
                    await self._mark(job, "failed", attempts, http_status=status, error=message)
                    last = Outcome(job.row, Status.FAILED, message, status, attempts, None, detail)
                    if attempts >= self.policy.max_attempts + 5:
                        self._finish(False, message)
                        return last
                    if sent_at_clock < self._last_pause:
                        # An echo of a 429 the run already reacted to: this request left before
                        # that pause. Counting it again would slow down (or stop) the run once per
                        # request in flight, not once per refusal episode.
                        continue
                    self._429_in_a_row += 1
                    wait = (
                        reply.retry_after
                        if reply.retry_after is not None
                        else self.policy.backoff(self._429_in_a_row) + 1.0
                    )
                    if (
                        wait > self.policy.quota_wait
                        or self._429_in_a_row >= self.policy.max_429_in_a_row
                    ):
                        self.stop(
                            ServiceUnavailable(
                                f"SendPulse keeps refusing with 429 ({detail or 'too many requests'}): "
                                "the quota looks exhausted; the rest are pending, run again later"
                            )
                        )
                        return last
                    self.limiter.pause(wait)
                    self.limiter.slow_down()
                    self._last_pause = time.monotonic()
                    log.info(
                        "429 from the service: every request waits %.1f s, then %.1f events/s",
                        wait,
                        self.limiter.current_rate,
                    )
                    continue
                if status >= 500 or status == 408:
                    reason = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
                else:
                    message = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
                    await self._mark(job, "failed", attempts, http_status=status, error=message)
                    # A 4xx is about this row's data, and must not stop the run: a file whose first
                    # rows are refused contacts would otherwise never get past them. 403 is about
                    # the account (blocked, no access), so it counts towards stopping.
                    self._finish(status != 403, message)
                    return Outcome(job.row, Status.FAILED, message, status, attempts, None, detail)

            # Safe to retry: the service did not take the event.
            if attempts < self.policy.max_attempts:
                log.info("row %d: attempt %d: %s; will retry", job.row, attempts, reason)
            await self._mark(job, "failed", attempts, http_status=status, error=reason)
            last = Outcome(job.row, Status.FAILED, reason, status, attempts)
            if attempts >= self.policy.max_attempts:
                self._finish(False, reason)
                return Outcome(
                    job.row,
                    Status.FAILED,
                    f"{reason} (gave up after {attempts} attempts)",
                    status,
                    attempts,
                )
            await self._sleep_unless_stopped(self.policy.backoff(attempts))

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        end = asyncio.get_running_loop().time() + seconds
        while not self.stopping:
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.25))
