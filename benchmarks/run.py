"""Scale and speed of bulk-events, each scenario beside its bare baseline, in one command.

    python benchmarks/run.py            # the full run (~30-45 minutes on 2 cores)
    python benchmarks/run.py --quick    # smaller sizes, about a minute or two
    python benchmarks/run.py --only send --only rate

Inputs are generated in a temporary folder; every server is a local process bound to 127.0.0.1,
started here and stopped at the end (also on Ctrl-C). Every measured program, bulk-events and the
baselines alike, runs as its own child process, so wall time includes interpreter start-up and
imports on both sides, and peak RSS and CPU time come from the kernel's accounting of that one
child (``os.wait4``), not from sampling.

Scenarios (names for ``--only``):

  memory       dry runs of a 200k- and a 1M-row CSV: peak RSS must stay flat
  scale        the scale table: time and peak RSS of dry runs at 200k, 1M and 5M rows
  rerun        a real rerun of a 200k- and a 5M-row file whose every row the journal has sent:
               look-ups at full speed (time per row) and flat memory
  overhead     the 1M-row dry run vs bare ``pd.read_csv(dtype=str)`` + a vectorised pandera schema,
               in interleaved rounds (three; one with --quick), judged on the median ratio
  excel        dry runs of a 100k-row .xlsx, .ods and a 65,535-row .xls (the format's limit) vs
               openpyxl read-only, pandas read_excel(engine="odf") and xlrd; bare calamine as floor
  send         --rate 0 --concurrency 100 against a minimal sink vs a bare aiohttp client
               (and a sequential ``requests`` loop, for perspective)
  sender       the send path's layers, each alone in a process on the same bodies: the transport,
               the deliverer with its marks answered at once, then the journal's real commits
  rate         --rate 10 against the sandbox (0.25 s latency, 10 requests per sliding second)
  first-event  time from process start to the first request arriving, on the 1M-row file

The runner itself imports only the standard library (and psutil if present, for machine facts),
so its own size does not leak into the children's peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCENARIOS = (
    "memory",
    "scale",
    "rerun",
    "overhead",
    "excel",
    "send",
    "sender",
    "rate",
    "first-event",
)

SIZES = {
    "full": {
        "small": 200_000,
        "large": 1_000_000,
        "huge": 5_000_000,
        "rerun_small": 200_000,
        "rerun_large": 5_000_000,
        "xlsx": 100_000,
        "send": 50_000,
        "requests": 500,
        "rate": 300,
        "send_repeats": 3,
        "sender_repeats": 3,
        "overhead_repeats": 3,
    },
    "quick": {
        "small": 40_000,
        "large": 200_000,
        "huge": 1_000_000,
        "rerun_small": 40_000,
        "rerun_large": 200_000,
        "xlsx": 20_000,
        "send": 10_000,
        "requests": 200,
        "rate": 100,
        "send_repeats": 1,
        "sender_repeats": 1,
        "overhead_repeats": 1,
    },
}

# The variables' declared types, as a user of this file would pass them.
TYPE_OPTIONS = ["--type", "date=date", "--type", "amount=number"]
CLIENT_ID, CLIENT_SECRET = "sandbox-client", "sandbox-secret"  # the sandbox's defaults


# --- input generation ---------------------------------------------------------------------------

FIRST = [
    "olena",
    "ivan",
    "john",
    "maria",
    "petro",
    "anna",
    "oleh",
    "sofia",
    "david",
    "emma",
    "taras",
    "iryna",
]
LAST = [
    "kovalenko",
    "petrenko",
    "smith",
    "garcia",
    "shevchenko",
    "bondar",
    "brown",
    "muller",
    "melnyk",
    "rossi",
]
SHOWN = [
    "Олена Коваленко",
    "Іван Петренко",
    "John Smith",
    "María García",
    "Петро Шевченко",
    "Anna Müller",
    "Oleh Bondar",
]
CITIES = [
    "Київ",
    "Львів",
    "Odesa",
    "San Francisco",
    "Sevilla",
    "Berlin",
    "Warszawa",
    "Харків",
    "Dnipro",
    "London",
]
DOMAINS = ["example.com", "example.org", "mail.example.net", "example.com.ua"]
AUTOMATIONS = ["7043663", "7043664", "7043665"]
HEADER = ["email", "phone", "name", "city", "date", "amount", "automation_id"]


def _row(i: int, rnd: random.Random, invalid_share: float) -> list[str]:
    first, last = FIRST[i % len(FIRST)], LAST[(i // 7) % len(LAST)]
    email = f"{first}.{last}.{i}@{DOMAINS[i % len(DOMAINS)]}"
    digits = f"{rnd.randrange(10**8, 10**9)}"
    kind = i % 4
    if kind == 0:
        phone = f"380{digits}"
    elif kind == 1:
        phone = f"+380 {digits[:2]} {digits[2:5]} {digits[5:7]} {digits[7:]}"
    elif kind == 2:
        phone = f"+1 (415) {digits[:3]}-{digits[3:7]}"
    else:
        phone = ""  # email only
    day, month, year = 1 + rnd.randrange(28), 1 + rnd.randrange(12), 2015 + rnd.randrange(10)
    date = f"{year}-{month:02d}-{day:02d}" if i % 3 else f"{day:02d}.{month:02d}.{year}"
    amount = f"{rnd.randrange(1, 100_000) / 100:.2f}" if i % 5 else str(rnd.randrange(1, 500))
    row = [
        email,
        phone,
        SHOWN[i % len(SHOWN)],
        CITIES[i % len(CITIES)],
        date,
        amount,
        AUTOMATIONS[i % 3],
    ]
    if invalid_share and rnd.random() < invalid_share:
        bad = rnd.randrange(5)
        if bad == 0:
            row[0] = f"{first}.{last}@@example"  # not an email
        elif bad == 1:
            row[1] = "12-34"  # too few digits
        elif bad == 2:
            row[4] = f"{year}-13-45"  # not a date
        elif bad == 3:
            row[5] = "12,50"  # decimal comma
        else:
            row[0] = row[1] = ""  # no contact at all
    return row


def write_csv(path: Path, rows: int, *, seed: int = 1, invalid_share: float = 0.015) -> Path:
    """A realistic contacts CSV, streamed to disk (the runner stays small)."""
    rnd = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        batch: list[list[str]] = []
        for i in range(rows):
            batch.append(_row(i, rnd, invalid_share))
            if len(batch) == 10_000:
                w.writerows(batch)
                batch.clear()
        w.writerows(batch)
    return path


# --- child programs (run as `run.py _child NAME ...`, each in a fresh process) ------------------


XLS_MAX_ROWS = 65_535  # an .xls sheet holds 65,536 rows (BIFF8), the header included


def _sheet_rows(rows: int) -> Iterator[list[Any]]:
    """The rows of every benchmark workbook, as Excel users have them: phones as numeric cells,
    real date cells, numbers (the header first). The .xlsx, .xls and .ods hold the same cells."""
    import datetime as dt

    rnd = random.Random(2)
    yield HEADER
    for i in range(rows):
        email, phone, name, city, _, amount, aid = _row(i, rnd, 0.01)
        digits = "".join(ch for ch in phone if ch.isdigit())
        day = dt.date(2015, 1, 1) + dt.timedelta(days=i % 3650)
        try:
            money: float | str = float(amount)
        except ValueError:
            money = amount  # the decimal-comma mistake stays a text cell, as Excel keeps it
        yield [email, int(digits) if digits else None, name, city, day, money, int(aid)]


def child_write_xlsx(path: str, rows: str) -> dict[str, Any]:
    """The .xlsx, written by openpyxl in write-only mode."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Contacts")
    for row in _sheet_rows(int(rows)):
        ws.append(row)
    wb.save(path)
    return {"rows": int(rows)}


