"""The worksheet scan's byte needles never miss what the full parse finds.

:func:`scan_sheet` parses a sheet element by element only when one of its needles is in the bytes;
so for any sheet, the scan must give exactly what the full parse gives. The sheets here are made
to be awkward: namespace prefixes, attributes in any order, formulas before the value, whitespace
between elements, values of every shape, and read in blocks small enough to cut cells in two.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulk_events.reader import sheetxml

_LONG = "IFERROR(VLOOKUP(B2,Sheet2!A:Z,3,FALSE),SUM(A1:A100)*2)+0*LEN(C1)"
PART = "xl/worksheets/sheet1.xml"
NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"

values = st.sampled_from(
    [
        "1",
        "42",
        "-3",
        " -0.5",
        "45000",
        "2958465",
        "2958466",
        "3000000",
        "1E+20",
        "1.5E-3",
        "12345678901",
        "380971234567",
        "0.25",
        "",
        "+2958466",
    ]
)
cells = st.fixed_dictionaries(
    {
        "style": st.one_of(st.none(), st.integers(0, 4)),
        "type": st.sampled_from([None, "n", "s", "str", "inlineStr"]),
        "value": values,
        "formula": st.sampled_from(
            [None, "<f>A1*2</f>", '<f t="shared" si="0"/>', f"<f>{_LONG}</f>"]
        ),
        "order": st.booleans(),
        "space": st.sampled_from(["", "\n  ", " "]),
    }
)
rows = st.lists(
    st.tuples(st.booleans(), st.lists(cells, min_size=0, max_size=6)), min_size=1, max_size=12
)
kinds = st.dictionaries(st.integers(0, 4), st.sampled_from(["date", "time", "elapsed"]), max_size=3)


def _sheet(rows: list[tuple[bool, list[dict[str, object]]]], prefix: str) -> bytes:
    p = f"{prefix}:" if prefix else ""
    xmlns = f'xmlns:{prefix}="{NS}"' if prefix else f'xmlns="{NS}"'
    out = [f"<?xml version='1.0'?><{p}worksheet {xmlns}><{p}sheetData>"]
    for number, (hidden, row) in enumerate(rows, start=1):
        out.append(f'<{p}row r="{number}"' + (' hidden="1"' if hidden else "") + ">")
        for column, c in enumerate(row):
            attrs = [f'r="{chr(65 + column)}{number}"']
            if c["style"] is not None:
                attrs.append(f's="{c["style"]}"')
            if c["type"] is not None:
                attrs.append(f't="{c["type"]}"')
            if c["order"]:
                attrs.reverse()
            space = c["space"]
            if c["type"] == "inlineStr":
                body = f"<{p}is><{p}t>{c['value']}</{p}t></{p}is>"
            else:
                formula = (c["formula"] or "").replace("<f", f"<{p}f").replace("</f", f"</{p}f")
                body = f"{formula}{space}<{p}v>{c['value']}</{p}v>"
            out.append(f"{space}<{p}c {' '.join(attrs)}>{space}{body}{space}</{p}c>")
        out.append(f"</{p}row>")
    out.append(f"</{p}sheetData></{p}worksheet>")
    return "".join(out).encode()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=rows,
    kinds=kinds,
    prefix=st.sampled_from(["", "x"]),
    block=st.sampled_from([61, 97, 1 << 20]),
)
def test_scan_finds_whatever_the_full_parse_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows, kinds, prefix, block
) -> None:
    xml = _sheet(rows, prefix)
    path = tmp_path / "book.xlsx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(PART, xml)
    monkeypatch.setattr(sheetxml, "BLOCK", block)
    full = sheetxml._parse(io.BytesIO(xml), kinds, False)
    assert sheetxml.scan_sheet(path, PART, style_kinds=kinds) == full


def test_plain_number_cells_stay_on_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """12-digit phones and negative amounts in number cells beside a date column: no full parse."""
    rows = [
        (
            False,
            [
                {
                    "style": None,
                    "type": None,
                    "value": "380971234567",
                    "formula": None,
                    "order": False,
                    "space": "",
                },
                {
                    "style": 1,
                    "type": None,
                    "value": "45000",
                    "formula": None,
                    "order": False,
                    "space": "",
                },
                {
                    "style": 2,
                    "type": None,
                    "value": "-12.5",
                    "formula": None,
                    "order": True,
                    "space": "",
                },
            ],
        )
    ] * 50
    path = tmp_path / "book.xlsx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(PART, _sheet(rows, ""))

    def no_parse(*args: object) -> None:
        raise AssertionError("the sheet was parsed in full")

    monkeypatch.setattr(sheetxml, "_parse", no_parse)
    assert sheetxml.scan_sheet(path, PART, style_kinds={1: "date"}) == sheetxml.SheetFacts()
    # ...while a date cell holding a serial past 9999-12-31 is found, also after a formula.
    rows[7] = (
        False,
        [
            {
                "style": 1,
                "type": None,
                "value": "2958466",
                "formula": "<f>A1*9</f>",
                "order": True,
                "space": "\n ",
            }
        ],
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(PART, _sheet(rows, "x"))
    with pytest.raises(AssertionError, match="parsed in full"):
        sheetxml.scan_sheet(path, PART, style_kinds={1: "date"})


def test_a_cell_cut_in_two_by_the_reading_blocks_is_still_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One date cell past 9999-12-31, behind a long formula, at every position against the blocks."""
    plain = {
        "style": None,
        "type": None,
        "value": "7",
        "formula": None,
        "order": False,
        "space": "",
    }
    odd = {
        "style": 1,
        "type": None,
        "value": "2958466",
        "formula": f"<f>{_LONG}</f>",
        "order": True,
        "space": " ",
    }
    xml = _sheet([(False, [plain] * 3), (False, [plain, odd]), (False, [plain] * 3)], "x")
    path = tmp_path / "book.xlsx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(PART, xml)
    expected = sheetxml._parse(io.BytesIO(xml), {1: "date"}, False)
    assert expected.errors == {2: [1]}
    for block in range(16, len(xml) + 1, 7):
        monkeypatch.setattr(sheetxml, "BLOCK", block)
        assert sheetxml.scan_sheet(path, PART, style_kinds={1: "date"}) == expected, block
