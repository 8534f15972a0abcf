"""Checking chunks in a worker process (CheckPool) decides every row exactly as checking them in
the main process does: the same report bytes, counts and samples; the worker ends with the run."""

from __future__ import annotations

import contextlib
import os
import random
import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import small_checker, write_csv
from hypothesis import given
from hypothesis import strategies as st

from bulk_events.checker import CheckerGone, CheckPool
from bulk_events.events import Progress
from bulk_events.importer import Import, run_sync


def _rows(n: int, seed: int = 3) -> list[list[Any]]:
    """Contacts with what a real file has: bad emails and phones, repeats, rows of spaces,
    dates in two shapes, numbers, formula-like text, an event per row."""
    rnd = random.Random(seed)
    rows: list[list[Any]] = [["Email", "Phone", "Name", "Date", "Amount", "Event"]]
    for i in range(n):
        email = f" User{i % 170}@Example.com " if rnd.random() > 0.05 else f"user{i}@bad"
        phone = rnd.choice(["+380 50 123 45 67", "12345", "", f"+38067{i:07d}"])
        name = rnd.choice(["Ann", "=HYPERLINK(1)", 'say "hi"', "a,b", ""])
        date = rnd.choice(["2021-05-28", "28.05.2021", "soon", ""])
        amount = rnd.choice(["12.50", "x", "", "-5"])
        event = rnd.choice(["signup", "purchase", ""])
        rows.append(
            [email, phone, name, date, amount, event] if i % 50 or not i else list(rows[1 + i // 2])
        )
        if i % 97 == 0:
            rows.append(["  ", " ", "", "", "", ""])  # looks blank in a spreadsheet
    return rows


def _import(path: Path, report: Path, parallel: bool, **settings: Any) -> Import:
    """A dry run of ``path`` in chunks of 64 rows, with its report and a journal of its own."""
    return Import(
        path,
        dry_run=True,
        report=str(report),
        state=str(report.with_suffix(".sqlite")),
        chunk_rows=64,
        parallel=parallel,
        **settings,
    )


def _run(path: Path, report: Path, parallel: bool, **settings: Any) -> tuple[Any, list[Any]]:
    run = _import(
        path, report, parallel, samples=50, types={"Date": "date", "Amount": "number"}, **settings
    )
    return run_sync(run.run()), run.samples


@pytest.mark.parametrize(
    "settings",
    [
        {"event": "e"},
        {"event": "e", "allow_duplicates": True},
        {"event": "e", "key": ("Email",)},
        {"event_column": "Event"},
    ],
    ids=["plain", "duplicates", "key", "event-column"],
)
@pytest.mark.parametrize("workers", [1, 2])
def test_worker_process_decides_every_row_as_the_main_process(
    tmp_path, settings, workers, monkeypatch
):
    """Reports (byte for byte), counts, reasons and sample bodies agree, chunk after chunk,
    with one worker process or two taking the chunks in turn."""
    import functools

    from bulk_events import importer

    monkeypatch.setattr(importer, "CheckPool", functools.partial(CheckPool, workers=workers))
    path = write_csv(tmp_path / "c.csv", _rows(700))
    here, here_samples = _run(path, tmp_path / "here.csv", False, **settings)
    there, there_samples = _run(path, tmp_path / "there.csv", True, **settings)
    assert (tmp_path / "there.csv").read_bytes() == (tmp_path / "here.csv").read_bytes()
    assert there.counts == here.counts and there.exit_code == here.exit_code
    assert there.reasons == here.reasons and there.per_event == here.per_event
    assert there.without_automation_id == here.without_automation_id
    assert there.national_phones == here.national_phones
    assert there_samples == here_samples
    assert here.counts["invalid"] and here.counts["valid"] and sum(here.counts.values()) == 700


def test_a_send_checked_in_a_worker_keeps_the_contact_history_of_one_checked_here(tmp_path):
    """A send whose chunks a worker checks records the same contact history (each sent row's
    key, contact and cell digests) as one that checks them here, row for row."""
    import sqlite3

    path = write_csv(tmp_path / "c.csv", _rows(300))
    history = {}
    for parallel in (False, True):
        state = tmp_path / f"{parallel}.sqlite"
        run = Import(
            path,
            event="e",
            sandbox=True,
            report=str(tmp_path / f"{parallel}.csv"),
            state=str(state),
            chunk_rows=64,
            parallel=parallel,
            types={"Date": "date", "Amount": "number"},
        )
        result = run_sync(run.run())
        assert result.counts["sent"] > 100
        with contextlib.closing(sqlite3.connect(state)) as db:
            history[parallel] = db.execute(
                "SELECT key, contact, digests FROM contacts ORDER BY key"
            ).fetchall()
    assert len(history[True]) > 100 and history[True] == history[False]


async def test_pool_answers_in_order_and_its_process_ends_on_close():
    """Results come back per chunk in the order sent; close() leaves no process behind."""
    checker, chunk = small_checker()
    pool = CheckPool(checker)
    try:
        futures = [pool.submit(chunk.iloc[k:]) for k in range(3)]
        results = [await pool.result(f) for f in futures]
    finally:
        pool.close()
    assert [len(r.bodies) for r in results] == [3, 2, 1]
    assert results[0].bodies[0] == {"email": "a@b.co", "name": "A"}
    assert results[0].keys == checker.check(chunk).keys
    assert 3 in results[0].errors and results[0].sent_as[2] == ("c@d.co", None, "e")
    assert all(w.proc.returncode is not None for w in pool._workers)
    pool.close()  # twice is fine


async def test_a_caller_kept_waiting_gets_a_second_worker(monkeypatch):
    """Awaiting each result as soon as its chunk is sent (checking is the slow part): after the
    first result and two more, the pool has two workers; chunks then go to them in turn and
    every result is still the one of its own chunk, in order."""
    from bulk_events import checker as module

    monkeypatch.setattr(module, "_cores", lambda: 4)
    checker, chunk = small_checker()
    before = _children()
    with CheckPool(checker) as pool:
        sizes = []
        for k in range(8):
            part = chunk.iloc[k % 3 :]
            sizes.append(len((await pool.result(pool.submit(part))).bodies))
        grown = pool.workers
        assert len(_children() - before) == 2
        # In turn: with the first worker gone, every other chunk fails, the others are checked.
        first = pool._workers[0].proc
        first.kill()
        first.wait()
        answers = []
        for future in [pool.submit(chunk) for _ in range(4)]:
            try:
                answers.append(len((await pool.result(future)).bodies))
            except CheckerGone:
                answers.append(None)
        # Once it is known to be gone, every chunk goes to the worker left.
        left = pool.workers
        after = [len((await pool.result(pool.submit(chunk))).bodies) for _ in range(3)]
    assert grown == 2 == CheckPool.MOST
    assert sizes == [3 - k % 3 for k in range(8)]
    assert answers in ([None, 3, None, 3], [3, None, 3, None])
    assert left == 1 and after == [3, 3, 3]
    assert _children() <= before


async def test_a_caller_never_kept_waiting_keeps_one_worker(monkeypatch):
    """Results that are ready when asked for (the run is busy sending): no second process."""
    import concurrent.futures

    from bulk_events import checker as module

    monkeypatch.setattr(module, "_cores", lambda: 4)
    checker, chunk = small_checker()
    with CheckPool(checker) as pool:
        for _ in range(8):
            future = pool.submit(chunk)
            concurrent.futures.wait([future])
            assert len((await pool.result(future)).bodies) == 3
        assert pool.workers == 1


async def test_a_bug_in_the_worker_fails_that_chunk_with_its_reason():
    """A chunk the worker cannot check raises, in the main process, the worker's error."""
    checker, chunk = small_checker()
    with CheckPool(checker) as pool:
        broken = pool.submit(chunk.set_axis(["x", "y", "z"]))  # rows not numbered
        with pytest.raises(RuntimeError, match="ValueError"):
            await pool.result(broken)
        fine = await pool.result(pool.submit(chunk))  # the next chunk still works
    assert len(fine.bodies) == 3


def _children(pid: int | None = None) -> set[int]:
    """A process's child processes, this one's by default (Linux: listed per thread)."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid or os.getpid()}/task").iterdir():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (task / "children").read_text().split())
    return found


def _checking() -> set[int]:
    """The processes checking chunks for this one: its children started afresh, and those of
    a spawner of its own (which are forked from it)."""
    found: set[int] = set()
    for pid in _children():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        found |= _children(pid) if b"bulk_events.spawner" in command else {pid}
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="Linux /proc")
def test_a_stop_mid_run_leaves_rows_pending_and_no_worker_behind(tmp_path):
    """Ctrl-C while chunks are being checked elsewhere: the rows not decided are pending (exit
    130, as without the worker), and the worker process is gone when the run returns."""
    path = write_csv(tmp_path / "c.csv", _rows(2000))
    before = _children()
    run: Import

    def stop_once(event: Any) -> None:
        if isinstance(event, Progress) and run.stopper.signal is None:
            run.request_stop(signal.SIGINT)

    run = _import(path, tmp_path / "r.csv", True, on_event=stop_once, event="e")
    result = run_sync(run.run())
    assert result.exit_code == 130
    # Rows after the stop are listed unchecked: rows of spaces among them too.
    assert result.counts["pending"] > 1000 and sum(result.counts.values()) >= 2000
    assert _children() <= before


@given(st.lists(st.text(alphabet="+0123 ", max_size=13), max_size=30))
def test_national_phone_test_in_one_pass_equals_the_column_expression(phones):
    """looks_national's one-pass form agrees with the vectorised expression it replaces."""
    from bulk_events.phones import looks_national

    s = pd.Series(phones, dtype=object, index=pd.RangeIndex(2, 2 + len(phones)))
    digits = s.str.len()
    expected = (s != "") & ~s.str.startswith("+") & (s.str.startswith("0") | (digits <= 10))
    assert looks_national(s).tolist() == expected.astype(bool).tolist()


def test_valid_outcome_is_the_dataclass_made_the_usual_way():
    """The fast maker of a dry run's valid outcomes gives exactly Outcome(row, VALID)."""
    from dataclasses import FrozenInstanceError

    from bulk_events.outcome import Outcome, Status, valid

    made = valid(42)
    assert made == Outcome(42, Status.VALID) and hash(made) == hash(Outcome(42, Status.VALID))
    assert repr(made) == repr(Outcome(42, Status.VALID))
    with pytest.raises(FrozenInstanceError):
        made.row = 1  # type: ignore[misc]


_EMAIL_CHARS = st.sampled_from([*"ab.z09_%+-@", "xn--", "é", "A", " ", "..", "\n", "ß"])


@given(st.lists(_EMAIL_CHARS, max_size=30).map("".join))
def test_every_plain_email_is_an_email(text):
    """The quick pattern tried first accepts only what the full email pattern accepts."""
    import re

    from bulk_events.cells import EMAIL_PATTERN, PLAIN_EMAIL_PATTERN

    if re.fullmatch(PLAIN_EMAIL_PATTERN, text):
        assert re.fullmatch(EMAIL_PATTERN, text)


@given(
    st.lists(st.integers(0, 70), min_size=1, max_size=4),
    st.integers(1, 70),
    st.integers(2, 70),
)
def test_plain_email_lengths_stay_within_the_full_pattern(labels, local, tld):
    """Long local parts, labels and domains: the quick pattern is never the laxer one."""
    import re

    from bulk_events.cells import EMAIL_PATTERN, PLAIN_EMAIL_PATTERN

    domain = ".".join("d" * max(n, 1) for n in labels) + "." + "c" * tld
    text = "u" * local + "@" + domain
    if re.fullmatch(PLAIN_EMAIL_PATTERN, text):
        assert re.fullmatch(EMAIL_PATTERN, text)
    if re.fullmatch(EMAIL_PATTERN, text) and len(domain) <= 253 and tld <= 63 and local <= 64:
        assert max(labels) > 63 or re.fullmatch(PLAIN_EMAIL_PATTERN, text)


def _run_killing(tmp_path: Path, choose: Any) -> list[int]:
    """A parallel dry run that kills the worker processes ``choose(pids)`` picks as its first
    row is decided; the report must be the one a run without workers writes. The pids killed."""
    path = write_csv(tmp_path / "c.csv", _rows(1500))
    _run(path, tmp_path / "here.csv", False, event="e")
    before = _checking()
    killed: list[int] = []

    def kill(event: Any) -> None:
        if isinstance(event, Progress) and not killed:
            for pid in choose(_checking() - before):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    run = _import(
        path,
        tmp_path / "there.csv",
        True,
        on_event=kill,
        event="e",
        types={"Date": "date", "Amount": "number"},
    )
    result = run_sync(run.run())
    assert (tmp_path / "there.csv").read_bytes() == (tmp_path / "here.csv").read_bytes()
    assert result.exit_code == 1 and not result.stopped
    return killed


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="Linux /proc")
def test_a_worker_killed_mid_run_leaves_its_chunks_to_the_main_process(tmp_path):
    """The worker process dies (the OOM killer, an operator): the run checks the chunks itself
    from then on, and the report is the one a run without a worker writes."""
    assert _run_killing(tmp_path, sorted)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="Linux /proc")
