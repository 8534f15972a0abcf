"""Column roles (layout), cell normalisation (cells) and the pandera checks (schema)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulk_events.cells import EMAIL_PATTERN, PHONE_PATTERN, normalise_email, normalise_phone
from bulk_events.errors import ColumnError, UsageError
from bulk_events.layout import fold, parse_assignments, plan_columns
from bulk_events.schema import RowValidator
from bulk_events.values import parse_dates


def chunk(data: dict[str, list[str]], start: int = 2) -> pd.DataFrame:
    n = len(next(iter(data.values())))
    return pd.DataFrame(data, index=range(start, start + n), dtype=object)


def validate(data: dict[str, list[str]], **kwargs):
    layout = plan_columns(
        list(data), types=kwargs.pop("types", None), mapping=kwargs.pop("mapping", None)
    )
    return RowValidator(layout, **kwargs).validate(chunk(data))


def test_headers_match_roles_without_regard_to_case_and_spaces():
    """`Email ` is the email column and `Телефон` the phone column."""
    layout = plan_columns(["Email ", "Телефон", "First Name"])
    assert layout.by_role("email").source == "Email "
    assert layout.by_role("phone").source == "Телефон"
    assert [v.name for v in layout.variables] == ["First Name"]


def test_map_names_a_column_as_email():
    """--map lets any header be the email column."""
    layout = plan_columns(["Customer mail", "Name"], mapping={"customer MAIL": "email"})
    assert layout.by_role("email").source == "Customer mail"


def test_no_contact_column_is_a_column_error():
    """A file with neither an email nor a phone column cannot be used."""
    with pytest.raises(ColumnError, match="no email or phone column"):
        plan_columns(["Name", "City"])


def test_two_email_like_columns_need_a_choice():
    """Two columns that could both be the email column are not guessed between."""
    with pytest.raises(ColumnError, match="both look like the email"):
        plan_columns(["E-mail", "Mail"])


def test_exact_email_header_wins_over_an_alias():
    """With `email` and `mail` columns, `email` is the email and `mail` a variable."""
    layout = plan_columns(["mail", "email"])
    assert layout.by_role("email").source == "email"


def test_type_for_unknown_column_is_a_usage_error():
    """--type naming a column the file lacks is an error naming the columns it has."""
    with pytest.raises(ColumnError, match=r'"Totl".*columns: "email", "Total"'):
        plan_columns(["email", "Total"], types={"Totl": "number"})


def test_unknown_type_name_is_a_usage_error():
    """--type with a type we do not know is rejected."""
    with pytest.raises(UsageError, match="must be one of"):
        plan_columns(["email", "Total"], types={"Total": "money"})


def test_parse_assignments_rejects_missing_equals():
    """--type takes COLUMN=TYPE."""
    assert parse_assignments(["a=b", "E-mail = email"], "--map") == {"a": "b", "E-mail": "email"}
    with pytest.raises(UsageError):
        parse_assignments(["nonsense"], "--type")


def test_fold_ignores_case_and_separators():
    """Header aliases compare without case, spaces, dashes, dots or underscores."""
    assert fold(" E-Mail_Address ") == "emailaddress"


def test_every_problem_of_every_row_is_collected():
    """Lazy validation: a row with three problems gets three reasons."""
    result = validate(
        {"email": ["bad", "ok@example.com"], "n": ["1.5", "2"], "automation_id": ["x", "7"]},
        types={"n": "integer"},
    )
    assert set(result.errors) == {2}
    assert len(result.errors[2]) == 3
    assert any("email" in e for e in result.errors[2])


def test_row_needs_email_or_phone():
    """A row with neither an email nor a phone is invalid."""
    result = validate({"email": ["", "a@b.co"], "phone": ["", ""]})
    assert result.errors == {2: ["no email or phone"]}


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("7043663", True),
        ("7043663.0", True),
        ("1.5", False),
        ("12abc", False),
        ("0", False),
        ("-3", False),
    ],
)
def test_automation_id_must_be_a_positive_whole_number(value, ok):
    """Excel's 7043663.0 is fine; 1.5, 12abc, 0 and negatives are not."""
    result = validate({"email": ["a@b.co"], "automation_id": [value]})
    assert (2 not in result.errors) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("ann@example.com", True),
        ("олег@пошта.укр", True),
        ("user.name+tag@sub.example.co.uk", True),
        ("a@xn--80ak6aa92e.com", True),
        ("a@b", False),
        ("a@@b.com", False),
        ("a b@c.com", False),
        (".a@b.com", False),
        ("a..b@c.com", False),
        ("a@b..com", False),
        ("@b.com", False),
    ],
)
def test_email_syntax(value, ok):
    """Internationalised addresses pass; broken ones do not."""
    result = validate({"email": [value]})
    assert (2 not in result.errors) is ok


