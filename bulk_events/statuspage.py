"""`bulk-events status --html PAGE`: one self-contained HTML file (inline CSS and SVG, nothing
fetched) to open in a browser or mail to someone: the achieved rate over time, the outcomes by
status and by event, the most frequent errors with example rows, recent runs and the next step.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

from .errors import UsageError
from .outcome import Status
from .private import create_private
from .status import RunRecord, StatusReport, duration

COLOURS = {
    "sent": "#2e7d32",
    "valid": "#66bb6a",
    "failed": "#c62828",
    "invalid": "#e57373",
    "unknown": "#f9a825",
    "skipped": "#9e9e9e",
    "pending": "#1e88e5",
}
_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; max-width: 980px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.muted { color: #666; } .next { background: #e3f2fd; padding: 10px 14px; border-radius: 6px; }
table { border-collapse: collapse; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee;
text-align: left; vertical-align: top; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
svg text { font: 11px system-ui, sans-serif; fill: #555; }
"""


def _rate_chart(run: RunRecord) -> str:
    """Events sent per second, one bar per bucket of the run's series."""
    series = [int(n) for n in run.progress.get("series", [])]
    bucket = float(run.progress.get("bucket", 10.0))
    width, height, left, bottom = 900, 220, 44, 24
    rates = [n / bucket for n in series]
    top = max([*rates, 0.0]) or 1.0
    plot_w, plot_h = width - left - 10, height - bottom - 10
    parts = [
        f'<svg id="rate-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="events sent per second over time">',
        f'<line x1="{left}" y1="{10 + plot_h}" x2="{width - 10}" y2="{10 + plot_h}" '
        'stroke="#999"/>',
        f'<line x1="{left}" y1="10" x2="{left}" y2="{10 + plot_h}" stroke="#999"/>',
        f'<text x="{left - 6}" y="14" text-anchor="end">{top:.1f}/s</text>',
        f'<text x="{left - 6}" y="{10 + plot_h}" text-anchor="end">0</text>',
    ]
    if rates:
        step = plot_w / len(rates)
        for i, r in enumerate(rates):
            h = plot_h * r / top
            parts.append(
                f'<rect class="bar" x="{left + i * step:.1f}" y="{10 + plot_h - h:.1f}" '
                f'width="{max(step - 1, 0.5):.1f}" height="{h:.1f}" fill="#1e88e5">'
                f"<title>{duration(i * bucket)}: {r:.1f} events/s</title></rect>"
            )
        parts.append(
            f'<text x="{width - 10}" y="{height - 6}" text-anchor="end">'
            f"{duration(len(rates) * bucket)} ({duration(bucket)} per bar)</text>"
        )
    else:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{10 + plot_h / 2}" text-anchor="middle">'
            "nothing sent yet</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _outcome_bar(counts: dict[str, int]) -> str:
    total = sum(counts.values()) or 1
    width, x = 900, 0.0
    parts = [
        f'<svg id="outcome-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="28" '
        f'viewBox="0 0 {width} 28" role="img" aria-label="outcomes by status">'
    ]
    for status, n in counts.items():
        if not n:
            continue
        w = width * n / total
        parts.append(
            f'<rect class="outcome" data-status="{status}" x="{x:.1f}" y="0" width="{w:.1f}" '
            f'height="28" fill="{COLOURS.get(status, "#777")}"><title>{status}: {n}</title></rect>'
        )
        x += w
    parts.append("</svg>")
    return "".join(parts)


