"""From validated rows to event bodies, and the keys that identify them."""

from __future__ import annotations

import pickle

import orjson
import pandas as pd

from bulk_events.layout import plan_columns
from bulk_events.payload import build_bodies, event_key
from bulk_events.schema import RowValidator


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


# --- the column-wise builder against the row-by-row one it replaced ------------------------------

import hashlib  # noqa: E402

import numpy as np  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bulk_events.cells import to_integers, to_numbers  # noqa: E402
from bulk_events.payload import event_keys  # noqa: E402

CELLS = {
    "email": ["a@b.co", " Ann@Example.com ", "nope", "", "x.y@mail.example.net"],
    "phone": ["+380501234567", "380 50 123 45 67", "12-34", "", "380501234567.0"],
    "name": ["Олена", "", "  ", 'a},{"b', 'say "hi"', "=1+1"],
    "n": ["12.50", "40", "", "1e400", "abc", "1 234,5", "-0.0"],
    "i": ["3", "3.0", "", "x", "-7"],
    "d": ["2021-05-28", "28.05.2021", "", "05/06/2021", "2021-13-45", "27 Nov 2024"],
    "b": ["TRUE", "no", "", "maybe", "1"],
    "automation_id": ["7043663", "7043663.0", "", "0", "5"],
}
TYPES = {"n": "number", "i": "integer", "d": "date", "b": "boolean"}


def bodies_row_by_row(validated, layout):
    """The builder as it was: one dict comprehension per row over per-column value lists."""
    frame = validated.frame
    columns = []
    for c in layout.columns:
        s = frame[c.source]
        if c.role == "automation_id" or c.type == "integer":
            values = to_integers(s)
        elif c.type == "number":
            values = to_numbers(s)
        elif c.type == "date":
            text = np.datetime_as_string(
                validated.dates[c.source].to_numpy(dtype="datetime64[D]"), unit="D"
            )
            values = [None if t == "NaT" else t for t in text.tolist()]
        elif c.type == "boolean":
            flags = validated.booleans[c.source].astype(object)
            values = [None if v is None or v is pd.NA else bool(v) for v in flags.tolist()]
        else:
            values = [v if v != "" else None for v in s.tolist()]
        columns.append((c.name, values))
    names = [name for name, _ in columns]
    out = []
    for row, values in zip(
        frame.index.tolist(), zip(*(v for _, v in columns), strict=True), strict=True
    ):
        if row in validated.errors:
            out.append(None)
        else:
            out.append(
                {
                    n: v
                    for n, v in zip(names, values, strict=True)
                    if v is not None and v != "" and v == v
                }
            )
    return out


