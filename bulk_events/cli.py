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

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from . import collector, redact
from .console import Renderer, summary
from .errors import EXIT_INPUT, BulkEventsError, UsageError
from .logs import setup_logging
from .malloc import use_one_arena

EXIT_INTERNAL = 70


def _fail(message: str, code: int) -> None:
    click.echo(f"bulk-events: error: {redact.redact(message)}", err=True)
    sys.exit(code)


class _Group(click.Group):
    def main(self, *args: Any, **kwargs: Any) -> Any:  # one-line errors for everything we raise
        use_one_arena()  # before any thread starts (see bulk_events.malloc)
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
        # What of a sheet is read: rows and columns it hides, and where its header is.
        click.option(
            "--hidden",
            type=click.Choice(["skip", "include"]),
            default=None,
            help="Rows and columns the sheet hides (by hand or a filter): skip them (reported "
            "as skipped) or include them. A sheet that hides any is refused until told.",
        ),
        click.option(
            "--header-row",
            type=int,
            metavar="N",
            help="The sheet row that holds the header (default: row 1, or the row below a title).",
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
            "--country-column",
            metavar="COLUMN",
            help="The column giving each row's country (UA, Poland, ...) for national phones.",
        ),
        click.option(
            "--exclude",
            metavar="COLUMN",
            multiple=True,
            help="Leave a column out of every body. Repeatable.",
        ),
        click.option(
            "--columns",
            metavar="A,B,...",
            multiple=True,
            help="Send only these variables (besides email, phone and automation_id).",
        ),
        click.option(
            "--event-column",
            metavar="COLUMN",
            help="Each row goes to the REST API event its cell in COLUMN names.",
        ),
        click.option(
            "--key",
            metavar="COLUMN",
            multiple=True,
            help='What identifies an event across runs: --key email (once per contact), --key "Order ID". Repeatable.',
        ),
        click.option(
            "--resend-changed/--no-resend-changed",
            default=None,
            help="Send rows of contacts who got this event before with other cells.",
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
        # Delivery as the service allows it: form encodings, quotas, a cap per run.
        click.option(
            "--form",
            is_flag=False,
            flag_value="multipart",
            default=None,
            type=click.Choice(["multipart", "urlencoded", "json"]),
            help="With --url: send form fields instead of JSON: multipart/form-data (--form "
            "alone) or --form urlencoded (x-www-form-urlencoded); --form json turns it off.",
        ),
        click.option(
            "--daily-quota",
            type=int,
            metavar="N",
            help="Events your SendPulse plan takes per day: the plan says on how many days.",
        ),
        click.option(
            "--max-events",
            type=int,
            metavar="N",
            help="Send at most N events in this run; the rest stay pending (exit 75).",
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


def _gather(
    file: str | None, config_path: str | None, *, need_input: bool = True, **cli: Any
) -> tuple[str, dict[str, Any]]:
    """Merge the config file and the command line (the command line wins)."""
    from .config import load_config
    from .layout import parse_assignments

    values: dict[str, Any] = load_config(config_path) if config_path else {}
    if cli.get("url"):
        redact.register_url(cli["url"])
    for key, value in cli.items():
        if key in ("types", "map"):
            if value:
                merged = dict(values.get(key, {}))
                merged.update(parse_assignments(value, "--type" if key == "types" else "--map"))
                values[key] = merged
        elif key in ("exclude", "columns", "key"):
            if value:  # the command line's list replaces the file's
                values[key] = list(value)
        elif value is not None:
            values[key] = value
    if not values.get("event") and not values.get("url") and os.environ.get("SENDPULSE_EVENT_URL"):
        values["url"] = os.environ["SENDPULSE_EVENT_URL"]
    if values.get("url"):
        redact.register_url(values["url"])
    path = file or values.pop("input", None)
    values.pop("input", None)
    if not path and not need_input:
        return "", values
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
    "--errors",
    metavar="PATH",
    help="Also write only the rows to fix (invalid, failed), to correct and feed back in (.csv or .xlsx).",
)
@click.option(
    "--max-invalid",
    metavar="N|N%",
    help="Up to N (or N%) invalid rows still exit 0; they are reported all the same.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the summary as one JSON object on stdout."
)
@click.option(
    "--concurrency", type=int, metavar="N", help="Requests in flight at most (default 10)."
)
@click.option(
    "--grace",
    type=float,
    metavar="SECONDS",
    help="After Ctrl-C or SIGTERM, how long to let requests in flight finish (default 30).",
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
    file: str | None,
    verbose: int,
    log_format: str,
    quiet: bool,
    yes: bool,
    as_json: bool,
    **cli: Any,
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
    # The collector is settled (see bulk_events.collector) once the run says what it read: its
    # imports are made by then, pandera's too if this process checks the rows itself.
    renderer = Renderer(
        progress=not quiet and sys.stderr.isatty(),
        dry_run=options.dry_run,
        on_start=collector.settle,
    )
    if options.target.url and cli.get("url"):
        click.echo(
            "bulk-events: note: the event URL is a credential; set SENDPULSE_EVENT_URL to keep it out of the process list",
            err=True,
        )
    try:
        result = run_sync(run_import(path, options, on_event=renderer))
    finally:
        renderer.close()
    plan = ""
    if options.dry_run and result.counts.get("valid"):
        from .inspect import sending_plan

        d = options.delivery
        plan = sending_plan(result.counts["valid"], d.rate, d.daily_quota, d.max_events)
    click.echo(
        redact.redact(summary(result, options.dry_run, renderer.announced, plan)), err=True
    )
    if as_json:
        click.echo(redact.redact(json.dumps(result.to_dict(), ensure_ascii=False)))
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
    if not values.get("event") and not values.get("url") and not values.get("event_column"):
        values["event"] = "(none)"
    click.echo(redact.redact(inspect_file(Path(path), values)))


def _journal_path(values: dict[str, Any]) -> Path:
    """The journal a run with these settings uses: --state, or the target's default one."""
    if values.get("state"):
        return Path(values["state"])
    from .journal import default_journal_path
    from .target import Target

    if not values.get("event") and not values.get("url") and not values.get("event_column"):
        raise UsageError(
            "name the journal: --state PATH, or the run's target (--event NAME or --url), "
            "or --config FILE"
        )
    fields = ("event", "url", "form", "sandbox", "api_url", "event_column")
    target = Target(**{k: values[k] for k in fields if values.get(k) is not None})
    return default_journal_path(target.journal_identity, target.journal_name)


def _status_options(f: Any) -> Any:
    f = click.option(
        "--sandbox", is_flag=True, default=None, help="The journal of --sandbox rehearsals."
    )(f)
    f = click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")(f)
    return _common_input_options(f)


@main.command("status")
@click.argument("file", required=False)
@_status_options
@click.option(
    "--html",
    "html",
    metavar="PAGE",
    help="Also write a self-contained HTML page: rate over time, outcomes, errors, next step.",
)
def status_command(
    file: str | None, verbose: int, log_format: str, as_json: bool, html: str | None, **cli: Any
) -> None:
    """How far the latest run is: running or not, rows sent / failed / unknown / pending of the
    total, rate, time to go, a pause, and the next step. Reads the journal without disturbing a
    run that holds it. Takes the same target options as import (or --state / --config).

    \b
    Examples:
      bulk-events status --event registration
      bulk-events status --config nightly.toml --json
      bulk-events status --state state/nightly.sqlite --html status.html
    """
    from .status import read_runs, read_status, render_status

    setup_logging(verbose, log_format)
    _, values = _gather(file, cli.pop("config_path"), need_input=False, **cli)
    journal = _journal_path(values)
    report = read_status(journal)
    if html:
        from .statuspage import write_page

        write_page(Path(html), report, read_runs(journal, limit=20))
    if as_json:
        click.echo(redact.redact(json.dumps(report.to_dict(), ensure_ascii=False)))
    else:
        click.echo(redact.redact(render_status(report)))
        if html:
            click.echo(f"page: {html}")


@main.command("history")
@click.argument("file", required=False)
@_status_options
@click.option("--limit", type=int, default=50, show_default=True, help="Show at most N runs.")
def history_command(
    file: str | None, verbose: int, log_format: str, as_json: bool, limit: int, **cli: Any
) -> None:
    """Past runs from the journal, newest first: start, end, input, counts, exit code, why it
    stopped.

    \b
    Examples:
      bulk-events history --event registration
      bulk-events history --state state/nightly.sqlite --json
    """
    from .status import read_runs, render_history

    setup_logging(verbose, log_format)
    _, values = _gather(file, cli.pop("config_path"), need_input=False, **cli)
    runs = read_runs(_journal_path(values), limit=limit)
    if as_json:
        click.echo(redact.redact(json.dumps([r.to_dict() for r in runs], ensure_ascii=False)))
    else:
        click.echo(redact.redact(render_history(runs)))


if __name__ == "__main__":  # pragma: no cover
    main()
