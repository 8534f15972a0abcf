"""The rate limiter, driven by a fake clock: no real sleeping, no flaky timing."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from conftest import FakeClock

from bulk_events.ratelimit import RateLimiter
from bulk_events.sandbox import max_in_window


async def starts(
    limiter: RateLimiter, clock: FakeClock, n: int, jitter: list[float] | None = None
) -> list[float]:
    out = []
    for i in range(n):
        await limiter.acquire()
        out.append(clock.now)
        if jitter:
            clock.now += jitter[i % len(jitter)]  # a late wake-up or slow caller
    return out


@pytest.mark.parametrize("rate", [1, 10, 37, 1000])
async def test_no_window_exceeds_the_rate_even_with_arrival_jitter(rate):
    """In no sliding one-second window do more than R starts fall, even shifted by up to 1% of a second."""
    clock = FakeClock()
    limiter = RateLimiter(rate, clock=clock, sleep=clock.sleep)
    times = await starts(limiter, clock, rate * 5)
    assert max_in_window(times) <= rate
    # Each start delayed on its way by a different amount up to 10 ms: still within the limit.
    shifted = [t + (0.01 if i % 2 else 0.0) for i, t in enumerate(times)]
    assert max_in_window(shifted) <= rate
    achieved = (len(times) - 1) / (times[-1] - times[0])
    assert achieved >= 0.97 * rate


async def test_first_second_is_not_a_burst():
    """Unlike a token bucket, the first second holds at most R starts, not 2R."""
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    times = await starts(limiter, clock, 30)
    assert sum(1 for t in times if t < times[0] + 1.0) <= 10


async def test_late_wake_ups_do_not_cause_catch_up_bursts():
    """After a stall, starts stay spaced: the limiter never 'catches up' with a burst."""
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    times = await starts(limiter, clock, 50, jitter=[0.0, 0.0, 0.35])
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= limiter.interval - 1e-9
    assert max_in_window(times) <= 10


async def test_pause_stops_every_start():
    """After pause(2), nothing starts for two seconds."""
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    await limiter.acquire()
    limiter.pause(2.0)
    before = clock.now
    await limiter.acquire()
    assert clock.now - before >= 2.0


async def test_slow_down_and_recover():
    """slow_down lowers the pace down to a floor; recover brings it back to the configured rate."""
    limiter = RateLimiter(10)
    for _ in range(20):
        limiter.slow_down(0.5)
    assert limiter.current_rate == pytest.approx(2.5)
    for _ in range(40):
        limiter.recover()
    assert limiter.current_rate == pytest.approx(10)


async def test_zero_means_no_limit():
    """rate=0 never waits."""
    clock = FakeClock()
    limiter = RateLimiter(0, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        await limiter.acquire()
    assert clock.now == 1000.0
    assert limiter.starts == 1000


async def test_waiters_are_served_in_arrival_order():
    """Concurrent acquirers start one by one, spaced, in the order they asked."""
    clock = FakeClock()
    limiter = RateLimiter(5, clock=clock, sleep=clock.sleep)
    order: list[tuple[int, float]] = []

    async def one(i: int) -> None:
        await limiter.acquire()
        order.append((i, clock.now))

    await asyncio.gather(*(one(i) for i in range(10)))
    assert [i for i, _ in order] == list(range(10))
    assert max_in_window([t for _, t in order]) <= 5


async def test_unlimited_falls_back_to_a_limit_when_the_service_says_429():
    """--rate 0 plus a 429: from then on the limiter paces at the fallback rate."""
    clock = FakeClock()
    limiter = RateLimiter(0, clock=clock, sleep=clock.sleep, fallback_rate=10)
    limiter.slow_down()
    assert limiter.current_rate == 10
    times = await starts(limiter, clock, 30)
    assert max_in_window(times) <= 10
