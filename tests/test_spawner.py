"""Checking processes forked from a warm spawner: they check chunks exactly as a fresh one does,
are not left behind by a pool, a finished run or a main process that dies, and a run starts a
spawner only when it checks its chunks elsewhere."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import small_checker, write_csv

from bulk_events import spawner
from bulk_events.checker import CheckerGone, CheckPool

pytestmark = pytest.mark.skipif(not spawner.supported(), reason="Linux: fork and pidfds")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _ended(pid: int, within: float = 20.0) -> bool:
    """Whether ``pid`` ends (or is left a zombie: it runs nothing) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:  # looked at once at least
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


async def test_a_forked_checker_answers_as_a_fresh_one_and_ends_with_its_pool():
    """The pool's process comes from the spawner (its parent), checks chunks as the checker
    does here, in order; close() ends it, and the spawner's close() ends the spawner. Ctrl-C
    and SIGTERM sent to the spawner (as to a whole process group) are not its to act on."""
    checker, chunk = small_checker()
    forks = spawner.Spawner()
    try:
        with CheckPool(checker, forks=forks) as pool:
            futures = [pool.submit(chunk.iloc[k:]) for k in range(3)]
            results = [await pool.result(f) for f in futures]
            worker = pool._workers[0].proc
            assert isinstance(worker, spawner.Forked)
            assert _parent(worker.pid) == forks.proc.pid
            os.kill(forks.proc.pid, signal.SIGINT)
            os.kill(forks.proc.pid, signal.SIGTERM)
            late_one = forks.fork()  # after the signals: the spawner is still there
            assert _parent(late_one.pid) == forks.proc.pid
            assert late_one.stdin is not None
            late_one.stdin.close()  # its input closed: it ends
            more = [await pool.result(pool.submit(chunk)) for _ in range(2)]
        assert _ended(late_one.pid)
        assert worker.poll() is not None and _ended(worker.pid)
    finally:
        forks.close()
    assert forks.proc.returncode == 0
    here = checker.check(chunk)
    assert [len(r.bodies) for r in results] == [3, 2, 1] and [len(r.bodies) for r in more] == [3, 3]
    assert list(results[0].bodies) == list(here.bodies) and results[0].keys == here.keys
    assert results[0].errors == here.errors and list(results[0].sent_as) == list(here.sent_as)


async def test_a_forked_checker_that_is_killed_fails_its_chunks_and_the_pool_goes_on():
    """Killed (by the memory limit, say), the forked process's chunks fail with CheckerGone,
    and the pool knows it has no process left: the run then checks chunks itself."""
    checker, chunk = small_checker()
    forks = spawner.Spawner()
    try:
        with CheckPool(checker, forks=forks) as pool:
            assert len((await pool.result(pool.submit(chunk))).bodies) == 3
            worker = pool._workers[0].proc
            worker.kill()
            assert worker.wait(20) is not None
            with pytest.raises(CheckerGone, match="the checking process ended"):
                await pool.result(pool.submit(chunk))
            assert pool.workers == 0
    finally:
        forks.close()


async def test_a_pool_whose_spawner_is_gone_starts_its_processes_afresh():
    """The spawner killed (by the memory limit, say) before the pool asks it for a process:
    the process is started as a fresh interpreter instead, and checks as well."""
    checker, chunk = small_checker()
    forks = spawner.Spawner()
    forks.proc.kill()
    forks.proc.wait()
    try:
        with CheckPool(checker, forks=forks) as pool:
            result = await pool.result(pool.submit(chunk))
            assert not isinstance(pool._workers[0].proc, spawner.Forked)
            assert _parent(pool._workers[0].proc.pid) == os.getpid()
    finally:
        forks.close()
    assert list(result.bodies) == list(checker.check(chunk).bodies)


