"""The report: formula-safe, every format, atomic, and readable back as input."""

from __future__ import annotations

import csv
import json
import os

import openpyxl
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulk_events.errors import UsageError
from bulk_events.outcome import Outcome, Status
from bulk_events.reader.report_input import input_columns_of_report, is_report, unescape_formula
from bulk_events.report import (
    REPORT_COLUMNS,
    ReportWriter,
    escape_formula,
)


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("=1+2", "'=1+2"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-5", "-5"),
        ("+380501234567", "+380501234567"),
        ("-1.5e3", "-1.5e3"),
        ("hello", "hello"),
        ("", ""),
    ],
)
def test_escape_formula(value, escaped):
    """Formula starters are neutralised; plain numbers are left alone."""
    assert escape_formula(value) == escaped


@given(st.text(max_size=30))
def test_escape_round_trip(value):
    """Unescaping an escaped value gives back exactly the original, and no result starts a formula."""
    escaped = escape_formula(value)
    assert unescape_formula(escaped) == value
    if escaped[:1] in ("=", "+", "-", "@", "\t", "\r"):
        float(escaped)  # only plain numbers may start with a sign


def outcomes():
    return [
        Outcome(2, Status.SENT, "", 200, 1, "2026-11-27T10:00:00Z", '{"result": true}'),
        Outcome(4, Status.FAILED, "=HYPERLINK(evil)", 400, 1, None, "@bad"),
    ]


def frame():
    return pd.DataFrame(
        {"Email": ["a@b.co", "=cmd"], "status": ["vip", "-5"]}, index=[2, 4], dtype=object
    )


def test_csv_report_has_our_columns_first_and_is_escaped(tmp_path):
    """Our columns, then the input's (renamed on a clash); every formula neutralised."""
    path = tmp_path / "r.csv"
    with ReportWriter(path, ["Email", "status"]) as report:
        report.write(frame(), outcomes())
        report.commit()
    rows = list(csv.reader(path.open(encoding="utf-8-sig")))
    assert rows[0] == [*REPORT_COLUMNS, "Email", "status (input)"]
    assert rows[1][:3] == ["2", "sent", ""]
    assert rows[2][2] == "'=HYPERLINK(evil)"
    assert rows[2][6] == "'@bad"
    assert rows[2][7] == "'=cmd"
    assert rows[2][8] == "-5"


def test_xlsx_report_carries_no_live_formula(tmp_path):
    """An .xlsx report has no formula cells: formula-like text is a string cell, kept as is."""
    path = tmp_path / "r.xlsx"
    with ReportWriter(path, ["Email", "status"]) as report:
        report.write(frame(), outcomes())
        report.commit()
    ws = openpyxl.load_workbook(path).active
    cells = [c for row in ws.iter_rows() for c in row]
    assert not any(c.data_type == "f" for c in cells)
    assert ws["H3"].value == "=cmd" and ws["H3"].data_type == "s"
    assert ws["C3"].value == "=HYPERLINK(evil)" and ws["C3"].data_type == "s"


def test_jsonl_report(tmp_path):
    """A .jsonl report keeps types and the original cells untouched."""
    path = tmp_path / "r.jsonl"
    with ReportWriter(path, ["Email", "status"]) as report:
        report.write(frame(), outcomes())
        report.commit()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0]["status"] == "sent" and lines[0]["http_status"] == 200
    assert lines[1]["input"] == {"Email": "=cmd", "status": "-5"}


def test_report_appears_only_when_committed(tmp_path):
    """Until commit the final path does not exist; an aborted report leaves nothing behind."""
    path = tmp_path / "r.csv"
    report = ReportWriter(path, ["Email", "status"])
    report.write(frame(), outcomes())
    assert not path.exists()
    report.abort()
    assert not path.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["state"]  # the per-user state folder only
    assert list((tmp_path / "state").rglob("*.tmp")) == []


