"""More faults that must not cost a hang, a traceback or a wrong status: SIGTERM while a big file
is read and validated, a huge cell in a workbook, a full scratch disk under the duplicate set, a
request stopped between its mark and the socket, and an unexpected exception mid-file."""

from __future__ import annotations

import contextlib
import re
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import openpyxl
import pytest
from conftest import contacts, read_report, write_csv
from test_faults import journal_states
from test_signals import arrived, cli_env, server, wait_for_arrivals

__all__ = ["server"]  # the fixture, shared with test_signals

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and locks")

BIG = 300_000
NOT_LEFT = "not sent: the run stopped before this request left"  # a journaled row's error


def big_csv(path: Path, rows: int = BIG) -> Path:
    """A CSV of ``rows`` distinct valid contacts, written in one go (a fraction of a second)."""
    lines = "".join(f"user{i}@example.com,Name {i},note {i}\n" for i in range(rows))
    path.write_text("email,name,note\n" + lines)
    return path


# -- SIGTERM while a big file is read and validated ------------------------------------------


@pytest.mark.parametrize("mode", ["dry-run", "sending"])
def test_sigterm_while_reading_a_big_file_ends_within_the_grace_period(server, tmp_path, mode):
    """SIGTERM while the reader thread is busy with a 300k-row file: the run stops reading when
    --grace runs out instead of listing the whole file first; it exits 143 with no traceback,
    and the report accounts for every row read (in order, none twice), the rest pending."""
    url, record, _ = server(latency=0.0)
    f = big_csv(tmp_path / "c.csv")
    report = tmp_path / "r.csv"
    args = [
        sys.executable, "-m", "bulk_events", "import", str(f), "--event", "e",
        "--report", str(report), "--state", str(tmp_path / "j.sqlite"), "--grace", "1",
    ]  # fmt: skip
    args += ["--dry-run"] if mode == "dry-run" else ["--rate", "0"]
    proc = subprocess.Popen(
        args, env=cli_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if mode == "sending":
        wait_for_arrivals(record, 20)
    else:  # the first chunk is in the temporary report: the later ones are being validated
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size for p in tmp_path.glob(".r.csv.*")):
            assert proc.poll() is None and time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    _, err = proc.communicate(timeout=120)
    took = time.monotonic() - stopped
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "internal error" not in err
    # The grace (1 s) plus the chunks already read; listing all 300k rows would take far longer,
    # and the report would then hold them all.
    assert took < 30, f"{took:.1f} s after SIGTERM"
    found = re.search(r"the grace period ended after row (\d+): any later rows were not read", err)
    assert found, err
    last = int(found.group(1))
    rows = read_report(report)
    assert [int(r["row"]) for r in rows] == list(range(2, last + 1))  # every row read, once
    assert len(rows) < BIG
    statuses = Counter(r["status"] for r in rows)
    done = "valid" if mode == "dry-run" else "sent"
    assert statuses["pending"] > 0 and statuses[done] > 0
    # A request still unanswered when the grace ran out (a very busy machine) is unknown.
    assert set(statuses) <= {done, "pending", "unknown"} and statuses["unknown"] <= 10
    if mode == "sending":
        sent = {r["email"] for r in rows if r["status"] == "sent"}
        unknown = {r["email"] for r in rows if r["status"] == "unknown"}
        once = arrived(record)
        assert max(once.values()) == 1 and sent <= set(once) <= sent | unknown
    else:
        assert not record.exists() or arrived(record) == Counter()
    assert not list(tmp_path.glob(".r.csv.*"))


# -- a huge cell in a workbook ----------------------------------------------------------------


def _stored_zip(dst: Path, parts: dict[str, bytes]) -> Path:
    """A zip of ``parts``, stored uncompressed: a huge cell of one letter is then no zip bomb."""
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as out:
        for name, data in parts.items():
            out.writestr(name, data)
    return dst


