"""Headers holding control characters, NULs or line breaks: one visible form, compared, printed,
given back to the options and written to the report."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import read_report
from hypothesis import given
from hypothesis import strategies as st

from bulk_events.reader import open_table
from bulk_events.reader.excel import open_xlsx
from bulk_events.reader.header import visible_name

ODD = ["email", "Data\x1b[32m1", "First\nname", "\x00", "Tab\there", "Code"]
SHOWN = ["email", "Data\\x1b[32m1", "First\\nname", "\\x00", "Tab\\there", "Code"]


def odd_workbook(path: Path) -> Path:
    """Headers with an ESC, a line break, a NUL and a tab, as Excel stores them (``_x001B_``...)."""
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Data")
    ws.write_row(0, 0, ODD)
    ws.write_row(1, 0, ["a@x.com", "green", "Ann", "z", "t", "7"])
    ws.write_row(2, 0, ["b@x.com", "red", "Bob", "y", "u", "8"])
    wb.close()
    return path


def test_visible_name_escapes_controls_and_line_breaks_once() -> None:
    """Controls and line breaks inside a name are escaped; surrounding whitespace and whitespace
    -only names are left as written; plain names and backslashes are untouched."""
    assert visible_name("Data\x1b[32m1") == "Data\\x1b[32m1"
    assert visible_name("a\r\nb") == "a\\r\\nb"
    assert visible_name("x\x7fy\x85z\u2028") == "x\\x7fy\\x85z\\u2028"
    assert visible_name(" Email\n") == " Email\n"
    assert visible_name("\x0b") == "\x0b"
    assert visible_name("C:\\dir") == "C:\\dir"
    assert visible_name("Имя") == "Имя"


@given(st.text())
def test_visible_name_is_one_line_and_stable(text: str) -> None:
    """Whatever the header, its visible form holds no line break inside and escaping it again
    changes nothing (a report's header read back is the same name)."""
    shown = visible_name(text)
    assert visible_name(shown) == shown
    if text.strip():
        assert not any(ch in shown.strip() for ch in "\n\r\x00\x1b\u2028")


@pytest.mark.parametrize("engine", ["calamine", "openpyxl"])
def test_workbook_headers_read_in_their_visible_form(tmp_path: Path, engine: str) -> None:
    """Both Excel routes give the headers escaped, with the cells under them as they are."""
    with open_xlsx(odd_workbook(tmp_path / "h.xlsx"), None, engine=engine) as table:
        assert table.columns == SHOWN
        chunk = next(table.chunks())
    assert list(chunk.loc[2]) == ["a@x.com", "green", "Ann", "z", "t", "7"]


def test_csv_headers_read_in_the_same_visible_form(tmp_path: Path) -> None:
    """A CSV header with a quoted line break and an ESC reads as the workbook's does."""
    path = tmp_path / "h.csv"
    path.write_text('email,"First\nname",Data\x1b[32m1\na@x.com,Ann,g\n', encoding="utf-8")
    with open_table(path) as table:
        assert table.columns == ["email", "First\\nname", "Data\\x1b[32m1"]


def test_options_take_the_printed_name_or_the_raw_one(cli, tmp_path: Path) -> None:
    """--map, --type, --key and --exclude accept a header as printed (escaped) or as written
    (the characters themselves); every line of the output names it in its visible form."""
    path = odd_workbook(tmp_path / "h.xlsx")
    for spelled in ("Data\\x1b[32m1", "Data\x1b[32m1"):
        result = cli(
            "inspect",
            path,
            "--event",
            "e",
            "--map",
            f"{spelled}=colour",
            "--type",
            "Code=integer",
            "--key",
            "First\\nname",
            "--exclude",
            "\x00",
            "--exclude",
            "Tab\\there",
        )
        assert result.exit_code == 0, result.output
        out = result.output
        assert "\x1b" not in out and "\x00" not in out
        assert 'Data\\x1b[32m1  -> variable "colour" (string)' in out
        assert 'variable "First\\nname"' in out
        assert "Code" in out and "(integer)" in out
        assert "\\x00" not in out.split("Bodies:")[1].splitlines()[0]
        assert "--map 'Data\\x1b[32m1=colour'" in out  # the proposal repeats the visible name


def test_a_refusal_naming_such_headers_is_one_line(cli, tmp_path: Path) -> None:
    """A message listing the columns prints them escaped, on one line."""
    result = cli(
        "inspect", odd_workbook(tmp_path / "h.xlsx"), "--event", "e", "--map", "Nope=email"
    )
    assert result.exit_code != 0
    message = result.stderr.strip()
    assert "\n" not in message and "\x1b" not in message
    assert '"Data\\x1b[32m1", "First\\nname", "\\x00"' in message


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_the_report_carries_the_visible_names_and_reads_back_as_the_input(
    cli, tmp_path: Path, suffix: str
) -> None:
    """The report's header holds each header's visible form (an .xlsx cannot hold an ESC or a
    NUL); fed back in, it has the same columns and cells as the workbook it reports on."""
    path = odd_workbook(tmp_path / "h.xlsx")
    report = tmp_path / f"r{suffix}"
    result = cli("import", path, "--event", "e", "--dry-run", "--report", report)
    assert result.exit_code == 0, result.output
    if suffix == ".csv":
        assert set(SHOWN) <= set(read_report(report)[0])
    with open_table(report) as back, open_table(path) as original:
        assert back.columns == original.columns == SHOWN
        assert next(back.chunks()).equals(next(original.chunks()))
