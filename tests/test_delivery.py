"""Real sends through the CLI against a live local SendPulse imitation that misbehaves on demand.

Each test checks, row by row, what arrived at the server against what the report says.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from conftest import FakeClock, contacts, read_report, wait_until, write_csv

FAST = ["--max-attempts", "4"]


def statuses(report) -> dict[int, str]:
    return {int(r["row"]): r["status"] for r in read_report(report)}


def arrived_emails(server) -> Counter[str]:
    return Counter(b.get("email") for b in server.bodies())


def send(cli, f, tmp_path, *extra, **kwargs):
    """`bulk-events import F --event e --report r.csv ...`, the form most tests here use."""
    return cli("import", f, "--event", "e", "--report", tmp_path / "r.csv", *extra, **kwargs)


def test_every_row_arrives_exactly_once_with_exact_bodies(api, tmp_path):
    """Bodies arrive with the right types (automation_id an integer, phone a string with its +)."""
    server, cli = api()
    f = write_csv(
        tmp_path / "c.csv",
        [
            ["Email", "Phone", "Name", "automation_id", "Total"],
            ["a@b.co", "+38 050 123 45 67", "Олена", "7043663", "12.50"],
            ["c@d.co", "", "Bob", "", "7"],
            ["bad", "", "Eve", "", ""],
        ],
    )
    result = cli(
        "import",
        f,
        "--event",
        "registration",
        "--report",
        tmp_path / "r.csv",
        "--type",
        "Total=number",
    )
    assert result.exit_code == 1, result.output  # one invalid row
    assert sorted(server.bodies(), key=lambda b: b["email"]) == [
        {
            "email": "a@b.co",
            "phone": "+380501234567",
            "Name": "Олена",
            "automation_id": 7043663,
            "Total": 12.5,
        },
        {"email": "c@d.co", "Name": "Bob", "Total": 7},
    ]
    rows = read_report(tmp_path / "r.csv")
    assert [(r["row"], r["status"], r["http_status"], r["attempts"]) for r in rows] == [
        ("2", "sent", "200", "1"),
        ("3", "sent", "200", "1"),
        ("4", "invalid", "", "0"),
    ]
    assert rows[0]["sent_at"].endswith("Z")
    assert server.do(lambda: server.box.token_requests) == 1
    assert "2 sent" in result.stderr and "(2 requests)" in result.stderr  # too few for a rate


@pytest.mark.parametrize("kind", ["429", "429-retry-after", "500", "503"])
def test_retryable_failures_are_retried_until_sent(api, tmp_path, kind):
    """429 (with and without Retry-After), 500 HTML pages and 503 are retried; the row arrives once."""
    server, cli = api()
    target = lambda b: b.get("email") == "user1@example.com"  # noqa: E731
    server.do(lambda: server.box.misbehave(kind, times=2, when=target))
    f = write_csv(tmp_path / "c.csv", contacts(4))
    result = send(cli, f, tmp_path, *FAST)
    assert result.exit_code == 0, result.output
    assert arrived_emails(server) == Counter({f"user{i}@example.com": 1 for i in range(4)})
    rows = {r["email"]: r for r in read_report(tmp_path / "r.csv")}
    assert rows["user1@example.com"]["attempts"] == "3"
    assert rows["user0@example.com"]["attempts"] == "1"


def test_retries_run_out_and_the_row_fails_with_the_reason(api, tmp_path):
    """A row that keeps getting 500 fails after --max-attempts with the page's gist."""
    server, cli = api()
    server.do(
        lambda: server.box.misbehave(
            "500", times=10, when=lambda b: b.get("email") == "user0@example.com"
        )
    )
    f = write_csv(tmp_path / "c.csv", contacts(2))
    result = send(cli, f, tmp_path, "--max-attempts", "2")
    assert result.exit_code == 1
    row = read_report(tmp_path / "r.csv")[0]
    assert row["status"] == "failed" and row["attempts"] == "2" and row["http_status"] == "500"
    assert "Internal Server Error" in row["error"]
    assert arrived_emails(server) == Counter({"user1@example.com": 1})


