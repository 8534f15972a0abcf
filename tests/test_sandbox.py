"""The local SendPulse imitation: protocol, misbehaviours, rate limit, record file, process mode."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import wait_until

from bulk_events.sandbox import Sandbox, max_in_window

REPO = Path(__file__).resolve().parents[1]
GOOD = {"email": "ann@example.com", "automation_id": 12}


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = Sandbox()
    await box.start()
    yield box
    await box.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def token_for(client: aiohttp.ClientSession, box: Sandbox) -> str:
    data = {"grant_type": "client_credentials", "client_id": box.client_id}
    data["client_secret"] = box.client_secret
    async with client.post(f"{box.url}/oauth/access_token", data=data) as resp:
        assert resp.status == 200
        answer = await resp.json()
    assert answer["token_type"] == "Bearer"
    return answer["access_token"]


async def post_event(
    client: aiohttp.ClientSession, box: Sandbox, body: Any, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with client.post(f"{box.url}/events/name/signup", json=body, headers=headers) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


# --- max_in_window ----------------------------------------------------------------------------


def test_max_in_window_counts_the_busiest_sliding_second() -> None:
    """The busiest one-second window is found wherever it starts."""
    starts = [0.0, 0.125, 0.25, 1.0, 1.0625, 1.125, 1.1875, 3.0]
    assert max_in_window(starts) == 5  # [0.25, 1.25) holds 0.25 .. 1.1875


def test_max_in_window_is_half_open() -> None:
    """Requests exactly one window apart do not share a window; empty input gives zero."""
    assert max_in_window([0.0, 1.0, 2.0]) == 1
    assert max_in_window([0.0, 0.5, 1.0], window=0.5) == 1
    assert max_in_window([]) == 0
    assert max_in_window([5.0, 1.0, 1.5]) == 2  # order does not matter


def test_sandbox_max_in_window_can_count_events_only() -> None:
    """events_only ignores token requests, the default counts every request."""
    box = Sandbox()
    box.request_starts = [0.0, 0.1, 0.2, 0.3]
    box.event_starts = [0.1, 0.3]
    assert box.max_in_window() == 4
    assert box.max_in_window(events_only=True) == 2


# --- protocol ------------------------------------------------------------------------------------


async def test_token_endpoint_checks_credentials(
    sandbox: Sandbox, client: aiohttp.ClientSession
) -> None:
    """Right credentials get a Bearer token; a wrong secret gets 401 invalid_client."""
    await token_for(client, sandbox)
    data = {"grant_type": "client_credentials", "client_id": "sandbox-client"}
    data["client_secret"] = "wrong"
    async with client.post(f"{sandbox.url}/oauth/access_token", json=data) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"] == "invalid_client"
    assert sandbox.token_requests == 2
    assert len(sandbox.issued_tokens) == 1


async def test_events_by_name_need_a_valid_token(
    sandbox: Sandbox, client: aiohttp.ClientSession
) -> None:
    """No token or an expired token gives 401 as the real API words it; a fresh token is accepted."""
    status, answer = await post_event(client, sandbox, GOOD)
    assert (status, answer) == (401, {"message": "Unauthorized!", "error_code": 401})
    token = await token_for(client, sandbox)
    assert await post_event(client, sandbox, GOOD, token) == (200, {"result": True})
    sandbox.expire_tokens()
    assert (await post_event(client, sandbox, GOOD, token))[0] == 401
    assert (await post_event(client, sandbox, GOOD, await token_for(client, sandbox)))[0] == 200
    assert len(sandbox.accepted) == 2
    assert len(sandbox.arrivals) == 4


@pytest.mark.parametrize(
    "body",
    [
        {"name": "no contact"},
        {"email": ""},
        {"phone": 380931112233},  # a number, not a string
        {"email": "ann@example.com", "automation_id": "12"},  # a string, not a number
        {"email": "ann@example.com", "automation_id": True},
        ["not", "an", "object"],
    ],
)
async def test_bodies_sendpulse_refuses_get_400(
    sandbox: Sandbox, client: aiohttp.ClientSession, body: Any
) -> None:
    """A body without a string email/phone or with a non-integer automation_id is refused."""
    status, answer = await post_event(client, sandbox, body, await token_for(client, sandbox))
    assert status == 400
    assert answer["result"] is False
    assert sandbox.accepted == []


async def test_event_url_takes_json_and_form(
    sandbox: Sandbox, client: aiohttp.ClientSession
) -> None:
    """/events/id/ needs no token and accepts JSON, multipart and url-encoded bodies."""
    url = sandbox.event_url()
    async with client.post(url, json={"phone": "+380931112233", "automation_id": 5}) as resp:
        assert resp.status == 200
    form = aiohttp.FormData(
        {"phone": "+380931112233", "name": "Оксана", "automation_id": "5"},
        default_to_multipart=True,
    )
    async with client.post(url, data=form) as resp:
        assert resp.status == 200
    async with client.post(url, data={"email": "ann@example.com"}) as resp:
        assert resp.status == 200
    assert [a.content_type for a in sandbox.accepted] == [
        "application/json",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
    ]
    assert sandbox.accepted[1].body == {
        "phone": "+380931112233",
        "name": "Оксана",
        "automation_id": "5",
    }


async def test_rate_limit_answers_429_beyond_n_per_second(
    client: aiohttp.ClientSession,
) -> None:
    """More than N requests in a second get SendPulse's 429 envelope and are not accepted."""
    box = Sandbox(rate_limit=2)
    await box.start()
    try:
        url = box.event_url()
        statuses = []
        for _ in range(5):
            async with client.post(url, json=GOOD) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    answer = await resp.json()
                    assert answer["error_code"] == 2020202020
                    assert "Retry-After" not in resp.headers
        assert statuses[:2] == [200, 200]
        assert 429 in statuses
        assert len(box.accepted) == statuses.count(200)
    finally:
        await box.stop()


