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
    # Held still (not killed: it keeps its lock and stays alive) while the second one starts,
    # so however slow the machine, the first run cannot finish before the second asks.
    first.send_signal(signal.SIGSTOP)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "bulk_events", "import", str(tmp_path / "c.csv"), "--event",
             "e", "--report", str(tmp_path / "r2.csv"), "--state", str(tmp_path / "other.sqlite")],
            env=cli_env(url), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert first.poll() is None, "the first run ended too soon for the test to mean anything"
    finally:
        first.send_signal(signal.SIGCONT)
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


# -- full disks and stages that fail ---------------------------------------------------------


def _run(path: Path, **settings):
    from bulk_events.importer import Import, run_sync

    run = Import(path, **settings)
    return run_sync(run.run())


def _sandbox_env(monkeypatch, live):
    server_ = live()
    monkeypatch.setenv("SENDPULSE_API_URL", server_.url)
    monkeypatch.setenv("SENDPULSE_CLIENT_ID", server_.box.client_id)
    monkeypatch.setenv("SENDPULSE_CLIENT_SECRET", server_.box.client_secret)
    return server_


def test_full_report_disk_stops_the_run_and_says_where_the_journal_stands(
    live, tmp_path, monkeypatch
):
    """ENOSPC while writing the report (second chunk): the run ends by itself with exit 74, no
    half report, and a message saying what was sent and that the journal has it all; the rerun
    completes the job without a duplicate."""
    import errno

    from bulk_events.report import ReportWriter

    server_ = _sandbox_env(monkeypatch, live)
    f = write_csv(tmp_path / "c.csv", contacts(20))
    state, report = tmp_path / "j.sqlite", tmp_path / "r.csv"
    real_write = ReportWriter.write
    calls = []

    def full_disk(self, *args, **kwargs):
        calls.append(1)
        if len(calls) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(ReportWriter, "write", full_disk)
    settings = dict(event="e", report=report, state=state, rate=0, concurrency=1, chunk_rows=5)
    result = _run(f, **settings)
    assert result.exit_code == 74
    assert result.report_path is None and not report.exists()
    assert not list(tmp_path.glob(".r.csv.*"))  # no temporary report left behind
    assert "cannot write the report" in result.stopped and "No space left" in result.stopped
    sent = result.counts["sent"]
    assert f"this run sent {sent} rows" in result.stopped
    assert "records every outcome" in result.stopped
    assert sent == len(server_.bodies()) >= 5
    assert journal_states(state) == Counter({"sent": sent})

    monkeypatch.setattr(ReportWriter, "write", real_write)
    again = _run(f, **settings)
    assert again.exit_code == 0
    assert Counter(b["email"] for b in server_.bodies()) == Counter(
        {f"user{i}@example.com": 1 for i in range(20)}
    )
    assert Counter(r["status"] for r in read_report(report)) == Counter(
        {"skipped": sent, "sent": 20 - sent}
    )


