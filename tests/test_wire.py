"""Delivery measured where it counts: at a SendPulse imitation in another process.

The sandbox runs as its own process (``python -m bulk_events.sandbox``), so it cannot stall
together with the importer, and records when each request arrived and what it answered; the
importer runs as a process too (it can be paused with SIGSTOP). What the tests read is the
server's record, never the client's own idea of when it started a request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import contacts, read_report, write_csv

from bulk_events.sandbox import max_in_window

RATE = 10


class Server:
    """The sandbox in a child process; ``arrivals()`` reads its record of every request."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.arrivals_path = tmp / "arrivals.jsonl"
        self.record_path = tmp / "accepted.jsonl"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bulk_events.sandbox",
                "--port",
                "0",
                "--rate-limit",
                str(RATE),
                "--arrivals",
                str(self.arrivals_path),
                "--record",
                str(self.record_path),
                *args,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("listening on "), line
        self.url = line.split()[-1]

    def arrivals(self) -> list[dict[str, Any]]:
        if not self.arrivals_path.exists():
            return []
        return [json.loads(x) for x in self.arrivals_path.read_text().splitlines() if x]

    def accepted(self) -> Counter[str]:
        if not self.record_path.exists():
            return Counter()
        lines = self.record_path.read_text().splitlines()
        return Counter(json.loads(x)["body"]["email"] for x in lines if x)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


@pytest.fixture
def server_factory(tmp_path: Path):
    started: list[Server] = []

    def make(*args: str) -> Server:
        folder = tmp_path / f"server{len(started)}"
        folder.mkdir()
        server = Server(folder, *args)
        started.append(server)
        return server

    yield make
    for server in started:
        if server.proc.poll() is None:
            server.stop()


def client(server: Server, tmp: Path, rows: int, *extra: str, **env: str) -> subprocess.Popen[str]:
    """``bulk-events import`` of ``rows`` contacts to the server, as a child process."""
    f = write_csv(tmp / "c.csv", contacts(rows))
    environ = {
        **os.environ,
        "SENDPULSE_CLIENT_ID": "sandbox-client",
        "SENDPULSE_CLIENT_SECRET": "sandbox-secret",
        **env,
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bulk_events",
            "import",
            str(f),
            "--event",
            "e",
            "--api-url",
            server.url,
            "--rate",
            str(RATE),
            "--report",
            str(tmp / "r.csv"),
            "--state",
            str(tmp / "state.sqlite"),
            "-q",
            *extra,
        ],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=90)
    return proc.returncode, err


def assert_ceiling_held(server: Server, rows: int) -> list[dict[str, Any]]:
    """Every row arrived once, nothing was refused, and no second held more than RATE arrivals."""
    server.stop()
    arrivals = server.arrivals()
    assert [a for a in arrivals if a["status"] == 429] == []
    assert max_in_window([a["at"] for a in arrivals]) <= RATE
    accepted = server.accepted()
    assert len(accepted) == rows and set(accepted.values()) == {1}
    return arrivals


@pytest.mark.parametrize("latency", [0.0, 0.1, 0.3])
def test_rate_ceiling_at_the_server(server_factory, tmp_path: Path, latency: float) -> None:
    """At 0, 100 and 300 ms answers no second holds more than 10 arrivals and nothing is refused."""
    server = server_factory("--latency", str(latency))
    code, err = finish(client(server, tmp_path, 25))
    assert code == 0, err
    assert_ceiling_held(server, 25)


