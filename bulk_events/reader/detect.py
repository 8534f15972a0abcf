"""What a file is: Excel or CSV by its first bytes; a CSV file's encoding and delimiter.

Everything here only looks at a file (in bounded memory, one streaming pass at most); reading
rows is :mod:`.csvfile`'s and :mod:`.excel`'s job.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import math
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bulk_events.errors import FileFormatError, UsageError

from . import ole2
from .table import BLOCK, MAX_CELL_CHARS
from .ziparchive import password_protected

SAMPLE_CHARS = 64 << 10  # text looked at to choose the delimiter
# This many bytes of valid multi-byte UTF-8 before the first invalid byte make a file "UTF-8 with
# a damaged byte" rather than a legacy code page (where valid pairs only happen by accident).
DAMAGED_UTF8 = 32

_DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_ALIASES = {
    "\\t": "\t",
    "tab": "\t",
    "comma": ",",
    "semicolon": ";",
    "pipe": "|",
    "|": "|",
}


# --------------------------------------------------------------------------- what kind of file

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_NOT_TEXT_MAGIC = {
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\x1f\x8b": "a gzip archive",
    b"Rar!": "a RAR archive",
    b"7z\xbc\xaf": "a 7-Zip archive",
}
EXCEL_SUFFIXES = {".xlsx", ".xlsm", ".xltx", ".xltm", ".xls", ".xlsb", ".ods"}


def sniff_kind(head: bytes, path: Path) -> str:
    """Return "xlsx", "xlsb", "ods", "xls" or "csv" from the file's content, or raise."""
    name = path.name
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_kind(path)
    if head.startswith(OLE2_MAGIC):
        return _ole2_kind(path)
    for magic, what in _NOT_TEXT_MAGIC.items():
        if head.startswith(magic):
            raise FileFormatError(f"{name} is {what}, not a CSV file or an Excel workbook")
    if path.suffix.lower() in EXCEL_SUFFIXES:
        raise FileFormatError(f"{name} is not an Excel workbook (.xlsx/.xlsm)")
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if stripped.startswith((b"<?xml", b"<html", b"<!doctype html", b"<table")):
        raise FileFormatError(
            f"{name} is an XML or HTML file, not CSV; open it in Excel and save it as .xlsx or CSV"
        )
    return "csv"


