"""The command line on dry runs: exit codes, messages, the report, the sample files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from conftest import SAMPLES, contacts, read_report, write_csv, write_xlsx

import bulk_events


def test_sample_workbook_dry_run_is_all_valid(cli, tmp_path):
    """The README's sample file: every row valid, exit 0, a summary and the report path on stderr."""
    result = cli(
        "import",
        SAMPLES / "customers.xlsx",
        "--event",
        "registration",
        "--dry-run",
        "--report",
        tmp_path / "r.csv",
    )
    assert result.exit_code == 0, result.output
    rows = read_report(tmp_path / "r.csv")
    assert len(rows) == 14
    assert {r["status"] for r in rows} == {"valid"}
    assert [int(r["row"]) for r in rows] == [*range(2, 12), *range(13, 17)]  # row 12 is blank
    assert "14 valid" in result.stderr and str(tmp_path / "r.csv") in result.stderr


def test_messy_sample_reports_every_problem(cli, tmp_path):
    """The messy CSV: invalid rows with reasons, a duplicate naming its first row, exit 1."""
    result = cli(
        "import",
        SAMPLES / "customers-messy.csv",
        "--event",
        "registration",
        "--dry-run",
        "--report",
        tmp_path / "r.csv",
    )
    assert result.exit_code == 1
    rows = {int(r["row"]): r for r in read_report(tmp_path / "r.csv")}
    assert rows[2]["status"] == "valid"
    assert rows[3]["status"] == "invalid" and "email" in rows[3]["error"]
    # A good email with a bad phone goes out by the email alone; the error column says why.
    assert rows[4]["status"] == "valid" and rows[4]["error"].startswith('Phone "12345"')
    assert rows[4]["error"].endswith("sent by email alone, without the phone")
    assert rows[5]["status"] == "invalid" and "automation_id" in rows[5]["error"]
    assert rows[6]["error"] == "no email or phone"
    assert 7 not in rows and 13 not in rows  # blank rows are not reported
    assert rows[11]["status"] == "skipped" and "row 2" in rows[11]["error"]
    assert rows[10]["status"] == "invalid"
    assert rows[10]["Email"].startswith("'=HYPERLINK")  # escaped in the report
    statuses = {r["status"] for r in rows.values()}
    assert statuses == {"valid", "invalid", "skipped"}