def test_rate_ceiling_with_a_busy_core(server_factory, tmp_path: Path) -> None:
    """Another process spinning on a core does not push two requests into one slot."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        server = server_factory("--latency", "0.1")
        code, err = finish(client(server, tmp_path, 30))
    finally:
        spinner.kill()
        spinner.wait()
    assert code == 0, err
    assert_ceiling_held(server, 30)


def test_rate_ceiling_across_token_renewals(server_factory, tmp_path: Path) -> None:
    """With 5-second tokens the renewals happen mid-run without a burst after them."""
    server = server_factory("--latency", "0.05", "--token-ttl", "5")
    code, err = finish(client(server, tmp_path, 45, "--concurrency", "10"))
    assert code == 0, err
    arrivals = assert_ceiling_held(server, 45)
    tokens = [a for a in arrivals if a["kind"] == "token"]
    assert len(tokens) >= 2  # the first token and at least one renewal before expiry
    assert all(a["status"] in (200, 0) for a in arrivals if a["kind"] == "event")


def test_rate_ceiling_after_sigstop_and_sigcont(server_factory, tmp_path: Path) -> None:
    """A client paused mid-run (a laptop lid) does not send two at once when it resumes."""
    server = server_factory("--latency", "0.1")
    proc = client(server, tmp_path, 40)
    deadline = time.monotonic() + 60
    while len(server.arrivals()) < 12:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    for _ in range(3):
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.7)
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.3)
    code, err = finish(proc)
    assert code == 0, err
    assert_ceiling_held(server, 40)


def test_spent_quota_leaves_the_rest_pending_and_a_rerun_sends_it(
    server_factory, tmp_path: Path
) -> None:
    """A quota that runs out mid-file: the run stops within seconds with exit 75, every row not
    taken is pending (none failed), and a rerun once the quota is back sends exactly the rest."""
    server = server_factory("--quota", "12")
    started = time.monotonic()
    code, err = finish(client(server, tmp_path, 20))
    took = time.monotonic() - started
    assert code == 75, err
    assert "quota" in err and "again" in err
    report = Counter(r["status"] for r in read_report(tmp_path / "r.csv"))
    assert report == Counter({"sent": 12, "pending": 8})
    assert took < 30  # seconds, not a minute of backoffs (generous for a loaded machine)
    assert len(server.accepted()) == 12
    # A new day (SIGUSR1 refills the sandbox's quota): the same command again sends the other 8,
    # once each.
    server.proc.send_signal(signal.SIGUSR1)
    code, err = finish(client(server, tmp_path, 20))
    assert code == 0, err
    server.stop()
    accepted = server.accepted()
    assert len(accepted) == 20 and set(accepted.values()) == {1}


def test_api_key_needs_no_token_and_stays_secret(server_factory, tmp_path: Path) -> None:
    """SENDPULSE_API_KEY: Bearer key, no token request; the key is in no output and no file."""
    key = "k3y-" + "9f8e7d6c5b4a" * 3
    server = server_factory("--api-key", key)
    code, err = finish(
        client(server, tmp_path, 5, "-vv", SENDPULSE_API_KEY=key, SENDPULSE_CLIENT_ID="")
    )
    assert code == 0, err
    server.stop()
    assert [a["kind"] for a in server.arrivals()] == ["event"] * 5
    assert key not in err
    for path in tmp_path.rglob("*"):
        if path.is_file() and "server" not in path.parts[-2]:
            assert key.encode() not in path.read_bytes(), path


def test_wrong_api_key_stops_with_77(server_factory, tmp_path: Path) -> None:
    """A 401 with an API key has nothing to renew: exit 77 at once, the rest pending."""
    server = server_factory()
    code, err = finish(client(server, tmp_path, 5, "--concurrency", "1", SENDPULSE_API_KEY="nope"))
    assert code == 77, err
    server.stop()
    assert [a["kind"] for a in server.arrivals()] == ["event"]  # no token request, no retry
    assert "nope" not in err


def test_gateway_502_after_taking_the_event_is_not_resent(server_factory, tmp_path: Path) -> None:
    """A 502 from a gateway that passed the event on: the row is unknown and is never sent twice,
    in this run or the next."""
    server = server_factory("--misbehave", "502-after:2")
    code, _ = finish(client(server, tmp_path, 6, "--concurrency", "1"))
    assert code == 1
    statuses = Counter(r["status"] for r in read_report(tmp_path / "r.csv"))
    assert statuses == Counter({"sent": 4, "unknown": 2})
    finish(client(server, tmp_path, 6, "--concurrency", "1"))
    server.stop()
    accepted = server.accepted()
    assert len(accepted) == 6 and set(accepted.values()) == {1}


def test_string_false_is_refused_and_an_html_200_is_unknown(server_factory, tmp_path: Path) -> None:
    """{"result": "false"} is a refusal (failed); an HTML page with 200 is unknown; neither sent."""
    server = server_factory("--misbehave", "result-false-string", "--misbehave", "html-200")
    code, _ = finish(client(server, tmp_path, 4, "--concurrency", "1"))
    assert code == 1
    rows = {r["row"]: r for r in read_report(tmp_path / "r.csv")}
    assert [rows[str(n)]["status"] for n in (2, 3, 4, 5)] == ["failed", "unknown", "sent", "sent"]
    assert "blacklisted" in rows["2"]["error"]
    server.stop()


def test_huge_and_trickling_answers_are_bounded(server_factory, tmp_path: Path) -> None:
    """A body of hundreds of MB is read to a few KB (peak memory small); a body trickling a byte a
    second is cut at the total deadline: both rows unknown, the run goes on."""
    import tracemalloc

    import bulk_events

    server = server_factory("--misbehave", "huge-body", "--misbehave", "trickle")
    f = write_csv(tmp_path / "c.csv", contacts(3))
    tracemalloc.start()
    started = time.monotonic()
    try:
        result = bulk_events.import_file(
            f,
            event="e",
            api_url=server.url,
            client_id="sandbox-client",
            client_secret="sandbox-secret",
            concurrency=1,
            total_timeout=2.0,
            report=tmp_path / "r.csv",
            state=tmp_path / "s.sqlite",
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    took = time.monotonic() - started
    # The whole import (reading, the report) takes tens of MB; reading the 512 MB body would not fit.
    assert peak < 120_000_000
    assert took < 40  # the trickle alone would hold the row for ten minutes
    statuses = [r["status"] for r in read_report(tmp_path / "r.csv")]
    assert statuses == ["unknown", "unknown", "sent"]
    assert result.exit_code == 1
    server.stop()


@pytest.mark.parametrize(
    ("form", "content_type"),
    [
        (None, "application/json"),
        ("multipart", "multipart/form-data"),
        ("urlencoded", "application/x-www-form-urlencoded"),
    ],
)
def test_event_url_encodings_rehearsed_in_the_sandbox(
    tmp_path: Path, form: str | None, content_type: str
) -> None:
    """--sandbox --url rehearses the event URL in each encoding; every request asks for JSON."""
    import bulk_events

    f = write_csv(tmp_path / "c.csv", [["email", "n"], ["ann@example.com", "7"]])
    result = bulk_events.import_file(
        f,
        url="https://events.sendpulse.com/events/id/eb561baa181247d1cd378c4ead632877/7",
        sandbox=True,
        form=form,
        report=tmp_path / "r.csv",
    )
    assert result.exit_code == 0 and result.sandbox_record is not None
    (line,) = result.sandbox_record.read_text().splitlines()
    arrived = json.loads(line)
    assert arrived["content_type"] == content_type
    assert arrived["accept"] == "application/json"
    assert arrived["body"]["email"] == "ann@example.com"
    assert "/events/id/" in arrived["path"]