def test_unknown_report_extension_is_a_usage_error(tmp_path):
    """--report out.txt says which formats exist."""
    with pytest.raises(UsageError, match=r"\.csv, \.xlsx or \.jsonl"):
        ReportWriter(tmp_path / "out.txt", ["Email"])


def test_report_is_recognised_as_input():
    """A report's header is recognised and its input columns recovered."""
    header = [*REPORT_COLUMNS, "Email", "status (input)"]
    assert is_report(header)
    assert not is_report(["Email", "status"])
    assert input_columns_of_report(header) == ["Email", "status"]


@given(st.lists(st.text(max_size=12), max_size=20))
def test_column_escaping_matches_cell_escaping(values):
    """The vectorised column escape gives exactly what the per-cell escape gives."""
    from bulk_events.report import escape_column

    assert escape_column(pd.Series(values, dtype=object)) == [escape_formula(v) for v in values]


def test_header_cells_are_escaped_too(tmp_path):
    """A header that looks like a formula is neutralised in CSV (a ') and XLSX (a string cell),
    and recovered on the way back."""
    columns = ["email", '=HYPERLINK("http://evil/","x")', "@SUM(1)"]
    chunk = pd.DataFrame({c: ["v"] for c in columns}, index=[2], dtype=object)
    for name in ("r.csv", "r.xlsx"):
        path = tmp_path / name
        with ReportWriter(path, columns) as report:
            report.write(chunk, [Outcome(2, Status.VALID)])
            report.commit()
        if name.endswith(".csv"):
            header = next(csv.reader(path.open(encoding="utf-8-sig")))
        else:
            ws = openpyxl.load_workbook(path).active
            assert not any(c.data_type == "f" for c in ws[1])
            header = [c.value for c in ws[1]]
        if name.endswith(".csv"):
            assert header[len(REPORT_COLUMNS) + 1].startswith("'=")
        assert input_columns_of_report(header) == columns


def test_half_written_reports_of_dead_runs_are_removed(tmp_path):
    """A temporary report left by a killed run (pid gone) is deleted; a live run's is kept."""
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    orphan = tmp_path / f".r.csv.{dead.stdout.strip()}.tmp"
    orphan.write_text("personal data")
    live = tmp_path / f".r.csv.{os.getppid()}.tmp"
    live.write_text("in progress")
    ReportWriter(tmp_path / "r.csv", ["email"]).abort()
    assert not orphan.exists()
    assert live.exists()


def test_a_symlinked_report_path_is_written_through(tmp_path):
    """The report lands where a symlink points; the link itself stays."""
    target = tmp_path / "real.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    with ReportWriter(link, ["email"]) as report:
        report.write(
            pd.DataFrame({"email": ["a@b.co"]}, index=[2], dtype=object), [Outcome(2, Status.VALID)]
        )
        report.commit()
    assert link.is_symlink()
    assert "a@b.co" in target.read_text(encoding="utf-8-sig")


def test_orphans_of_default_named_reports_are_removed(tmp_path):
    """A killed run's default-named temporary report is cleaned up by the next run's report, whatever its time stamp."""
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    orphan = tmp_path / f".bulk-events-report-c-20261127-120045.csv.{dead.stdout.strip()}.tmp"
    orphan.write_text("personal data")
    ReportWriter(tmp_path / "bulk-events-report-c-20261127-130000.csv", ["email"]).abort()
    assert not orphan.exists()


# --------------------------------------------------------------------------- CSV convention


def test_semicolon_report_for_a_semicolon_input_has_a_bom_and_reads_back(tmp_path):
    """delimiter=";" gives a ;-separated report starting with a UTF-8 BOM (Excel then opens it as
    columns); the reader detects the ; and the BOM and gets every cell back."""
    from bulk_events.reader import open_table

    path = tmp_path / "r.csv"
    chunk = pd.DataFrame({"Email": ["a@b.co"], "Name": ["Иван; Jr"]}, index=[2], dtype=object)
    with ReportWriter(path, ["Email", "Name"], delimiter=";") as report:
        report.write(chunk, [Outcome(2, Status.VALID)])
        report.commit()
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfrow;status;error;")
    assert b";a@b.co;" in data and '"Иван; Jr"'.encode() in data
    with open_table(path) as table:
        assert table.detected.delimiter == ";"
        assert table.detected.report
        assert list(table.columns) == ["Email", "Name"]  # a report reads back as its input
        [rows] = list(table.chunks())
    assert rows["Name"].tolist() == ["Иван; Jr"]


