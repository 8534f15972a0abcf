"""Tests for the run journal: real SQLite files, real second processes, a real SIGKILL."""

from __future__ import annotations

import hashlib
import inspect
import os
import random
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from bulk_events import files
from bulk_events.errors import FileFormatError, JournalBusyError
from bulk_events.journal import (
    SCHEMA_VERSION,
    STATES,
    Journal,
    Mark,
    default_journal_path,
)
from bulk_events.seen import SeenKeys

REPO = Path(__file__).resolve().parent.parent
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
SENT_AT = "2026-11-27T10:15:00Z"


def key(n: int) -> bytes:
    """A distinct 16-byte key for the number ``n``."""
    return n.to_bytes(16, "big")


def mode_of(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite"


@pytest.fixture
def journal(journal_path: Path) -> Iterator[Journal]:
    with Journal.open(journal_path) as j:
        yield j


def child(script: str, *args: str) -> subprocess.Popen[str]:
    """Start a Python child that can import bulk_events from this checkout."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"child did not start: {line!r} {err}")


# -- lifecycle ----------------------------------------------------------------------------------


def test_inflight_becomes_unknown_on_reopen(journal_path: Path) -> None:
    """Keys left inflight are turned into unknown by the next open, which counts them."""
    with Journal.open(journal_path) as j:
        assert j.recovered == 0
        run = j.start_run(input="in.csv", target="sandbox")
        j.write([Mark(key(i), "inflight", row=i + 2, attempts=1) for i in range(5)], run)
        j.write([Mark(key(0), "sent", row=2, attempts=1, http_status=200, sent_at=SENT_AT)], run)
        j.write([Mark(key(1), "failed", row=3, attempts=3, http_status=400, error="bad")], run)
    with Journal.open(journal_path) as j:
        assert j.recovered == 3
        entries = j.lookup([key(i) for i in range(5)])
        assert [entries[key(i)].state for i in range(5)] == [
            "sent",
            "failed",
            "unknown",
            "unknown",
            "unknown",
        ]
        assert entries[key(2)].error  # the report can say why it is unknown
        assert entries[key(1)].error == "bad"
    with Journal.open(journal_path) as j:
        assert j.recovered == 0  # recovery happens once


def test_sent_entry_survives_reopen_with_its_details(journal_path: Path) -> None:
    """A sent key keeps its state, row, run, attempts, status and timestamps across a reopen."""
    with Journal.open(journal_path) as j:
        run = j.start_run(input="in.csv", target="sandbox")
        j.write([Mark(key(7), "inflight", row=9, attempts=1)], run)
        j.write([Mark(key(7), "sent", row=9, attempts=2, http_status=202, sent_at=SENT_AT)], run)
    with Journal.open(journal_path) as j:
        entry = j.lookup([key(7)])[key(7)]
    assert (entry.state, entry.row, entry.run_id, entry.attempts, entry.http_status) == (
        "sent",
        9,
        run,
        2,
        202,
    )
    assert entry.sent_at == SENT_AT
    assert TIMESTAMP.match(entry.updated_at)


def test_lookup_many_keys_across_chunks(journal: Journal) -> None:
    """lookup() finds every one of 1,234 keys (more than one IN chunk) and omits unknown ones."""
    run = journal.start_run(input="in.csv", target="sandbox")
    journal.write([Mark(key(i), "sent", row=i + 2, sent_at=SENT_AT) for i in range(1234)], run)
    asked = [key(i) for i in range(1500)] + [key(3), key(3)]
    found = journal.lookup(asked)
    assert set(found) == {key(i) for i in range(1234)}
    assert all(found[key(i)].row == i + 2 for i in range(1234))
    assert journal.lookup([]) == {}


def test_batch_is_refused_whole_when_it_would_unsend_a_key(journal: Journal) -> None:
    """Moving a sent key to another state raises, and no mark of that batch is kept."""
    run = journal.start_run(input="in.csv", target="sandbox")
    journal.write([Mark(key(1), "sent", row=2, sent_at=SENT_AT)], run)
    with pytest.raises(ValueError, match="sent row is final"):
        journal.write(
            [Mark(key(2), "inflight", row=3), Mark(key(1), "inflight", row=2)],
            run,
        )
    assert journal.lookup([key(1), key(2)]).keys() == {key(1)}
    assert journal.lookup([key(1)])[key(1)].state == "sent"
    journal.write([Mark(key(1), "sent", row=2, sent_at=SENT_AT)], run)  # sent -> sent is fine


def test_batch_longer_than_one_statement_is_refused_whole(journal: Journal) -> None:
    """A batch written in several statements is still one transaction: a refusal in its last
    statement undoes the marks of the first ones too."""
    run = journal.start_run(input="in.csv", target="sandbox")
    journal.write([Mark(key(0), "sent", row=2, sent_at=SENT_AT)], run)
    batch = [Mark(key(i), "inflight", row=i + 2) for i in range(1, 1200)]
    with pytest.raises(ValueError, match=rf"\(key {key(0).hex()}, row 2\): a sent row is final"):
        journal.write([*batch, Mark(key(0), "failed", row=2)], run)
    assert journal.lookup([key(i) for i in range(1200)]).keys() == {key(0)}
    assert journal.lookup([key(0)])[key(0)].state == "sent"


def test_a_refused_batch_names_the_mark_that_unsends_a_key(journal: Journal) -> None:
    """The message names the mark that broke the rule, not one that only the batch itself had
    made sent, whether the batch is one statement or several."""
    run = journal.start_run(input="in.csv", target="sandbox")
    journal.write([Mark(key(0), "sent", row=2, sent_at=SENT_AT)], run)
    filler = [Mark(key(i), "inflight", row=i + 2) for i in range(10, 10 + 600)]
    for middle in ([], filler):
        batch = [
            Mark(key(1), "inflight", row=3),
            Mark(key(1), "sent", row=3, sent_at=SENT_AT),
            *middle,
            Mark(key(0), "failed", row=2),
        ]
        with pytest.raises(ValueError, match=rf"\(key {key(0).hex()}, row 2\)"):
            journal.write(batch, run)
        assert journal.lookup([key(1), key(10)]) == {}
    with pytest.raises(ValueError, match=rf"\(key {key(5).hex()}, row 7\)"):
        journal.write(
            [Mark(key(5), "sent", row=7, sent_at=SENT_AT), Mark(key(5), "unknown", row=7)], run
        )


def test_batches_fit_an_sqlite_that_allows_few_parameters(
    journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Marks and contact history are written in statements within the parameters the SQLite
    at hand allows (999 before SQLite 3.32), not a fixed number of rows each."""
    import bulk_events.journal as journal_module

    real = journal_module.connect

    def few_parameters(database: str, *, uri: bool) -> sqlite3.Connection:
        conn = real(database, uri=uri)
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        return conn

    monkeypatch.setattr(journal_module, "connect", few_parameters)
    with Journal.open(journal_path) as j:
        run = j.start_run(input="in.csv", target="sandbox")
        keys = [key(i) for i in range(1000)]
        j.write([Mark(k, "sent", row=i + 2, sent_at=SENT_AT) for i, k in enumerate(keys)], run)
        j.write([Mark(k, "sent", row=2, sent_at=SENT_AT) for k in keys[:100]], run)
        j.remember_contacts([(k, b"c" + k, b"d") for k in keys])
        assert j.counts()["sent"] == 1000
        found = j.contact_history([b"c" + k for k in keys], run_id=run + 1)
        assert len(found) == 1000


def test_marks_apply_in_order_within_and_across_statements(journal: Journal) -> None:
    """One batch may take a key through several states, in one statement or across two."""
    run = journal.start_run(input="in.csv", target="sandbox")
    filler = [Mark(key(i), "inflight", row=i + 2) for i in range(10, 900)]
    journal.write(
        [
            Mark(key(1), "inflight", row=2),
            Mark(key(1), "sent", row=2, http_status=200, sent_at=SENT_AT),
            Mark(key(2), "inflight", row=3),
            *filler,
            Mark(key(2), "failed", row=3, attempts=2, error="HTTP 500"),
            Mark(key(2), "sent", row=3, attempts=3, http_status=200, sent_at=SENT_AT),
        ],
        run,
    )
    found = journal.lookup([key(1), key(2)])
    assert found[key(1)].state == "sent" and found[key(1)].http_status == 200
    assert (found[key(2)].state, found[key(2)].attempts) == ("sent", 3)
    assert journal.counts()["inflight"] == len(filler)


def test_write_rejects_an_unknown_state(journal: Journal) -> None:
    """A mark with a state outside the lifecycle is refused before anything is written."""
    run = journal.start_run(input="in.csv", target="sandbox")
    with pytest.raises(ValueError, match="unknown journal state"):
        journal.write([Mark(key(1), "inflight", row=2), Mark(key(2), "done", row=3)], run)
    assert journal.lookup([key(1)]) == {}


def test_counts_and_keys_in_state(journal: Journal) -> None:
    """counts() reports every state and keys_in_state() pages through all keys in order."""
    run = journal.start_run(input="in.csv", target="sandbox")
    journal.write([Mark(key(i), "failed", row=i) for i in range(2500)], run)
    journal.write([Mark(key(i), "sent", row=i, sent_at=SENT_AT) for i in range(10)], run)
    assert journal.counts() == {"inflight": 0, "sent": 10, "failed": 2490, "unknown": 0}
    failed = list(journal.keys_in_state("failed"))
    assert failed == [key(i) for i in range(10, 2500)]
    assert list(journal.keys_in_state("unknown")) == []
    with pytest.raises(ValueError):
        journal.keys_in_state("done")


def test_runs_are_recorded(journal_path: Path) -> None:
    """start_run() and finish_run() leave a runs row with pid, times, exit code and counts."""
    with Journal.open(journal_path) as j:
        first = j.start_run(input="in.csv", target="event order_paid", argv_summary="--rate 10")
        j.finish_run(first, {"sent": 3, "failed": 1}, exit_code=1)
        second = j.start_run(input="in.csv", target="event order_paid")
    assert second == first + 1
    with sqlite3.connect(journal_path) as db:
        rows = db.execute(
            "SELECT id, started_at, finished_at, input, target, argv, exit_code, counts_json, pid"
            " FROM runs ORDER BY id"
        ).fetchall()
    assert rows[0][3:] == (
        "in.csv",
        "event order_paid",
        "--rate 10",
        1,
        '{"failed": 1, "sent": 3}',
        os.getpid(),
    )
    assert TIMESTAMP.match(rows[0][1]) and TIMESTAMP.match(rows[0][2])
    assert rows[1][2] is None and rows[1][6] is None  # never finished


def test_database_settings(journal_path: Path) -> None:
    """The file is in WAL mode and carries the schema version for later migrations."""
    Journal.open(journal_path).close()
    with sqlite3.connect(journal_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "events"} <= tables


def test_closed_journal_refuses_use(journal_path: Path) -> None:
    """After close() every operation raises instead of silently reading nothing."""
    j = Journal.open(journal_path)
    j.close()
    j.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        j.lookup([key(1)])
    with pytest.raises(RuntimeError, match="closed"):
        j.write([Mark(key(1), "inflight", row=2)], 1)
    with pytest.raises(RuntimeError, match="closed"):
        j.counts()


# -- files and permissions ----------------------------------------------------------------------


def test_private_permissions_even_with_a_permissive_umask(tmp_path: Path) -> None:
    """New directories are 0700 and the database, -wal, -shm and lock files 0600."""
    path = tmp_path / "state" / "bulk-events" / "j.sqlite"
    old = os.umask(0)
    try:
        with Journal.open(path) as j:
            run = j.start_run(input="in.csv", target="sandbox")
            j.write([Mark(key(1), "inflight", row=2)], run)
            assert Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
            for name in (path, f"{path}-wal", f"{path}-shm", f"{path}.lock"):
                assert mode_of(name) == 0o600, name
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "state") == 0o700
    assert mode_of(tmp_path / "state" / "bulk-events") == 0o700


