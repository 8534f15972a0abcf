"""The "deliver one body" seam against the real sandbox on loopback, plus the secret scrubber."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import wait_until

from bulk_events import redact
from bulk_events.errors import CredentialsError, ServiceUnavailable
from bulk_events.sandbox import Sandbox
from bulk_events.transport import (
    ApiTransport,
    EventUrlTransport,
    MaybeSent,
    NotSent,
    Reply,
    Timeouts,
    Transport,
)
from bulk_events.transport.http import _classify, _parse_retry_after

BODY = {
    "email": "oksana@example.com",
    "phone": "+380931112233",
    "name": "Оксана Шевченко",
    "automation_id": 4242,
    "vip": True,
    "score": 1.5,
}


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = Sandbox()
    await box.start()
    yield box
    await box.stop()


def api(box: Sandbox, **kwargs: Any) -> ApiTransport:
    assert box.url is not None
    return ApiTransport(box.url, box.client_id, box.client_secret, "registration", **kwargs)


def closed_port_url() -> str:
    """A loopback URL nobody listens on: bind a port, then release it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- bodies arrive intact ------------------------------------------------------------------


async def test_api_transport_posts_json_with_a_token(sandbox: Sandbox) -> None:
    """The API transport's JSON body arrives unchanged: '+' phone, Cyrillic, int, bool."""
    transport = api(sandbox)
    await transport.open()
    try:
        reply = await transport.send(BODY)
    finally:
        await transport.aclose()
    assert reply == Reply(200, '{"result":true}', None, 1)
    [arrival] = sandbox.accepted
    assert arrival.body == BODY
    assert arrival.path == "/events/name/registration"
    assert arrival.content_type == "application/json"
    assert isinstance(transport, Transport)


async def test_event_name_is_url_quoted(sandbox: Sandbox) -> None:
    """An event name with spaces, slashes and Cyrillic reaches the right route."""
    assert sandbox.url is not None
    transport = ApiTransport(
        sandbox.url + "/", sandbox.client_id, sandbox.client_secret, "реєстрація 2024/1"
    )
    await transport.open()
    try:
        assert (await transport.send(BODY)).status == 200
    finally:
        await transport.aclose()
    assert sandbox.accepted[0].path == "/events/name/реєстрація 2024/1"


async def test_event_url_transport_posts_json(sandbox: Sandbox) -> None:
    """The event-URL transport posts JSON without auth and reports generation 0."""
    transport = EventUrlTransport(sandbox.event_url())
    await transport.open()
    try:
        reply = await transport.send(BODY)
        assert await transport.reauthenticate(0) is False
    finally:
        await transport.aclose()
    assert (reply.status, reply.auth_generation) == (200, 0)
    assert sandbox.accepted[0].body == BODY
    assert sandbox.token_requests == 0


async def test_event_url_transport_posts_multipart_form(sandbox: Sandbox) -> None:
    """form=True sends multipart fields as text: '+' and Cyrillic intact, bools as true/false."""
    transport = EventUrlTransport(sandbox.event_url(), form=True)
    await transport.open()
    try:
        reply = await transport.send({**BODY, "opted_out": False, "note": None})
    finally:
        await transport.aclose()
    assert reply.status == 200
    [arrival] = sandbox.accepted
    assert arrival.content_type == "multipart/form-data"
    assert arrival.body == {
        "email": "oksana@example.com",
        "phone": "+380931112233",
        "name": "Оксана Шевченко",
        "automation_id": "4242",
        "vip": "true",
        "score": "1.5",
        "opted_out": "false",
        "note": "",
    }


# --- tokens -------------------------------------------------------------------------------------


async def test_token_is_fetched_once_and_reused(sandbox: Sandbox) -> None:
    """Many sends share the token from open(): one token request in all."""
    calls = 0

    async def before_request() -> None:
        nonlocal calls
        calls += 1

    transport = api(sandbox, before_request=before_request)
    await transport.open()
    try:
        replies = await asyncio.gather(*(transport.send(BODY) for _ in range(20)))
    finally:
        await transport.aclose()
    assert {(r.status, r.auth_generation) for r in replies} == {(200, 1)}
    assert sandbox.token_requests == 1
    assert calls == 1  # the rate limiter is consulted before the token request


