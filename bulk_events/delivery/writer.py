"""Group commit of journal marks: every mark requested in the same event-loop turn, one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from bulk_events.journal import Journal, Mark


class JournalWriter:
    """Group commit: every mark requested in the same event-loop turn goes into one transaction.

    A caller awaits its mark's commit, so a row is marked in flight on disk before its request is
    sent and its outcome is on disk before its worker takes the next row: a crash can leave at most
    one row per worker undecided.
    """

    def __init__(self, journal: Journal, run_id: int) -> None:
        self.journal = journal
        self.run_id = run_id
        self._pending: list[tuple[Mark, asyncio.Future[None]]] = []
        self._scheduled = False

    async def record(self, mark: Mark) -> None:
        """Write ``mark``; returns once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((mark, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        await future

    def record_now(self, marks: Sequence[Mark]) -> None:
        """Write at once, outside the loop's rhythm (when a delivery is being torn down)."""
        if marks:
            self.journal.write(marks, self.run_id)

    def progress(self, **fields: Any) -> None:
        """Record how far the run is in its ``runs`` row (see :meth:`Journal.update_run`)."""
        self.journal.update_run(self.run_id, **fields)

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        try:
            self.journal.write([m for m, _ in batch], self.run_id)
        except Exception as exc:  # the journal failing is fatal for every waiter
            for _, f in batch:
                if not f.done():
                    f.set_exception(exc)
            return
        for _, f in batch:
            if not f.done():
                f.set_result(None)
