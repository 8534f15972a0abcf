"""Workbooks other than .xlsx: .xls, .ods and .xlsb read under the .xlsx contract, and refused
clearly (password, damage, hostile sizes) before python-calamine is let near them."""

from __future__ import annotations

import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bulk_events.errors import FileFormatError
from bulk_events.importer import Import, run_sync
from bulk_events.reader import open_table

sys.path.insert(0, str(Path(__file__).parent))
import files  # the test-file builders beside this module
from test_reader import peak_growth, read_all, records

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = FIXTURES / "hostile"
TYPES = {"amount": "number", "noise": "number", "zip": "integer", "signup": "date"}


def bodies(path: Path, **options: Any) -> dict[int, dict[str, Any]]:
    """Row number -> the event body a dry run builds for it, through the library."""
    run = Import(path, samples=1000, event="e", dry_run=True, types=TYPES, **options)
    run_sync(run.run())
    return dict(run.samples)


@pytest.mark.parametrize("suffix", [".xls", ".ods"])
def test_the_same_workbook_gives_the_same_bodies_in_every_format(suffix: str) -> None:
    """formats.xlsx saved by LibreOffice as .xls and .ods: the same rows, the same bodies, value
    by value and JSON type by JSON type (phones as digits, dates as ISO, booleans, durations)."""
    expected = bodies(FIXTURES / "formats.xlsx")
    got = bodies(FIXTURES / f"formats{suffix}")
    assert sorted(expected) == [2, 4, 5]  # row 3 is blank: skipped, still counted
    assert got.keys() == expected.keys()
    for row, body in expected.items():
        assert got[row].keys() == body.keys()
        for key, value in body.items():
            assert (key, got[row][key], type(got[row][key])) == (key, value, type(value))
    first = expected[2]
    assert isinstance(first["amount"], float) and isinstance(first["zip"], int)


@pytest.mark.parametrize("suffix", [".xlsx", ".xls", ".ods"])
def test_cells_read_as_a_person_sees_them(suffix: str) -> None:
    """Every typed cell renders as in the .xlsx: no float noise, TRUE/FALSE, [h]:mm:ss durations."""
    table, rows = read_all(FIXTURES / f"formats{suffix}")
    assert table.detected.sheets == ("Contacts", "Other")
    assert records(rows)[2] == [
        "olena@example.com",
        "380501234567",
        "01234",
        "1234",
        "2024-05-01",
        "2024-05-01T13:45:10",
        "08:30:00",
        "30:05:00",
        "TRUE",
        "12.5",
        "0.3",
        "Олена",
    ]
    assert list(rows.loc[4, ["took", "ok", "noise"]]) == ["1:30:00", "FALSE", "0.333333333333333"]


@pytest.mark.parametrize("suffix", [".xls", ".ods"])
@pytest.mark.parametrize("sheet", ["Other", "other", 2, "2"])
def test_sheet_by_name_or_position(suffix: str, sheet: str | int) -> None:
    """--sheet picks the same sheet in every format, by name (any case) or tab position."""
    table, rows = read_all(FIXTURES / f"formats{suffix}", sheet=sheet)
    assert table.detected.sheet == "Other"
    assert records(rows) == {2: ["dan@example.com", "second sheet"]}


@pytest.mark.parametrize("suffix", [".xls", ".ods"])
def test_unknown_sheet_is_the_same_error(suffix: str) -> None:
    """A wrong --sheet lists the sheets, as for .xlsx."""
    with pytest.raises(
        FileFormatError, match=r'^no sheet "Nope" in formats\.\w+; sheets: "Contacts", "Other"$'
    ):
        open_table(FIXTURES / f"formats{suffix}", sheet="Nope")
    with pytest.raises(FileFormatError, match=r"^no sheet number 3 in formats\.\w+ \(it has 2\)"):
        open_table(FIXTURES / f"formats{suffix}", sheet=3)


def test_xlsb_reads_like_the_xlsx_excel_saved_beside_it() -> None:
    """An .xlsb and the .xlsx Excel saved of the same workbook read the same on every sheet."""
    for sheet in ("Visible", 1):
        xlsx_table, xlsx_rows = read_all(FIXTURES / "any_sheets.xlsx", sheet=sheet)
        xlsb_table, xlsb_rows = read_all(FIXTURES / "any_sheets.xlsb", sheet=sheet)
        assert xlsb_table.detected.format == "xlsb"
        assert xlsb_table.detected.sheet == xlsx_table.detected.sheet == "Visible"
        assert xlsb_table.columns == xlsx_table.columns
        assert records(xlsb_rows) == records(xlsx_rows) != {}


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [("formats.xls", "xls"), ("formats.ods", "ods"), ("any_sheets.xlsb", "xlsb")],
)
def test_format_is_told_by_content_not_by_name(tmp_path: Path, fixture: str, kind: str) -> None:
    """A workbook named .xlsx (or .csv) is read as what its bytes say it is."""
    for wrong in ("book.xlsx", "book.csv"):
        path = shutil.copy(FIXTURES / fixture, tmp_path / wrong)
        with open_table(path) as table:
            assert table.detected.format == kind