def test_comma_report_keeps_its_bom_by_default_and_can_drop_it(tmp_path):
    """The default stays what it was (, with a BOM); bom=False writes plain UTF-8."""
    chunk = pd.DataFrame({"email": ["a@b.co"]}, index=[2], dtype=object)
    for bom in (True, False):
        path = tmp_path / f"r{bom}.csv"
        kwargs = {} if bom else {"bom": False}
        with ReportWriter(path, ["email"], **kwargs) as report:
            report.write(chunk, [Outcome(2, Status.VALID)])
            report.commit()
        data = path.read_bytes()
        assert data.startswith(b"\xef\xbb\xbfrow,status,") == bom
        assert data.startswith(b"row,status,") != bom


def test_an_unusable_delimiter_is_a_usage_error(tmp_path):
    """A quote, a letter or several characters cannot separate a CSV report."""
    for bad in ('"', "a", ";;", ""):
        with pytest.raises(UsageError, match="delimiter"):
            ReportWriter(tmp_path / "r.csv", ["email"], delimiter=bad)


# --------------------------------------------------------------------------- XLSX


def xlsx_report(tmp_path, rows=None, columns=("Email", "Note"), **kwargs):
    statuses = list(Status)
    rows = rows or [
        {"Email": f"user{i}@example.com", "Note": note}
        for i, note in enumerate(["=1+2", "#N/A", "''=x", "bell\x07", "x" * 300, "-5", "", "ok"])
    ]
    chunk = pd.DataFrame(rows, index=range(2, len(rows) + 2), dtype=object)
    outcomes = [
        Outcome(2 + i, statuses[i % len(statuses)], "", 200 if i % 2 else None, i)
        for i in range(len(rows))
    ]
    path = tmp_path / "r.xlsx"
    with ReportWriter(path, list(columns), **kwargs) as report:
        report.write(chunk, outcomes, **({"sent_as": None} if kwargs.get("sent_as") else {}))
        report.commit()
    return openpyxl.load_workbook(path), outcomes


def test_xlsx_report_has_a_frozen_header_a_filter_and_typed_cells(tmp_path):
    """Frozen bold header, an autofilter over header and data, numbers as numbers, every text as
    a string cell (formula-like text, error literals and control characters included)."""
    book, outcomes = xlsx_report(tmp_path)
    ws = book.active
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:I{len(outcomes) + 1}"
    assert all(c.font.b for c in ws[1])
    assert [c.value for c in ws[1]] == [*REPORT_COLUMNS, "Email", "Note"]
    notes = {ws.cell(r, 9).value: ws.cell(r, 9) for r in range(2, ws.max_row + 1)}
    assert notes["=1+2"].data_type == "s"
    assert notes["#N/A"].data_type == "s"  # not an error cell
    assert "'''=x" in notes  # one more ', so reading the report back gives ''=x again
    assert "bell\ufffd" in notes  # XML 1.0 cannot hold \x07
    assert notes["-5"].data_type == "s"  # input cells are text as read, not numbers
    assert ws["A2"].value == 2 and ws["A2"].data_type == "n"
    assert ws["E3"].value == 1 and ws["D3"].value == 200 and ws["D2"].value is None
    assert not any(c.data_type == "f" for row in ws.iter_rows() for c in row)