def child_write_xls(path: str, rows: str) -> dict[str, Any]:
    """The .xls (Excel 97-2003), written by xlwt: the same cells, date cells formatted as dates."""
    import datetime as dt

    import xlwt

    if int(rows) > XLS_MAX_ROWS:
        raise SystemExit(f"an .xls sheet holds at most {XLS_MAX_ROWS:,} rows under its header")
    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("Contacts")
    as_date = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    for r, row in enumerate(_sheet_rows(int(rows))):
        for c, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, dt.date):
                ws.write(r, c, value, as_date)
            else:
                ws.write(r, c, value)
    wb.save(path)
    return {"rows": int(rows)}


def child_write_ods(path: str, rows: str) -> dict[str, Any]:
    """The .ods through pandas and odfpy, for a machine without LibreOffice (slow: minutes for
    100k rows, and GBs of memory, as odfpy builds the whole document in memory first)."""
    import pandas as pd

    cells = _sheet_rows(int(rows))
    header = next(cells)
    frame = pd.DataFrame(list(cells), columns=header, dtype=object)
    frame.to_excel(path, engine="odf", index=False, sheet_name="Contacts")
    return {"rows": int(rows)}


def child_pandas_pandera(path: str) -> dict[str, Any]:
    """The bare baseline of a dry run: read everything as text, one vectorised pandera pass."""
    t0 = time.perf_counter()
    import pandas as pd
    import pandera.pandas as pa

    email = r"[^\s@]+@[^\s@]+\.[^\s@]{2,}"
    phone = r"\+?\d{7,15}"
    number = r"[+-]?(?:\d+\.?\d*|\.\d+)"
    date = r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}\.\d{1,2}\.\d{4}"

    def blank_or(pattern: str) -> pa.Check:
        return pa.Check(lambda s: (s == "") | s.str.fullmatch(pattern).fillna(False).astype(bool))

    schema = pa.DataFrameSchema(
        {
            "email": pa.Column(str, blank_or(email)),
            "phone": pa.Column(str, blank_or(phone)),
            "date": pa.Column(str, blank_or(date)),
            "amount": pa.Column(str, blank_or(number)),
            "automation_id": pa.Column(str, blank_or(r"\d+")),
        }
    )
    imported = time.perf_counter()
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    read = time.perf_counter()
    df["phone"] = df["phone"].str.replace(r"[\s\-.()]", "", regex=True)
    failures = 0
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        failures = len(exc.failure_cases)
    done = time.perf_counter()
    return {
        "rows": len(df),
        "failure_cases": failures,
        "import_s": imported - t0,
        "read_s": read - imported,
        "validate_s": done - read,
    }


def child_openpyxl(path: str) -> dict[str, Any]:
    """The bare baseline of an .xlsx dry run: openpyxl read-only, every cell touched once."""
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True, data_only=True)
    rows = cells = 0
    for row in wb.worksheets[0].iter_rows(values_only=True):
        rows += 1
        cells += sum(v is not None for v in row)
    wb.close()
    return {"rows": rows - 1, "cells": cells}


def child_xlrd(path: str) -> dict[str, Any]:
    """The bare baseline of an .xls dry run: xlrd's ``open_workbook``, every cell touched once."""
    import xlrd

    book = xlrd.open_workbook(path)
    sheet = book.sheet_by_index(0)
    cells = 0
    for r in range(sheet.nrows):
        cells += sum(v != "" for v in sheet.row_values(r))
    book.release_resources()
    return {"rows": sheet.nrows - 1, "cells": cells}


def child_pandas_odf(path: str) -> dict[str, Any]:
    """The bare baseline of an .ods dry run: the standard pandas route, ``read_excel(engine="odf")``."""
    import pandas as pd

    frame = pd.read_excel(path, engine="odf")
    return {"rows": len(frame), "cells": int(frame.notna().sum().sum())}


def child_calamine(path: str) -> dict[str, Any]:
    """The floor of reading any workbook: bare python-calamine, the first sheet, every cell once."""
    from python_calamine import CalamineWorkbook

    book = CalamineWorkbook.from_path(path)
    rows = cells = 0
    for row in book.get_sheet_by_index(0).iter_rows():
        rows += 1
        cells += sum(v != "" for v in row)
    book.close()
    return {"rows": rows - 1, "cells": cells}


def _bodies(path: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The CSV's rows as event bodies, built the obvious way (no validation)."""
    strip = str.maketrans("", "", " -().")
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for i, r in enumerate(csv.DictReader(f)):
            if limit is not None and i >= limit:
                break
            body: dict[str, Any] = {"email": r["email"], "automation_id": int(r["automation_id"])}
            if r["phone"]:
                body["phone"] = r["phone"].translate(strip)
            body.update(name=r["name"], city=r["city"], date=r["date"], amount=float(r["amount"]))
            out.append(body)
    return out


def child_bare_aiohttp(base: str, path: str, concurrency: str) -> dict[str, Any]:
    """The bare baseline of sending: one ClientSession, N workers posting JSON, nothing else."""
    import asyncio

    import aiohttp

    bodies = _bodies(path)
    dumps = json.dumps
    try:
        import orjson

        def dumps(b: Any) -> bytes:  # type: ignore[misc]
            return orjson.dumps(b)
    except ImportError:  # pragma: no cover
        pass

    async def run() -> dict[str, Any]:
        connector = aiohttp.TCPConnector(limit=int(concurrency))
        async with aiohttp.ClientSession(connector=connector) as session:
            form = {
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            }
            async with session.post(f"{base}/oauth/access_token", data=form) as resp:
                token = (await resp.json())["access_token"]
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            url = f"{base}/events/name/bench"
            todo = iter(bodies)
            ok = failed = 0

            async def worker() -> None:
                nonlocal ok, failed
                for body in todo:  # a shared iterator: next() never awaits, so no lock is needed
                    async with session.post(url, data=dumps(body), headers=headers) as resp:
                        answer = await resp.read()
                    if resp.status == 200 and b'"result":true' in answer.replace(b" ", b""):
                        ok += 1
                    else:
                        failed += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(int(concurrency))))
            return {"sent": ok, "failed": failed, "send_s": time.perf_counter() - t0}

    return asyncio.run(run())


def child_naive_requests(base: str, path: str, limit: str) -> dict[str, Any]:
    """What SendPulse's examples lead to: one ``requests.post`` after another, no session."""
    import requests

    bodies = _bodies(path, int(limit))
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    token = requests.post(f"{base}/oauth/access_token", data=form, timeout=10).json()[
        "access_token"
    ]
    headers = {"Authorization": f"Bearer {token}"}
    ok = 0
    t0 = time.perf_counter()
    for body in bodies:
        r = requests.post(f"{base}/events/name/bench", json=body, headers=headers, timeout=10)
        ok += r.status_code == 200
    return {"sent": ok, "send_s": time.perf_counter() - t0}