async def test_bad_credentials_raise_credentials_error(sandbox: Sandbox) -> None:
    """A refused client id/secret on open() is a CredentialsError quoting SendPulse's reason."""
    assert sandbox.url is not None
    transport = ApiTransport(sandbox.url, sandbox.client_id, "wrong-secret-123", "registration")
    with pytest.raises(CredentialsError) as caught:
        await transport.open()
    assert str(caught.value) == (
        "SendPulse rejected the client id/secret: Client authentication failed."
    )
    assert "wrong-secret-123" not in repr(caught.value)


async def test_unreachable_api_is_service_unavailable() -> None:
    """open() against a closed port says the service cannot be reached, try again later."""
    transport = ApiTransport(closed_port_url(), "id", "secret-abcdef", "registration")
    with pytest.raises(ServiceUnavailable, match=r"cannot reach SendPulse at 127\.0\.0\.1:\d+"):
        await transport.open()


async def test_failing_token_endpoint_is_service_unavailable(sandbox: Sandbox) -> None:
    """A 5xx from the token endpoint on open() is ServiceUnavailable, not a credentials problem."""
    sandbox.misbehave("token-500")
    with pytest.raises(ServiceUnavailable, match="HTTP 500; try again later"):
        await api(sandbox).open()


async def test_unreachable_event_url_send_is_not_sent() -> None:
    """A refused connection is NotSent (safe to retry), and its reason hides the URL hash."""
    url = closed_port_url() + "/events/id/eb561baa181247d1cd378c4ead632877/7"
    transport = EventUrlTransport(url)
    await transport.open()
    try:
        with pytest.raises(NotSent) as caught:
            await transport.send(BODY)
    finally:
        await transport.aclose()
    assert caught.value.reason.startswith("cannot connect")
    assert "eb561baa181247d1" not in repr(caught.value)
    assert "eb561baa181247d1" not in repr(transport)
    assert "eb56…" in repr(transport)


async def test_fifty_concurrent_401s_cause_one_token_request(sandbox: Sandbox) -> None:
    """All sends failing on one expired token renew it with exactly one token request."""
    transport = api(sandbox, concurrency=50)
    await transport.open()
    try:
        sandbox.expire_tokens()
        first = await asyncio.gather(*(transport.send(BODY) for _ in range(50)))
        assert {(r.status, r.auth_generation) for r in first} == {(401, 1)}
        renewed = await asyncio.gather(*(transport.reauthenticate(1) for _ in range(50)))
        assert all(renewed)
        assert sandbox.token_requests == 2
        second = await asyncio.gather(*(transport.send(BODY) for _ in range(50)))
    finally:
        await transport.aclose()
    assert {(r.status, r.auth_generation) for r in second} == {(200, 2)}
    assert len(sandbox.accepted) == 50


async def test_reauthenticate_returns_false_when_credentials_are_revoked(
    sandbox: Sandbox,
) -> None:
    """When the token endpoint starts refusing, reauthenticate says so instead of looping."""
    transport = api(sandbox)
    await transport.open()
    try:
        sandbox.client_secret = "rotated-by-someone-else"
        assert await transport.reauthenticate(1) is False
    finally:
        await transport.aclose()
    assert sandbox.token_requests == 2


async def test_token_is_renewed_before_it_expires(sandbox: Sandbox) -> None:
    """Close to expires_in, ready() fetches a new token before the next send (injected clock);
    send() itself never fetches one (its caller may hold a turn of the rate limit)."""
    now = 1000.0
    transport = api(sandbox, clock=lambda: now)
    await transport.open()
    try:
        await transport.ready()
        assert (await transport.send(BODY)).auth_generation == 1
        now += 3599.0  # within the renewal margin of a one-hour token
        assert (await transport.send(BODY)).auth_generation == 1
        assert sandbox.token_requests == 1
        await transport.ready()
        reply = await transport.send(BODY)
    finally:
        await transport.aclose()
    assert (reply.status, reply.auth_generation) == (200, 2)
    assert sandbox.token_requests == 2


# --- failures after the request left --------------------------------------------------------


