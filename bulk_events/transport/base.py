"""The "deliver one body" seam: post one event body, tell the caller what happened.

The delivery layer talks only to the :class:`Transport` protocol. ``send`` never raises for an
HTTP status; it raises :class:`NotSent` when the request certainly never reached the service (safe
to retry) and :class:`MaybeSent` when it may have arrived but no complete answer came back
(retrying could send the event twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Reply:
    """The service's complete answer to one event request."""

    status: int  # HTTP status
    text: str = ""  # response body, at most 2000 characters, secrets masked
    retry_after: float | None = None  # seconds, from a Retry-After header, else None
    auth_generation: int = 0  # credentials generation used; 0 when the transport has no auth
    complete: bool = True  # False when the body was longer than what was read of it


class NotSent(Exception):
    """The request certainly never reached the service (connect refused or timed out, DNS, TLS)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unsendable(NotSent):
    """The request could not even be made (a header or body our side cannot encode, a bad
    setting): nothing was written to the network, and trying again would fail the same way."""


class MaybeSent(Exception):
    """The request was, or may have been, sent but no complete answer came back."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@runtime_checkable
class Transport(Protocol):
    """Delivers one event body; what the delivery layer and tests program against."""

    async def open(self) -> None:
        """Prepare to send (session, first token); raise a DeliveryError if that is impossible."""
        ...

    async def ready(self) -> None:
        """Get ready for the next request (renew a token about to expire), before it takes its
        turn of the rate limit. Optional: the delivery layer calls it when it exists."""
        ...

    async def send(self, body: dict[str, Any], event: str | None = None) -> Reply:
        """Post one body (to ``event`` of the REST API when given); raise NotSent/MaybeSent on
        transport failure, never for a status.

        Call :func:`bulk_events.ratelimit.departed` the moment the request is on its way."""
        ...

    async def reauthenticate(self, generation: int) -> bool:
        """Get fresh credentials after a 401 seen with ``generation``; False if refused."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def decode_text(raw: bytes, charset: str | None) -> str:
    """An answer's bytes as text, in the charset it names (UTF-8 when it names none or one
    unknown), undecodable bytes replaced."""
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset named by the server
        return raw.decode("utf-8", errors="replace")
