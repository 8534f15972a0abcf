"""bulk-events: turn a spreadsheet of contacts into SendPulse Automation 360 events.

>>> import bulk_events
>>> result = bulk_events.import_file("customers.xlsx", event="registration", dry_run=True)  # doctest: +SKIP
>>> result.counts, result.report_path, result.exit_code  # doctest: +SKIP

Each row becomes one event; the per-row outcomes are in the report. Settings are named as on the
command line (``bulk_events.options.Settings`` lists them). Nothing is printed: pass
``on_event=`` to follow a run's events (``bulk_events.events``).
"""

import logging

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
    StorageError,
    UsageError,
)
from .outcome import Outcome, SkipReason, Status

__version__ = "0.1.0"

# A library stays silent unless its caller sets up logging (the CLI does).
logging.getLogger(__name__).addHandler(logging.NullHandler())

_PIPELINE = ("Import", "RunResult", "import_file", "run_import")
_OPTIONS = ("ImportOptions", "Settings")


def __getattr__(name: str) -> object:
    # The pipeline pulls in pandas, pandera and aiohttp: import it on first use, so that
    # `bulk-events --help` and `import bulk_events.errors` stay quick.
    if name in _PIPELINE:
        from . import importer

        return getattr(importer, name)
    if name in _OPTIONS:
        from . import options

        return getattr(options, name)
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
    "Settings",
    "SkipReason",
    "Status",
    "StorageError",
    "UsageError",
    "__version__",
    "import_file",
    "run_import",
]
