"""Dates and numbers as people type them, each value judged on its own."""

from __future__ import annotations

import pandas as pd
import pytest

from bulk_events.cells import empty
from bulk_events.layout import plan_columns
from bulk_events.payload import build_bodies
from bulk_events.schema import RowValidator
from bulk_events.values import parse_dates, parse_numbers, read_number


def one_date(text: str, date_format: str | None = None) -> str | None:
    dates, ambiguous = parse_dates(pd.Series([text]), date_format)
    assert not ambiguous.iloc[0], text
    return None if pd.isna(dates.iloc[0]) else dates.iloc[0].strftime("%Y-%m-%d")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3/14/2024", "2024-03-14"),  # US: 14 can only be the day
        ("14/3/2024", "2024-03-14"),
        ("12/25/24", "2024-12-25"),
        ("27 Nov 2024", "2024-11-27"),
        ("27-Nov-24", "2024-11-27"),  # Excel's dd-mmm-yy
        ("Nov 27, 2024", "2024-11-27"),
        ("November 27 2024", "2024-11-27"),
        ("Sept 3, 2024", "2024-09-03"),
        ("27th November 2024", "2024-11-27"),
        ("27 November 2024", "2024-11-27"),
        ("27 NOV. 2024", "2024-11-27"),
        ("27 листопада 2024", "2024-11-27"),
        ("27 листопада 2024 р.", "2024-11-27"),
        ("1 лют. 2024", "2024-02-01"),
        ("27 ноября 2024", "2024-11-27"),
        ("27 ноября 2024 г.", "2024-11-27"),
        ("3 мая 2024", "2024-05-03"),
        ("5 янв. 2024", "2024-01-05"),
        ("Травень 5, 2024", "2024-05-05"),
        ("2024-11-27T09:00:00", "2024-11-27"),
        ("2024-11-27T23:30:00-05:00", "2024-11-27"),  # the date as written, no zone conversion
        ("2024-11-27 09:00", "2024-11-27"),
        ("2024/11/27", "2024-11-27"),
        ("27.11.2024 09:00", "2024-11-27"),
        ("27.11.2024 9:00:15", "2024-11-27"),
        ("3/14/2024 9:00 AM", "2024-03-14"),
        ("31 Feb 2024", None),
        ("27 Foo 2024", None),
        ("Nov 2024", None),
    ],
)
def test_dates_people_type(text, expected):
    """US, month-name (English, Ukrainian, Russian) and date-time forms parse; impossible ones do not."""
    assert one_date(text) == expected


@pytest.mark.parametrize("text", ["05/06/2021", "5/6/21", "05/06/2021 10:00", "1-2-2020"])
def test_day_and_month_that_could_swap_stay_ambiguous(text):
    """When both parts are 12 or less, the value could be either: marked ambiguous, not parsed."""
    dates, ambiguous = parse_dates(pd.Series([text]))
    assert ambiguous.iloc[0] and pd.isna(dates.iloc[0])


def test_month_names_work_with_a_date_format_too():
    """--date-format reads the slashed dates; named months and ISO still parse beside them."""
    dates, ambiguous = parse_dates(
        pd.Series(["05/06/2021", "27 Nov 2024", "2024-01-02"]), "%d/%m/%Y"
    )
    assert not ambiguous.any()
    assert dates.dt.strftime("%Y-%m-%d").tolist() == ["2021-06-05", "2024-11-27", "2024-01-02"]


def test_each_date_judged_on_its_own_in_a_mixed_column():
    """A column mixing every form: each row parses by itself; the ambiguous one alone is refused."""
    column = pd.Series(
        ["2024-11-27", "3/14/2024", "27 листопада 2024", "05/06/2021", "27.11.2024 09:00"],
        index=range(2, 7),
    )
    dates, ambiguous = parse_dates(column)
    assert ambiguous.tolist() == [False, False, False, True, False]
    shown = [None if pd.isna(d) else d.strftime("%Y-%m-%d") for d in dates]
    assert shown == ["2024-11-27", "2024-03-14", "2024-11-27", None, "2024-11-27"]


