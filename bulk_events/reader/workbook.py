"""An .xlsx's parts, read before any cell: the zip checked, the sheets, their styles and formats.

:func:`inspect_xlsx` refuses an unsafe or broken workbook from its zip directory and parts (zip
bombs, XML entities, encrypted or damaged parts) and returns a :class:`Workbook`: the worksheets in
tab order with their XML parts, the zero-padding formats some cell uses, which cell styles show a
date, a time or an elapsed time, and which parts hold formula error cells. :mod:`.excel` reads the
cells with that knowledge. (.xlsb and .ods, zips too, are told apart by :mod:`.detect` and read by
:mod:`.calamine`.)
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from defusedxml import ElementTree as SafeET

from bulk_events.errors import FileFormatError

from .detect import EXCEL_SUFFIXES
from .render import builtin_kind, format_kind, pad_tokens
from .ziparchive import refuse_zip_bomb, scan_members

# A cell of type "e" holds a formula error (#N/A, #DIV/0!...), which calamine reads as empty.
_ERROR_CELL_NEEDLES = (b't="e"', b"t='e'")


@dataclass
class Workbook:
    sheets: list[tuple[str, bool]]  # (name, visible) of every worksheet, in tab order
    pad_formats: dict[str, list[tuple[str, str]]]  # format code -> tokens, for formats in use
    xml_sizes: dict[str, int]  # sheet name -> unpacked size of its XML part
    parts: dict[str, str] = field(default_factory=dict)  # sheet name -> its XML part
    strings_part: str | None = None  # the shared strings table, if any
    error_parts: set[str] = field(default_factory=set)  # parts holding formula error cells
    style_kinds: dict[int, str] = field(default_factory=dict)  # cell style -> date/time kind
    date1904: bool = False  # serials count from 1904-01-01 (old Mac workbooks)
    backslashes: bool = False  # parts named with "\\" (only calamine reads such a zip)


def inspect_xlsx(path: Path) -> Workbook:
    """Refuse what is not a safe .xlsx; list its sheets and the zero-padding formats it uses."""
    name = path.name
    not_workbook = FileFormatError(f"{name} is not an Excel workbook (.xlsx/.xlsm)")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise not_workbook from None
    with archive:
        members = archive.infolist()
        refuse_zip_bomb(name, members)
        backslashes = _use_forward_slashes(archive)
        names = {m.filename for m in members}
        error_parts = scan_members(name, archive, members, _ERROR_CELL_NEEDLES)
        workbook_part = _office_document_part(archive, names)
        if workbook_part is None or workbook_part not in names:
            if path.suffix.lower() not in EXCEL_SUFFIXES:
                raise FileFormatError(f"{name} is a zip archive, not a CSV file: unzip it first")
            raise not_workbook
        try:
            workbook = _read_workbook_parts(archive, names, workbook_part)
        except (SafeET.ParseError, KeyError, ValueError) as exc:
            raise FileFormatError(f"{name} is damaged: its workbook part cannot be read") from exc
        workbook.error_parts = error_parts
        workbook.backslashes = backslashes
        return workbook


def _use_forward_slashes(archive: zipfile.ZipFile) -> bool:
    """Some writers name parts ``xl\\workbook.xml``: read them under their ``/`` names (as Excel
    and calamine do). Returns whether any part was so named."""
    renamed = False
    for member in archive.infolist():
        if "\\" in member.filename:
            member.filename = member.filename.replace("\\", "/")
            renamed = True
    if renamed:
        archive.NameToInfo = {m.filename: m for m in archive.infolist()}
    return renamed


def _parse_xml(archive: zipfile.ZipFile, part: str) -> Any:
    with archive.open(part) as f:
        return SafeET.parse(f, forbid_dtd=True).getroot()


def _named(root: Any, local: str) -> Iterator[Any]:
    """Elements by local name whatever the namespace (transitional and strict OOXML differ)."""
    return (el for el in root.iter() if el.tag.rpartition("}")[2] == local)


def _relationship_id(el: Any) -> str:
    """The ``r:id`` attribute, whatever its namespace."""
    return next((v for k, v in el.attrib.items() if k.endswith("}id")), "")


def _rels(archive: zipfile.ZipFile, names: set[str], part: str) -> dict[str, tuple[str, str]]:
    """Relationship id -> (type, absolute target part) for a part."""
    folder = PurePosixPath(part).parent
    rels_part = str(folder / "_rels" / (PurePosixPath(part).name + ".rels"))
    if rels_part.startswith("./"):
        rels_part = rels_part[2:]
    if rels_part not in names:
        return {}
    out = {}
    for rel in _named(_parse_xml(archive, rels_part), "Relationship"):
        target = rel.get("Target", "")
        absolute = target.lstrip("/") if target.startswith("/") else _normpath(folder / target)
        out[rel.get("Id", "")] = (rel.get("Type", ""), absolute)
    return out


def _normpath(p: PurePosixPath) -> str:
    parts: list[str] = []
    for piece in p.parts:
        if piece == "..":
            if parts:
                parts.pop()
        elif piece not in (".", ""):
            parts.append(piece)
    return "/".join(parts)


def _office_document_part(archive: zipfile.ZipFile, names: set[str]) -> str | None:
    for rel_type, target in _rels(archive, names, "").values():
        if rel_type.endswith("/officeDocument"):
            return target
    return "xl/workbook.xml" if "xl/workbook.xml" in names else None


def _read_workbook_parts(archive: zipfile.ZipFile, names: set[str], workbook_part: str) -> Workbook:
    rels = _rels(archive, names, workbook_part)
    root = _parse_xml(archive, workbook_part)
    sheets = []
    sizes = {}
    parts = {}
    for el in _named(root, "sheet"):
        rel_type, part = rels.get(_relationship_id(el), ("", ""))
        if rel_type and not rel_type.endswith("/worksheet"):
            continue  # chart sheets and macro sheets have no cells to read
        name = el.get("name", "")
        sheets.append((name, el.get("state", "visible") == "visible"))
        sizes[name] = archive.getinfo(part).file_size if part in names else 0
        parts[name] = part
    styles = next((t for rt, t in rels.values() if rt.endswith("/styles")), None)
    pads, kinds = _number_formats(archive, styles) if styles in names else ({}, {})
    strings = next((t for rt, t in rels.values() if rt.endswith("/sharedStrings")), None)
    date1904 = any(el.get("date1904") in ("1", "true") for el in _named(root, "workbookPr"))
    return Workbook(
        sheets,
        pads,
        sizes,
        parts,
        strings if strings in names else None,
        style_kinds=kinds,
        date1904=date1904,
    )


def _number_formats(
    archive: zipfile.ZipFile, styles_part: str
) -> tuple[dict[str, list[tuple[str, str]]], dict[int, str]]:
    """Zero-padding custom number formats that some cell style actually uses, and the cell
    styles (by index) whose format is a date, a time or an elapsed time."""
    root = _parse_xml(archive, styles_part)
    custom = {el.get("numFmtId"): el.get("formatCode", "") for el in _named(root, "numFmt")}
    xfs = [xf for group in _named(root, "cellXfs") for xf in group]
    used = {xf.get("numFmtId") for xf in xfs}
    pads = {}
    for fmt_id, code in custom.items():
        if fmt_id in used and (tokens := pad_tokens(code)) is not None:
            pads[code] = tokens
    kinds = {}
    for index, xf in enumerate(xfs):
        fmt_id = xf.get("numFmtId") or "0"
        if fmt_id in custom:
            kind = format_kind(custom[fmt_id])
        else:
            kind = builtin_kind(int(fmt_id)) if fmt_id.isdigit() else None
        if kind is not None:
            kinds[index] = kind
    return pads, kinds


def raw_shared_strings(path: Path, part: str) -> list[str]:
    """The shared strings table as written (rich-text runs joined, phonetic runs left out)."""
    strings = []
    with zipfile.ZipFile(path) as archive, archive.open(part) as f:  # openpyxl: "/" names only
        for _event, el in SafeET.iterparse(f, forbid_dtd=True):
            if el.tag.rpartition("}")[2] != "si":
                continue
            pieces = []
            for child in el:
                local = child.tag.rpartition("}")[2]
                if local == "t":
                    pieces.append(child.text or "")
                elif local == "r":
                    pieces.extend(
                        t.text or "" for t in child if t.tag.endswith("}t") or t.tag == "t"
                    )
            strings.append("".join(pieces))
            el.clear()
    return strings