def test_existing_wider_file_is_narrowed(journal_path: Path) -> None:
    """A journal file created world-readable by something else is made 0600 on open."""
    Journal.open(journal_path).close()
    os.chmod(journal_path, 0o644)
    Journal.open(journal_path).close()
    assert mode_of(journal_path) == 0o600


def test_existing_directory_mode_is_left_alone(tmp_path: Path) -> None:
    """A directory the user already has (e.g. a project folder) keeps its own mode."""
    folder = tmp_path / "project"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    Journal.open(folder / "j.sqlite").close()
    assert mode_of(folder) == 0o755


def test_default_journal_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default path is per user and per destination, and hides the destination identity."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    secret = "url:https://events.sendpulse.com/events/id/0123456789abcdef0123456789abcdef/99"
    path = default_journal_path(secret, "Реєстрація липень")
    assert path.parent == tmp_path / "xdg" / "bulk-events"
    assert re.fullmatch(r"Реєстрація_липень-[0-9a-f]{12}\.sqlite", path.name)
    assert "0123456789abcdef" not in str(path)
    assert default_journal_path(secret, "Реєстрація липень") == path
    assert default_journal_path(secret + "0", "Реєстрація липень") != path

    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")  # invalid per the XDG spec
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    fallback = default_journal_path("t")
    assert fallback.parent == tmp_path / "home" / ".local" / "state" / "bulk-events"