@pytest.mark.parametrize(("kind", "taken"), [("drop-before", 0), ("drop-after", 1)])
async def test_dropped_connections_are_maybe_sent(sandbox: Sandbox, kind: str, taken: int) -> None:
    """A connection closed without an answer is MaybeSent whether or not the service took it."""
    sandbox.misbehave(kind)
    transport = EventUrlTransport(sandbox.event_url())
    await transport.open()
    try:
        with pytest.raises(MaybeSent, match="closed the connection"):
            await transport.send(BODY)
        # The pooled connection is not poisoned: the next send works.
        assert (await transport.send(BODY)).status == 200
    finally:
        await transport.aclose()
    assert len(sandbox.accepted) == taken + 1


async def test_slow_answer_past_the_read_timeout_is_maybe_sent(sandbox: Sandbox) -> None:
    """No answer within the read timeout is MaybeSent, and the sandbox did not take it."""
    sandbox.misbehave("slow", delay=1.0)
    transport = api(sandbox, timeouts=Timeouts(connect=5, read=0.2))
    await transport.open()
    try:
        with pytest.raises(MaybeSent, match="read timeout"):
            await transport.send(BODY)
    finally:
        await transport.aclose()
    await wait_until(lambda: sandbox.handled == 1)
    assert sandbox.accepted == []


# --- replies -------------------------------------------------------------------------------------


async def test_429_retry_after_is_parsed(sandbox: Sandbox) -> None:
    """A Retry-After header becomes seconds; a plain 429 has none."""
    sandbox.misbehave("429-retry-after")
    sandbox.misbehave("429")
    transport = api(sandbox)
    await transport.open()
    try:
        with_header = await transport.send(BODY)
        without = await transport.send(BODY)
    finally:
        await transport.aclose()
    assert (with_header.status, with_header.retry_after) == (429, 1.0)
    assert (without.status, without.retry_after) == (429, None)
    assert "2020202020" in without.text


def test_retry_after_accepts_http_dates_and_rejects_garbage() -> None:
    """Retry-After as an HTTP-date is seconds from now; nonsense is ignored."""
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert _parse_retry_after(date, now=now) == pytest.approx(30.0)
    assert _parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert _parse_retry_after(" 7 ") == 7.0
    assert _parse_retry_after("soon") is None
    assert _parse_retry_after("nan") is None
    assert _parse_retry_after(None) is None


async def test_500_html_page_text_is_truncated(sandbox: Sandbox) -> None:
    """A long HTML error page comes back as status 500 and at most 2000 characters."""
    sandbox.misbehave("500")
    transport = EventUrlTransport(sandbox.event_url())
    await transport.open()
    try:
        reply = await transport.send(BODY)
    finally:
        await transport.aclose()
    assert reply.status == 500
    assert reply.text.startswith("<!DOCTYPE html>")
    assert len(reply.text) == 2000


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (aiohttp.ConnectionTimeoutError("Connection timeout to host x"), NotSent),
        (aiohttp.SocketTimeoutError("Timeout on reading data"), MaybeSent),
        (aiohttp.ServerDisconnectedError(), MaybeSent),
        (aiohttp.ClientPayloadError("Response payload is not completed"), MaybeSent),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), MaybeSent),
        (ConnectionResetError(104, "reset"), MaybeSent),
        (TimeoutError(), MaybeSent),
        (aiohttp.ClientConnectorError(None, ConnectionRefusedError(111, "refused")), NotSent),  # type: ignore[arg-type]
        (aiohttp.ClientConnectorDNSError(None, OSError(-2, "Name unknown")), NotSent),  # type: ignore[arg-type]
    ],
)
def test_failures_are_classified_by_whether_the_request_left(
    exc: BaseException, expected: type
) -> None:
    """Only failures before a connection exists are NotSent; later ones are MaybeSent."""
    assert type(_classify(exc)) is expected


# --- secrets -------------------------------------------------------------------------------------


