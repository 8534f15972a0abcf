"""bulk-events: turn a spreadsheet of contacts into SendPulse Automation 360 events.

>>> import bulk_events
>>> result = bulk_events.import_file("customers.xlsx", event="registration", dry_run=True)  # doctest: +SKIP
>>> result.counts, result.report_path, result.exit_code  # doctest: +SKIP

Each row becomes one event; the per-row outcomes are in the report. See ``ImportOptions`` for every
option (the same as the command line's).
"""

from .errors import (
    AuthRejected,
    BulkEventsError,
    ColumnError,
    ConfigError,
    CredentialsError,
    DeliveryError,
    FileFormatError,
    InputError,
    JournalBusyError,
    ServiceUnavailable,
    UsageError,
)
from .outcome import Outcome, Status

__version__ = "0.1.0"

_PIPELINE = ("Import", "ImportOptions", "RunResult", "import_file", "run_import")


def __getattr__(name: str) -> object:
    # The pipeline pulls in pandas, pandera and aiohttp: import it on first use, so that
    # `bulk-events --help` and `import bulk_events.errors` stay quick.
    if name in _PIPELINE:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'bulk_events' has no attribute {name!r}")


__all__ = [
    "AuthRejected",
    "BulkEventsError",
    "ColumnError",
    "ConfigError",
    "CredentialsError",
    "DeliveryError",
    "FileFormatError",
    "Import",
    "ImportOptions",
    "InputError",
    "JournalBusyError",
    "Outcome",
    "RunResult",
    "ServiceUnavailable",
    "Status",
    "UsageError",
    "__version__",
    "import_file",
    "run_import",
]
