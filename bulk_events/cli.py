"""The command line: options in, one library call, an exit code out.

Exit codes (also in the README):
  0    every row valid / sent / skipped
  1    some row invalid, failed, unknown or pending
  2    the input or options cannot be used (bad file, missing column, bad credentials, journal busy)
  74   the journal or the report could not be written mid-run (full disk, journal deleted)
  75   the service is unreachable, failing or over quota: nothing is lost, run again later
  77   the credentials stopped working mid-run
  130  stopped by Ctrl-C (SIGINT); 143 stopped by SIGTERM: the report and journal are complete
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import redact
from .errors import EXIT_INPUT, BulkEventsError, UsageError
from .events import Detected, Event, Finished, Progress, Recovered, Stopping, Waiting
from .logs import setup_logging
from .outcome import Status

if TYPE_CHECKING:
    from .importer import RunResult

EXIT_INTERNAL = 70

_STATUS_ORDER = [s.value for s in Status]


def _fail(message: str, code: int) -> None:
    click.echo(f"bulk-events: error: {redact.redact(message)}", err=True)
    sys.exit(code)


class _Renderer:
    """Shows a run's events on stderr: what was detected, the progress bar, stops and waits."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress  # on a terminal: announce at the start, show a bar
        self.announced = False
        self._bar: Any = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            if self._bar is not None:
                self._bar.update(1)
        elif isinstance(event, Detected):
            if self.progress:
                click.echo(
                    f"bulk-events: reading {event.input_name}: {event.description}", err=True
                )
                self.announced = True
                from tqdm import tqdm

                self._bar = tqdm(
                    total=event.row_estimate,
                    unit="row",
                    file=sys.stderr,
                    dynamic_ncols=True,
                    smoothing=0.1,
                )
        elif isinstance(event, Recovered):
            click.echo(
                f"bulk-events: {event.rows} row(s) were in flight when an earlier run stopped; "
                "they are unknown and not resent (--retry-unknown resends them)",
                err=True,
            )
        elif isinstance(event, Waiting):
            click.echo(f"bulk-events: {event.reason}; waiting", err=True)
        elif isinstance(event, Stopping):
            doing = "finishing the requests in flight, then " if event.in_flight else ""
            click.echo(
                f"bulk-events: {event.cause}: {doing}writing the report; rows not attempted are "
                "pending (press Ctrl-C again to stop at once)",
                err=True,
            )
        elif isinstance(event, Finished):
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.total = self._bar.n  # the estimate counted blank rows too
            self._bar.close()
            self._bar = None


def _summary(result: RunResult, dry_run: bool, announced: bool) -> str:
    parts = [f"{result.counts[s]} {s}" for s in _STATUS_ORDER if result.counts.get(s)]
    rows = sum(result.counts.values())
    line = f"bulk-events: {rows} row{'s' if rows != 1 else ''}: {', '.join(parts) or 'none'}"
    if not dry_run:
        line += f" in {result.elapsed:.1f} s"
        if result.requests:
            rate = f"{result.rate:.1f} requests/s, " if result.rate else ""
            line += f" ({rate}{result.requests} request{'s' if result.requests != 1 else ''})"
    lines = [line]
    if result.detected and not announced:
        lines.insert(0, f"bulk-events: read {result.input_name}: {result.detected}")
    if result.stopped:
        lines.append(f"bulk-events: {result.stopped}")
    lines.append(f"report: {result.report_path or 'not written'}")
    if result.sandbox_record:
        lines.append(f"sandbox: what arrived is in {result.sandbox_record}")
    if result.journal_path:
        lines.append(f"journal: {result.journal_path}")
    return "\n".join(lines)


