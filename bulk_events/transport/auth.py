"""The REST API's Bearer token: an OAuth client-credentials token, or a static API key.

:class:`Token` fetches the first token, renews it shortly before it expires and after a 401,
and counts each new one in ``generation``, so that many requests failing with the same stale
token trigger a single token request. An API key is never renewed: a 401 with it is final.
It posts through the transport that owns it (:class:`~bulk_events.transport.http.ApiTransport`),
so token requests share its session, its timeouts and, with ``limiter``, the rate limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

import orjson
from yarl import URL

from bulk_events import ratelimit
from bulk_events import redact as _redact
from bulk_events.errors import CredentialsError, DeliveryError, ServiceUnavailable

from .base import MaybeSent, NotSent, decode_text

__all__ = ["Post", "Token"]

log = logging.getLogger("bulk_events.transport.http")

#: POST ``data`` to a URL: (status, body, charset, Retry-After header, whether read whole).
Post = Callable[..., Awaitable[tuple[int, bytes, str | None, str | None, bool]]]


class Token:
    """The token an :class:`~bulk_events.transport.http.ApiTransport` sends as ``Bearer``.

    ``value`` is None until :meth:`open`; ``generation`` is how many tokens were obtained.
    """

    #: transient token-endpoint failures are retried this many times after a 401 mid-run
    attempts = 3
    retry_delay = 1.0
    #: after a failed proactive renewal, keep using the old token this long before trying again
    refresh_backoff = 10.0

    def __init__(
        self,
        post: Post,
        token_url: URL,
        client_id: str,
        client_secret: str,
        *,
        host: str,
        api_key: str | None = None,
        before_request: Callable[[], Awaitable[None]] | None = None,
        limiter: ratelimit.RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._post = post
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._host = host
        self._api_key = api_key or None
        self._before_request = before_request
        self._limiter = limiter
        self._clock = clock
        self.value: str | None = None
        self.generation = 0
        self._expires_at = 0.0
        self._refresh_at = 0.0
        self._retry_refresh_at = 0.0
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Obtain the first token (idempotent). Raises CredentialsError if the id/secret are
        refused, ServiceUnavailable if the token endpoint cannot be reached or is failing."""
        if self._api_key is not None:
            if self.value is None:
                self.value = self._api_key
                self._refresh_at = math.inf
                self.generation = 1
            return
        async with self._lock:
            if self.value is None:
                await self._fetch()

    async def ready(self) -> None:
        """Renew the token if it is about to expire."""
        if self.value is not None and self._clock() >= self._refresh_at:
            await self._refresh_soon_expiring()

    async def renew(self, generation: int) -> bool:
        """Fetch a new token after a 401 seen with ``generation``, once for all waiting callers.

        Returns True when a token newer than ``generation`` is ready (fetched now or by another
        task meanwhile), False when the token endpoint refuses the credentials. Raises
        ServiceUnavailable when the token endpoint stays unreachable or failing.
        """
        if self._api_key is not None:
            return False  # a key has nothing to renew: refused is refused
        async with self._lock:
            if self.generation > generation:
                return True
            for attempt in range(1, self.attempts + 1):
                try:
                    await self._fetch()
                    return True
                except CredentialsError:
                    log.warning("SendPulse refused the credentials when renewing the token")
                    return False
                except ServiceUnavailable as exc:
                    if attempt == self.attempts:
                        raise
                    log.warning("token renewal failed (%s); retrying", exc)
                    await asyncio.sleep(self.retry_delay * attempt)
            raise AssertionError("unreachable")  # pragma: no cover

    async def _refresh_soon_expiring(self) -> None:
        """Renew a token that is about to expire; on failure keep the old one for a while."""
        async with self._lock:
            now = self._clock()
            if now < self._refresh_at or now < self._retry_refresh_at:
                return
            try:
                await self._fetch()
            except DeliveryError as exc:
                # The old token may still work; a real 401 will go through reauthenticate().
                self._retry_refresh_at = now + self.refresh_backoff
                log.warning("proactive token renewal failed: %s", exc)

    async def _fetch(self) -> None:
        """One token request; updates token, expiry and generation. Call under the lock."""
        if self._before_request is not None:
            await self._before_request()
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }
        unavailable = f"cannot reach SendPulse at {self._host}"
        try:
            if self._limiter is not None:
                with await self._limiter.take():
                    status, raw, charset, _, _ = await self._post(self._token_url, data=form)
            else:
                status, raw, charset, _, _ = await self._post(self._token_url, data=form)
        except (NotSent, MaybeSent) as exc:
            raise ServiceUnavailable(f"{unavailable}: {exc.reason}; try again later") from None
        if status in (400, 401, 403):
            detail = _error_description(raw, charset) or f"HTTP {status}"
            raise CredentialsError(f"SendPulse rejected the client id/secret: {detail}")
        if status == 429 or status >= 500:
            raise ServiceUnavailable(f"{unavailable}: HTTP {status}; try again later")
        if status != 200:
            # A redirect (never followed: it would carry the secret elsewhere) or another odd
            # answer means the address is wrong, not that the service is down: a setting to fix.
            kind = "a redirect" if 300 <= status < 400 else "an unexpected answer"
            raise CredentialsError(
                f"the token endpoint at {self._host} answered HTTP {status} ({kind}): "
                "check the API address (SENDPULSE_API_URL)"
            )
        try:
            answer = orjson.loads(raw)
            token = answer["access_token"]
            expires_in = float(answer.get("expires_in", 3600))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ServiceUnavailable(
                f"{unavailable}: the token endpoint gave an unreadable answer; try again later"
            ) from None
        if not isinstance(token, str) or not token:
            raise ServiceUnavailable(
                f"{unavailable}: the token endpoint gave no access token; try again later"
            )
        if not token.isprintable() or not token.isascii():
            _redact.register(token)
            raise CredentialsError(
                f"the token endpoint at {self._host} gave an access token that cannot be sent "
                "in a header (it holds a line break or another control character): check the "
                "API address"
            )
        _redact.register(token)
        now = self._clock()
        if not math.isfinite(expires_in) or expires_in <= 0:
            expires_in = 3600.0
        self.value = token
        self._expires_at = now + expires_in
        # Renew early (SendPulse's own PHP client: 300 s before; half the lifetime of a short
        # token) so that no request travels with a token on its last breath, and renewing never
        # waits for a 401. A request checks in ready(), then may queue for its turn of the rate
        # limit for about concurrency / rate seconds: the margin must cover that.
        self._refresh_at = now + expires_in - min(300.0, expires_in * 0.5)
        self._retry_refresh_at = 0.0
        self.generation += 1


def _error_description(raw: bytes, charset: str | None) -> str:
    """The human part of an OAuth error answer, short and with secrets masked."""
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = None
    text = ""
    if isinstance(answer, dict):
        for key in ("error_description", "message", "error"):
            value = answer.get(key)
            if isinstance(value, str) and value.strip():
                text = value
                break
    else:
        text = decode_text(raw, charset)
    text = " ".join(text.split())
    return _redact.redact(text)[:200]
