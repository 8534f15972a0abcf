"""A pacing rate limiter that is a hard ceiling at the wire, not an average.

SendPulse refuses more than 10 requests in a second, counted where they arrive. A token bucket
such as ``aiolimiter.AsyncLimiter(10, 1)`` lets a full bucket *plus* its refill through in the first
second (19 starts), and any limiter that paces the moments it *grants* starts can be seen as R+1
arrivals in a second: a request held up between its grant and the socket (the loop busy with a
commit, the GIL with the reader's pandas work, a paused process) leaves late, the next one leaves on
time, and the two arrive close together.

So we pace the departures. A request takes a :class:`Slot`; the next slot is granted only once the
previous request has actually left (the HTTP transport reports it when the request's headers are
written to the socket, see :func:`departed`) and ``(1 + margin) / rate`` seconds after that. A late
request pushes the next one back instead of squeezing it: any R+1 departures span at least
``1 + margin`` seconds, so no sliding one-second window can hold more than R arrivals even if each
request is delayed differently by up to ``margin`` seconds on its way. A slot whose request never
leaves (the connection failed, the run stopped) is freed when its holder lets go of it. Retries and
token requests take slots too, so they count.

``pause`` (after a 429) stops every start for a while, and ``slow_down`` lowers the pace for the rest of
the run; ``recover`` brings it back step by step.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable

DEFAULT_MARGIN = 0.025
DEFAULT_LEAD = 0.03  # a turn is granted this long before its moment (see Slot.leave)

_CURRENT: contextvars.ContextVar[Slot | None] = contextvars.ContextVar(
    "bulk_events_rate_slot", default=None
)


class Slot:
    """One request's turn. :meth:`departed` when it leaves; :meth:`release` if it never does."""

    __slots__ = ("_limiter", "_token", "granted", "left", "not_before", "settled")

    def __init__(
        self, limiter: RateLimiter | None, granted: float, not_before: float = 0.0
    ) -> None:
        self._limiter = limiter
        self.granted = granted
        self.not_before = not_before  # the request may leave at this moment, not before
        self.left: float | None = None  # when the request left, if it did
        self.settled = limiter is None

    async def leave(self) -> None:
        """Wait until the request may leave (its moment, or the end of a pause), then depart.

        The turn is granted a little ahead of that moment (``RateLimiter.lead``), so that the
        request is ready at the socket when the moment comes; the wait here makes it exact.
        """
        limiter = self._limiter
        if self.settled or limiter is None:
            return
        while True:
            now = limiter._clock()
            at = max(self.not_before, limiter._paused_until)
            if at <= now:
                break
            await limiter._sleep(at - now)
        self.departed()

    def departed(self) -> None:
        """The request has left now: the next one may go an interval after this moment."""
        limiter = self._limiter
        if self.settled or limiter is None:
            return
        self.left = limiter._clock()
        self._settle(self.left)

    def release(self) -> None:
        """Done with the slot; if the request never left, free the turn (pacing from now)."""
        limiter = self._limiter
        if self.settled or limiter is None:
            return
        self._settle(limiter._clock())

    def _settle(self, at: float) -> None:
        limiter = self._limiter
        assert limiter is not None
        self.settled = True
        limiter._next = max(limiter._next, at + limiter.interval)
        limiter._free.set()

    def __enter__(self) -> Slot:
        # The transport finds the slot of the request it sends through the task's context.
        self._token = _CURRENT.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _CURRENT.reset(self._token)
        self.release()


def departed() -> None:
    """Tell the current task's slot (if any) that its request has just left.

    Outside a slot it does nothing. Transports that can wait should use :func:`leaving`.
    """
    slot = _CURRENT.get()
    if slot is not None:
        slot.departed()


def departure_pending() -> bool:
    """Whether the current task holds a turn whose request has yet to leave (so a transport
    must call :func:`leaving` before the bytes go); False outside a slot or without a limit."""
    slot = _CURRENT.get()
    return slot is not None and not slot.settled