# -- readonly -----------------------------------------------------------------------------------


def test_readonly_missing_file_is_an_empty_journal(journal_path: Path) -> None:
    """A read-only open of a missing journal reads as empty and creates nothing."""
    with Journal.open(journal_path, readonly=True) as j:
        assert j.lookup([key(1)]) == {}
        assert j.counts() == dict.fromkeys(STATES, 0)
        assert list(j.keys_in_state("sent")) == []
        assert j.recovered == 0
        with pytest.raises(RuntimeError, match="read-only"):
            j.start_run(input="in.csv", target="sandbox")
    assert not journal_path.parent.joinpath("journal.sqlite").exists()
    assert list(journal_path.parent.iterdir()) == []


def test_readonly_reads_a_locked_journal_without_recovering(journal_path: Path) -> None:
    """A read-only open works while a run holds the lock, and leaves inflight keys alone."""
    with Journal.open(journal_path) as writer:
        run = writer.start_run(input="in.csv", target="sandbox")
        writer.write([Mark(key(1), "sent", row=2, sent_at=SENT_AT)], run)
        writer.write([Mark(key(2), "inflight", row=3)], run)
        with Journal.open(journal_path, readonly=True) as reader:
            assert reader.recovered == 0
            assert {k: e.state for k, e in reader.lookup([key(1), key(2)]).items()} == {
                key(1): "sent",
                key(2): "inflight",
            }
            with pytest.raises(RuntimeError, match="read-only"):
                reader.write([Mark(key(3), "inflight", row=4)], run)
        writer.write([Mark(key(2), "failed", row=3)], run)  # the writer is undisturbed
        assert writer.counts()["failed"] == 1


