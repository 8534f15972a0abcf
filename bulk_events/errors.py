"""The exception tree.

Every error bulk-events raises on purpose derives from :class:`BulkEventsError` and carries the
process exit code the CLI uses for it, and a one-line message fit to show a user::

    BulkEventsError
    ├── InputError                 exit 2: the input or the options cannot be used at all
    │   ├── UsageError             a bad option or option combination
    │   ├── FileFormatError        missing/unreadable/hostile file, bad encoding, unknown sheet
    │   ├── ColumnError            no email/phone column, unknown --type/--map column
    │   ├── ConfigError            a config file that cannot be used
    │   └── JournalBusyError       another run holds the journal (or sends to its destination)
    ├── StorageError               exit 74: the journal or the report could not be written mid-run
    │   ├── ReportError            the report could not be written (the journal is complete)
    │   └── ScratchError           a scratch file in the temporary folder could not be written
    └── DeliveryError              the service, not the input, stopped the run
        ├── CredentialsError       exit 2: the service rejected the credentials up front
        ├── ServiceUnavailable     exit 75: unreachable, down or over quota; run again later
        └── AuthRejected           exit 77: credentials stopped working mid-run
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ROWS = 1
EXIT_INPUT = 2
EXIT_INTERNAL = 70  # a bug
EXIT_IOERR = 74
EXIT_TEMPFAIL = 75
EXIT_NOPERM = 77
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class BulkEventsError(Exception):
    """Base of every error bulk-events raises on purpose."""

    exit_code = EXIT_ROWS


class InputError(BulkEventsError):
    """The input file or the options cannot be used at all; nothing was sent."""

    exit_code = EXIT_INPUT


class UsageError(InputError):
    """A bad option value or combination of options."""


class FileFormatError(InputError):
    """The file is missing, unreadable, hostile, or not a spreadsheet we can read."""


class ColumnError(InputError):
    """A required column is missing, or an option names a column the file does not have."""


class ConfigError(InputError):
    """A config file that cannot be used."""


class JournalBusyError(InputError):
    """Another run holds the run journal; two runs over one journal could send a row twice."""


class StorageError(BulkEventsError):
    """The journal or the report could not be written during a run: a full disk, an I/O error,
    a journal deleted or replaced under the run. Rows may have been sent: the message says
    where the journal stands."""

    exit_code = EXIT_IOERR


class ReportError(StorageError):
    """The report could not be written; the journal still records every outcome."""


class ScratchError(StorageError):
    """A scratch file of the run (in the temporary folder) could not be written; the journal
    and the report are complete."""


class DeliveryError(BulkEventsError):
    """The service, not the input, stopped the run."""


class CredentialsError(DeliveryError):
    """The service rejected the credentials before any row was sent."""

    exit_code = EXIT_INPUT


class ServiceUnavailable(DeliveryError):
    """The service is unreachable, failing, or over its quota: run again later."""

    exit_code = EXIT_TEMPFAIL


class AuthRejected(DeliveryError):
    """The credentials stopped working mid-run and a fresh token did not help."""

    exit_code = EXIT_NOPERM


class QuotaSpent(ServiceUnavailable):
    """The service refuses every request for now: a per-minute or per-day quota is spent."""


class EventLimitReached(ServiceUnavailable):
    """The run sent as many events as ``--max-events`` allows; the rest wait for the next run."""
