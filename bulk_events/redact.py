"""Keep secrets out of everything a person or a log file sees.

Transports register each secret as they learn it (client secret, access tokens, the hash of an
event URL); everything printed, logged or stored as response text goes through :func:`redact`::

    >>> register("s3cr3t-value")
    >>> redact("token=s3cr3t-value")
    'token=***'
    >>> redact_url("https://u:p@events.sendpulse.com/events/id/eb561baa181247d1cd378c4ead632877/7?x=1")
    'https://events.sendpulse.com/events/id/eb56…/7'
"""

from __future__ import annotations

import logging
import re
import threading

from yarl import URL

MIN_SECRET_LENGTH = 6
MASK = "***"
HASH_KEEP = 4

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

# An event URL's credential is a long hex path segment; shorter segments are ordinary names.
_HASH_SEGMENT = re.compile(r"^[0-9a-fA-F]{16,}$")


def register(secret: str) -> None:
    """Remember ``secret`` so that :func:`redact` masks it from now on.

    Empty and very short strings (under six characters) are ignored: masking them would mangle
    ordinary text and they are not credentials worth the name.
    """
    global _pattern
    if not secret or len(secret) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if secret in _secrets:
            return
        _secrets.add(secret)
        # Longest first, so a secret containing another one is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``."""
    pattern = _pattern  # read once: register() swaps the whole object, never mutates it
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def redact_url(url: str) -> str:
    """Return a printable form of ``url``: no userinfo, query or fragment, hash segments cut short.

    A path segment that looks like an event hash (16+ hex digits) keeps its first four characters
    followed by ``…``; other URLs keep scheme, host, port and path. Text that does not parse as a
    URL is passed through :func:`redact`.
    """
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return redact(url)
    if not parsed.absolute:
        return redact(url)
    segments = [_shorten(seg) for seg in parsed.raw_path.split("/")]
    host = parsed.raw_host or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    port = "" if parsed.explicit_port is None else f":{parsed.explicit_port}"
    return redact(f"{parsed.scheme}://{host}{port}{'/'.join(segments)}")


def url_secrets(url: str) -> list[str]:
    """Return the parts of ``url`` that act as a credential: hash-like path segments, userinfo."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return []
    found = [seg for seg in parsed.raw_path.split("/") if _HASH_SEGMENT.match(seg)]
    found += [part for part in (parsed.raw_user, parsed.raw_password) if part]
    return found


def register_url(url: str) -> None:
    """Register the credential parts of ``url`` (see :func:`url_secrets`) with :func:`register`."""
    for secret in url_secrets(url):
        register(secret)


def _shorten(segment: str) -> str:
    if _HASH_SEGMENT.match(segment):
        return segment[:HASH_KEEP] + "…"
    return segment


class RedactingFilter(logging.Filter):
    """A logging filter that masks registered secrets in messages, arguments and tracebacks.

    Attach it to a handler (``handler.addFilter(RedactingFilter())``) so that every record the
    handler writes, whoever logged it, is scrubbed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place with its text redacted; never drops a record."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string must not hide the message entirely
            message = f"{record.msg} {record.args}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
