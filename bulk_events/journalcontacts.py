"""The run journal's contact history: which contact each sent event went to, and its cells' digests.

With it a changed row of a contact who already received the event is recognised, and its
changed columns named (:mod:`bulk_events.keys` computes the contacts and digests).
"""

from __future__ import annotations

from collections.abc import Sequence

from .journaldb import CHUNK, JournalPart, row_batches, statement_rows, table_names

__all__ = ["ContactHistory"]

_CONTACTS_PER_STATEMENT = 256


class ContactHistory(JournalPart):
    """The contacts part of :class:`~bulk_events.journal.Journal`."""

    def remember_contacts(self, items: Sequence[tuple[bytes, bytes, bytes]]) -> None:
        """Record ``(event key, contact, digests)`` for events about to be sent."""
        if not items:
            return
        # Rows of up to a few hundred per statement: executemany() would release the GIL and
        # take it back from the event loop once per row, and this runs beside the loop.
        sizes = statement_rows(len(items), self._rows_per_statement(3, _CONTACTS_PER_STATEMENT))
        values = [value for item in items for value in item]
        with self._writing("cannot write the run journal", statements=len(sizes)) as conn:
            for rows, part in row_batches(values, 3, sizes):
                conn.execute("INSERT OR REPLACE INTO contacts VALUES " + rows, part)

    def contact_history(
        self, contacts: Sequence[bytes], *, run_id: int
    ) -> dict[bytes, tuple[bytes, bytes, str]]:
        """For each contact that an earlier run (not ``run_id``) sent an event to: the latest
        such event's ``(key, digests, sent_at)``. Contacts with none are absent."""
        unique = list(dict.fromkeys(contacts))
        found: dict[bytes, tuple[bytes, bytes, str]] = {}
        for start in range(0, len(unique), CHUNK):
            chunk = unique[start : start + CHUNK]
            with self._reading() as conn:
                if conn is None or "contacts" not in table_names(conn):
                    return found
                rows = conn.execute(
                    "SELECT c.contact, c.key, c.digests, e.sent_at FROM contacts c "
                    "JOIN events e ON e.key = c.key WHERE e.state = 'sent' AND "
                    f"e.run_id IS NOT ? AND c.contact IN ({','.join('?' * len(chunk))}) "
                    "ORDER BY e.sent_at",
                    [run_id, *chunk],
                ).fetchall()
            for contact, key, digests, sent_at in rows:
                found[contact] = (key, digests, sent_at or "")
        return found

    def known_contacts(self, keys: Sequence[bytes]) -> set[bytes]:
        """Which of these event keys an earlier run already decided to send (checked then)."""
        found: set[bytes] = set()
        for start in range(0, len(keys), CHUNK):
            chunk = list(keys[start : start + CHUNK])
            with self._reading() as conn:
                if conn is None or "contacts" not in table_names(conn):
                    return found
                found.update(
                    key
                    for (key,) in conn.execute(
                        f"SELECT key FROM contacts WHERE key IN ({','.join('?' * len(chunk))})",
                        chunk,
                    )
                )
        return found
