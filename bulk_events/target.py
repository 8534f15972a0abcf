"""Where the events go, defined once: identity (for the journal's keys), label (for people),
the journal's file name, and how to open a transport to it.

>>> t = Target(event="registration")
>>> t.identity, t.journal_name
('api:https://api.sendpulse.com/events/name/registration', 'registration')
>>> Target(url="https://events.sendpulse.com/events/id/eb561baa181247d1cd378c4ead632877/7/").journal_name
'event-url-7'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import redact
from .errors import CredentialsError, UsageError
from .private import create_private
from .ratelimit import RateLimiter
from .transport.base import Transport
from .transport.http import ApiTransport, EventUrlTransport, Timeouts

if TYPE_CHECKING:
    from .sandbox import Sandbox

DEFAULT_API_URL = "https://api.sendpulse.com"


@dataclass(frozen=True)
class Credentials:
    """The REST API's client id and secret: given, or read from the environment when needed."""

    client_id: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)
    client_id_env: str = "SENDPULSE_CLIENT_ID"
    client_secret_env: str = "SENDPULSE_CLIENT_SECRET"

    def resolve(self) -> tuple[str, str]:
        """``(client_id, client_secret)``, or a CredentialsError naming the variables to set."""
        client_id = self.client_id or os.environ.get(self.client_id_env)
        client_secret = self.client_secret or os.environ.get(self.client_secret_env)
        if not client_id or not client_secret:
            raise CredentialsError(
                f"set {self.client_id_env} and {self.client_secret_env} (or use --dry-run / --sandbox)"
            )
        return client_id, client_secret


@dataclass(frozen=True)
class Target:
    """One destination: an event of the REST API, an event's own URL, or the local sandbox."""

    event: str | None = None
    url: str | None = field(default=None, repr=False)  # an event URL is a credential
    form: bool = False
    sandbox: bool = False
    api_url: str | None = None

    def __post_init__(self) -> None:
        if self.sandbox and self.url:
            raise UsageError("--sandbox imitates the REST API: use it with --event, not --url")
        if bool(self.event) == bool(self.url):
            raise UsageError(
                "name the target: --event NAME (REST API) or --url EVENT_URL, one of them"
            )
        if self.url and not self.url.startswith(("http://", "https://")):
            raise UsageError("--url must be an http(s) event URL")
        if self.form and not self.url:
            raise UsageError("--form applies to --url (the event URL's form-data tab)")
        if self.url:
            redact.register_url(self.url)

    @property
    def api_base(self) -> str:
        return (self.api_url or os.environ.get("SENDPULSE_API_URL") or DEFAULT_API_URL).rstrip("/")

    @property
    def identity(self) -> str:
        """The destination, for keying the journal: a sandbox rehearsal never marks real rows sent."""
        if self.sandbox:
            return f"sandbox:events/name/{self.event}"
        if self.url:
            # The same event URL with or without a trailing slash is the same destination.
            return f"url:{self.url.strip().rstrip('/')}"
        return f"api:{self.api_base}/events/name/{self.event}"

    @property
    def journal_name(self) -> str:
        """A readable start for the default journal's file name (never a secret)."""
        if self.sandbox:
            return f"sandbox-{self.event}"
        if self.url:
            last = self.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
            # The event's number, never the secret hash before it.
            return "event-url-" + last if last.isdigit() and len(last) < 16 else "event-url"
        return self.event or "events"

    @property
    def label(self) -> str:
        """For people: never a secret."""
        if self.sandbox:
            return f'the local sandbox, event "{self.event}"'
        if self.url:
            return redact.redact_url(self.url)
        return f'SendPulse API {redact.redact_url(self.api_base)}, event "{self.event}"'

    async def open(
        self,
        *,
        limiter: RateLimiter,
        concurrency: int,
        timeouts: Timeouts,
        credentials: Credentials,
        sandbox_record: Path,
    ) -> tuple[Transport, Sandbox | None]:
        """An open transport to this target, and the sandbox serving it (``sandbox=True``)."""
        sandbox = None
        transport: Transport
        if self.sandbox:
            from .sandbox import Sandbox

            # What arrived in this rehearsal, not an earlier one; private: it holds contacts.
            create_private(sandbox_record).close()
            sandbox = Sandbox(
                rate_limit=max(10, int(limiter.rate) if limiter.rate else 10),
                latency=0.02,
                record=sandbox_record,
                history=False,
            )
            base = await sandbox.start()
            transport = ApiTransport(
                base,
                sandbox.client_id,
                sandbox.client_secret,
                self.event or "",
                concurrency=concurrency,
                timeouts=timeouts,
                before_request=limiter.acquire,
            )
        elif self.url:
            transport = EventUrlTransport(
                self.url, form=self.form, concurrency=concurrency, timeouts=timeouts
            )
        else:
            client_id, client_secret = credentials.resolve()
            transport = ApiTransport(
                self.api_base,
                client_id,
                client_secret,
                self.event or "",
                concurrency=concurrency,
                timeouts=timeouts,
                before_request=limiter.acquire,
            )
        try:
            await transport.open()
        except BaseException:
            await transport.aclose()
            if sandbox is not None:
                await sandbox.stop()
            raise
        return transport, sandbox
