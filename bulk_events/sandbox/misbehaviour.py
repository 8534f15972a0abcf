"""What the sandbox can be told to do wrong, and the broken answers it gives then.

:meth:`Sandbox.misbehave <bulk_events.sandbox.Sandbox.misbehave>` takes a kind of
:data:`EVENT_KINDS` (for event requests) or :data:`TOKEN_KINDS` (for the token endpoint); each
pending one is a :class:`Misbehaviour` until matching requests have used it up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = [
    "EVENT_KINDS",
    "HTML_500",
    "HTML_502",
    "HTML_503",
    "HTML_PORTAL",
    "TOKEN_KINDS",
    "Misbehaviour",
    "client_gone",
    "drop",
    "stream_body",
]

EVENT_KINDS = frozenset(
    {
        "429",  # rate-limit answer, no header
        "429-retry-after",  # rate-limit answer with Retry-After: 1
        "429-long",  # a quota answer: Retry-After: 3600
        "500",  # an HTML error page
        "503",  # service unavailable
        "slow",  # answer after `delay` seconds; not accepted if the client has gone by then
        "slow-accept",  # accept at once, answer after `delay` seconds
        "drop-before",  # close the connection without answering; not accepted
        "drop-after",  # accept, then close the connection without answering
        "result-false",  # 200 with {"result": false}
        "result-false-string",  # 200 with {"result": "false"}
        "html-200",  # 200 with an HTML page (a captive portal); not accepted
        "502-after",  # accept, then a gateway's 502 (the answer lost on the way back)
        "504-after",  # accept, then a gateway's 504
        "502",  # a gateway's 502, not accepted
        "huge-body",  # accept, answer 200 with a body of hundreds of megabytes, streamed
        "trickle",  # accept, answer 200 and then one byte of body a second
        "400",  # a validation refusal
        "403",  # the account is blocked
        "401",  # 401 even with a valid token (revoked credentials)
        "expire-token",  # the request's token expires now: 401 until a new token is fetched
    }
)
# The token endpoint can fail too; these kinds apply only to token requests.
TOKEN_KINDS = frozenset(
    {"token-429", "token-500", "token-503", "token-401", "token-slow", "token-drop"}
)

HTML_500 = (
    "<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head>\n<body>\n"
    "<h1>Internal Server Error</h1>\n<p>The server encountered an internal error.</p>\n"
    + "<!-- padding to imitate a full error page -->\n" * 80
    + "</body></html>\n"
)
HTML_503 = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>\n"
HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\n"
HTML_PORTAL = (
    "<html><head><title>Wi-Fi login</title></head><body>Sign in to continue</body></html>"
)


@dataclass
class Misbehaviour:
    """One misbehaviour waiting to happen: its kind, how many more times, to which bodies."""

    kind: str
    remaining: int
    when: Callable[[dict[str, Any]], bool] | None
    delay: float



def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def drop(request: web.Request) -> web.Response:
    """Close the connection without answering; the client sees ServerDisconnectedError."""
    if request.transport is not None:
        request.transport.close()
    # Nothing reaches the client: the transport is closed before this is written.
    return web.Response(status=204)


async def stream_body(request: web.Request, *, huge: bool, stop: asyncio.Event) -> Any:
    """A 200 whose body never seems to end: 512 MB as fast as the client reads, or a byte a
    second (for at most ten minutes); stops when the client goes away."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    chunk = b" " * 65536
    try:
        await response.write(b'{"result": true, "padding": "')
        for _ in range(8192 if huge else 600):
            if stop.is_set() or client_gone(request):
                break
            if huge:
                await response.write(chunk)
            else:
                await response.write(b" ")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
        else:
            await response.write(b'"}')
    except (ConnectionError, RuntimeError):
        pass  # the client has gone, as a bounded client should
    return response
