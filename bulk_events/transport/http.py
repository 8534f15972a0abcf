"""The HTTP transports behind the seam of :mod:`bulk_events.transport.base`.

:class:`ApiTransport` (SendPulse REST API with an OAuth token) and :class:`EventUrlTransport`
(an event's own URL, JSON or form-data, no authorization), both over one aiohttp session::

    transport = ApiTransport("https://api.sendpulse.com", client_id, client_secret, "registration")
    await transport.open()
    try:
        reply = await transport.send({"email": "ann@example.com", "automation_id": 123})
    finally:
        await transport.aclose()

``send`` never raises for an HTTP status; it raises :class:`NotSent` when the request certainly
never reached the service (safe to retry) and :class:`MaybeSent` when it may have arrived but no
complete answer came back (retrying could send the event twice).
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from bulk_events import ratelimit
from bulk_events import redact as _redact
from bulk_events.errors import UsageError

from .auth import Token
from .base import MaybeSent, NotSent, Reply, Unsendable, decode_text

log = logging.getLogger(__name__)

MAX_REPLY_TEXT = 2000
MAX_BODY = 8192  # bytes of an answer read at most: the verdict and the message are in the first few
KEEPALIVE_TIMEOUT = 15.0  # shorter than common server idle timeouts, so we close idle sockets first


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Network timeouts in seconds: ``connect`` to establish a connection, ``read`` between reads,
    ``total`` for the whole request (connecting, sending and the whole answer)."""

    connect: float = 10.0
    read: float = 30.0
    total: float = 60.0


# --- shared aiohttp plumbing -------------------------------------------------------------------


def _classify(exc: BaseException) -> NotSent | MaybeSent | None:
    """Map an aiohttp/OS failure to NotSent or MaybeSent; None for anything else."""
    # Order matters: the connector errors subclass ClientOSError, and ConnectionTimeoutError is a
    # ServerTimeoutError like the read timeout. Only failures before the connection exists are
    # NotSent; once connected, the server may have read the request.
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return NotSent("DNS lookup failed")
    if isinstance(exc, aiohttp.ClientSSLError):
        return NotSent("TLS handshake failed")
    if isinstance(exc, aiohttp.ClientConnectorError):
        detail = exc.strerror or type(exc.os_error).__name__
        return NotSent(f"cannot connect: {detail}")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return NotSent("connect timeout")
    if isinstance(exc, aiohttp.InvalidURL):
        return NotSent("invalid URL")
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return MaybeSent("read timeout: no answer in time")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return MaybeSent("server closed the connection without answering")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return MaybeSent("incomplete response")
    if isinstance(exc, aiohttp.ClientOSError | ConnectionError):
        return MaybeSent("connection lost")
    if isinstance(exc, aiohttp.ClientError | TimeoutError | OSError):
        return MaybeSent(f"transport error: {type(exc).__name__}")
    return None


def _parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), else None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        current = datetime.now(UTC).timestamp() if now is None else now
        return max(0.0, when.timestamp() - current)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _form_value(value: Any) -> str:
    # Order matters: bool is an int subclass.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def _reply_text(raw: bytes, charset: str | None) -> str:
    # Redact before truncating, or a secret cut in half would escape the mask.
    return _redact.redact(decode_text(raw, charset))[:MAX_REPLY_TEXT]