def test_xlsx_status_cells_are_coloured_and_widths_are_capped(tmp_path):
    """The status cell carries its status's colour; widths follow the content, capped."""
    from bulk_events.report_xlsx import MAX_COLUMN_WIDTH, STATUS_COLOURS

    book, outcomes = xlsx_report(tmp_path)
    ws = book.active
    for r, o in enumerate(outcomes, start=2):
        assert ws.cell(r, 2).value == o.status
        assert ws.cell(r, 2).fill.fgColor.rgb[-6:] == STATUS_COLOURS[o.status], o.status
    assert STATUS_COLOURS[Status.SENT] != STATUS_COLOURS[Status.FAILED]
    widths = {c: ws.column_dimensions[c].width for c in "ABHI"}
    assert widths["I"] == MAX_COLUMN_WIDTH  # the 300-character note
    assert len("user0@example.com") < widths["H"] < MAX_COLUMN_WIDTH
    assert widths["A"] < widths["H"]


def test_xlsx_report_memory_stays_flat(tmp_path):
    """Write-only: four times the rows do not take much more memory at peak."""
    import tracemalloc

    def peak(chunks: int) -> int:
        path = tmp_path / f"big{chunks}.xlsx"
        chunk = pd.DataFrame(
            {"Email": [f"user{i}@example.com" for i in range(400)], "n": ["=x"] * 400},
            dtype=object,
        )
        tracemalloc.start()
        with ReportWriter(path, ["Email", "n"]) as report:
            for c in range(chunks):
                outcomes = [Outcome(c * 400 + i, Status.SENT, "", 200, 1) for i in range(400)]
                report.write(chunk, outcomes)
            report.commit()
        result = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return result

    small, big = peak(1), peak(4)
    assert big < small * 1.5, (small, big)


# --------------------------------------------------------------------------- sent as


def test_sent_as_columns_show_what_went_out_beside_the_original_cells(tmp_path):
    """sent_as=True adds sent_email, sent_phone, sent_event after our columns; empty where
    nothing went out; an input column of the same name is renamed."""
    from bulk_events.report import SENT_AS_COLUMNS

    chunk = pd.DataFrame(
        {"Email": [" A@B.CO ", "bad", "c@d.co"], "sent_email": ["x", "y", "z"]},
        index=[2, 3, 4],
        dtype=object,
    )
    outcomes = [
        Outcome(2, Status.SENT),
        Outcome(3, Status.INVALID, "bad email"),
        Outcome(4, Status.PENDING),
    ]
    sent = [
        ("a@b.co", "+380501234567", "signup"),
        ("bad", None, "signup"),  # given, but the row was invalid: nothing went out
        {"email": "c@d.co", "phone": None, "event": "signup"},
    ]
    path = tmp_path / "r.csv"
    with ReportWriter(path, ["Email", "sent_email"], sent_as=True) as report:
        report.write(chunk, outcomes, sent_as=sent)
        report.commit()
    rows = list(csv.reader(path.open(encoding="utf-8-sig")))
    n = len(REPORT_COLUMNS)
    assert rows[0] == [*REPORT_COLUMNS, *SENT_AS_COLUMNS, "Email", "sent_email (input)"]
    assert rows[1][n:] == ["a@b.co", "+380501234567", "signup", " A@B.CO ", "x"]
    assert rows[2][n : n + 3] == ["", "", ""]
    assert rows[3][n : n + 3] == ["", "", ""]  # pending: never went out

    for name in ("r.xlsx", "r.jsonl"):
        with ReportWriter(tmp_path / name, ["Email", "sent_email"], sent_as=True) as report:
            report.write(chunk, outcomes, sent_as=sent)
            report.commit()
    ws = openpyxl.load_workbook(tmp_path / "r.xlsx").active
    assert [c.value for c in ws[2]][n : n + 3] == ["a@b.co", "+380501234567", "signup"]
    first = json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])
    assert first["sent"] == {"email": "a@b.co", "phone": "+380501234567", "event": "signup"}
    assert first["input"] == {"Email": " A@B.CO ", "sent_email": "x"}


