"""An in-memory transport: a function stands in for the service (httpx's ``MockTransport``).

>>> from bulk_events.transport import MemoryTransport, Reply
>>> transport = MemoryTransport(lambda body: Reply(200, '{"result": true}'))

The handler gets each body and returns a :class:`Reply`, or raises :class:`NotSent` /
:class:`MaybeSent` to imitate a network failure; it may be a coroutine function.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from bulk_events.ratelimit import leaving

from .base import Reply

Handler = Callable[[dict[str, Any]], Reply | Awaitable[Reply]]


class MemoryTransport:
    """Hands every body to ``handler``; keeps what was sent in ``sent`` (in order)."""

    def __init__(
        self, handler: Handler, *, reauthenticate: Callable[[int], bool] | None = None
    ) -> None:
        self._handler = handler
        self._reauthenticate = reauthenticate
        self.sent: list[dict[str, Any]] = []
        self.events: list[str | None] = []  # the event each body was sent to (None: the target's)
        self.opened = False
        self.closed = False

    async def open(self) -> None:
        self.opened = True

    async def ready(self) -> None:
        pass

    async def send(self, body: dict[str, Any], event: str | None = None) -> Reply:
        await leaving()
        self.sent.append(body)
        self.events.append(event)
        reply = self._handler(body)
        if inspect.isawaitable(reply):
            return await reply
        return reply

    async def reauthenticate(self, generation: int) -> bool:
        return self._reauthenticate(generation) if self._reauthenticate else False

    async def aclose(self) -> None:
        self.closed = True
