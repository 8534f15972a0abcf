"""What identifies an event across runs, and who it went to.

Without ``--key`` an event is its whole body (:func:`~bulk_events.payload.event_key`); with
``--key`` it is the values of the key columns as they are sent (``Ann@X.com `` and ``ann@x.com``
are one contact). Every event also records its contact (email, else phone) and a short digest
of each variable, so that a changed row of a contact who already received the event is noticed
and its changed columns named.

>>> a = {"email": "ann@x.com", "Last Activity Date": "2026-11-26"}
>>> changed_columns(digests(a), {**a, "Last Activity Date": "2026-11-27"})
['Last Activity Date']
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from .payload import Body, canonical


def keyed_event(identity: str, body: Body, key: Sequence[str], occurrence: int = 0) -> bytes:
    """A 16-byte key from the ``key`` columns' values only (never equal to a whole-body key)."""
    h = hashlib.blake2b(digest_size=16, person=b"bulk-events-key")
    h.update(identity.encode())
    h.update(b"\0")
    h.update(canonical({name: body.get(name) for name in key}))
    if occurrence:
        h.update(b"\0%d" % occurrence)
    return h.digest()


def contact_of(identity: str, body: Body) -> bytes | None:
    """The contact an event goes to (its email, else its phone), hashed with the destination."""
    who = body.get("email") or body.get("phone")
    if not who:
        return None
    return hashlib.blake2b(f"{identity}\0{who}".encode(), digest_size=12).digest()


def contacts_of(identities: Sequence[str], bodies: Sequence[Body]) -> list[bytes | None]:
    """:func:`contact_of` of every body, its destination's part of the hash computed once.

    >>> contacts_of(["api:x"], [{"phone": "+380501234567"}]) == [
    ...     contact_of("api:x", {"phone": "+380501234567"})]
    True
    """
    return contacts_of_whom(identities, [b.get("email") or b.get("phone") for b in bodies])


def contacts_of_whom(identities: Sequence[str], whom: Sequence[str | None]) -> list[bytes | None]:
    """:func:`contacts_of` from each body's contact (its email, else its phone; None if it
    has neither)."""
    prefixes: dict[str, Any] = {}
    out: list[bytes | None] = []
    for identity, who in zip(identities, whom, strict=True):
        if not who:
            out.append(None)
            continue
        prefix = prefixes.get(identity)
        if prefix is None:
            prefix = prefixes[identity] = hashlib.blake2b(
                f"{identity}\0".encode(), digest_size=12
            )
        h = prefix.copy()
        h.update(f"{who}".encode())
        out.append(h.digest())
    return out


def _digest(value: Any) -> int:
    return int.from_bytes(hashlib.blake2b(orjson.dumps(value), digest_size=4).digest(), "big")


def digests(body: Body) -> bytes:
    """Each variable's value as a 4-byte digest, by name: enough to say which ones changed."""
    return orjson.dumps({name: _digest(value) for name, value in body.items()})


def changed_columns(before: bytes, body: Body) -> list[str]:
    """The names whose values differ between the digests of an earlier body and ``body``."""
    old: dict[str, int] = orjson.loads(before)
    new = {name: _digest(value) for name, value in body.items()}
    names = [n for n in new if old.get(n) != new[n]]
    return names + [n for n in old if n not in new]
