"""What one answer means, as a value: a pure function of the reply (or of the failure to get one).

=============================================  ===========================================
what happened                                  verdict
=============================================  ===========================================
2xx with a JSON object (or no body)            ``SENT``
2xx with ``"result": false`` (or ``"false"``)  ``REFUSED`` (the service works; the row is wrong)
2xx with anything else (HTML, text, cut off)   ``UNKNOWN``: not SendPulse's answer; never resent
401                                            ``REAUTH``: a fresh token, then resend
429 (with or without ``Retry-After``)          ``RATE_LIMITED``: the whole run pauses
502, 504 (a gateway's answer)                  ``UNKNOWN``: the event may have been passed on
other 5xx, 408, connection not made            ``RETRY`` with backoff
403                                            ``REFUSED``, and it counts against the service
other 4xx                                      ``REFUSED``: the data is wrong
sent, but no answer (timeout, dropped)         ``UNKNOWN``: never resent
=============================================  ===========================================

>>> judge(Reply(200, '{"result": true}')).kind
<Kind.SENT: 'sent'>
>>> judge(NotSent("connect timeout")).message
'not sent: connect timeout'
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from enum import StrEnum

import orjson

from bulk_events.transport.base import MaybeSent, NotSent, Reply

PER_SECOND_CODE = 2020202020  # SendPulse's error_code for "More than 10 requests per second"


class Kind(StrEnum):
    SENT = "sent"
    REFUSED = "refused"  # final: failed, not retried
    RETRY = "retry"  # safe to send again after a backoff
    REAUTH = "reauth"  # the token was refused: renew it, then resend
    RATE_LIMITED = "rate-limited"  # 429: pause the whole run, slow down, resend
    UNKNOWN = "unknown"  # may have arrived: never resent


@dataclass(frozen=True, slots=True)
class Verdict:
    """The meaning of one attempt.

    ``service_ok`` feeds the circuit breaker: whether the service itself worked (a refused row
    is the row's fault; a 403 or a dropped connection is not). ``note`` is the short reason the
    breaker quotes when it trips.
    """

    kind: Kind
    message: str = ""
    http_status: int | None = None
    detail: str = ""  # the service's own message, for the report's response column
    retry_after: float | None = None
    auth_generation: int = 0
    service_ok: bool = True
    note: str = ""
    per_second: bool = False  # a 429 with SendPulse's per-second error_code: slow down, no quota


def judge(answer: Reply | NotSent | MaybeSent) -> Verdict:
    """The verdict on one attempt; see the module's table."""
    if isinstance(answer, NotSent):
        message = f"not sent: {answer.reason}"
        return Verdict(Kind.RETRY, message, service_ok=False, note=message)
    if isinstance(answer, MaybeSent):
        message = f"no answer after sending ({answer.reason}); not resent, to avoid a duplicate"
        return Verdict(Kind.UNKNOWN, message, service_ok=False, note=answer.reason)
    return _judge_reply(answer)


# A run's answers are nearly all alike (``{"result": true}``, with the same token generation):
# each distinct one is parsed once. Replies and verdicts are immutable values.
@functools.lru_cache(maxsize=256)
def _judge_reply(answer: Reply) -> Verdict:
    """:func:`judge` of a reply (memoised: every field of it is part of the key)."""
    status = answer.status
    # The answer is parsed once; every question below asks the parsed object.
    text = answer.text.strip()
    data = _json_object(text)
    detail = _gist(text, data)
    plain = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"

    def verdict(kind: Kind, message: str, *, service_ok: bool = True) -> Verdict:
        return Verdict(
            kind,
            message,
            status,
            detail,
            answer.retry_after,
            answer.auth_generation,
            service_ok,
            message,
        )

    if 200 <= status < 300:
        if _says_refused(data):
            return verdict(Kind.REFUSED, f"refused: {detail or 'result false'}")
        # SendPulse answers with a JSON object (or, at an event URL, possibly nothing at all).
        if not answer.complete or not (not text or data is not None):
            # A captive portal, a wrong URL, a proxy: such a page says nothing about the event.
            what = (
                "a cut-off answer" if not answer.complete else "an answer that is not SendPulse's"
            )
            return verdict(
                Kind.UNKNOWN,
                f"HTTP {status} with {what} ({detail or 'no text'}); not resent, to avoid a "
                "duplicate",
                service_ok=False,
            )
        return verdict(Kind.SENT, "")
    if status == 401:
        return verdict(Kind.REAUTH, f"HTTP 401: {detail or 'unauthorized'}")
    if status == 429:
        v = verdict(Kind.RATE_LIMITED, f"HTTP 429: {detail or 'too many requests'}")
        per_second = data or {}
        if str(per_second.get("error_code")) == str(PER_SECOND_CODE):
            return replace(v, per_second=True)
        return v
    if status in (502, 504):
        # A gateway in front of the service answered: it may have passed the event on before
        # the answer was lost, so resending could send it twice.
        return verdict(
            Kind.UNKNOWN,
            f"{plain}: a gateway's answer, the event may have been passed on; not resent",
            service_ok=False,
        )
    if status >= 500 or status == 408:
        return verdict(Kind.RETRY, plain, service_ok=False)
    # A 4xx is about this row's data, and must not stop the run: a file whose first rows are
    # refused contacts would otherwise never get past them. 403 is about the account (blocked,
    # no access), so it counts towards stopping.
    return verdict(Kind.REFUSED, plain, service_ok=status != 403)


_TAG = re.compile(r"<[^>]+>")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)


def service_message(reply: Reply) -> str:
    """The useful part of an answer: the service's message, or the gist of an HTML page."""
    text = reply.text.strip()
    return _gist(text, _json_object(text))


def _gist(text: str, data: dict[str, object] | None) -> str:
    """:func:`service_message` of a stripped ``text`` whose JSON object (if any) is ``data``."""
    if data is not None:
        parts = [str(data[k]) for k in ("message", "error_description", "error") if data.get(k)]
        code = data.get("error_code")
        if code is not None:
            parts.append(f"error_code {code}")
        if parts:
            return "; ".join(dict.fromkeys(parts))
    if "<" in text:
        title = _TITLE.search(text)
        text = title.group(1) if title else _TAG.sub(" ", text)
    return " ".join(text.split())[:200]


_FALSE = (False, "false", "False", 0, "0")


def is_refusal(reply: Reply) -> bool:
    """A 2xx answer whose body says the event was not taken (``{"result": false}``, or
    ``"false"`` as a string)."""
    return _says_refused(_json_object(reply.text))


def _says_refused(data: dict[str, object] | None) -> bool:
    if data is None or "result" not in data:
        return False
    result = data["result"]
    return result is None or (isinstance(result, bool | int | str) and result in _FALSE)


def _json_object(text: str) -> dict[str, object] | None:
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
