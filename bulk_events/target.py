"""Where the events go, defined once: identity (for the journal's keys), label (for people),
the journal's file name, and how to open a transport to it.

>>> t = Target(event="registration")
>>> t.identity, t.journal_name
('api:https://api.sendpulse.com/events/name/registration', 'api-events')
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
from .transport.http import FORMS, ApiTransport, EventUrlTransport, Timeouts, form_kind

if TYPE_CHECKING:
    from .sandbox import Sandbox

DEFAULT_API_URL = "https://api.sendpulse.com"


@dataclass(frozen=True)
class Credentials:
    """The REST API's credentials: a static API key, or a client id and secret (OAuth); given, or
    read from the environment when needed. A key, when there is one, is used."""

    client_id: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)
    client_id_env: str = "SENDPULSE_CLIENT_ID"
    client_secret_env: str = "SENDPULSE_CLIENT_SECRET"
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str = "SENDPULSE_API_KEY"

    def resolve_api_key(self) -> str | None:
        """The API key (Settings → API → API keys), if one is given or set in the environment."""
        key = (self.api_key or os.environ.get(self.api_key_env) or "").strip()
        if key:
            redact.register(key)
        return key or None

    def resolve(self) -> tuple[str, str]:
        """``(client_id, client_secret)``, or a CredentialsError naming the variables to set."""
        client_id = self.client_id or os.environ.get(self.client_id_env)
        client_secret = self.client_secret or os.environ.get(self.client_secret_env)
        if not client_id or not client_secret:
            raise CredentialsError(
                f"set {self.api_key_env}, or {self.client_id_env} and {self.client_secret_env} "
                "(or use --dry-run / --sandbox)"
            )
        return client_id, client_secret


@dataclass(frozen=True)
class Target:
    """One destination: an event of the REST API, an event's own URL, or the local sandbox."""

    event: str | None = None
    url: str | None = field(default=None, repr=False)  # an event URL is a credential
    form: bool | str = False  # False: JSON; True or "multipart": form-data; "urlencoded"
    sandbox: bool = False
    api_url: str | None = None
    event_column: str | None = None  # each row names its REST API event in this column

    def __post_init__(self) -> None:
        # Normalised while being made (the instance is not visible to anyone yet).
        object.__setattr__(self, "form", form_kind(self.form))
        if self.event_column:
            if self.url:
                raise UsageError(
                    "--event-column names REST API events; an event URL is one event: "
                    "leave out --url (or --event-column)"
                )
            if self.event:
                raise UsageError(
                    "--event-column names each row's event; leave out --event "
                    "(a row with an empty event cell is invalid)"
                )
            return
        if bool(self.event) == bool(self.url):
            raise UsageError(
                "name the target: --event NAME (REST API) or --url EVENT_URL, one of them"
            )
        if self.url and not self.url.startswith(("http://", "https://")):
            raise UsageError("--url must be an http(s) event URL")
        if self.form != "json" and not self.url:
            raise UsageError("--form applies to --url (the event URL's form-data tab)")
        if self.url:
            redact.register_url(self.url)

    @property
    def api_base(self) -> str:
        return (self.api_url or os.environ.get("SENDPULSE_API_URL") or DEFAULT_API_URL).rstrip("/")

    @property
    def identity(self) -> str:
        """The destination, for keying the journal: a sandbox rehearsal never marks real rows sent.

        With ``event_column`` each row has its own: see :meth:`identity_of`."""
        if self.sandbox and self.url:
            return "sandbox:event-url"
        if self.url:
            # The same event URL with or without a trailing slash is the same destination.
            return f"url:{self.url.strip().rstrip('/')}"
        return self.identity_of(self.event or "")

    def identity_of(self, event: str) -> str:
        """The identity of one REST API event of this account (the same for --event NAME and
        for a row whose --event-column cell names it)."""
        if self.sandbox:
            return f"sandbox:events/name/{event}"
        return f"api:{self.api_base}/events/name/{event}"

    @property
    def journal_identity(self) -> str:
        """What the default journal belongs to: one REST API account base (all its events, so
        runs sharing an event share a journal and its lock), or one event URL."""
        if self.url:
            return self.identity
        return "sandbox:" if self.sandbox else f"api:{self.api_base}"

    @property
    def journal_name(self) -> str:
        """A readable start for the default journal's file name (never a secret)."""
        if self.sandbox:
            return "sandbox-event-url" if self.url else "sandbox-events"
        if self.url:
            last = self.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
            # The event's number, never the secret hash before it.
            return "event-url-" + last if last.isdigit() and len(last) < 16 else "event-url"
        return "api-events"

    def legacy_journal(self, event: str) -> tuple[str, str]:
        """(identity, name) of the per-event journal that earlier versions kept for ``event``."""
        return self.identity_of(event), f"sandbox-{event}" if self.sandbox else event

    @property
    def label(self) -> str:
        """For people: never a secret."""
        if self.event_column:
            where = "the local sandbox" if self.sandbox else f"SendPulse API {self.api_base}"
            return f'{where}, each row\'s event from column "{self.event_column.strip()}"'
        if self.sandbox:
            if self.url:
                return f"the local sandbox, an event URL ({FORMS[str(self.form)]})"
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
            from .sandbox import SANDBOX_RATE, Sandbox

            # What arrived in this rehearsal, not an earlier one; private: it holds contacts.
            create_private(sandbox_record).close()
            # SendPulse's limit, whatever --rate says: a rehearsal at --rate 50 shows the 429s.
            sandbox = Sandbox(
                rate_limit=SANDBOX_RATE, latency=0.02, record=sandbox_record, history=False
            )
            base = await sandbox.start()
            if self.url:
                transport = EventUrlTransport(
                    sandbox.event_url(base),
                    form=self.form,
                    concurrency=concurrency,
                    timeouts=timeouts,
                )
            else:
                # With an API key configured, rehearse the key's way (the sandbox's own key).
                key = sandbox.api_key if credentials.resolve_api_key() else None
                transport = ApiTransport(
                    base,
                    sandbox.client_id,
                    sandbox.client_secret,
                    self.event or "",
                    concurrency=concurrency,
                    timeouts=timeouts,
                    limiter=limiter,
                    api_key=key,
                )
        elif self.url:
            transport = EventUrlTransport(
                self.url, form=self.form, concurrency=concurrency, timeouts=timeouts
            )
        else:
            key = credentials.resolve_api_key()
            client_id, client_secret = ("", "") if key else credentials.resolve()
            transport = ApiTransport(
                self.api_base,
                client_id,
                client_secret,
                self.event or "",
                concurrency=concurrency,
                timeouts=timeouts,
                limiter=limiter,
                api_key=key,
            )
        try:
            await transport.open()
        except BaseException:
            await transport.aclose()
            if sandbox is not None:
                await sandbox.stop()
            raise
        return transport, sandbox