_DIES = """
import os, signal, sys
import pandas as pd
from bulk_events import spawner
from bulk_events.checker import CheckPool, ChunkChecker
from bulk_events.layout import plan_columns
from bulk_events.schema import RowValidator

layout = plan_columns(["email"], types={}, mapping={}, file_label="c.csv")
checker = ChunkChecker(layout, RowValidator(layout), identity="api:x", sent_event="e")
forks = spawner.Spawner()
pool = CheckPool(checker, forks=forks)
future = pool.submit(pd.DataFrame({"email": ["a@b.co"]}, index=pd.Index([2]), dtype=object))
future.result(timeout=60)
print(forks.proc.pid, pool._workers[0].proc.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_spawner_and_its_checkers_end_when_the_main_process_is_killed():
    """kill -9 of the main process: nothing it started goes on running."""
    proc = subprocess.run(
        [sys.executable, "-c", _DIES], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    spawner_pid, worker_pid = map(int, proc.stdout.split())
    assert _ended(worker_pid) and _ended(spawner_pid)


def test_a_run_starts_a_spawner_only_to_check_elsewhere_and_ends_it(tmp_path, monkeypatch):
    """A run that checks its chunks in other processes starts one spawner for them and ends
    it (and so them) before it returns; a run that checks them itself starts none."""
    from bulk_events.importer import Import, run_sync

    started: list[spawner.Spawner | None] = []
    real = spawner.start

    def start() -> spawner.Spawner | None:
        started.append(real())
        return started[-1]

    monkeypatch.setattr(spawner, "start", start)
    rows = [["email"], *([f"user{i}@example.com"] for i in range(300))]
    path = write_csv(tmp_path / "c.csv", rows)
    for parallel in (False, True):
        result = run_sync(
            Import(
                path,
                event="e",
                dry_run=True,
                report=str(tmp_path / f"r-{parallel}.csv"),
                state=str(tmp_path / "j.sqlite"),
                chunk_rows=64,
                parallel=parallel,
            ).run()
        )
        assert result.counts == {"valid": 300}
        assert len(started) == int(parallel)
    forks = started[0]
    assert forks is not None and forks.proc.returncode == 0  # ended, and waited for
    report = (tmp_path / "r-True.csv").read_bytes()
    assert report == (tmp_path / "r-False.csv").read_bytes()


def test_the_cli_checks_a_large_file_in_forked_processes_and_reports_as_without(tmp_path):
    """A dry run of a file large enough for checking processes: they are forked by the
    spawner (the debug log says so), and the report is the one a run checking every chunk in
    its own process writes. The spawner and its processes are gone when the command ends,
    and the main process never needed pandera."""
    rows = [["email", "phone", "name"]]
    rows += [[f"user{i}@example.com", f"+38050{i:07d}", f"Name {i}"] for i in range(60_000)]
    rows += [["not an email", "", "x"]]
    path = write_csv(tmp_path / "big.csv", rows)
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    cmd = [sys.executable, "-X", "importtime", "-m", "bulk_events", "import", str(path)]
    forked = subprocess.run(
        [*cmd, "--event", "e", "--dry-run", "--report", str(tmp_path / "forked.csv"), "-vv"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert forked.returncode == 1, forked.stderr  # the one invalid row
    pids = [int(pid) for pid in re.findall(r"checking process (\d+) forked", forked.stderr)]
    assert pids, forked.stderr
    assert all(_ended(pid, within=2) for pid in pids)  # waited for before the command ended
    # The main process hands every chunk over: it never imports pandera (-X importtime lists
    # its own imports only, the others' output goes nowhere), though it does import pandas.
    assert re.search(r"\| +pandas$", forked.stderr, re.M)
    assert not re.search(r"\| +pandera$", forked.stderr, re.M)
    from bulk_events.importer import Import, run_sync

    here = run_sync(
        Import(
            path,
            event="e",
            dry_run=True,
            report=str(tmp_path / "here.csv"),
            state=str(tmp_path / "here.sqlite"),
            parallel=False,
        ).run()
    )
    assert here.counts == {"valid": 60_000, "invalid": 1}
    assert (tmp_path / "forked.csv").read_bytes() == (tmp_path / "here.csv").read_bytes()


_THREADS = """
import threading
from bulk_events import spawner

release = threading.Event()
alone = spawner._threads()
thread = threading.Thread(target=release.wait)
thread.start()
print(alone, spawner._threads())
release.set()
thread.join()
"""


def test_the_spawner_counts_threads_as_the_kernel_does():
    """What keeps the spawner from forking once something in it started a thread: the
    kernel's count. In a process of its own, as the spawner is (this test process runs
    threads of its own that come and go)."""
    proc = subprocess.run(
        [sys.executable, "-c", _THREADS], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "2"]


async def test_a_forked_checker_that_cannot_be_signalled_still_ends_with_its_pool(monkeypatch):
    """Signals refused (a sandbox's policy): closing the pool still ends the process, at the
    end of its input, and does not hang."""
    checker, chunk = small_checker()

    def refused(pidfd: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    forks = spawner.Spawner()
    pool = CheckPool(checker, forks=forks)
    assert len((await pool.result(pool.submit(chunk))).bodies) == 3
    worker = pool._workers[0].proc
    try:
        monkeypatch.setattr(spawner.signal, "pidfd_send_signal", refused)
        closing = threading.Thread(target=pool.close, daemon=True)
        closing.start()
        closing.join(30)
        assert not closing.is_alive(), "close() hangs on a process it could not kill"
        assert worker.poll() is not None and _ended(worker.pid)
    finally:
        if not _ended(worker.pid, within=0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)  # so that a failure here does not hang
        forks.close()