def _check_url(url: str, what: str) -> URL:
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        raise UsageError(f"{what} is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise UsageError(f"{what} must be an http(s) URL with a host: {_redact.redact_url(url)}")
    return parsed


def _host_label(url: URL) -> str:
    host = url.raw_host or "?"
    return host if url.explicit_port is None else f"{host}:{url.explicit_port}"


class _HttpTransport:
    """One aiohttp session, a concurrency cap and failure classification, shared by both."""

    def __init__(self, *, concurrency: int, timeouts: Timeouts) -> None:
        if concurrency < 1:
            raise UsageError("concurrency must be at least 1")
        self._concurrency = concurrency
        self._timeouts = timeouts
        self._session: aiohttp.ClientSession | None = None
        self._untraced: aiohttp.ClientSession | None = None
        # aiohttp's `connect` timeout also counts time queued for a pooled connection; capping
        # event requests below the pool size means it only ever measures real connecting.
        self._slots = asyncio.Semaphore(concurrency)

    async def open(self) -> None:
        """Create the HTTP session (idempotent)."""
        if self._session is not None:
            return
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self._timeouts.connect,
            sock_connect=self._timeouts.connect,
            sock_read=self._timeouts.read,
        )
        # One spare connection so a token request never waits behind event requests.
        connector = aiohttp.TCPConnector(
            limit=self._concurrency + 1, keepalive_timeout=KEEPALIVE_TIMEOUT
        )
        # The request tracing tells the rate limit when a request really leaves (see ratelimit).
        # It costs every request a few awaits, so a request with no turn to wait for (no limit,
        # or a token request outside the limiter) goes through a session without it, over the
        # same connections.
        trace = aiohttp.TraceConfig()
        trace.on_request_chunk_sent.append(_on_chunk)
        common: dict[str, Any] = {
            "timeout": timeout,
            "raise_for_status": False,
            "headers": {"Accept": "application/json"},
            "request_class": _Request,
        }
        self._session = aiohttp.ClientSession(connector=connector, trace_configs=[trace], **common)
        self._untraced = aiohttp.ClientSession(connector=connector, connector_owner=False, **common)

    async def aclose(self) -> None:
        """Close the session and its connections."""
        untraced, self._untraced = self._untraced, None
        session, self._session = self._session, None
        if untraced is not None:
            await untraced.close()
        if session is not None:
            await session.close()

    async def _post(
        self, url: URL, *, data: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, str | None, str | None, bool]:
        """POST and read at most :data:`MAX_BODY` bytes of the answer, all within the total
        deadline: (status, body, charset, Retry-After header, whether the body was read whole)."""
        session = self._session if ratelimit.departure_pending() else self._untraced
        if session is None:
            raise RuntimeError("transport is not open: call open() first")
        wire = _Wire()
        _WIRE.set(wire)
        deadline = asyncio.timeout(self._timeouts.total)
        try:
            async with (
                deadline,
                session.post(url, data=data, headers=headers, allow_redirects=False) as resp,
            ):
                raw, complete = await _read_bounded(resp)
                if not complete:
                    resp.close()  # the rest is never read: this connection cannot be reused
                return resp.status, raw, resp.charset, resp.headers.get("Retry-After"), complete
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if deadline.expired():  # the total deadline, not one of aiohttp's own timeouts
                total = f"{self._timeouts.total:g} s"
                if wire.sent:
                    raise MaybeSent(f"no complete answer within {total}") from None
                raise NotSent(f"not connected within {total}") from None
            classified = _classify(exc)
            if classified is None:
                # Not a network failure: aiohttp refused to build the request (a header with a
                # line break, a URL with credentials beside an Authorization header). It builds
                # the URL and headers, and serialises the headers, before writing a byte (the
                # headers go out with the body, which is bytes made beforehand): nothing left.
                classified = Unsendable(
                    f"the request could not be made: {type(exc).__name__}: "
                    f"{_redact.redact(str(exc))[:200]}"
                )
            # `from None`: aiohttp's exceptions carry the URL and request headers (token, hash).
            raise classified from None


