"""A validated chunk -> event bodies, and the key that identifies an event across runs.

The body contract (see the README): ``email`` and/or ``phone`` as strings, ``automation_id`` as a
JSON integer at the top level, then every other column as a variable named by its header, typed by
``--type`` (undeclared columns are strings, exactly as the cell shows). Empty cells are left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, TypeVar, overload

import numpy as np
import orjson
import pandas as pd

from .cells import to_integers, to_numbers
from .layout import Layout
from .schema import ValidatedChunk

Body = dict[str, Any]
_T = TypeVar("_T")


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


class BodyColumns:
    """What a chunk's bodies are made of: for each body key (in the layout's order), every
    row's value and whether the row has one (an empty cell is left out of the body)."""

    def __init__(self, validated: ValidatedChunk, layout: Layout) -> None:
        self.columns = _columns(validated, layout)
        self._by_name = {name: (values, present) for name, values, present in self.columns}

    def values(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The column ``name``'s values and where they are present, or None if bodies have
        no such key."""
        return self._by_name.get(name)


def without_errors(validated: ValidatedChunk) -> np.ndarray:
    """Which rows of the chunk have no error: those get a body."""
    rows, errors = validated.frame.index, validated.errors
    return ~rows.isin(list(errors)) if errors else np.ones(len(rows), dtype=bool)


def build_bodies(
    validated: ValidatedChunk,
    layout: Layout,
    ok: np.ndarray | None = None,
    columns: BodyColumns | None = None,
) -> list[Body | None]:
    """One body per row of the chunk, in order; ``None`` for rows with errors (or, given
    ``ok``, for the rows where it is False).

    Built from whole columns, not row by row: rows are grouped by which of their cells are
    empty (a handful of shapes in a real file), and each group's bodies are zipped from the
    columns it has. Keys keep the layout's order.
    """
    n = len(validated.frame.index)
    if ok is None:
        ok = without_errors(validated)
    bodies: list[Body | None] = [None] * n
    cols = (columns or BodyColumns(validated, layout)).columns
    if not cols:
        return [{} if k else None for k in ok.tolist()]
    names = [name for name, _, _ in cols]
    sent = np.flatnonzero(ok)
    present = np.column_stack([p for _, _, p in cols])[sent]
    codes, shapes = _shapes(present)
    if codes is None:  # ragged columns: no shapes to share
        value_rows = zip(*(v[sent].tolist() for _, v, _ in cols), strict=True)
        for i, values, has in zip(sent.tolist(), value_rows, present.tolist(), strict=True):
            bodies[i] = {k: v for k, v, h in zip(names, values, has, strict=True) if h}
        return bodies
    for shape in shapes:
        at = np.flatnonzero(codes == shape)
        where = sent[at]
        chosen = [j for j in range(len(cols)) if shape >> j & 1]
        keys = [names[j] for j in chosen]
        if keys:
            made = [
                dict(zip(keys, values, strict=True))
                for values in zip(*(cols[j][1][where].tolist() for j in chosen), strict=True)
            ]
        else:
            made = [{} for _ in range(len(where))]
        for i, body in zip(where.tolist(), made, strict=True):
            bodies[i] = body
    return bodies


def _shapes(present: np.ndarray) -> tuple[np.ndarray | None, list[int]]:
    """Each row's shape (which columns it has) as one integer, and the distinct shapes; no
    codes if the columns do not fit in one integer or the rows have too many shapes."""
    if present.shape[1] >= 63:
        return None, []
    codes = present @ (1 << np.arange(present.shape[1], dtype=np.int64))
    shapes = np.unique(codes).tolist()
    if len(shapes) > 16:
        return None, []
    return codes, shapes


def encode_bodies(columns: BodyColumns, ok: np.ndarray) -> tuple[PackedBodies, list[bytes]] | None:
    """The bodies :func:`build_bodies` makes for the rows where ``ok``, as JSON built column
    by column: a :class:`PackedBodies`, and every body's :func:`canonical` bytes (for its key),
    in the order of the rows. Both are byte for byte what ``orjson.dumps`` gives for the body.

    Each column's values are encoded by one ``orjson.dumps`` (see :func:`_json_parts`); each
    shape of row (which columns it has) gets a template such as ``{"email":"%b","n":%b}``,
    filled in row by row. None for a chunk whose rows have many shapes, or a value JSON would
    not give back as it is (a float that is not finite, which JSON writes as null):
    :func:`build_bodies` then makes them one by one.
    """
    sent = np.flatnonzero(ok)
    count = len(sent)
    where = np.full(len(ok), -1, dtype=np.int64)
    where[sent] = np.arange(count)
    cols = columns.columns
    if count == 0 or not cols:
        texts = [b"{}"] * count
        return PackedBodies(b",".join(texts), *_offsets(texts), where), texts
    present = np.column_stack([p for _, _, p in cols])[sent]
    codes, shapes = _shapes(present)
    if codes is None:
        return None
    encoded: list[tuple[bytes, np.ndarray, np.ndarray]] = []  # per column: its key, its parts
    for j, (name, values, _) in enumerate(cols):
        has = present[:, j]
        made = _json_parts(values[sent[has]].tolist())
        if made is None:
            return None
        quoted, texts = made
        key = orjson.dumps(name).replace(b"%", b"%%") + (b':"%b"' if quoted else b":%b")
        array = np.empty(len(texts), dtype=object)
        array[:] = texts
        encoded.append((key, array, np.cumsum(has) - 1))  # each sent row's part, if it has one
    bodies = np.empty(count, dtype=object)
    canonicals = np.empty(count, dtype=object)
    names = [name for name, _, _ in cols]
    for shape in shapes:
        chosen = [j for j in range(len(cols)) if shape >> j & 1]
        at = np.flatnonzero(codes == shape) if len(shapes) > 1 else np.arange(count)
        if not chosen:
            bodies[at] = canonicals[at] = [b"{}"] * len(at)
            continue
        parts = {j: encoded[j][1][encoded[j][2][at]].tolist() for j in chosen}
        bodies[at] = _filled(encoded, chosen, parts)
        ordered = sorted(chosen, key=lambda j: names[j])
        canonicals[at] = bodies[at] if ordered == chosen else _filled(encoded, ordered, parts)
    made_texts: list[bytes] = bodies.tolist()
    return PackedBodies(b",".join(made_texts), *_offsets(made_texts), where), canonicals.tolist()


def _filled(
    encoded: list[tuple[bytes, np.ndarray, np.ndarray]],
    order: list[int],
    parts: dict[int, list[bytes]],
) -> list[bytes]:
    """Rows' JSON from a template of the columns in ``order``, and each column's parts."""
    template = b"{" + b",".join(encoded[j][0] for j in order) + b"}"
    return list(map(template.__mod__, zip(*(parts[j] for j in order), strict=True)))


def _offsets(texts: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Where each text is in ``b",".join(texts)``: start and end offsets."""
    sizes = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(sizes + 1) - 1
    return ends - sizes, ends


def _json_parts(values: list[Any]) -> tuple[bool, list[bytes]] | None:
    """Each value in JSON, from one ``orjson.dumps`` of them all: ``(True, contents)`` if all
    are strings (each one's escaped text, without its quotes), else ``(False, texts)``; None if
    one of them would not come back from JSON as it is.

    Between the values of a JSON array there is a comma, and inside a JSON string every ``"``
    is escaped: split at ``","``, an array of strings gives exactly one part per value, and an
    array of numbers and booleans split at ``,`` does. Any other value makes the count differ
    (a string with a comma among numbers, a number among strings) and is encoded on its own.
    """
    try:
        whole = orjson.dumps(values, option=_PASSTHROUGH)
    except orjson.JSONEncodeError:  # a datetime, a subclass, an integer past 64 bits
        return None
    if not values:
        return False, []
    if whole.startswith(b'["'):
        parts = whole[2:-2].split(b'","')
        if len(parts) == len(values):
            return True, parts
    else:
        parts = whole[1:-1].split(b",")
        if len(parts) == len(values):
            if b"null" in parts:  # NaN or infinity, or a None: not sent as null
                return None
            return False, parts
    parts = [orjson.dumps(value, option=_PASSTHROUGH) for value in values]
    if b"null" in parts:
        return None
    return False, parts


# Values of types JSON has none of its own for are refused, not written as orjson would.
_PASSTHROUGH = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


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


class PackedBodies(Sequence["Body | None"]):
    """A chunk's bodies held as their JSON, all in one bytes object, each decoded when it is
    asked for (``None`` for a row without one).

    Made by :func:`encode_bodies` straight from a chunk's columns, without a dict per row:
    a worker process hands them back as one bytes object and two arrays of offsets, which
    pickle at a fraction of the cost of a list of dicts, and a dry run decodes only the bodies
    it shows. JSON gives back what went in: the same keys in the same order, the same values
    and types (``encode_bodies`` declines values for which it would not).
    """

    __slots__ = ("_ends", "_json", "_starts", "_where")

    def __init__(
        self, json: bytes, starts: np.ndarray, ends: np.ndarray, where: np.ndarray
    ) -> None:
        self._json = json  # the bodies' JSON, one after the other
        self._starts, self._ends = starts, ends  # per body: where its JSON is
        self._where = where  # per row: which body is its (-1: none)

    def __len__(self) -> int:
        return len(self._where)

    @overload
    def __getitem__(self, index: int) -> Body | None: ...

    @overload
    def __getitem__(self, index: slice) -> list[Body | None]: ...

    def __getitem__(self, index: int | slice) -> Body | list[Body | None] | None:
        if isinstance(index, slice):
            return [self._body(int(k)) for k in self._where[index]]
        return self._body(int(self._where[index]))

    def _body(self, k: int) -> Body | None:
        if k < 0:
            return None
        body: Body = orjson.loads(memoryview(self._json)[self._starts[k] : self._ends[k]])
        return body

    def present(self) -> np.ndarray:
        """Which rows have a body (a boolean per row), without decoding any."""
        return self._where >= 0

    def spread(self, at: Sequence[int], size: int) -> PackedBodies:
        """The same bodies at new indexes ``at`` among ``size`` rows (the others without)."""
        where = np.full(size, -1, dtype=np.int64)
        where[np.asarray(at, dtype=np.int64)] = self._where
        return PackedBodies(self._json, self._starts, self._ends, where)


def with_body(bodies: Sequence[Body | None]) -> list[int]:
    """The indexes of the rows that have a body (a packed chunk's without decoding it)."""
    if isinstance(bodies, PackedBodies):
        return np.flatnonzero(bodies.present()).tolist()
    return [i for i, b in enumerate(bodies) if b is not None]


def spread(bodies: Sequence[Body | None], at: Sequence[int], size: int) -> Sequence[Body | None]:
    """``bodies`` moved to indexes ``at`` among ``size`` rows; the other rows have none."""
    if isinstance(bodies, PackedBodies):
        return bodies.spread(at, size)
    return placed(bodies, at, size)


def placed(items: Sequence[_T | None], at: Sequence[int], size: int) -> list[_T | None]:
    """``items`` (one per row) at indexes ``at`` among ``size`` rows; the others None."""
    out: list[_T | None] = [None] * size
    for i, item in zip(at, items, strict=True):
        out[i] = item
    return out


def event_keys(identity: str, bodies: Sequence[Body], occurrence: int = 0) -> list[bytes]:
    """:func:`event_key` of every body, in order: the same keys, computed for a whole chunk.

    >>> event_keys("api:x", [{"email": "a@b.co"}]) == [event_key("api:x", {"email": "a@b.co"})]
    True
    """
    return keys_of(identity, _canonicals(bodies), occurrence)


def keys_of(identity: str, canonicals: Sequence[bytes], occurrence: int = 0) -> list[bytes]:
    """:func:`event_keys` from the bodies' :func:`canonical` bytes."""
    prefix = hashlib.blake2b(digest_size=16)
    prefix.update(identity.encode())
    prefix.update(b"\0")
    tail = b"\0%d" % occurrence if occurrence else b""
    copy = prefix.copy
    keys = []
    for text in canonicals:
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