def test_email_is_trimmed_and_lower_cased():
    """` Ann@Example.COM ` becomes `ann@example.com`."""
    assert normalise_email(pd.Series([" Ann@Example.COM "])).tolist() == ["ann@example.com"]


def test_phone_formatting_is_removed_and_plus_kept():
    """Spaces, dashes, dots and parentheses go; a leading + stays."""
    assert normalise_phone(pd.Series(["+38 (050) 123-45.67"])).tolist() == ["+380501234567"]


@given(
    digits=st.text(alphabet="0123456789", min_size=7, max_size=15),
    plus=st.booleans(),
    seps=st.lists(st.sampled_from([" ", "-", ".", "(", ")", "\u00a0"]), max_size=20),
    data=st.data(),
)
def test_phone_normalisation_property(digits, plus, seps, data):
    """Any 7-15 digits, sprinkled with formatting characters, normalise to exactly those digits."""
    chars = list(digits)
    for sep in seps:
        chars.insert(data.draw(st.integers(0, len(chars))), sep)
    raw = ("+" if plus else "") + "".join(chars)
    cleaned = normalise_phone(pd.Series([raw])).iloc[0]
    assert cleaned == ("+" if plus else "") + digits
    assert pd.Series([cleaned]).str.fullmatch(PHONE_PATTERN).iloc[0]


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30))
def test_email_normalisation_is_idempotent_and_never_keeps_outer_space(raw):
    """Normalising twice changes nothing, and a valid result has no spaces at all."""
    once = normalise_email(pd.Series([raw])).iloc[0]
    assert normalise_email(pd.Series([once])).iloc[0] == once
    if pd.Series([once]).str.fullmatch(EMAIL_PATTERN).iloc[0]:
        assert not any(c.isspace() for c in once)
        assert once.count("@") == 1


@pytest.mark.parametrize(
    ("phone", "ok"),
    [
        ("+380501234567", True),
        ("1234567", True),
        ("123456", False),
        ("1234567890123456", False),
        ("phone?", False),
        ("(496)978-3969x58947", False),
    ],
)
def test_phone_must_have_7_to_15_digits(phone, ok):
    """A present but malformed phone makes the row invalid."""
    result = validate({"email": ["a@b.co"], "phone": [phone]})
    assert (2 not in result.errors) is ok
    alone = validate({"phone": [phone]}, email_alone=True)
    assert (2 not in alone.errors) is ok


def test_default_country_makes_national_numbers_international():
    """--default-country UA turns 050 123 45 67 into +380501234567 and rejects impossible numbers."""
    result = validate({"phone": ["050 123 45 67", "12"]}, default_country="UA")
    assert result.frame["phone"].tolist()[0] == "+380501234567"
    assert 3 in result.errors and 2 not in result.errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-05-28", "2021-05-28"),
        ("2021-05-28T10:30:00", "2021-05-28"),
        ("28.05.2021", "2021-05-28"),
        ("24/8/20", "2020-08-24"),
        ("5/5/2021", "2021-05-05"),
        ("31.02.2021", None),
        ("tomorrow", None),
    ],
)
def test_dates(text, expected):
    """ISO, day-first dotted and unambiguous slashed dates parse; impossible ones do not."""
    dates, ambiguous = parse_dates(pd.Series([text]))
    assert not ambiguous.iloc[0]
    got = None if pd.isna(dates.iloc[0]) else dates.iloc[0].strftime("%Y-%m-%d")
    assert got == expected


def test_ambiguous_date_asks_for_date_format():
    """05/06/2021 could be May or June: the row says to pass --date-format."""
    result = validate({"email": ["a@b.co"], "d": ["05/06/2021"]}, types={"d": "date"})
    assert "--date-format" in result.errors[2][0]
    fixed = validate(
        {"email": ["a@b.co"], "d": ["05/06/2021"]}, types={"d": "date"}, date_format="%m/%d/%Y"
    )
    assert fixed.errors == {}
    assert fixed.dates["d"].iloc[0].strftime("%Y-%m-%d") == "2021-05-06"


