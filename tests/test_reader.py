"""Reading CSV and Excel files into rows of cells as a person sees them (bulk_events.reader)."""

from __future__ import annotations

import codecs
import csv
import io
import string
import subprocess
import sys
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulk_events import reader
from bulk_events.errors import FileFormatError, UsageError
from bulk_events.reader import Detected, calamine, csvfile, detect, excel, ods, open_table
from bulk_events.reader import table as table_module

sys.path.insert(0, str(Path(__file__).parent))
import files  # the test-file builders beside this module

# shared/ sits beside the clone (in CI too); read the samples there, in place.
REALWORLD = next(
    (
        p
        for p in (
            Path(__file__).resolve().parents[2] / "shared" / "realworld",
            Path("/work/shared/realworld"),
        )
        if p.is_dir()
    ),
    Path("/work/shared/realworld"),
)


def read_all(
    path: Path, size: int = 50_000, **options: object
) -> tuple[reader.Table, pd.DataFrame]:
    """Open a file, read every chunk, and return the table and all rows in one frame."""
    with open_table(path, **options) as table:
        frames = list(table.chunks(size))
    rows = pd.concat(frames) if frames else pd.DataFrame(columns=table.columns)
    return table, rows


def records(frame: pd.DataFrame) -> dict[int, list[str]]:
    """Row number -> cells, the shape most assertions compare."""
    return {
        int(i): list(v) for i, v in zip(frame.index, frame.itertuples(index=False), strict=True)
    }


def limit(monkeypatch: pytest.MonkeyPatch, name: str, value: int) -> None:
    """Lower one of the reader's limits in every module of the package that uses it."""
    for module in (table_module, detect, csvfile, excel, calamine, ods):
        if hasattr(module, name):
            monkeypatch.setattr(module, name, value)


PEAK_SCRIPT = """
import resource, sys
from bulk_events.errors import BulkEventsError
from bulk_events.reader import open_table
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    with open_table(sys.argv[1]) as table:
        for _ in table.chunks():
            pass
    message = "read"
except BulkEventsError as exc:
    message = str(exc)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(after - before)
print(message)
"""


def peak_growth(path: Path) -> tuple[int, str]:
    """Read ``path`` in a fresh process: (how far the peak RSS rose during the read, in bytes,
    and the refusal message or "read"). A peak, so memory held only briefly still counts."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    kib, message = done.stdout.split("\n", 1)
    return int(kib) * 1024, message.strip()


# --------------------------------------------------------------------------- CSV: the happy cases


def test_utf8_csv_gives_strings_indexed_by_spreadsheet_row(tmp_path: Path) -> None:
    """A plain UTF-8 CSV yields str cells only (numbers stay text) indexed from row 2."""
    path = files.write_bytes(
        tmp_path / "c.csv", b"email,phone,amount\na@x.com,0501234567,12.50\nb@x.com,,1e3\n"
    )
    table, rows = read_all(path)
    assert table.columns == ["email", "phone", "amount"]
    assert table.detected == Detected(format="csv", encoding="utf-8", delimiter=",", header_row=1)
    assert table.detected.describe() == 'CSV, utf-8 (detected), delimiter "," (detected)'
    assert records(rows) == {2: ["a@x.com", "0501234567", "12.50"], 3: ["b@x.com", "", "1e3"]}
    assert all(type(v) is str for col in rows for v in rows[col])
    assert list(rows.index) == [2, 3]


def test_utf8_bom_is_detected_and_stripped_from_the_header(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a BOM: it is not part of the first column's name."""
    path = files.write_bytes(
        tmp_path / "c.csv", codecs.BOM_UTF8 + "email;имя\na@x.com;Олена\n".encode()
    )
    table, rows = read_all(path)
    assert table.detected.encoding == "utf-8-sig"
    assert table.columns == ["email", "имя"]
    assert records(rows) == {2: ["a@x.com", "Олена"]}


def test_forced_utf8_on_a_bom_file_still_strips_the_bom(tmp_path: Path) -> None:
    """--encoding utf-8 on a file with a BOM does not leave the BOM glued to the first header."""
    path = files.write_bytes(tmp_path / "c.csv", codecs.BOM_UTF8 + b"email,name\na@x.com,Ann\n")
    table, _ = read_all(path, encoding="UTF8")
    assert table.columns == ["email", "name"]
    assert table.detected.encoding_given
    assert "(given)" in table.detected.describe()


CYRILLIC_ROWS = [
    ["Email", "Ім'я", "Прізвище", "Місто", "Коментар"],
    ["olena@example.com", "Олена", "Шевченко", "Київ", "Постійна клієнтка, знижка 5%"],
    ["ivan@example.com", "Іван", "Петренко", "Львів", "Оплата частинами, дзвонити ввечері"],
    ["maria@example.com", "Марія", "Ковальчук", "Одеса", "Їй подобаються пропозиції, є бонуси"],
    ["petr@example.ru", "Пётр", "Сидоров", "Москва", "Новый клиент, заказ через сайт"],
]


def cp1251_csv(path: Path) -> Path:
    text = "\r\n".join(";".join(r) for r in CYRILLIC_ROWS) + "\r\n"
    return files.write_bytes(path, text.encode("cp1251"))


def test_cp1251_semicolon_file_from_excel_is_detected(tmp_path: Path) -> None:
    """Excel in a Cyrillic locale saves cp1251 with ";" and commas inside values: both are detected."""
    table, rows = read_all(cp1251_csv(tmp_path / "c.csv"))
    assert (table.detected.encoding, table.detected.delimiter) == ("cp1251", ";")
    assert table.detected.describe() == 'CSV, cp1251 (detected), delimiter ";" (detected)'
    assert table.columns == CYRILLIC_ROWS[0]
    assert records(rows)[4] == CYRILLIC_ROWS[3]


@pytest.mark.parametrize("encoding", ["koi8-r", "mac-cyrillic", "cp866"])
def test_cyrillic_lookalike_encodings_are_told_apart(tmp_path: Path, encoding: str) -> None:
    """Russian text in koi8-r, mac-cyrillic or cp866 is not taken for cp1251 (or the reverse)."""
    rows = [
        ["email", "имя", "фамилия", "город", "комментарий"],
        ["petr@example.ru", "Пётр", "Сидоров", "Москва", "Новый клиент, заказ через сайт"],
        ["anna@example.ru", "Анна", "Смирнова", "Казань", "Постоянная покупательница, скидка"],
        ["oleg@example.ru", "Олег", "Кузнецов", "Самара", "Звонить после обеда, вежливо"],
    ]
    text = "\n".join(";".join(r) for r in rows) + "\n"
    path = files.write_bytes(tmp_path / "c.csv", text.encode(encoding))
    table, read = read_all(path)
    assert table.detected.encoding == codecs.lookup(encoding).name
    assert records(read)[3] == rows[2]


def test_cp1252_latin_text_is_not_mistaken_for_cyrillic(tmp_path: Path) -> None:
    """A Western-European legacy file (café, Müller) decodes as cp1252, not as cp1251."""
    text = "email,name,city\nx@y.fr,José Müller,Café Noël\nz@y.de,Françoise,Škoda ångström\n"
    path = files.write_bytes(tmp_path / "c.csv", text.replace("Š", "S").encode("cp1252"))
    table, rows = read_all(path)
    assert table.detected.encoding == "cp1252"
    assert records(rows)[2] == ["x@y.fr", "José Müller", "Café Noël"]


def test_legacy_byte_far_down_the_file_decides_the_encoding_before_any_row(tmp_path: Path) -> None:
    """An ASCII file whose only accented byte is at row 5000 is read as cp1252, not UTF-8 that fails later."""
    lines = ["email,name"] + [f"u{i}@x.com,Name{i}" for i in range(2, 5000)] + ["last@x.com,René"]
    path = files.write_bytes(tmp_path / "c.csv", ("\n".join(lines) + "\n").encode("cp1252"))
    table, rows = read_all(path, size=1000)
    assert table.detected.encoding == "cp1252"
    assert records(rows)[5000] == ["last@x.com", "René"]


def test_utf8_file_with_one_damaged_byte_is_refused_with_its_row(tmp_path: Path) -> None:
    """A UTF-8 file (Cyrillic) with one bad byte at row 1500 is refused, naming the row, not garbled as cp1251."""
    lines = ["email,name"] + [f"u{i}@x.com,Олена {i}" for i in range(2, 1500)]
    data = ("\n".join(lines) + "\n").encode() + b"bad@x.com,\xff\xfe\n" + b"z@x.com,Ann\n"
    path = files.write_bytes(tmp_path / "c.csv", data)
    with pytest.raises(
        FileFormatError, match=r"looks like utf-8 but has an invalid byte 0xff at row 1500"
    ):
        open_table(path)