@pytest.mark.parametrize("suffix", [".xls", ".ods", ".xlsb"])
def test_inspect_says_hidden_rows_cannot_be_told(suffix: str) -> None:
    """calamine cannot see hidden rows or columns in these formats: the description says so."""
    fixture = FIXTURES / ("any_sheets.xlsb" if suffix == ".xlsb" else f"formats{suffix}")
    with open_table(fixture) as table:
        assert table.detected.hidden_unknown
        assert "hidden rows and columns cannot be told" in table.detected.describe()
    with open_table(FIXTURES / "formats.xlsx") as table:
        assert not table.detected.hidden_unknown


@pytest.mark.parametrize("suffix", [".xlsx", ".xls", ".ods", ".xlsb"])
def test_password_protected_workbooks_get_their_own_message(suffix: str) -> None:
    """An encrypted .xlsx/.xlsb (OLE2 EncryptedPackage), .xls (FILEPASS), .ods (encrypted manifest)."""
    with pytest.raises(
        FileFormatError,
        match=rf"^password\{suffix} is password-protected: open it in Excel, remove the "
        r"password, save, and try again$",
    ):
        open_table(FIXTURES / f"password{suffix}")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("far-corners.xls", "far-corners.xls spans 16,777,216 cells, more than 4,000,000"),
        ("far-corners.ods", "far-corners.ods spans 33,554,432 cells, more than 4,000,000"),
        ("issue_594_dos.ods", "issue_594_dos.ods spans 999,999,998,000,000,001 cells"),
        ("OOM_alloc2.xls", "OOM_alloc2.xls is damaged: it cannot be read as a workbook"),
        ("OOM_alloc3.xls", "OOM_alloc3.xls is damaged: it cannot be read as a workbook"),
        ("issue_666_panic.xlsb", 'sheet "Sheet1" in issue_666_panic.xlsb is empty'),
        ("too_small.xls", "too_small.xls is not an Excel workbook"),
    ],
)
def test_hostile_files_are_refused_in_bounded_memory(name: str, message: str) -> None:
    """Files made to exhaust memory (two far cells; a cell repeated 10^18 times; calamine's own
    OOM and panic cases) are refused with one line, the peak staying small."""
    growth, said = peak_growth(HOSTILE / name)
    assert said.startswith(message)
    assert "\n" not in said
    assert growth < 48 * 2**20  # holding the spanned rectangle would take gigabytes


def test_zip_bomb_inside_an_ods_is_refused_before_calamine(tmp_path: Path) -> None:
    """The .xlsx zip checks hold for .ods: a member a thousand times its stored size is refused."""
    bomb = files.zeros_member(
        tmp_path / "bomb.ods", FIXTURES / "formats.ods", "Pictures/blob.bin", 64 * 2**20
    )
    assert bomb.stat().st_size < 2**20
    growth, said = peak_growth(bomb)
    assert said.startswith("bomb.ods looks like a zip bomb (Pictures/blob.bin unpacks")
    assert growth < 24 * 2**20


def test_xml_entities_in_an_ods_are_refused(tmp_path: Path) -> None:
    """A content.xml declaring entities (billion laughs) is refused before it is parsed."""
    content = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><office:document-content/>'
    path = files.patch_zip(
        FIXTURES / "formats.ods", tmp_path / "evil.ods", {"content.xml": content}
    )
    with pytest.raises(FileFormatError, match=r"^evil\.ods contains XML entity declarations"):
        open_table(path)


@pytest.mark.parametrize("fixture", ["formats.xls", "formats.ods", "any_sheets.xlsb"])
def test_truncated_workbooks_are_damaged_not_a_traceback(tmp_path: Path, fixture: str) -> None:
    """A workbook cut short (a failed download) is one line: damaged."""
    data = (FIXTURES / fixture).read_bytes()
    for keep in (len(data) // 2, len(data) - 100):
        path = files.write_bytes(tmp_path / fixture, data[:keep])
        with (
            pytest.raises(FileFormatError, match="^" + re.escape(fixture) + " is damaged"),
            open_table(path) as table,
        ):
            list(table.chunks())


def test_an_opendocument_text_is_not_a_spreadsheet(tmp_path: Path) -> None:
    """An .odt renamed .ods is refused as not a spreadsheet."""
    path = tmp_path / "letter.ods"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("content.xml", "<office:document-content/>")
    with pytest.raises(
        FileFormatError, match=r"^letter\.ods is an OpenDocument file but not a spreadsheet"
    ):
        open_table(path)
