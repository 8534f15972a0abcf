"""A local imitation of SendPulse's event endpoints, for tests and ``--sandbox`` runs.

It speaks real HTTP on loopback: an OAuth token endpoint, ``/events/name/{name}`` (Bearer token or
API key; also ``//events/name/…`` as the official Python client sends it) and
``/events/id/{hash}/{number}`` (no auth, JSON or form). It remembers every request, can enforce a
per-second rate limit and a quota (``quota`` events per ``quota_window`` seconds, then the 429 of a
spent quota), and misbehaves on demand (429, 500, 502 after taking the event, slow answers, dropped
connections, huge or trickling bodies, expired or revoked tokens)::

    sandbox = Sandbox(rate_limit=10)
    base = await sandbox.start()
    sandbox.misbehave("drop-after", when=lambda body: body.get("email") == "ann@example.com")
    ...
    await sandbox.stop()
    assert len(sandbox.accepted) == 3

As a process (for tests that kill the importer)::

    python -m bulk_events.sandbox --port 0 --record arrived.jsonl --rate-limit 10 --latency 0.05 \
        --arrivals times.jsonl

prints ``listening on http://127.0.0.1:PORT`` and appends each accepted event to the record file
as one JSON line, and every request's arrival time and answer to the arrivals file, until SIGTERM
or SIGINT.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

import orjson
from aiohttp import web

from bulk_events.private import create_private

from .misbehaviour import (
    EVENT_KINDS,
    HTML_500,
    HTML_502,
    HTML_503,
    HTML_PORTAL,
    TOKEN_KINDS,
    Misbehaviour,
    client_gone,
    drop,
    stream_body,
)

__all__ = [
    "EVENT_KINDS",
    "PER_SECOND_CODE",
    "SANDBOX_HASH",
    "SANDBOX_RATE",
    "TOKEN_KINDS",
    "Arrival",
    "Sandbox",
    "max_in_window",
]

SANDBOX_HASH = "5a4db0c5e1d2f3a4b5c6d7e8f9a0b1c2"  # the event-URL hash the sandbox hands out
SANDBOX_RATE = 10  # SendPulse's documented limit: requests per second
PER_SECOND_CODE = 2020202020  # the error_code of SendPulse's per-second 429

_UNAUTHORIZED = {"message": "Unauthorized!", "error_code": 401}  # what the real API answers


@dataclass
class Arrival:
    """One event request as the sandbox saw it."""

    at: float  # time.monotonic() when the handler began
    path: str
    body: dict[str, Any]
    content_type: str
    accepted: bool
    accept: str = ""  # the request's Accept header


class Sandbox:
    """An in-process SendPulse imitation: create, :meth:`start`, point a transport at it, inspect.

    ``app`` can also be handed to pytest-aiohttp's ``aiohttp_server`` instead of :meth:`start`.
    With ``history=False`` the per-request lists are not kept (long ``--sandbox`` runs); the
    counters and ``request_starts`` still are.
    """

    def __init__(
        self,
        *,
        client_id: str = "sandbox-client",
        client_secret: str = "sandbox-secret",
        api_key: str = "sandbox-api-key",
        token_ttl: float = 3600.0,
        rate_limit: int | None = None,
        latency: float = 0.0,
        record: str | os.PathLike[str] | None = None,
        history: bool = True,
        quota: int | None = None,
        quota_window: float = 86400.0,
        arrivals: str | os.PathLike[str] | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.api_key = api_key
        self.quota = quota
        self.quota_window = quota_window
        self.arrivals_path = arrivals
        self.quota_refusals = 0
        self.rate_refusals = 0
        self._taken: deque[float] = deque()  # accepted events inside the quota window
        self._arrivals_file: IO[bytes] | None = None
        self.token_ttl = token_ttl
        self.rate_limit = rate_limit
        self.latency = latency
        self.record_path = record
        self.history = history

        self.arrivals: list[Arrival] = []
        self.accepted: list[Arrival] = []
        self.request_starts: list[float] = []
        self.event_starts: list[float] = []
        self.token_requests = 0
        self.issued_tokens: list[str] = []
        self.handled = 0  # event requests whose handler has finished (answered or dropped)
        self.arrival_count = 0
        self.accepted_count = 0
        self.url: str | None = None

        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._misbehaviours: list[Misbehaviour] = []
        self._recent: deque[float] = deque()  # request starts inside the rate-limit window
        self._record_file: IO[bytes] | None = None
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None

        self.app = web.Application()
        self.app.router.add_post("/oauth/access_token", self._handle_token)
        self.app.router.add_post("/events/name/{name}", self._handle_event)
        self.app.router.add_post("//events/name/{name}", self._handle_event)
        self.app.router.add_post("/events/id/{hash}/{number}", self._handle_event)
        self.app.on_shutdown.append(self._on_shutdown)
        self.app.on_cleanup.append(self._on_cleanup)

    # --- control and inspection -------------------------------------------------------------

    def misbehave(
        self,
        kind: str,
        *,
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
        delay: float = 5.0,
    ) -> None:
        """Make the next ``times`` matching requests fail in the way ``kind`` names.

        Event kinds are in :data:`EVENT_KINDS`, token-endpoint kinds in :data:`TOKEN_KINDS`.
        ``when`` receives the parsed body; only requests it accepts consume the misbehaviour.
        ``delay`` is how long "slow" kinds wait before answering.
        """
        if kind not in EVENT_KINDS and kind not in TOKEN_KINDS:
            known = ", ".join(sorted(EVENT_KINDS | TOKEN_KINDS))
            raise ValueError(f"unknown misbehaviour {kind!r}; known: {known}")
        if times < 1:
            raise ValueError("times must be at least 1")
        self._misbehaviours.append(Misbehaviour(kind, times, when, delay))

    def calm(self) -> None:
        """Forget every misbehaviour still waiting to happen: from now on the service behaves."""
        self._misbehaviours.clear()

    def expire_tokens(self) -> None:
        """Expire every token issued so far: the next event request with one gets 401."""
        for token in self._tokens:
            self._tokens[token] = -math.inf

    def max_in_window(self, window: float = 1.0, *, events_only: bool = False) -> int:
        """The most requests that started within any ``window`` seconds (half-open interval)."""
        return max_in_window(self.event_starts if events_only else self.request_starts, window)

    def event_url(self, base: str | None = None, number: int = 1) -> str:
        """An event URL (``/events/id/<hash>/<number>``) on this sandbox."""
        base = base or self.url
        if base is None:
            raise RuntimeError("the sandbox is not started; pass its base URL")
        return f"{base.rstrip('/')}/events/id/{SANDBOX_HASH}/{number}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0 picks a free port) and return the base URL."""
        if self._runner is not None:
            raise RuntimeError("the sandbox is already running")
        self._stopping = asyncio.Event()
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self.url = f"http://{bound_host}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        """Stop serving; slow answers still waiting are cut short."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._close_record()

    # --- handlers -----------------------------------------------------------------------------

    async def _handle_token(self, request: web.Request) -> web.StreamResponse:
        now = self._begin(event=False)
        response = await self._token(request, now)
        self._log_arrival(now, "token", response.status)
        return response

    async def _token(self, request: web.Request, now: float) -> web.StreamResponse:
        self.token_requests += 1
        limited = self._over_limit(now)
        body, _, _ = await _read_body(request, form_ok=True)
        if limited:
            return self._rate_limited()
        trouble = self._take(body, token=True)
        if trouble is not None:
            response = await self._token_trouble(request, trouble)
            if response is not None:
                return response
        if body.get("grant_type") != "client_credentials":
            return _json(
                400,
                {"error": "unsupported_grant_type", "error_description": "Use client_credentials."},
            )
        if body.get("client_id") != self.client_id or body.get("client_secret") != (
            self.client_secret
        ):
            return _json(
                401,
                {"error": "invalid_client", "error_description": "Client authentication failed."},
            )
        token = secrets.token_hex(24)
        self._tokens[token] = time.monotonic() + self.token_ttl
        self.issued_tokens.append(token)
        ttl = self.token_ttl
        expires_in: float = int(ttl) if float(ttl).is_integer() else ttl
        return _json(200, {"access_token": token, "token_type": "Bearer", "expires_in": expires_in})

    async def _token_trouble(self, request: web.Request, trouble: Misbehaviour) -> Any:
        kind = trouble.kind.removeprefix("token-")
        if kind == "429":
            return self._rate_limited()
        if kind == "500":
            return web.Response(status=500, text=HTML_500, content_type="text/html")
        if kind == "503":
            return web.Response(status=503, text=HTML_503, content_type="text/html")
        if kind == "401":
            return _json(
                401,
                {"error": "invalid_client", "error_description": "Client authentication failed."},
            )
        if kind == "drop":
            return drop(request)
        if kind == "slow":
            await self._sleep(trouble.delay)
        return None

    async def _handle_event(self, request: web.Request) -> web.StreamResponse:
        now = self._begin(event=True)
        status = 0  # 0: no answer (dropped)
        try:
            response = await self._event(request, now)
            if not (request.transport is None or request.transport.is_closing()):
                status = response.status
            return response
        finally:
            self.handled += 1
            self._log_arrival(now, "event", status)

    async def _event(self, request: web.Request, now: float) -> web.StreamResponse:
        limited = self._over_limit(now)
        by_name = "name" in request.match_info
        body, is_form, problem = await _read_body(request, form_ok=not by_name)
        arrival = Arrival(
            now,
            request.path,
            body,
            request.content_type,
            accepted=False,
            accept=request.headers.get("Accept", ""),
        )
        self._arrive(arrival)

        if limited:
            return self._rate_limited()
        token = None
        if by_name:
            token = _bearer(request)
            if token is None or (
                token != self.api_key and self._tokens.get(token, -math.inf) <= time.monotonic()
            ):
                return _json(401, _UNAUTHORIZED)

        trouble = self._take(body, token=False)
        kind = trouble.kind if trouble is not None else None
        if kind == "expire-token" and token is not None:
            self._tokens[token] = -math.inf
        if kind in ("401", "expire-token"):
            return _json(401, _UNAUTHORIZED)
        if kind == "429":
            return self._rate_limited()
        if kind == "429-retry-after":
            return self._rate_limited(retry_after="1")
        if kind == "429-long":
            return self._rate_limited(retry_after="3600")
        if kind == "500":
            return web.Response(status=500, text=HTML_500, content_type="text/html")
        if kind == "503":
            return web.Response(status=503, text=HTML_503, content_type="text/html")
        if kind == "drop-before":
            return drop(request)
        if kind == "502":
            return web.Response(status=502, text=HTML_502, content_type="text/html")
        if kind == "html-200":
            return web.Response(status=200, text=HTML_PORTAL, content_type="text/html")
        if kind == "slow":
            assert trouble is not None
            await self._sleep(trouble.delay)
            if client_gone(request):
                # A real service would not act on a request whose client has gone.
                return web.Response(status=200)

        if problem is None:
            problem = _validate(body, form=is_form)
        if problem is not None:
            await self._sleep(self.latency)
            return _json(400, {"result": False, "message": problem})
        if kind == "400":
            await self._sleep(self.latency)
            return _json(400, {"message": "Invalid email", "error_code": 400})
        if kind == "403":
            await self._sleep(self.latency)
            return _json(403, {"message": "Account is blocked", "error_code": 403})
        if kind == "result-false":
            await self._sleep(self.latency)
            return _json(200, {"result": False, "message": "Contact is blacklisted"})
        if kind == "result-false-string":
            await self._sleep(self.latency)
            return _json(200, {"result": "false", "message": "Contact is blacklisted"})
        if self._quota_spent(now):
            self.quota_refusals += 1
            return _json(429, {"message": "Too Many Requests: quota exceeded", "error_code": 429})

        self._accept(arrival)
        if kind == "drop-after":
            return drop(request)
        if kind in ("502-after", "504-after"):
            await self._sleep(self.latency)
            status = 502 if kind == "502-after" else 504
            return web.Response(status=status, text=HTML_502, content_type="text/html")
        if kind in ("huge-body", "trickle"):
            return await stream_body(request, huge=kind == "huge-body", stop=self._stopping)
        if kind == "slow-accept":
            assert trouble is not None
            await self._sleep(trouble.delay)
        await self._sleep(self.latency)
        return _json(200, {"result": True})

    # --- helpers ------------------------------------------------------------------------------

    def _begin(self, *, event: bool) -> float:
        now = time.monotonic()
        self.request_starts.append(now)
        if event:
            self.event_starts.append(now)
        return now

    def _quota_spent(self, now: float) -> bool:
        """True when ``quota`` events were already taken in the last ``quota_window`` seconds."""
        if self.quota is None:
            return False
        taken = self._taken
        while taken and taken[0] <= now - self.quota_window:
            taken.popleft()
        if len(taken) >= self.quota:
            return True
        taken.append(now)
        return False

    def refill_quota(self) -> None:
        """The quota is back (a new minute, a new day): the next ``quota`` events are taken."""
        self._taken.clear()

    def _log_arrival(self, at: float, kind: str, status: int) -> None:
        """One line per request in the arrivals file: when it arrived and what it was answered."""
        if self.arrivals_path is None:
            return
        if self._arrivals_file is None:
            self._arrivals_file = open(self.arrivals_path, "ab")  # noqa: SIM115 - until stop
        line = {"at": at, "kind": kind, "status": status}
        self._arrivals_file.write(orjson.dumps(line) + b"\n")
        self._arrivals_file.flush()

    def _over_limit(self, now: float) -> bool:
        """Count this request in the sliding window; True if the window now holds too many."""
        if self.rate_limit is None:
            return False
        recent = self._recent
        recent.append(now)
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        limited = len(recent) > self.rate_limit
        if limited:
            self.rate_refusals += 1
        return limited

    def _rate_limited(self, retry_after: str | None = None) -> web.Response:
        limit = self.rate_limit if self.rate_limit is not None else 10
        response = _json(
            429,
            {"message": f"More than {limit} requests per second", "error_code": PER_SECOND_CODE},
        )
        if retry_after is not None:
            response.headers["Retry-After"] = retry_after
        return response

    def _take(self, body: dict[str, Any], *, token: bool) -> Misbehaviour | None:
        """Consume one use of the first pending misbehaviour that applies to this request."""
        for trouble in self._misbehaviours:
            if (trouble.kind in TOKEN_KINDS) != token:
                continue
            if trouble.when is not None:
                try:
                    if not trouble.when(body):
                        continue
                except Exception:
                    continue
            trouble.remaining -= 1
            if trouble.remaining <= 0:
                self._misbehaviours.remove(trouble)
            return trouble
        return None

    def _arrive(self, arrival: Arrival) -> None:
        self.arrival_count += 1
        if self.history:
            self.arrivals.append(arrival)

    def _accept(self, arrival: Arrival) -> None:
        arrival.accepted = True
        self.accepted_count += 1
        if self.history:
            self.accepted.append(arrival)
        if self.record_path is not None:
            if self._record_file is None:
                self._record_file = create_private(self.record_path, append=True)  # lives until stop
            line = {
                "path": arrival.path,
                "body": arrival.body,
                "content_type": arrival.content_type,
                "accept": arrival.accept,
            }
            self._record_file.write(orjson.dumps(line) + b"\n")
            # Flushed per line: a test may kill the importer and read the file at any moment.
            self._record_file.flush()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake early when the sandbox shuts down."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _on_shutdown(self, app: web.Application) -> None:
        self._stopping.set()

    async def _on_cleanup(self, app: web.Application) -> None:
        self._close_record()

    def _close_record(self) -> None:
        for name in ("_record_file", "_arrivals_file"):
            file = getattr(self, name)
            setattr(self, name, None)
            if file is not None:
                file.close()