def test_utf16_tab_file_from_excel_unicode_text(tmp_path: Path) -> None:
    """Excel's "Unicode text" (UTF-16LE with BOM, TAB-separated) is read with its row numbers."""
    text = "email\tname\tnote\r\na@x.com\tОлена\t1,5\r\n\r\nb@x.com\tJosé\t\r\n"
    path = files.write_bytes(tmp_path / "c.txt", codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    table, rows = read_all(path)
    assert (table.detected.encoding, table.detected.delimiter) == ("utf-16", "\t")
    assert table.detected.describe() == "CSV, utf-16 (detected), delimiter TAB (detected)"
    assert records(rows) == {2: ["a@x.com", "Олена", "1,5"], 4: ["b@x.com", "José", ""]}


def test_utf16_without_bom_is_recognised(tmp_path: Path) -> None:
    """UTF-16 without a BOM is recognised by its NUL pattern instead of being refused as binary."""
    path = files.write_bytes(tmp_path / "c.csv", "email,name\na@x.com,Ann\n".encode("utf-16-le"))
    table, rows = read_all(path)
    assert table.detected.encoding == "utf-16-le"
    assert records(rows) == {2: ["a@x.com", "Ann"]}


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_blank_rows_are_skipped_but_counted(tmp_path: Path, newline: str) -> None:
    """Blank lines (leading, middle, `,,,`) are not rows yet keep the numbering a spreadsheet shows."""
    lines = ["", ",,", "email,name,city", "a@x.com,Ann,Kyiv", "", ",,", "b@x.com,Bob,", "", ""]
    path = files.write_bytes(tmp_path / "c.csv", newline.join(lines).encode())
    table, rows = read_all(path)
    assert table.detected.header_row == 3
    assert table.columns == ["email", "name", "city"]
    assert records(rows) == {4: ["a@x.com", "Ann", "Kyiv"], 7: ["b@x.com", "Bob", ""]}


def test_quoted_multiline_cell_is_one_row(tmp_path: Path) -> None:
    """A quoted cell holding line breaks is one row, as in Excel, and later rows keep their numbers."""
    data = 'email,address\na@x.com,"1 Main St\nApt 2\nKyiv"\n\nb@x.com,"say ""hi"", then go"\n'
    _, rows = read_all(files.write_bytes(tmp_path / "c.csv", data.encode()))
    assert records(rows) == {
        2: ["a@x.com", "1 Main St\nApt 2\nKyiv"],
        4: ["b@x.com", 'say "hi", then go'],
    }


def test_rows_are_numbered_across_chunks(tmp_path: Path) -> None:
    """Chunks are bounded and row numbers continue across chunk boundaries, blank rows included."""
    lines = ["email"] + [("" if i % 10 == 0 else f"u{i}@x.com") for i in range(2, 1002)]
    path = files.write_bytes(tmp_path / "c.csv", ("\n".join(lines) + "\n").encode())
    with open_table(path) as table:
        sizes = [len(c) for c in table.chunks(100)]
        rows = pd.concat(table.chunks(100))
    assert max(sizes) <= 100
    assert len(rows) == 1000 - 100
    assert rows.loc[999, "email"] == "u999@x.com"
    assert 1000 not in rows.index and rows.index.is_monotonic_increasing


def test_excel_sep_line_sets_the_delimiter_and_is_not_a_row(tmp_path: Path) -> None:
    """The `sep=;` first line Excel understands chooses the delimiter and is hidden like in Excel."""
    path = files.write_bytes(tmp_path / "c.csv", b"sep=;\nemail;name,full\na@x.com;Ann, B\n")
    table, rows = read_all(path)
    assert table.detected.delimiter == ";"
    assert table.detected.header_row == 1
    assert records(rows) == {2: ["a@x.com", "Ann, B"]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("email;name;note\na@x.com;Doe, John;1,5\nb@x.com;Roe, Jane;2,5\n", ";"),
        ('email,name,note\na@x.com,"Doe; John",x\nb@x.com,"Roe; Jane",y\n', ","),
        ("email|name\na@x.com|Ann, B; C\n", "|"),
        ("email\tname\na@x.com\tAnn, B; C\n", "\t"),
        ("Name, first;City;Age\nDoe, John;Kyiv;30\nRoe, Jane;Lviv;31\n", ";"),
        ("email\na@x.com\nb@x.com\n", ","),
    ],
    ids=[
        "semicolon-with-commas",
        "comma-with-quoted-semicolons",
        "pipe",
        "tab",
        "comma-in-header",
        "one-column",
    ],
)
def test_delimiter_detection_on_realistic_files(tmp_path: Path, text: str, expected: str) -> None:
    """The delimiter is the one that splits the header and the rows consistently, quotes honoured."""
    table, _ = read_all(files.write_bytes(tmp_path / "c.csv", text.encode()))
    assert table.detected.delimiter == expected


def test_single_column_file_keeps_its_one_column(tmp_path: Path) -> None:
    """A one-column file of emails reads as one column, no splitting invented."""
    table, rows = read_all(files.write_bytes(tmp_path / "c.csv", b"email\na@x.com\n\nb@x.com\n"))
    assert table.columns == ["email"]
    assert records(rows) == {2: ["a@x.com"], 4: ["b@x.com"]}


@pytest.mark.parametrize(
    ("given", "used"), [("tab", "\t"), ("\\t", "\t"), ("semicolon", ";"), ("|", "|")]
)
def test_delimiter_option_accepts_names(tmp_path: Path, given: str, used: str) -> None:
    """--delimiter takes the character or a name (tab, \\t, semicolon) and overrides detection."""
    path = files.write_bytes(tmp_path / "c.csv", f"a,b{used}c\n1,2{used}3\n".encode())
    table, rows = read_all(path, delimiter=given)
    assert table.detected.delimiter == used and table.detected.delimiter_given
    assert table.columns == ["a,b", "c"]
    assert records(rows) == {2: ["1,2", "3"]}


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    """An unknown encoding, a multi-character delimiter, or a sheet for a CSV are usage errors."""
    path = files.write_bytes(tmp_path / "c.csv", b"a,b\n1,2\n")
    with pytest.raises(UsageError, match='unknown encoding "klingon"'):
        open_table(path, encoding="klingon")
    with pytest.raises(UsageError, match="unusable delimiter"):
        open_table(path, delimiter="::")
    with pytest.raises(UsageError, match="no sheets"):
        open_table(path, sheet="Data")
    with open_table(path) as table, pytest.raises(UsageError, match="chunk size"):
        table.chunks(0)


def test_forced_encoding_that_cannot_decode_names_row_byte_and_suggestion(tmp_path: Path) -> None:
    """--encoding utf-8 on a cp1251 file fails with the row, the byte and the encoding to try."""
    path = cp1251_csv(tmp_path / "customers.csv")
    with pytest.raises(FileFormatError) as err:
        open_table(path, encoding="utf-8")
    assert str(err.value) == (
        "cannot decode customers.csv as utf-8 at row 1 (byte 0xb2); try --encoding cp1251"
    )


def test_forced_encoding_error_counts_rows_not_lines(tmp_path: Path) -> None:
    """The row of a decoding error counts a quoted multi-line cell as one row."""
    data = 'email,note\na@x.com,"two\nlines"\n\nb@x.com,caf\xe9\n'.encode("latin-1")
    with pytest.raises(
        FileFormatError, match=r"as utf-8 at row 4 \(byte 0xe9\); try --encoding cp1252"
    ):
        open_table(files.write_bytes(tmp_path / "c.csv", data), encoding="utf-8")


def test_header_only_file_has_columns_and_no_rows(tmp_path: Path) -> None:
    """A file with only a header is fine: its columns and zero rows."""
    table, rows = read_all(files.write_bytes(tmp_path / "c.csv", b"email,name\n"))
    assert table.columns == ["email", "name"]
    assert rows.empty


def test_header_cells_are_kept_as_written(tmp_path: Path) -> None:
    """Header cells keep their spaces and case; only blank, empty columns are dropped."""
    path = files.write_bytes(tmp_path / "c.csv", b" Email ,,Name,\na@x.com,,Ann,\n")
    table, rows = read_all(path)
    assert table.columns == [" Email ", "Name"]
    assert records(rows) == {2: ["a@x.com", "Ann"]}