async def test_secrets_never_appear_in_replies_errors_or_reprs(
    aiohttp_server: Any,
) -> None:
    """A server echoing the token and secret back still yields only masked text."""
    secret = "echo-secret-0123456789"
    token = "echo-token-abcdefghijklmnop"

    async def token_endpoint(request: web.Request) -> web.Response:
        form = await request.post()
        if form["client_secret"] != secret:
            return web.json_response(
                {"error": "invalid_client", "error_description": f"bad {form['client_secret']}"},
                status=401,
            )
        return web.json_response({"access_token": token, "expires_in": 3600})

    async def event_endpoint(request: web.Request) -> web.Response:
        return web.Response(status=400, text=f"you sent {request.headers['Authorization']}")

    app = web.Application()
    app.router.add_post("/oauth/access_token", token_endpoint)
    app.router.add_post("/events/name/{name}", event_endpoint)
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")

    transport = ApiTransport(base, "id", secret, "registration")
    await transport.open()
    try:
        reply = await transport.send(BODY)
    finally:
        await transport.aclose()
    assert reply.text == "you sent Bearer ***"

    wrong = ApiTransport(base, "id", "wrong-secret-xyz", "registration")
    with pytest.raises(CredentialsError) as caught:
        await wrong.open()
    seen = " ".join([repr(reply), str(caught.value), repr(caught.value), repr(transport)])
    seen += repr(wrong)
    for leaked in (secret, token, "wrong-secret-xyz"):
        assert leaked not in seen


def test_redact_masks_registered_secrets_only() -> None:
    """Registered secrets become ***; short strings are never registered."""
    redact.register("redact-test-secret-1")
    redact.register("abc")
    redact.register("")
    assert redact.redact("x redact-test-secret-1 y abc") == "x *** y abc"


def test_redact_url_keeps_four_hash_chars_and_drops_userinfo_and_query() -> None:
    """Event URLs keep only a hash prefix; userinfo, query and fragment are removed."""
    url = "https://events.sendpulse.com/events/id/eb561baa181247d1cd378c4ead632877/7043663"
    assert redact.redact_url(url) == "https://events.sendpulse.com/events/id/eb56…/7043663"
    assert (
        redact.redact_url("https://user:pw@api.example.com:8443/v1/x?key=abc#frag")
        == "https://api.example.com:8443/v1/x"
    )


def test_register_url_masks_the_hash_and_userinfo_everywhere() -> None:
    """After register_url, the event hash and a URL password vanish from any text."""
    redact.register_url(
        "https://bob:pa55word-x@h.example/events/id/0123456789abcdef0123456789abcdef/1"
    )
    text = redact.redact("hash 0123456789abcdef0123456789abcdef and pa55word-x")
    assert text == "hash *** and ***"


def test_redacting_filter_scrubs_messages_args_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Log records pass through the filter with secrets masked in args and exception text."""
    redact.register("filter-test-token-42")
    logger = logging.getLogger("test_redacting_filter")
    caplog.handler.addFilter(redact.RedactingFilter())
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("token is %s", "filter-test-token-42")
        try:
            raise RuntimeError("boom filter-test-token-42")
        except RuntimeError:
            logger.exception("failed")
    assert "filter-test-token-42" not in caplog.text
    assert "token is ***" in caplog.text
    assert "RuntimeError: boom ***" in caplog.text


# --- the total deadline: sent or not -------------------------------------------------------------


@pytest.mark.parametrize("limited", [False, True], ids=["no-limit", "in-a-turn"])
async def test_no_answer_within_the_total_deadline_is_maybe_sent(
    sandbox: Sandbox, limited: bool
) -> None:
    """The request left, its answer did not come within the total deadline: MaybeSent, with and
    without a turn of the rate limit to wait for (the two go through differently traced sessions)."""
    from bulk_events.ratelimit import RateLimiter

    sandbox.misbehave("slow", delay=1.0)
    transport = api(sandbox, timeouts=Timeouts(connect=5, read=5, total=0.3))
    await transport.open()
    try:
        with pytest.raises(MaybeSent, match=r"no complete answer within 0\.3 s"):
            if limited:
                limiter = RateLimiter(50)
                with await limiter.take() as slot:
                    try:
                        await transport.send(BODY)
                    finally:
                        assert slot.left is not None  # the rate limit saw it leave
            else:
                await transport.send(BODY)
    finally:
        await transport.aclose()


async def test_not_connected_within_the_total_deadline_is_not_sent() -> None:
    """A server whose accept queue is full never completes the handshake: nothing left, NotSent."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        # Fill the accept queue, so that the next handshake is not answered.
        fillers = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        transport = EventUrlTransport(
            f"http://127.0.0.1:{port}/events/id/abc/1",
            timeouts=Timeouts(connect=5, read=5, total=0.5),
        )
        await transport.open()
        try:
            with pytest.raises(NotSent, match=r"not connected within 0\.5 s"):
                await transport.send(BODY)
        finally:
            await transport.aclose()
            for s in fillers:
                s.close()
