"""The options shared by the verbs that talk to an Auth0 tenant, and their notices on stderr.

The tenant's settings, their checks and the client live with the service
(ndpipe.services.auth0.tenant); this module only turns options into them. Nothing here
imports httpx, so verbs that read files, and `fetch` reading a file, start without it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from ndpipe.commands import setting_option
from ndpipe.pipeline import warn
from ndpipe.progress import clear_line
from ndpipe.services.auth0.tenant import DOMAIN_EXAMPLES, Tenant
from ndpipe.services.auth0.tenant import check_setting as check_setting
from ndpipe.services.jobs import poll_interval as poll_interval

F = TypeVar("F", bound=Callable[..., Any])

TENANT_OPTIONS = ("domain", "client_id", "client_secret", "token")


def tenant_options(function: F) -> F:
    """--domain, --client-id, --client-secret and --token, each read from AUTH0_* when not given.

    Each is checked as the command line is parsed (`check_setting`), so a malformed one exits 2
    before anything is read or sent. The options collapse into one `tenant: Tenant` argument of
    the command function.
    """
    options = [
        setting_option(
            "--domain",
            metavar="DOMAIN",
            envvar="AUTH0_DOMAIN",
            kind="url",
            examples=DOMAIN_EXAMPLES,
            help="Tenant domain (tenant.eu.auth0.com, meaning https) or a base URL with scheme.",
        ),
        setting_option(
            "--client-id",
            metavar="ID",
            envvar="AUTH0_CLIENT_ID",
            kind="id",
            help="The machine-to-machine application's client ID.",
        ),
        setting_option(
            "--client-secret",
            metavar="SECRET",
            envvar="AUTH0_CLIENT_SECRET",
            kind="secret",
            help="Its client secret; prefer the environment, which `ps` does not show.",
        ),
        setting_option(
            "--token",
            metavar="TOKEN",
            envvar="AUTH0_TOKEN",
            kind="token",
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


def notices(command: str, quiet: bool = False) -> Callable[[str], None]:
    """Where a service's notices go: a line `ndpipe COMMAND: ...` on stderr, below any redrawn
    progress line (which would run into it); nowhere when QUIET."""

    def notify(message: str) -> None:
        if not quiet:
            clear_line()
            warn(command, message)

    return notify