def test_phone_typed_as_number_and_text_zip_keep_their_digits(cli, tmp_path):
    """Excel number cells are read as shown: no float, no lost leading zero, dates as dates."""
    path = write_xlsx(
        tmp_path / "c.xlsx",
        {
            "S": [
                ["Email", "Phone", "Zip", "Signup"],
                ["a@b.co", 380501234567, "01234", dt.date(2021, 5, 28)],
            ]
        },
    )
    report = tmp_path / "r.jsonl"
    result = cli(
        "import", path, "--event", "e", "--dry-run", "--report", report, "--type", "Signup=date"
    )
    assert result.exit_code == 0, result.output
    import json

    [line] = [json.loads(x) for x in report.read_text().splitlines()]
    assert line["input"] == {
        "Email": "a@b.co",
        "Phone": "380501234567",
        "Zip": "01234",
        "Signup": "2021-05-28",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv", "--event", "e", "--dry-run"], "missing.csv"),
        (["{f}", "--dry-run"], "--event NAME"),
        (["{f}", "--event", "e", "--url", "https://x.example/e", "--dry-run"], "one of them"),
        (["{f}", "--event", "e", "--dry-run", "--type", "nope=date"], '"nope"'),
        (["{f}", "--event", "e", "--dry-run", "--type", "name=money"], "must be one of"),
        (["{f}", "--event", "e", "--dry-run", "--type", "name"], "COLUMN=VALUE"),
        (["{f}", "--event", "e", "--dry-run", "--rate", "-1"], "--rate"),
        (["{f}", "--event", "e", "--dry-run", "--report", "out.txt"], ".jsonl"),
        (["{f}", "--event", "e", "--dry-run", "--bogus"], "No such option"),
        (["{f}", "--event", "e", "--dry-run", "--automation-id", "x"], "automation-id"),
    ],
)
def test_unusable_input_exits_2_with_one_line(cli, tmp_path, args, message):
    """Bad options and files: exit 2, a one-line reason, no traceback, no report."""
    f = write_csv(tmp_path / "c.csv", contacts(2))
    result = cli("import", *[a.replace("{f}", str(f)) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("bulk-events-report-*"))


def test_no_contact_column_exits_2(cli, tmp_path):
    """A file without an email or phone column is refused before anything else happens."""
    f = write_csv(tmp_path / "c.csv", [["name", "city"], ["Ann", "Kyiv"]])
    result = cli("import", f, "--event", "e", "--dry-run")
    assert result.exit_code == 2
    assert "no email or phone column" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_sheet_by_name_and_position(cli, tmp_path):
    """--sheet takes a name or a position counted from 1; an unknown one lists the sheets."""
    path = write_xlsx(
        tmp_path / "c.xlsx",
        {"Notes": [["just text"]], "Data": [["email"], ["a@b.co"], ["c@d.co"]]},
    )
    for sheet in ("Data", "2", "data"):
        result = cli(
            "import",
            path,
            "--event",
            "e",
            "--dry-run",
            "--sheet",
            sheet,
            "--report",
            tmp_path / "r.csv",
        )
        assert result.exit_code == 0, (sheet, result.output)
        assert len(read_report(tmp_path / "r.csv")) == 2
    result = cli("import", path, "--event", "e", "--dry-run", "--sheet", "Orders")
    assert result.exit_code == 2
    assert '"Notes"' in result.stderr and '"Data"' in result.stderr


def test_default_report_path_is_printed(cli, tmp_path):
    """Without --report, a report is written in the current folder and its path printed."""
    f = write_csv(tmp_path / "c.csv", contacts(3))
    result = cli("import", f, "--event", "e", "--dry-run")
    assert result.exit_code == 0
    [report] = list(Path.cwd().glob("bulk-events-report-c-*.csv"))
    assert str(report) in result.stderr
    assert len(read_report(report)) == 3


def test_xlsx_report(cli, tmp_path):
    """--report out.xlsx writes a workbook with one line per row."""
    import openpyxl

    f = write_csv(tmp_path / "c.csv", contacts(3))
    result = cli("import", f, "--event", "e", "--dry-run", "--report", tmp_path / "out.xlsx")
    assert result.exit_code == 0
    ws = openpyxl.load_workbook(tmp_path / "out.xlsx").active
    assert ws.max_row == 4 and ws["B2"].value == "valid"


def test_python_api_dry_run(tmp_path):
    """import_file returns counts and the exit code, like the CLI."""
    f = write_csv(tmp_path / "c.csv", [["Email", "n"], ["a@b.co", "1"], ["bad", "2"]])
    result = bulk_events.import_file(
        f, event="e", dry_run=True, report=tmp_path / "r.csv", types={"n": "integer"}
    )
    assert result.counts == {"valid": 1, "invalid": 1}
    assert result.exit_code == 1
    assert result.report_path == tmp_path / "r.csv"


def test_python_api_dry_run_prints_nothing(tmp_path, capfd):
    """A Python caller's dry run writes nothing to stdout or stderr (a duplicate, an invalid row
    and a bad --map included); what happened comes back as events and the result."""
    f = write_csv(
        tmp_path / "c.csv",
        [["E-mail", "n"], ["a@b.co", "1"], ["a@b.co", "1"], ["bad", "2"], ["c@d.co", "x"]],
    )
    events = []
    result = bulk_events.import_file(
        f,
        event="e",
        dry_run=True,
        report=tmp_path / "r.csv",
        map={"E-mail": "email"},
        types={"n": "integer"},
        on_event=events.append,
    )
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert result.counts == {"valid": 1, "skipped": 1, "invalid": 2}
    from bulk_events.events import Detected, Finished, Progress

    assert isinstance(events[0], Detected) and isinstance(events[-1], Finished)
    skipped = [e.outcome for e in events if isinstance(e, Progress) and e.outcome.reason]
    assert [o.reason for o in skipped] == [bulk_events.SkipReason.DUPLICATE]


def test_report_fed_back_as_input(cli, tmp_path):
    """A report is recognised as input: its own columns ignored, formula escaping undone."""
    f = write_csv(tmp_path / "c.csv", [["email", "note"], ["a@b.co", "=1+1"], ["c@d.co", "-5"]])
    assert (
        cli("import", f, "--event", "e", "--dry-run", "--report", tmp_path / "r1.csv").exit_code
        == 0
    )
    result = cli(
        "import",
        tmp_path / "r1.csv",
        "--event",
        "e",
        "--dry-run",
        "--report",
        tmp_path / "r2.jsonl",
    )
    assert result.exit_code == 0, result.output
    import json

    lines = [json.loads(x) for x in (tmp_path / "r2.jsonl").read_text().splitlines()]
    assert [x["input"] for x in lines] == [
        {"email": "a@b.co", "note": "=1+1"},
        {"email": "c@d.co", "note": "-5"},
    ]


def test_help_has_examples(cli):
    """Every command's help shows an example."""
    for command in ("import", "inspect"):
        result = cli(command, "--help")
        assert result.exit_code == 0
        assert "bulk-events " + command in result.output


def test_what_was_detected_is_said(cli, tmp_path):
    """A cp1251 file with ; and Russian headers runs with no flags, and the summary says what was detected."""
    f = tmp_path / "export.csv"
    f.write_bytes(
        "Эл. почта;Телефон;Имя\r\nivan@example.com;+7 912 345-67-89;Иван\r\n".encode("cp1251")
    )
    result = cli("import", f, "--event", "e", "--dry-run", "--report", tmp_path / "r.jsonl")
    assert result.exit_code == 0, result.output
    assert 'cp1251 (detected), delimiter ";" (detected)' in result.stderr
    import json

    [line] = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert line["input"]["Имя"] == "Иван"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--type", "name=date", "--date-format", "%Q"], "--date-format"),
        (["--type", "name=date", "--date-format", "dd/mm/yyyy"], "--date-format"),
        (["--default-country", "XX"], "--default-country"),
        (["--default-country", "ukraine"], "--default-country"),
    ],
)
def test_unusable_date_format_or_country_is_a_usage_error(cli, tmp_path, option, message):
    """Options that could never work are refused up front (exit 2), not per row or as a crash."""
    f = write_csv(tmp_path / "c.csv", contacts(2))
    result = cli("import", f, "--event", "e", "--dry-run", *option)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "internal error" not in result.stderr


