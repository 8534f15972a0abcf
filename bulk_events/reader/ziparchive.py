"""Zip safety for the zip-based workbooks (.xlsx, .xlsm, .xlsb, .ods), before any part is parsed.

:func:`refuse_zip_bomb` judges the zip directory (member count, declared sizes, ratios) without
decompressing anything; :func:`scan_members` then decompresses every part once, streaming, so the
CRCs prove the declared sizes, and refuses XML entity declarations (billion laughs, external
entities) in any part, and XML text too long to be a cell within the limit (a 50 MB cell is
refused here, before a parser holds it in several copies).
"""

from __future__ import annotations

import zipfile

from bulk_events.errors import FileFormatError

from .table import BLOCK, MAX_CELL_CHARS

# Zip-bomb limits, checked against the zip directory before anything is decompressed.
MAX_UNZIPPED_TOTAL = 1 << 30
MAX_RATIO = 200
RATIO_APPLIES_ABOVE = 50 * 1000 * 1000
MAX_MEMBERS = 20_000
# The most bytes of XML text (between two tags) a cell within the limit can take: one character
# may be written as a 10-byte reference (&#1114111;). Longer text is refused while scanning.
MAX_TEXT_BYTES = 10 * MAX_CELL_CHARS

ENTITY_NEEDLES = tuple(
    needle.encode(enc)
    for needle in ("<!DOCTYPE", "<!ENTITY")
    for enc in ("utf-8", "utf-16-le", "utf-16-be")
)


def password_protected(name: str) -> FileFormatError:
    """The one message for every kind of password-protected workbook."""
    return FileFormatError(
        f"{name} is password-protected: open it in Excel, remove the password, save, and try again"
    )


def refuse_zip_bomb(name: str, members: list[zipfile.ZipInfo]) -> None:
    """Refuse a zip whose directory declares too many parts, too much data or bomb-like ratios."""
    if len(members) > MAX_MEMBERS:
        raise FileFormatError(f"{name} has {len(members)} parts; refusing to read it")
    total = 0
    for m in members:
        total += m.file_size
        ratio = m.file_size / max(m.compress_size, 1)
        if m.file_size > RATIO_APPLIES_ABOVE and ratio > MAX_RATIO:
            raise FileFormatError(
                f"{name} looks like a zip bomb ({m.filename} unpacks {ratio:.0f} times larger); "
                "refusing to read it"
            )
    if total > MAX_UNZIPPED_TOTAL:
        raise FileFormatError(
            f"{name} would unpack to {total / (1 << 30):.1f} GiB; refusing to read it"
        )


def scan_members(
    name: str,
    archive: zipfile.ZipFile,
    members: list[zipfile.ZipInfo],
    flag_needles: tuple[bytes, ...] = (),
) -> set[str]:
    """Decompress every part once, streaming: CRCs verify the sizes the directory declared, and no
    part may declare XML entities. Returns the parts in which one of ``flag_needles`` occurs."""
    keep = max(len(n) for n in (*ENTITY_NEEDLES, *flag_needles)) - 1
    flagged = set()
    for member in members:
        if member.is_dir():
            continue
        tail = b""
        text = 0  # bytes since the last "<": the text being scanned
        xml = member.filename.lower().endswith(".xml")
        try:
            with archive.open(member) as part:
                while block := part.read(BLOCK):
                    if xml:
                        text = _text_run(text, block)
                        if text > MAX_TEXT_BYTES:
                            raise FileFormatError(
                                f"{name} has a cell longer than 1 MiB (in {member.filename}); "
                                "refusing to read it"
                            )
                    window = tail + block
                    if any(n in window for n in ENTITY_NEEDLES):
                        raise FileFormatError(
                            f"{name} contains XML entity declarations; refusing to read it"
                        )
                    if any(n in window for n in flag_needles):
                        flagged.add(member.filename)
                    tail = window[-keep:]
        except FileFormatError:
            raise
        except RuntimeError:  # zipfile: "File is encrypted, password required"
            raise password_protected(name) from None
        except NotImplementedError:
            raise FileFormatError(f"{name} uses an unsupported zip compression") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            raise FileFormatError(
                f"{name} is damaged (its part {member.filename} is corrupt)"
            ) from None
    return flagged


def _text_run(run: int, block: bytes) -> int:
    """Bytes of XML text (since the last ``<``) after ``block``, given ``run`` before it; when the
    text ends in this block over the limit, its length. (Text between two tags inside one block
    is at most ``BLOCK`` long, below the limit.)"""
    first = block.find(b"<")
    if first < 0:
        return run + len(block)
    if run + first > MAX_TEXT_BYTES:
        return run + first
    return len(block) - block.rfind(b"<") - 1
