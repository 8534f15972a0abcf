"""Which rows and cells of a sheet go out: rows and columns the sheet hides, where its header is,
and a bad phone beside a good email. Every test checks what arrived at the local sandbox."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest
from conftest import read_report, write_csv, write_xlsx

from bulk_events import import_file

FIXTURES = Path(__file__).parent / "fixtures"


def arrived(server) -> list[dict]:
    return server.bodies()


def statuses(report) -> list[tuple[int, str]]:
    return [(int(r["row"]), r["status"]) for r in read_report(report)]


def hidden_workbook(path: Path) -> Path:
    """Row 3 hidden by hand, row 5 hidden by an autofilter on Status, column C hidden."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Contacts"
    ws.append(["Email", "Status", "Internal note"])
    ws.append(["a@example.com", "active", ""])
    ws.append(["b@example.com", "active", "do not contact"])
    ws.append(["c@example.com", "active", ""])
    ws.append(["d@example.com", "left", "gone"])
    ws.append(["e@example.com", "active", "vip"])
    ws.row_dimensions[3].hidden = True
    ws.auto_filter.ref = "A1:C6"
    ws.auto_filter.add_filter_column(1, ["active"])
    ws.row_dimensions[5].hidden = True  # what Excel writes for a row its filter hides
    ws.column_dimensions["C"].hidden = True
    wb.save(path)
    return path


def test_a_sheet_that_hides_rows_stops_before_sending_until_told(api, tmp_path):
    """No --hidden: exit 2 with one line naming what is hidden and both choices; nothing sent."""
    server, cli = api()
    f = hidden_workbook(tmp_path / "list.xlsx")
    result = cli("import", f, "--event", "signup", "--report", tmp_path / "r.csv")
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "2 rows (3, 5)" in line and '"Internal note"' in line
    assert "--hidden skip" in line and "--hidden include" in line
    assert arrived(server) == []
    assert not (tmp_path / "r.csv").exists()


def test_hidden_skip_sends_only_what_the_sheet_shows(api, tmp_path):
    """--hidden skip: no hidden row, no hidden column goes out; each hidden row is reported as
    skipped, in its place, saying how to send it."""
    server, cli = api()
    f = hidden_workbook(tmp_path / "list.xlsx")
    r = tmp_path / "r.csv"
    result = cli("import", f, "--event", "signup", "--hidden", "skip", "--report", r)
    assert result.exit_code == 0, result.output
    assert arrived(server) == [
        {"email": "a@example.com", "Status": "active"},
        {"email": "c@example.com", "Status": "active"},
        {"email": "e@example.com", "Status": "active"},
    ]
    assert statuses(r) == [(2, "sent"), (3, "skipped"), (4, "sent"), (5, "skipped"), (6, "sent")]
    report = read_report(r)
    assert report[1]["error"] == "hidden in the sheet; --hidden include sends it"
    assert report[1]["Email"] == "" and "Internal note" not in report[1]  # never read
    assert "2 of them: hidden in the sheet" in result.output
    # A second run sends nothing new and still accounts for the hidden rows.
    result = cli("import", f, "--event", "signup", "--hidden", "skip", "--report", r)
    assert result.exit_code == 0 and len(arrived(server)) == 3
    assert statuses(r) == [(2, "skipped"), (3, "skipped"), (4, "skipped"), (5, "skipped"), (6, "skipped")]  # fmt: skip


def test_hidden_include_sends_everything(api, tmp_path):
    """--hidden include: hidden rows and the hidden column go out like the others."""
    server, cli = api()
    f = hidden_workbook(tmp_path / "list.xlsx")
    r = tmp_path / "r.csv"
    result = cli("import", f, "--event", "signup", "--hidden", "include", "--report", r)
    assert result.exit_code == 0, result.output
    assert [b["email"] for b in arrived(server)] == [f"{c}@example.com" for c in "abcde"]
    assert arrived(server)[1]["Internal note"] == "do not contact"
    assert statuses(r) == [(n, "sent") for n in range(2, 7)]