def test_one_of_two_workers_killed_leaves_the_other_checking(tmp_path, monkeypatch, caplog):
    """One of two worker processes dies mid-run: its chunks are checked here, the other worker
    goes on with the rest, and the report is the one a run without workers writes."""
    import functools
    import logging

    from bulk_events import importer

    monkeypatch.setattr(importer, "CheckPool", functools.partial(CheckPool, workers=2))
    caplog.set_level(logging.DEBUG, logger="bulk_events.pipeline")
    assert len(_run_killing(tmp_path, lambda pids: [min(pids)])) == 1
    said = [r.getMessage() for r in caplog.records if r.name == "bulk_events.pipeline"]
    assert any("the other checking process goes on" in m for m in said), said
    assert not any("checking chunks in this process from now" in m for m in said), said


@pytest.mark.parametrize(
    ("rows", "chunk_rows", "sending", "cores", "expected"),
    [
        (50_000, 20_000, True, 2, True),  # a send of three chunks: checked in a worker
        (50_000, 20_000, False, 2, False),  # a dry run of as many rows: here
        (60_000, 20_000, False, 2, True),
        (30, 5, True, 2, False),  # six chunks, but too small a file to start a process for
        (50_000, 20_000, True, 1, False),  # no second core
        (None, 20_000, True, 2, False),  # no estimate
    ],
)
def test_which_runs_check_their_rows_in_a_worker_process(
    monkeypatch, rows, chunk_rows, sending, cores, expected
):
    from bulk_events import checker as module

    monkeypatch.setattr(module, "_cores", lambda: cores)
    assert module.worth_a_process(rows, chunk_rows, sending=sending) is expected