@pytest.mark.parametrize(
    ("kind", "expect"), [("400", "Invalid email"), ("result-false", "blacklisted")]
)
def test_refusals_fail_at_once_with_the_service_message(api, tmp_path, kind, expect):
    """4xx and {"result": false} are not retried: the data is wrong; the message is in the report."""
    server, cli = api()
    server.do(
        lambda: server.box.misbehave(kind, when=lambda b: b.get("email") == "user0@example.com")
    )
    f = write_csv(tmp_path / "c.csv", contacts(2))
    result = send(cli, f, tmp_path)
    assert result.exit_code == 1
    row = read_report(tmp_path / "r.csv")[0]
    assert (row["status"], row["attempts"]) == ("failed", "1")
    assert expect in row["error"]


@pytest.mark.parametrize("kind", ["drop-before", "drop-after", "slow-accept"])
def test_no_answer_after_sending_is_unknown_and_not_resent(api, tmp_path, kind):
    """Dropped connections and read timeouts are `unknown`, whether or not the service took the event."""
    server, cli = api()
    server.do(
        lambda: server.box.misbehave(
            kind, when=lambda b: b.get("email") == "user0@example.com", delay=3
        )
    )
    f = write_csv(tmp_path / "c.csv", contacts(3))
    args = ["import", f, "--event", "e", "--report", tmp_path / "r.csv"]
    result = cli(*args, "--config", write_timeout(tmp_path))
    assert result.exit_code == 1, result.output
    assert statuses(tmp_path / "r.csv") == {2: "unknown", 3: "sent", 4: "sent"}
    first = read_report(tmp_path / "r.csv")[0]
    assert first["attempts"] == "1" and "not resent" in first["error"]
    attempts = server.do(
        lambda: sum(1 for a in server.box.arrivals if a.body.get("email") == "user0@example.com")
    )
    assert attempts == 1
    # A rerun does not resend it either...
    result = cli(*args, "--config", write_timeout(tmp_path))
    assert statuses(tmp_path / "r.csv") == {2: "unknown", 3: "skipped", 4: "skipped"}
    assert (
        server.do(
            lambda: sum(
                1 for a in server.box.arrivals if a.body.get("email") == "user0@example.com"
            )
        )
        == 1
    )
    # ...unless asked to.
    result = cli(*args, "--retry-unknown")
    assert result.exit_code == 0
    assert statuses(tmp_path / "r.csv") == {2: "sent", 3: "skipped", 4: "skipped"}


def write_timeout(tmp_path):
    path = tmp_path / "timeouts.toml"
    path.write_text("read_timeout = 1.0\n")
    return path


def test_token_expiring_mid_run_is_refreshed_once(api, tmp_path):
    """Many requests seeing the expired token together cause one token request, and every row arrives."""
    server, cli = api()
    server.do(
        lambda: server.box.misbehave(
            "expire-token", when=lambda b: b.get("email") == "user5@example.com"
        )
    )
    f = write_csv(tmp_path / "c.csv", contacts(30))
    result = send(cli, f, tmp_path, "--rate", "0", "--concurrency", "10")
    assert result.exit_code == 0, result.output
    assert arrived_emails(server) == Counter({f"user{i}@example.com": 1 for i in range(30)})
    assert server.do(lambda: server.box.token_requests) == 2


def test_persistent_401_stops_the_run(api, tmp_path):
    """A 401 that a fresh token does not cure: that row failed, the rest pending, exit 77, no loop."""
    server, cli = api()
    server.do(lambda: server.box.misbehave("401", times=1000))
    f = write_csv(tmp_path / "c.csv", contacts(20))
    result = send(cli, f, tmp_path, "--concurrency", "1")
    assert result.exit_code == 77, result.output
    counts = Counter(statuses(tmp_path / "r.csv").values())
    assert counts["failed"] == 1 and counts["pending"] == 19
    assert server.do(lambda: server.box.token_requests) == 2
    assert "credentials" in result.stderr


def test_bad_credentials_exit_2_before_any_row(api, tmp_path):
    """Wrong client secret: exit 2 up front, nothing sent."""
    server, cli = api()
    f = write_csv(tmp_path / "c.csv", contacts(3))
    result = cli("import", f, "--event", "e", env={"SENDPULSE_CLIENT_SECRET": "wrong-secret-123"})
    assert result.exit_code == 2
    assert server.bodies() == []
    assert "wrong-secret-123" not in result.output