# -- damaged files ------------------------------------------------------------------------------


@pytest.mark.parametrize("readonly", [False, True])
def test_corrupt_file_is_a_file_format_error(journal_path: Path, readonly: bool) -> None:
    """A file that is not a database raises FileFormatError with a one-line message naming it."""
    journal_path.write_bytes(b"this is not a database\n" * 300)
    with pytest.raises(FileFormatError) as caught:
        Journal.open(journal_path, readonly=readonly)
    message = str(caught.value)
    assert str(journal_path) in message and "\n" not in message
    # the lock was released: a writable open still gets as far as the same error
    with pytest.raises(FileFormatError):
        Journal.open(journal_path)


def test_foreign_or_newer_database_is_refused(tmp_path: Path) -> None:
    """Another program's SQLite file, or a journal from a newer version, is not touched."""
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(FileFormatError, match="not a bulk-events run journal"):
        Journal.open(foreign)

    newer = tmp_path / "newer.sqlite"
    Journal.open(newer).close()
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(FileFormatError, match="newer bulk-events"):
        Journal.open(newer)
    with pytest.raises(FileFormatError, match="newer bulk-events"):
        Journal.open(newer, readonly=True)


# -- other processes ----------------------------------------------------------------------------

HOLDER = """
    import sys
    from bulk_events.journal import Journal
    j = Journal.open(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    j.close()
"""