def max_in_window(starts: Sequence[float], window: float = 1.0) -> int:
    """The most of ``starts`` inside any half-open interval ``[t, t + window)``."""
    times = sorted(starts)
    best = 0
    for i, start in enumerate(times):
        # The busiest window can always be slid to begin at some request's start.
        end = bisect.bisect_left(times, start + window, lo=i)
        best = max(best, end - i)
    return best


async def _read_body(
    request: web.Request, *, form_ok: bool
) -> tuple[dict[str, Any], bool, str | None]:
    """Parse the body into (fields, came as a form, problem); problem is None when usable."""
    ctype = request.content_type
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.post()
        fields = {key: str(form[key]) for key in form}
        if not form_ok:
            return fields, True, "the body must be a JSON object"
        return fields, True, None
    raw = await request.read()
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}, False, "the body is not valid JSON"
    if not isinstance(value, dict):
        return {}, False, "the body must be a JSON object"
    return value, False, None


def _validate(body: dict[str, Any], *, form: bool) -> str | None:
    """What SendPulse would refuse in a body, or None if it is acceptable."""
    email = body.get("email")
    phone = body.get("phone")
    if not (isinstance(email, str) and email.strip()) and not (
        isinstance(phone, str) and phone.strip()
    ):
        return "email or phone is required"
    if "automation_id" in body:
        value = body["automation_id"]
        # Form fields are all text, so there a string of digits is the integer.
        ok = (
            (isinstance(value, str) and value.isdigit())
            if form
            else (isinstance(value, int) and not isinstance(value, bool))
        )
        if not ok:
            return "automation_id must be an integer"
    return None


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _json(status: int, payload: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")