def test_hidden_rows_keep_their_places_across_chunks(tmp_path):
    """Through the Python API in chunks of two rows, one chunk holding only hidden rows: the
    report lists every row in sheet order, hidden ones skipped."""
    path = tmp_path / "h.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["email"])
    for n in range(2, 9):
        ws.append([f"u{n}@example.com"])
    for n in (3, 4, 5):
        ws.row_dimensions[n].hidden = True
    wb.save(path)
    report = tmp_path / "r.csv"
    result = import_file(
        path, event="e", dry_run=True, hidden="skip", chunk_rows=2, report=report
    )
    assert result.exit_code == 0
    assert statuses(report) == [
        (2, "valid"), (3, "skipped"), (4, "skipped"), (5, "skipped"),
        (6, "valid"), (7, "valid"), (8, "valid"),
    ]  # fmt: skip
    assert result.reasons["hidden"] == 3
    assert [r["email"] for r in read_report(report) if r["status"] == "valid"] == [
        "u2@example.com", "u6@example.com", "u7@example.com", "u8@example.com",
    ]  # fmt: skip


TITLED = [
    ["Customers, May 2024"],
    [],
    ["Name", "E-mail"],
    ["Ann", "ann@example.com"],
    ["Bob", "bob@example.com"],
]


def test_a_title_above_the_header_is_skipped_and_rows_keep_their_numbers(api, tmp_path):
    """A title and a blank row above the header: read without flags, sheet row numbers kept."""
    server, cli = api()
    f = write_xlsx(tmp_path / "t.xlsx", {"List": TITLED})
    r = tmp_path / "r.csv"
    result = cli("import", f, "--event", "signup", "--report", r)
    assert result.exit_code == 0, result.output
    assert arrived(server) == [
        {"email": "ann@example.com", "Name": "Ann"},
        {"email": "bob@example.com", "Name": "Bob"},
    ]
    assert statuses(r) == [(4, "sent"), (5, "sent")]


def test_an_ambiguous_header_names_header_row_which_then_reads_it(api, tmp_path):
    """Two rows that could be the header: refused naming --header-row; --header-row 4 reads
    the sheet from row 4 (its rows keep the sheet's numbers)."""
    server, cli = api()
    rows = [
        ["Report"],
        ["Email", "Phone"],
        ["old@example.com", "380501234567"],
        ["email", "Name"],
        ["ann@example.com", "Ann"],
    ]
    f = write_xlsx(tmp_path / "two.xlsx", {"List": rows})
    r = tmp_path / "r.csv"
    result = cli("import", f, "--event", "signup", "--report", r)
    assert result.exit_code == 2
    assert "--header-row 2 or --header-row 4" in result.output
    assert arrived(server) == []
    result = cli("import", f, "--event", "signup", "--header-row", "4", "--report", r)
    assert result.exit_code == 0, result.output
    assert arrived(server) == [{"email": "ann@example.com", "Name": "Ann"}]
    assert statuses(r) == [(5, "sent")]
    result = cli("import", f, "--event", "signup", "--header-row", "0", "--report", r)
    assert result.exit_code == 2 and "--header-row must be a row number from 1" in result.output


def test_hidden_and_header_row_from_a_config_file(api, tmp_path):
    """hidden = "skip" and header_row = 3 in the TOML file."""
    server, cli = api()
    path = tmp_path / "t.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in [["Customers"], ["exported by the shop"], ["Email", "Note"],
                ["ann@example.com", ""], ["bob@example.com", "do not contact"],
                ["cy@example.com", ""]]:  # fmt: skip
        ws.append(row)
    ws.row_dimensions[5].hidden = True
    wb.save(path)
    config = tmp_path / "job.toml"
    config.write_text(
        'input = "t.xlsx"\nevent = "signup"\nhidden = "skip"\nheader_row = 3\nreport = "r.csv"\n'
    )
    result = cli("import", "--config", config)
    assert result.exit_code == 0, result.output
    assert [b["email"] for b in arrived(server)] == ["ann@example.com", "cy@example.com"]
    assert statuses(tmp_path / "r.csv") == [(4, "sent"), (5, "skipped"), (6, "sent")]
    config.write_text('input = "t.xlsx"\nevent = "signup"\nhidden = "maybe"\n')
    result = cli("import", "--config", config)
    assert result.exit_code == 2 and '--hidden must be "skip" or "include"' in result.output