def test_ragged_rows_are_padded_and_empty_extra_cells_ignored(tmp_path: Path) -> None:
    """Short rows get "" cells; trailing empty separators beyond the header are not columns."""
    path = files.write_bytes(tmp_path / "c.csv", b"a,b,c\n1\n2,3,4,,\n")
    table, rows = read_all(path)
    assert table.columns == ["a", "b", "c"]
    assert records(rows) == {2: ["1", "", ""], 3: ["2", "3", "4"]}


# --------------------------------------------------------------------------- CSV: structure errors


def test_duplicate_header_names_are_refused_with_letters(tmp_path: Path) -> None:
    """Two headers equal after trimming and ignoring case are refused, naming both columns."""
    path = files.write_bytes(tmp_path / "c.csv", b"Email,Name,Phone,City, email \n")
    with pytest.raises(FileFormatError, match=r'^duplicate column "Email" \(columns A and E\)$'):
        open_table(path)


def test_value_under_a_blank_header_is_refused_naming_column_and_row(tmp_path: Path) -> None:
    """Data in a column with no header is refused, naming its letter and the row."""
    path = files.write_bytes(tmp_path / "c.csv", b"email,,name\na@x.com,,Ann\n\nb@x.com,oops,Bob\n")
    with open_table(path) as table:
        assert table.columns == ["email", "name"]
        with pytest.raises(FileFormatError, match="column B has no header but row 4 has a value"):
            list(table.chunks())


def test_value_beyond_the_header_is_refused(tmp_path: Path) -> None:
    """A cell to the right of the last header is a value in a column with no header."""
    path = files.write_bytes(tmp_path / "c.csv", b"email,name\na@x.com,Ann,extra\n")
    with (
        open_table(path) as table,
        pytest.raises(FileFormatError, match="column C has no header but row 2"),
    ):
        list(table.chunks())


def test_wider_row_far_down_is_read_like_excel(tmp_path: Path) -> None:
    """A row far below the sampled ones with extra empty cells is fine; a value there is refused."""
    lines = ["a,b", *(["1,2"] * 1500), "", '"x\ny",2', "3,4,,,", "5,6"]
    path = files.write_bytes(tmp_path / "c.csv", ("\n".join(lines) + "\n").encode())
    _, rows = read_all(path, size=100)
    assert len(rows) == 1503
    assert records(rows.loc[1503:]) == {1503: ["x\ny", "2"], 1504: ["3", "4"], 1505: ["5", "6"]}
    lines[-2] = "3,4,,oops"
    path = files.write_bytes(tmp_path / "c.csv", ("\n".join(lines) + "\n").encode())
    with (
        open_table(path) as table,
        pytest.raises(FileFormatError, match="column D has no header but row 1504"),
    ):
        list(table.chunks(100))


# --------------------------------------------------------------------------- CSV: hostile files


def test_empty_file_is_refused(tmp_path: Path) -> None:
    """An empty file gets a plain message."""
    with pytest.raises(FileFormatError, match=r"^customers\.csv is empty$"):
        open_table(files.write_bytes(tmp_path / "customers.csv", b""))


def test_blank_only_file_is_refused(tmp_path: Path) -> None:
    """A file of blank lines and separators only has no header to read."""
    with pytest.raises(FileFormatError, match="every row is blank"):
        open_table(files.write_bytes(tmp_path / "c.csv", b"\n,,,\n\n,,\n"))


def test_missing_file_and_folder_are_refused(tmp_path: Path) -> None:
    """A missing path or a folder gets a one-line message."""
    with pytest.raises(FileFormatError, match="no such file"):
        open_table(tmp_path / "nope.csv")
    with pytest.raises(FileFormatError, match="is a folder"):
        open_table(tmp_path)


def test_nul_byte_is_refused_with_its_row(tmp_path: Path) -> None:
    """A NUL byte (not text) is refused, naming the row it is on."""
    data = b'email,name\na@x.com,"multi\nline"\nb@x.com,Bo\x00b\n'
    with pytest.raises(
        FileFormatError, match=r"^c\.csv has a NUL byte at row 3; is this a text file\?$"
    ):
        open_table(files.write_bytes(tmp_path / "c.csv", data))