class _Wire:
    """Whether a request's bytes have started to leave (set by :class:`_Request`)."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False


# The wire of the request the current task is making (each request is made in its own task).
_WIRE: contextvars.ContextVar[_Wire | None] = contextvars.ContextVar(
    "bulk_events_wire", default=None
)


class _Request(aiohttp.ClientRequest):
    """aiohttp's request, telling the task's :class:`_Wire` when it starts to go out."""

    async def send(self, conn: Any) -> aiohttp.ClientResponse:
        # Called once the connection is there, to buffer the headers that go out with the
        # first chunk of the body (a loop turn later, in another task): from here on the
        # request may be on its way, not yet gone.
        wire = _WIRE.get()
        if wire is not None:
            wire.sent = True
        return await super().send(conn)


async def _on_chunk(session: Any, context: Any, params: Any) -> None:
    # Awaited just before the chunk (with the buffered headers) is written to the socket, and
    # the write follows in the same step: waiting here holds the request until its moment, and
    # returning is when it leaves.
    await ratelimit.leaving()


async def _read_bounded(resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """At most MAX_BODY bytes of the body, and whether that was all of it."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY:
        chunk = await resp.content.read(MAX_BODY + 1 - size)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:MAX_BODY], False


# --- event URL -----------------------------------------------------------------------------------


FORMS = {"json": "JSON", "multipart": "form-data", "urlencoded": "x-www-form-urlencoded"}


def form_kind(form: bool | str | None) -> str:
    """How an event URL gets its body: ``json``, ``multipart`` (``--form``) or ``urlencoded``."""
    if form is None or form is False:
        return "json"
    if form is True:
        return "multipart"
    kind = {"form-data": "multipart", "multipart/form-data": "multipart"}.get(form, form)
    kind = {"application/x-www-form-urlencoded": "urlencoded"}.get(kind, kind)
    if kind not in FORMS:
        raise UsageError(f'--form must be "multipart" (form-data) or "urlencoded", not "{form}"')
    return kind


class EventUrlTransport(_HttpTransport):
    """Posts to an event's own URL (the URL is the credential), as JSON or as form fields
    (``form="multipart"``: the event's form-data tab; ``form="urlencoded"``: what SendPulse's PHP
    client sends).

    >>> EventUrlTransport("https://events.sendpulse.com/events/id/eb561baa181247d1cd378c4ead632877/7")
    <EventUrlTransport https://events.sendpulse.com/events/id/eb56…/7 (JSON)>
    """

    def __init__(
        self,
        url: str,
        *,
        form: bool | str = False,
        concurrency: int = 10,
        timeouts: Timeouts = Timeouts(),
    ) -> None:
        super().__init__(concurrency=concurrency, timeouts=timeouts)
        _redact.register_url(url)
        self._url = _check_url(url, "event URL")
        self._form = form_kind(form)
        self._shown = f"{_redact.redact_url(url)} ({FORMS[self._form]})"

    def __repr__(self) -> str:
        return f"<EventUrlTransport {self._shown}>"

    async def ready(self) -> None:
        """Nothing to prepare: an event URL needs no token."""

    async def send(self, body: dict[str, Any], event: str | None = None) -> Reply:
        """Post ``body`` once; see the module docstring for the exceptions."""
        if event is not None:
            raise UsageError("an event URL is one event: it cannot send to another by name")
        headers = None
        if self._form == "multipart":
            data: Any = aiohttp.FormData(default_to_multipart=True)
            for key, value in body.items():
                data.add_field(str(key), _form_value(value))
        elif self._form == "urlencoded":
            data = aiohttp.FormData([(str(k), _form_value(v)) for k, v in body.items()])
        else:
            data = orjson.dumps(body)
            headers = {"Content-Type": "application/json"}
        async with self._slots:
            status, raw, charset, retry_after, complete = await self._post(
                self._url, data=data, headers=headers
            )
        return Reply(
            status, _reply_text(raw, charset), _parse_retry_after(retry_after), 0, complete
        )

    async def reauthenticate(self, generation: int) -> bool:
        """An event URL has no credentials to renew: always False."""
        return False


# --- REST API with OAuth ---------------------------------------------------------------------------


