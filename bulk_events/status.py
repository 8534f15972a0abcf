"""`bulk-events status` and `bulk-events history`: what the journal says about runs, read from
any terminal while a run holds the journal or after it.

The journal is opened read-only (no lock, nothing written), so looking never disturbs a run: the
run itself records how far it is in its ``runs`` row about once a second.

>>> report = read_status("state/nightly.sqlite")  # doctest: +SKIP
>>> report.running, report.run.counts["sent"], report.next_step  # doctest: +SKIP
(True, 512, 'a run is going (pid 4242): wait for it; bulk-events status follows it')
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import EXIT_INPUT, EXIT_NOPERM, EXIT_SIGINT, EXIT_SIGTERM, EXIT_TEMPFAIL
from .journal import Journal
from .outcome import Status

SHOWN = ("sent", "failed", "unknown", "pending")
_ORDER = [s.value for s in Status]


def next_step(
    counts: Mapping[str, int], exit_code: int, stopped: str = "", *, dry_run: bool = False
) -> str:
    """What to do after a run, as one line with the exact command.

    >>> next_step({"sent": 767, "pending": 233}, 130)
    '233 pending: run the same command again'
    >>> next_step({"sent": 9, "unknown": 3}, 1)
    '3 unknown: check them in SendPulse, then add --retry-unknown'
    """
    pending = counts.get("pending", 0)
    unknown = counts.get("unknown", 0)
    failed = counts.get("failed", 0)
    invalid = counts.get("invalid", 0)
    if exit_code == EXIT_TEMPFAIL:
        if "quota" in stopped or "429" in stopped:
            return (
                f"quota spent: resume after it resets (the next minute or day, by plan): "
                f"run the same command again ({pending} pending)"
            )
        return f"service unavailable: run the same command again later ({pending} pending)"
    if exit_code == EXIT_NOPERM:
        return (
            "credentials stopped working: set valid SENDPULSE_CLIENT_ID / SENDPULSE_CLIENT_SECRET, "
            "then run the same command again"
        )
    if exit_code == EXIT_INPUT and stopped:
        return "fix the file where it says, then run the same command again"
    if pending:
        return f"{pending} pending: run the same command again"
    if failed:
        return f"{failed} failed: run the same command again (failed rows are sent again)"
    if unknown:
        return f"{unknown} unknown: check them in SendPulse, then add --retry-unknown"
    if invalid:
        return f"{invalid} invalid: fix them (--errors FILE lists them), then run the same command again"
    if dry_run and counts.get("valid", 0):
        return "all good: run the same command without --dry-run to send"
    if exit_code in (EXIT_SIGINT, EXIT_SIGTERM):
        return "stopped: run the same command again to continue"
    return "nothing to do: every row is sent or skipped"


@dataclass
class RunRecord:
    """One run as the journal recorded it (a finished one, or one still going)."""

    id: int
    started_at: str
    finished_at: str | None
    input: str
    target: str
    pid: int
    exit_code: int | None
    counts: dict[str, int]
    total: int | None = None
    rate: float = 0.0
    updated_at: str | None = None
    paused_until: str | None = None
    pause_reason: str | None = None
    stopped: str = ""
    progress: dict[str, Any] = field(default_factory=dict)
    alive: bool = False  # its process is still there

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRecord:
        progress = _json(row.get("progress_json"))
        final = _json(row.get("counts_json"))
        counts = final if row.get("finished_at") else progress.get("counts", final)
        record = cls(
            id=int(row["id"]),
            started_at=str(row["started_at"]),
            finished_at=row.get("finished_at"),
            input=str(row["input"]),
            target=str(row["target"]),
            pid=int(row["pid"]),
            exit_code=row.get("exit_code"),
            counts={str(k): int(v) for k, v in (counts or {}).items()},
            total=row.get("total"),
            rate=float(row.get("rate") or 0.0),
            updated_at=row.get("updated_at"),
            paused_until=row.get("paused_until"),
            pause_reason=row.get("pause_reason"),
            stopped=row.get("stopped") or "",
            progress=progress,
        )
        record.alive = record.finished_at is None and _alive(record.pid)
        return record

    @property
    def state(self) -> str:
        if self.finished_at is not None:
            return "finished"
        return "running" if self.alive else "ended without finishing"

    @property
    def decided(self) -> int:
        return sum(self.counts.values())

    @property
    def of_total(self) -> int | None:
        if self.finished_at is not None:
            return self.decided
        return None if self.total is None else max(self.total, self.decided)

    @property
    def pending(self) -> int:
        """Rows not decided yet (while running), plus those the run left pending."""
        left = 0 if self.of_total is None else self.of_total - self.decided
        return self.counts.get("pending", 0) + left

    @property
    def eta_seconds(self) -> float | None:
        left = 0 if self.of_total is None else self.of_total - self.decided
        if self.state != "running" or not left or self.rate <= 0:
            return None
        return left / self.rate

    @property
    def paused(self) -> bool:
        if self.state != "running" or not self.paused_until:
            return False
        return self.paused_until > datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def next_step(self) -> str:
        if self.state == "running":
            return f"a run is going (pid {self.pid}): wait for it; bulk-events status follows it"
        if self.state == "ended without finishing":
            return (
                "the run ended without finishing (killed or crashed): run the same command "
                "again; rows it had in flight are unknown"
            )
        counts = dict(self.counts)
        return next_step(counts, self.exit_code if self.exit_code is not None else 1, self.stopped)

    def to_dict(self) -> dict[str, Any]:
        counts = {s: self.counts.get(s, 0) for s in _ORDER}
        counts["pending"] = self.pending
        return {
            "id": self.id,
            "state": self.state,
            "running": self.state == "running",
            "pid": self.pid,
            "input": self.input,
            "target": self.target,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "updated_at": self.updated_at,
            "total": self.of_total,
            "counts": counts,
            "rate": self.rate,
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds),
            "paused_until": self.paused_until if self.paused else None,
            "pause_reason": self.pause_reason if self.paused else None,
            "exit_code": self.exit_code,
            "stopped": self.stopped or None,
            "next_step": self.next_step,
        }


@dataclass
class StatusReport:
    """The journal's latest run and where things stand."""

    journal: Path
    run: RunRecord | None

    @property
    def running(self) -> bool:
        return self.run is not None and self.run.state == "running"

    @property
    def next_step(self) -> str:
        if self.run is None:
            return "no run yet: bulk-events import FILE ... starts one"
        return self.run.next_step

    def to_dict(self) -> dict[str, Any]:
        return {
            "journal": str(self.journal),
            "running": self.running,
            "run": None if self.run is None else self.run.to_dict(),
            "next_step": self.next_step,
        }