def xlsx_with_cell(path: Path, text: str, *, shared: bool) -> Path:
    """A two-row workbook whose B3 holds ``text``, as a shared string or an inline one."""
    base = path.with_suffix(".base.xlsx")
    wb = openpyxl.Workbook()
    wb.active.append(["email", "note"])
    wb.active.append(["a@example.com", "short"])
    wb.active.append(["b@example.com", "PLACEHOLDER"])
    wb.save(base)
    with zipfile.ZipFile(base) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    inline = b'<c r="B3" t="inlineStr"><is><t>PLACEHOLDER</t></is></c>'
    assert inline in parts[sheet]
    if not shared:
        parts[sheet] = parts[sheet].replace(b"PLACEHOLDER", text.encode())
        return _stored_zip(path, parts)
    parts[sheet] = parts[sheet].replace(inline, b'<c r="B3" t="s"><v>0</v></c>')
    parts["xl/sharedStrings.xml"] = (
        b'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/'
        b'spreadsheetml/2006/main" count="1" uniqueCount="1"><si><t>'
        + text.encode()
        + b"</t></si></sst>"
    )
    parts["[Content_Types].xml"] = parts["[Content_Types].xml"].replace(
        b"</Types>",
        b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-'
        b'officedocument.spreadsheetml.sharedStrings+xml"/></Types>',
    )
    parts["xl/_rels/workbook.xml.rels"] = parts["xl/_rels/workbook.xml.rels"].replace(
        b"</Relationships>",
        b'<Relationship Id="rIdStrings" Type="http://schemas.openxmlformats.org/officeDocument/'
        b'2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>',
    )
    return _stored_zip(path, parts)


def ods_with_cell(path: Path, text: str) -> Path:
    """A minimal OpenDocument spreadsheet whose B3 holds ``text``."""
    rows = [["email", "note"], ["a@example.com", "short"], ["b@example.com", text]]
    cells = "".join(
        "<table:table-row>"
        + "".join(
            f'<table:table-cell office:value-type="string"><text:p>{c}</text:p></table:table-cell>'
            for c in row
        )
        + "</table:table-row>"
        for row in rows
    )
    ns = (
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
    )
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns} office:version="1.2">'
        f'<office:body><office:spreadsheet><table:table table:name="Sheet1">{cells}</table:table>'
        "</office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:'
        'names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry '
        'manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.'
        'spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" '
        'manifest:media-type="text/xml"/></manifest:manifest>'
    )
    return _stored_zip(
        path,
        {
            "mimetype": b"application/vnd.oasis.opendocument.spreadsheet",
            "content.xml": content.encode(),
            "META-INF/manifest.xml": manifest.encode(),
        },
    )


# The child notes its own peak (VmHWM) on the way out: ru_maxrss would also count the parent's
# memory at the moment of the spawn, which holds the test's 50 MB string.
_MEASURED = """
import atexit, re, runpy, sys
where = sys.argv.pop(1)
def note():
    with open("/proc/self/status") as f:
        peak = re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1)
    with open(where, "w") as out:
        out.write(peak)
atexit.register(note)
sys.argv[0] = "bulk-events"
runpy.run_module("bulk_events", run_name="__main__", alter_sys=True)
"""


def run_measured(tmp_path: Path, args: list[str]) -> tuple[int, str, int]:
    """Run the CLI in a child; its exit code, stderr and peak resident memory (bytes)."""
    note = tmp_path / "peak.txt"
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, str(note), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, done.stderr, int(note.read_text()) * 1024


BUILDERS = {
    "xlsx-shared": lambda p, t: xlsx_with_cell(p.with_suffix(".xlsx"), t, shared=True),
    "xlsx-inline": lambda p, t: xlsx_with_cell(p.with_suffix(".xlsx"), t, shared=False),
    "ods": lambda p, t: ods_with_cell(p.with_suffix(".ods"), t),
}


def test_a_50_mb_cell_in_a_workbook_is_refused_in_bounded_memory(tmp_path):
    """A 50 MB cell (.xlsx shared or inline string, .ods): the documented refusal with exit 2,
    never exit 70, and no more memory than reading a workbook with a short cell."""
    common = ["--event", "e", "--dry-run", "--state", str(tmp_path / "j.sqlite")]
    small = BUILDERS["xlsx-shared"](tmp_path / "small", "short text")
    code, err, baseline = run_measured(
        tmp_path, ["import", str(small), *common, "--report", str(tmp_path / "s.csv")]
    )
    assert code == 0, err
    for kind, build in BUILDERS.items():
        huge = build(tmp_path / f"huge-{kind}", "x" * 50_000_000)
        code, err, peak = run_measured(
            tmp_path, ["import", str(huge), *common, "--report", str(tmp_path / "r.csv")]
        )
        assert code == 2, (kind, err)
        assert "has a cell longer than 1 MiB" in err and "refusing to read it" in err
        assert "Traceback" not in err and "internal error" not in err
        assert len(err.strip().splitlines()) == 1, err
        # Holding the cell once as text would be 50 MB more; a parser holds it several times.
        assert peak < baseline + 25_000_000, (kind, peak, baseline)
        huge.unlink()


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_a_cell_just_over_the_limit_is_refused_and_one_at_it_is_read(tmp_path, kind):
    """A cell of 1 MiB + 1 characters is refused naming its row and column (exit 2); a cell of
    exactly 1 MiB is read whole."""
    from bulk_events.errors import FileFormatError
    from bulk_events.reader import MAX_CELL_CHARS, open_table

    build = BUILDERS[kind]
    over = build(tmp_path / "over", "é" * (MAX_CELL_CHARS + 1))
    with (
        pytest.raises(FileFormatError, match=r"row 3, column B, has a cell longer than 1 MiB"),
        open_table(over) as table,
    ):
        list(table.chunks(100))
    at = build(tmp_path / "at", "é" * MAX_CELL_CHARS)
    with open_table(at) as table:
        (chunk,) = list(table.chunks(100))
    assert chunk.loc[3, "note"] == "é" * MAX_CELL_CHARS


