"""`bulk-events inspect`: what an import would do, before it does it."""

from __future__ import annotations

import re
import shlex
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from .events import Event, Progress
from .importer import Import, RunResult, run_sync
from .options import SETTINGS, ImportOptions
from .outcome import Outcome, SkipReason, Status
from .reader import describe_hidden, hidden_policy, open_table
from .reader.header import visible_name
from .status import duration, read_status
from .values import suggest_type

_QUOTED = re.compile(r'(?<!column )"(?:[^"\\]|\\.)*"')


def sending_plan(
    events: int, rate: float, daily_quota: int | None = None, max_events: int | None = None
) -> str:
    """How long sending ``events`` takes at ``rate``, and on how many days a quota spreads it.

    >>> sending_plan(1_000_000, 10, daily_quota=500_000)
    '1000000 events take about 27.8 h at 10 events/s; with a daily quota of 500000: 2 days'
    """
    eta = (
        f"about {duration(events / rate)} at {rate:g} events/s"
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
    values.update(dry_run=True, sandbox=False, errors=None)  # inspect writes no file of its own
    sheet = _look(path, ImportOptions.from_settings(**values))
    if sheet.hides and values.get("hidden") is None:
        # An import would stop until told; the plan (and the proposed command) takes the choice
        # that sends nothing the sheet hides, and the warning names the other.
        values["hidden"] = "skip"
        sheet = replace(sheet, assumed=True)
    with tempfile.TemporaryDirectory() as tmp:
        values["report"] = str(Path(tmp) / "plan.csv")
        options = ImportOptions.from_settings(**values)
        reasons: Counter[SkipReason] = Counter()
        invalid: list[Outcome] = []

        def note(event: Event) -> None:
            if isinstance(event, Progress) and event.outcome.reason is not None:
                reasons[event.outcome.reason] += 1
            if isinstance(event, Progress) and event.outcome.status is Status.INVALID:
                invalid.append(event.outcome)

        run = Import(path, options, on_event=note, samples=3)
        result = run_sync(run.run())
    counts = result.counts
    lines = [
        f"File:    {path.name}: {result.detected}",
        f"Target:  {options.target.label}",
        "Columns:",
    ]
    assert run.layout is not None and run.chosen is not None  # set once the file is open
    chosen = run.chosen
    sources = [c.source for c in run.layout.columns] + list(chosen.left_out)
    width = max((len(s.strip()) for s in sources), default=0)
    for c in run.layout.columns:
        shown = "(--automation-id)" if c.source.startswith("\x00") else c.source.strip()
        role = c.role if c.role != "variable" else f'variable "{c.name}"'
        lines.append(
            f"  {shown:<{width}}  -> {role} ({'integer' if c.role == 'automation_id' else c.type})"
        )
    for source in chosen.left_out:
        why = "each row's event" if source == chosen.event else "not sent"
        lines.append(f"  {source.strip():<{width}}  -- {why}")
    holds = [c.name for c in run.layout.columns if not c.source.startswith("\x00")]
    if run.layout.by_role("automation_id") is not None and "automation_id" not in holds:
        holds.append("automation_id")
    lines.append(f"Bodies:  {', '.join(holds)} (empty cells left out)")
    if chosen.key:
        lines.append(f"Key:     an event is new when {', '.join(chosen.key)} is (--key)")
    valid = counts.get(Status.VALID.value, 0)
    lines.append(
        f"Rows:    {sum(counts.values())}: {valid} to send, {counts.get(Status.INVALID.value, 0)} invalid, "
        f"{reasons[SkipReason.DUPLICATE]} duplicate, {reasons[SkipReason.ALREADY_SENT]} already sent, "
        f"{reasons[SkipReason.CHANGED_CONTACT]} changed since sent to their contact, "
        f"{counts.get(Status.UNKNOWN.value, 0)} unknown from an earlier run"
        + (f", {reasons[SkipReason.HIDDEN]} hidden" if reasons[SkipReason.HIDDEN] else "")
    )
    if result.per_event:
        shown = ", ".join(f"{e} {n}" for e, n in sorted(result.per_event.items()))
        lines.append(f"Events:  {shown}")
    if valid:
        lines.append(
            f"Flows:   {result.without_automation_id} of {valid} to send have no automation_id"
        )
    lines.extend(_invalid_reasons(invalid))
    lines.extend(_warnings(sheet, options, run, result, reasons))
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
        d = options.delivery
        lines.append(f"Sending: {sending_plan(valid, d.rate, d.daily_quota, d.max_events)}")
    lines.extend(_proposal(path, values))
    return "\n".join(lines)


def _invalid_reasons(invalid: list[Outcome], top: int = 5) -> list[str]:
    """The commonest reasons rows are invalid (values left out), with example rows."""
    rows: dict[str, list[int]] = {}
    for outcome in invalid:
        for reason in outcome.error.split("; "):
            rows.setdefault(_QUOTED.sub('"…"', reason), []).append(outcome.row)
    ranked = sorted(rows.items(), key=lambda item: (-len(item[1]), item[1][0]))
    lines = ["Invalid:"] if ranked else []
    for reason, where in ranked[:top]:
        examples = ", ".join(str(r) for r in where[:3]) + (", ..." if len(where) > 3 else "")
        lines.append(f"  {len(where)} x {reason} (rows {examples})")
    if len(ranked) > top:
        lines.append(f"  ... and {len(ranked) - top} other reasons (see the report of --dry-run)")
    return lines


@dataclass(frozen=True)
class _Sheet:
    """What inspect looks at in the file itself, besides the dry run."""

    header_row: int
    decimal_comma: bool
    sample: pd.DataFrame | None  # the first rows, for type suggestions
    hides: str  # "hides 2 rows (3, 5) and column ..." or ""
    hidden_unknown: str  # the format when hidden rows cannot be told in it, else ""
    assumed: bool = False  # no --hidden given: planned with skip


def _look(path: Path, options: ImportOptions) -> _Sheet:
    r = options.reading
    with open_table(
        path, sheet=r.sheet, encoding=r.encoding, delimiter=r.delimiter, header_row=r.header_row
    ) as table:
        hides = describe_hidden(table) if table.hidden_rows or table.hidden_columns else ""
        d = table.detected
        shown = hidden_policy(table, "skip")  # type suggestions from what is sent by default
        return _Sheet(
            header_row=d.header_row,
            decimal_comma=d.delimiter == ";",
            sample=next(iter(shown.chunks(500)), None),
            hides=hides,
            hidden_unknown=d.format if d.hidden_unknown else "",
        )


def _warnings(
    sheet: _Sheet,
    options: ImportOptions,
    run: Import,
    result: RunResult,
    reasons: Counter[SkipReason],
) -> list[str]:
    found: list[str] = []
    changed = reasons[SkipReason.CHANGED_CONTACT]
    if changed:
        found.append(
            f"{changed} row(s) changed since their contact received this event and are held "
            "back: --key COLUMN says what makes an event new (--key email: once per contact), "
            "--resend-changed sends them"
        )
    if result.national_phones:
        found.append(
            f"{result.national_phones} phone(s) look national (no country code) and would go out "
            "as written: --default-country CC, or --country-column COLUMN for each row's own"
        )
    assert run.layout is not None
    if sheet.hides:
        choice = options.reading.hidden
        if choice == "include":
            found.append(f"the sheet {sheet.hides}: --hidden include sends them")
        elif not sheet.assumed:
            found.append(
                f"the sheet {sheet.hides}: --hidden skip leaves them out (each hidden row is "
                "reported as skipped); --hidden include sends them"
            )
        else:
            found.append(
                f"the sheet {sheet.hides}: an import stops until told; planned and proposed "
                "below with --hidden skip (only what the sheet shows); --hidden include sends "
                "them too"
            )
    if sheet.hidden_unknown:
        found.append(
            f"hidden rows and columns cannot be told in an .{sheet.hidden_unknown} file: every "
            "row and column is read and sent; save it as .xlsx to have hidden ones found"
        )
    header_row, decimal_comma, sample = sheet.header_row, sheet.decimal_comma, sheet.sample
    if header_row > 1:
        found.append(f"the header is row {header_row}, not row 1 (rows above it are not read)")
    for c in run.layout.variables:
        if c.type != "string" or sample is None or c.source not in sample.columns:
            continue
        kind = suggest_type(sample[c.source], decimal_comma)
        if kind:
            what = "dates" if kind == "date" else "numbers"
            found.append(
                f'column "{c.source.strip()}" looks like {what} but goes out as text: '
                f'--type "{c.name}={kind}" sends it as {"a date" if kind == "date" else kind}'
            )
    return ["Warnings:", *(f"  {w}" for w in found)] if found else []


def _proposal(path: Path, values: dict[str, Any]) -> list[str]:
    """The command line and the TOML lines that run this import as inspected."""
    args = ["bulk-events", "import", str(path)]
    toml = [f"input = {_toml(str(path))}"]
    tables: list[str] = []
    credentials = [f"{k} = {_toml(v)}" for k, v in values.items() if k.endswith("_env")]
    if credentials:
        tables += ["[credentials]", *credentials]
    for key, value in values.items():
        if key in _NOT_PROPOSED or key.endswith("_env") or value is None or value == ():
            continue
        if key == "event" and value == "(none)":
            continue
        flag = "--" + key.replace("_", "-")
        if key in ("event_column", "country_column") and isinstance(value, str):
            value = visible_name(value)  # column names as they are printed and matched
        if isinstance(value, dict):
            option = "--type" if key == "types" else "--map"
            value = {visible_name(k): visible_name(v) for k, v in value.items()}
            for k, v in value.items():
                args += [option, f"{k}={v}"]
            tables += [f"[{key}]", *(f"{_toml(k)} = {_toml(v)}" for k, v in value.items())]
        elif isinstance(value, bool):
            if value:
                args.append(flag)
                toml.append(f"{key} = true")
        elif isinstance(value, list | tuple):
            names = [visible_name(str(v)) for v in value]
            if key == "columns":
                args += [flag, ",".join(names)]
            else:
                for v in names:
                    args += [flag, v]
            toml.append(f"{key} = [{', '.join(_toml(v) for v in names)}]")
        else:
            args += [flag, str(value)]
            toml.append(f"{key} = {value if isinstance(value, int | float) else _toml(str(value))}")
    if values.get("url"):
        args.insert(0, "SENDPULSE_EVENT_URL=...")  # a credential: never on the command line
    return [
        "To run it:",
        "  " + shlex.join(args).replace("'SENDPULSE_EVENT_URL=...'", "SENDPULSE_EVENT_URL=..."),
        "Or in a TOML file (--config):",
    ] + [f"  {line}" for line in toml + tables]


# Secrets (an event URL, client credentials) and what inspect itself sets are never proposed.
_NOT_PROPOSED = frozenset({"dry_run", "sandbox", "report", "url", "client_id", "client_secret"})


def _toml(text: str) -> str:
    return orjson.dumps(text).decode()  # a JSON string is a TOML basic string