@pytest.mark.parametrize(
    ("text", "decimal_comma", "expected"),
    [
        ("1 234,50", False, "1234.50"),
        ("1\u00a0234,50", False, "1234.50"),  # no-break space, as Excel in a Ukrainian locale
        ("1\u202f234,50", True, "1234.50"),  # narrow no-break space, as macOS and LibreOffice
        ("12 345 678", False, "12345678"),
        ("1.234,50", True, "1234.50"),
        ("1.234.567", True, "1234567"),
        ("1,234.50", False, "1234.50"),
        ("1,234,567", False, "1234567"),
        ("12,5", False, "12.5"),
        ("1,250", True, "1.250"),  # the comma is the decimal separator of a ;-separated file
        ("1.250", False, "1.250"),
        ("0,125", False, "0.125"),  # a thousands group never follows a lone 0
        ("$1,234.50", False, "1234.50"),
        ("1 234,50 ₴", False, "1234.50"),
        ("1234 UAH", False, "1234"),
        ("€12.50", False, "12.50"),
        ("12 грн.", True, "12"),
        ("-$5", False, "-5"),
        ("$-5", False, "-5"),
        ("\u22125 €", False, "-5"),  # a typographic minus
        ("1e3", False, "1e3"),
    ],
)
def test_numbers_people_type(text, decimal_comma, expected):
    """Thousands separators and a currency sign or code are read; the plain number remains."""
    assert read_number(text, decimal_comma) == (expected, "")


@pytest.mark.parametrize(
    ("text", "decimal_comma", "reason"),
    [
        ("1,234", False, "',' may separate thousands (1234) or decimals (1.234)"),
        ("1.234", True, "'.' in a ';'-separated file may separate thousands (1234) or decimals"),
        ("1,2,3", False, "',' appears 2 times but does not group thousands in threes"),
        ("1,23,456", False, "does not group thousands in threes"),
        ("1.234,5,6", True, "two decimal separators ','"),
        ("12,34.5", False, "thousands separator ',' must group digits in threes"),
        ("1 23", False, "spaces inside it do not group thousands in threes"),
        ("12 PCS", False, '"PCS" is not a currency sign or code'),
        ("$12 USD", False, "two currency marks"),
        ("abc", False, "is not a number"),
    ],
)
def test_refused_numbers_say_what_is_wrong(text, decimal_comma, reason):
    """A refusal names the problem itself, not a generic "use a dot"."""
    value, why = read_number(text, decimal_comma)
    assert value is None
    assert reason in why


def test_plain_numbers_are_left_untouched():
    """The common case goes through one vectorised match: the column comes back as it was."""
    s = pd.Series(["12.5", "-3", "", "1e3"], index=range(2, 6))
    out, reasons = parse_numbers(s)
    assert out.tolist() == s.tolist() and (reasons == "").all()


def bodies(data: dict[str, list[str]], types: dict[str, str], **kwargs):
    layout = plan_columns(list(data), types=types)
    n = len(next(iter(data.values())))
    frame = pd.DataFrame(data, index=range(2, 2 + n), dtype=object)
    validated = RowValidator(layout, **kwargs).validate(frame)
    return build_bodies(validated, layout), validated.errors


def test_typed_bodies_carry_json_numbers_and_iso_dates():
    """From cells as typed to the body: numbers as JSON numbers, dates as YYYY-MM-DD."""
    got, errors = bodies(
        {
            "email": ["a@b.co", "c@d.co", "e@f.co"],
            "Total": ["$1,234.50", "1 234,50 ₴", "1,234"],
            "Count": ["1 200", "'42", "7"],
            "Date": ["Nov 27, 2024", "27 листопада 2024", "3/14/2024"],
        },
        {"Total": "number", "Count": "integer", "Date": "date"},
    )
    assert got[0] == {"email": "a@b.co", "Total": 1234.5, "Count": 1200, "Date": "2024-11-27"}
    assert got[1] == {"email": "c@d.co", "Total": 1234.5, "Count": 42, "Date": "2024-11-27"}
    assert got[2] is None
    assert errors[4] == [
        "Total \"1,234\" is ambiguous: ',' may separate thousands (1234) or decimals (1.234); "
        "write 1234 or 1.234"
    ]


def test_integer_column_refuses_a_fraction_read_from_a_comma():
    """1,5 is a number but not a whole one: the integer column says so."""
    got, errors = bodies({"email": ["a@b.co"], "n": ["1,5"]}, {"n": "integer"})
    assert got == [None] and errors[2] == ['n "1,5" is not a whole number']