def read_runs(journal_path: str | os.PathLike[str], limit: int | None = None) -> list[RunRecord]:
    """The journal's runs, newest first; an absent journal has none."""
    with Journal.open(journal_path, readonly=True) as journal:
        return [RunRecord.from_row(row) for row in journal.runs(limit)]


def read_status(journal_path: str | os.PathLike[str]) -> StatusReport:
    """Where the latest run of a journal stands (read-only: never disturbs a run)."""
    runs = read_runs(journal_path, limit=1)
    return StatusReport(Path(journal_path), runs[0] if runs else None)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def render_status(report: StatusReport) -> str:
    """``bulk-events status`` for people."""
    lines = [f"journal: {report.journal}"]
    run = report.run
    if run is None:
        lines.append("no run recorded yet")
    else:
        if run.state == "running":
            lines.append(f"running: pid {run.pid}, since {run.started_at}, on {run.input}")
        elif run.state == "finished":
            lines.append(
                f"last run: {run.started_at} to {run.finished_at}, on {run.input}, "
                f"exit {run.exit_code}"
            )
        else:
            lines.append(
                f"last run: pid {run.pid}, since {run.started_at}, on {run.input}: ended without "
                f"finishing (last progress {run.updated_at or 'never'})"
            )
        total = run.of_total
        parts = [f"{run.counts.get(s, 0) if s != 'pending' else run.pending} {s}" for s in SHOWN]
        others = [f"{run.counts[s]} {s}" for s in _ORDER if s not in SHOWN and run.counts.get(s)]
        of = f" of {total}" if total is not None else ""
        lines.append(f"rows: {', '.join(parts + others)}{of}")
        if run.state == "running":
            eta = run.eta_seconds
            lines.append(
                f"rate: {run.rate:.1f} events/s; "
                + (f"about {duration(eta)} to go" if eta is not None else "time to go unknown")
            )
            if run.paused:
                lines.append(f"paused until {run.paused_until}: {run.pause_reason}")
        if run.stopped:
            lines.append(f"stopped: {run.stopped}")
    lines.append(f"next: {report.next_step}")
    return "\n".join(lines)


def render_history(runs: list[RunRecord]) -> str:
    """``bulk-events history`` for people: one block per run, newest first."""
    if not runs:
        return "no run recorded yet"
    lines = []
    for run in runs:
        counts = ", ".join(f"{run.counts[s]} {s}" for s in _ORDER if run.counts.get(s)) or "none"
        end = run.finished_at or run.state
        code = "" if run.exit_code is None else f", exit {run.exit_code}"
        lines.append(f"#{run.id}  {run.started_at} -> {end}  {run.input}{code}")
        lines.append(f"    {counts}")
        if run.stopped:
            lines.append(f"    stopped: {run.stopped}")
    return "\n".join(lines)


def _json(text: Any) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = [
    "RunRecord",
    "StatusReport",
    "next_step",
    "read_runs",
    "read_status",
    "render_history",
    "render_status",
]