# --- misbehaviours ---------------------------------------------------------------------------


async def test_drop_before_closes_without_answer_and_takes_nothing(
    sandbox: Sandbox, client: aiohttp.ClientSession
) -> None:
    """drop-before makes the aiohttp client see ServerDisconnectedError and accepts nothing."""
    sandbox.misbehave("drop-before")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_event(client, sandbox, GOOD, await token_for(client, sandbox))
    assert len(sandbox.arrivals) == 1
    assert sandbox.accepted == []


async def test_drop_after_accepts_then_closes(
    sandbox: Sandbox, client: aiohttp.ClientSession
) -> None:
    """drop-after takes the event, yet the client only sees ServerDisconnectedError."""
    sandbox.misbehave("drop-after")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_event(client, sandbox, GOOD, await token_for(client, sandbox))
    assert [a.body for a in sandbox.accepted] == [GOOD]


async def test_slow_answer_to_an_impatient_client_is_not_taken(sandbox: Sandbox) -> None:
    """slow: a client that times out and leaves does not get its event accepted."""
    sandbox.misbehave("slow", delay=1.0)
    timeout = aiohttp.ClientTimeout(sock_read=0.2)
    async with aiohttp.ClientSession(timeout=timeout) as impatient:
        with pytest.raises(aiohttp.SocketTimeoutError):
            await post_event(impatient, sandbox, GOOD, await token_for(impatient, sandbox))
    await wait_until(lambda: sandbox.handled == 1)
    assert sandbox.accepted == []


async def test_slow_answer_to_a_patient_client_is_taken(
    sandbox: Sandbox, client: aiohttp.ClientSession
) -> None:
    """slow: a client that waits gets a normal 200 and the event is accepted."""
    sandbox.misbehave("slow", delay=0.2)
    token = await token_for(client, sandbox)
    assert await post_event(client, sandbox, GOOD, token) == (200, {"result": True})
    assert len(sandbox.accepted) == 1


async def test_slow_accept_takes_the_event_even_if_the_client_leaves(sandbox: Sandbox) -> None:
    """slow-accept takes the event before stalling, so a timed-out client still caused it."""
    sandbox.misbehave("slow-accept", delay=1.0)
    timeout = aiohttp.ClientTimeout(sock_read=0.2)
    async with aiohttp.ClientSession(timeout=timeout) as impatient:
        with pytest.raises(aiohttp.SocketTimeoutError):
            await post_event(impatient, sandbox, GOOD, await token_for(impatient, sandbox))
    assert len(sandbox.accepted) == 1


@pytest.mark.parametrize(
    ("kind", "status", "check"),
    [
        ("429", 429, lambda answer, headers: "Retry-After" not in headers),
        ("429-retry-after", 429, lambda answer, headers: headers["Retry-After"] == "1"),
        ("500", 500, lambda answer, headers: answer.startswith("<!DOCTYPE html>")),
        ("503", 503, lambda answer, headers: "503" in answer),
        ("result-false", 200, lambda answer, headers: answer["result"] is False),
        ("400", 400, lambda answer, headers: answer["message"] == "Invalid email"),
        ("401", 401, lambda answer, headers: answer["message"] == "Unauthorized!"),
        ("result-false-string", 200, lambda answer, headers: answer["result"] == "false"),
        ("html-200", 200, lambda answer, headers: answer.startswith("<html>")),
        ("502", 502, lambda answer, headers: "Bad Gateway" in answer),
    ],
)
async def test_refusing_misbehaviours(
    sandbox: Sandbox, client: aiohttp.ClientSession, kind: str, status: int, check: Any
) -> None:
    """Each refusing kind answers as documented, accepts nothing, and is used up once."""
    sandbox.misbehave(kind)
    token = await token_for(client, sandbox)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{sandbox.url}/events/name/signup"
    async with client.post(url, json=GOOD, headers=headers) as resp:
        text = await resp.text()
        answer = json.loads(text) if resp.content_type == "application/json" else text
        assert resp.status == status
        assert check(answer, resp.headers)
    assert sandbox.accepted == []
    assert await post_event(client, sandbox, GOOD, token) == (200, {"result": True})