def child_build_journal(path: str, journal_path: str) -> dict[str, Any]:
    """A run journal in which every row of the CSV at ``path`` is ``sent``, as a real run of
    ``import PATH --event bench`` (to $SENDPULSE_API_URL) would leave it.

    Built through bulk-events' own library, as :class:`bulk_events.Import` sets a run up: the
    file read, validated and keyed chunk by chunk by ``Triage`` (the same event keys and the
    same contact records a run makes), then every key that run would send marked ``sent`` with
    ``Journal.write``. Only the requests are left out, so millions of rows take minutes.
    """
    t0 = time.perf_counter()
    from bulk_events.delivery import Job
    from bulk_events.importer import make_validator, plan_layout
    from bulk_events.journal import Journal, Mark, State, utc_now
    from bulk_events.options import ImportOptions
    from bulk_events.reader import open_table
    from bulk_events.triage import Triage

    types = dict(t.split("=", 1) for t in TYPE_OPTIONS[1::2])
    options = ImportOptions.from_settings(event="bench", types=types, state=journal_path)
    target, source = options.target, Path(path)
    sent = other = 0
    table = open_table(source)
    try:
        layout, chosen = plan_layout(table, options, source.name)
        validator = make_validator(table, layout, options)
        with Journal.open(journal_path, destination=target.identity) as journal:
            run_id = journal.start_run(input=str(source), target=target.label)
            triage = Triage(
                layout,
                validator,
                identity=target.identity,
                selection=options.selection,
                journal=journal,
                chosen=chosen,
                run_id=run_id,
            )
            try:
                for chunk in table.chunks(options.reading.chunk_rows):
                    prepared = triage.prepare(chunk)
                    now = utc_now()
                    marks = [
                        Mark(fate.key, State.SENT, fate.row, 1, 200, "", now)
                        for _, fate in prepared.fates
                        if isinstance(fate, Job)
                    ]
                    journal.write(marks, run_id)
                    sent += len(marks)
                    other += len(prepared.fates) - len(marks)
            finally:
                triage.close()
            journal.finish_run(run_id, {"sent": sent, "not sent": other}, 0)
            counts = journal.counts()
    finally:
        table.close()
    return {"sent": sent, "not_sent": other, "journal": counts, "build_s": time.perf_counter() - t0}


# What each layer of the send path adds, alone in a process: what `sender` measures.
SENDER_LAYERS = {
    "transport": "bulk-events' transport alone (ApiTransport.send)",
    "deliverer": "+ the deliverer, its journal marks answered at once (none written)",
    "journal": "+ the journal: every mark committed (synchronous=FULL) before its step goes on",
}


def child_sender(
    base: str, path: str, concurrency: str, layer: str, journal_path: str
) -> dict[str, Any]:
    """One layer of bulk-events' send path and the layers under it, with N workers, on the
    same bodies as the bare baseline: none of the file's reading, checking, triage or report.

    ``transport`` posts each body with :class:`ApiTransport`; ``deliverer`` sends each as a
    :class:`Job` through the :class:`Deliverer` (rate limiter, verdicts, outcomes) with every
    journal mark answered at once, the bound of any design of the journal's writes;
    ``journal`` adds the real :class:`JournalWriter` on a real journal, as a run has it.
    """
    import asyncio
    import hashlib

    from bulk_events.delivery import Deliverer, Job
    from bulk_events.delivery.writer import JournalWriter
    from bulk_events.importer import run_sync
    from bulk_events.journal import Journal, Mark
    from bulk_events.outcome import Status
    from bulk_events.ratelimit import RateLimiter
    from bulk_events.transport.http import ApiTransport

    if layer not in SENDER_LAYERS:
        raise SystemExit(f"unknown layer {layer!r}")
    bodies = _bodies(path)
    workers = int(concurrency)

    async def run() -> dict[str, Any]:
        transport = ApiTransport(base, CLIENT_ID, CLIENT_SECRET, "bench", concurrency=workers)
        await transport.open()
        journal = writer = None
        sent = 0
        try:
            if layer == "transport":
                todo: Iterator[Any] = iter(bodies)

                async def worker() -> None:
                    nonlocal sent
                    for body in todo:
                        reply = await transport.send(body)
                        sent += 200 <= reply.status < 300

            else:
                journal = Journal.open(journal_path, destination="bench")
                writer = JournalWriter(journal, journal.start_run(input=path, target="bench"))
                if layer == "deliverer":

                    async def answered(mark: Mark) -> None:
                        return None

                    writer.record = answered  # type: ignore[method-assign]
                deliverer = Deliverer(transport, RateLimiter(0), writer)
                todo = iter(
                    [
                        Job(i + 2, hashlib.blake2b(b"%d" % i, digest_size=16).digest(), body)
                        for i, body in enumerate(bodies)
                    ]
                )

                async def worker() -> None:
                    nonlocal sent
                    for job in todo:
                        outcome = await deliverer.deliver(job)
                        sent += outcome.status is Status.SENT

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(workers)))
            send_s = time.perf_counter() - t0
        finally:
            await transport.aclose()
            if writer is not None:
                writer.close()
            if journal is not None:
                journal.close()
        return {"sent": sent, "send_s": send_s}

    return run_sync(run())


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "write-xlsx": child_write_xlsx,
    "pandas-pandera": child_pandas_pandera,
    "openpyxl": child_openpyxl,
    "write-xls": child_write_xls,
    "write-ods": child_write_ods,
    "xlrd": child_xlrd,
    "pandas-odf": child_pandas_odf,
    "calamine": child_calamine,
    "build-journal": child_build_journal,
    "bare-aiohttp": child_bare_aiohttp,
    "sender": child_sender,
    "naive-requests": child_naive_requests,
}


# --- running and measuring children -------------------------------------------------------------


@dataclass
class Run:
    """One child process, as the kernel accounted for it."""

    label: str
    wall: float
    returncode: int
    peak_rss_mb: float
    cpu_s: float
    stdout: str
    stderr: str
    started_at: float = 0.0  # wall clock (time.time()) just before the child was spawned
    # The child and the processes it started, each at its own peak (Linux; None elsewhere):
    # ru_maxrss is the largest of them only. Sampled, so a process living less than a
    # sampling interval may be missed.
    processes_peak_mb: float | None = None
    processes: int = 1
    result: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None  # bulk-events' per-row report, for runs of the tool

    @property
    def summary(self) -> str:
        """bulk-events' closing summary line ("N rows: ..."), if it printed one."""
        return next(
            (ln.strip() for ln in self.stderr.splitlines() if " rows: " in ln or " row: " in ln), ""
        )


PEAK_SAMPLING = 0.25  # seconds between readings of each process's peak RSS


def _read_peaks(pid: int, peaks: dict[int, int]) -> None:
    """Each process's peak RSS (VmHWM, KiB) into ``peaks``: ``pid`` and its descendants."""
    todo, seen = [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[p] = max(peaks.get(p, 0), int(line.split()[1]))
                    break
        with contextlib.suppress(OSError, ValueError):
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())