@pytest.mark.parametrize("name", ["r.csv", "r.xlsx", "r.jsonl"])
def test_sent_as_held_as_columns_writes_what_tuples_per_row_write(tmp_path, name):
    """The checker's SentColumns (a chunk's emails, phones and event as columns, with which
    rows have a body) and the same rows as tuples make the same report, in every format:
    a phone-only row, a row without a body, an invalid and a pending one, a formula."""
    import numpy as np

    from bulk_events.report import SentColumns

    chunk = pd.DataFrame({"Email": ["a", "b", "c", "d", "e"]}, index=range(2, 7), dtype=object)
    outcomes = [
        Outcome(2, Status.SENT),
        Outcome(3, Status.VALID),
        Outcome(4, Status.INVALID, "bad email"),
        Outcome(5, Status.PENDING),
        Outcome(6, Status.SKIPPED, "already sent"),
    ]
    emails = np.array(["a@b.co", None, None, "d@e.co", "=x@y.co"], dtype=object)
    phones = np.array([None, "+380501234567", None, None, None], dtype=object)
    has = np.array([True, True, False, True, True])
    columns = SentColumns(emails, phones, "signup", has)
    tuples = [(e, p, "signup") if h else None for e, p, h in zip(emails, phones, has, strict=True)]
    assert list(columns) == tuples and list(columns[1:3]) == tuples[1:3]
    for sent, out in ((columns, tmp_path / "a"), (tuples, tmp_path / "b")):
        out.mkdir()
        with ReportWriter(out / name, ["Email"], sent_as=True) as report:
            report.write(chunk, outcomes, sent_as=sent)
            report.commit()
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    if name == "r.csv":
        rows = list(csv.reader((tmp_path / "a" / name).open(encoding="utf-8-sig")))
        n = len(REPORT_COLUMNS)
        assert [r[n : n + 3] for r in rows[1:]] == [
            ["a@b.co", "", "signup"],
            ["", "+380501234567", "signup"],
            ["", "", ""],
            ["", "", ""],
            ["'=x@y.co", "", "signup"],
        ]


def test_without_sent_as_the_layout_is_unchanged(tmp_path):
    """Not asked for, the sent-as columns are absent (the report reads back as before)."""
    path = tmp_path / "r.csv"
    with ReportWriter(path, ["Email", "status"]) as report:
        report.write(frame(), outcomes())
        report.commit()
    header = next(csv.reader(path.open(encoding="utf-8-sig")))
    assert "sent_email" not in header and is_report(header)


# --------------------------------------------------------------------------- errors file


@pytest.mark.parametrize("name", ["errors.csv", "errors.xlsx"])
def test_errors_file_holds_only_rows_to_fix_and_reads_back_as_input(tmp_path, name):
    """--errors: only invalid and failed rows, with status and error and the input's own columns;
    read back, its input columns and values are exactly the original cells."""
    from bulk_events.reader import open_table
    from bulk_events.report import ErrorsWriter

    columns = ["Email", "Phone", "status"]
    chunk = pd.DataFrame(
        {
            "Email": ["ok@b.co", "bad@", "=cmd@x.co", "late@b.co", "gone@b.co"],
            "Phone": ["+380501234567", "-5", "'=1", "", "123"],
            "status": ["vip", "", "x", "y", "z"],
        },
        index=[2, 3, 4, 5, 6],
        dtype=object,
    )
    outs = [
        Outcome(2, Status.SENT, "", 200, 1),
        Outcome(3, Status.INVALID, "email: not an address"),
        Outcome(4, Status.FAILED, "HTTP 400: bad", 400, 1),
        Outcome(5, Status.PENDING),
        Outcome(6, Status.UNKNOWN, "no answer", None, 1),
    ]
    path = tmp_path / name
    with ErrorsWriter(path, columns, delimiter=";") as errors:
        errors.write(chunk.iloc[:2], outs[:2])
        errors.write(chunk.iloc[2:], outs[2:])
        assert errors.rows == 2
        errors.commit()
    if name.endswith(".csv"):
        text = path.read_text("utf-8-sig")
        raw = list(csv.reader(text.splitlines(), delimiter=";"))
    else:
        raw = [
            ["" if v is None else str(v) for v in r]
            for r in openpyxl.load_workbook(path).active.iter_rows(values_only=True)
        ]
    assert is_report(raw[0]) and input_columns_of_report(raw[0]) == columns
    status, error = raw[0].index("status"), raw[0].index("error")
    assert [r[status] for r in raw[1:]] == ["invalid", "failed"]
    assert [r[error] for r in raw[1:]] == ["email: not an address", "HTTP 400: bad"]
    with open_table(path) as table:  # fed back in, it reads as the input it came from
        assert table.detected.report and list(table.columns) == columns
        [back] = list(table.chunks())
    assert back.values.tolist() == [["bad@", "-5", ""], ["=cmd@x.co", "'=1", "x"]]


