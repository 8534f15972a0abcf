"""From validated rows to event bodies, and the keys that identify them."""

from __future__ import annotations

import orjson
import pandas as pd

from bulk_events.payload import build_bodies, event_key
from bulk_events.schema import RowValidator, plan_columns


def bodies(data: dict[str, list[str]], **kwargs):
    layout = plan_columns(
        list(data),
        types=kwargs.pop("types", None),
        mapping=kwargs.pop("mapping", None),
        default_automation_id=kwargs.get("default_automation_id") is not None,
    )
    n = len(next(iter(data.values())))
    frame = pd.DataFrame(data, index=range(2, 2 + n), dtype=object)
    return build_bodies(RowValidator(layout, **kwargs).validate(frame), layout)


def test_body_contract_types():
    """email/phone strings, automation_id an integer, declared variables typed, the rest strings."""
    [body] = bodies(
        {
            "Email": [" Ann@Example.com "],
            "Phone": ["+38 050 123 45 67"],
            "automation_id": ["7043663.0"],
            "Orders": ["3.0"],
            "Total": ["12.50"],
            "Whole": ["40"],
            "Signup": ["28.05.2021"],
            "VIP": ["TRUE"],
            "Zip": ["01234"],
            "Name ": ["Олена"],
        },
        types={
            "Orders": "integer",
            "Total": "number",
            "Whole": "number",
            "Signup": "date",
            "VIP": "boolean",
        },
    )
    assert body == {
        "email": "ann@example.com",
        "phone": "+380501234567",
        "automation_id": 7043663,
        "Orders": 3,
        "Total": 12.5,
        "Whole": 40,
        "Signup": "2021-05-28",
        "VIP": True,
        "Zip": "01234",
        "Name": "Олена",
    }
    encoded = orjson.loads(orjson.dumps(body))
    assert isinstance(encoded["automation_id"], int) and isinstance(encoded["Whole"], int)


def test_empty_cells_are_left_out():
    """No "" and no null in a body."""
    [body] = bodies(
        {"email": ["a@b.co"], "phone": [""], "City": [""], "Orders": [""]},
        types={"Orders": "integer"},
    )
    assert body == {"email": "a@b.co"}


def test_invalid_rows_have_no_body():
    """A row with errors is never turned into a body."""
    assert bodies({"email": ["a@b.co", "nope"]}) == [{"email": "a@b.co"}, None]


def test_default_automation_id_fills_rows_without_one():
    """--automation-id applies where the column is absent or empty, never over a value."""
    got = bodies(
        {"email": ["a@b.co", "c@d.co"], "automation_id": ["", "5"]}, default_automation_id=9
    )
    assert [b["automation_id"] for b in got] == [9, 5]
    got = bodies({"email": ["a@b.co"]}, default_automation_id=9)
    assert got == [{"email": "a@b.co", "automation_id": 9}]


def test_event_key_depends_on_destination_body_and_occurrence_not_key_order():
    """Same body to the same place: same key; anything else differs."""
    a = event_key("api:x/events/name/reg", {"email": "a@b.co", "n": 1})
    assert a == event_key("api:x/events/name/reg", {"n": 1, "email": "a@b.co"})
    assert a != event_key("api:x/events/name/other", {"email": "a@b.co", "n": 1})
    assert a != event_key("api:x/events/name/reg", {"email": "a@b.co", "n": 2})
    assert a != event_key("api:x/events/name/reg", {"email": "a@b.co", "n": 1}, occurrence=1)
    assert len(a) == 16


def test_empty_typed_cells_are_left_out_not_null():
    """An empty date, number, integer or boolean cell is absent from the body, never null/NaN."""
    got = bodies(
        {"email": ["a@b.co"], "d": [""], "n": [""], "i": [""], "b": [""]},
        types={"d": "date", "n": "number", "i": "integer", "b": "boolean"},
    )
    assert got == [{"email": "a@b.co"}]
    assert b"null" not in orjson.dumps(got[0]) and b"NaN" not in orjson.dumps(got[0])
