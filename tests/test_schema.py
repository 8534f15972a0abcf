"""Column roles, normalisation and the pandera checks."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulk_events.errors import ColumnError, UsageError
from bulk_events.schema import (
    EMAIL_PATTERN,
    PHONE_PATTERN,
    RowValidator,
    fold,
    normalise_email,
    normalise_phone,
    parse_assignments,
    parse_dates,
    plan_columns,
)


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
        ("number", "12,5", False),
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


def test_decimal_comma_only_where_the_file_uses_semicolons():
    """12,50 is 12.5 in a ;-separated file (European Excel); elsewhere it is refused, not guessed."""
    data = {"email": ["a@b.co", "c@d.co"], "n": ["12,50", "-0,5"]}
    assert validate(dict(data), types={"n": "number"}, decimal_comma=True).errors == {}
    refused = validate(dict(data), types={"n": "number"})
    assert set(refused.errors) == {2, 3}


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
