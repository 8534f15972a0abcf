"""The options of one import, in frozen groups checked when they are made.

Every setting has one name, the same on the command line (``--map``), in a TOML config file
(``[map]``) and in Python (``map=``)::

    options = ImportOptions.from_settings(event="registration", map={"E-mail": "email"}, rate=5)
    options.delivery.rate  # 5.0

:class:`Settings` lists them all, typed, for ``import_file(path, **settings)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict, Unpack

from .errors import UsageError
from .reader.header import visible_name
from .target import Credentials, Target
from .transport.http import Timeouts

CHUNK_ROWS = 20_000

PathLike = str | os.PathLike[str]


class Settings(TypedDict, total=False):
    """Every setting of an import, by the name the command line and config files use."""

    # target
    event: str | None
    url: str | None
    form: bool | str
    sandbox: bool
    api_url: str | None
    client_id: str | None
    client_secret: str | None
    client_id_env: str
    client_secret_env: str
    # reading
    sheet: str | int | None
    encoding: str | None
    delimiter: str | None
    chunk_rows: int
    hidden: str | None  # "skip" or "include": what to do with rows and columns a sheet hides
    header_row: int | None
    parallel: bool | None  # check chunks in a second process (default: for large files)
    # schema
    types: Mapping[str, str]
    map: Mapping[str, str]
    automation_id: int | None
    date_format: str | None
    default_country: str | None
    country_column: str | None
    # what a body holds and what identifies an event
    exclude: list[str] | tuple[str, ...]
    columns: list[str] | tuple[str, ...] | str | None
    event_column: str | None
    key: list[str] | tuple[str, ...]
    # selection
    allow_duplicates: bool
    resend_changed: bool
    retry_unknown: bool
    only_failed: bool
    fresh: bool
    # delivery
    rate: float
    concurrency: int
    max_attempts: int
    connect_timeout: float
    read_timeout: float
    grace: float
    wait: bool
    # delivery as the service allows it: API keys, quotas, a deadline per request
    api_key: str | None
    api_key_env: str
    daily_quota: int | None
    max_events: int | None
    total_timeout: float
    # the run
    dry_run: bool
    report: PathLike | None
    errors: PathLike | None
    state: PathLike | None
    max_invalid: int | str | None


SETTINGS = frozenset(Settings.__annotations__)


@dataclass(frozen=True)
class Reading:
    """How to read the file (default: detected)."""

    sheet: str | int | None = None
    encoding: str | None = None
    delimiter: str | None = None
    chunk_rows: int = CHUNK_ROWS
    # Rows and columns a sheet hides: None refuses such a sheet; "skip" sends only what the sheet
    # shows (each hidden row reported as skipped); "include" sends everything.
    hidden: str | None = None
    header_row: int | None = None  # the sheet row of the header (default: found)
    # Validate, type and key chunks in a worker process while this one reads, checks the
    # journal and writes the report: None decides by the file's size (a few chunks at least).
    parallel: bool | None = None

    def __post_init__(self) -> None:
        if self.chunk_rows < 1:
            raise UsageError("chunk_rows must be at least 1")
        if self.hidden is not None and self.hidden not in ("skip", "include"):
            raise UsageError(f'--hidden must be "skip" or "include", not "{self.hidden}"')
        row = self.header_row
        if row is not None and (isinstance(row, bool) or not isinstance(row, int) or row < 1):
            raise UsageError(f"--header-row must be a row number from 1, not {row}")


@dataclass(frozen=True)
class Schema:
    """How to read the columns: declared types, renames, defaults."""

    types: Mapping[str, str] = field(default_factory=dict)
    map: Mapping[str, str] = field(default_factory=dict)
    automation_id: int | None = None
    date_format: str | None = None
    default_country: str | None = None
    country_column: str | None = None  # each row's country, for national phone numbers

    def __post_init__(self) -> None:
        if self.automation_id is not None and self.automation_id < 1:
            raise UsageError("--automation-id must be a positive whole number")
        if self.date_format:
            _check_date_format(self.date_format)
        if self.default_country:
            # Normalised while being made (the instance is not visible to anyone yet).
            object.__setattr__(self, "default_country", _check_country(self.default_country))


@dataclass(frozen=True)
class Body:
    """What a body holds and what makes an event new: ``--exclude``, ``--columns``,
    ``--event-column`` (each row's event), ``--key`` (the columns that identify an event)."""

    exclude: tuple[str, ...] = ()
    columns: tuple[str, ...] | None = None  # only these variables (besides the contact columns)
    event_column: str | None = None
    key: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for option, names in (
            ("--exclude", self.exclude),
            ("--columns", self.columns or ()),
            ("--key", self.key),
        ):
            if any(not n.strip() for n in names):
                raise UsageError(f"{option} takes column names; got an empty one")
        if self.columns is not None and not self.columns:
            raise UsageError("--columns takes a comma-separated list of column names")
        if self.event_column is not None and not self.event_column.strip():
            raise UsageError("--event-column takes a column name")


@dataclass(frozen=True)
class Selection:
    """Which rows a run sends."""

    allow_duplicates: bool = False
    resend_changed: bool = False  # send rows whose contact got this event before with other cells
    retry_unknown: bool = False
    only_failed: bool = False
    fresh: bool = False  # forget the journal first


@dataclass(frozen=True)
class Delivery:
    """How fast and how patiently to send."""

    rate: float = 10.0
    concurrency: int = 10
    max_attempts: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    grace: float = 30.0  # after a stop, how long requests in flight may take to finish
    wait: bool = False  # wait for another run to release the journal
    total_timeout: float = 60.0  # one request, from connecting to the whole answer
    daily_quota: int | None = None  # events the plan allows per day (for the plan in inspect)
    max_events: int | None = None  # send at most this many events in one run; the rest pending

    def __post_init__(self) -> None:
        for name in ("daily_quota", "max_events"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise UsageError(f"--{name.replace('_', '-')} must be a positive whole number")
        if self.total_timeout <= 0:
            raise UsageError("total_timeout must be a positive number of seconds")
        if self.rate < 0:
            raise UsageError(
                "--rate must be 0 (no limit) or a positive number of events per second"
            )
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if not self.grace >= 0:
            raise UsageError("--grace must be 0 or more seconds")
        if self.max_attempts < 1:
            raise UsageError("--max-attempts must be at least 1")

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts(
            connect=self.connect_timeout, read=self.read_timeout, total=self.total_timeout
        )


@dataclass(frozen=True)
class ImportOptions:
    """Everything one import needs besides the file; build it with :meth:`from_settings`."""

    target: Target
    credentials: Credentials = field(default_factory=Credentials)
    reading: Reading = field(default_factory=Reading)
    schema: Schema = field(default_factory=Schema)
    body: Body = field(default_factory=Body)
    selection: Selection = field(default_factory=Selection)
    delivery: Delivery = field(default_factory=Delivery)
    dry_run: bool = False
    report: PathLike | None = None
    errors: PathLike | None = None  # a file of only the rows to fix (invalid, failed)
    state: PathLike | None = None
    max_invalid: int | str | None = None  # invalid rows that still let the run exit 0: N or "N%"

    def __post_init__(self) -> None:
        if self.dry_run and self.target.sandbox:
            raise UsageError("--dry-run and --sandbox exclude each other")
        self.invalid_allowed(0)  # refuse a bad --max-invalid now, not at the end of a run

    def invalid_allowed(self, rows: int) -> int:
        """How many invalid rows, out of ``rows``, do not make the exit code 1 (``--max-invalid``)."""
        limit = self.max_invalid
        if limit is None:
            return 0
        text = str(limit).strip()
        percent = text.endswith("%")
        try:
            value = float(text[:-1]) if percent else int(text)
        except ValueError:
            value = -1
        if isinstance(limit, bool) or value < 0 or (percent and value > 100):
            raise UsageError(
                f'--max-invalid "{limit}": give a number of rows (5) or a percentage (0.5%)'
            )
        return int(rows * value / 100) if percent else int(value)

    @classmethod
    def from_settings(cls, **settings: Unpack[Settings]) -> ImportOptions:
        """The options from settings named as on the command line; unknown names are refused."""
        unknown = sorted(set(settings) - SETTINGS)
        if unknown:
            raise UsageError(f"unknown setting {unknown[0]!r}")
        given: dict[str, Any] = {k: v for k, v in settings.items() if v is not None}
        # Headers are read in their visible form (control characters shown escaped): a name
        # given with the characters themselves matches as well as the printed one.
        if "types" in given:
            given["types"] = {visible_name(k): v for k, v in dict(given["types"]).items()}
        if "map" in given:
            given["map"] = {visible_name(k): visible_name(v) for k, v in dict(given["map"]).items()}
        for key in ("exclude", "columns", "key"):
            if key in given:
                names = _names(given[key], commas=key == "columns")
                given[key] = tuple(visible_name(n) for n in names)
        for key in ("event_column", "country_column"):
            if isinstance(given.get(key), str):
                given[key] = visible_name(given[key])

        def pick(kind: Any) -> dict[str, Any]:
            return {k: given[k] for k in kind.__dataclass_fields__ if k in given}

        return cls(
            target=Target(**pick(Target)),
            credentials=Credentials(**pick(Credentials)),
            reading=Reading(**pick(Reading)),
            schema=Schema(**pick(Schema)),
            body=Body(**pick(Body)),
            selection=Selection(**pick(Selection)),
            delivery=Delivery(**pick(Delivery)),
            dry_run=bool(given.get("dry_run", False)),
            report=given.get("report"),
            errors=given.get("errors"),
            state=given.get("state"),
            max_invalid=given.get("max_invalid"),
        )


def _names(value: str | list[str] | tuple[str, ...], *, commas: bool) -> tuple[str, ...]:
    """Column names from a list; with ``commas``, each item may hold several (``--columns A,B``)."""
    items = [value] if isinstance(value, str) else [str(v) for v in value]
    if commas:
        items = [part for item in items for part in item.split(",")]
    return tuple(item.strip() for item in items if item.strip())


def _check_date_format(fmt: str) -> None:
    """A --date-format must read back a date it wrote: %d/%m/%Y yes, %Q or "dd.mm" no."""
    sample = datetime(2021, 5, 28)
    try:
        ok = "%" in fmt and datetime.strptime(sample.strftime(fmt), fmt).date() == sample.date()
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(
            f'--date-format "{fmt}" cannot read a whole date; use strptime codes such as %d/%m/%Y'
        )


def _check_country(code: str) -> str:
    import phonenumbers

    region = code.strip().upper()
    if phonenumbers.country_code_for_region(region) == 0:
        raise UsageError(
            f'--default-country "{code}" is not a two-letter country code such as UA, PL or US'
        )
    return region
