"""Refusals of workbooks that name the right problem: an empty sheet beside macro and dialog sheets
is empty (not damaged), a sheet of error values has no header (it is not empty), an .xlsb whose
parts lie outside xl/ says so."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from bulk_events.errors import FileFormatError
from bulk_events.reader import open_table

FIXTURES = Path(__file__).parent / "fixtures"
_MAIN = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DATA = (
    f"<worksheet {_MAIN}><sheetData>"
    '<row r="1"><c r="A1" t="inlineStr"><is><t>email</t></is></c></row>'
    '<row r="2"><c r="A2" t="inlineStr"><is><t>a@x.com</t></is></c></row>'
    "</sheetData></worksheet>"
)


def macro_workbook(path: Path, *, with_data: bool) -> Path:
    """An .xlsm as Excel keeps blank sheets of every kind: an empty worksheet, an Excel 4 macro
    sheet and a dialog sheet (and, ``with_data``, a worksheet holding a contact)."""
    sheets = [
        (
            "Sheet1",
            f"{_R}/worksheet",
            "worksheets/sheet1.xml",
            f"<worksheet {_MAIN}><sheetData/></worksheet>",
        ),
        (
            "Macro1",
            "http://schemas.microsoft.com/office/2006/relationships/xlMacrosheet",
            "macrosheets/sheet1.xml",
            '<xm:macrosheet xmlns:xm="http://schemas.microsoft.com/office/excel/2006/main" '
            f"{_MAIN}><sheetData/></xm:macrosheet>",
        ),
        ("Dialog1", f"{_R}/dialogsheet", "dialogsheets/sheet1.xml", f"<dialogsheet {_MAIN}/>"),
    ]
    if with_data:
        sheets.append(("Data", f"{_R}/worksheet", "worksheets/sheet2.xml", _DATA))
    listing = "".join(
        f'<sheet name="{n}" sheetId="{i}" r:id="rId{i}"/>' for i, (n, *_) in enumerate(sheets, 1)
    )
    rels = "".join(
        f'<Relationship Id="rId{i}" Type="{t}" Target="{p}"/>'
        for i, (_, t, p, _) in enumerate(sheets, 1)
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(
            "[Content_Types].xml",
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.ms-excel.sheet.macroEnabled.main+xml"/></Types>',
        )
        z.writestr(
            "_rels/.rels",
            f'<Relationships xmlns="{_RELS}"><Relationship Id="rId1" '
            f'Type="{_R}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        )
        z.writestr(
            "xl/workbook.xml",
            f'<workbook {_MAIN} xmlns:r="{_R}"><sheets>{listing}</sheets></workbook>',
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels", f'<Relationships xmlns="{_RELS}">{rels}</Relationships>'
        )
        for _, _, part, xml in sheets:
            z.writestr(f"xl/{part}", xml)
    return path


def test_an_empty_sheet_beside_a_macro_sheet_is_empty_not_damaged(tmp_path: Path) -> None:
    """calamine refuses the whole workbook over its macro sheet; the sheet is read another way
    and found empty, which is what the message says."""
    path = macro_workbook(tmp_path / "blank.xlsm", with_data=False)
    with pytest.raises(FileFormatError) as err:
        open_table(path)
    assert str(err.value) == 'sheet "Sheet1" in blank.xlsm is empty; sheets: "Sheet1"'


def test_beside_a_macro_sheet_a_sheet_with_data_is_suggested_and_read(tmp_path: Path) -> None:
    """With a worksheet holding data, the refusal suggests --sheet, and that sheet reads."""
    path = macro_workbook(tmp_path / "macro.xlsm", with_data=True)
    with pytest.raises(FileFormatError) as err:
        open_table(path)
    assert str(err.value) == (
        'sheet "Sheet1" in macro.xlsm is empty; pick another with --sheet; sheets: "Sheet1", "Data"'
    )
    with open_table(path, sheet="Data") as table:
        assert table.columns == ["email"]
        assert next(table.chunks()).loc[2, "email"] == "a@x.com"


def test_a_sheet_of_error_values_is_refused_for_its_header_not_as_empty(tmp_path: Path) -> None:
    """A sheet of nothing but formula errors is not empty: its header row shows an error, and the
    refusal names the cell and the error (#DIV/0! is no column name)."""
    import xlsxwriter

    path = tmp_path / "errors.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Errors")
    for row, (formula, shown) in enumerate([("=5/0", "#DIV/0!"), ("=SQRT(-4)", "#NUM!")]):
        ws.write_formula(row, 0, formula, None, shown)
    wb.add_worksheet("Other")
    wb.close()
    with pytest.raises(FileFormatError) as err:
        open_table(path)
    assert str(err.value) == (
        'sheet "Errors" in errors.xlsx: header cell A1 shows #DIV/0!, a formula error, not a '
        "column name; name every column in the header row; pick another with --sheet; "
        'sheets: "Errors", "Other"'
    )


def test_one_error_among_the_header_names_is_refused_naming_it(tmp_path: Path) -> None:
    """A header of names with one cell showing #REF! is refused, naming that cell; the sheet's
    only, so no other sheet is suggested."""
    import xlsxwriter

    path = tmp_path / "h.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Data")
    ws.write_row(0, 0, ["email", "name"])
    ws.write_formula(0, 2, "=#REF!", None, "#REF!")
    ws.write_row(1, 0, ["a@x.com", "Ann", "x"])
    wb.close()
    with pytest.raises(FileFormatError) as err:
        open_table(path)
    assert str(err.value) == (
        'sheet "Data" in h.xlsx: header cell C1 shows #REF!, a formula error, not a column name; '
        "name every column in the header row"
    )


def test_an_xlsb_with_its_parts_outside_xl_says_so(tmp_path: Path) -> None:
    """An .xlsb whose workbook part lies outside xl/ is told as an .xlsb (not as a broken
    .xlsx), and the refusal names the part and what to do."""
    source = FIXTURES / "any_sheets.xlsb"
    path = tmp_path / "moved.xlsb"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(path, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            name = item.filename
            if name.startswith("xl/"):
                name = "wtf/" + name[3:]
            if name == "_rels/.rels":
                data = data.replace(b'Target="xl/workbook.bin"', b'Target="wtf/workbook.bin"')
            zout.writestr(name, data)
    with pytest.raises(FileFormatError) as err:
        open_table(path)
    assert str(err.value) == (
        "moved.xlsb is an Excel binary workbook (.xlsb) with its parts outside the xl/ folder "
        "where Excel keeps them (wtf/workbook.bin), which cannot be read here; open it in Excel "
        "and save it again, or save it as .xlsx or CSV"
    )