def test_config_flags_can_be_turned_off_on_the_command_line(cli, tmp_path):
    """dry_run = true in a config file; --no-dry-run wins (and then credentials are needed)."""
    write_csv(tmp_path / "c.csv", contacts(1))
    cfg = tmp_path / "job.toml"
    cfg.write_text(
        'input = "c.csv"\nevent = "e"\ndry_run = true\n[credentials]\nclient_id_env = "UNSET_ID"\nclient_secret_env = "UNSET_SECRET"\n'
    )
    assert (
        cli("import", "--config", cfg, "--report", tmp_path / "r.csv").exit_code == 0
    )  # dry run needs no credentials
    result = cli("import", "--config", cfg, "--no-dry-run")
    assert result.exit_code == 2
    assert "UNSET_ID" in result.stderr


def test_a_first_sheet_that_is_not_data_points_to_the_others(cli, tmp_path):
    """A workbook whose first tab is notes: the error names the sheets and --sheet."""
    path = write_xlsx(
        tmp_path / "c.xlsx",
        {"Read me": [["This workbook has data on sheet 2"]], "Data": [["email"], ["a@b.co"]]},
    )
    result = cli("import", path, "--event", "e", "--dry-run")
    assert result.exit_code == 2
    assert "--sheet" in result.stderr and '"Data"' in result.stderr


def test_headers_in_another_language_with_map(cli, tmp_path):
    """--map names a Ukrainian header as the email and renames a variable; the body uses the new names."""
    f = write_csv(
        tmp_path / "c.csv", [["Адреса ел. пошти", "Ім'я клієнта"], ["olena@example.com", "Олена"]]
    )
    result = cli(
        "inspect",
        f,
        "--event",
        "e",
        "--map",
        "Адреса ел. пошти=email",
        "--map",
        "Ім'я клієнта=name",
    )
    assert result.exit_code == 0, result.output
    assert 'row 2: {"email":"olena@example.com","name":"Олена"}' in result.stdout


def test_rows_of_spaces_count_as_blank(cli, tmp_path):
    """A row whose cells hold only spaces looks blank in a spreadsheet: it is not reported, but counted."""
    f = write_csv(
        tmp_path / "c.csv", [["email", "name"], ["a@b.co", "A"], ["  ", " "], ["c@d.co", "C"]]
    )
    result = cli("import", f, "--event", "e", "--dry-run", "--report", tmp_path / "r.csv")
    assert result.exit_code == 0, result.output
    assert [(r["row"], r["status"]) for r in read_report(tmp_path / "r.csv")] == [
        ("2", "valid"),
        ("4", "valid"),
    ]