def sandbox_import(cli, tmp_path, name: str, text: str, *extra: str):
    """Import a CSV through the CLI into the local sandbox: (exit code, bodies arrived, report)."""
    import json

    from conftest import read_report

    source = tmp_path / name
    source.write_text(text, encoding="utf-8")
    report = tmp_path / f"{name}.report.csv"
    result = cli(
        "import", source, "--event", "e", "--sandbox", "--rate", "0", "--report", report,
        "--state", tmp_path / f"{name}.sqlite", *extra,
    )  # fmt: skip
    record = report.with_suffix(".sandbox.jsonl")
    lines = record.read_text().splitlines() if record.exists() else []
    arrived = {json.loads(x)["body"]["email"]: json.loads(x)["body"] for x in lines}
    return result.exit_code, arrived, {r["email"]: r for r in read_report(report)}


def test_semicolon_file_from_the_cli(cli, tmp_path):
    """A European Excel CSV: 1.234,50, currency, month names; bodies as they arrive at the server."""
    code, arrived, report = sandbox_import(
        cli,
        tmp_path,
        "eu.csv",
        "email;Total;Date\n"
        "a@example.com;1.234,50 €;27 листопада 2024\n"
        "b@example.com;12,5;27.11.2024 09:00\n"
        "c@example.com;1.250;Nov 27, 2024\n"
        "d\u200b@example.com;1;2024-11-27\n",
        "--type", "Total=number", "--type", "Date=date",
    )  # fmt: skip
    assert code == 1  # two invalid rows
    assert arrived == {
        "a@example.com": {"email": "a@example.com", "Total": 1234.5, "Date": "2024-11-27"},
        "b@example.com": {"email": "b@example.com", "Total": 12.5, "Date": "2024-11-27"},
    }
    assert "'.' in a ';'-separated file may separate thousands" in report["c@example.com"]["error"]
    [invisible] = [r for e, r in report.items() if e.startswith("d")]
    assert invisible["status"] == "invalid" and "U+200B" in invisible["error"]


def test_comma_file_from_the_cli(cli, tmp_path):
    """A US CSV: "1,234.50" and $ are read, US dates parse, "1,234" and 05/06/2021 are refused."""
    code, arrived, report = sandbox_import(
        cli,
        tmp_path,
        "us.csv",
        "email,Total,Date\n"
        'a@example.com,"$1,234.50",3/14/2024\n'
        'b@example.com,"1,234",3/14/2024\n'
        "c@example.com,5,05/06/2021\n",
        "--type", "Total=number", "--type", "Date=date",
    )  # fmt: skip
    assert code == 1
    assert arrived == {
        "a@example.com": {"email": "a@example.com", "Total": 1234.5, "Date": "2024-03-14"},
    }
    assert (
        "',' may separate thousands (1234) or decimals (1.234)" in report["b@example.com"]["error"]
    )
    assert "--date-format" in report["c@example.com"]["error"]


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        (["12.50", "$1,234.50", ""], "number"),
        (["3", "1 200", "42"], "integer"),
        (["27 Nov 2024", "3/14/2024", "05/06/2021"], "date"),
        (["2024-01-02"], "date"),
        (["01234", "02134"], None),  # zip codes keep their zeros as strings
        (["380501234567", "+1 617 555 0123"], None),  # phones are not amounts
        (["12.5", "twelve"], None),
        (["Kyiv", "Lviv"], None),
        (["", ""], None),
    ],
)
def test_suggest_type_for_columns_that_would_go_out_as_strings(sample, expected):
    """Numbers and dates sent as text are spotted; codes, phones and words are not."""
    from bulk_events.values import suggest_type

    assert suggest_type(pd.Series(sample)) == expected


# --- once per distinct value: the same answers as every value on its own -------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bulk_events.values import by_distinct_value, parse_booleans  # noqa: E402

_TYPED = [
    "2021-05-28", "28.05.2021", "05/06/2021", "3/14/2024", "27 Nov 2024", "2021-13-45", "",
    "12.50", "1 234,50 ₴", "1,234", "1e400", "abc", "TRUE", "no", "да", "maybe", " 7 ",
]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(_TYPED), min_size=0, max_size=80), st.booleans())
def test_parsing_per_distinct_value_equals_parsing_every_value(values, decimal_comma):
    """Dates, numbers and booleans read once per distinct cell match reading every cell."""
    s = pd.Series(values, index=range(5, 5 + len(values)), dtype=object, name="c")
    for parse in (
        parse_dates,
        lambda x: parse_dates(x, "%d/%m/%Y"),
        lambda x: parse_numbers(x, decimal_comma),
    ):
        want, got = parse(s), by_distinct_value(s, parse)
        for w, g in zip(want, got, strict=True):
            pd.testing.assert_series_equal(g, w, check_dtype=True)
    pd.testing.assert_series_equal(by_distinct_value(s, parse_booleans), parse_booleans(s))