# -- the scratch duplicate set on a full disk -------------------------------------------------


def _run(path: Path, **settings):
    from bulk_events.importer import Import, run_sync

    return run_sync(Import(path, **settings).run())


def _sandbox_env(monkeypatch, live):
    server_ = live()
    monkeypatch.setenv("SENDPULSE_API_URL", server_.url)
    monkeypatch.setenv("SENDPULSE_CLIENT_ID", server_.box.client_id)
    monkeypatch.setenv("SENDPULSE_CLIENT_SECRET", server_.box.client_secret)
    return server_


def test_full_scratch_disk_under_the_duplicate_set_is_exit_74_in_one_line(
    live, tmp_path, monkeypatch
):
    """The temporary folder fills while the run notes which rows it met (an injected "database
    or disk is full" on the third chunk): exit 74 with a one-line reason, the report lists what
    was sent, the journal has it all, and the rerun sends the rest, each row once."""
    import sqlite3

    import bulk_events.seen as seen_module

    server_ = _sandbox_env(monkeypatch, live)
    f = write_csv(tmp_path / "c.csv", contacts(30))
    report, state = tmp_path / "r.csv", tmp_path / "j.sqlite"
    real = seen_module.transaction
    calls = []

    def filling(conn, begin="BEGIN IMMEDIATE"):
        calls.append(1)
        if len(calls) == 3:
            raise sqlite3.OperationalError("database or disk is full")
        return real(conn, begin)

    monkeypatch.setattr(seen_module, "transaction", filling)
    # Past its in-memory size the set lives in the temporary folder: from the first key, here.
    defaults = {**seen_module.SeenKeys.__init__.__kwdefaults__, "memory_keys": 0}
    monkeypatch.setattr(seen_module.SeenKeys.__init__, "__kwdefaults__", defaults)
    settings = dict(event="e", report=report, state=state, rate=0, concurrency=1, chunk_rows=5)
    result = _run(f, **settings)
    assert result.exit_code == 74
    assert "\n" not in result.stopped
    assert result.stopped.startswith("error: cannot keep the list of rows this run met")
    assert "database or disk is full" in result.stopped
    assert "records every outcome" in result.stopped and "TMPDIR" in result.stopped
    rows = read_report(report)
    statuses = Counter(r["status"] for r in rows)
    sent = {r["email"] for r in rows if r["status"] == "sent"}
    assert len(rows) == 30 and set(statuses) == {"sent", "pending"} and sent
    assert result.counts["sent"] == len(sent)
    assert Counter(b["email"] for b in server_.bodies()) == Counter(dict.fromkeys(sent, 1))
    with contextlib.closing(sqlite3.connect(state)) as db:
        others = set(db.execute("SELECT state, error FROM events WHERE state != 'sent'"))
    assert journal_states(state)["sent"] == len(sent)
    assert others <= {("failed", NOT_LEFT)}  # marked, then stopped before it left

    monkeypatch.setattr(seen_module, "transaction", real)
    again = _run(f, **settings)
    assert again.exit_code == 0
    assert Counter(b["email"] for b in server_.bodies()) == Counter(
        {f"user{i}@example.com": 1 for i in range(30)}
    )


# -- a request stopped between its mark and the socket --------------------------------------


