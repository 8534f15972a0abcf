"""Builders of spreadsheet files for the reader tests: typed workbooks, patched zips, hostile ones."""

from __future__ import annotations

import datetime as dt
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
from openpyxl.styles import PatternFill

YELLOW = PatternFill("solid", fgColor="FFFF00")


def write_bytes(path: Path, data: bytes) -> Path:
    """Write raw bytes and return the path (CSV tests control every byte)."""
    path.write_bytes(data)
    return path


def workbook(
    path: Path,
    sheets: dict[str, list[list[Any]]],
    *,
    hidden: tuple[str, ...] = (),
    formats: dict[str, str] | None = None,
) -> Path:
    """A plain workbook: one sheet per item, rows appended from A1; ``formats`` maps "Sheet!B2"
    (or "B2", on the first sheet) to a number format."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
        if name in hidden:
            ws.sheet_state = "hidden"
    for ref, fmt in (formats or {}).items():
        sheet, _, cell = ref.rpartition("!")
        wb[sheet or next(iter(sheets))][cell].number_format = fmt
    wb.save(path)
    return path


def typed_workbook(path: Path, *, padded: bool = False) -> Path:
    """The cells people actually have: a phone typed as a number, text with a leading zero, dates,
    a time, a duration, booleans, a float, styled blank rows between data rows, and (if
    ``padded``) a number shown through the ``00000`` format."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Data"
    ws.append(["phone", "code", "zip", "date", "when", "at", "took", "ok", "amount", "name"])
    ws.append(
        [
            380501234567,
            "01234",
            1234,
            dt.date(2024, 5, 1),
            dt.datetime(2024, 5, 1, 13, 45, 10),
            dt.time(8, 30),
            dt.timedelta(hours=30),
            True,
            12.5,
            "Олена",
        ]
    )
    ws.append([])  # row 3: nothing at all
    for col in "ABCDEFGHIJ":  # row 4: formatted but empty, as when a person colours a band
        ws[f"{col}4"].fill = YELLOW
    ws.append([])
    ws.append(
        [
            5153435776,
            "x",
            7,
            dt.datetime(2021, 1, 2),
            dt.datetime(2021, 1, 2, 0, 0),
            None,
            None,
            False,
            0.1 + 0.2,
            " Ivan ",
        ]
    )
    ws.merge_cells("A7:D7")  # row 7: merged, blank
    ws["A7"].fill = YELLOW
    ws["A8"] = 1e20
    ws["B8"] = -0.0
    ws["C8"] = 1234.6
    ws["J8"] = "last"
    ws["L1"].fill = YELLOW  # a styled, empty column beyond the header: not a column
    if padded:
        ws["C2"].number_format = "00000"
        ws["C6"].number_format = "00000"
        ws["C8"].number_format = "00000"
    wb.save(path)
    return path


def patch_zip(
    src: Path, dst: Path, changes: dict[str, bytes | Callable[[bytes], bytes] | None]
) -> Path:
    """Copy a zip, replacing (bytes), rewriting (callable) or removing (None) members; a name not in
    the source is added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename in changes:
                change = changes[item.filename]
                if change is None:
                    continue
                data = change(data) if callable(change) else change
            zout.writestr(item, data)
        for name, change in changes.items():
            if name not in zin.namelist() and isinstance(change, bytes):
                zout.writestr(name, change)
    return dst


def replace_row(sheet_xml: bytes, row: int, cells_xml: str) -> bytes:
    """Put hand-written cell XML into a sheet's row (e.g. a formula with a cached value)."""
    text = sheet_xml.decode()
    new_row = f'<row r="{row}">{cells_xml}</row>'
    pattern = re.compile(rf'<row r="{row}"[^>]*>.*?</row>|<row r="{row}"[^>]*/>', re.S)
    if pattern.search(text):
        text = pattern.sub(new_row, text, count=1)
    else:
        text = text.replace("</sheetData>", new_row + "</sheetData>")
    return text.encode()