@pytest.mark.parametrize(
    ("type_", "value", "ok"),
    [
        ("integer", "123", True),
        ("integer", "123.0", True),
        ("integer", "1.5", False),
        ("number", "12.50", True),
        ("number", "-3", True),
        ("number", "1e3", True),
        ("number", "12,5", True),
        ("number", "1,250", False),
        ("integer", "1 234", True),
        ("integer", "1,5", False),
        ("number", "abc", False),
        ("boolean", "TRUE", True),
        ("boolean", "no", True),
        ("boolean", "так", True),
        ("boolean", "maybe", False),
    ],
)
def test_declared_types(type_, value, ok):
    """A value that does not fit its declared type makes the row invalid."""
    result = validate({"email": ["a@b.co"], "v": [value]}, types={"v": type_})
    assert (2 not in result.errors) is ok


def test_each_date_is_judged_on_its_own():
    """24/8/20 in the same column does not make 2/6/20 day-first: a row means the same anywhere."""
    result = validate(
        {"email": ["a@b.co", "c@d.co"], "d": ["24/8/20", "2/6/20"]}, types={"d": "date"}
    )
    assert set(result.errors) == {3}
    assert "--date-format" in result.errors[3][0]


def test_date_format_still_accepts_iso_and_dotted_dates():
    """With --date-format %d/%m/%Y, 2021-05-28 and 28.05.2021 remain dates; 8/24/2020 does not fit."""
    result = validate(
        {"email": ["a@b.co"] * 4, "d": ["05/06/2021", "2021-05-28", "28.05.2021", "8/24/2020"]},
        types={"d": "date"},
        date_format="%d/%m/%Y",
    )
    assert set(result.errors) == {5}
    assert result.dates["d"].dt.strftime("%Y-%m-%d").tolist()[:3] == [
        "2021-06-05",
        "2021-05-28",
        "2021-05-28",
    ]


def test_errors_show_the_cell_as_typed():
    """The reason quotes the phone as the person typed it, not the cleaned digits."""
    result = validate({"email": ["a@b.co"], "phone": ["(496)978-3969x58947"]})
    assert '"(496)978-3969x58947"' in result.errors[2][0]


def test_a_lone_comma_before_three_digits_follows_the_file():
    """1,250 is 1.25 in a ;-separated file (European Excel) and ambiguous elsewhere; 12,50 is 12.5
    anywhere, since a thousands separator is always followed by three digits."""
    data = {"email": ["a@b.co", "c@d.co", "e@f.co"], "n": ["12,50", "-0,5", "1,250"]}
    semicolon = validate(dict(data), types={"n": "number"}, decimal_comma=True)
    assert semicolon.errors == {}
    assert semicolon.frame["n"].tolist() == ["12.50", "-0.5", "1.250"]
    comma = validate(dict(data), types={"n": "number"})
    assert set(comma.errors) == {4}
    assert "ambiguous" in comma.errors[4][0] and "write 1250 or 1.250" in comma.errors[4][0]


def test_phone_that_went_through_a_float_keeps_its_digits():
    """380501234567.0 (an Excel float artefact) is 380501234567, not 3805012345670."""
    result = validate({"phone": ["380501234567.0", "+380501234567.00"]})
    assert result.frame["phone"].tolist() == ["380501234567", "+380501234567"]
    assert result.errors == {}


def test_infinite_numbers_are_invalid():
    """1e400 does not fit a JSON number: the row is invalid instead of sending null."""
    result = validate(
        {"email": ["a@b.co", "c@d.co"], "n": ["1e400", "1e300"]}, types={"n": "number"}
    )
    assert set(result.errors) == {2}


@pytest.mark.parametrize(
    ("email", "code", "position"),
    [
        ("\ufeffann@example.com", "U+FEFF", 1),
        ("ann\u200b@example.com", "U+200B", 4),
        ("an\u200dn@example.com", "U+200D", 3),
        ("ann@exa\u2060mple.com", "U+2060", 8),
        ("ann@example.com\u202e", "U+202E", 16),
        ("a\x07nn@example.com", "U+0007", 2),
    ],
)
def test_invisible_characters_in_an_email_make_the_row_invalid(email, code, position):
    """A BOM, zero-width, bidi or control character is named with its position; never sent."""
    result = validate({"email": [email, "ann@example.com"]})
    assert set(result.errors) == {2}
    [reason] = result.errors[2]
    assert f"{code}" in reason and f"at position {position}" in reason
    assert reason.startswith('email "') and "\\u" in reason  # the character is shown, escaped