def test_errors_file_is_fed_back_in(cli, tmp_path):
    """An errors file, fixed, is accepted as input: the report's own columns are ignored and the
    input's columns are what is read."""
    from conftest import read_report

    from bulk_events.report import ErrorsWriter

    chunk = pd.DataFrame({"email": ["bad@", "fixed@example.com"]}, index=[2, 3], dtype=object)
    path = tmp_path / "errors.csv"
    with ErrorsWriter(path, ["email"]) as errors:
        errors.write(chunk, [Outcome(2, Status.INVALID, "bad"), Outcome(3, Status.FAILED, "x")])
        errors.commit()
    result = cli("import", path, "--event", "e", "--dry-run", "--report", tmp_path / "again.csv")
    rows = read_report(tmp_path / "again.csv")
    assert [(r["email"], r["status"]) for r in rows] == [
        ("bad@", "invalid"),
        ("fixed@example.com", "valid"),
    ], result.output


def test_errors_file_takes_csv_or_xlsx_only(tmp_path):
    """--errors x.jsonl says which formats an errors file can have."""
    from bulk_events.report import ErrorsWriter

    with pytest.raises(UsageError, match=r"--errors x\.jsonl: use a \.csv or \.xlsx"):
        ErrorsWriter(tmp_path / "x.jsonl", ["email"])


def test_a_report_with_sent_as_columns_reads_back_as_its_input(tmp_path):
    """The "sent as" columns are the report's own: fed back in, only the input's columns remain."""
    from bulk_events.reader import open_table

    path = tmp_path / "r.csv"
    frame = pd.DataFrame({"Email": ["a@x.com"], "sent_email": ["mine"]}, index=[2])
    with ReportWriter(path, ["Email", "sent_email"], sent_as=True) as writer:
        writer.write(frame, [Outcome(2, Status.SENT)], sent_as=[("a@x.com", None, "reg")])
        writer.commit()
    with open_table(path) as table:
        assert table.columns == ["Email", "sent_email"]
        (chunk,) = list(table.chunks())
    assert chunk.iloc[0].tolist() == ["a@x.com", "mine"]


# -- the CSV writer against a reference: csv.writer, one row at a time --------------------------


def _reference_csv(header, chunks, *, delimiter, bom, sent_as):
    """What a CSV report holds, written the simple way: escape every cell, csv.writer per row."""
    import io

    from bulk_events.report import _sent_cells

    out = io.StringIO(newline="")
    w = csv.writer(out, delimiter=delimiter)
    w.writerow([escape_formula(h) for h in header])
    for chunk, outs, sent in chunks:
        for i, o in enumerate(outs):
            row = [
                o.row,
                o.status,
                escape_formula(str(o.error)),
                "" if o.http_status is None else o.http_status,
                o.attempts,
                o.sent_at or "",
                escape_formula(str(o.response)),
            ]
            if sent_as:
                given = sent[i] if sent is not None else None
                row.extend(escape_formula(v) for v in _sent_cells(o.status, given))
            for c in chunk.columns:
                cell = chunk[c].iloc[i]
                row.append(escape_formula("" if pd.isna(cell) else str(cell)))
            w.writerow(row)
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode()