def render_page(report: StatusReport, runs: list[RunRecord] | None = None) -> str:
    """The page as one HTML string."""
    run = report.run
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>bulk-events status</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    if run is None:
        out.append("<h1>bulk-events: no run recorded yet</h1>")
    else:
        state = {"running": "running", "finished": "finished"}.get(run.state, run.state)
        out.append(
            f"<h1>bulk-events: {escape(run.input)} <span class='muted'>({state})</span></h1>"
        )
        facts = [f"target {run.target}", f"started {run.started_at}", f"pid {run.pid}"]
        if run.finished_at:
            facts.append(f"finished {run.finished_at}, exit {run.exit_code}")
        if run.state == "running":
            eta = run.eta_seconds
            facts.append(f"{run.rate:.1f} events/s")
            facts.append(
                f"about {duration(eta)} to go" if eta is not None else "time to go unknown"
            )
        out.append(f"<p class='muted'>{escape(' · '.join(facts))}</p>")
        if run.paused:
            out.append(
                f"<p class='next'>paused until {escape(str(run.paused_until))}: "
                f"{escape(str(run.pause_reason))}</p>"
            )
        if run.stopped:
            out.append(f"<p>stopped: {escape(run.stopped)}</p>")
        counts = {s.value: run.counts.get(s.value, 0) for s in Status}
        counts["pending"] = run.pending
        total = run.of_total
        out.append(f"<h2>Outcomes{'' if total is None else f' of {total} rows'}</h2>")
        out.append(_outcome_bar(counts))
        out.append("<table id='counts'><tr><th>status</th><th>rows</th></tr>")
        for status, n in counts.items():
            if n:
                out.append(
                    f"<tr><td><span class='swatch' style='background:{COLOURS[status]}'></span>"
                    f"{status}</td><td class='n' data-status='{status}'>{n}</td></tr>"
                )
        out.append("</table>")
        events = run.progress.get("events") or {}
        if events:
            out.append("<h2>By event</h2><table id='events'><tr><th>event</th>")
            shown = [s for s in counts if any(int(c.get(s, 0)) for c in events.values())]
            out.append("".join(f"<th>{s}</th>" for s in shown) + "</tr>")
            for name, c in events.items():
                cells = "".join(f"<td class='n'>{int(c.get(s, 0))}</td>" for s in shown)
                out.append(f"<tr><td>{escape(str(name))}</td>{cells}</tr>")
            out.append("</table>")
        out.append("<h2>Rate over time</h2>")
        out.append(_rate_chart(run))
        errors = run.progress.get("errors") or []
        out.append("<h2>Most frequent errors</h2>")
        if errors:
            out.append(
                "<table id='errors'><tr><th>rows</th><th>error</th><th>for example</th></tr>"
            )
            for e in errors:
                rows = ", ".join(f"row {r}" for r in e.get("rows", []))
                out.append(
                    f"<tr><td class='n'>{int(e.get('count', 0))}</td>"
                    f"<td>{escape(str(e.get('error', '')))}</td><td>{escape(rows)}</td></tr>"
                )
            out.append("</table>")
        else:
            out.append("<p class='muted'>none</p>")
    out.append(f"<h2>Next step</h2><p class='next' id='next'>{escape(report.next_step)}</p>")
    if runs:
        out.append("<h2>Recent runs</h2><table id='history'><tr><th>#</th><th>started</th>")
        out.append("<th>finished</th><th>input</th><th>exit</th><th>rows</th></tr>")
        for r in runs:
            c = ", ".join(f"{n} {s}" for s, n in r.counts.items() if n)
            out.append(
                f"<tr><td>{r.id}</td><td>{escape(r.started_at)}</td>"
                f"<td>{escape(r.finished_at or r.state)}</td><td>{escape(r.input)}</td>"
                f"<td>{'' if r.exit_code is None else r.exit_code}</td><td>{escape(c)}</td></tr>"
            )
        out.append("</table>")
    out.append(f"<p class='muted'>journal {escape(str(report.journal))}</p></body></html>")
    return "\n".join(out)


def write_page(path: Path, report: StatusReport, runs: list[RunRecord] | None = None) -> Path:
    """Write the page (private: it names files and rows), replacing any earlier one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        with create_private(tmp, exclusive=True) as f:
            f.write(render_page(report, runs).encode("utf-8"))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"--html {path}: cannot write the page: {exc.strerror}") from None
    return path


__all__ = ["render_page", "write_page"]