def test_full_journal_disk_after_rows_were_sent_is_not_nothing_was_sent(
    live, tmp_path, monkeypatch
):
    """The journal's disk fills mid-run (injected at commit): exit 74, not 2; the report lists
    what was sent; the row whose answer could not be recorded is unknown next run, not resent."""
    import bulk_events.journal as journal_module
    from bulk_events import journaldb

    server_ = _sandbox_env(monkeypatch, live)
    f = write_csv(tmp_path / "c.csv", contacts(20))
    state, report = tmp_path / "j.sqlite", tmp_path / "r.csv"
    settings = dict(event="e", report=report, state=state, rate=0, concurrency=1)
    real = journal_module.transaction
    commits = []

    @contextlib.contextmanager
    def filling(conn, begin="BEGIN IMMEDIATE"):
        # Only the journal's disk fills (the in-file duplicate set is a scratch file elsewhere).
        is_journal = any(r[2] == str(state) for r in conn.execute("PRAGMA database_list"))
        commits.append(is_journal)
        if is_journal and commits.count(True) > 12:
            raise sqlite3.OperationalError("database or disk is full")
        with real(conn, begin):
            yield

    monkeypatch.setattr(journal_module, "transaction", filling)
    monkeypatch.setattr(journaldb, "transaction", filling)  # the schema's own commits
    result = _run(f, **settings)
    assert result.exit_code == 74
    assert "database or disk is full" in result.stopped
    sent = result.counts["sent"]
    arrived_now = Counter(b["email"] for b in server_.bodies())
    assert sent == sum(arrived_now.values()) >= 3
    assert f"this run sent {sent} rows, listed in the report" in result.stopped
    rows = read_report(report)
    assert Counter(r["status"] for r in rows) == Counter({"sent": sent, "pending": 20 - sent})
    states = journal_states(state)
    assert states["inflight"] <= 1 and states["sent"] + states["inflight"] == sent

    monkeypatch.setattr(journal_module, "transaction", real)
    monkeypatch.setattr(journaldb, "transaction", real)
    again = _run(f, **settings)
    assert again.exit_code == (1 if states["inflight"] else 0)
    final = Counter(b["email"] for b in server_.bodies())
    assert max(final.values()) == 1
    assert len(final) == 20 - states["inflight"]


def _small_disk(tmp_path: Path, free: int) -> Path:
    """A 200 KB tmpfs with about ``free`` bytes left, or skip when mounting is not allowed."""
    where = tmp_path / "small"
    where.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(where)],
            capture_output=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("cannot mount a tmpfs here")
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    fill_to(where, free)
    return where


def fill_to(where: Path, free: int) -> None:
    """Add a filler file so that about ``free`` bytes are left on ``where``'s file system."""
    vfs = os.statvfs(where)
    filler = vfs.f_bavail * vfs.f_frsize - free
    with open(where / f"filler{len(list(where.glob('filler*')))}", "wb") as f:
        f.write(b"\0" * max(filler, 0))


@pytest.fixture
def small_disk(tmp_path):
    made: list[Path] = []

    def make(free: int) -> Path:
        made.append(tmp_path / "small")
        return _small_disk(tmp_path, free)

    yield make
    for where in made:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def test_real_full_disk_under_the_journal(server, tmp_path, small_disk):
    """A real full file system under the journal: the run ends by itself (exit 74) with the
    report written elsewhere; nothing arrives twice, even after the rerun."""
    url, record, _ = server(latency=0.0)
    disk = small_disk(200 * 1024)
    Journal.open(disk / "j.sqlite").close()  # made while there was room
    fill_to(disk, 56 * 1024)  # room for the -shm index (32 KB) and a few commits
    write_csv(tmp_path / "c.csv", contacts(300))
    args = [
        sys.executable, "-m", "bulk_events", "import", str(tmp_path / "c.csv"), "--event", "e",
        "--report", str(tmp_path / "r.csv"), "--state", str(disk / "j.sqlite"), "--rate", "0",
    ]  # fmt: skip
    done = subprocess.run(args, env=cli_env(url), capture_output=True, text=True, timeout=120)
    assert done.returncode == 74, done.stderr
    assert "full" in done.stderr and "Traceback" not in done.stderr
    rows = read_report(tmp_path / "r.csv")
    sent = {r["email"] for r in rows if r["status"] == "sent"}
    once = arrived(record)
    assert all(n == 1 for n in once.values()) and set(once) == sent
    # The rerun, on a disk with room: the journal moved there with its -wal, as the README says.
    moved = tmp_path / "j.sqlite"
    for suffix in ("", "-wal"):
        if Path(f"{disk / 'j.sqlite'}{suffix}").exists():
            Path(f"{moved}{suffix}").write_bytes(Path(f"{disk / 'j.sqlite'}{suffix}").read_bytes())
    args[args.index(str(disk / "j.sqlite"))] = str(moved)
    again = subprocess.run(args, env=cli_env(url), capture_output=True, text=True, timeout=120)
    assert again.returncode in (0, 1), again.stderr
    final = arrived(record)
    assert max(final.values()) == 1
    unknown = {r["email"] for r in read_report(tmp_path / "r.csv") if r["status"] == "unknown"}
    assert len(unknown) <= 10  # at most --concurrency rows were on their way when it filled
    assert set(final) | unknown == {f"user{i}@example.com" for i in range(300)}


