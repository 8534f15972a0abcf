"""The verdict on one attempt: a pure function of the answer, tested as a table."""

from __future__ import annotations

import pytest

from bulk_events.delivery.breaker import Breaker
from bulk_events.delivery.verdict import Kind, judge, service_message
from bulk_events.transport import MaybeSent, NotSent, Reply

HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@pytest.mark.parametrize(
    ("answer", "kind", "message", "service_ok"),
    [
        (Reply(200, '{"result": true}'), Kind.SENT, "", True),
        (Reply(202, ""), Kind.SENT, "", True),
        (Reply(200, '{"result": false}'), Kind.REFUSED, 'refused: {"result": false}', True),
        (Reply(200, ' {"result":false} '), Kind.REFUSED, 'refused: {"result":false}', True),
        (
            Reply(200, '{"result": false, "message": "no such flow"}'),
            Kind.REFUSED,
            "refused: no such flow",
            True,
        ),
        (Reply(400, '{"message": "bad email"}'), Kind.REFUSED, "HTTP 400: bad email", True),
        (Reply(422, ""), Kind.REFUSED, "HTTP 422", True),
        (Reply(403, '{"message": "blocked"}'), Kind.REFUSED, "HTTP 403: blocked", False),
        (Reply(401, ""), Kind.REAUTH, "HTTP 401: unauthorized", True),
        (Reply(429, "", retry_after=3.0), Kind.RATE_LIMITED, "HTTP 429: too many requests", True),
        (Reply(500, HTML_502), Kind.RETRY, "HTTP 500: 502 Bad Gateway", False),
        (Reply(503, ""), Kind.RETRY, "HTTP 503", False),
        (Reply(408, ""), Kind.RETRY, "HTTP 408", False),
        (NotSent("connect timeout"), Kind.RETRY, "not sent: connect timeout", False),
        (
            MaybeSent("read timeout"),
            Kind.UNKNOWN,
            "no answer after sending (read timeout); not resent, to avoid a duplicate",
            False,
        ),
    ],
)
def test_the_verdict_table(answer, kind, message, service_ok):
    """Each kind of answer gets its verdict, its message and its say in the circuit breaker."""
    verdict = judge(answer)
    assert (verdict.kind, verdict.message, verdict.service_ok) == (kind, message, service_ok)


def test_a_verdict_carries_what_the_reply_said():
    """Status, Retry-After and the token generation travel with the verdict."""
    verdict = judge(Reply(429, '{"error_code": 12}', retry_after=2.5, auth_generation=3))
    assert (verdict.http_status, verdict.retry_after, verdict.auth_generation) == (429, 2.5, 3)
    assert verdict.detail == "error_code 12"


def test_a_repeated_answer_is_judged_by_all_that_it_carries():
    """Alike answers are judged once, but no field of a reply is lost to the ones before it:
    the same text with another token generation, Retry-After or completeness is its own."""
    text = '{"result": true}'
    seen = [judge(Reply(200, text, auth_generation=1)) for _ in range(3)]
    assert {v.auth_generation for v in seen} == {1}
    assert judge(Reply(200, text, auth_generation=2)).auth_generation == 2
    assert judge(Reply(429, "", retry_after=1.0)).retry_after == 1.0
    assert judge(Reply(429, "", retry_after=7.0)).retry_after == 7.0
    assert judge(Reply(200, text, complete=False)).kind is Kind.UNKNOWN
    assert judge(Reply(200, text)).kind is Kind.SENT


def test_service_message_takes_the_gist_of_json_and_html():
    """JSON messages are joined without repeats; an HTML page gives its title."""
    assert service_message(Reply(400, '{"message": "x", "error": "x", "error_code": 7}')) == (
        "x; error_code 7"
    )
    assert service_message(Reply(502, HTML_502)) == "502 Bad Gateway"


def test_the_breaker_trips_on_a_window_of_service_failures_only():
    """16 failures among the last 20 trip it; successes in between keep it closed."""
    breaker = Breaker(window=20, failures=16)
    for _ in range(5):
        assert breaker.record(True) is None
    tripped = [breaker.record(False, "HTTP 503") for _ in range(15)]
    assert tripped[:-1] == [None] * 14 and tripped[-1] is None  # 15 of 20 failed
    error = breaker.record(False, "HTTP 503")
    assert error is not None and "16 of the last 20 events failed (last: HTTP 503)" in str(error)