class Children:
    """Every process the runner starts, so that all of them are stopped whatever happens."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.live: list[subprocess.Popen[bytes]] = []
        self.count = 0

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        # Benchmark the checkout this script belongs to, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env.pop("SENDPULSE_EVENT_URL", None)
        env.update(extra)
        return env

    def spawn(
        self, cmd: list[str], *, env: dict[str, str] | None = None, stdout: Any = None
    ) -> subprocess.Popen[bytes]:
        self.count += 1
        out = (
            stdout if stdout is not None else (self.workdir / f"child-{self.count}.out").open("wb")
        )
        err = (self.workdir / f"child-{self.count}.err").open("wb")
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env or self.env(),
            cwd=self.workdir,
        )
        proc._bench_files = (out, err)  # type: ignore[attr-defined]
        self.live.append(proc)
        return proc

    def measure(
        self,
        label: str,
        cmd: list[str],
        *,
        env: dict[str, str] | None = None,
        timeout: float = 600.0,
        while_running: Any = None,
    ) -> Run:
        """Run ``cmd`` to the end; wall time, peak RSS and CPU time of exactly that process."""
        started_at = time.time()
        started = time.perf_counter()
        proc = self.spawn(cmd, env=env)
        reaped: dict[str, Any] = {}

        def reap() -> None:
            _, status, usage = os.wait4(proc.pid, 0)
            reaped.update(at=time.perf_counter(), status=status, usage=usage)

        waiter = threading.Thread(target=reap, daemon=True)
        waiter.start()
        peaks: dict[int, int] = {}  # pid -> VmHWM in KiB, as last read
        sampled = 0.0
        while waiter.is_alive():  # on Ctrl-C, Children.stop_all() ends the child
            waiter.join(0.02)
            elapsed = time.perf_counter() - started
            if elapsed - sampled >= PEAK_SAMPLING:
                sampled = elapsed
                _read_peaks(proc.pid, peaks)
            if while_running is not None and waiter.is_alive():
                while_running(proc, elapsed)
            if elapsed > timeout and waiter.is_alive():
                proc.kill()
                waiter.join(10)
                reaped.setdefault("timed_out", True)
        proc.returncode = os.waitstatus_to_exitcode(reaped["status"])
        self.live.remove(proc)
        out_file, err_file = proc._bench_files  # type: ignore[attr-defined]
        out_file.close()
        err_file.close()
        stdout = Path(out_file.name).read_text(errors="replace")
        stderr = Path(err_file.name).read_text(errors="replace")
        usage = reaped["usage"]
        # Linux counts ru_maxrss in KiB, macOS in bytes.
        rss = (
            usage.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else usage.ru_maxrss / 1024
        )
        run = Run(
            label=label,
            wall=reaped["at"] - started,
            returncode=proc.returncode,
            peak_rss_mb=rss,
            cpu_s=usage.ru_utime + usage.ru_stime,
            stdout=stdout,
            stderr=stderr,
            started_at=started_at,
        )
        if peaks:
            # At least the largest one's peak, which the kernel counted to the end.
            run.processes_peak_mb = max(sum(peaks.values()) / 1024, rss)
            run.processes = len(peaks)
        if reaped.get("timed_out"):
            run.stderr += f"\n(killed after {timeout:.0f} s)"
        last = stdout.strip().splitlines()[-1:] if stdout.strip() else []
        if last and last[0].startswith("{"):
            with contextlib.suppress(ValueError):
                run.result = json.loads(last[0])
        return run

    def stop_all(self) -> None:
        for proc in list(self.live):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + 5
        for proc in list(self.live):
            with contextlib.suppress(Exception):
                proc.wait(max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(Exception):
                    proc.wait(5)
            for f in getattr(proc, "_bench_files", ()):
                with contextlib.suppress(Exception):
                    f.close()
        self.live.clear()


class Sink:
    """benchmarks/sink.py in its own process, on a free loopback port."""

    def __init__(self, children: Children, *args: str) -> None:
        self.children = children
        self.log = children.workdir / f"sink-{children.count + 1}.out"
        self.proc = children.spawn(
            [sys.executable, str(HERE / "sink.py"), *args], stdout=self.log.open("wb")
        )
        deadline = time.monotonic() + 30
        self.url = ""
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if "listening on " in text:
                self.url = text.split("listening on ", 1)[1].split()[0]
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not self.url.startswith("http://127.0.0.1:"):
            err = Path(self.proc._bench_files[1].name).read_text(errors="replace")  # type: ignore[attr-defined]
            self.stop()
            raise RuntimeError(f"the sink did not start: {err.strip()[-500:]}")

    def _call(self, method: str, path: str) -> dict[str, Any]:
        req = urllib.request.Request(
            self.url + path, method=method, data=b"" if method == "POST" else None
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except OSError as exc:  # the scenario fails, the runner goes on to the next one
            raise RuntimeError(f"the sink does not answer {path}: {exc}") from exc

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/__stats")

    def reset(self) -> None:
        self._call("POST", "/__reset")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc in self.children.live:
            self.children.live.remove(self.proc)
        for f in self.proc._bench_files:  # type: ignore[attr-defined]
            f.close()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the scenarios ------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    what: str
    seconds: float | None = None
    ratio: str = ""
    events_s: float | None = None
    rss_mb: float | None = None
    note: str = ""


@dataclass
class Verdict:
    target: str
    met: bool | None  # None: not measured
    figure: str


class Bench:
    def __init__(self, mode: str, workdir: Path, children: Children) -> None:
        self.mode = mode
        self.size = SIZES[mode]
        self.dir = workdir
        self.children = children
        self.rows: list[Row] = []
        self.verdicts: list[Verdict] = []
        self._files: dict[str, Path] = {}
        self._runs: dict[str, Run] = {}
        self.tool = self._tool_command()

    # -- helpers

    def _tool_command(self) -> list[str]:
        script = Path(sys.executable).parent / "bulk-events"
        if script.exists():
            return [str(script)]
        return [sys.executable, "-m", "bulk_events"]

    def child(self, name: str, *args: str) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "_child", name, *args]

    def say(self, text: str) -> None:
        print(f"  .. {text}", file=sys.stderr, flush=True)

    def csv_file(self, rows: int, *, invalid_share: float = 0.015, seed: int = 1) -> Path:
        key = f"csv-{rows}-{invalid_share}-{seed}"
        if key not in self._files:
            path = self.dir / f"contacts-{rows}{'-valid' if not invalid_share else ''}.csv"
            self.say(f"writing {path.name}")
            self._files[key] = write_csv(path, rows, seed=seed, invalid_share=invalid_share)
        return self._files[key]

    def tool_run(
        self,
        label: str,
        path: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        state: Path | None = None,
        **kw: Any,
    ) -> Run:
        """``bulk-events import PATH`` in a child, with a report and a journal (``state``, else
        a new one) of its own in the work folder."""
        stem = f"{''.join(ch if ch.isalnum() else '-' for ch in label)}-{self.children.count + 1}"
        report = self.dir / f"report-{stem}.csv"
        cmd = [
            *self.tool,
            "import",
            str(path),
            "--event",
            "bench",
            *TYPE_OPTIONS,
            "--report",
            str(report),
            "--state",
            str(state or self.dir / f"journal-{stem}.sqlite"),
            "-q",
            *extra,
        ]
        self.say(
            f"{label}: {' '.join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd))}"
        )
        run = self.children.measure(label, cmd, env=env, **kw)
        run.report = report
        return run

    def dry_run(self, rows: int) -> Run:
        """A dry run of the ``rows``-row file, made once and shared by the scenarios."""
        key = f"dry-{rows}"
        if key not in self._runs:
            self._runs[key] = self.fresh_dry_run(rows, f"dry run {rows:,}")
        return self._runs[key]

    def fresh_dry_run(self, rows: int, label: str) -> Run:
        """A dry run of the ``rows``-row file, made now (exit 1: it holds invalid rows)."""
        run = self.tool_run(label, self.csv_file(rows), "--dry-run", timeout=900)
        self._check(run, ok=(0, 1))
        return run

    @staticmethod
    def _check(run: Run, ok: tuple[int, ...] = (0,)) -> None:
        if run.returncode not in ok:
            tail = "\n".join(run.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"{run.label} exited {run.returncode}:\n{tail}")

    def verdict(self, target: str, met: bool | None, figure: str) -> None:
        self.verdicts.append(Verdict(target, met, figure))

    # -- 1. memory

    def memory(self) -> None:
        small, large = self.size["small"], self.size["large"]
        a, b = self.dry_run(small), self.dry_run(large)
        for rows, run in ((small, a), (large, b)):
            self.rows.append(
                Row(
                    "memory",
                    f"dry run, {rows:,}-row CSV",
                    run.wall,
                    "",
                    rows / run.wall,
                    run.peak_rss_mb,
                    _counts(run) + _together(run),
                )
            )
        growth = b.peak_rss_mb / a.peak_rss_mb
        self.rows.append(
            Row("memory", f"peak RSS {large:,} / {small:,} rows", None, f"{growth:.2f}x")
        )
        self.verdict(
            f"{large:,}-row dry run peak RSS <= 300 MB",
            b.peak_rss_mb <= 300,
            f"{b.peak_rss_mb:.0f} MB (the largest process{_together(b)})",
        )
        self.verdict(
            f"peak RSS at {large:,} rows <= 1.3x the {small:,}-row peak",
            growth <= 1.3,
            f"{growth:.2f}x ({b.peak_rss_mb:.0f} / {a.peak_rss_mb:.0f} MB)",
        )

    # -- 1b. how cost grows with the file

    def scale(self) -> None:
        sizes = [self.size["small"], self.size["large"], self.size["huge"]]
        runs = [self.dry_run(rows) for rows in sizes]
        base_rows, base_run = sizes[0], runs[0]
        for rows, run in zip(sizes, runs, strict=True):
            self.rows.append(
                Row(
                    "scale",
                    f"dry run, {rows:,}-row CSV",
                    run.wall,
                    f"{run.wall / base_run.wall:.2f}x",
                    rows / run.wall,
                    run.peak_rss_mb,
                    f"{rows / base_rows:.0f}x the rows; {run.wall / rows * 1e6:.1f} us/row, "
                    f"CPU {run.cpu_s:.1f} s; peak {run.peak_rss_mb / base_run.peak_rss_mb:.2f}x"
                    + _together(run),
                )
            )
        (large, huge), (b, c) = sizes[1:], runs[1:]
        self.verdict(
            f"{huge:,}-row dry run flat in memory (peak RSS <= 300 MB)",
            c.peak_rss_mb <= 300,
            f"{c.peak_rss_mb:.0f} MB, the largest process ({c.peak_rss_mb / base_run.peak_rss_mb:.2f}x "
            f"the {base_rows:,}-row peak{_together(c)})",
        )
        # Linear: the time per row does not grow with the file (start-up is amortised by then).
        per_row = (c.wall / huge) / (b.wall / large)
        self.verdict(
            f"time linear in rows (time per row at {huge:,} <= 1.2x that at {large:,})",
            per_row <= 1.2,
            f"{per_row:.2f}x ({c.wall / huge * 1e6:.1f} vs {b.wall / large * 1e6:.1f} us/row)",
        )

    # -- 1c. a rerun against a journal that has seen millions of rows

    def rerun(self) -> None:
        sizes = [self.size["rerun_small"], self.size["rerun_large"]]
        runs: list[Run] = []
        checks: list[str] = []
        # Building and rerunning 5M rows takes about half an hour on 2 cores: past the sink's
        # default life (it stops by itself in case a runner crashed).
        with Sink(self.children, "--mode", "minimal", "--max-seconds", "10800") as sink:
            env = self.children.env(
                SENDPULSE_API_URL=sink.url,
                SENDPULSE_CLIENT_ID=CLIENT_ID,
                SENDPULSE_CLIENT_SECRET=CLIENT_SECRET,
            )
            for rows in sizes:
                # Valid rows only: every one of them is sent, so a rerun skips every one.
                path = self.csv_file(rows, invalid_share=0.0, seed=7)
                journal = self.dir / f"journal-all-sent-{rows}.sqlite"
                self.say(f"journal of {path.name} with every row sent (the library, in a child)")
                built = self.children.measure(
                    f"journal {rows:,}",
                    self.child("build-journal", str(path), str(journal)),
                    env=env,
                    timeout=3600,
                )
                self._check(built)
                size_mb = (
                    sum(f.stat().st_size for f in journal.parent.glob(journal.name + "*")) / 2**20
                )
                self.rows.append(
                    Row(
                        "rerun",
                        f"journal built: {rows:,} rows sent",
                        built.wall,
                        "",
                        rows / built.wall,
                        built.peak_rss_mb,
                        f"read, validated and keyed as a run does, marked sent with "
                        f"Journal.write; {built.result.get('sent', 0):,} sent keys, "
                        f"{size_mb:,.0f} MB on disk",
                    )
                )
                sink.reset()
                tool = self.tool_run(
                    f"rerun {rows:,}",
                    path,
                    "--rate",
                    "0",
                    "--concurrency",
                    "100",
                    env=env,
                    state=journal,
                    timeout=3600,
                )
                events = sink.stats()["events"]
                already = _already_sent(tool.report)
                runs.append(tool)
                if tool.returncode != 0:
                    checks.append(f"{rows:,}: exit {tool.returncode}")
                if already != rows:
                    checks.append(f"{rows:,}: {already:,} of {rows:,} rows already sent")
                if events:
                    checks.append(f"{rows:,}: the sink received {events:,} events")
                dry = self._runs.get(f"dry-{rows}")
                perspective = (
                    f"; a dry run of {rows:,} rows: {dry.wall / rows * 1e6:.1f} us/row"
                    if dry is not None
                    else ""
                )
                self.rows.append(
                    Row(
                        "rerun",
                        f"rerun, {rows:,} rows all already sent",
                        tool.wall,
                        f"{(tool.wall / rows) / (runs[0].wall / sizes[0]):.2f}x",
                        rows / tool.wall,
                        tool.peak_rss_mb,
                        f"{tool.wall / rows * 1e6:.1f} us/row, CPU {tool.cpu_s:.1f} s; "
                        f"{already:,} already sent, sink got {events:,} events, "
                        f"exit {tool.returncode}{perspective}{_together(tool)}",
                    )
                )
        (small, large), (a, b) = sizes, runs
        self.verdict(
            f"reruns of {small:,} and {large:,} sent rows: every row already sent, "
            "0 events, exit 0",
            not checks,
            "; ".join(checks) or "yes, both",
        )
        per_row = (b.wall / large) / (a.wall / small)
        self.verdict(
            f"look-ups at full speed (time per row of the {large:,} rerun <= 1.2x the {small:,})",
            per_row <= 1.2,
            f"{per_row:.2f}x ({b.wall / large * 1e6:.1f} vs {a.wall / small * 1e6:.1f} us/row)",
        )
        self.verdict(
            f"{large:,}-row rerun peak RSS <= 300 MB",
            b.peak_rss_mb <= 300,
            f"{b.peak_rss_mb:.0f} MB, the largest process ({b.peak_rss_mb / a.peak_rss_mb:.2f}x "
            f"the {small:,}-row peak{_together(b)})",
        )

    # -- 2. read + validate overhead

    def overhead(self) -> None:
        rows = self.size["large"]
        path = self.csv_file(rows)
        ratios: list[float] = []
        # Rounds of one baseline and one dry run each, interleaved, judged on the median of
        # the rounds' ratios: on a busy machine the bare baseline moves as much as bulk-events
        # does, and one run against one can land either side of the line.
        for attempt in range(self.size["overhead_repeats"]):
            self.say(
                f"baseline: pd.read_csv(dtype=str) + pandera over {path.name} (round {attempt + 1})"
            )
            base = self.children.measure(
                "pandas+pandera", self.child("pandas-pandera", str(path)), timeout=900
            )
            self._check(base)
            tool = self.fresh_dry_run(rows, f"dry run {rows:,} round {attempt + 1}")
            r = base.result
            ratio = tool.wall / base.wall
            ratios.append(ratio)
            self.rows.append(
                Row(
                    "overhead",
                    f"bare read_csv + pandera, {rows:,} rows (round {attempt + 1})",
                    base.wall,
                    "1.00x",
                    rows / base.wall,
                    base.peak_rss_mb,
                    f"imports {r.get('import_s', 0):.1f} s, read {r.get('read_s', 0):.1f} s, validate {r.get('validate_s', 0):.1f} s",
                )
            )
            self.rows.append(
                Row(
                    "overhead",
                    f"bulk-events dry run, {rows:,} rows (round {attempt + 1})",
                    tool.wall,
                    f"{ratio:.2f}x",
                    rows / tool.wall,
                    tool.peak_rss_mb,
                    f"incl. the per-row report; CPU {tool.cpu_s:.1f} s",
                )
            )
        median = statistics.median(ratios)
        self.verdict(
            f"{rows:,}-row dry run <= 3x bare read_csv + pandera "
            + (f"(median of {len(ratios)} rounds)" if len(ratios) > 1 else "(one round)"),
            median <= 3,
            f"{median:.2f}x (rounds: {', '.join(f'{x:.2f}x' for x in ratios)})",
        )

    # -- 3. excel

    def excel(self) -> None:
        rows = self.size["xlsx"]
        xlsx, xls, ods, made = self._workbooks(rows)
        self.rows.append(
            Row(
                "excel",
                "inputs, written once per run",
                sum(made.values()),
                note="; ".join(f"{what} {seconds:.1f} s" for what, seconds in made.items()),
            )
        )
        cases = [
            (".xlsx", xlsx, rows, "openpyxl", "openpyxl read-only iter_rows"),
            (".xls", xls, min(rows, XLS_MAX_ROWS), "xlrd", "xlrd open_workbook, every cell"),
            (".ods", ods, rows, "pandas-odf", 'pandas read_excel(engine="odf")'),
        ]
        for kind, path, n, child, what in cases:
            if path is None:
                self.verdict(f"{n:,}-row {kind} dry run <= 0.5x {what}", None, "no input")
                continue
            self.say(f"baseline: {what}, {path.name}")
            base = self.children.measure(child, self.child(child, str(path)), timeout=1800)
            self._check(base)
            self.say(f"floor: bare python-calamine, {path.name}")
            floor = self.children.measure("calamine", self.child("calamine", str(path)))
            self._check(floor)
            tool = self.tool_run(f"{kind} dry run {n:,}", path, "--dry-run", timeout=900)
            self._check(tool, ok=(0, 1))
            ratio = tool.wall / base.wall
            for label, run, note in (
                (f"{what}, {n:,} rows", base, f"{base.result.get('cells', 0):,} cells"),
                (f"bare python-calamine, {n:,}-row {kind}", floor, "the floor, for perspective"),
            ):
                self.rows.append(
                    Row(
                        "excel",
                        label,
                        run.wall,
                        f"{run.wall / base.wall:.2f}x",
                        n / run.wall,
                        run.peak_rss_mb,
                        note,
                    )
                )
            self.rows.append(
                Row(
                    "excel",
                    f"bulk-events dry run, {n:,}-row {kind}",
                    tool.wall,
                    f"{ratio:.2f}x",
                    n / tool.wall,
                    tool.peak_rss_mb,
                    f"{_counts(tool)}; {tool.wall / floor.wall:.1f}x the calamine floor",
                )
            )
            self.verdict(
                f"{n:,}-row {kind} dry run <= 0.5x {what}",
                ratio <= 0.5,
                f"{tool.wall:.1f} s vs {base.wall:.1f} s ({ratio:.3f}x)",
            )

    def _workbooks(self, rows: int) -> tuple[Path, Path | None, Path | None, dict[str, float]]:
        """The .xlsx, .xls and .ods of the excel scenario, with the same cells, and how long each
        took to write. The .xls holds at most 65,535 rows under its header (the format's limit);
        the .ods is LibreOffice's conversion of the .xlsx when ``soffice`` is installed (seconds),
        else written through pandas and odfpy (minutes)."""
        made: dict[str, float] = {}
        xlsx = self.dir / f"contacts-{rows}.xlsx"
        self.say(f"writing {xlsx.name} (openpyxl, in a child process)")
        run = self.children.measure("write xlsx", self.child("write-xlsx", str(xlsx), str(rows)))
        self._check(run)
        made[".xlsx (openpyxl)"] = run.wall
        xls_rows = min(rows, XLS_MAX_ROWS)
        xls: Path | None = self.dir / f"contacts-{xls_rows}.xls"
        assert xls is not None
        self.say(f"writing {xls.name} (xlwt, in a child process)")
        run = self.children.measure("write xls", self.child("write-xls", str(xls), str(xls_rows)))
        if run.returncode:
            self.say(f"no .xls: {run.stderr.strip().splitlines()[-1:]}")
            xls = None
        else:
            made[f".xls (xlwt, {xls_rows:,} rows)"] = run.wall
        ods: Path | None = xlsx.with_suffix(".ods")
        assert ods is not None
        soffice = shutil.which("soffice") or shutil.which("libreoffice")
        if soffice:
            self.say(f"converting {xlsx.name} to {ods.name} (LibreOffice, headless)")
            profile = (self.dir / "libreoffice-profile").as_uri()  # never the user's own profile
            cmd = [soffice, f"-env:UserInstallation={profile}", "--headless", "--convert-to",
                   "ods", "--outdir", str(self.dir), str(xlsx)]  # fmt: skip
            run = self.children.measure("soffice", cmd, timeout=900)
            how = "LibreOffice from the .xlsx"
        else:
            self.say(f"writing {ods.name} (pandas + odfpy, in a child process: minutes)")
            run = self.children.measure(
                "write ods", self.child("write-ods", str(ods), str(rows)), timeout=3600
            )
            how = "pandas + odfpy"
        if run.returncode or not ods.exists():
            self.say(f"no .ods: {run.stderr.strip().splitlines()[-1:]}")
            ods = None
        else:
            made[f".ods ({how})"] = run.wall
        return xlsx, xls, ods, made

    # -- 4. sending without a limit

    def send(self) -> None:
        n = self.size["send"]
        path = self.csv_file(n, invalid_share=0.0, seed=3)
        best_tool: tuple[float, float] | None = None  # (end-to-end events/s, sink-side events/s)
        best_bare: tuple[float, float] | None = None
        with Sink(self.children, "--mode", "minimal") as sink:
            env = self.children.env(
                SENDPULSE_API_URL=sink.url,
                SENDPULSE_CLIENT_ID=CLIENT_ID,
                SENDPULSE_CLIENT_SECRET=CLIENT_SECRET,
            )
            for attempt in range(self.size["send_repeats"]):
                # Interleaved, so that drift of a busy machine hits both sides alike.
                sink.reset()
                self.say(f"baseline: bare aiohttp, {n:,} events, 100 workers (round {attempt + 1})")
                bare = self.children.measure(
                    "bare aiohttp",
                    self.child("bare-aiohttp", sink.url, str(path), "100"),
                    timeout=600,
                )
                self._check(bare)
                s = sink.stats()
                # Both sides are credited with what the sink received, nothing they claim.
                bare_rates = (s["events"] / bare.wall, _sink_rate(s))
                self.rows.append(
                    Row(
                        "send",
                        f"bare aiohttp, c=100, {n:,} events",
                        bare.wall,
                        "",
                        bare_rates[0],
                        bare.peak_rss_mb,
                        f"sink saw {s['events']:,} at {bare_rates[1]:,.0f}/s; CPU {bare.cpu_s:.1f} s",
                    )
                )
                sink.reset()
                tool = self.tool_run(
                    f"send {n:,}", path, "--rate", "0", "--concurrency", "100", env=env, timeout=900
                )
                self._check(tool)
                s = sink.stats()
                tool_rates = (s["events"] / tool.wall, _sink_rate(s))
                self.rows.append(
                    Row(
                        "send",
                        f"bulk-events --rate 0 --concurrency 100, {n:,}",
                        tool.wall,
                        "",
                        tool_rates[0],
                        tool.peak_rss_mb,
                        f"sink saw {s['events']:,} at {tool_rates[1]:,.0f}/s; CPU {tool.cpu_s:.1f} s; "
                        f"{_counts(tool)}",
                    )
                )
                if best_bare is None or bare_rates[0] > best_bare[0]:
                    best_bare = bare_rates
                if best_tool is None or tool_rates[0] > best_tool[0]:
                    best_tool = tool_rates
            limit = self.size["requests"]
            sink.reset()
            self.say(f"perspective: sequential requests.post, {limit} events")
            naive = self.children.measure(
                "requests",
                self.child("naive-requests", sink.url, str(path), str(limit)),
                timeout=300,
            )
            self._check(naive)
            r = naive.result
            self.rows.append(
                Row(
                    "send",
                    f"sequential requests.post, {limit} events",
                    naive.wall,
                    "",
                    r["sent"] / r["send_s"],
                    naive.peak_rss_mb,
                    "rate over the loop only",
                )
            )
        assert best_tool and best_bare
        end_to_end = best_tool[0] / best_bare[0]
        sink_side = best_tool[1] / best_bare[1]
        self.rows.append(
            Row(
                "send",
                "bulk-events / bare aiohttp throughput",
                None,
                f"{end_to_end:.2f}x",
                note=f"while sending (sink side): {sink_side:.2f}x",
            )
        )
        self.verdict(
            "send throughput >= 70% of bare aiohttp (whole process, best of each)",
            end_to_end >= 0.7,
            f"{end_to_end:.0%} ({best_tool[0]:,.0f} vs {best_bare[0]:,.0f} events/s; while sending {sink_side:.0%})",
        )

    # -- 4b. the send path's layers, each alone

    def sender(self) -> None:
        """Where a send's time goes, layer by layer: each layer alone in a process of its own,
        posting the same bodies as the bare client, with none of a run's reading, checking,
        triage or report. Rates are over the sending loop only (no start-up), on both sides."""
        n = self.size["send"]
        path = self.csv_file(n, invalid_share=0.0, seed=3)
        ratios: dict[str, list[float]] = {layer: [] for layer in SENDER_LAYERS}
        with Sink(self.children, "--mode", "minimal") as sink:
            for attempt in range(self.size["sender_repeats"]):
                rates: dict[str, float] = {}
                for layer in ("bare", *SENDER_LAYERS):
                    sink.reset()
                    self.say(f"{layer}: {n:,} events, 100 workers (round {attempt + 1})")
                    if layer == "bare":
                        command = self.child("bare-aiohttp", sink.url, str(path), "100")
                    else:
                        journal = self.dir / f"sender-{layer}-{attempt + 1}.sqlite"
                        command = self.child(
                            "sender", sink.url, str(path), "100", layer, str(journal)
                        )
                    run = self.children.measure(f"sender {layer}", command, timeout=600)
                    self._check(run)
                    events = sink.stats()["events"]
                    if events != n or run.result["sent"] != n:
                        raise RuntimeError(
                            f"sender {layer}: the sink got {events:,} of {n:,}, "
                            f"the client counted {run.result['sent']:,} sent"
                        )
                    rates[layer] = events / run.result["send_s"]
                    what = "bare aiohttp client" if layer == "bare" else SENDER_LAYERS[layer]
                    ratio = ""
                    if layer != "bare":
                        ratios[layer].append(rates[layer] / rates["bare"])
                        ratio = f"{ratios[layer][-1]:.2f}x"
                    self.rows.append(
                        Row(
                            "sender",
                            f"{what}, round {attempt + 1}",
                            run.result["send_s"],
                            ratio,
                            rates[layer],
                            run.peak_rss_mb,
                            f"CPU {run.cpu_s:.1f} s (start-up included)",
                        )
                    )
        self.rows.append(
            Row(
                "sender",
                "each layer / bare aiohttp, median of rounds",
                None,
                note="; ".join(
                    f"{layer} {statistics.median(r):.2f}x" for layer, r in ratios.items()
                ),
            )
        )

    # -- 5. at the service's limit

    def rate(self) -> None:
        n = self.size["rate"]
        path = self.csv_file(n, invalid_share=0.0, seed=5)
        dry = self.tool_run(f"dry run {n}", path, "--dry-run", timeout=300)
        self._check(dry)
        with Sink(
            self.children, "--mode", "sandbox", "--latency", "0.25", "--rate-limit", "10"
        ) as sink:
            env = self.children.env(
                SENDPULSE_API_URL=sink.url,
                SENDPULSE_CLIENT_ID=CLIENT_ID,
                SENDPULSE_CLIENT_SECRET=CLIENT_SECRET,
            )
            tool = self.tool_run(
                f"rate 10, {n}", path, "--rate", "10", env=env, timeout=n / 10 * 3 + 60
            )
            s = sink.stats()
        self._check(tool, ok=(0, 1))
        sent = _count(tool, "sent") or s["events"] - s["refused"]
        achieved = _sink_rate(s)
        per_1000 = tool.cpu_s / max(sent, 1) * 1000
        self.rows.append(
            Row(
                "rate",
                f"bulk-events --rate 10, {n} events, sandbox 0.25 s / 10 per s",
                tool.wall,
                "",
                achieved,
                tool.peak_rss_mb,
                f"{s['refused']} refused (429), busiest second {s['max_in_window']}, "
                f"{s['events']} requests; CPU {tool.cpu_s:.2f} s "
                f"(a dry run of the same file: {dry.cpu_s:.2f} s)",
            )
        )
        self.verdict(
            "achieved rate >= 97% of 10/s",
            achieved >= 9.7,
            f"{achieved:.2f} events/s ({achieved / 10:.1%})",
        )
        self.verdict(
            "zero 429 refusals at the limit",
            s["refused"] == 0,
            f"{s['refused']} refused; {sent} of {n} sent",
        )
        self.verdict(
            "CPU per 1,000 events at 10/s (reported)",
            None,
            f"{per_1000:.2f} CPU-s per 1,000 events over {tool.wall:.0f} s "
            f"({tool.cpu_s:.2f} CPU-s in all, of which start-up and reading ~{dry.cpu_s:.2f}, "
            "as a dry run of the same file shows)",
        )

    # -- 6. time to first event

    def first_event(self) -> None:
        rows = self.size["large"]
        path = self.csv_file(rows)
        with Sink(self.children, "--mode", "minimal") as sink:
            env = self.children.env(
                SENDPULSE_API_URL=sink.url,
                SENDPULSE_CLIENT_ID=CLIENT_ID,
                SENDPULSE_CLIENT_SECRET=CLIENT_SECRET,
            )
            state: dict[str, Any] = {"first": None, "interrupted": 0, "last_poll": 0.0}

            def watch(proc: subprocess.Popen[bytes], elapsed: float) -> None:
                # Once the first event has arrived, Ctrl-C the importer: the rest is not measured.
                if state["first"] is None and elapsed - state["last_poll"] >= 0.05:
                    state["last_poll"] = elapsed
                    first = sink.stats()["first_event_at"]
                    if first is not None:
                        state["first"] = first
                if (state["first"] is not None or elapsed > 120) and state["interrupted"] == 0:
                    proc.send_signal(signal.SIGINT)
                    state["interrupted"] = 1
                    state["at"] = elapsed
                elif state["interrupted"] == 1 and elapsed - state["at"] > 60:
                    proc.send_signal(signal.SIGINT)  # the second Ctrl-C stops at once
                    state["interrupted"] = 2

            tool = self.tool_run(
                f"first event, {rows:,}", path, env=env, timeout=300, while_running=watch
            )
        if state["first"] is None:
            self.rows.append(
                Row(
                    "first-event",
                    f"first event, {rows:,}-row CSV",
                    None,
                    note=f"no event arrived (exit {tool.returncode})",
                )
            )
            self.verdict("time to first event: a few seconds", False, "no event arrived")
            return
        ttfe = state["first"] - tool.started_at
        self.rows.append(
            Row(
                "first-event",
                f"process start -> first event, {rows:,}-row CSV",
                ttfe,
                "",
                None,
                tool.peak_rss_mb,
                f"then Ctrl-C: exit {tool.returncode} after {tool.wall:.1f} s",
            )
        )
        self.verdict("time to first event: a few seconds (<= 5 s)", ttfe <= 5, f"{ttfe:.2f} s")


def _count(run: Run, status: str) -> int:
    """A status count from bulk-events' summary line ("... 49,000 sent, 12 invalid in ...")."""
    line = run.summary
    for part in line.split(": ", 2)[-1].replace(" in ", ", ").split(", "):
        words = part.split()
        if len(words) >= 2 and words[1] == status and words[0].isdigit():
            return int(words[0])
    return 0


def _together(run: Run) -> str:
    """How much memory the run's processes held together, if it had more than one."""
    if run.processes_peak_mb is None or run.processes < 2:
        return ""
    return (
        f"; {run.processes} processes, {run.processes_peak_mb:.0f} MB together (each at its peak)"
    )


def _counts(run: Run) -> str:
    """The status counts of bulk-events' summary line, e.g. "985020 valid, 14980 invalid"."""
    line = run.summary
    return line.split(": ", 2)[-1].split(" in ")[0] if line else f"exit {run.returncode}"


def _already_sent(report: Path | None) -> int:
    """How many rows bulk-events' CSV report lists as skipped because they were already sent."""
    if report is None or not report.exists():
        return 0
    with report.open(newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f)
        head = next(rows, [])
        if "status" not in head or "error" not in head:
            return 0
        status, error = head.index("status"), head.index("error")
        return sum(
            1 for r in rows if r[status] == "skipped" and r[error].startswith("already sent")
        )


def _sink_rate(stats: dict[str, Any]) -> float:
    """Events per second as the server saw them, first to last arrival."""
    n = stats["events"]
    if n < 2 or not stats["first_event_at"]:
        return 0.0
    span = stats["last_event_at"] - stats["first_event_at"]
    return (n - 1) / span if span > 0 else 0.0


# --- output -------------------------------------------------------------------------------------


def load_average() -> str:
    """The 1-minute load average: other work on a 2-core machine skews every figure."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:  # pragma: no cover - not on this platform
        return "n/a"


def machine_facts() -> list[str]:
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    memory = ""
    try:
        import psutil

        memory = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        pass
    return [
        f"machine: {usable} usable cores of {cores} ({cpu or platform.machine()}){memory}, {platform.system()} {platform.release()}",
        f"python {platform.python_version()} ({sys.executable}); bulk-events {version('bulk-events')}, "
        f"pandas {version('pandas')}, pandera {version('pandera')}, aiohttp {version('aiohttp')}, "
        f"openpyxl {version('openpyxl')}, python-calamine {version('python-calamine')}, "
        f"xlrd {version('xlrd')}, xlwt {version('xlwt')}, odfpy {version('odfpy')}, "
        f"sink event loop: {'uvloop ' + version('uvloop') if version('uvloop') != 'not installed' else 'asyncio'}",
    ]


def render(rows: list[Row]) -> str:
    head = ["scenario", "what", "time s", "ratio", "events/s", "peak RSS MB", "notes"]
    body = [
        [
            r.scenario,
            r.what,
            "" if r.seconds is None else f"{r.seconds:.2f}",
            r.ratio,
            ""
            if r.events_s is None
            else f"{r.events_s:,.0f}"
            if r.events_s >= 100
            else f"{r.events_s:.2f}",
            "" if r.rss_mb is None else f"{r.rss_mb:.0f}",
            r.note,
        ]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    widths[-1] = 0  # the notes column runs on
    right = {2, 3, 4, 5}

    def line(cells: list[str]) -> str:
        return " | ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "-+-".join("-" * w for w in widths[:-1]) + "-+-" + "-" * 5
    return "\n".join([line(head), rule, *(line(b) for b in body)])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        result = CHILDREN[argv[1]](*argv[2:])
        print(json.dumps(result), flush=True)
        return 0

    parser = argparse.ArgumentParser(
        description="Benchmark bulk-events against bare baselines on this machine."
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a minute or two")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these scenarios ({', '.join(SCENARIOS)}); repeatable or comma-separated",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (inputs, reports, logs)"
    )
    args = parser.parse_args(argv)
    chosen = [n.strip() for item in args.only for n in item.split(",") if n.strip()] or list(
        SCENARIOS
    )
    unknown = [n for n in chosen if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    # Even when started with SIGINT ignored (a background job of a script), Ctrl-C must stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    mode = "quick" if args.quick else "full"
    workdir = Path(tempfile.mkdtemp(prefix="bulk-events-bench-"))
    children = Children(workdir)
    bench = Bench(mode, workdir, children)
    print(
        f"bulk-events benchmark ({mode}); inputs and logs in {workdir}", file=sys.stderr, flush=True
    )
    load_before = load_average()
    started = time.perf_counter()
    failures: list[str] = []
    try:
        for name in SCENARIOS:
            if name not in chosen:
                continue
            print(f"[{name}]", file=sys.stderr, flush=True)
            try:
                getattr(bench, name.replace("-", "_"))()
            except RuntimeError as exc:
                failures.append(f"{name}: {exc}")
                print(f"  !! {name} failed: {exc}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every server and child", file=sys.stderr)
        return 130
    finally:
        children.stop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    total = time.perf_counter() - started
    print()
    print(f"bulk-events benchmark, {mode} run, {total:.0f} s in all")
    for fact in machine_facts():
        print(fact)
    print(
        f"load average (1 min) before {load_before}, after {load_average()}: "
        "well above the benchmark's own share (~1) means other work shared the cores"
    )
    print()
    print(render(bench.rows))
    print()
    for v in bench.verdicts:
        mark = "MET" if v.met else "NOT MET" if v.met is not None else "INFO"
        print(f"{mark:8} {v.target}: {v.figure}")
    for failure in failures:
        print(f"FAILED   {failure}")
    if mode == "quick":
        print(
            "(quick run: sizes are smaller than the targets name; run without --quick for the real figures)"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
