"""The options and client construction shared by the verbs that talk to an Auth0 tenant.

httpx is imported only when a client is built (`open_client`), so verbs that read files, and
`fetch` reading a file, start without it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ndpipe.pipeline import warn

if TYPE_CHECKING:
    from ndpipe.auth0.client import Auth0Client

F = TypeVar("F", bound=Callable[..., Any])

TENANT_OPTIONS = ("domain", "client_id", "client_secret", "token")


@dataclass(frozen=True)
class Tenant:
    """Where the tenant is and how to sign in, as given on the command line or in AUTH0_*."""

    domain: str | None
    client_id: str | None
    client_secret: str | None
    token: str | None

    def __repr__(self) -> str:  # the secret and the token never reach a log line
        return f"Tenant(domain={self.domain!r}, client_id={self.client_id!r})"

    @property
    def configured(self) -> bool:
        return bool(self.domain)


def tenant_options(function: F) -> F:
    """--domain, --client-id, --client-secret and --token, each read from AUTH0_* when not given.

    The options collapse into one `tenant: Tenant` argument of the command function.
    """
    options = [
        click.option(
            "--domain",
            metavar="DOMAIN",
            envvar="AUTH0_DOMAIN",
            show_envvar=True,
            help="Tenant domain (tenant.eu.auth0.com, meaning https) or a base URL with scheme.",
        ),
        click.option(
            "--client-id",
            metavar="ID",
            envvar="AUTH0_CLIENT_ID",
            show_envvar=True,
            help="The machine-to-machine application's client ID.",
        ),
        click.option(
            "--client-secret",
            metavar="SECRET",
            envvar="AUTH0_CLIENT_SECRET",
            show_envvar=True,
            help="Its client secret; prefer the environment, which `ps` does not show.",
        ),
        click.option(
            "--token",
            metavar="TOKEN",
            envvar="AUTH0_TOKEN",
            show_envvar=True,
            help="A ready Management API token instead of the client credentials.",
        ),
    ]

    @functools.wraps(function)
    def collapse(**kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) or None for name in TENANT_OPTIONS}
        return function(tenant=Tenant(**values), **kwargs)

    decorated: Any = collapse
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


def open_client(
    command: str, tenant: Tenant, *, quiet: bool = False, **settings: Any
) -> Auth0Client:
    """An Auth0Client for the tenant; retries and waits are reported on stderr unless quiet.

    Raises UsageError (exit 2) when the domain or the credentials are missing.
    """
    from ndpipe.auth0.client import Auth0Client, Credentials

    credentials = Credentials(
        domain=tenant.domain or "",
        client_id=tenant.client_id,
        client_secret=tenant.client_secret,
        token=tenant.token,
    )
    notify = None if quiet else (lambda message: warn(command, message))
    return Auth0Client(credentials, notify=notify, **settings)