def test_second_process_gets_busy_error_and_wait_succeeds(journal_path: Path) -> None:
    """While another process holds the journal, open() names its pid; wait=True gets it after."""
    proc = child(HOLDER, str(journal_path))
    try:
        wait_ready(proc)
        with pytest.raises(JournalBusyError) as caught:
            Journal.open(journal_path)
        message = str(caught.value)
        assert f"pid {proc.pid}, started 20" in message
        assert str(journal_path) in message and "--wait" in message

        opened: list[Journal] = []
        failed: list[BaseException] = []

        def open_waiting() -> None:
            try:
                opened.append(Journal.open(journal_path, wait=True))
            except BaseException as exc:
                failed.append(exc)

        source, first = inspect.getsourcelines(files.lock_file)
        blocking = first + next(
            i for i, line in enumerate(source) if line.strip() == "fcntl.flock(fd, fcntl.LOCK_EX)"
        )
        waiter = threading.Thread(target=open_waiting, daemon=True)
        waiter.start()
        assert waiter.ident is not None
        deadline = time.monotonic() + 30
        # Blocked means: its innermost Python frame is the blocking lock call (flock is C code).
        while (frame := sys._current_frames().get(waiter.ident)) is None or (
            frame.f_code.co_name != "lock_file" or frame.f_lineno != blocking
        ):
            assert waiter.is_alive() and not failed, failed
            assert time.monotonic() < deadline, "the waiter never reached the lock"
            time.sleep(0.01)
        lock_file = Path(f"{journal_path}.lock")
        assert lock_file.read_text().startswith(f"pid {proc.pid} ")  # still the child's
        assert waiter.is_alive() and not opened
        assert proc.stdin is not None
        proc.stdin.write("release\n")
        proc.stdin.flush()
        waiter.join(60)
        assert not failed and len(opened) == 1
        assert lock_file.read_text().startswith(f"pid {os.getpid()} ")  # now ours
        opened[0].close()
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def test_second_open_in_the_same_process_is_busy_too(journal_path: Path) -> None:
    """The lock is per open journal, so even one process cannot open a journal twice."""
    with Journal.open(journal_path), pytest.raises(JournalBusyError, match=f"pid {os.getpid()}"):
        Journal.open(journal_path)
    Journal.open(journal_path).close()  # released on close


KILLED = """
    import sys, time
    from bulk_events.journal import Journal, Mark
    j = Journal.open(sys.argv[1])
    run = j.start_run(input="in.csv", target="sandbox")
    keys = [i.to_bytes(16, "big") for i in range(10)]
    j.write([Mark(k, "inflight", row=i + 2, attempts=1) for i, k in enumerate(keys)], run)
    j.write([Mark(keys[0], "sent", row=2, attempts=1, http_status=200)], run)
    j.write([Mark(keys[1], "failed", row=3, attempts=1, http_status=400)], run)
    print("ready", flush=True)
    time.sleep(120)
"""