def set_declared_sizes(
    path: Path, member: str, *, file_size: int, compress_size: int | None = None
) -> None:
    """Rewrite the sizes a zip's headers declare for one member (a lie)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos)) >= 0:
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46 : pos + 46 + name_len] == name:
            struct.pack_into("<I", data, pos + 24, file_size)
            if compress_size is not None:
                struct.pack_into("<I", data, pos + 20, compress_size)
        pos += 4
    pos = 0
    while (pos := data.find(b"PK\x03\x04", pos)) >= 0:
        name_len = struct.unpack_from("<H", data, pos + 26)[0]
        if data[pos + 30 : pos + 30 + name_len] == name:
            struct.pack_into("<I", data, pos + 22, file_size)
        pos += 4
    path.write_bytes(bytes(data))


def zeros_member(path: Path, base: Path, member: str, size: int) -> Path:
    """A workbook with an extra member of ``size`` zero bytes, written in pieces (small memory);
    deflate packs it about a thousand times smaller."""
    patch_zip(base, path, {})
    with (
        zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z,
        z.open(member, "w", force_zip64=True) as out,
    ):
        piece = bytes(1 << 20)
        for _ in range(size // len(piece)):
            out.write(piece)
    return path


def error_workbook(path: Path) -> Path:
    """Formula cells as Excel saves them, with cached results: errors in a data row, a row of
    nothing but errors, numbers, strings and booleans (XlsxWriter writes the cached values)."""
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Data")
    ws.write_row(0, 0, ["email", "score", "note"])
    ws.write(1, 0, "a@x.com")
    ws.write_formula(1, 1, "=NA()", None, "#N/A")
    ws.write(1, 2, "fine")
    ws.write(2, 0, "b@x.com")
    ws.write_formula(2, 1, "=1+1", None, 2)
    ws.write_formula(2, 2, '="a"&"b"', None, "ab")
    for col, code in enumerate(["#DIV/0!", "#REF!", "#NAME?"]):
        ws.write_formula(3, col, f"={code}", None, code)  # row 4: only errors
    ws.write(4, 0, "c@x.com")
    ws.write_formula(4, 1, "=TRUE()", None, True)
    ws.write(4, 2, "")
    wb.close()
    return path


def error_ods(path: Path, *, boolean: bool = True) -> Path:
    """An OpenDocument spreadsheet with formula errors as LibreOffice saves them (an empty
    string value, ``calcext:value-type="error"``, and the shown text): in a data row, and a row
    of nothing but errors, one of them repeated, and one with a comment. With ``boolean``, a
    TRUE() cell too, which takes the reader's other route through an .ods."""

    def cell(text: str, kind: str = "string", value: str = "") -> str:
        attrs = f'office:value-type="{kind}"' + (f' office:value="{value}"' if value else "")
        return f"<table:table-cell {attrs}><text:p>{text}</text:p></table:table-cell>"

    def error(text: str, formula: str, repeat: int = 1, note: str = "") -> str:
        times = f' table:number-columns-repeated="{repeat}"' if repeat > 1 else ""
        # A comment on the cell is an office:annotation inside it, with text:p of its own.
        comment = f"<office:annotation><text:p>{note}</text:p></office:annotation>" if note else ""
        return (
            f'<table:table-cell table:formula="{formula}"{times} office:value-type="string" '
            f'office:string-value="" calcext:value-type="error">{comment}<text:p>{text}</text:p>'
            "</table:table-cell>"
        )

    last = (
        '<table:table-cell table:formula="of:=TRUE()" office:value-type="float" '
        'office:value="1" calcext:value-type="float"><text:p>TRUE</text:p></table:table-cell>'
        if boolean
        else cell("yes")
    )
    rows = [
        cell("email") + cell("score") + cell("note"),
        cell("a@x.com") + error("#N/A", "of:=NA()", note="check this") + cell("fine"),
        cell("b@x.com") + cell("2", "float", "2") + cell("ab"),
        error("Err:502", "of:=SQRT(-1;1)") + error("#REF!", "of:=#REF!", repeat=2),
        cell("c@x.com") + last + "<table:table-cell/>",
    ]
    body = "".join(f"<table:table-row>{r}</table:table-row>" for r in rows)
    ns = " ".join(
        f'xmlns:{prefix}="{uri}"'
        for prefix, uri in [
            ("office", "urn:oasis:names:tc:opendocument:xmlns:office:1.0"),
            ("table", "urn:oasis:names:tc:opendocument:xmlns:table:1.0"),
            ("text", "urn:oasis:names:tc:opendocument:xmlns:text:1.0"),
            ("calcext", "urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0"),
        ]
    )
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns} '
        'office:version="1.3"><office:body><office:spreadsheet><table:table table:name="Data">'
        f"{body}</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:'
        'names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3"><manifest:file-entry '
        'manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.'
        'spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" '
        'manifest:media-type="text/xml"/></manifest:manifest>'
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
    return path


def escaped_strings_workbook(path: Path, *, padded: bool = False) -> Path:
    """Shared strings holding OOXML escapes as Excel writes them: ``_x000D_`` for the CR of a
    multi-line cell, ``_x005F_`` for a literal "_" that starts an escape-like text."""
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Data")
    ws.write_row(0, 0, ["email", "note", "code"])
    ws.write_row(1, 0, ["a@x.com", "CR_HERE", "LITERAL_HERE"])
    zero_pad = wb.add_format({"num_format": "00000"}) if padded else None
    ws.write_row(2, 0, ["b@x.com", "NUL_HERE"])
    ws.write_number(2, 2, 42, zero_pad)
    wb.close()
    raw = {
        b"CR_HERE": b"line 1_x000D_\nline 2",
        b"LITERAL_HERE": b"_x005F_x000D_ stays",
        b"NUL_HERE": b"tab_x0009_here",
    }

    def patch(sst: bytes) -> bytes:
        for marker, text in raw.items():
            sst = sst.replace(marker, text)
        return sst

    tmp = path.with_suffix(".tmp.xlsx")
    path.rename(tmp)
    patch_zip(tmp, path, {"xl/sharedStrings.xml": patch})
    tmp.unlink()
    return path
