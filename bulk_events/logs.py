"""Log set-up: plain or JSON lines on stderr, with every known secret scrubbed."""

from __future__ import annotations

import logging
import sys

import orjson

from .redact import RedactingFilter, redact


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors; message, traceback and stack all redacted.

    Redaction happens here as well as in :class:`~bulk_events.redact.RedactingFilter`: a
    formatter may be attached to a handler without the filter, and a traceback formatted here
    would otherwise be the one text that escaped it.
    """

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info and not record.exc_text:
            # Cached on the record, as logging.Formatter does, but only in its redacted form.
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            data["exception"] = redact(record.exc_text)
        if record.stack_info:
            data["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(data).decode()


def setup_logging(verbose: int = 0, log_format: str = "text", quiet: bool = False) -> None:
    """-v: what the run is doing; -vv: every request. By default warnings only; -q: errors only."""
    if verbose > 0:
        level = logging.INFO if verbose == 1 else logging.DEBUG
    else:
        level = logging.ERROR if quiet else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    for name in ("bulk_events", "aiohttp"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
