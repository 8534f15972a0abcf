"""A pacing rate limiter that is a hard ceiling, not an average.

SendPulse refuses more than 10 requests in a second. A token bucket such as
``aiolimiter.AsyncLimiter(10, 1)`` lets a full bucket *plus* its refill through in the first second
(19 starts), and any limiter pacing exactly at the limit can be seen as R+1 starts in some window by a
server whose clock or queue jitters. So we pace: consecutive starts are at least ``(1 + margin) / rate``
seconds apart. Then any R+1 starts span at least ``1 + margin`` seconds, so no sliding one-second
window can hold more than R of them even if each request is delayed differently by up to ``margin``
seconds on its way. Retries go through the same limiter, so they count too.

``pause`` (after a 429) stops every start for a while, and ``slow_down`` lowers the pace for the rest of
the run; ``recover`` brings it back step by step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

DEFAULT_MARGIN = 0.02


class RateLimiter:
    """Let at most ``rate`` requests start in any one-second window; ``rate=0`` means no limit.

    >>> limiter = RateLimiter(10)
    >>> async def send_one():
    ...     await limiter.acquire()  # returns when this request may start
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
    ) -> None:
        if rate < 0:
            raise ValueError("rate must be 0 (no limit) or positive")
        self.rate = float(rate)
        self.margin = margin
        self._clock = clock
        self._sleep = sleep
        self._fraction = 1.0
        self._min_fraction = min_fraction
        self.fallback_rate = fallback_rate
        self._next = 0.0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self.starts = 0

    @property
    def interval(self) -> float:
        """Seconds between two consecutive starts at the current pace (0 without a limit)."""
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

    async def acquire(self) -> None:
        """Wait until one more request may start, in arrival order."""
        if self.rate == 0 and self._paused_until == 0.0:
            self.starts += 1
            return
        async with self._lock:
            while True:
                now = self._clock()
                at = max(self._next, self._paused_until)
                if at <= now:
                    break
                await self._sleep(at - now)
            # Pace from the real start, not the planned one: a late wake-up must not let the
            # next request start early to "catch up".
            self._next = now + self.interval
            self.starts += 1

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