def key_one_by_one(identity, body, occurrence=0):
    h = hashlib.blake2b(digest_size=16)
    h.update(identity.encode())
    h.update(b"\0")
    h.update(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    if occurrence:
        h.update(b"\0%d" % occurrence)
    return h.digest()


def validated_chunk(data):
    """The layout of a drawn chunk (its columns typed by TYPES) and the chunk validated."""
    layout = plan_columns(list(data), types={k: v for k, v in TYPES.items() if k in data})
    n = len(next(iter(data.values())))
    frame = pd.DataFrame(data, index=range(2, 2 + n), dtype=object)
    return layout, RowValidator(layout).validate(frame)


@st.composite
def chunks(draw):
    names = draw(st.lists(st.sampled_from(sorted(CELLS)), min_size=1, unique=True))
    if "email" not in names and "phone" not in names:
        names.insert(0, draw(st.sampled_from(["email", "phone"])))
    n = draw(st.integers(1, 60))
    data = {c: draw(st.lists(st.sampled_from(CELLS[c]), min_size=n, max_size=n)) for c in names}
    return data


@settings(max_examples=60, deadline=None)
@given(chunks(), st.integers(0, 2))
def test_column_wise_bodies_and_keys_equal_the_row_by_row_ones(data, occurrence):
    """Random chunks: the same bodies, in the same key order, and the same event keys."""
    layout, validated = validated_chunk(data)
    got = build_bodies(validated, layout)
    want = bodies_row_by_row(validated, layout)
    assert got == want
    assert [list(b) for b in got if b] == [list(b) for b in want if b]  # key order too
    assert [type(v) for b in got if b for v in b.values()] == [
        type(v) for b in want if b for v in b.values()
    ]
    sent = [b for b in got if b is not None]
    identity = "api:x/events/name/reg"
    assert event_keys(identity, sent, occurrence) == [
        key_one_by_one(identity, b, occurrence) for b in sent
    ]


def test_event_keys_of_bodies_a_split_could_confuse():
    """Bodies holding '},{"', nested values and empty bodies key exactly as one at a time."""
    tricky = [
        {"email": "a@b.co", "note": 'x},{"y'},
        {"email": "c@d.co", "list": [{"a": 1}, {"b": 2}]},
        {},
        {"email": "e@f.co", "n": 1.5, "ok": True},
    ]
    for bodies in (tricky, tricky[:2], [tricky[0], tricky[3]], tricky[3:]):
        assert event_keys("id", bodies) == [key_one_by_one("id", b) for b in bodies]


# --- bodies as JSON, built column by column (what the checking process hands back) ------------

from bulk_events.payload import (  # noqa: E402
    BodyColumns,
    canonical,
    encode_bodies,
    spread,
    with_body,
    without_errors,
)


def encoded(validated, layout, ok=None):
    ok = without_errors(validated) if ok is None else ok
    return encode_bodies(BodyColumns(validated, layout), ok)


@settings(max_examples=80, deadline=None)
@given(chunks())
def test_bodies_encoded_column_wise_are_the_bytes_orjson_writes(data):
    """Random chunks (quotes, '},{"', Cyrillic, formulas, every type, empty cells): each
    packed body is orjson.dumps of its dict, byte for byte; it decodes to the same dict with
    the same key order and types; the canonical bytes are canonical(body)."""
    layout, validated = validated_chunk(data)
    want = build_bodies(validated, layout)
    made = encoded(validated, layout)
    assert made is not None
    packed, canonicals = made
    assert len(packed) == len(want)
    assert with_body(packed) == [i for i, b in enumerate(want) if b is not None]
    sent = [b for b in want if b is not None]
    assert canonicals == [canonical(b) for b in sent]
    for i, body in enumerate(want):
        got = packed[i]
        assert got == body
        if body is not None:
            assert list(got) == list(body)
            assert [type(v) for v in got.values()] == [type(v) for v in body.values()]
    json = packed._json
    assert [json[a:b] for a, b in zip(packed._starts, packed._ends, strict=True)] == [
        orjson.dumps(b) for b in sent
    ]


def test_packed_bodies_pickle_decode_and_move():
    layout = plan_columns(["email", "off %s"])
    frame = pd.DataFrame(
        {"email": ["a@b.co", "nope", "c@d.co"], "off %s": ['50% "off"', "x", ""]},
        index=[2, 3, 4],
        dtype=object,
    )
    packed, _ = encoded(RowValidator(layout).validate(frame), layout)
    want = [{"email": "a@b.co", "off %s": '50% "off"'}, None, {"email": "c@d.co"}]
    assert list(packed) == want
    assert list(pickle.loads(pickle.dumps(packed))) == want
    assert packed[1:] == want[1:]
    assert list(spread(packed, [0, 2, 3], 5)) == [want[0], None, None, want[2], None]


def test_values_json_would_not_give_back_are_built_as_dicts():
    """A float that is not finite (JSON writes null) or an integer past 64 bits: no packing."""
    layout = plan_columns(["email", "n"], types={"n": "number"})
    frame = pd.DataFrame({"email": ["a@b.co"], "n": ["1"]}, index=[2], dtype=object)
    validated = RowValidator(layout).validate(frame)
    columns = BodyColumns(validated, layout)
    ok = np.ones(1, dtype=bool)
    for odd in (float("nan"), float("inf"), 2**70):
        values = np.empty(1, dtype=object)
        values[0] = odd
        columns.columns[1] = ("n", values, np.ones(1, dtype=bool))
        assert encode_bodies(columns, ok) is None, odd