_ODD = [None, float("nan"), pd.NA, 1, 1.0, True]  # what a caller other than clean() may pass


# Numbers and missing values are outside the parsers' domain (they read text): pandas warns.
@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")
@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(_TYPED) | st.sampled_from(_ODD), max_size=30),
            st.sampled_from(["c", "d", None]),
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from([3, 10, 65_536]),
)
def test_remembered_results_equal_parsing_each_chunk_afresh(chunks, limit):
    """Chunk after chunk (of several columns) through one Remembered parser, its memory
    starting afresh at ``limit`` values or not: every chunk reads as it does parsed on its own,
    names included; a chunk holding a missing value or a number is read as by_distinct_value
    reads it, and its values are not remembered."""
    from bulk_events.values import Remembered

    parsers = {
        "dates": lambda x: parse_dates(x, None),
        "dates with a format": lambda x: parse_dates(x, "%d/%m/%Y"),
        "numbers": lambda x: parse_numbers(x, False),
        "booleans": parse_booleans,
    }
    for name, parse in parsers.items():
        remembered = Remembered(parse)
        remembered.LIMIT = limit
        start = 2
        for values, column in chunks:
            s = pd.Series(
                values, index=range(start, start + len(values)), dtype=object, name=column
            )
            start += len(values)
            # Text is read as on its own; anything else as by_distinct_value reads it.
            text = all(type(v) is str for v in values)
            try:
                want = parse(s) if text else by_distinct_value(s, parse)
            except Exception as exc:  # outside the parser's domain: it fails the same way
                with pytest.raises(type(exc)):
                    remembered(s)
                continue
            got = remembered(s)
            if not isinstance(want, tuple):
                want, got = (want,), (got,)
            assert len(got) == len(want), name
            for w, g in zip(want, got, strict=True):
                pd.testing.assert_series_equal(g, w, check_dtype=True, obj=name)


def test_remembered_values_are_bounded_and_parsed_once():
    """Only values new to it are parsed; past its limit it keeps the latest chunk's alone."""
    from bulk_events.values import Remembered

    seen: list[list[str]] = []

    def parse(s: pd.Series) -> pd.Series:
        seen.append(s.tolist())
        return parse_booleans(s)

    remembered = Remembered(parse)
    remembered.LIMIT = 4
    first = remembered(pd.Series(["yes", "no", "yes", "да"], dtype=object))
    again = remembered(pd.Series(["no", "да", "no"], index=[7, 8, 9], dtype=object))
    assert seen == [["yes", "no", "да"]]  # the second chunk held nothing new
    assert first.tolist() == [True, False, True, True] and again.index.tolist() == [7, 8, 9]
    remembered(pd.Series(["maybe", "TRUE", "no"], dtype=object))  # 3 + 2 new > 4: afresh
    assert seen[1] == ["maybe", "TRUE", "no"]
    assert sorted(remembered._known) == ["TRUE", "maybe", "no"]
    assert remembered(pd.Series(["yes", "yes"], dtype=object)).tolist() == [True, True]
    assert seen[2] == ["yes"]


_CELLS = st.one_of(
    st.just(""), st.just(" "), st.text(max_size=3), st.just(float("nan")), st.none(), st.just(pd.NA)
)


@given(st.lists(_CELLS, max_size=12), st.sampled_from(["object", "string"]))
def test_empty_says_what_pandas_comparison_says(cells: list[object], dtype: str) -> None:
    """empty() is ``s == ""``, made faster: the same cells, NaN and None included, for object
    columns and for pandas' string columns (whose missing values compare as missing)."""
    if dtype == "string":
        cells = [c if isinstance(c, str) else None for c in cells]
    s = pd.Series(cells, index=range(10, 10 + len(cells)), dtype=dtype)
    pd.testing.assert_series_equal(empty(s), s == "")
    frame = pd.DataFrame({"a": s, "b": s.iloc[::-1].to_numpy()}, index=s.index)
    pd.testing.assert_frame_equal(empty(frame), frame == "")