def test_inspect_shows_hidden_rows_and_proposes_the_choice(cli, tmp_path):
    """inspect does not stop on a sheet that hides rows: it warns, plans with --hidden skip and
    proposes it; with --hidden include it says that they are sent."""
    f = hidden_workbook(tmp_path / "list.xlsx")
    out = cli("inspect", f, "--event", "signup")
    assert out.exit_code == 0, out.output
    text = out.output
    assert "hides 2 rows (3, 5) and column \"Internal note\"" in text
    assert "an import stops until told" in text
    assert "3 to send" in text and "2 hidden" in text
    assert "--hidden skip" in text.split("To run it:")[1]
    assert 'hidden = "skip"' in text
    assert "Internal note" not in text.split("Bodies:")[1].split("\n")[0]
    out = cli("inspect", f, "--event", "signup", "--hidden", "include")
    assert "--hidden include sends them" in out.output and "5 to send" in out.output
    assert "--hidden include" in out.output.split("To run it:")[1]


@pytest.mark.parametrize("fixture", ["formats.xls", "formats.ods", "any_sheets.xlsb"])
def test_inspect_says_when_hidden_rows_cannot_be_told(cli, fixture):
    """.xls, .ods and .xlsb: the reader cannot see hiding; inspect warns that all is sent."""
    extra = ["--map", "1=phone"] if fixture.endswith(".xlsb") else []  # numbers under "1", "2"
    out = cli("inspect", FIXTURES / fixture, "--event", "signup", *extra)
    assert out.exit_code == 0, out.output
    warnings = out.output.split("Warnings:")[1]
    kind = fixture.rsplit(".", 1)[1]
    assert f"hidden rows and columns cannot be told in an .{kind} file" in warnings


def test_a_good_email_with_a_bad_phone_goes_out_by_email_alone(api, tmp_path):
    """A Shopify-like export: the row goes out without the phone and the report says which cell
    was wrong; a bad phone with no email is still invalid. The report reads back as input."""
    server, cli = api()
    f = write_csv(
        tmp_path / "shop.csv",
        [
            ["Email", "Phone", "First Name"],
            ["ann@example.com", "abc", "Ann"],
            ["bob@example.com", "'+19846270127", "Bob"],
            ["", "abc", "Cy"],
        ],
    )
    r = tmp_path / "r.csv"
    result = cli("import", f, "--event", "signup", "--report", r)
    assert result.exit_code == 1, result.output  # the row without an email is invalid
    assert arrived(server) == [
        {"email": "ann@example.com", "First Name": "Ann"},
        {"email": "bob@example.com", "phone": "+19846270127", "First Name": "Bob"},
    ]
    report = read_report(r)
    assert statuses(r) == [(2, "sent"), (3, "sent"), (4, "invalid")]
    assert report[0]["error"] == (
        'Phone "abc" is not a phone number (7 to 15 digits, an optional leading +): '
        "sent by email alone, without the phone"
    )
    assert report[0]["sent_phone"] == "" and report[1]["error"] == ""
    assert 'phone "abc" is not a phone number' in report[2]["error"]
    # Fed back in, the report is the original input: the sent rows are skipped, nothing resent.
    result = cli("import", r, "--event", "signup", "--report", tmp_path / "again.csv")
    assert [s for _, s in statuses(tmp_path / "again.csv")] == ["skipped", "skipped", "invalid"]
    assert len(arrived(server)) == 2


def test_dry_run_marks_a_row_going_out_by_email_alone(cli, tmp_path):
    """In a dry run the valid row carries the same warning."""
    f = write_csv(tmp_path / "s.csv", [["email", "phone"], ["ann@example.com", "12"]])
    r = tmp_path / "r.csv"
    assert cli("import", f, "--event", "e", "--dry-run", "--report", r).exit_code == 0
    (row,) = read_report(r)
    assert row["status"] == "valid"
    assert row["error"].startswith('Phone "12" is not a phone number')
    assert row["error"].endswith("sent by email alone, without the phone")
