"""Who stops a run, how hard, why, and with which exit code: one owner for all of it.

A soft stop starts no new request and lets the ones in flight finish (for at most ``grace``
seconds); a hard stop cancels them. Three things stop a run: the user (a signal, or
:meth:`Stopper.request` from Python), the delivery layer (quota spent, credentials refused, the
service down), the reader (a flaw found mid-file), storage (the journal or the report cannot
be written: a full disk, a journal deleted under the run) and a bug (an unexpected exception in
any stage: the run stops as for a flaw in the file, and exits 70).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Mapping

from .errors import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_ROWS,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    BulkEventsError,
    DeliveryError,
    StorageError,
)
from .events import Emit, Stopping
from .outcome import OK_STATUSES, Status

log = logging.getLogger(__name__)


class Stopper:
    """The stop state of one run.

    >>> stopper = Stopper()
    >>> stopper.stopping, stopper.exit_code({"sent": 3})
    (False, 0)
    """

    def __init__(self, grace: float = 30.0, emit: Emit | None = None) -> None:
        self.grace = grace
        self._emit = emit
        self.signal: int | None = None  # 0: asked from Python
        self.delivery_error: DeliveryError | None = None
        self.read_error: BulkEventsError | None = None
        self.storage_error: StorageError | None = None
        self.internal_error = ""  # a bug, said in one line
        self.where = ""  # with a storage error: what was sent and where the journal stands
        self.last_row_read = 0
        self.unread = False  # the grace period ended before the whole file was read
        self.stopping = False
        self.hard = False
        self._cancel: Callable[[], None] | None = None

    def arm(self, cancel: Callable[[], None]) -> None:
        """Requests are under way from now: a hard stop calls ``cancel``."""
        self._cancel = cancel

    def request(self, signum: int | None = None) -> None:
        """First call: finish what is in flight, start nothing new. Second call: stop at once."""
        if self.signal is not None or (signum is None and self.stopping):
            self.hard_stop()
            return
        self.signal = signum if signum is not None else 0
        self._soft()
        if signum is not None and self._emit is not None:
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            self._emit(Stopping(name, in_flight=self._cancel is not None))

    def fail(self, error: DeliveryError) -> None:
        """The delivery layer cannot go on (quota, credentials, the service down)."""
        if self.stopping:  # already stopping for another reason: that reason stands
            return
        if self.delivery_error is None:
            self.delivery_error = error
            log.warning("stopping: %s", error)  # the summary says it again at the end
        self._soft()

    def read_failed(self, error: BulkEventsError) -> None:
        """The reader found a flaw mid-file: send nothing more, report what was read."""
        self.read_error = error
        self._soft()

    def internal_failed(self, exc: BaseException, where: str) -> None:
        """A bug in a stage (``where``: "while checking rows"): send nothing more, finish and
        report what is known; the traceback goes to the log (``-vv``)."""
        log.debug("internal error %s", where, exc_info=exc)
        if not self.internal_error:
            self.internal_error = (
                f"internal error {where}: {type(exc).__name__}: {exc} (a bug; run with -vv for "
                "details); every row not sent is pending in the report"
            )
        self._soft()

    def storage_failed(self, error: StorageError) -> None:
        """The journal or the report cannot be written: send nothing more. This reason wins
        over any other, since it changes what the next run can know."""
        if self.storage_error is None:
            self.storage_error = error
            log.warning("stopping: %s", error)
        self._soft()

    def hard_stop(self) -> None:
        if self.hard:
            return
        self.hard = True
        self.stopping = True
        if self._cancel is not None:
            self._cancel()

    def _soft(self) -> None:
        self.stopping = True
        # With requests under way, the grace period bounds how long they may take; after a
        # signal it bounds the whole stop, reading the rest of the file as pending included.
        if self._cancel is not None or self.signal is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # asked from outside the run's loop: no timer to arm
                return
            loop.call_later(self.grace, self.hard_stop)

    @property
    def stop_reading(self) -> bool:
        """Asked to stop and out of patience (the grace period ended, or a second Ctrl-C):
        read no further, so the run ends now whatever the size of the file."""
        return self.hard and self.signal is not None

    @property
    def reason(self) -> str:
        """Why the run stopped early, for people; empty when it did not."""
        why = self._reason()
        if not self.unread:
            return why
        unread = (
            f"the grace period ended after row {self.last_row_read}: any later rows were not "
            "read and are not in the report; run the same command again to send them"
        )
        return f"{why}; {unread}" if why else unread

    def _reason(self) -> str:
        if self.storage_error is not None:
            return f"error: {self.storage_error}" + (f"; {self.where}" if self.where else "")
        if self.internal_error:
            return f"error: {self.internal_error}"
        if self.read_error is not None:
            last = self.last_row_read
            if not last:
                return f"error: {self.read_error}; no row was read or sent"
            return (
                f"error: {self.read_error}; rows up to {last} are in the report, nothing after "
                f"row {last} was read or sent: fix the file and run the same command again"
            )
        return str(self.delivery_error) if self.delivery_error else ""

    def exit_code(self, counts: Mapping[str, int], invalid_allowed: int = 0) -> int:
        """The run's exit code; up to ``invalid_allowed`` invalid rows (``--max-invalid``) alone
        do not make it 1."""
        if self.storage_error is not None:
            return self.storage_error.exit_code
        if self.internal_error:
            return EXIT_INTERNAL
        if self.read_error is not None:
            return self.read_error.exit_code
        if self.signal:
            return EXIT_SIGTERM if self.signal == signal.SIGTERM else EXIT_SIGINT
        if self.delivery_error is not None:
            return self.delivery_error.exit_code
        bad = sum(n for s, n in counts.items() if Status(s) not in OK_STATUSES)
        invalid = counts.get(Status.INVALID.value, 0)
        if bad and bad == invalid and invalid <= invalid_allowed:
            return EXIT_OK
        return EXIT_ROWS if bad else EXIT_OK


def install_signal_handlers(
    loop: asyncio.AbstractEventLoop, handler: Callable[[int], None]
) -> list[int]:
    """Route SIGINT and SIGTERM to ``handler`` (in the main thread only); returns those installed."""
    if threading.current_thread() is not threading.main_thread():
        return []
    installed: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handler, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on this platform
            pass
    return installed
