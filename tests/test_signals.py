"""Stopping the real CLI process mid-run (SIGINT, SIGTERM, SIGKILL) against a sandbox process that
records every event it takes, then running it again: every row arrives exactly once, or is reported
`unknown` and never silently resent."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import contacts, read_report, write_csv

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ROWS = 150


@pytest.fixture
def server(tmp_path):
    """`python -m bulk_events.sandbox` in its own process, recording to a JSONL file."""

    def start(latency: float = 0.05) -> tuple[str, Path, subprocess.Popen]:
        record = tmp_path / "arrived.jsonl"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bulk_events.sandbox",
                "--port",
                "0",
                "--record",
                str(record),
                "--latency",
                str(latency),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        procs.append(proc)
        return line.split()[-1], record, proc

    procs: list[subprocess.Popen] = []
    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def cli_env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "SENDPULSE_API_URL": url,
        "SENDPULSE_CLIENT_ID": "sandbox-client",
        "SENDPULSE_CLIENT_SECRET": "sandbox-secret",
    }


def start_cli(url: str, tmp_path: Path, *extra: str) -> subprocess.Popen:
    args = [
        sys.executable, "-m", "bulk_events", "import", str(tmp_path / "c.csv"), "--event", "e",
        "--report", str(tmp_path / "r.csv"), "--state", str(tmp_path / "journal.sqlite"), *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        args, env=cli_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def arrived(record: Path) -> Counter[str]:
    if not record.exists():
        return Counter()
    return Counter(
        json.loads(x)["body"]["email"] for x in record.read_text().splitlines() if x.strip()
    )


def wait_for_arrivals(record: Path, n: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(arrived(record).values()) < n:
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.05)


def wait_for_in_flight(journal: Path, n: int, timeout: float = 60.0) -> None:
    """Poll the run's journal (read-only) until n rows are marked in flight."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "the requests never went out"
        if journal.exists():
            try:
                with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
                    (count,) = db.execute(
                        "SELECT count(*) FROM events WHERE state = 'inflight'"
                    ).fetchone()
                if count >= n:
                    return
            except sqlite3.OperationalError:  # not created yet
                pass
        time.sleep(0.05)


def report_statuses(tmp_path: Path) -> Counter[str]:
    return Counter(r["status"] for r in read_report(tmp_path / "r.csv"))


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_graceful_stop_then_rerun_sends_each_row_once(server, tmp_path, sig, code):
    """SIGINT/SIGTERM: in-flight requests finish, the full report is written, the rerun completes the job."""
    url, record, _ = server()
    write_csv(tmp_path / "c.csv", contacts(ROWS))
    proc = start_cli(url, tmp_path, "--rate", "40", "--concurrency", "4")
    wait_for_arrivals(record, 20)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    counts = report_statuses(tmp_path)
    assert sum(counts.values()) == ROWS
    assert set(counts) <= {"sent", "pending"}
    assert counts["sent"] == sum(arrived(record).values())
    assert counts["pending"] > 0

    rerun = start_cli(url, tmp_path, "--rate", "0")
    _, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    assert arrived(record) == Counter({f"user{i}@example.com": 1 for i in range(ROWS)})


def test_second_ctrl_c_stops_at_once_and_in_flight_rows_are_unknown(server, tmp_path):
    """Two SIGINTs: no waiting for slow answers; whatever was in flight is `unknown`, never resent silently."""
    url, _record, _ = server(latency=2.0)
    write_csv(tmp_path / "c.csv", contacts(40))
    proc = start_cli(url, tmp_path, "--rate", "0", "--concurrency", "5")
    wait_for_in_flight(tmp_path / "journal.sqlite", 5)  # five requests wait for slow answers
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    told = proc.stderr.readline()  # the run says it is finishing: the first stop has landed
    assert "Ctrl-C: finishing the requests in flight" in told, told
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    counts = report_statuses(tmp_path)
    assert sum(counts.values()) == 40
    assert 1 <= counts["unknown"] <= 5
    assert counts["pending"] >= 35 - counts["unknown"]


def test_sigkill_leaves_at_most_concurrency_unknown_and_never_resends_them(server, tmp_path):
    """After SIGKILL the journal makes the next run right: no duplicate, at most --concurrency unknown."""
    rows = 60  # 30 arrive before the kill, 30 are left for the rerun: more would only take longer
    url, record, _ = server(latency=0.3)
    write_csv(tmp_path / "c.csv", contacts(rows))
    proc = start_cli(url, tmp_path, "--rate", "0", "--concurrency", "6")
    wait_for_arrivals(record, 30)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    # Requests the killed run left on their way may still land at the server: they are the rows
    # its journal holds in flight, which every later run treats as unknown, so nothing below
    # depends on when (or whether) they arrive.

    rerun = start_cli(url, tmp_path, "--rate", "0", "--concurrency", "6")
    _, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 1, err  # unknown rows remain
    counts = report_statuses(tmp_path)
    assert 1 <= counts["unknown"] <= 6
    assert counts["unknown"] + counts["skipped"] + counts["sent"] == rows
    once = arrived(record)
    assert max(once.values()) == 1  # nothing arrived twice
    unknown_rows = {r["email"] for r in read_report(tmp_path / "r.csv") if r["status"] == "unknown"}
    assert set(once) | unknown_rows == {f"user{i}@example.com" for i in range(rows)}

    again = start_cli(url, tmp_path, "--rate", "0", "--retry-unknown")
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    final = arrived(record)
    assert set(final) == {f"user{i}@example.com" for i in range(rows)}
    assert {e for e, n in final.items() if n > 1} <= unknown_rows


def test_overlapping_runs_never_both_send(server, tmp_path):
    """A second run over the same journal refuses at once (exit 2); with --wait it waits, then skips."""
    url, record, _ = server()
    write_csv(tmp_path / "c.csv", contacts(30))
    first = start_cli(url, tmp_path, "--rate", "10")
    wait_for_arrivals(record, 3)
    # Held mid-run, lock and all, until the other two have met it: however slowly they start on
    # a busy machine, the runs overlap.
    first.send_signal(signal.SIGSTOP)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "bulk_events", "import", str(tmp_path / "c.csv"), "--event", "e",
             "--report", str(tmp_path / "r2.csv"), "--state", str(tmp_path / "journal.sqlite")],
            env=cli_env(url), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert first.poll() is None, "the first run ended too soon for the test to mean anything"
        assert second.returncode == 2, second.stderr
        assert "another bulk-events run" in second.stderr
        third = subprocess.Popen(
            [sys.executable, "-m", "bulk_events", "import", str(tmp_path / "c.csv"), "--event", "e",
             "--report", str(tmp_path / "r3.csv"), "--state", str(tmp_path / "journal.sqlite"), "--wait"],
            env=cli_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert third.stderr is not None
        said = []  # what the third run says up to its "waiting" (stderr is line-buffered)
        while (line := third.stderr.readline()) and "waiting" not in line:
            said.append(line)
        said.append(line)
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(60) == 0
    _, err = third.communicate(timeout=60)
    err = "".join(said) + err
    assert third.returncode == 0, err
    assert "waiting" in err
    assert arrived(record) == Counter({f"user{i}@example.com": 1 for i in range(30)})
    assert {r["status"] for r in read_report(tmp_path / "r3.csv")} == {"skipped"}
