"""An Auth0 tenant's settings, checked, and the client made from them.

httpx is imported only when a client is built (`open_client`) or the credentials are checked,
so a command that reads files starts without it; each setting is checked with the standard
library alone (ndpipe.services.settings), while the command line is parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ndpipe.errors import register_secret
from ndpipe.progress import progress_interval
from ndpipe.services import settings
from ndpipe.services.jobs import poll_interval

if TYPE_CHECKING:
    from ndpipe.services.auth0.client import Auth0Client, Credentials

DOMAIN_EXAMPLES = "tenant.eu.auth0.com or http://127.0.0.1:8080"
# Each tenant setting and the kind of value it holds (see ndpipe.services.settings).
KINDS: dict[str, settings.Kind] = {
    "domain": "url",
    "client_id": "id",
    "client_secret": "secret",
    "token": "token",
}


@dataclass(frozen=True)
class Tenant:
    """Where the tenant is and how to sign in, as given on the command line or in AUTH0_*;
    any of them may be missing until a command needs the tenant."""

    domain: str | None
    client_id: str | None
    client_secret: str | None
    token: str | None

    def __post_init__(self) -> None:
        register_secret(self.client_secret)
        register_secret(self.token)

    def __repr__(self) -> str:  # the secret and the token never reach a log line
        return f"Tenant(domain={self.domain!r}, client_id={self.client_id!r})"

    @property
    def configured(self) -> bool:
        return bool(self.domain)


def check_setting(name: str, value: str | None) -> str | None:
    """VALUE of tenant setting NAME ("domain", "client_id", "client_secret" or "token") without
    the whitespace around it; None when nothing is left (see ndpipe.services.settings)."""
    return settings.check_setting(KINDS[name], value, examples=DOMAIN_EXAMPLES)


def check_tenant(tenant: Tenant) -> None:
    """What `open_client` checks, without making the client: the domain, that credentials are
    there, NDPIPE_POLL_INTERVAL and NDPIPE_PROGRESS_INTERVAL. Commands call it while the command
    line is parsed, so a missing setting exits 2 before anything is read, written or sent."""
    credentials(tenant)
    poll_interval()
    progress_interval()


def credentials(tenant: Tenant) -> Credentials:
    """The tenant's Credentials; a UsageError (exit 2) when the domain or the credentials are
    missing or malformed."""
    from ndpipe.services.auth0.client import Credentials

    return Credentials(
        domain=tenant.domain or "",
        client_id=tenant.client_id,
        client_secret=tenant.client_secret,
        token=tenant.token,
    )


def open_client(
    tenant: Tenant, *, notify: Callable[[str], None] | None = None, **options: Any
) -> Auth0Client:
    """An Auth0Client for the tenant, polling jobs every NDPIPE_POLL_INTERVAL seconds; NOTIFY
    gets its notices (retries, waits). OPTIONS go to Auth0Client.

    Raises UsageError (exit 2) when the domain or the credentials are missing.
    """
    from ndpipe.services.auth0.client import Auth0Client

    options.setdefault("poll_interval", poll_interval())
    return Auth0Client(credentials(tenant), notify=notify, **options)
