"""A validated chunk -> event bodies, and the key that identifies an event across runs.

The body contract (see the README): ``email`` and/or ``phone`` as strings, ``automation_id`` as a
JSON integer at the top level, then every other column as a variable named by its header, typed by
``--type`` (undeclared columns are strings, exactly as the cell shows). Empty cells are left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd

from .cells import to_integers, to_numbers
from .layout import Layout
from .schema import ValidatedChunk

Body = dict[str, Any]


# A column as the body builder needs it: its body key, every row's value (an object array),
# and where the value is present (False for an empty cell: it is left out of the body).
_Column = tuple[str, np.ndarray, np.ndarray]


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _per_distinct(s: pd.Series, convert: Any) -> np.ndarray:
    """``convert(s)`` (a list) computed on the distinct cells only, as an object array per row."""
    codes, uniques = pd.factorize(s.array, use_na_sentinel=False)
    if 2 * len(uniques) > len(s):
        return _objects(convert(s))
    return _objects(convert(pd.Series(uniques)))[codes]


def _columns(validated: ValidatedChunk, layout: Layout) -> list[_Column]:
    frame = validated.frame
    columns: list[_Column] = []
    for c in layout.columns:
        s = frame[c.source]
        if c.role == "automation_id" or c.type == "integer":
            values = _per_distinct(s, to_integers)
            present = values != None  # noqa: E711 - element-wise, not an identity test
        elif c.type == "number":
            values = _per_distinct(s, to_numbers)
            present = values != None  # noqa: E711
        elif c.type == "date":
            dates = validated.dates[c.source]
            # numpy formats a whole column in C; NaT becomes "NaT", which is left out.
            text = np.datetime_as_string(dates.to_numpy(dtype="datetime64[D]"), unit="D")
            values, present = text.astype(object), text != "NaT"
        elif c.type == "boolean":
            flags = validated.booleans[c.source]
            present = flags.notna().to_numpy(dtype=bool)
            values = _objects(flags.to_numpy(dtype=bool, na_value=False).tolist())
        else:
            values = s.to_numpy(dtype=object)
            present = (s.notna() & (s != "")).to_numpy(dtype=bool)
        columns.append((c.name, values, np.asarray(present, dtype=bool)))
    return columns


def build_bodies(validated: ValidatedChunk, layout: Layout) -> list[Body | None]:
    """One body per row of the chunk, in order; ``None`` for rows with errors.

    Built from whole columns, not row by row: rows are grouped by which of their cells are
    empty (a handful of shapes in a real file), and each group's bodies are zipped from the
    columns it has. Keys keep the layout's order.
    """
    rows = validated.frame.index
    n = len(rows)
    errors = validated.errors
    ok = ~rows.isin(list(errors)) if errors else np.ones(n, dtype=bool)
    bodies: list[Body | None] = [None] * n
    columns = _columns(validated, layout)
    if not columns:
        return [{} if k else None for k in ok.tolist()]
    names = [name for name, _, _ in columns]
    sent = np.flatnonzero(ok)
    present = np.column_stack([p for _, _, p in columns])[sent]
    # Each row's shape (which columns it has) as one integer, when the columns fit in one.
    codes = present @ (1 << np.arange(len(columns), dtype=np.int64)) if len(columns) < 63 else None
    shapes = np.unique(codes) if codes is not None else np.empty(0, dtype=np.int64)
    if codes is None or len(shapes) > 16:  # ragged columns: no shapes to share
        value_rows = zip(*(v[sent].tolist() for _, v, _ in columns), strict=True)
        for i, values, has in zip(sent.tolist(), value_rows, present.tolist(), strict=True):
            bodies[i] = {k: v for k, v, h in zip(names, values, has, strict=True) if h}
        return bodies
    for shape in shapes.tolist():
        at = np.flatnonzero(codes == shape)
        where = sent[at]
        chosen = [j for j in range(len(columns)) if shape >> j & 1]
        keys = [names[j] for j in chosen]
        if keys:
            made = [
                dict(zip(keys, values, strict=True))
                for values in zip(*(columns[j][1][where].tolist() for j in chosen), strict=True)
            ]
        else:
            made = [{} for _ in range(len(where))]
        for i, body in zip(where.tolist(), made, strict=True):
            bodies[i] = body
    return bodies


def canonical(body: Body) -> bytes:
    """The body as compact JSON with sorted keys: the same event always gives the same bytes."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def _canonicals(bodies: Sequence[Body]) -> list[bytes]:
    """:func:`canonical` of every body, from one ``orjson.dumps`` of the whole list.

    The list's JSON is the bodies' JSON joined by commas. Inside a JSON string every ``"`` is
    escaped, so in flat bodies ``},{"`` occurs only between two of them; a nested value that
    holds it too makes one part more than there are bodies, which is caught.
    """
    if len(bodies) < 2 or not all(bodies):  # an empty body has no '{"' to split at
        return [canonical(b) for b in bodies]
    parts = orjson.dumps(list(bodies), option=orjson.OPT_SORT_KEYS)[3:-2].split(b'},{"')
    if len(parts) != len(bodies):  # a nested value split too: each body on its own
        return [canonical(b) for b in bodies]
    return [b'{"' + p + b"}" for p in parts]


def event_keys(identity: str, bodies: Sequence[Body], occurrence: int = 0) -> list[bytes]:
    """:func:`event_key` of every body, in order: the same keys, computed for a whole chunk.

    >>> event_keys("api:x", [{"email": "a@b.co"}]) == [event_key("api:x", {"email": "a@b.co"})]
    True
    """
    prefix = hashlib.blake2b(digest_size=16)
    prefix.update(identity.encode())
    prefix.update(b"\0")
    tail = b"\0%d" % occurrence if occurrence else b""
    copy = prefix.copy
    keys = []
    for text in _canonicals(bodies):
        h = copy()
        h.update(text + tail if tail else text)
        keys.append(h.digest())
    return keys


def event_key(identity: str, body: Body, occurrence: int = 0) -> bytes:
    """A 16-byte key for "this body sent to this destination", the ``occurrence``-th time in a file.

    The destination identity may contain a secret (an event URL); only this hash of it is stored.
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(identity.encode())
    h.update(b"\0")
    h.update(canonical(body))
    if occurrence:
        h.update(b"\0%d" % occurrence)
    return h.digest()