def test_a_request_stopped_before_it_left_is_safe_to_send_and_counted_as_not_sent(
    live, tmp_path, monkeypatch
):
    """A stop while marked rows wait for their turn of the rate limit: they are journaled
    `failed` ("not sent: ...") and `pending` in the report; status and inspect count them as
    not sent (never unknown); --only-failed sends exactly them, each once; a plain rerun the
    rest."""
    from bulk_events.events import Progress
    from bulk_events.importer import Import, run_sync
    from bulk_events.inspect import inspect_file
    from bulk_events.outcome import Status
    from bulk_events.status import read_status

    server_ = _sandbox_env(monkeypatch, live)
    f = write_csv(tmp_path / "c.csv", contacts(12))
    report, state = tmp_path / "r.csv", tmp_path / "j.sqlite"
    # One request a second, four workers: after the first answer, three rows are marked in
    # flight and wait for their turn when the stop comes.
    settings = dict(event="e", report=report, state=state, rate=1, concurrency=4)

    def stop_after_first_sent(event):
        if isinstance(event, Progress) and event.outcome.status is Status.SENT:
            run.request_stop()

    run = Import(f, on_event=stop_after_first_sent, **settings)
    first = run_sync(run.run())
    assert first.exit_code == 1
    sent = {b["email"] for b in server_.bodies()}
    assert first.counts == Counter({"sent": len(sent), "pending": 12 - len(sent)})
    with contextlib.closing(sqlite3.connect(state)) as db:
        not_left = dict(db.execute("SELECT row, state FROM events WHERE error = ?", (NOT_LEFT,)))
        states = Counter(s for (s,) in db.execute("SELECT state FROM events"))
    assert not_left and set(not_left.values()) == {"failed"}
    assert states == Counter({"sent": len(sent), "failed": len(not_left)})  # none in flight
    rows = {int(r["row"]): r for r in read_report(report)}
    assert all(rows[row]["status"] == "pending" for row in not_left)
    assert {r["email"] for r in rows.values() if r["status"] == "sent"} == sent

    # status: the run's rows that never left are pending, none unknown or failed.
    record = read_status(state).run
    assert record is not None
    assert record.counts.get("unknown", 0) == 0 and record.counts.get("failed", 0) == 0
    assert record.pending == 12 - len(sent)
    # inspect: they are to send, not unknown from an earlier run.
    plan = inspect_file(f, {"event": "e", "state": str(state)})
    assert f"Rows:    12: {12 - len(sent)} to send," in plan
    assert f"{len(sent)} already sent" in plan and "0 unknown from an earlier run" in plan

    # --only-failed sends the rows that never left (safe: no request of theirs went out).
    only = _run(f, **{**settings, "rate": 0}, only_failed=True)
    statuses = {int(r["row"]): r["status"] for r in read_report(report)}
    assert {row for row, s in statuses.items() if s == "sent"} == set(not_left)
    assert only.counts["sent"] == len(not_left)
    arrivals = Counter(b["email"] for b in server_.bodies())
    assert max(arrivals.values()) == 1 and len(arrivals) == len(sent) + len(not_left)

    again = _run(f, **{**settings, "rate": 0})
    assert again.exit_code == 0
    assert Counter(b["email"] for b in server_.bodies()) == Counter(
        {f"user{i}@example.com": 1 for i in range(12)}
    )


# -- an unexpected exception mid-file ----------------------------------------------------------


def _failing_prepare(monkeypatch, on_call: int):
    """Make Triage.prepare raise a bug's exception on its ``on_call``-th call."""
    from bulk_events.triage import Triage

    real = Triage.prepare
    calls = []

    def prepare(self, chunk):
        calls.append(1)
        if len(calls) == on_call:
            raise RuntimeError("boom in triage")
        return real(self, chunk)

    monkeypatch.setattr(Triage, "prepare", prepare)
    return lambda: monkeypatch.setattr(Triage, "prepare", real)


