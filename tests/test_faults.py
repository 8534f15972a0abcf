"""Faults that must not cost a duplicate, a hang or a secret: damaged, misplaced, deleted and
replaced journals, two journals for one destination, full disks, requests that could not be
made, credentials in URLs. Each runs against a real local server and a real SQLite file."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import contacts, read_report, write_csv
from test_signals import arrived, cli_env, server, start_cli, wait_for_arrivals

from bulk_events.errors import FileFormatError, JournalBusyError
from bulk_events.journal import Journal, destination_lock_path

__all__ = ["server"]  # the fixture, shared with test_signals

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and locks")


def journal_rows(path: Path) -> dict[str, list[tuple]]:
    """Every row of every table of the journal at ``path`` (read straight with sqlite3)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        tables = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: db.execute(f"SELECT * FROM {t}").fetchall() for t in tables}


def journal_states(path: Path) -> Counter[str]:
    return Counter(r[1] for r in journal_rows(path)["events"])


# -- a journal that is not what it should be -------------------------------------------------


def test_empty_journal_is_refused_not_started_over(api, tmp_path):
    """A 0-byte journal (a full disk, a bad restore) is refused with exit 2 and nothing is sent;
    --fresh moves it aside and starts over."""
    server_, cli = api()
    f = write_csv(tmp_path / "c.csv", contacts(4))
    state = tmp_path / "j.sqlite"
    state.write_bytes(b"")
    args = ["import", f, "--event", "e", "--report", tmp_path / "r.csv", "--state", state]
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "is empty (0 bytes)" in result.output and "--fresh" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert server_.bodies() == []
    assert state.read_bytes() == b""  # left as it was, for the user to look at

    fresh = cli(*args, "--fresh", "--yes")
    assert fresh.exit_code == 0, fresh.output
    assert len(server_.bodies()) == 4
    assert [p.name for p in tmp_path.glob("j.sqlite.*.damaged")]
    assert journal_states(state) == Counter({"sent": 4})


@pytest.mark.parametrize(
    "content", [b"not a database at all\n", b"SQLite format 3\x00" + b"\x00" * 84]
)
def test_a_file_that_is_not_a_journal_is_refused(api, tmp_path, content):
    """Text, or a database cut short after its header, is refused: nothing is sent."""
    server_, cli = api()
    f = write_csv(tmp_path / "c.csv", contacts(2))
    state = tmp_path / "j.sqlite"
    state.write_bytes(content)
    result = cli("import", f, "--event", "e", "--report", tmp_path / "r.csv", "--state", state)
    assert result.exit_code == 2, result.output
    assert "journal" in result.output and "--fresh" in result.output
    assert server_.bodies() == []
    assert state.read_bytes() == content


def test_an_empty_sqlite_database_is_not_an_empty_journal(tmp_path):
    """A SQLite file with no schema (a WAL-less copy of a new journal) is refused, read-only too."""
    path = tmp_path / "j.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE t (a)")
        db.execute("DROP TABLE t")
    assert path.stat().st_size > 0
    for readonly in (False, True):
        with pytest.raises(FileFormatError, match="empty SQLite database"):
            Journal.open(path, readonly=readonly).close()


def test_a_new_journal_is_whole_as_soon_as_it_exists(tmp_path):
    """A new journal appears at its path with its schema committed into the file itself."""
    path = tmp_path / "j.sqlite"
    with Journal.open(path):
        assert path.stat().st_size > 0
        assert {"runs", "events"} <= set(journal_rows(path))
    assert not list(tmp_path.glob(".j.sqlite.*"))  # nothing left beside it


def test_symlinked_journal_takes_the_same_lock(tmp_path):
    """--state through a symlink locks the real file: the second open is busy."""
    real = tmp_path / "j.sqlite"
    alias = tmp_path / "alias.sqlite"
    alias.symlink_to(real)
    with Journal.open(real) as journal:
        with pytest.raises(JournalBusyError, match=str(real)):
            Journal.open(alias)
        assert journal.path == real
    with Journal.open(alias) as again:
        assert again.path == real  # the lock and the file are the real ones


def test_two_journals_for_one_destination_are_never_open_at_once(tmp_path):
    """The destination lock: a second journal for the same destination is busy, naming the
    holder and its journal; another destination is free."""
    with Journal.open(tmp_path / "a.sqlite", destination="api:x/events/name/e"):
        with pytest.raises(JournalBusyError) as caught:
            Journal.open(tmp_path / "b.sqlite", destination="api:x/events/name/e")
        message = str(caught.value)
        assert f"pid {os.getpid()}" in message and str(tmp_path / "a.sqlite") in message
        assert "--wait" in message
        Journal.open(tmp_path / "c.sqlite", destination="api:x/events/name/other").close()
        assert destination_lock_path("api:x/events/name/e").parent.name == "locks"
    Journal.open(tmp_path / "b.sqlite", destination="api:x/events/name/e").close()


