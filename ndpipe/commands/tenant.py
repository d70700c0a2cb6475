"""The options and client construction shared by the verbs that talk to an Auth0 tenant.

httpx is imported only when a client is built (`open_client`), so verbs that read files, and
`fetch` reading a file, start without it.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click

from ndpipe.errors import UsageError
from ndpipe.pipeline import warn

if TYPE_CHECKING:
    from ndpipe.auth0.client import Auth0Client

F = TypeVar("F", bound=Callable[..., Any])

TENANT_OPTIONS = ("domain", "client_id", "client_secret", "token")
DEFAULT_POLL_INTERVAL = 2.0


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
    settings.setdefault("poll_interval", poll_interval())
    return Auth0Client(credentials, notify=notify, **settings)


def poll_interval() -> float:
    """Seconds between job reads: NDPIPE_POLL_INTERVAL, or 2 (each read counts against the
    tenant's Management API rate limit, AUTH0.md §1.3)."""
    text = os.environ.get("NDPIPE_POLL_INTERVAL", "")
    try:
        value = float(text) if text else DEFAULT_POLL_INTERVAL
    except ValueError:
        raise UsageError(f"NDPIPE_POLL_INTERVAL must be seconds, not {text!r}") from None
    if not 0 <= value <= 3600:
        raise UsageError(f"NDPIPE_POLL_INTERVAL must be between 0 and 3600 seconds, not {text}")
    return value


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


class JobProgress:
    """A job's progress on stderr: one redrawn bar on a terminal, else a line per change.

    Fed every reading of the job (GET /api/v2/jobs/{id}): status, percentage_done and
    time_left_seconds, which Auth0 gives while an export is processing.
    """

    WIDTH = 30

    def __init__(self, command: str, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.command = command
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and self.stream.isatty()
        self.last = ""
        self.drawn = False

    def __call__(self, job: dict[str, Any]) -> None:
        if not self.enabled:
            return
        status = str(job.get("status", "?"))
        done = job.get("percentage_done")
        left = job.get("time_left_seconds")
        if status == "completed":
            done = 100
        text = status
        if isinstance(done, int | float) and status != "completed":
            text += f", {done:g}% done"
        if isinstance(left, int | float) and left > 0 and status != "completed":
            text += f", about {_duration(left)} left"
        label = f"ndpipe {self.command}: job {job.get('id')}"
        if self.live:
            filled = int(self.WIDTH * min(max(float(done or 0), 0.0), 100.0) / 100)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r{label} [{bar}] {text}\x1b[K")
            self.stream.flush()
            self.drawn = True
        elif text != self.last:
            self.stream.write(f"{label}: {text}\n")
            self.stream.flush()
        self.last = text

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