async def leaving() -> None:
    """Called by a transport just before a request's bytes go to the socket: waits for the
    request's moment, then records its departure. Outside a slot it returns at once.

    The HTTP transports call it from aiohttp's request tracing (the first body chunk, which
    carries the headers), :class:`~bulk_events.transport.MemoryTransport` as it takes the body.
    """
    slot = _CURRENT.get()
    if slot is not None:
        await slot.leave()


class RateLimiter:
    """Let at most ``rate`` requests leave in any one-second window; ``rate=0`` means no limit.

    >>> limiter = RateLimiter(10)
    >>> async def send_one():
    ...     with await limiter.take():  # returns when this request may go
    ...         ...  # send; the transport calls departed() when it leaves
    """

    def __init__(
        self,
        rate: float,
        *,
        margin: float = DEFAULT_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        min_fraction: float = 0.25,
        fallback_rate: float = 10.0,
        lead: float = DEFAULT_LEAD,
    ) -> None:
        if rate < 0:
            raise ValueError("rate must be 0 (no limit) or positive")
        self.rate = float(rate)
        self.margin = margin
        self.lead = lead
        self._clock = clock
        self._sleep = sleep
        self._fraction = 1.0
        self._min_fraction = min_fraction
        self.fallback_rate = fallback_rate
        self._next = 0.0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self._free = asyncio.Event()
        self._free.set()
        self.starts = 0

    @property
    def unlimited(self) -> bool:
        """No limit and no pause so far: :meth:`take` grants a turn at once, without waiting."""
        return self.rate == 0 and self._paused_until == 0.0

    @property
    def interval(self) -> float:
        """Seconds between two consecutive departures at the current pace (0 without a limit)."""
        if self.rate == 0:
            return 0.0
        return (1.0 + self.margin) / (self.rate * self._fraction)

    @property
    def current_rate(self) -> float:
        """Requests per second at the current pace (0 means unlimited)."""
        return self.rate * self._fraction

    @property
    def paused_for(self) -> float:
        """Seconds left of the current pause (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    async def take(self) -> Slot:
        """Wait for this request's turn, in arrival order; use the slot as a ``with`` block.

        The turn comes once the previous request has left (or let go of its slot) and one
        interval has passed since.
        """
        if self.unlimited:
            self.starts += 1
            return Slot(None, self._clock())
        async with self._lock:
            while True:
                if not self._free.is_set():
                    await self._free.wait()
                    continue
                now = self._clock()
                at = max(self._next - self.lead, self._paused_until)
                if at <= now:
                    break
                await self._sleep(at - now)
            self.starts += 1
            if self.rate == 0:  # paused only: no pacing to keep
                return Slot(None, now)
            self._free.clear()
            slot = Slot(self, now, not_before=self._next)
            # Until the request reports its departure, assume it leaves at its moment.
            self._next = max(self._next, now) + self.interval
            return slot

    async def acquire(self) -> None:
        """Wait for a turn and its moment, and count the request as leaving then."""
        slot = await self.take()
        await slot.leave()

    def pause(self, seconds: float) -> None:
        """Let no request start for ``seconds`` from now (the service said: too many)."""
        until = self._clock() + max(0.0, seconds)
        self._paused_until = max(self._paused_until, until)

    def slow_down(self, factor: float = 0.8) -> None:
        """Lower the pace for the rest of the run, never below ``min_fraction`` of the rate.

        Without a limit (rate 0) there is no pace to lower: the service's 429 says we need one, so
        the limiter takes ``fallback_rate`` (SendPulse's documented 10 per second) from then on.
        """
        if self.rate == 0:
            self.rate = self.fallback_rate
            return
        self._fraction = max(self._min_fraction, self._fraction * factor)

    def recover(self, step: float = 0.05) -> None:
        """Raise the pace back towards the configured rate after things went well."""
        self._fraction = min(1.0, self._fraction + step)