def _zip_kind(path: Path) -> str:
    """Which zip-based workbook this is, from its parts (a broken zip is left to the xlsx checks)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            mimetype = b""
            if "mimetype" in names and archive.getinfo("mimetype").file_size < 200:
                mimetype = archive.read("mimetype").strip()
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, NotImplementedError):
        # A broken zip (a truncated download, say): its name is all there is to go by.
        return {".ods": "ods", ".xlsb": "xlsb"}.get(path.suffix.lower(), "xlsx")
    if mimetype == b"application/vnd.oasis.opendocument.spreadsheet":
        return "ods"
    if mimetype.startswith(b"application/vnd.oasis.opendocument."):
        raise FileFormatError(
            f"{path.name} is an OpenDocument file but not a spreadsheet; "
            "open it in LibreOffice Calc and save it as .ods, .xlsx or CSV"
        )
    if any(n.rpartition("/")[2].lower() == "workbook.bin" for n in names):
        return "xlsb"  # wherever its writer put it: the .xlsb reader says if it cannot be read
    return "xlsx"


def _ole2_kind(path: Path) -> str:
    """An OLE2 compound file is a .xls, a password-protected .xlsx/.xlsb, or no workbook."""
    name = path.name
    try:
        streams = ole2.streams(path)
    except ole2.Ole2Error:
        raise FileFormatError(f"{name} is damaged: it cannot be read as a workbook") from None
    if "EncryptedPackage" in streams:
        raise password_protected(name)
    if "Workbook" in streams or "Book" in streams:
        return "xls"
    raise FileFormatError(f"{name} is an Office file but not an Excel workbook")


def normalise_delimiter(delimiter: str) -> str:
    key = delimiter if len(delimiter) == 1 else delimiter.strip().lower()
    key = _DELIMITER_ALIASES.get(key, key)
    if len(key) != 1 or key in '"\r\n':
        raise UsageError(
            f'unusable delimiter "{delimiter}"; use one character such as , ; | or "tab"'
        )
    return key


def normalise_encoding(encoding: str, head: bytes) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise UsageError(f'unknown encoding "{encoding}"') from None
    if name == "utf-8" and head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"  # same text, minus the mark Excel puts first
    return name


def encoding_from_bom(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def utf16_without_bom(head: bytes) -> str | None:
    """UTF-16 text of mostly ASCII has a NUL in every other byte; catch it before the NUL check."""
    sample = head[:4096]
    if len(sample) < 8:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
        return "utf-16-be"
    return None


@dataclass
class Scan:
    """What one pass over the whole file found (the first problem only)."""

    chars: int = 0
    line_ends: int = 0  # LF count (CR where a file has no LF): about the number of lines
    quote_spans_lines: bool = False  # a quoted cell may hold a line break
    binary: bool = False
    problem: str | None = None  # "decode" | "nul" | "long"
    problem_at: int | None = None  # character offset of the problem
    bad_byte: int | None = None
    multibyte_before_error: int = 0  # bytes beyond one per character before a decode error


_CONTROL = re.compile("[\x01-\x08\x0e-\x1f\x7f]")


def scan_text(path: Path, encoding: str) -> Scan:
    """Decode the whole file in blocks, checking it is text, has no NUL and no giant line.

    One streaming pass with bounded memory: a bad byte at row 900,000 is found before any row
    is used. Lines longer than the cell limit are found here too; a giant cell that spans lines
    can only be quoted, so it is looked for per chunk, but only in files where some line holds an
    odd number of quotes (most files with quotes have none: their quoted cells end on the line).
    """
    scan = Scan()
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    lines = _ByteLines() if _quote_and_line_ends_are_ascii(encoding) else _TextLines()
    bytes_done = 0
    with path.open("rb") as f:
        while True:
            block = f.read(BLOCK)
            final = not block
            state = decoder.getstate()
            try:
                text = decoder.decode(block, final)
            except UnicodeDecodeError as exc:
                # exc.object is what the decoder held over plus this block: everything before
                # exc.start is good text that was not yet counted.
                good = exc.object[: exc.start].decode(encoding, errors="replace")
                scan.problem, scan.problem_at = "decode", scan.chars + len(good)
                scan.bad_byte = exc.object[exc.start]
                bytes_before = bytes_done - len(state[0]) + exc.start
                scan.multibyte_before_error = bytes_before - scan.problem_at
                return scan
            if text and not scan.chars:
                probe = text[:SAMPLE_CHARS]
                scan.binary = len(_CONTROL.findall(probe)) > max(32, 0.05 * len(probe))
            nul = text.find("\x00")
            if nul >= 0:
                scan.problem, scan.problem_at = "nul", scan.chars + nul
                return scan
            long_line = lines.feed(block, text, bytes_done, scan.chars)
            if long_line is not None:
                if isinstance(lines, _ByteLines):
                    long_line = _char_offset(path, encoding, long_line)
                scan.problem, scan.problem_at = "long", long_line
                return scan
            scan.chars += len(text)
            scan.line_ends += text.count("\n") or text.count("\r")
            bytes_done += len(block)
            if final:
                scan.quote_spans_lines = lines.quote_spans_lines()
                return scan


def _quote_and_line_ends_are_ascii(encoding: str) -> bool:
    """True when '"', LF and CR are single ASCII bytes that never occur inside other characters
    (UTF-8 and the single-byte code pages; not UTF-16)."""
    try:
        return b'"\n\r'.decode(encoding) == '"\n\r'
    except UnicodeDecodeError:
        return False


class _ByteLines:
    """Line checks on the raw bytes, vectorised with numpy so they cost next to nothing: the
    longest line (CR or LF ends it), and whether some line holds an odd number of quote bytes,
    the only way a quoted cell can go on past a line break."""

    def __init__(self) -> None:
        self.line_len = 0  # bytes of the line still open at the end of the previous block
        self.line_start = 0  # its byte offset
        self.open_quote = False  # odd number of quotes since the last line end
        self.odd_line = False

    def feed(self, block: bytes, text: str, offset: int, chars: int) -> int | None:
        """Take the next block (at byte ``offset``); the byte offset of a too-long line, or None."""
        arr = np.frombuffer(block, dtype=np.uint8)
        ends = np.flatnonzero((arr == 0x0A) | (arr == 0x0D))
        self._quotes(arr, ends)
        if not len(ends):
            self.line_len += len(block)
            return self.line_start if self.line_len > MAX_CELL_CHARS else None
        if self.line_len + ends[0] > MAX_CELL_CHARS:
            return self.line_start
        if len(ends) > 1:
            gaps = np.diff(ends) - 1
            longest = int(gaps.argmax())
            if gaps[longest] > MAX_CELL_CHARS:
                return offset + int(ends[longest]) + 1
        self.line_start = offset + int(ends[-1]) + 1
        self.line_len = len(block) - int(ends[-1]) - 1
        return None

    def _quotes(self, arr: Any, ends: Any) -> None:
        if self.odd_line:
            return
        quotes = np.flatnonzero(arr == 0x22)
        if not len(quotes) and not self.open_quote:
            return
        if not len(ends):
            self.open_quote ^= bool(len(quotes) & 1)
            return
        before = np.searchsorted(quotes, ends)  # quotes before each line end
        per_line = np.diff(before, prepend=0)
        per_line[0] += self.open_quote
        if (per_line & 1).any():
            self.odd_line = True
        self.open_quote = bool((len(quotes) - int(before[-1])) & 1)

    def quote_spans_lines(self) -> bool:
        return self.odd_line or self.open_quote


class _TextLines:
    """The same line checks on decoded text, for encodings such as UTF-16 where bytes will not do."""

    def __init__(self) -> None:
        self.line_len = 0
        self.line_start = 0
        self.has_quote = False

    def feed(self, block: bytes, text: str, offset: int, chars: int) -> int | None:
        """Take the next decoded block (at character ``chars``); a too-long line's offset, or None."""
        if not text:
            return None
        self.has_quote = self.has_quote or '"' in text
        lines = text.splitlines(keepends=True)
        position, length, start = chars, self.line_len, self.line_start
        for line in lines:
            if length + len(line) > MAX_CELL_CHARS:
                return start
            position += len(line)
            start, length = position, 0
        last = lines[-1]
        if last[-1] in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029":
            self.line_len, self.line_start = 0, chars + len(text)
        elif len(lines) == 1:
            self.line_len += len(last)
        else:
            self.line_len, self.line_start = len(last), chars + len(text) - len(last)
        return None

    def quote_spans_lines(self) -> bool:
        return self.has_quote