async def test_when_and_times_select_which_requests_misbehave(
    sandbox: Sandbox, client: aiohttp.ClientSession
) -> None:
    """Only bodies matching `when` consume the misbehaviour, `times` times."""
    sandbox.misbehave("500", times=2, when=lambda body: body.get("email") == "bad@example.com")
    token = await token_for(client, sandbox)
    bad = {"email": "bad@example.com"}
    assert (await post_event(client, sandbox, GOOD, token))[0] == 200
    assert (await post_event(client, sandbox, bad, token))[0] == 500
    assert (await post_event(client, sandbox, GOOD, token))[0] == 200
    assert (await post_event(client, sandbox, bad, token))[0] == 500
    assert (await post_event(client, sandbox, bad, token))[0] == 200


async def test_revoked_credentials_401_persist_across_new_tokens(
    sandbox: Sandbox, client: aiohttp.ClientSession
) -> None:
    """ "401" with times=2 refuses even freshly issued tokens, then lets requests through."""
    sandbox.misbehave("401", times=2)
    assert (await post_event(client, sandbox, GOOD, await token_for(client, sandbox)))[0] == 401
    assert (await post_event(client, sandbox, GOOD, await token_for(client, sandbox)))[0] == 401
    assert (await post_event(client, sandbox, GOOD, await token_for(client, sandbox)))[0] == 200


async def test_expire_token_kills_that_token_until_a_new_one(
    sandbox: Sandbox, client: aiohttp.ClientSession
) -> None:
    """expire-token makes the request's token invalid for good; a new token works."""
    token = await token_for(client, sandbox)
    sandbox.misbehave("expire-token")
    assert (await post_event(client, sandbox, GOOD, token))[0] == 401
    assert (await post_event(client, sandbox, GOOD, token))[0] == 401
    assert (await post_event(client, sandbox, GOOD, await token_for(client, sandbox)))[0] == 200


async def test_token_endpoint_can_fail(sandbox: Sandbox, client: aiohttp.ClientSession) -> None:
    """token-503 fails one token request without touching event requests."""
    sandbox.misbehave("token-503")
    data = {"grant_type": "client_credentials", "client_id": sandbox.client_id}
    data["client_secret"] = sandbox.client_secret
    async with client.post(f"{sandbox.url}/oauth/access_token", data=data) as resp:
        assert resp.status == 503
    await token_for(client, sandbox)


def test_unknown_misbehaviour_is_refused() -> None:
    """A typo in a misbehaviour kind fails loudly instead of silently doing nothing."""
    with pytest.raises(ValueError, match="unknown misbehaviour"):
        Sandbox().misbehave("drop-midway")


# --- record file and process mode ------------------------------------------------------------


async def test_record_file_gets_one_line_per_accepted_event(
    tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    """Accepted events are appended as JSON lines, refused ones and tokens are not."""
    record = tmp_path / "arrived.jsonl"
    box = Sandbox(record=record)
    await box.start()
    try:
        token = await token_for(client, box)
        assert (await post_event(client, box, GOOD, token))[0] == 200
        assert (await post_event(client, box, {"name": "x"}, token))[0] == 400
        # Flushed per line: readable while the sandbox still runs.
        lines = record.read_text().splitlines()
    finally:
        await box.stop()
    assert [json.loads(line) for line in lines] == [
        {
            "path": "/events/name/signup",
            "body": GOOD,
            "content_type": "application/json",
            "accept": "*/*",  # what this test's bare client asks for
        }
    ]
    assert token not in record.read_text()


async def test_standalone_process_records_and_stops_on_sigterm(
    tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    """`python -m bulk_events.sandbox` serves, records an event, and exits 0 on SIGTERM."""
    record = tmp_path / "arrived.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulk_events.sandbox",
        "--port",
        "0",
        "--record",
        str(record),
        "--rate-limit",
        "10",
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()  # type: ignore[union-attr]
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split()[-1]
        body = {"phone": "+380931112233", "name": "Оксана"}
        async with client.post(f"{url}/events/id/0123456789abcdef0123/1", json=body) as resp:
            assert resp.status == 200
        assert json.loads(record.read_text(encoding="utf-8"))["body"] == body
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
