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
    """An .xlsx report has no formula cells, only text."""
    path = tmp_path / "r.xlsx"
    with ReportWriter(path, ["Email", "status"]) as report:
        report.write(frame(), outcomes())
        report.commit()
    ws = openpyxl.load_workbook(path).active
    cells = [c for row in ws.iter_rows() for c in row]
    assert not any(c.data_type == "f" for c in cells)
    assert ws["H3"].value == "'=cmd"


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
    assert list(tmp_path.iterdir()) == []


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
    """A header that looks like a formula is neutralised in CSV and XLSX, and recovered on the way back."""
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