@given(
    st.sampled_from(["\ufeff", "\u200b", "\u200c", "\u200d", "\u2060", "\u200e", "\u202a", "\x07"]),
    st.integers(0, 15),
)
def test_one_visible_address_is_never_several(char, at):
    """Wherever an invisible character sits in an address, the row is refused, not sent."""
    address = "ann@example.com"
    tampered = address[:at] + char + address[at:]
    result = validate({"email": [tampered]})
    assert 2 in result.errors


def test_invisible_character_in_a_phone_is_named():
    """Phones get the same check; with a good email and email_alone the row goes out without it."""
    data = {"email": ["a@b.co"], "phone": ["+38050\u200b1234567"]}
    invalid = validate(dict(data))
    assert "U+200B" in invalid.errors[2][0]
    alone = validate(dict(data), email_alone=True)
    assert alone.errors == {} and alone.frame["phone"].tolist() == [""]
    assert "U+200B" in alone.warnings[2][0]


def test_text_marker_apostrophe_is_dropped_from_contacts_and_typed_values():
    """'+19846270127, '0501234567 and '7043663 lose the marker; a string variable keeps its text."""
    result = validate(
        {
            "email": ["'ann@example.com", "b@c.co"],
            "phone": ["'+19846270127", "'0501234567"],
            "automation_id": ["'7043663", ""],
            "Zip": ["'02134", "'tis"],
            "Total": ["'12.50", ""],
        },
        types={"Total": "number"},
    )
    assert result.errors == {}
    assert result.frame["email"].tolist() == ["ann@example.com", "b@c.co"]
    assert result.frame["phone"].tolist() == ["+19846270127", "0501234567"]
    assert result.frame["automation_id"].tolist() == ["7043663", ""]
    assert result.frame["Total"].tolist() == ["12.50", ""]
    assert result.frame["Zip"].tolist() == ["'02134", "'tis"]


def country_validate(data: dict[str, list[str]], **kwargs):
    layout = plan_columns(list(data), country_column=kwargs.pop("country_column", "Country"))
    return layout, RowValidator(layout, **kwargs).validate(chunk(data))


def test_country_column_reads_each_row_with_its_own_country():
    """Codes and English names as exports hold them; an empty cell falls back to the default."""
    layout, result = country_validate(
        {
            "phone": [
                "(617) 555-0123",
                "050 123 45 67",
                "07911 123456",
                "'0501234567",
                "+48 601 234 567",
                "0501234567",
            ],
            "Country": ["United States", "UA", "UK", "Ukraine", "ua", ""],
        },
        default_country="UA",
    )
    assert layout.country == "Country"
    assert result.errors == {}
    assert result.frame["phone"].tolist() == [
        "+16175550123",
        "+380501234567",
        "+447911123456",
        "+380501234567",
        "+48601234567",  # an international number keeps its own country
        "+380501234567",
    ]
    assert result.national_phones == 0
    assert result.frame["Country"].tolist()[:2] == ["United States", "UA"]  # still a variable


def test_country_column_in_ukrainian_and_russian_and_the_usual_aliases():
    """Україна, Россия, USA and Great Britain name countries too."""
    from bulk_events.phones import country_code

    assert [country_code(n) for n in ("Україна", "Россия", "USA", "U.S.", "Great Britain")] == [
        "UA", "RU", "US", "US", "GB",
    ]  # fmt: skip
    assert country_code("Atlantis") is None


def test_unknown_country_is_not_replaced_by_the_default():
    """A country cell naming no country is reported, not read as the default country."""
    _, result = country_validate(
        {"phone": ["0501234567", "+380501234567"], "Country": ["Atlantis", "Atlantis"]},
        default_country="UA",
    )
    assert set(result.errors) == {2}
    assert 'the country "Atlantis" is not a country name or ISO code' in result.errors[2][0]


def test_phone_invalid_for_its_rows_country_names_the_column():
    """The reason says which country the number was read with, and where that came from."""
    _, result = country_validate({"phone": ["12345"], "Country": ["US"]})
    assert result.errors[2] == [
        'phone "12345" is not a valid phone number for US (column "Country")'
    ]


def test_country_column_must_exist_and_not_be_a_contact():
    """--country-column naming a missing column or the phone itself is refused."""
    with pytest.raises(ColumnError, match='--country-column names column "Land"'):
        plan_columns(["phone", "Country"], country_column="Land")
    with pytest.raises(UsageError, match="phone column"):
        plan_columns(["phone", "Country"], country_column="phone")