def test_real_full_disk_under_the_report(server, tmp_path, small_disk):
    """A real full file system under the report (one chunk): exit 74 by itself, no half report,
    and the journal has every outcome, so the rerun sends nothing twice."""
    url, record, _ = server(latency=0.0)
    disk = small_disk(16 * 1024)
    write_csv(tmp_path / "c.csv", contacts(300, note="x" * 200))
    args = [
        sys.executable, "-m", "bulk_events", "import", str(tmp_path / "c.csv"), "--event", "e",
        "--report", str(disk / "r.csv"), "--state", str(tmp_path / "j.sqlite"), "--rate", "0",
    ]  # fmt: skip
    done = subprocess.run(args, env=cli_env(url), capture_output=True, text=True, timeout=120)
    assert done.returncode == 74, done.stderr
    assert "cannot write the report" in done.stderr and "records every outcome" in done.stderr
    assert "report: not written" in done.stderr
    assert not (disk / "r.csv").exists() and not list(disk.glob(".r.csv.*"))
    sent = sum(arrived(record).values())
    assert journal_states(tmp_path / "j.sqlite") == Counter({"sent": sent})
    for filler in disk.glob("filler*"):
        filler.unlink()
    again = subprocess.run(args, env=cli_env(url), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert arrived(record) == Counter({f"user{i}@example.com": 1 for i in range(300)})


# -- requests that could not be made --------------------------------------------------------


async def test_request_that_could_not_be_made_is_failed_not_unknown(tmp_path):
    """A token that turns into one with CR/LF mid-run: aiohttp refuses the header before writing
    a byte, so the row is `failed` (never `unknown`), the run stops with a report, and the rerun
    sends it and the rest."""
    from bulk_events.importer import Import
    from bulk_events.sandbox import Sandbox
    from bulk_events.transport.http import ApiTransport

    box = Sandbox(latency=0.0)
    base = await box.start()

    class Corrupting(ApiTransport):
        sends = 0

        async def send(self, body):
            self.sends += 1
            if self.sends > 5:
                self.token.value = "tok\r\nX-Injected: 1"
            return await super().send(body)

    f = write_csv(tmp_path / "c.csv", contacts(20))
    state, report = tmp_path / "j.sqlite", tmp_path / "r.csv"
    settings = dict(event="e", report=report, state=state, rate=0, concurrency=1)
    try:
        bad = Corrupting(base, box.client_id, box.client_secret, "e", concurrency=1)
        result = await Import(f, transport=bad, **settings).run()
        assert result.exit_code == 1
        assert "could not be made" in result.stopped
        rows = read_report(report)
        assert Counter(r["status"] for r in rows) == Counter(
            {"sent": 5, "failed": 1, "pending": 14}
        )
        failed = next(r for r in rows if r["status"] == "failed")
        assert "not sent" in failed["error"] and "could not be made" in failed["error"]
        assert journal_states(state) == Counter({"sent": 5, "failed": 1})
        assert box.accepted_count == 5

        good = ApiTransport(base, box.client_id, box.client_secret, "e", concurrency=1)
        again = await Import(f, transport=good, **settings).run()
        assert again.exit_code == 0
        assert Counter(a.body["email"] for a in box.accepted) == Counter(
            {f"user{i}@example.com": 1 for i in range(20)}
        )
    finally:
        await box.stop()


async def test_token_endpoint_redirect_or_unusable_token_is_a_setting_to_fix(aiohttp_server):
    """A token endpoint that redirects, or gives a token with a line break: exit 2, the secret
    not followed elsewhere, nothing sent."""
    from aiohttp import web

    from bulk_events.errors import CredentialsError
    from bulk_events.transport.http import ApiTransport

    events = []

    async def redirect(request):
        raise web.HTTPFound("http://elsewhere.invalid/oauth/access_token")

    async def bad_token(request):
        return web.json_response({"access_token": "abc\r\nX-Evil: 1", "expires_in": 3600})

    async def event(request):
        events.append(1)
        return web.json_response({"result": True})

    for handler, words in ((redirect, "HTTP 302 (a redirect)"), (bad_token, "line break")):
        app = web.Application()
        app.router.add_post("/oauth/access_token", handler)
        app.router.add_post("/events/name/{name}", event)
        srv = await aiohttp_server(app)
        transport = ApiTransport(str(srv.make_url("")), "id", "secret-0123456789", "e")
        with pytest.raises(CredentialsError) as caught:
            await transport.open()
        assert caught.value.exit_code == 2 and words in str(caught.value)
        await srv.close()
    assert events == []


# -- input that changes while it is read, very wide files -------------------------------------


def test_a_csv_that_grows_while_read_stops_before_its_partial_line_is_sent(
    live, tmp_path, monkeypatch
):
    """A file still being written: once its size moves, the run stops (exit 2) before the next
    chunk is handed on, so the half-written last line never goes out."""
    from bulk_events.events import Progress
    from bulk_events.importer import Import, run_sync

    server_ = _sandbox_env(monkeypatch, live)
    f = write_csv(tmp_path / "c.csv", contacts(60))
    grown: list[bool] = []

    def on_event(event):
        if isinstance(event, Progress) and not grown:
            grown.append(True)
            with open(f, "a") as out:
                out.write("user40242.r@example.co")  # a writer caught mid-line, no newline

    run = Import(
        f, on_event=on_event, event="e", report=tmp_path / "r.csv", state=tmp_path / "j.sqlite",
        rate=0, concurrency=1, chunk_rows=5,
    )  # fmt: skip
    result = run_sync(run.run())
    assert grown and result.exit_code == 2
    assert "c.csv changed while it was read" in result.stopped and "size went" in result.stopped
    sent = Counter(b["email"] for b in server_.bodies())
    assert "user40242.r@example.co" not in sent
    assert set(sent) <= {f"user{i}@example.com" for i in range(60)} and max(sent.values()) == 1
    assert 0 < len(sent) < 60
    rows = read_report(tmp_path / "r.csv")
    assert all(r["email"] != "user40242.r@example.co" for r in rows)
    assert {r["email"] for r in rows if r["status"] == "sent"} == set(sent)


@pytest.mark.parametrize("change", ["shrink", "touch"])
def test_a_csv_cut_or_rewritten_while_read_is_noticed(tmp_path, change):
    """A file cut short, or rewritten at the same size, after it was opened: the reader refuses
    to hand on another chunk."""
    from bulk_events.errors import FileFormatError
    from bulk_events.reader import open_table

    f = write_csv(tmp_path / "c.csv", contacts(50))
    table = open_table(f)
    try:
        if change == "shrink":
            os.truncate(f, f.stat().st_size - 7)
        else:
            st = f.stat()
            os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        with pytest.raises(FileFormatError, match="changed while it was read"):
            list(table.chunks(10))
    finally:
        table.close()


def test_a_very_wide_file_is_refused_early(cli, tmp_path):
    """100,000 columns: refused at the header with the documented limit (exit 2), not read."""
    header = ["email", *(f"c{i}" for i in range(100_000))]
    f = write_csv(tmp_path / "wide.csv", [header, ["a@example.com", *("x" * 100_000)]])
    result = cli("import", f, "--event", "e", "--dry-run")
    assert result.exit_code == 2, result.output
    assert "100,001 columns" in result.output and "at most 2,000" in result.output
