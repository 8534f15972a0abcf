"""Keep secrets out of everything a person or a log file sees.

Transports register each secret as they learn it (client secret, access tokens, the hash of an
event URL); everything printed, logged or stored as response text goes through :func:`redact`::

    >>> register("s3cr3t-value")
    >>> redact("token=s3cr3t-value")
    'token=***'
    >>> redact_url("https://u:p@events.sendpulse.com/events/id/eb561baa181247d1cd378c4ead632877/7?x=1")
    'https://events.sendpulse.com/events/id/eb56…/7'

A service may echo a secret encoded: JSON-escaped (``\\u0073\\u0033…``, as some serialisers write
every character) or percent-encoded (a token endpoint echoing the form body). Each registered
secret is therefore also matched in those spellings, character by character and in any mix, so
that text decoded later (a JSON error body parsed for the report) cannot reveal it. User info in
any URL inside a text (``https://user:pw@host``) is masked whatever its length.
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
_pattern: re.Pattern[str] | None = None  # the secrets as written
_encoded: re.Pattern[str] | None = None  # the secrets in any mix of plain, JSON and %-spellings

# An event URL's credential is a long hex path segment; shorter segments are ordinary names.
_HASH_SEGMENT = re.compile(r"^[0-9a-fA-F]{16,}$")
# "scheme://user:password@" anywhere in a text: the user info goes, whatever its length.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s?#@\"'<>]+@")
# Characters that only occur in an encoded spelling: without them the plain pattern suffices.
_ENCODING_MARKS = ("\\", "%", "+")
_JSON_SHORT = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "\b": "b",
    "\f": "f",
    "\n": "n",
    "\r": "r",
    "\t": "t",
}


def register(secret: str) -> None:
    """Remember ``secret`` so that :func:`redact` masks it from now on, also JSON- or %-encoded.

    Empty and very short strings (under six characters) are ignored: masking them would mangle
    ordinary text and they are not credentials worth the name.
    """
    global _pattern, _encoded
    if not secret or len(secret) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if secret in _secrets:
            return
        _secrets.add(secret)
        # Longest first, so a secret containing another one is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        plain = re.compile("|".join(re.escape(s) for s in ordered))
        encoded = re.compile("|".join(_encoded_spelling(s) for s in ordered))
        _pattern, _encoded = plain, encoded  # readers see an old or a new pair, never half


def _encoded_spelling(secret: str) -> str:
    """A regular expression matching ``secret`` with each character plain, ``\\uXXXX``-escaped
    (one or more backslashes: an escape may itself have been escaped) or percent-encoded
    (``%XX`` per UTF-8 byte, ``%25XX`` when encoded twice, ``+`` for a space)."""
    parts = []
    for ch in secret:
        alternatives = [re.escape(ch)]
        code = ord(ch)
        units = (
            [code]
            if code <= 0xFFFF
            else [0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)]
        )
        alternatives.append("".join(rf"\\+u(?i:{u:04x})" for u in units))
        if ch in _JSON_SHORT:
            alternatives.append(r"\\+" + re.escape(_JSON_SHORT[ch]))
        alternatives.append(
            "".join(rf"%(?:25)*(?i:{b:02x})" for b in ch.encode("utf-8", "surrogatepass"))
        )
        if ch == " ":
            alternatives.append(r"\+")
        parts.append("(?:" + "|".join(alternatives) + ")")
    return "".join(parts)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``, and URL user info masked.

    >>> register("Tok3n-abcdef")
    >>> redact('{"error": "bad token \\u0054ok3n-abcdef"} via https://me:pw@api.example.com/')
    '{"error": "bad token ***"} via https://***@api.example.com/'
    """
    if not text:
        return text
    if "://" in text:
        text = _USERINFO.sub(r"\1***@", text)
    # Read once: register() swaps the whole objects, never mutates them.
    pattern, encoded = _pattern, _encoded
    if pattern is None or encoded is None:
        return text
    if any(mark in text for mark in _ENCODING_MARKS):
        return encoded.sub(MASK, text)
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
    """Return the parts of ``url`` that act as a credential: hash-like path segments, and the user
    and password of its user info, as written and decoded."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return []
    found = [seg for seg in parsed.raw_path.split("/") if _HASH_SEGMENT.match(seg)]
    for raw, decoded in ((parsed.raw_user, parsed.user), (parsed.raw_password, parsed.password)):
        found += [part for part in dict.fromkeys((raw, decoded)) if part]
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
