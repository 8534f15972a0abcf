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


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def sending_plan(
    events: int, rate: float, daily_quota: int | None = None, max_events: int | None = None
) -> str:
    """How long sending ``events`` takes at ``rate``, and on how many days a quota spreads it.

    >>> sending_plan(1_000_000, 10, daily_quota=500_000)
    '1000000 events take about 27.8 h at 10 events/s; with a daily quota of 500000: 2 days'
    """
    eta = (
        f"about {_duration(events / rate)} at {rate:g} events/s"
        if rate
        else "as long as the service takes to answer (--rate 0)"
    )
    text = f"{events} events take {eta}"
    per_day = min(daily_quota or events, int(rate * 86400) if rate else events)
    if max_events is not None:
        per_day = min(per_day, max_events)
    per_day = max(per_day, 1)
    if daily_quota is not None or max_events is not None:
        runs = -(-events // per_day)
        limit = (
            f"a daily quota of {daily_quota}"
            if max_events is None
            else f"--max-events {max_events}"
            + (f" and a daily quota of {daily_quota}" if daily_quota else "")
        )
        unit = "day" if max_events is None else "run"
        text += f"; with {limit}: {runs} {unit}{'s' if runs != 1 else ''}"
    return text


def inspect_file(path: Path, values: dict[str, Any]) -> str:
    """A plain-text plan of an import of ``path`` with the given options (nothing is sent)."""
    values = {k: v for k, v in values.items() if k in SETTINGS}
    values.update(dry_run=True, sandbox=False)
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
    if run.samples:
        lines.append("Sample events:")
        for row, body in run.samples:
            lines.append(f"  row {row}: {orjson.dumps(body).decode()}")
    if valid:
        d = options.delivery
        lines.append(f"Sending: {sending_plan(valid, d.rate, d.daily_quota, d.max_events)}")
    return "\n".join(lines)