def test_jsonl_report_fed_back_keeps_original_row_numbers(cli, tmp_path):
    """A .jsonl report is read back from its input cells, under the original file's row numbers."""
    f = write_csv(tmp_path / "c.csv", [["email", "note"], ["a@b.co", "=1+1"], [], ["bad", "x"]])
    assert (
        cli("import", f, "--event", "e", "--dry-run", "--report", tmp_path / "r1.jsonl").exit_code
        == 1
    )
    result = cli(
        "import",
        tmp_path / "r1.jsonl",
        "--event",
        "e",
        "--dry-run",
        "--report",
        tmp_path / "r2.csv",
    )
    assert result.exit_code == 1, result.output
    assert "JSONL report" in result.stderr
    rows = read_report(tmp_path / "r2.csv")
    assert [(r["row"], r["status"], r["email"], r["note"]) for r in rows] == [
        ("2", "valid", "a@b.co", "'=1+1"),
        ("4", "invalid", "bad", "x"),
    ]


def test_jsonl_that_is_not_a_report_is_refused(cli, tmp_path):
    """Arbitrary JSON lines are not guessed at: a one-line reason, exit 2."""
    (tmp_path / "x.jsonl").write_text('{"email": "a@b.co"}\n')
    result = cli("import", tmp_path / "x.jsonl", "--event", "e", "--dry-run")
    assert result.exit_code == 2
    assert "bulk-events report" in result.stderr


def test_default_country_never_drops_a_row_with_a_bad_phone(cli, tmp_path):
    """A phone-only file with --default-country: bad numbers are reported invalid, float artefacts read right."""
    f = write_csv(
        tmp_path / "p.csv",
        [
            ["Phone", "Name"],
            ["050 123 45 67", "Olena"],
            ["050 123 45", ""],
            ["380501234568.0", ""],
            ["12345", ""],
            ["  ", " "],
        ],
    )
    result = cli(
        "import",
        f,
        "--event",
        "e",
        "--dry-run",
        "--default-country",
        "UA",
        "--report",
        tmp_path / "r.csv",
    )
    assert result.exit_code == 1, result.output
    assert [(r["row"], r["status"]) for r in read_report(tmp_path / "r.csv")] == [
        ("2", "valid"),
        ("3", "invalid"),
        ("4", "valid"),
        ("5", "invalid"),
    ]


def test_rows_of_spaces_are_blank_even_with_a_default_automation_id(cli, tmp_path):
    """--automation-id fills empty cells of real rows only; a row of spaces stays a blank row."""
    f = write_csv(tmp_path / "c.csv", [["email", "automation_id"], ["a@b.co", ""], ["  ", " "]])
    result = cli(
        "import",
        f,
        "--event",
        "e",
        "--dry-run",
        "--automation-id",
        "7",
        "--report",
        tmp_path / "r.csv",
    )
    assert result.exit_code == 0, result.output
    assert [(r["row"], r["status"]) for r in read_report(tmp_path / "r.csv")] == [("2", "valid")]


def test_joined_jsonl_reports_are_refused_clearly(cli, tmp_path):
    """Two reports concatenated repeat row numbers: a one-line reason, not a crash or a silent mix-up."""
    f = write_csv(tmp_path / "c.csv", [["email"], ["a@b.co"], ["c@d.co"]])
    cli("import", f, "--event", "e", "--dry-run", "--report", tmp_path / "r.jsonl")
    joined = tmp_path / "joined.jsonl"
    joined.write_bytes((tmp_path / "r.jsonl").read_bytes() * 2)
    result = cli("import", joined, "--event", "e", "--dry-run")
    assert result.exit_code == 2
    assert "joined together" in result.stderr


def test_report_path_must_be_a_regular_file(cli, tmp_path):
    """--report pointing at a folder (or a device) is refused rather than replaced."""
    f = write_csv(tmp_path / "c.csv", contacts(1))
    (tmp_path / "out").mkdir()
    result = cli("import", f, "--event", "e", "--dry-run", "--report", tmp_path / "out")
    assert result.exit_code == 2
    assert "not a regular file" in result.stderr
    assert (tmp_path / "out").is_dir()