def _char_offset(path: Path, encoding: str, byte_offset: int) -> int:
    """The character offset of a byte offset, as the decoded text counts (BOM excluded)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    chars = 0
    with path.open("rb") as f:
        left = byte_offset
        while left > 0 and (block := f.read(min(BLOCK, left))):
            chars += len(decoder.decode(block))
            left -= len(block)
    return chars


def decode_error(path: Path, encoding: str, row: int, scan: Scan, given: bool) -> FileFormatError:
    name = path.name
    byte = f"byte 0x{scan.bad_byte:02x}"
    if not given:
        shown = encoding.removesuffix("-sig")
        return FileFormatError(
            f"{name} looks like {shown} but has an invalid {byte} at row {row}; "
            "fix that row, or pass --encoding if the file is in another encoding"
        )
    guess = _detect_encoding_quietly(path)
    hint = f"try --encoding {guess}" if guess and guess != encoding else "check the file"
    return FileFormatError(f"cannot decode {name} as {encoding} at row {row} ({byte}); {hint}")


def _detect_encoding_quietly(path: Path) -> str | None:
    """The encoding detection would pick, for a hint after a forced one failed (None: no idea)."""
    with path.open("rb") as f:
        head = f.read(SAMPLE_CHARS)
    enc = encoding_from_bom(head) or utf16_without_bom(head)
    if enc:
        return enc
    scan = scan_text(path, "utf-8")
    if scan.bad_byte is None:
        return "utf-8"
    if scan.multibyte_before_error >= DAMAGED_UTF8:
        return None
    return guess_single_byte_encoding(path)


# Letter frequencies of Ukrainian and Russian text together (percent, rough), used to tell
# cp1251 from the encodings that put Cyrillic letters on other byte values.
_CYRILLIC_LETTERS = "оеаинтсрвлкмдпуяыьгзбчйхжшюцщэфъёіїєґ"
_CYRILLIC_PERCENT = (
    "10 8 8 6.5 6.5 6 5 4.5 4.5 4.4 3.4 3.2 3 2.8 2.6 2 1.9 1.7 1.7 1.6 "
    "1.6 1.4 1.2 1 0.9 0.7 0.6 0.5 0.4 0.3 0.3 0.04 0.1 5 0.6 0.4 0.05"
)
_CYRILLIC_FREQ = dict(zip(_CYRILLIC_LETTERS, map(float, _CYRILLIC_PERCENT.split()), strict=True))
# Code page -> prior (log-likelihood per high byte): Excel on Windows writes cp1251, so the others
# must fit somewhat better to win (mac-cyrillic differs from cp1251 in capitals only).
_CYRILLIC_CANDIDATES = {
    "cp1251": 0.0,
    "koi8_r": -0.3,
    "koi8_u": -0.35,
    "mac_cyrillic": -0.3,
    "cp866": -0.3,
}
_ENOUGH_HIGH_BYTES = 200_000


def guess_single_byte_encoding(path: Path) -> str:
    """Pick the legacy encoding of a file that is not UTF-8.

    Cyrillic words are runs of high bytes, Latin accents sit between ASCII letters: which kind of
    neighbour the high bytes have separates cp1251 from cp1252. Among the Cyrillic code pages
    (cp1251, koi8, mac-cyrillic, cp866 put letters on different bytes) the one whose letters are
    distributed like real text wins. Only code pages that can decode every byte present qualify.
    """
    hist = np.zeros(256, dtype=np.int64)
    high_high = high_letter = 0
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            arr = np.frombuffer(block, dtype=np.uint8)
            hist += np.bincount(arr, minlength=256)
            if high_high + high_letter < _ENOUGH_HIGH_BYTES:
                high = arr >= 0x80
                lower = arr | 0x20
                letter = (lower >= 0x61) & (lower <= 0x7A)
                high_high += int(np.count_nonzero(high[:-1] & high[1:]))
                high_letter += int(
                    np.count_nonzero((high[:-1] & letter[1:]) | (letter[:-1] & high[1:]))
                )
    present = bytes(b for b in range(0x80, 0x100) if hist[b])

    def decodes(enc: str) -> bool:
        try:
            present.decode(enc)
        except UnicodeDecodeError:
            return False
        return True

    if high_high > high_letter:
        best, best_score = None, -math.inf
        total = int(sum(int(hist[b]) for b in present))
        for enc, prior in _CYRILLIC_CANDIDATES.items():
            if not decodes(enc):
                continue
            score = prior * total
            for b in present:
                char = bytes([b]).decode(enc)
                freq = _CYRILLIC_FREQ.get(char.lower(), 0.001 if not char.isalpha() else 0.05)
                weight = 1.0 if char.islower() or not char.isalpha() else 0.7
                score += int(hist[b]) * math.log(freq * weight)
            if score > best_score:
                best, best_score = enc, score
        if best is not None:
            return codecs.lookup(best).name
    return "cp1252" if decodes("cp1252") else "latin-1"


def open_text(path: Path, encoding: str) -> Any:
    """A text stream that never fails on bytes: for looking, not for reading rows."""
    return path.open(encoding=encoding, errors="replace", newline="")


@contextlib.contextmanager
def csv_field_limit() -> Iterator[None]:
    """Let the csv module see cells as large as ours (its default stops at 128 KiB).

    The limit is process-wide; it is only ever raised, never put back, so that two threads
    reading at once cannot restore it under each other.
    """
    if csv.field_size_limit() < MAX_CELL_CHARS * 4:
        csv.field_size_limit(MAX_CELL_CHARS * 4)
    yield


_SEP_LINE = re.compile(r"sep=(.)\r?\n?$")


def read_sample(path: Path, encoding: str) -> tuple[str, str | None]:
    """The first characters of the file cut at a line end, and the `sep=X` line Excel honours."""
    with open_text(path, encoding) as f:
        sample = f.read(SAMPLE_CHARS)
        more = bool(f.read(1))
    sample = sample.lstrip("\ufeff")
    first_line = sample.splitlines(keepends=True)[0] if sample else ""
    found = _SEP_LINE.match(first_line)
    sep = found.group(1) if found and found.group(1) not in '"\r\n' else None
    if sep:
        sample = sample[len(first_line) :]
    if more:
        cut = max(sample.rfind("\n"), sample.rfind("\r"))
        if cut > 0:
            sample = sample[: cut + 1]
    return sample, sep


def choose_delimiter(sample: str) -> str:
    """The delimiter that splits the header and gives most rows the header's field count.

    Quotes are honoured (csv module), so a `;` file with commas inside values, or a `,` file
    with quoted `;`, is not fooled. Consistency decides first; then more fields; then the order
    , ; TAB |. A file no candidate splits is one column, read with ",".
    """
    best, best_key = ",", None
    with csv_field_limit():
        for rank, delim in enumerate(_DELIMITERS):
            lines = io.StringIO(sample, newline="")
            records = [r for r in csv.reader(lines, delimiter=delim) if any(r)]
            if not records or len(records[0]) < 2:
                continue
            fields = len(records[0])
            body = records[1:51]
            same = sum(len(r) == fields for r in body) / len(body) if body else 1.0
            key = (round(same, 1), fields, -rank)
            if best_key is None or key > best_key:
                best, best_key = delim, key
    return best