def test_missing_credentials_exit_2(cli, tmp_path):
    """No credentials in the environment: a one-line hint, exit 2."""
    f = write_csv(tmp_path / "c.csv", contacts(1))
    result = cli("import", f, "--event", "e")
    assert result.exit_code == 2
    assert "SENDPULSE_CLIENT_ID" in result.stderr


def test_unreachable_service_exits_75(cli, tmp_path):
    """Nothing listening: "try again later" (75) and nothing recorded as sent."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    f = write_csv(tmp_path / "c.csv", contacts(1))
    env = {
        "SENDPULSE_API_URL": f"http://127.0.0.1:{port}",
        "SENDPULSE_CLIENT_ID": "id",
        "SENDPULSE_CLIENT_SECRET": "secret-value",
    }
    result = cli("import", f, "--event", "e", env=env)
    assert result.exit_code == 75, result.output
    assert "try again later" in result.stderr


def test_circuit_breaker_stops_early_when_the_service_is_down(api, tmp_path):
    """When nearly every request fails, the run stops early: the rest pending, exit 75."""
    server, cli = api()
    server.do(lambda: server.box.misbehave("503", times=100_000))
    f = write_csv(tmp_path / "c.csv", contacts(200))
    result = send(cli, f, tmp_path, "--rate", "0", "--max-attempts", "1")
    assert result.exit_code == 75, result.output
    counts = Counter(statuses(tmp_path / "r.csv").values())
    assert counts["pending"] > 100
    assert counts["failed"] >= 16
    assert sum(counts.values()) == 200
    assert server.bodies() == []


@pytest.mark.xdist_group("paced")  # measures pace at the server: not beside another such test
def test_rate_limit_holds_at_the_server(api, tmp_path):
    """No sliding one-second window at the server sees more than --rate requests, and nothing is refused."""
    server, cli = api(rate_limit=20)
    f = write_csv(tmp_path / "c.csv", contacts(70))
    result = send(cli, f, tmp_path, "--rate", "20", "--concurrency", "8")
    assert result.exit_code == 0, result.output
    assert server.do(lambda: server.box.max_in_window(1.0)) <= 20
    assert "requests/s" in result.stderr  # the summary reports the pace (its value: see below)
    assert len(server.bodies()) == 70
    refused = server.do(lambda: sum(1 for a in server.box.arrivals if not a.accepted))
    assert refused == 0


def test_event_url_json_and_form_keep_plus_and_cyrillic(live, cli, tmp_path):
    """Through an event URL, JSON and form-data bodies both arrive intact."""
    server = live()
    url = server.do(lambda: server.box.event_url())
    f = write_csv(
        tmp_path / "c.csv", [["email", "phone", "name"], ["a@b.co", "+380501234567", "Олена Ї"]]
    )
    for extra, state in (([], "j"), (["--form"], "f")):
        result = cli(
            "import",
            f,
            "--url",
            url,
            *extra,
            "--report",
            tmp_path / "r.csv",
            "--state",
            tmp_path / state,
        )
        assert result.exit_code == 0, result.output
    json_body, form_body = server.bodies()
    assert json_body == {"email": "a@b.co", "phone": "+380501234567", "name": "Олена Ї"}
    assert form_body == json_body
    content_types = server.do(lambda: [a.content_type for a in server.box.accepted])
    assert content_types[0] == "application/json" and content_types[1].startswith(
        "multipart/form-data"
    )
    assert "5a4db0c5e1d2f3a4b5c6d7e8f9a0b1c2" not in result.output


def test_sandbox_mode_runs_the_sample_end_to_end(cli, tmp_path):
    """--sandbox sends for real to a local imitation and writes what arrived beside the report."""
    from conftest import SAMPLES

    result = cli(
        "import",
        SAMPLES / "customers.xlsx",
        "--event",
        "registration",
        "--sandbox",
        "--report",
        tmp_path / "r.csv",
        "--rate",
        "50",
    )
    assert result.exit_code == 0, result.output
    assert {r["status"] for r in read_report(tmp_path / "r.csv")} == {"sent"}
    import json

    arrived = [json.loads(x) for x in (tmp_path / "r.sandbox.jsonl").read_text().splitlines()]
    assert len(arrived) == 14
    assert all(isinstance(a["body"]["automation_id"], int) for a in arrived)
    # A second rehearsal remembers: nothing is sent twice.
    result = cli(
        "import",
        SAMPLES / "customers.xlsx",
        "--event",
        "registration",
        "--sandbox",
        "--report",
        tmp_path / "r.csv",
    )
    assert result.exit_code == 0
    assert {r["status"] for r in read_report(tmp_path / "r.csv")} == {"skipped"}


def test_a_flaw_found_mid_file_stops_cleanly_with_a_full_report(api, tmp_path):
    """A stray value under no header near the end: rows before it are sent and reported, exit 2."""
    import bulk_events

    server, _ = api()
    rows = contacts(30)
    rows.append(["late@example.com", "Late", "stray value"])
    f = write_csv(tmp_path / "c.csv", rows)
    result = bulk_events.import_file(
        f,
        event="e",
        report=tmp_path / "r.csv",
        rate=0,
        chunk_rows=10,
        api_url=server.url,
        client_id=server.box.client_id,
        client_secret=server.box.client_secret,
    )
    assert result.exit_code == 2
    assert "no header" in result.stopped
    reported = read_report(tmp_path / "r.csv")
    last = int(reported[-1]["row"])
    assert f"rows up to {last} are in the report, nothing after row {last}" in result.stopped
    assert 20 <= len(reported) <= 30  # the rows read before the flaw (the reader reads ahead)
    assert [int(r["row"]) for r in reported] == list(range(2, 2 + len(reported)))
    sent = [r for r in reported if r["status"] == "sent"]
    assert len(sent) >= 10
    assert len(server.bodies()) == len(sent)
    assert {r["status"] for r in reported} <= {"sent", "pending"}


@pytest.mark.parametrize("kind", ["400", "result-false"])
def test_refused_rows_do_not_trip_the_breaker(api, tmp_path, kind):
    """Thirty refused contacts at the top of a file: the run goes on to send the rest."""
    server, cli = api()
    server.do(lambda: server.box.misbehave(kind, times=30))
    f = write_csv(tmp_path / "c.csv", contacts(60))
    result = send(cli, f, tmp_path, "--rate", "0", "--concurrency", "1")
    assert result.exit_code == 1, result.output
    counts = Counter(statuses(tmp_path / "r.csv").values())
    assert counts == Counter({"failed": 30, "sent": 30})


def test_403_for_every_row_trips_the_breaker(api, tmp_path):
    """A blocked account (403 for everything) stops the run early instead of burning the file."""
    server, cli = api()
    server.do(lambda: server.box.misbehave("403", times=1000))
    f = write_csv(tmp_path / "c.csv", contacts(100))
    result = send(cli, f, tmp_path, "--rate", "0", "--concurrency", "1")
    assert result.exit_code == 75, result.output
    counts = Counter(statuses(tmp_path / "r.csv").values())
    assert counts["failed"] == 20 and counts["pending"] == 80  # the breaker looks at 20 rows


@pytest.mark.parametrize("concurrency", ["5", "50"])
def test_unlimited_run_against_a_limited_service_finishes_without_losing_rows(
    api, tmp_path, concurrency
):
    """--rate 0 against a service that allows 10/s: the 429s slow the run to 10/s and every row arrives
    once, also when a burst of 50 requests in flight all come back 429 together."""
    server, cli = api(rate_limit=10)
    f = write_csv(tmp_path / "c.csv", contacts(60))
    result = send(cli, f, tmp_path, "--rate", "0", "--concurrency", concurrency)
    assert result.exit_code == 0, result.output
    assert arrived_emails(server) == Counter({f"user{i}@example.com": 1 for i in range(60)})
    refused = server.do(lambda: sum(1 for a in server.box.arrivals if not a.accepted))
    assert refused >= 1  # the service did push back, and the run adapted


def test_quota_exhausted_stops_with_75(api, tmp_path):
    """A 429 with a Retry-After beyond two minutes: the quota is spent; every row the service did
    not take is pending (the one that saw the 429 too: it was refused before being taken), exit 75."""
    server, cli = api()
    server.do(lambda: server.box.misbehave("429-long", times=1000))
    f = write_csv(tmp_path / "c.csv", contacts(10))
    result = send(cli, f, tmp_path, "--concurrency", "1")
    assert result.exit_code == 75, result.output
    assert "quota" in result.stderr
    counts = Counter(statuses(tmp_path / "r.csv").values())
    assert counts["pending"] == 10 and counts["failed"] == 0


def _delivery(tmp_path, handler, *, rate=0.0, clock=None):
    """A Deliverer over an in-memory transport, a real journal and (optionally) a fake clock."""
    from bulk_events.delivery import Deliverer, JournalWriter
    from bulk_events.journal import Journal
    from bulk_events.ratelimit import RateLimiter
    from bulk_events.transport import MemoryTransport

    journal = Journal.open(tmp_path / "j.sqlite")
    writer = JournalWriter(journal, journal.start_run(input="x", target="y"))
    timing = {"clock": clock, "sleep": clock.sleep} if clock else {}
    limiter = RateLimiter(rate, **timing)
    transport = MemoryTransport(handler)
    deliverer = Deliverer(transport, limiter, writer, **({"clock": clock} if clock else {}))
    return deliverer, transport, journal


def _jobs(n):
    from bulk_events.delivery import Job
    from bulk_events.payload import event_key

    bodies = [{"email": f"user{i}@example.com"} for i in range(n)]
    return [Job(row=i + 2, key=event_key("t", b), body=b) for i, b in enumerate(bodies)]


async def _deliver_all(deliverer, jobs, concurrency):
    queue = list(jobs)
    outcomes = []

    async def worker():
        while queue:
            outcomes.append(await deliverer.deliver(queue.pop(0)))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


async def test_the_pace_holds_to_the_rate_on_the_limiters_clock(tmp_path):
    """70 rows at --rate 20 with 8 in flight: no second holds more than 20 starts, and the pace
    the summary reports is just under 20/s (on an injected clock: no real time involved)."""
    from bulk_events.sandbox import max_in_window
    from bulk_events.transport import Reply

    clock = FakeClock()
    starts = []

    def handler(body):
        starts.append(clock())
        return Reply(200, '{"result": true}')

    deliverer, _, journal = _delivery(tmp_path, handler, rate=20, clock=clock)
    with journal:
        outcomes = await _deliver_all(deliverer, _jobs(70), 8)
    assert {o.status.value for o in outcomes} == {"sent"} and len(starts) == 70
    assert max_in_window(starts) <= 20
    rate = (deliverer.requests - 1) / deliverer.sending_time
    assert 18 <= rate <= 20


async def test_a_429_pauses_the_whole_run_not_just_its_row(tmp_path):
    """After a 429 with Retry-After: 1, no request at all starts for that second, then every row
    arrives once (on the limiter's injected clock)."""
    from bulk_events.transport import Reply

    clock = FakeClock()
    sends = []

    def handler(body):
        refuse = body["email"] == "user5@example.com" and not any(
            b == body for _, b, _ in sends
        )
        sends.append((clock(), body, refuse))
        if refuse:
            return Reply(429, '{"message": "slow down"}', retry_after=1.0)
        return Reply(200, '{"result": true}')

    deliverer, _, journal = _delivery(tmp_path, handler, rate=20, clock=clock)
    with journal:
        outcomes = await _deliver_all(deliverer, _jobs(40), 4)
    assert [o.status.value for o in outcomes].count("sent") == 40
    refused_at = next(at for at, _, refused in sends if refused)
    assert not [at for at, _, _ in sends if refused_at < at < refused_at + 1.0]
    accepted = Counter(b["email"] for _, b, refused in sends if not refused)
    assert accepted == Counter({f"user{i}@example.com": 1 for i in range(40)})


async def test_a_delivery_cancelled_mid_request_records_its_row_unknown(tmp_path):
    """Torn down while waiting for the answer: the deliverer itself journals the row as unknown."""
    from bulk_events.journal import State

    never = asyncio.Event()

    async def handler(body):
        await never.wait()

    deliverer, transport, journal = _delivery(tmp_path, handler)
    [job] = _jobs(1)
    with journal:
        task = asyncio.create_task(deliverer.deliver(job))
        await wait_until(lambda: transport.sent)
        task.cancel()
        outcome = await task
        assert outcome.status.value == "unknown" and outcome.attempts == 1
        assert "may have taken it" in outcome.error
        assert journal.lookup([job.key])[job.key].state is State.UNKNOWN
