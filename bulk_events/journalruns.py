"""The run journal's ``runs`` table: when each run started and ended, and how far it is.

A run writes its progress about once a second (:meth:`RunRecords.update_run`); ``bulk-events
status`` and ``history`` read it from another process (:meth:`RunRecords.runs`).
"""

from __future__ import annotations

import json
import os

from .journaldb import JournalPart, table_names, utc_now

__all__ = ["RunRecords"]


class RunRecords(JournalPart):
    """The runs part of :class:`~bulk_events.journal.Journal`."""

    def start_run(self, *, input: str, target: str, argv_summary: str = "") -> int:
        """Record the start of a run and return its id.

        ``target`` is stored as given: pass a display form without secrets (no token, no hash
        part of an event URL).
        """
        with self._writing("cannot write the run journal") as conn:
            cur = conn.execute(
                "INSERT INTO runs (started_at, input, target, argv, pid) VALUES (?, ?, ?, ?, ?)",
                (utc_now(), input, target, argv_summary, os.getpid()),
            )
            run_id = cur.lastrowid
        assert run_id is not None
        return run_id

    def finish_run(
        self, run_id: int, counts: dict[str, int], exit_code: int, stopped: str = ""
    ) -> None:
        """Record the end of a run: its exit code, the counts it reported, why it stopped early."""
        with self._writing("cannot write the run journal") as conn:
            conn.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, counts_json = ?, stopped = ?, "
                "paused_until = NULL, pause_reason = NULL WHERE id = ?",
                (utc_now(), exit_code, json.dumps(counts, sort_keys=True), stopped, run_id),
            )

    def update_run(
        self,
        run_id: int,
        *,
        total: int | None,
        rate: float,
        paused_until: str | None = None,
        pause_reason: str | None = None,
        progress: dict[str, object] | None = None,
    ) -> None:
        """Record how far a run is (``bulk-events status`` reads it from another process)."""
        with self._writing("cannot write the run journal") as conn:
            conn.execute(
                "UPDATE runs SET updated_at = ?, total = ?, rate = ?, paused_until = ?, "
                "pause_reason = ?, progress_json = ? WHERE id = ?",
                (
                    utc_now(),
                    total,
                    rate,
                    paused_until,
                    pause_reason,
                    json.dumps(progress or {}, sort_keys=True),
                    run_id,
                ),
            )

    def runs(self, limit: int | None = None) -> list[dict[str, object]]:
        """The recorded runs, newest first, as column -> value (columns of an older schema are
        simply absent)."""
        with self._reading() as conn:
            if conn is None or "runs" not in table_names(conn):
                return []
            cur = conn.execute(
                "SELECT * FROM runs ORDER BY id DESC LIMIT ?", (-1 if limit is None else limit,)
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