def test_second_state_file_for_the_same_event_exits_2_naming_the_holder(server, tmp_path):
    """Two runs to one event with different --state files: the second exits 2 at once, naming
    the first run and its journal; nothing arrives twice."""
    url, record, _ = server()
    write_csv(tmp_path / "c.csv", contacts(60))
    first = start_cli(url, tmp_path, "--rate", "10")
    wait_for_arrivals(record, 3)
    second = subprocess.run(
        [sys.executable, "-m", "bulk_events", "import", str(tmp_path / "c.csv"), "--event", "e",
         "--report", str(tmp_path / "r2.csv"), "--state", str(tmp_path / "other.sqlite")],
        env=cli_env(url), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert first.poll() is None, "the first run ended too soon for the test to mean anything"
    assert second.returncode == 2, second.stderr
    assert "sending to the same destination" in second.stderr
    assert f"pid {first.pid}" in second.stderr and "journal.sqlite" in second.stderr
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    assert max(arrived(record).values()) == 1


def test_journal_deleted_mid_run_stops_and_is_written_back(server, tmp_path):
    """Deleting the journal while a run sends: the run stops (exit 74) saying so, writes the
    journal back from its open copy, and the rerun sends every row exactly once in all."""
    url, record, _ = server()
    write_csv(tmp_path / "c.csv", contacts(80))
    state = tmp_path / "journal.sqlite"
    proc = start_cli(url, tmp_path, "--rate", "20", "--concurrency", "2")
    wait_for_arrivals(record, 10)
    state.unlink()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 74, err
    assert "was deleted during the run" in err and "wrote it back" in err
    assert "Traceback" not in err
    report = Counter(r["status"] for r in read_report(tmp_path / "r.csv"))
    assert report["pending"] > 0 and sum(report.values()) == 80
    assert state.exists()
    assert journal_states(state)["sent"] >= 8  # 10 arrived, 2 of them maybe still unanswered

    rerun = start_cli(url, tmp_path, "--rate", "0")
    _, err = rerun.communicate(timeout=60)
    assert rerun.returncode in (0, 1), err  # 1: a row in flight at the moment it vanished
    once = arrived(record)
    assert max(once.values()) == 1
    unknown = {r["email"] for r in read_report(tmp_path / "r.csv") if r["status"] == "unknown"}
    assert len(unknown) <= 2
    assert set(once) | unknown == {f"user{i}@example.com" for i in range(80)}


def test_journal_replaced_mid_run_stops_and_saves_its_own_copy(server, tmp_path):
    """A journal replaced by another file mid-run: the run stops (exit 74) and saves what it
    recorded beside it, so no row it sent is forgotten."""
    url, record, _ = server()
    write_csv(tmp_path / "c.csv", contacts(80))
    state = tmp_path / "journal.sqlite"
    proc = start_cli(url, tmp_path, "--rate", "20", "--concurrency", "2")
    wait_for_arrivals(record, 10)
    stranger = tmp_path / "stranger.sqlite"
    with Journal.open(stranger):
        pass
    os.replace(stranger, state)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 74, err
    assert "was replaced by another file" in err
    saved = list(tmp_path.glob("journal.sqlite.*.saved"))
    assert len(saved) == 1 and f"saved its own journal as {saved[0]}" in err
    sent_by_run = {r["email"] for r in read_report(tmp_path / "r.csv") if r["status"] == "sent"}
    assert journal_states(saved[0])["sent"] >= len(sent_by_run) - 2
    assert stat.S_IMODE(saved[0].stat().st_mode) == 0o600
    assert sum(arrived(record).values()) >= len(sent_by_run)


def test_wal_is_checkpointed_so_the_sqlite_file_alone_holds_everything(api, tmp_path):
    """After a run the -wal file is gone or empty: a copy of the .sqlite alone knows every row."""
    server_, cli = api()
    f = write_csv(tmp_path / "c.csv", contacts(5))
    state = tmp_path / "j.sqlite"
    assert cli("import", f, "--event", "e", "--report", tmp_path / "r.csv", "--state", state).exit_code == 0
    wal = Path(f"{state}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    copy = tmp_path / "backup" / "j.sqlite"
    copy.parent.mkdir()
    copy.write_bytes(state.read_bytes())  # the main file only, as a naive backup does
    assert journal_states(copy) == Counter({"sent": 5})
    again = cli("import", f, "--event", "e", "--report", tmp_path / "r2.csv", "--state", copy)
    assert again.exit_code == 0
    assert {r["status"] for r in read_report(tmp_path / "r2.csv")} == {"skipped"}
    assert len(server_.bodies()) == 5


# -- secrets in the API address, private sandbox records -----------------------------------------


def test_user_and_password_in_the_api_url_are_refused_and_never_shown(api, tmp_path):
    """SENDPULSE_API_URL=http://user:pw@host: exit 2 before anything is sent, and the password
    is nowhere: not on stderr, not in the journal (any table)."""
    server_, cli = api()
    password = "hunter2-Sekret"
    base = server_.url.replace("http://", f"http://someone:{password}@")
    f = write_csv(tmp_path / "c.csv", contacts(3))
    state = tmp_path / "j.sqlite"
    result = cli(
        "import", f, "--event", "e", "--report", tmp_path / "r.csv", "--state", state, "-vv",
        env={"SENDPULSE_API_URL": base},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "user name or password" in result.output
    assert password not in result.output and "someone" not in result.output
    assert server_.bodies() == []
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    if state.exists():
        assert password not in repr(journal_rows(state))


def test_sandbox_record_is_private(cli, tmp_path):
    """What arrived in a --sandbox rehearsal holds contacts: its file is 0600."""
    f = write_csv(tmp_path / "c.csv", contacts(3))
    result = cli("import", f, "--event", "e", "--sandbox", "--report", tmp_path / "r.csv")
    assert result.exit_code == 0, result.output
    record = tmp_path / "r.sandbox.jsonl"
    assert len(record.read_text().splitlines()) == 3
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