class ApiTransport(_HttpTransport):
    """Posts to ``{api}/events/name/{event}`` with a Bearer token: an OAuth client-credentials
    token, or a static API key (``api_key=``, client id and secret unused).

    The token is fetched in :meth:`open`, renewed by :meth:`ready` shortly before it expires
    (before the request takes its turn of the rate limit, so no turn waits on the renewal), and
    renewed on demand by :meth:`reauthenticate`; each new token bumps ``generation`` so that many
    requests failing with the same stale token trigger a single token request. An API key is
    never renewed: a 401 with it is final. Token requests take turns of ``limiter`` like events.
    The token itself is a :class:`~bulk_events.transport.auth.Token` (``transport.token``).
    """

    def __init__(
        self,
        api_url: str,
        client_id: str,
        client_secret: str,
        event_name: str,
        *,
        concurrency: int = 10,
        timeouts: Timeouts = Timeouts(),
        before_request: Callable[[], Awaitable[None]] | None = None,
        limiter: ratelimit.RateLimiter | None = None,
        api_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(concurrency=concurrency, timeouts=timeouts)
        _redact.register(client_secret)
        if api_key:
            _redact.register(api_key)
        _redact.register_url(api_url)
        api_url = api_url.rstrip("/")
        base = _check_url(api_url, "API URL")
        if base.user is not None or base.password is not None:
            # The REST API authenticates with the client id and secret (a Bearer token); a
            # user or password in the URL would be sent nowhere useful, or clash with it.
            raise UsageError(
                f"the API URL {_redact.redact_url(api_url)} carries a user name or password: "
                "remove them (the REST API uses the client id and secret)"
            )
        self._base = base
        self._event_name = event_name  # "" when every send names its event
        self._event_urls: dict[str, URL] = {}
        self.token = Token(
            self._post,
            URL(f"{api_url}/oauth/access_token", encoded=False),
            client_id,
            client_secret,
            host=_host_label(base),
            api_key=api_key,
            before_request=before_request,
            limiter=limiter,
            clock=clock,
        )
        self._shown = f'{_redact.redact_url(api_url)}, event "{event_name}"'

    def __repr__(self) -> str:
        return f"<ApiTransport {self._shown} generation={self.token.generation}>"

    @property
    def generation(self) -> int:
        """How many tokens this transport has obtained; Reply.auth_generation says which was used."""
        return self.token.generation

    async def open(self) -> None:
        """Create the session and fetch the first token.

        Raises CredentialsError if the id/secret are refused, ServiceUnavailable if the token
        endpoint cannot be reached or is failing.
        """
        await super().open()
        try:
            await self.token.open()
        except BaseException:
            await self.aclose()  # the caller gets an error, not a session left to leak
            raise

    def _url_of(self, event: str) -> URL:
        url = self._event_urls.get(event)
        if url is None:
            if not event:
                raise UsageError("an event name is required")
            path = f"{self._base.raw_path.rstrip('/')}/events/name/{quote(event, safe='')}"
            url = self._event_urls[event] = self._base.with_path(path, encoded=True)
        return url

    async def ready(self) -> None:
        """Renew the token if it is about to expire (call before taking a turn to send)."""
        await self.token.ready()

    async def send(self, body: dict[str, Any], event: str | None = None) -> Reply:
        """Post ``body`` once with the current token, to ``event`` if given (else the event this
        transport was made for); see the module docstring for exceptions.

        The token is not renewed here (the caller may hold a turn of the rate limit, which the
        token request would need): :meth:`ready` does that.
        """
        url = self._url_of(event or self._event_name)
        if self.token.value is None:
            raise RuntimeError("transport is not open: call open() first")
        data = orjson.dumps(body)
        token, generation = self.token.value, self.token.generation
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with self._slots:
            status, raw, charset, retry_after, complete = await self._post(
                url, data=data, headers=headers
            )
        return Reply(
            status,
            _reply_text(raw, charset),
            _parse_retry_after(retry_after),
            generation,
            complete,
        )

    async def reauthenticate(self, generation: int) -> bool:
        """Fetch a new token after a 401 seen with ``generation``, once for all waiting callers.

        Returns True when a token newer than ``generation`` is ready (fetched now or by another
        task meanwhile), False when the token endpoint refuses the credentials. Raises
        ServiceUnavailable when the token endpoint stays unreachable or failing.
        """
        return await self.token.renew(generation)