def test_national_looking_phones_are_counted():
    """0501234567 and (617) 555-0123 look national; 380501234567 and +1… do not; invalid rows do not count."""
    result = validate(
        {
            "email": ["a@b.co", "c@d.co", "e@f.co", "g@h.co", "bad", "i@j.co"],
            "phone": [
                "0501234567",
                "(617) 555-0123",
                "380501234567",
                "+16175550123",
                "0501234567",
                "",
            ],
        }
    )
    assert result.national_phones == 2
    assert validate({"phone": ["0501234567"]}, default_country="UA").national_phones == 0


def test_good_email_bad_phone_goes_out_by_email_alone():
    """email_alone: the phone is left out of the body and a warning names the cell."""
    from bulk_events.payload import build_bodies

    data = {"email": ["a@b.co", "", "bad"], "phone": ["abc", "abc", "abc"]}
    layout = plan_columns(list(data))
    result = RowValidator(layout, email_alone=True).validate(chunk(data))
    assert result.warnings == {
        2: [
            'Phone "abc" is not a phone number (7 to 15 digits, an optional leading +): '
            "sent by email alone, without the phone"
        ]
    }
    assert set(result.errors) == {3, 4}  # no email, or a bad one: still invalid
    assert any("phone" in e for e in result.errors[3])
    assert len(result.errors[4]) == 2
    assert build_bodies(result, layout) == [{"email": "a@b.co"}, None, None]


def test_mapping_a_column_to_a_role_another_column_had_says_so() -> None:
    """--map "Index=email" beside an Email column: the message says Index takes Email's role and
    what Email would become, in one line, and the advice it gives works."""
    with pytest.raises(ColumnError) as caught:
        plan_columns(["Index", "Email", "Name"], mapping={"Index": "email"})
    message = str(caught.value)
    assert message.startswith('--map "Index=email" makes "Index" the email column')
    assert 'the role "Email" had' in message and "both send" not in message
    assert "\n" not in message
    advice = message.rsplit("--map ", 1)[1].strip('"')
    source, target = advice.split("=")
    layout = plan_columns(["Index", "Email", "Name"], mapping={"Index": "email", source: target})
    assert layout.by_role("email").source == "Index"
    assert [c.name for c in layout.variables] == ["Email (file)", "Name"]


# --- list-based cell work against the pandas string methods it replaced -------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bulk_events.cells import drop_float_fraction, fullmatches  # noqa: E402

_PIECES = st.sampled_from(
    ["+380", "50", " ", "\u00a0", "-", "(", ")", ".", ".0", "0", "\n", "\t", "A", "b@", "x.co",
     "Ö", "\u200b", "'", "@", "9" * 8]
)  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(_PIECES, max_size=6).map("".join), max_size=30))
def test_cell_work_equals_pandas_string_methods(values):
    """Trimming, lower-casing, phone formatting and whole matches as pandas' .str gave them."""
    s = pd.Series(values, index=range(2, 2 + len(values)), dtype=object)
    old_fraction = s.str.replace(r"^(\+?\d+)\.0+$", r"\1", regex=True)
    assert drop_float_fraction(s).tolist() == old_fraction.tolist()
    old_phone = old_fraction.str.replace(r"[\s\-.()\u00a0\u2010-\u2015]", "", regex=True)
    assert normalise_phone(s).tolist() == old_phone.tolist()
    assert normalise_email(s).tolist() == s.str.strip().str.lower().tolist()
    for pattern in (EMAIL_PATTERN, PHONE_PATTERN):
        old = s.str.fullmatch(pattern).fillna(False).astype(bool)
        assert fullmatches(s, pattern).tolist() == old.tolist()


@given(
    st.lists(
        st.one_of(
            st.sampled_from(["", "1e400", "-1E308", "1e308", "2e-400", "abc", "1.5", ".5e3"]),
            st.from_regex(r"[+-]?\d{1,4}(\.\d{0,3})?([eE][+-]?\d{1,3})?", fullmatch=True),
            st.integers(300, 320).map(lambda n: "9" * n),
        ),
        max_size=15,
    )
)
def test_finite_number_reads_only_what_could_be_too_large(cells: list[str]) -> None:
    """The check reads as floats only the cells that could overflow, and says what reading
    every cell would say."""
    from bulk_events.schema import NUMBER_PATTERN, _blank_or, _finite_number

    s = pd.Series(cells, index=range(5, 5 + len(cells)), dtype=object)
    shaped = _blank_or(NUMBER_PATTERN)(s)
    every = pd.to_numeric(s.where(shaped & (s != "")), errors="coerce").astype(float)
    expected = (s == "") | (shaped & pd.Series(np.isfinite(every), index=s.index))
    pd.testing.assert_series_equal(_finite_number(s), expected, check_names=False)