def test_binary_files_are_refused(tmp_path: Path) -> None:
    """An image renamed .csv, or random bytes, are refused without a traceback."""
    png = files.write_bytes(tmp_path / "a.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    with pytest.raises(FileFormatError, match="is a PNG image"):
        open_table(png)
    noise = files.write_bytes(tmp_path / "b.csv", bytes((i * 7919) % 256 for i in range(20000)))
    with pytest.raises(FileFormatError, match=r"NUL byte|not a text file"):
        open_table(noise)


def test_unterminated_quote_is_refused_with_the_row_it_starts_on(tmp_path: Path) -> None:
    """An opening quote never closed swallows the rest of the file: refused naming its first row."""
    data = b'email,name\na@x.com,Ann\n\nb@x.com,"Bob\nc@x.com,Cy\n'
    path = files.write_bytes(tmp_path / "c.csv", data)
    with (
        open_table(path) as table,
        pytest.raises(FileFormatError, match=r"^unterminated quoted value starting at row 4$"),
    ):
        list(table.chunks())


def test_giant_cell_on_one_line_is_refused_before_reading(tmp_path: Path) -> None:
    """A cell (so a line) over 1 MiB is found by the first pass, before any row, naming its row."""
    data = b"email,name\na@x.com,Ann\nb@x.com," + b"x" * (64 * 2**20) + b"\n"
    path = files.write_bytes(tmp_path / "c.csv", data)
    with pytest.raises(FileFormatError, match=r"^row 3 is longer than 1 MiB; refusing to read it$"):
        open_table(path)
    growth, message = peak_growth(path)
    assert message.startswith("row 3 is longer than 1 MiB")
    assert growth < 24 * 2**20  # holding the 64 MiB line at once would take far more


def test_giant_quoted_multiline_cell_is_refused_naming_row_and_column(tmp_path: Path) -> None:
    """A quoted cell over 1 MiB made of short lines is caught while streaming, naming row and column."""
    cell = ("line of text\n" * (reader.MAX_CELL_CHARS // 13 + 10)).encode()
    data = b'email,name\na@x.com,Ann\nb@x.com,"' + cell + b'"\n'
    path = files.write_bytes(tmp_path / "c.csv", data)
    with (
        open_table(path) as table,
        pytest.raises(FileFormatError, match=r"^row 3, column B, has a cell longer than 1 MiB"),
    ):
        list(table.chunks())


def test_line_checks_hold_across_read_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With tiny read blocks, rows, quoted line breaks and the long-line check still land on the right rows."""
    limit(monkeypatch, "BLOCK", 7)
    limit(monkeypatch, "MAX_CELL_CHARS", 40)
    data = 'email,note\r\na@x.com,"one\r\ntwo"\r\n\r\nb@x.com,"say ""hi"""\r\n'
    _, rows = read_all(files.write_bytes(tmp_path / "ok.csv", data.encode()))
    assert records(rows) == {2: ["a@x.com", "one\r\ntwo"], 4: ["b@x.com", 'say "hi"']}
    long = data + "c@x.com," + "y" * 45 + "\r\n"
    with pytest.raises(FileFormatError, match=r"^row 5 is longer than 1 MiB"):
        open_table(files.write_bytes(tmp_path / "long.csv", long.encode()))


def test_utf16_file_gets_the_same_line_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UTF-16 text (checked as text, not bytes) is refused for a long line, and its giant quoted cells are caught."""
    limit(monkeypatch, "MAX_CELL_CHARS", 40)
    long = "email\tnote\r\na@x.com\tok\r\nb@x.com\t" + "y" * 45 + "\r\n"
    with pytest.raises(FileFormatError, match=r"^row 3 is longer than 1 MiB"):
        open_table(
            files.write_bytes(tmp_path / "a.txt", codecs.BOM_UTF16_LE + long.encode("utf-16-le"))
        )
    quoted = 'email\tnote\r\na@x.com\t"' + "y\r\n" * 20 + '"\r\n'
    path = files.write_bytes(tmp_path / "b.txt", codecs.BOM_UTF16_LE + quoted.encode("utf-16-le"))
    with (
        open_table(path) as table,
        pytest.raises(FileFormatError, match=r"^row 2, column B, has a cell longer"),
    ):
        list(table.chunks())


def test_html_or_xml_saved_as_csv_is_refused(tmp_path: Path) -> None:
    """An HTML table saved with a .csv/.xls name is refused with advice, not read as one column."""
    path = files.write_bytes(
        tmp_path / "export.csv", b"<html><table><tr><td>a</td></tr></table></html>"
    )
    with pytest.raises(FileFormatError, match="is an XML or HTML file"):
        open_table(path)


# --------------------------------------------------------------------------- CSV: round trip


# Any text a cell can hold: every Unicode category but surrogates and control characters, which
# no person types and which mark a file as binary; tab and LF are in. A lone CR is left out because
# Python's csv writer leaves it unquoted under lineterminator="\n", which makes it a row break.
cell_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\t\n"), max_size=12
)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    width = draw(st.integers(min_value=2, max_value=5))
    header = draw(
        st.lists(
            st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=8),
            min_size=width,
            max_size=width,
            unique_by=str.casefold,
        )
    )
    row = st.lists(cell_text, min_size=width, max_size=width).filter(any)
    return header, draw(st.lists(row, max_size=15))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    table=tables(),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_written_csv_reads_back_identically(
    tmp_path: Path,
    table: tuple[list[str], list[list[str]]],
    delimiter: str,
    quoting: int,
    newline: str,
) -> None:
    """Any text table written as UTF-8 CSV (any delimiter, quoting) is detected and read back cell for cell."""
    header, rows = table
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator=newline).writerows(
        [header, *rows]
    )
    path = files.write_bytes(tmp_path / "prop.csv", buffer.getvalue().encode())
    read, frame = read_all(path, size=4)
    assert read.detected.delimiter == delimiter
    assert read.columns == header
    assert [list(r) for r in frame.itertuples(index=False)] == rows


# --------------------------------------------------------------------------- XLSX: cells


def test_typed_cells_read_as_a_person_sees_them(tmp_path: Path) -> None:
    """Numbers without ".0", text with leading zeros, ISO dates, TRUE/FALSE, blank formatted rows skipped."""
    table, rows = read_all(files.typed_workbook(tmp_path / "t.xlsx"))
    assert table.detected.engine == "calamine"
    assert table.detected.describe() == 'Excel sheet "Data" (1 of 1)'
    assert table.columns == [
        "phone",
        "code",
        "zip",
        "date",
        "when",
        "at",
        "took",
        "ok",
        "amount",
        "name",
    ]
    assert records(rows) == {
        2: [
            "380501234567",
            "01234",
            "1234",
            "2024-05-01",
            "2024-05-01T13:45:10",
            "08:30:00",
            "30:00:00",
            "TRUE",
            "12.5",
            "Олена",
        ],
        6: ["5153435776", "x", "7", "2021-01-02", "2021-01-02", "", "", "FALSE", "0.3", " Ivan "],
        8: ["1e+20", "0", "1234.6", "", "", "", "", "", "", "last"],
    }
    assert all(type(v) is str for col in rows for v in rows[col])


def test_zero_padded_number_format_is_shown_padded_via_openpyxl(tmp_path: Path) -> None:
    """A number under the custom format 00000 reads as Excel shows it (01234), through openpyxl."""
    table, rows = read_all(files.typed_workbook(tmp_path / "t.xlsx", padded=True))
    assert table.detected.engine == "openpyxl"
    assert rows["zip"].to_dict() == {2: "01234", 6: "00007", 8: "01235"}
    assert rows.loc[2, "code"] == "01234" and rows.loc[2, "phone"] == "380501234567"


@pytest.mark.parametrize(
    ("fmt", "value", "shown"),
    [
        ("0000000000", 501234567, "0501234567"),
        ('"UA"000000', 1234, "UA001234"),
        ("000-000-0000", 501234567, "050-123-4567"),
        ("00000", 1234567, "1234567"),
    ],
)
def test_zero_padding_formats_with_literals(
    tmp_path: Path, fmt: str, value: int, shown: str
) -> None:
    """Formats made of 0s and literals render like Excel, extra digits kept."""
    wb = openpyxl.Workbook()
    wb.active.append(["phone"])
    wb.active.append([value])
    wb.active["A2"].number_format = fmt
    wb.save(tmp_path / "p.xlsx")
    table, rows = read_all(tmp_path / "p.xlsx")
    assert table.detected.engine == "openpyxl"
    assert records(rows) == {2: [shown]}


def test_calamine_and_openpyxl_give_identical_strings(tmp_path: Path) -> None:
    """The two engines render the same workbook to the same cells, row numbers and columns."""
    path = files.typed_workbook(tmp_path / "t.xlsx")
    path = files.patch_zip(
        path,
        tmp_path / "f.xlsx",
        {
            "xl/worksheets/sheet1.xml": lambda x: files.replace_row(
                x,
                9,
                '<c r="A9"><f>1-539-402-259</f><v>-1199</v></c><c r="B9" t="b"><f>TRUE()</f><v>1</v></c>'
                '<c r="C9" t="str"><f>"a"&amp;"b"</f><v>ab</v></c><c r="D9"><f>1+1</f></c>',
            )
        },
    )
    results = []
    for engine in ("calamine", "openpyxl"):
        with excel.open_xlsx(path, None, engine=engine) as table:
            assert table.detected.engine == engine
            results.append((table.columns, records(pd.concat(table.chunks(2)))))
    assert results[0] == results[1]
    assert results[0][1][9][:4] == ["-1199", "TRUE", "ab", ""]


def test_big_sheet_is_streamed_by_openpyxl_with_the_same_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sheet too big to hold in memory is read by streaming openpyxl, giving the same cells."""
    path = files.typed_workbook(tmp_path / "t.xlsx")
    _, small = read_all(path)
    monkeypatch.setattr(excel, "CALAMINE_MAX_SHEET_XML", 1000)
    table, big = read_all(path)
    assert table.detected.engine == "openpyxl"
    assert records(big) == records(small)


def test_formula_cell_reads_its_cached_value(tmp_path: Path) -> None:
    """A phone Excel turned into a formula (=1-539-402-259) reads as its cached value -1199."""
    base = files.workbook(tmp_path / "b.xlsx", {"Data": [["email", "phone"], ["a@x.com", 1]]})
    path = files.patch_zip(
        base,
        tmp_path / "f.xlsx",
        {
            "xl/worksheets/sheet1.xml": lambda x: files.replace_row(
                x,
                2,
                '<c r="A2" t="inlineStr"><is><t>a@x.com</t></is></c><c r="B2"><f>1-539-402-259</f><v>-1199</v></c>',
            )
        },
    )
    _, rows = read_all(path)
    assert records(rows) == {2: ["a@x.com", "-1199"]}


def test_data_starting_below_and_right_keeps_row_numbers_and_letters(tmp_path: Path) -> None:
    """A table starting at C3 has header row 3, and errors name the true column letters."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["C3"], ws["D3"], ws["F3"] = "email", "name", "city"
    ws["C4"], ws["D4"], ws["F4"] = "a@x.com", "Ann", "Kyiv"
    ws["C6"], ws["D6"] = "b@x.com", "Bob"
    wb.save(tmp_path / "o.xlsx")
    table, rows = read_all(tmp_path / "o.xlsx")
    assert table.detected.header_row == 3
    assert table.columns == ["email", "name", "city"]
    assert records(rows) == {4: ["a@x.com", "Ann", "Kyiv"], 6: ["b@x.com", "Bob", ""]}
    ws["E6"] = "stray"
    wb.save(tmp_path / "o.xlsx")
    with (
        open_table(tmp_path / "o.xlsx") as table,
        pytest.raises(FileFormatError, match="column E has no header but row 6"),
    ):
        list(table.chunks())


def test_xlsx_duplicate_headers_are_refused(tmp_path: Path) -> None:
    """Duplicate headers in a sheet are refused with their column letters."""
    path = files.workbook(
        tmp_path / "d.xlsx", {"Data": [["Email", "Name", "EMAIL"], ["a", "b", "c"]]}
    )
    with pytest.raises(FileFormatError, match=r'duplicate column "Email" \(columns A and C\)'):
        open_table(path)


# --------------------------------------------------------------------------- XLSX: sheets


def three_sheets(path: Path) -> Path:
    return files.workbook(
        path,
        {
            "Data": [["email"], ["a@x.com"]],
            "Notes": [["note"], ["n1"], ["n2"]],
            "2": [["id"], ["7"]],
        },
    )


@pytest.mark.parametrize(
    ("sheet", "chosen", "position"),
    [
        (None, "Data", 1),
        ("Notes", "Notes", 2),
        ("notes", "Notes", 2),
        (2, "Notes", 2),
        ("3", "2", 3),
        ("2", "2", 3),
    ],
)
def test_sheet_is_chosen_by_name_or_tab_position(
    tmp_path: Path, sheet: object, chosen: str, position: int
) -> None:
    """A sheet is picked by exact name, name ignoring case, or tab position counted from 1."""
    table, _ = read_all(three_sheets(tmp_path / "m.xlsx"), sheet=sheet)
    assert table.detected.sheet == chosen
    assert table.detected.sheets == ("Data", "Notes", "2")
    assert table.detected.describe() == f'Excel sheet "{chosen}" ({position} of 3)'


def test_unknown_sheet_lists_the_sheets(tmp_path: Path) -> None:
    """An unknown sheet name or position is refused with the list of sheets."""
    path = files.workbook(tmp_path / "customers.xlsx", {"Data": [["a"]], "Notes": [["b"]]})
    with pytest.raises(FileFormatError) as err:
        open_table(path, sheet="X")
    assert str(err.value) == 'no sheet "X" in customers.xlsx; sheets: "Data", "Notes"'
    with pytest.raises(
        FileFormatError, match=r'no sheet number 3 in customers\.xlsx.*"Data", "Notes"'
    ):
        open_table(path, sheet=3)


def test_empty_sheet_is_refused_naming_the_sheets(tmp_path: Path) -> None:
    """A sheet without header or data is refused, naming the sheets there are."""
    path = files.workbook(tmp_path / "w.xlsx", {"Data": [["a"], ["1"]], "Empty": []})
    with pytest.raises(
        FileFormatError, match=r'^sheet "Empty" in w\.xlsx is empty; sheets: "Data", "Empty"$'
    ):
        open_table(path, sheet="Empty")


def test_default_sheet_is_the_first_visible_one(tmp_path: Path) -> None:
    """A hidden first sheet is not what a person sees first: the first visible sheet is read."""
    path = files.workbook(
        tmp_path / "h.xlsx",
        {"Lookup": [["x"]], "Data": [["email"], ["a@x.com"]]},
        hidden=("Lookup",),
    )
    table, rows = read_all(path)
    assert table.detected.sheet == "Data"
    assert records(rows) == {2: ["a@x.com"]}


# --------------------------------------------------------------------------- XLSX: hostile files


def test_not_a_zip_with_xlsx_name_is_refused(tmp_path: Path) -> None:
    """Text named .xlsx is not a workbook."""
    path = files.write_bytes(tmp_path / "customers.xlsx", b"email,name\n")
    with pytest.raises(
        FileFormatError, match=r"^customers\.xlsx is not an Excel workbook \(\.xlsx/\.xlsm\)$"
    ):
        open_table(path)


def test_ole2_file_that_is_no_workbook_is_refused(tmp_path: Path) -> None:
    """An OLE2 header with nothing behind it is damaged; a real .xls is read (tests/test_formats.py)."""
    path = files.write_bytes(tmp_path / "old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600))
    with pytest.raises(
        FileFormatError, match=r"^old\.xls is damaged: it cannot be read as a workbook$"
    ):
        open_table(path)


def test_other_zip_is_not_a_workbook(tmp_path: Path) -> None:
    """A zip that is not a workbook (a .docx, an archive) is refused as not an Excel workbook."""
    with zipfile.ZipFile(tmp_path / "doc.xlsx", "w") as z:
        z.writestr("word/document.xml", "<w/>")
    with pytest.raises(FileFormatError, match="is not an Excel workbook"):
        open_table(tmp_path / "doc.xlsx")


def test_zip_bomb_member_is_refused_quickly_with_bounded_memory(tmp_path: Path) -> None:
    """A member that unpacks a thousand times larger than it is stored is refused from the directory."""
    base = files.workbook(tmp_path / "b.xlsx", {"Data": [["a"], ["1"]]})
    bomb = files.zeros_member(tmp_path / "bomb.xlsx", base, "xl/media/blob.bin", 64 * 2**20)
    assert bomb.stat().st_size < 2**20
    with pytest.raises(FileFormatError, match="looks like a zip bomb"):
        open_table(bomb)
    growth, message = peak_growth(bomb)
    assert "looks like a zip bomb" in message
    assert growth < 24 * 2**20  # unpacking the 64 MiB member would take more


def test_declared_total_over_the_limit_is_refused(tmp_path: Path) -> None:
    """A workbook whose directory declares more than 1 GiB unpacked is refused before unpacking."""
    path = files.workbook(tmp_path / "big.xlsx", {"Data": [["a"], ["1"]]})
    for member in ("xl/worksheets/sheet1.xml", "xl/styles.xml"):  # ratio 60 each: no bomb alone
        files.set_declared_sizes(path, member, file_size=600 * 2**20, compress_size=10 * 2**20)
    with pytest.raises(FileFormatError, match=r"^big\.xlsx would unpack to 1\.2 GiB; refusing"):
        open_table(path)


def test_member_larger_than_declared_is_refused_as_damaged(tmp_path: Path) -> None:
    """A member whose directory under-states its size (a lying bomb) fails its check: damaged."""
    path = files.workbook(tmp_path / "lie.xlsx", {"Data": [["a"], ["1"]]})
    files.set_declared_sizes(path, "xl/worksheets/sheet1.xml", file_size=20)
    with pytest.raises(
        FileFormatError, match=r"^lie\.xlsx is damaged \(its part xl/worksheets/sheet1\.xml"
    ):
        open_table(path)
    base = files.workbook(tmp_path / "b.xlsx", {"Data": [["a"], ["1"]]})
    big = files.zeros_member(tmp_path / "big-lie.xlsx", base, "xl/media/blob.bin", 64 * 2**20)
    files.set_declared_sizes(big, "xl/media/blob.bin", file_size=20)
    growth, message = peak_growth(big)
    assert message.startswith("big-lie.xlsx is damaged (its part xl/media/blob.bin")
    assert growth < 24 * 2**20  # unpacking the 64 MiB it really holds would take more


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b']><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1"><si><t>&lol9;</t></si></sst>'
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheets/>&xxe;</workbook>'
)


@pytest.mark.parametrize(
    ("member", "content"),
    [
        ("xl/sharedStrings.xml", BILLION_LAUGHS),
        ("xl/workbook.xml", EXTERNAL_ENTITY),
        (
            "xl/worksheets/sheet1.xml",
            '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x []><worksheet/>'.encode(
                "utf-16-le"
            ),
        ),
    ],
    ids=["billion-laughs", "external-entity", "utf16-doctype"],
)
def test_xml_entity_declarations_are_refused(tmp_path: Path, member: str, content: bytes) -> None:
    """Any part declaring a DOCTYPE or entities (billion laughs, XXE) is refused before parsing."""
    base = files.workbook(tmp_path / "b.xlsx", {"Data": [["a"], ["1"]]})
    path = files.patch_zip(base, tmp_path / "evil.xlsx", {member: content})
    with pytest.raises(
        FileFormatError, match=r"^evil\.xlsx contains XML entity declarations; refusing to read it$"
    ):
        open_table(path)
    if member == "xl/sharedStrings.xml":  # expanding its entities would take gigabytes
        growth, message = peak_growth(path)
        assert message.startswith("evil.xlsx contains XML entity declarations")
        assert growth < 24 * 2**20


def test_corrupt_sheet_xml_is_a_clear_error(tmp_path: Path) -> None:
    """A sheet whose XML is broken gives a one-line 'damaged' message, not a parser traceback."""
    base = files.workbook(tmp_path / "b.xlsx", {"Data": [["a"], ["1"]]})
    path = files.patch_zip(
        base, tmp_path / "broken.xlsx", {"xl/worksheets/sheet1.xml": b"<worksheet><sheetData><row"}
    )
    with (
        pytest.raises(FileFormatError, match=r"broken\.xlsx is damaged"),
        open_table(path) as table,
    ):
        list(table.chunks())


# --------------------------------------------------------------------------- real-world samples


@pytest.mark.skipif(not REALWORLD.is_dir(), reason="shared real-world samples not present")
@pytest.mark.parametrize("name", ["customers-100.csv", "customers-100.xlsx"])
def test_realworld_customers_100(name: str) -> None:
    """The public customers-100 sample opens with its 12 headers and 100 rows, formula phones as cached values."""
    table, rows = read_all(REALWORLD / name, size=30)
    assert table.columns == [
        "Index", "Customer Id", "First Name", "Last Name", "Company", "City", "Country",
        "Phone 1", "Phone 2", "Email", "Subscription Date", "Website",
    ]  # fmt: skip
    assert len(rows) == 100
    assert list(rows.index) == list(range(2, 102))
    assert rows.loc[4, "Phone 1"] == "-1199"
    assert rows.loc[2, "Index"] == "1"
    assert rows.loc[5, "Company"] == "Dominguez, Mcmillan and Donovan"
    expected_date = "24/8/20" if name.endswith(".csv") else "2020-08-24"
    assert rows.loc[2, "Subscription Date"] == expected_date


def test_row_estimate_for_a_progress_bar(tmp_path):
    """Both CSV and Excel tables say about how many rows follow the header."""
    from bulk_events.reader import open_table

    csv_path = tmp_path / "c.csv"
    csv_path.write_text("email\n" + "".join(f"u{i}@x.co\n" for i in range(250)), encoding="utf-8")
    with open_table(csv_path) as table:
        assert table.row_estimate == 250
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["email"])
    for i in range(40):
        ws.append([f"u{i}@x.co"])
    wb.save(tmp_path / "c.xlsx")
    with open_table(tmp_path / "c.xlsx") as table:
        assert table.row_estimate == 40


def test_forcing_utf16_on_a_file_without_bom_is_a_clear_error(tmp_path):
    """--encoding utf-16 on a UTF-8 file: a one-line reason and a hint, not an internal error."""
    from bulk_events.errors import FileFormatError
    from bulk_events.reader import open_table

    path = tmp_path / "c.csv"
    path.write_text("email\na@b.co\n", encoding="utf-8")
    with pytest.raises(FileFormatError, match="try another --encoding"):
        open_table(path, encoding="utf-16")


# --------------------------------------------------------------------------- a report fed back in


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_report_reads_back_as_the_original_input(tmp_path: Path, suffix: str) -> None:
    """A CSV or XLSX report opens as the input it reports on: its columns, its cells unescaped."""
    from bulk_events.outcome import Outcome, Status
    from bulk_events.report import ReportWriter

    columns = ["email", "status", "=note"]
    chunk = pd.DataFrame(
        {"email": ["a@x.com", "b@x.com"], "status": ["vip", "-5"], "=note": ["=1+1", "'@x"]},
        index=[2, 4],
        dtype=object,
    )
    path = tmp_path / f"r{suffix}"
    with ReportWriter(path, columns) as report:
        report.write(chunk, [Outcome(2, Status.VALID), Outcome(4, Status.VALID)])
        report.commit()
    table, rows = read_all(path)
    assert table.columns == columns
    assert table.detected.report
    assert "bulk-events report" in table.detected.describe()
    assert records(rows) == {2: ["a@x.com", "vip", "=1+1"], 3: ["b@x.com", "-5", "'@x"]}


# --------------------------------------------------------------------------- XLSX: cells as shown


def test_formula_errors_are_shown_and_listed_per_row(tmp_path: Path) -> None:
    """An error cell reads as what Excel shows (#N/A) and is listed on its chunk; a row of only
    errors is a row, not a blank one; cached numbers, strings and booleans read as shown."""
    table, rows = read_all(files.error_workbook(tmp_path / "e.xlsx"), size=2)
    assert table.detected.engine == "openpyxl"  # calamine reads error cells as empty
    assert records(rows) == {
        2: ["a@x.com", "#N/A", "fine"],
        3: ["b@x.com", "2", "ab"],
        4: ["#DIV/0!", "#REF!", "#NAME?"],
        5: ["c@x.com", "TRUE", ""],
    }
    with open_table(tmp_path / "e.xlsx") as again:
        listed = {}
        for chunk in again.chunks(2):
            listed.update(chunk.attrs[reader.CELL_ERRORS])
    assert listed == {
        2: [("score", "B2 shows #N/A")],
        4: [
            ("email", "A4 shows #DIV/0!"),
            ("score", "B4 shows #REF!"),
            ("note", "C4 shows #NAME?"),
        ],
    }


def test_a_row_with_an_error_in_a_sent_column_is_invalid(tmp_path: Path) -> None:
    """The dry run reports a row whose sent cell shows #N/A as invalid, naming the cell."""
    import bulk_events

    report = tmp_path / "r.csv"
    result = bulk_events.import_file(
        files.error_workbook(tmp_path / "e.xlsx"), event="e", dry_run=True, report=report
    )
    with report.open(encoding="utf-8-sig", newline="") as f:
        outcome = {int(r["row"]): (r["status"], r["error"]) for r in csv.DictReader(f)}
    assert outcome[2] == ("invalid", "B2 shows #N/A")
    assert outcome[3][0] == "valid" and outcome[5][0] == "valid"
    assert outcome[4][0] == "invalid" and "A4 shows #DIV/0!" in outcome[4][1]
    assert result.counts["invalid"] == 2


FIXTURES = Path(__file__).parent / "fixtures"


def _listed(path: Path, **options: object) -> dict[int, list[tuple[str, str]]]:
    """The error cells every chunk of a file lists, by row number."""
    listed: dict[int, list[tuple[str, str]]] = {}
    with open_table(path, **options) as table:
        for chunk in table.chunks(2):
            listed.update(chunk.attrs[reader.CELL_ERRORS])
    return listed


def test_formula_errors_in_an_xls_are_shown_and_listed_on_their_own_sheet() -> None:
    """calamine reads an .xls error cell as empty; the record walk puts back what Excel shows,
    a typed-in #N/A and a formula's cached #DIV/0! alike, each on its own sheet."""
    path = FIXTURES / "errors.xls"
    table, rows = read_all(path, size=2)
    assert table.detected.engine == "calamine"
    assert records(rows) == {
        2: ["a@example.com", "#N/A", "5"],
        3: ["b@example.com", "Oslo", "#DIV/0!"],
        4: ["c@example.com", "Rome", "7"],
    }
    assert _listed(path) == {2: [("city", "B2 shows #N/A")], 3: [("score", "C3 shows #DIV/0!")]}
    _, other = read_all(path, sheet="Résumé Ω")
    assert records(other) == {2: ["d@example.com", "#REF!"]}
    assert _listed(path, sheet="Résumé Ω") == {2: [("note", "B2 shows #REF!")]}


def test_formula_errors_in_an_excel_95_workbook_are_found_on_their_sheet() -> None:
    """An Excel 5/95 file stores its sheet names without BIFF8's flags byte: the errors are
    tied to their sheet by its place among the sheets, so the name's bytes do not matter."""
    path = FIXTURES / "errors-biff5.xls"
    table, rows = read_all(path)
    assert table.detected.sheet == "Sales"
    assert records(rows) == {2: ["a@example.com", "#N/A"]}
    assert _listed(path) == {2: [("note", "B2 shows #N/A")]}


@pytest.mark.parametrize("boolean", [True, False], ids=["with-a-boolean", "plain"])
def test_formula_errors_in_an_ods_are_shown_and_listed(tmp_path: Path, boolean: bool) -> None:
    """LibreOffice saves an error cell as an empty string that calamine reads as empty: the
    content scan puts back what it shows (its own Err:502 too), repeated cells included."""
    path = files.error_ods(tmp_path / "e.ods", boolean=boolean)
    _, rows = read_all(path, size=2)
    assert records(rows) == {
        2: ["a@x.com", "#N/A", "fine"],
        3: ["b@x.com", "2", "ab"],
        4: ["Err:502", "#REF!", "#REF!"],
        5: ["c@x.com", "TRUE" if boolean else "yes", ""],
    }
    assert _listed(path) == {
        2: [("score", "B2 shows #N/A")],
        4: [
            ("email", "A4 shows Err:502"),
            ("score", "B4 shows #REF!"),
            ("note", "C4 shows #REF!"),
        ],
    }


@pytest.mark.parametrize("suffix", [".xls", ".ods"])
def test_a_row_with_an_error_in_an_xls_or_ods_is_invalid(tmp_path: Path, suffix: str) -> None:
    """The dry run reports such a row as invalid, naming the cell, as for an .xlsx."""
    import bulk_events

    path = FIXTURES / "errors.xls" if suffix == ".xls" else files.error_ods(tmp_path / "e.ods")
    report = tmp_path / "r.csv"
    result = bulk_events.import_file(path, event="e", dry_run=True, report=report)
    with report.open(encoding="utf-8-sig", newline="") as f:
        outcome = {int(r["row"]): (r["status"], r["error"]) for r in csv.DictReader(f)}
    wanted = {
        ".xls": {
            2: ("invalid", "B2 shows #N/A"),
            3: ("invalid", "C3 shows #DIV/0!"),
            4: ("valid", ""),
        },
        ".ods": {
            2: ("invalid", "B2 shows #N/A"),
            3: ("valid", ""),
            4: (
                "invalid",
                'email "Err:502" is not a valid email address; A4 shows Err:502; '
                "B4 shows #REF!; C4 shows #REF!",
            ),
            5: ("valid", ""),
        },
    }[suffix]
    assert outcome == wanted
    assert result.counts["invalid"] == 2


def test_too_many_error_cells_in_an_xls_or_ods_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Error cells are kept in memory until their rows are read: past the limit the file is
    refused with its reason rather than read with some of them left out."""
    limit(monkeypatch, "MAX_ERRORS", 1)
    for path in (FIXTURES / "errors.xls", files.error_ods(tmp_path / "e.ods")):
        with pytest.raises(FileFormatError, match="more than 1 cells showing a formula error"):
            open_table(path)


def test_ooxml_escapes_are_decoded_the_same_by_both_routes(tmp_path: Path) -> None:
    """_x000D_ is a carriage return, _x005F_ a literal "_", in calamine and in openpyxl alike."""
    path = files.escaped_strings_workbook(tmp_path / "s.xlsx")
    results = []
    for engine in ("calamine", "openpyxl"):
        with excel.open_xlsx(path, None, engine=engine) as table:
            results.append(records(pd.concat(table.chunks())))
    assert (
        results[0]
        == results[1]
        == {
            2: ["a@x.com", "line 1\r\nline 2", "_x000D_ stays"],
            3: ["b@x.com", "tab\there", "42"],
        }
    )


def test_empty_first_sheet_beside_a_data_sheet_suggests_sheet(tmp_path: Path) -> None:
    """When the default (first) sheet is empty and others exist, the refusal names --sheet."""
    path = files.workbook(tmp_path / "w.xlsx", {"Sheet1": [], "Data": [["email"], ["a@x.com"]]})
    with pytest.raises(FileFormatError) as err:
        open_table(path)
    assert str(err.value) == (
        'sheet "Sheet1" in w.xlsx is empty; pick another with --sheet; sheets: "Sheet1", "Data"'
    )


def test_openpyxl_warnings_go_to_the_log_not_the_terminal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A workbook with an empty stylesheet makes openpyxl warn: the warning is logged (seen at -v),
    never shown as a Python warning, and the cells are read."""
    import warnings

    base = files.workbook(tmp_path / "b.xlsx", {"Data": [["email", "n"], ["a@x.com", 7]]})
    bare = b'<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"/>'
    path = files.patch_zip(base, tmp_path / "d.xlsx", {"xl/styles.xml": bare})
    caplog.set_level("INFO", logger="bulk_events")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with excel.open_xlsx(path, None, engine="openpyxl") as table:
            chunk = next(table.chunks())
    assert not shown
    assert "stylesheet" in caplog.text
    assert records(chunk) == {2: ["a@x.com", "7"]}


@pytest.mark.parametrize("engine", ["calamine", "openpyxl"])
def test_a_serial_past_year_9999_under_a_date_format_shows_value_error(
    tmp_path: Path, engine: str
) -> None:
    """A date serial past 9999-12-31 is no date: the cell shows #VALUE! and is flagged as an error
    cell through both routes (never read as the bare number); an elapsed time of as many days and
    a plain number that large read as themselves."""
    path = files.workbook(
        tmp_path / "d.xlsx",
        {
            "Data": [
                ["email", "when", "span", "n"],
                ["a@x.com", 2994626, 2994626, 2994626],
                ["b@x.com", 2958465, 1, 5],
                ["c@x.com", 3.1e6, 2, 6],
            ]
        },
        formats={"B2": "yyyy-mm-dd", "B3": "yyyy-mm-dd", "B4": "h:mm", "C2": "[h]:mm:ss"},
    )
    with excel.open_xlsx(path, None, engine=engine) as table:
        assert table.detected.engine == engine
        chunk = next(table.chunks())
    assert records(chunk) == {
        2: ["a@x.com", "#VALUE!", "71871024:00:00", "2994626"],
        3: ["b@x.com", "9999-12-31", "1", "5"],
        4: ["c@x.com", "#VALUE!", "2", "6"],
    }
    assert chunk.attrs[reader.CELL_ERRORS] == {
        2: [("when", "B2 shows #VALUE!")],
        4: [("when", "B4 shows #VALUE!")],
    }


def test_a_date_past_year_9999_makes_its_row_invalid(tmp_path: Path) -> None:
    """The dry run does not send the bare serial of a date Excel cannot show: the row is invalid,
    naming the cell, as the public file python-calamine tests/data/issue139.xlsx needs."""
    import bulk_events

    path = files.workbook(
        tmp_path / "d.xlsx",
        {"Data": [["email", "when"], ["a@x.com", 2994626], ["b@x.com", 45000]]},
        formats={"B2": "yyyy-mm-dd", "B3": "yyyy-mm-dd"},
    )
    report = tmp_path / "r.csv"
    bulk_events.import_file(path, event="e", dry_run=True, report=report)
    with report.open(encoding="utf-8-sig", newline="") as f:
        outcome = {int(r["row"]): (r["status"], r["error"]) for r in csv.DictReader(f)}
    assert outcome == {2: ("invalid", "B2 shows #VALUE!"), 3: ("valid", "")}


# Every number format case whose rendering once depended on the route: (format, value, shown).
DATE_FORMAT_CASES = [
    ("[h]:mm:ss", 1, "24:00:00"),
    ("[h]:mm:ss", 12.3, "295:12:00"),
    ("[hh]:mm", 1.5, "36:00:00"),
    ("[s]", 1, "24:00:00"),
    ("[ss]", 0.5, "12:00:00"),
    ("[mm]:ss", 0.01, "0:14:24"),
    ("[h]:mm:ss", -0.25, "-6:00:00"),
    ("h:mm AM/PM", 1, "00:00:00"),
    ("h:mm A/P", 1, "00:00:00"),
    ("h:mm A/P", 0.75, "18:00:00"),
    ("hh:mm:ss", 1.5, "12:00:00"),
    ("mm:ss", 0.01, "00:14:24"),
    ("[$-409]h:mm AM/PM", 0.5, "12:00:00"),
    ("yyyy-mm-dd", 0.5, "12:00:00"),
    ("yyyy-mm-dd", 0, "00:00:00"),
    ("yyyy-mm-dd h:mm", 0.25, "06:00:00"),
    ("YY", -1.2, "-1.2"),
    ("yyyy-mm-dd", -1, "-1"),
    ("h:mm", -0.5, "-0.5"),
    ("d/m/yyyy", 45000, "2023-03-15"),
    ("yyyy-mm-dd", 45000.5, "2023-03-15T12:00:00"),
    ("[Red]yyyy-mm-dd", 45000, "2023-03-15"),
    ("dd/mm/yyyy;@", 45000, "2023-03-15"),
    ("mmm", 45000, "2023-03-15"),
    ("yyyy-mm-dd", 3000000, "#VALUE!"),
    ("h:mm", 2958466, "#VALUE!"),
    ("m/d/yyyy", 59, "1900-02-28"),
    ("m/d/yyyy", 61, "1900-03-01"),
    ("yyyy-mm-dd", 1, "1900-01-01"),
    ("#,##0.00", 1234.5, "1234.5"),
    ("0.00", 1.5, "1.5"),
]


def date_format_workbook(path: Path) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Data"
    ws.append(["email", "format", "value"])
    for i, (fmt, value, _shown) in enumerate(DATE_FORMAT_CASES, start=2):
        ws.append([f"a{i}@x.com", fmt, value])
        ws[f"C{i}"].number_format = fmt
    wb.save(path)
    return path


def test_dates_times_and_elapsed_times_read_the_same_through_both_routes(tmp_path: Path) -> None:
    """Every date, time-of-day, elapsed-time and not-a-date case renders to the same text through
    calamine and openpyxl, and that text is the reading contract's."""
    path = date_format_workbook(tmp_path / "dates.xlsx")
    seen = {}
    for engine in ("calamine", "openpyxl"):
        with excel.open_xlsx(path, None, engine=engine) as table:
            assert table.detected.engine == engine
            seen[engine] = records(pd.concat(table.chunks(7)))
    assert seen["calamine"] == seen["openpyxl"]
    for i, (fmt, value, expected) in enumerate(DATE_FORMAT_CASES, start=2):
        assert seen["calamine"][i] == [f"a{i}@x.com", fmt, expected], (fmt, value)


def test_1904_workbooks_read_their_dates_from_1904(tmp_path: Path) -> None:
    """A workbook counting days from 1904 (old Mac Excel) gives the same dates through both routes."""
    path = files.workbook(
        tmp_path / "mac.xlsx",
        {"Data": [["email", "when"], ["a@x.com", 43538], ["b@x.com", -3]]},
        formats={"B2": "yyyy-mm-dd", "B3": "yyyy-mm-dd"},
    )
    path = files.patch_zip(
        path,
        tmp_path / "mac1904.xlsx",
        {"xl/workbook.xml": lambda x: x.replace(b"<workbookPr />", b'<workbookPr date1904="1" />')},
    )
    for engine in ("calamine", "openpyxl"):
        with excel.open_xlsx(path, None, engine=engine) as table:
            assert records(next(table.chunks())) == {
                2: ["a@x.com", "2023-03-15"],
                3: ["b@x.com", "-3"],
            }, engine


def hidden_workbook(path: Path) -> Path:
    """Rows 3 (hidden by hand) and 5 (hidden by an autofilter on Status), column C hidden; row 7
    hidden but blank; every cell else shown."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Data"
    ws.append(["email", "Status", "Internal note"])
    ws.append(["a@x.com", "active", ""])
    ws.append(["b@x.com", "active", "do not contact"])
    ws.append(["c@x.com", "active", ""])
    ws.append(["d@x.com", "left", "gone"])
    ws.append(["e@x.com", "active", ""])
    ws.row_dimensions[3].hidden = True
    ws.auto_filter.ref = "A1:C6"
    ws.auto_filter.add_filter_column(1, ["active"])
    ws.row_dimensions[5].hidden = True  # what Excel writes for a row its filter hides
    ws.row_dimensions[7].hidden = True
    ws.column_dimensions["C"].hidden = True
    wb.save(path)
    return path


@pytest.mark.parametrize("engine", ["calamine", "openpyxl"])
def test_hidden_rows_and_columns_are_on_the_table(tmp_path: Path, engine: str) -> None:
    """Rows hidden by hand or by an autofilter, and hidden columns, read the same by both routes."""
    path = hidden_workbook(tmp_path / "h.xlsx")
    with excel.open_xlsx(path, None, engine=engine) as table:
        assert table.hidden_rows == frozenset({3, 5})
        assert table.hidden_columns == ["Internal note"]
        assert sorted(records(pd.concat(table.chunks()))) == [2, 3, 4, 5, 6]


def test_a_sheet_that_hides_nothing_has_no_hidden_rows(tmp_path: Path) -> None:
    """A plain sheet hides nothing, and the policy hands it back untouched."""
    path = files.workbook(tmp_path / "p.xlsx", {"Data": [["email"], ["a@x.com"]]})
    with open_table(path) as table:
        assert table.hidden_rows == frozenset() and table.hidden_columns == []
        assert reader.hidden_policy(table, None) is table


def test_hidden_policy_refuses_until_told_then_skips_or_includes(tmp_path: Path) -> None:
    """Without a choice the table is refused naming what is hidden and both choices; skip leaves
    out the hidden rows (listed per chunk) and columns; include keeps everything."""
    path = hidden_workbook(tmp_path / "h.xlsx")
    with open_table(path) as table:
        with pytest.raises(FileFormatError) as caught:
            reader.hidden_policy(table, None)
        message = str(caught.value)
        assert "2 rows (3, 5)" in message and '"Internal note"' in message
        assert "--hidden skip" in message and "--hidden include" in message
        assert "\n" not in message and caught.value.exit_code == 2
        with pytest.raises(UsageError):
            reader.hidden_policy(table, "maybe")
        shown = reader.hidden_policy(table, "skip")
        chunks = list(shown.chunks(2))
    assert shown.columns == ["email", "Status"]
    rows = pd.concat(chunks)
    assert records(rows) == {
        2: ["a@x.com", "active"],
        4: ["c@x.com", "active"],
        6: ["e@x.com", "active"],
    }
    assert sorted(r for c in chunks for r in c.attrs.get(reader.HIDDEN_ROWS, [])) == [3, 5]
    with open_table(path) as table:
        everything = reader.hidden_policy(table, "include")
        assert everything.columns == ["email", "Status", "Internal note"]
        assert sorted(records(pd.concat(everything.chunks()))) == [2, 3, 4, 5, 6]


TITLED = [
    ["Customers, May 2024"],
    [],
    ["Name", "E-mail"],
    ["Ann", "ann@x.com"],
    ["Bob", "bob@x.com"],
]


@pytest.mark.parametrize("engine", ["calamine", "openpyxl"])
def test_title_and_blank_row_above_the_header_are_skipped(tmp_path: Path, engine: str) -> None:
    """The first row naming an email column, with data under it, is the header; rows keep the
    sheet's own numbers."""
    path = files.workbook(tmp_path / "t.xlsx", {"Data": TITLED})
    with excel.open_xlsx(path, None, engine=engine) as table:
        assert table.detected.header_row == 3
        assert table.columns == ["Name", "E-mail"]
        assert records(next(table.chunks())) == {4: ["Ann", "ann@x.com"], 5: ["Bob", "bob@x.com"]}


def test_header_row_option_says_where_the_header_is(tmp_path: Path) -> None:
    """--header-row N reads row N as the header, even one naming no contact column."""
    rows = [["Report", "May"], ["id", "who"], ["1", "ann@x.com"]]
    path = files.workbook(tmp_path / "t.xlsx", {"Data": rows})
    _, first = read_all(path)
    assert list(first.columns) == ["Report", "May"]  # no row names a contact column: row 1
    table, chunk = read_all(path, header_row=2)
    assert table.columns == ["id", "who"] and records(chunk) == {3: ["1", "ann@x.com"]}
    with pytest.raises(FileFormatError, match="no row 9"):
        read_all(path, header_row=9)
    with pytest.raises(UsageError, match="--header-row"):
        read_all(path, header_row=0)


@pytest.mark.parametrize(
    ("rows", "advice"),
    [
        (
            [["Title"], ["email", "name"], ["a@x.com", "A"], ["phone", "x"], ["1", "2"]],
            "rows 2 and 4 both look like the header; say which with --header-row 2 or --header-row 4",
        ),
        (
            [["Contact", "Details"], ["email", "name"], ["a@x.com", "A"]],
            "row 2 looks like the header, but row 1 above it holds several cells",
        ),
    ],
)
def test_an_ambiguous_header_is_refused_naming_header_row(
    tmp_path: Path, rows: list[list[str]], advice: str
) -> None:
    """Two rows that could be the header: refused, naming --header-row and the rows."""
    path = files.workbook(tmp_path / "t.xlsx", {"Data": rows})
    with pytest.raises(FileFormatError) as caught:
        read_all(path)
    assert advice in str(caught.value) and "--header-row" in str(caught.value)


def test_a_zip_named_csv_is_called_a_zip(tmp_path: Path) -> None:
    """A zip archive named .csv is refused as a zip to unzip, like its gzip twin, not blamed on Excel."""
    with zipfile.ZipFile(tmp_path / "data.csv", "w") as z:
        z.writestr("data.csv", "email\na@x.com\n")
    with pytest.raises(FileFormatError) as caught:
        read_all(tmp_path / "data.csv")
    assert str(caught.value) == "data.csv is a zip archive, not a CSV file: unzip it first"


def test_a_workbook_whose_parts_are_named_with_backslashes_is_read(tmp_path: Path) -> None:
    """Some writers name zip parts xl\\workbook.xml: Excel and calamine read them, and so do we."""
    base = files.workbook(tmp_path / "b.xlsx", {"Data": [["email"], ["a@x.com"]]})
    path = tmp_path / "back.xlsx"
    with zipfile.ZipFile(base) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename.replace("/", "\\"), zin.read(item.filename))
    table, rows = read_all(path)
    assert table.columns == ["email"] and records(rows) == {2: ["a@x.com"]}
