"""`bulk-events status`, `history`, `status --html` and `inspect` against a real run in another
process (a sandbox server in a third one), read from the journal while the run holds it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import contacts, write_csv
from hypothesis import given
from hypothesis import strategies as st
from test_signals import arrived, cli_env, server, start_cli  # noqa: F401  (server: a fixture)

from bulk_events.journal import Journal, Mark
from bulk_events.outcome import Status
from bulk_events.status import next_step, read_status, render_status

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")

ROWS = 200


def status_json(cli, journal: Path) -> dict:
    result = cli("status", "--state", journal, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached in time"
        time.sleep(0.1)


def test_status_while_running_after_it_and_history_of_two_runs(server, tmp_path, cli):  # noqa: F811
    """While a run goes in another process, status says so with counts near what the server
    received, of the total; after Ctrl-C it says what is pending and what to do; history lists
    both runs, newest first; inspect notices the run in progress."""
    url, record, _ = server(latency=0.01)
    write_csv(tmp_path / "c.csv", contacts(ROWS))
    journal = tmp_path / "journal.sqlite"
    proc = start_cli(url, tmp_path, "--rate", "20")
    try:
        live = wait_for(
            lambda: (
                (s := status_json(cli, journal))["running"]
                and s["run"]["counts"]["sent"] >= 20
                and s
            ),
            what="a running status with sent rows",
        )
        after = sum(arrived(record).values())
        run = live["run"]
        assert run["state"] == "running" and run["pid"] == proc.pid
        assert run["total"] == ROWS
        assert run["input"].endswith("c.csv")
        # Progress is written about once a second: at 20/s it lags by a few dozen rows at most.
        assert after - 60 <= run["counts"]["sent"] <= after
        assert run["counts"]["pending"] == ROWS - sum(
            n for s, n in run["counts"].items() if s != "pending"
        )
        assert run["rate"] > 5
        assert run["eta_seconds"] is not None and run["eta_seconds"] > 0
        assert "a run is going" in live["next_step"]

        text = cli("status", "--state", journal).stdout
        assert f"running: pid {proc.pid}" in text and f"of {ROWS}" in text

        shown = cli("inspect", tmp_path / "c.csv", "--event", "e", "--state", journal)
        assert shown.exit_code == 0, shown.output
        assert f"a run is going (pid {proc.pid}" in shown.stdout

        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    done = status_json(cli, journal)
    sent = sum(arrived(record).values())
    assert not done["running"]
    assert done["run"]["state"] == "finished" and done["run"]["exit_code"] == 130
    assert done["run"]["counts"]["sent"] == sent
    pending = done["run"]["counts"]["pending"]
    assert pending == ROWS - sent > 0
    assert done["next_step"] == f"{pending} pending: run the same command again"
    assert f"next: {pending} pending: run the same command again" in err

    # The second run says it resumes, sends the rest.
    rerun = subprocess.run(
        [sys.executable, "-m", "bulk_events", "import", str(tmp_path / "c.csv"), "--event", "e",
         "--report", str(tmp_path / "r2.csv"), "--state", str(journal), "--rate", "0"],
        env=cli_env(url), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming: {sent} row(s) of this file already sent" in rerun.stderr
    assert f"about {ROWS - sent} remain" in rerun.stderr
    assert sum(arrived(record).values()) == ROWS

    history = cli("history", "--state", journal, "--json")
    assert history.exit_code == 0, history.output
    runs = json.loads(history.stdout)
    assert [r["exit_code"] for r in runs] == [0, 130]  # newest first
    assert runs[0]["counts"]["sent"] == ROWS - sent and runs[0]["counts"]["skipped"] == sent
    assert runs[1]["counts"]["sent"] == sent
    assert runs[0]["started_at"] >= runs[1]["started_at"]
    text = cli("history", "--state", journal).stdout
    assert text.index("exit 0") < text.index("exit 130")

    # The page of the finished journal, rendered in a real browser (below).
    page = tmp_path / "status.html"
    result = cli("status", "--state", journal, "--html", page)
    assert result.exit_code == 0, result.output
    check_page_in_browser(page, tmp_path, sent=ROWS - sent, skipped=sent)


def check_page_in_browser(page: Path, tmp_path: Path, *, sent: int, skipped: int) -> None:
    html = page.read_text(encoding="utf-8")
    for fetching in ("src=", "href=", "url(", "@import", "<script", "<link"):
        assert fetching not in html  # self-contained: nothing to fetch
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (CI installs it)")
    profile = tmp_path / "chromium-profile"
    args = [
        chromium, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile}",
        "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(args, capture_output=True, text=True, timeout=180).stdout
    assert f'<td class="n" data-status="sent">{sent}</td>' in dom
    assert f'<td class="n" data-status="skipped">{skipped}</td>' in dom
    assert dom.count('class="bar"') >= 1  # the rate chart has bars
    assert 'id="rate-chart"' in dom and 'class="outcome"' in dom
    assert "nothing to do" in dom


def test_status_shows_a_pause_and_the_journal_of_an_older_version(tmp_path, cli):
    """A run paused by a 429 shows until when; a journal without the progress columns (schema 1)
    still reads."""
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as journal:
        run = journal.start_run(input="c.csv", target="event e")
        journal.write([Mark(b"k" * 16, "sent", row=2)], run)
        journal.update_run(
            run,
            total=10,
            rate=4.0,
            paused_until="2999-01-01T00:00:00Z",
            pause_reason="the service answered 429 (too many requests)",
            progress={"counts": {"sent": 4}, "total": 10},
        )
        report = read_status(path)  # this process holds it: it is "running"
    assert report.running
    text = render_status(report)
    assert "paused until 2999-01-01T00:00:00Z: the service answered 429" in text
    assert "4 sent, 0 failed, 0 unknown, 6 pending of 10" in text
    assert "about 2 s to go" in text

    old = tmp_path / "old.sqlite"
    import sqlite3

    db = sqlite3.connect(old)
    db.executescript(
        "CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT,"
        " input TEXT NOT NULL, target TEXT NOT NULL, argv TEXT NOT NULL DEFAULT '',"
        " exit_code INTEGER, counts_json TEXT, pid INTEGER NOT NULL);"
        "CREATE TABLE events (key BLOB PRIMARY KEY, state TEXT NOT NULL, row INTEGER,"
        " run_id INTEGER, attempts INTEGER NOT NULL DEFAULT 0, http_status INTEGER,"
        " error TEXT NOT NULL DEFAULT '', sent_at TEXT, updated_at TEXT NOT NULL) WITHOUT ROWID;"
        "INSERT INTO runs VALUES (1, '2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z', 'a.csv',"
        " 'event e', '', 1, '{\"sent\": 3, \"unknown\": 2}', 1);"
        "PRAGMA user_version = 1;"
    )
    db.close()
    data = status_json(cli, old)
    assert data["run"]["counts"]["sent"] == 3
    assert data["next_step"] == "2 unknown: check them in SendPulse, then add --retry-unknown"
    history = cli("history", "--state", old)
    assert "#1" in history.stdout and "3 sent, 2 unknown" in history.stdout


def test_status_finds_the_journal_from_the_target_options(api, tmp_path):
    """The same target options as import find the same journal; without any, a clear refusal."""
    _, cli = api()
    f = write_csv(tmp_path / "c.csv", contacts(3))
    assert cli("import", f, "--event", "signup", "--report", tmp_path / "r.csv").exit_code == 0
    data = json.loads(cli("status", "--event", "signup", "--json").stdout)
    assert data["run"]["counts"]["sent"] == 3 and data["run"]["exit_code"] == 0
    refused = cli("status")
    assert refused.exit_code == 2
    assert "--state PATH" in refused.stderr and "Traceback" not in refused.output
    config = tmp_path / "nightly.toml"
    config.write_text('event = "signup"\ninput = "c.csv"\n', encoding="utf-8")
    data = json.loads(cli("status", "--config", config, "--json").stdout)
    assert data["run"]["counts"]["sent"] == 3


@pytest.mark.parametrize(
    ("counts", "code", "stopped", "expected"),
    [
        ({"sent": 767, "pending": 233}, 130, "", "233 pending: run the same command again"),
        (
            {"sent": 5, "unknown": 3},
            1,
            "",
            "3 unknown: check them in SendPulse, then add --retry-unknown",
        ),
        (
            {"sent": 5, "pending": 9},
            75,
            "SendPulse keeps refusing with 429: the quota looks exhausted",
            "quota spent: resume after it resets",
        ),
        ({"sent": 5, "skipped": 2}, 0, "", "nothing to do"),
        ({"sent": 5, "invalid": 2}, 1, "", "2 invalid: fix them"),
    ],
)
def test_next_step(counts, code, stopped, expected):
    """The next step names what to do, with the command."""
    assert next_step(counts, code, stopped).startswith(expected)


def test_resuming_counts_only_what_this_file_sent(api, tmp_path):
    """One journal holds every file sent to a destination: a rerun of one file says how many of
    *its* rows were sent before, not what other files sent there."""
    _, cli = api()
    other = write_csv(tmp_path / "other.csv", contacts(5))
    assert cli("import", other, "--event", "e", "--report", tmp_path / "o.csv").exit_code == 0
    mine = write_csv(tmp_path / "mine.csv", [["email"], ["a1@x.co"], ["a2@x.co"]])
    first = cli("import", mine, "--event", "e", "--report", tmp_path / "m1.csv")
    assert first.exit_code == 0 and "bulk-events: resuming" not in first.stderr
    again = cli("import", mine, "--event", "e", "--report", tmp_path / "m2.csv")
    assert "resuming: 2 row(s) of this file already sent" in again.stderr


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(Status)),
            st.sampled_from(["", 'email "a@b" is not valid', "HTTP 500", "timeout"]),
        ),
        max_size=60,
    )
)
def test_a_chunk_tallied_at_once_is_tallied_as_row_by_row(rows):
    """RunProgress.add_many (a chunk's rows, counted in C) leaves the same counts, errors with
    their example rows, and sent series as add() of each row in turn."""
    from bulk_events.outcome import Outcome
    from bulk_events.progress import RunProgress

    outcomes = [Outcome(i + 2, status, error) for i, (status, error) in enumerate(rows)]
    one, many = RunProgress(100, "e", clock=lambda: 5.0), RunProgress(100, "e", clock=lambda: 5.0)
    for outcome in outcomes:
        one.add(outcome)
    many.add_many(outcomes)
    assert list(many.counts.items()) == list(one.counts.items())
    assert many.snapshot() == one.snapshot()