def test_sigkilled_run_leaves_unknown_keys(journal_path: Path) -> None:
    """Keys a SIGKILLed process had in flight are unknown for the next run; its commits stay."""
    proc = child(KILLED, str(journal_path))
    try:
        wait_ready(proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with Journal.open(journal_path) as j:  # the kernel released the dead process's lock
        assert j.recovered == 8
        assert j.counts() == {"inflight": 0, "sent": 1, "failed": 1, "unknown": 8}
        assert j.lookup([key(0)])[key(0)].http_status == 200


# -- SeenKeys -----------------------------------------------------------------------------------


def digest_key(n: int) -> bytes:
    """A distinct 16-byte key for ``n``, a digest as event keys are (SeenKeys tells them apart
    by their first bytes)."""
    return hashlib.blake2b(n.to_bytes(8, "big"), digest_size=16).digest()


def test_seen_keys_within_one_batch() -> None:
    """A later occurrence in the same batch gets the row of the first occurrence."""
    with SeenKeys() as seen:
        assert seen.first_rows([digest_key(1), digest_key(2), digest_key(1), digest_key(1), digest_key(3)], [2, 3, 4, 5, 6]) == [
            None,
            None,
            2,
            2,
            None,
        ]


def test_seen_keys_across_batches() -> None:
    """A key claimed in an earlier batch points back to that batch's row."""
    with SeenKeys() as seen:
        assert seen.first_rows([digest_key(1), digest_key(2)], [2, 3]) == [None, None]
        assert seen.first_rows([digest_key(3), digest_key(2), digest_key(3)], [4, 5, 6]) == [None, 3, 4]
        assert seen.first_rows([], []) == []
        assert seen.first_rows([digest_key(1)], [7]) == [2]


@pytest.mark.parametrize("memory_keys", [0, 10_000, 1_000_000])
def test_seen_keys_matches_a_dict_on_a_large_input(memory_keys: int) -> None:
    """Over 30,000 keys with many repeats, in uneven batches, the answer equals a dict's: on
    disk from the start, in memory then spilled to disk mid-run, and in memory throughout."""
    keys = [digest_key((i * 7919) % 12_000) for i in range(30_000)]
    rows = list(range(2, 30_002))
    expected: list[int | None] = []
    first: dict[bytes, int] = {}
    for k, r in zip(keys, rows, strict=True):
        expected.append(first.get(k))
        first.setdefault(k, r)
    got: list[int | None] = []
    # A tiny cache makes SQLite spill to its temp file.
    with SeenKeys(cache_mib=1, memory_keys=memory_keys) as seen:
        for start, stop in ((0, 1), (1, 9_000), (9_000, 25_000), (25_000, 30_000)):
            got += seen.first_rows(keys[start:stop], rows[start:stop])
    assert got == expected


def test_seen_keys_in_memory_equal_those_on_disk_for_random_batches() -> None:
    """Random 16-byte keys (some ending in NUL bytes, which numpy's byte strings would drop),
    a few keys of another size, random batch sizes: memory and disk give the same answers."""
    rnd = random.Random(7)
    pool = [rnd.randbytes(16) for _ in range(300)]
    pool += [k[:10] + b"\0" * 6 for k in pool[:20]] + [k[:15] + b"\0" for k in pool[:20]]
    pool += [b"short", b"", b"x" * 40]
    with SeenKeys(memory_keys=0) as disk, SeenKeys() as memory, SeenKeys(memory_keys=700) as both:
        row = 2
        for batch in range(60):
            n = rnd.randrange(0, 40)
            odd = batch >= 40  # keys of another size only late: memory holds the rest first
            keys = [rnd.choice(pool if odd and rnd.random() < 0.1 else pool[:-3]) for _ in range(n)]
            rows = list(range(row, row + n))
            row += n
            expected = disk.first_rows(keys, rows)
            assert memory.first_rows(keys, rows) == expected
            assert both.first_rows(keys, rows) == expected
            assert all(f is None or type(f) is int for f in expected)


def test_seen_keys_rejects_misuse() -> None:
    """Mismatched lengths raise, and a closed SeenKeys cannot be used."""
    seen = SeenKeys()
    with pytest.raises(ValueError):
        seen.first_rows([digest_key(1)], [])
    seen.close()
    seen.close()
    with pytest.raises(RuntimeError):
        seen.first_rows([digest_key(1)], [2])


# -- model-based --------------------------------------------------------------------------------

MODEL_KEYS = [digest_key(i) for i in range(6)]


class JournalMachine(RuleBasedStateMachine):
    """Drives a real journal file through sends, answers, crashes and resumes, against a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.mkdtemp(prefix="journal-model-")
        self.path = Path(self.folder) / "journal.sqlite"
        self.journal = Journal.open(self.path)
        self.run_id = self.journal.start_run(input="in.csv", target="sandbox")
        self.model: dict[bytes, str] = {}
        self.attempts: Counter[bytes] = Counter()
        self.succeeded: set[bytes] = set()

    def keys_in(self, *states: str | None) -> list[bytes]:
        return [k for k in MODEL_KEYS if self.model.get(k) in states]

    def record(self, keys: list[bytes], state: str, **fields: object) -> None:
        marks = [
            Mark(k, state, row=MODEL_KEYS.index(k) + 2, attempts=self.attempts[k], **fields)  # type: ignore[arg-type]
            for k in keys
        ]
        self.journal.write(marks, self.run_id)
        for k in keys:
            self.model[k] = state

    def reopen(self) -> None:
        inflight = self.keys_in("inflight")
        self.journal = Journal.open(self.path)
        assert self.journal.recovered == len(inflight)
        for k in inflight:
            self.model[k] = "unknown"
        assert list(self.journal.keys_in_state("inflight")) == []
        self.run_id = self.journal.start_run(input="in.csv", target="sandbox")

    @precondition(lambda self: self.keys_in(None, "failed", "unknown"))
    @rule(data=st.data())
    def send_start(self, data: st.DataObject) -> None:
        keys = data.draw(
            st.lists(
                st.sampled_from(self.keys_in(None, "failed", "unknown")), min_size=1, unique=True
            )
        )
        for k in keys:
            self.attempts[k] += 1
        self.record(keys, "inflight")

    @precondition(lambda self: self.keys_in("inflight"))
    @rule(data=st.data())
    def success(self, data: st.DataObject) -> None:
        keys = data.draw(
            st.lists(st.sampled_from(self.keys_in("inflight")), min_size=1, unique=True)
        )
        self.record(keys, "sent", http_status=200, sent_at=SENT_AT)
        self.succeeded.update(keys)

    @precondition(lambda self: self.keys_in("inflight"))
    @rule(data=st.data())
    def failure(self, data: st.DataObject) -> None:
        k = data.draw(st.sampled_from(self.keys_in("inflight")))
        self.record([k], "failed", http_status=400, error="rejected")

    @precondition(lambda self: self.keys_in("inflight"))
    @rule(data=st.data())
    def no_answer(self, data: st.DataObject) -> None:
        k = data.draw(st.sampled_from(self.keys_in("inflight")))
        self.record([k], "unknown", error="timed out")

    @precondition(lambda self: self.keys_in("sent"))
    @rule(data=st.data())
    def resend_is_refused(self, data: st.DataObject) -> None:
        k = data.draw(st.sampled_from(self.keys_in("sent")))
        with pytest.raises(ValueError):
            self.journal.write([Mark(k, "inflight", row=0)], self.run_id)

    @rule()
    def crash(self) -> None:
        self.journal.close()  # no finish_run, keys possibly still in flight
        self.reopen()

    @precondition(lambda self: not self.keys_in("inflight"))
    @rule()
    def resume(self) -> None:
        self.journal.finish_run(self.run_id, self.journal.counts(), exit_code=0)
        self.journal.close()
        self.reopen()

    @invariant()
    def nothing_lost(self) -> None:
        entries = self.journal.lookup(MODEL_KEYS)
        assert {k: e.state for k, e in entries.items()} == self.model
        for k, e in entries.items():
            assert e.attempts == self.attempts[k]

    @invariant()
    def sent_only_after_success(self) -> None:
        assert set(self.journal.keys_in_state("sent")) <= self.succeeded

    @invariant()
    def counts_match_the_model(self) -> None:
        expected = dict.fromkeys(STATES, 0) | Counter(self.model.values())
        assert self.journal.counts() == expected

    def teardown(self) -> None:
        self.journal.close()
        shutil.rmtree(self.folder, ignore_errors=True)


JournalMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestJournalModel = JournalMachine.TestCase


def test_seen_keys_keep_rows_past_four_billion() -> None:
    """Rows are held in 4 bytes in memory: a larger row number moves the keys to disk, whole."""
    with SeenKeys() as seen:
        assert seen.first_rows([digest_key(1)], [3]) == [None]
        assert seen.first_rows([digest_key(2)], [2**32 + 5]) == [None]
        assert seen.first_rows([digest_key(2), digest_key(1)], [9, 10]) == [2**32 + 5, 3]