def test_an_unexpected_exception_mid_file_ends_with_a_report_and_exit_70(
    live, tmp_path, monkeypatch
):
    """A bug in the triage step on the third chunk: the run stops by itself with exit 70 and a
    one-line reason, the report lists every row (sent, or pending from the failing chunk on),
    the journal agrees and its locks are released: the next run sends the rest, each once."""
    from bulk_events.journal import Journal
    from bulk_events.options import ImportOptions

    server_ = _sandbox_env(monkeypatch, live)
    f = write_csv(tmp_path / "c.csv", contacts(30))
    report, state = tmp_path / "r.csv", tmp_path / "j.sqlite"
    settings = dict(event="e", report=report, state=state, rate=0, concurrency=2, chunk_rows=5)
    restore = _failing_prepare(monkeypatch, on_call=3)
    result = _run(f, **settings)
    assert result.exit_code == 70
    assert "\n" not in result.stopped
    assert result.stopped.startswith("error: internal error while checking rows: RuntimeError")
    assert "boom in triage" in result.stopped and "-vv" in result.stopped
    rows = read_report(report)
    assert [int(r["row"]) for r in rows] == list(range(2, 32))
    statuses = [r["status"] for r in rows]
    assert set(statuses[:10]) <= {"sent", "pending"} and set(statuses[10:]) == {"pending"}
    sent = {r["email"] for r in rows if r["status"] == "sent"}
    assert Counter(b["email"] for b in server_.bodies()) == Counter(dict.fromkeys(sent, 1))
    with contextlib.closing(sqlite3.connect(state)) as db:
        others = set(db.execute("SELECT state, error FROM events WHERE state != 'sent'"))
    assert journal_states(state)["sent"] == len(sent)
    assert others <= {("failed", NOT_LEFT)}  # marked, then stopped before they left
    identity = ImportOptions.from_settings(event="e").target.identity
    Journal.open(state, destination=identity).close()  # nobody holds it or its destination

    restore()
    again = _run(f, **settings)
    assert again.exit_code == 0
    assert Counter(b["email"] for b in server_.bodies()) == Counter(
        {f"user{i}@example.com": 1 for i in range(30)}
    )


def test_an_unexpected_exception_reaches_the_cli_as_one_line_and_exit_70(
    api, tmp_path, monkeypatch
):
    """Through the CLI: one error line (no traceback), exit 70, a report; the journal's lock is
    released, so the same command then runs."""
    server_, cli = api()
    f = write_csv(tmp_path / "c.csv", contacts(6))
    args = [
        "import",
        f,
        "--event",
        "e",
        "--report",
        tmp_path / "r.csv",
        "--state",
        tmp_path / "j.sqlite",
    ]
    restore = _failing_prepare(monkeypatch, on_call=1)
    result = cli(*args)
    assert result.exit_code == 70, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if "internal error" in line]
    assert errors == [
        "bulk-events: error: internal error while checking rows: RuntimeError: boom in triage "
        "(a bug; run with -vv for details); every row not sent is pending in the report"
    ]
    assert Counter(r["status"] for r in read_report(tmp_path / "r.csv")) == Counter(pending=6)
    assert server_.bodies() == []
    restore()
    again = cli(*args)
    assert again.exit_code == 0, again.output
    assert len(server_.bodies()) == 6


def test_an_unexpected_exception_after_a_request_left_is_unknown_never_resent(
    live, tmp_path, monkeypatch
):
    """A bug in the deliverer after the third answer came: exit 70 with a report; that row is
    `unknown` (its in-flight mark stays), and the next run does not send it again."""
    from bulk_events.delivery.deliverer import Deliverer

    server_ = _sandbox_env(monkeypatch, live)
    f = write_csv(tmp_path / "c.csv", contacts(10))
    report, state = tmp_path / "r.csv", tmp_path / "j.sqlite"
    settings = dict(event="e", report=report, state=state, rate=0, concurrency=1)
    real = Deliverer._act
    calls = []

    async def act(self, job, progress, verdict, sent_clock):
        calls.append(job.row)
        if len(calls) == 3:
            raise RuntimeError("boom after the answer")
        return await real(self, job, progress, verdict, sent_clock)

    monkeypatch.setattr(Deliverer, "_act", act)
    result = _run(f, **settings)
    assert result.exit_code == 70
    assert "internal error while sending: RuntimeError: boom after the answer" in result.stopped
    statuses = {int(r["row"]): r["status"] for r in read_report(report)}
    assert statuses[calls[2]] == "unknown"
    assert Counter(statuses.values()) == Counter(sent=2, unknown=1, pending=7)
    assert len(server_.bodies()) == 3

    monkeypatch.setattr(Deliverer, "_act", real)
    again = _run(f, **settings)
    assert again.exit_code == 1  # the unknown row waits for --retry-unknown
    assert Counter(b["email"] for b in server_.bodies()) == Counter(
        {f"user{i}@example.com": 1 for i in range(10)}
    )
    assert {int(r["row"]) for r in read_report(report) if r["status"] == "unknown"} == {calls[2]}
