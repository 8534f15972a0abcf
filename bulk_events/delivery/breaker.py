"""A circuit breaker: when most recent events fail for the service's own reasons, stop sending."""

from __future__ import annotations

from collections import deque

from bulk_events.errors import ServiceUnavailable


class Breaker:
    """Trips when ``failures`` of the last ``window`` events failed because of the service.

    >>> b = Breaker(window=2, failures=2)
    >>> b.record(False, "HTTP 503") is None
    True
    >>> str(b.record(False, "HTTP 503"))[:38]
    'stopped early: 2 of the last 2 events '
    """

    def __init__(self, window: int = 20, failures: int = 16) -> None:
        self.window = window
        self.failures = failures
        self._recent: deque[bool] = deque(maxlen=window)

    def record(self, ok: bool, note: str = "") -> ServiceUnavailable | None:
        """Note one event's end (``ok``: the service worked); the error to stop with, if tripped."""
        self._recent.append(ok)
        if ok:
            return None
        failures = self._recent.count(False)
        if len(self._recent) >= self.window and failures >= self.failures:
            return ServiceUnavailable(
                f"stopped early: {failures} of the last {self.window} events failed "
                f"(last: {note}); the rest are pending, run again later"
            )
        return None
