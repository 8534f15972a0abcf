"""`bulk-events inspect`: what an import would do, before it does it."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from .events import Event, Progress
from .importer import Import, run_sync
from .options import SETTINGS, ImportOptions
from .outcome import SkipReason, Status
from .status import read_status


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def inspect_file(path: Path, values: dict[str, Any]) -> str:
    """A plain-text plan of an import of ``path`` with the given options (nothing is sent)."""
    values = {k: v for k, v in values.items() if k in SETTINGS}
    values.update(dry_run=True, sandbox=False, errors=None)  # inspect writes no file of its own
    with tempfile.TemporaryDirectory() as tmp:
        values["report"] = str(Path(tmp) / "plan.csv")
        options = ImportOptions.from_settings(**values)
        reasons: Counter[SkipReason] = Counter()

        def note(event: Event) -> None:
            if isinstance(event, Progress) and event.outcome.reason is not None:
                reasons[event.outcome.reason] += 1

        run = Import(path, options, on_event=note, samples=3)
        result = run_sync(run.run())
    counts = result.counts
    lines = [
        f"File:    {path.name}: {result.detected}",
        f"Target:  {options.target.label}",
        "Columns:",
    ]
    assert run.layout is not None  # set once the file is open
    width = max((len(c.source.strip()) for c in run.layout.columns), default=0)
    for c in run.layout.columns:
        shown = "(--automation-id)" if c.source.startswith("\x00") else c.source.strip()
        role = c.role if c.role != "variable" else f'variable "{c.name}"'
        lines.append(
            f"  {shown:<{width}}  -> {role} ({'integer' if c.role == 'automation_id' else c.type})"
        )
    valid = counts.get(Status.VALID.value, 0)
    lines.append(
        f"Rows:    {sum(counts.values())}: {valid} to send, {counts.get(Status.INVALID.value, 0)} invalid, "
        f"{reasons[SkipReason.DUPLICATE]} duplicate, {reasons[SkipReason.ALREADY_SENT]} already sent, "
        f"{counts.get(Status.UNKNOWN.value, 0)} unknown from an earlier run"
    )
    journal = run.journal_path
    lines.append(f"Journal: {journal}{'' if journal and journal.exists() else ' (no run yet)'}")
    if journal is not None:
        status = read_status(journal)
        if status.running and status.run is not None:
            live = status.run
            of = "" if live.of_total is None else f" of {live.of_total}"
            lines.append(
                f"Running: a run is going (pid {live.pid}, since {live.started_at}, on "
                f"{live.input}): {live.decided}{of} rows done, {live.counts.get('sent', 0)} sent; "
                "the counts above are from before it ends"
            )
    if run.samples:
        lines.append("Sample events:")
        for row, body in run.samples:
            lines.append(f"  row {row}: {orjson.dumps(body).decode()}")
    if valid:
        rate = options.delivery.rate
        eta = (
            f"about {_duration(valid / rate)} at {rate:g} events/s"
            if rate
            else "as fast as the service answers (--rate 0)"
        )
        lines.append(f"Sending: {valid} events takes {eta}")
    return "\n".join(lines)