class _Group(click.Group):
    def main(self, *args: Any, **kwargs: Any) -> Any:  # one-line errors for everything we raise
        try:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        except click.exceptions.Abort:
            click.echo("bulk-events: aborted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            exc.show()
            sys.exit(EXIT_INPUT if exc.exit_code in (1, 2) else exc.exit_code)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except BulkEventsError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            click.echo("bulk-events: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # a bug: one line, and the traceback only when asked for
            logging.getLogger("bulk_events").debug("internal error", exc_info=True)
            _fail(
                f"internal error: {type(exc).__name__}: {exc} (run with -vv for details)",
                EXIT_INTERNAL,
            )


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="bulk-events")
def main() -> None:
    """Turn a spreadsheet of contacts into SendPulse Automation 360 events.

    \b
    Rehearse first, then send:
      bulk-events inspect customers.xlsx --event registration
      bulk-events import customers.xlsx --event registration --sandbox
      SENDPULSE_CLIENT_ID=... SENDPULSE_CLIENT_SECRET=... \\
        bulk-events import customers.xlsx --event registration
    """


def _common_input_options(f: Any) -> Any:
    options = [
        click.option(
            "--event",
            metavar="NAME",
            help="Event name: send through the REST API (credentials from the environment).",
        ),
        click.option(
            "--url",
            metavar="EVENT_URL",
            help="The event's secret URL (or set SENDPULSE_EVENT_URL, which keeps it out of the process list).",
        ),
        click.option(
            "--sheet",
            metavar="NAME|N",
            help="Excel sheet by name or position counted from 1 (default: the first).",
        ),
        click.option(
            "--encoding",
            metavar="ENC",
            help="CSV encoding (default: detected; utf-8, cp1251, utf-16, ...).",
        ),
        click.option(
            "--delimiter", metavar="CHAR", help="CSV delimiter (default: detected among , ; tab |)."
        ),
        click.option(
            "--type",
            "types",
            metavar="COLUMN=TYPE",
            multiple=True,
            help="Type of a variable: string, integer, number, date, boolean. Repeatable.",
        ),
        click.option(
            "--map",
            "map",
            metavar="COLUMN=NAME",
            multiple=True,
            help='Use a column as NAME: --map "E-mail=email", --map "Телефон=phone". Repeatable.',
        ),
        click.option(
            "--automation-id",
            type=int,
            metavar="N",
            help="automation_id for rows without one (the flow's number).",
        ),
        click.option(
            "--date-format", metavar="FMT", help="How to read ambiguous dates, e.g. %d/%m/%Y."
        ),
        click.option(
            "--default-country",
            metavar="CC",
            help="Turn national phone numbers into international ones (e.g. UA).",
        ),
        click.option(
            "--allow-duplicates/--no-allow-duplicates",
            default=None,
            help="Send rows with identical events each time they occur.",
        ),
        click.option(
            "--state",
            metavar="PATH",
            help="The run journal (default: per user, one per destination).",
        ),
        click.option(
            "--rate",
            type=float,
            metavar="R",
            help="Events per second at most (default 10; 0 = no limit).",
        ),
        click.option(
            "--config",
            "config_path",
            metavar="FILE",
            help="A TOML file with any of these options (for cron).",
        ),
        click.option(
            "--form/--no-form",
            default=None,
            help="With --url: send form fields instead of JSON.",
        ),
        click.option(
            "--api-url",
            metavar="URL",
            help="REST API base (default $SENDPULSE_API_URL or https://api.sendpulse.com).",
        ),
        click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv for debug)."),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            help="Log line format.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _gather(file: str | None, config_path: str | None, **cli: Any) -> tuple[str, dict[str, Any]]:
    """Merge the config file and the command line (the command line wins)."""
    from .config import load_config
    from .schema import parse_assignments

    values: dict[str, Any] = load_config(config_path) if config_path else {}
    if cli.get("url"):
        redact.register_url(cli["url"])
    for key, value in cli.items():
        if key in ("types", "map"):
            if value:
                merged = dict(values.get(key, {}))
                merged.update(parse_assignments(value, "--type" if key == "types" else "--map"))
                values[key] = merged
        elif value is not None:
            values[key] = value
    if not values.get("event") and not values.get("url") and os.environ.get("SENDPULSE_EVENT_URL"):
        values["url"] = os.environ["SENDPULSE_EVENT_URL"]
    if values.get("url"):
        redact.register_url(values["url"])
    path = file or values.pop("input", None)
    values.pop("input", None)
    if not path:
        raise UsageError(
            "name the input file (bulk-events import FILE ...) or set input in the config file"
        )
    return path, values


@main.command("import")
@click.argument("file", required=False)
@_common_input_options
@click.option(
    "--dry-run/--no-dry-run",
    default=None,
    help="Read, validate and report; send nothing (no account needed).",
)
@click.option(
    "--sandbox",
    is_flag=True,
    default=None,
    help="Send to a local imitation of SendPulse: a full rehearsal, no account.",
)
@click.option("--report", metavar="PATH", help="Per-row report: .csv (default), .xlsx or .jsonl.")
@click.option(
    "--concurrency", type=int, metavar="N", help="Requests in flight at most (default 10)."
)
@click.option(
    "--max-attempts",
    type=int,
    metavar="N",
    help="Attempts per row for what is safe to retry (default 5).",
)
@click.option(
    "--retry-unknown/--no-retry-unknown",
    default=None,
    help="Resend rows that were sent before with no answer (risks a duplicate).",
)
@click.option(
    "--only-failed",
    is_flag=True,
    default=None,
    help="Send only the rows that failed in earlier runs.",
)
@click.option(
    "--fresh",
    is_flag=True,
    default=None,
    help="Start over: forget which rows were sent (asks first; --yes for scripts).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (with --fresh).")
@click.option(
    "--wait/--no-wait",
    default=None,
    help="If another run holds the journal, wait for it instead of refusing.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, only the summary.")
def import_command(
    file: str | None, verbose: int, log_format: str, quiet: bool, yes: bool, **cli: Any
) -> None:
    """Send one event per row of FILE (CSV, XLSX or XLSM).

    \b
    Examples:
      bulk-events import customers.xlsx --event registration --dry-run
      bulk-events import customers.xlsx --event registration --sandbox
      bulk-events import orders.csv --event purchase --type total=number --type date=date
      bulk-events import --config nightly.toml
      SENDPULSE_EVENT_URL=https://events.sendpulse.com/events/id/... bulk-events import leads.csv

    Re-running the same command continues where the last run stopped: rows already sent are
    skipped, failed and pending rows are sent.
    """
    from .importer import run_import, run_sync
    from .options import ImportOptions

    setup_logging(verbose, log_format, quiet)
    path, values = _gather(file, cli.pop("config_path"), **cli)
    if values.get("fresh") and not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                "--fresh forgets which rows were already sent; add --yes to confirm in a script"
            )
        click.confirm(
            "--fresh forgets which rows were already sent, so they may be sent again. Continue?",
            abort=True,
            err=True,
        )
    options = ImportOptions.from_settings(**values)
    # On a terminal, say what was detected before the progress bar; in cron, in the summary.
    renderer = _Renderer(progress=not quiet and sys.stderr.isatty())
    if options.target.url and cli.get("url"):
        click.echo(
            "bulk-events: note: the event URL is a credential; set SENDPULSE_EVENT_URL to keep it out of the process list",
            err=True,
        )
    try:
        result = run_sync(run_import(path, options, on_event=renderer))
    finally:
        renderer.close()
    click.echo(redact.redact(_summary(result, options.dry_run, renderer.announced)), err=True)
    sys.exit(result.exit_code)


@main.command("inspect")
@click.argument("file", required=False)
@_common_input_options
def inspect_command(file: str | None, verbose: int, log_format: str, **cli: Any) -> None:
    """Show what an import of FILE would do, without sending anything.

    \b
    What was detected (encoding, delimiter, sheet, columns and types), how many rows are valid,
    invalid, duplicate or already sent, three sample events, and how long sending would take.

    \b
    Example:
      bulk-events inspect customers.csv --event registration --type signup=date
    """
    from .inspect import inspect_file

    setup_logging(verbose, log_format)
    path, values = _gather(file, cli.pop("config_path"), **cli)
    if not values.get("event") and not values.get("url"):
        values["event"] = "(none)"
    click.echo(redact.redact(inspect_file(Path(path), values)))


if __name__ == "__main__":  # pragma: no cover
    main()