_PIECES = ["a", "Ann", " ", ",", ";", "|", "\t", '"', "'", "\r", "\n", "\r\n", "=", "+", "-", "@",
           "1", "5", ".", "e", "ї", "é", "€", "\x00", "\x01", "#N/A", "=SUM(A1)", "-5", "+380"]  # fmt: skip


def _random_text(rnd) -> str:
    return "".join(rnd.choice(_PIECES) for _ in range(rnd.choice([0, 0, 1, 1, 2, 3, 6])))


@pytest.mark.parametrize("seed", range(12))
def test_csv_report_bytes_equal_a_row_by_row_csv_writer(tmp_path, seed):
    """For random frames (delimiters, quotes, line breaks, formula starts, NUL, missing cells)
    and random outcomes, the chunked writer writes exactly the reference writer's bytes."""
    import random

    rnd = random.Random(seed)
    delimiter = [",", ";", "\t", "|", "\x00", "-"][seed % 6]
    bom, sent_as = seed % 3 != 0, seed % 2 == 0
    names = [_random_text(rnd) or f"c{j}" for j in range(rnd.randrange(0, 5))]
    names = list(dict.fromkeys(names))
    chunks = []
    row = 2
    for _ in range(rnd.randrange(1, 4)):
        n = rnd.randrange(0, 30)
        index = list(range(row, row + n))
        row += n
        data = {}
        for name in names:
            cells = [_random_text(rnd) if rnd.random() > 0.1 else None for _ in range(n)]
            if rnd.random() < 0.3:  # a column without a single formula start or quote
                cells = [f"plain{k}" for k in range(n)]
            data[name] = pd.Series(cells, index=index, dtype=object)
        chunk = pd.DataFrame(data, index=index, columns=names)
        outs = [
            Outcome(
                r,
                rnd.choice(list(Status)),
                _random_text(rnd),
                rnd.choice([None, 200, 429]),
                rnd.randrange(0, 3),
                rnd.choice([None, "2026-11-27T10:00:00Z"]),
                _random_text(rnd),
            )
            for r in index
        ]
        sent = None
        if sent_as and rnd.random() < 0.8:
            sent = [
                rnd.choice([None, (_random_text(rnd), None, "ev"), {"email": _random_text(rnd)}])
                for _ in index
            ]
        chunks.append((chunk, outs, sent))
    path = tmp_path / "r.csv"
    with ReportWriter(path, names, delimiter=delimiter, bom=bom, sent_as=sent_as) as report:
        for chunk, outs, sent in chunks:
            report.write(chunk, outs, sent_as=sent)
        header = report.header
        report.commit()
    expected = _reference_csv(header, chunks, delimiter=delimiter, bom=bom, sent_as=sent_as)
    assert path.read_bytes() == expected


@given(st.lists(st.text(alphabet="=+-@\t\r\n'0123456789.eE\x00a ", max_size=8), max_size=20))
def test_text_escaping_matches_cell_escaping_on_formula_like_text(values):
    """Over text made of formula starts, signs, digits, exponents and line breaks, the column
    escape (one scan, one expression per cell) equals escape_formula cell by cell."""
    from bulk_events.report import escape_texts

    assert escape_texts(list(values)) == [escape_formula(v) for v in values]


@given(st.lists(st.text(alphabet="=+-@\t\r'0123456789.eE\n\0 a", max_size=8), max_size=30))
def test_column_escaping_matches_cell_escaping_near_formulas_and_numbers(values):
    """Cells made of formula starts, digits, exponents, newlines and NULs: the column-wide
    scan escapes exactly the cells escape_formula escapes."""
    from bulk_events.report import escape_texts

    assert escape_texts(list(values)) == [escape_formula(v) for v in values]
