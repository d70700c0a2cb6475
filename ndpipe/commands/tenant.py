"""The options and client construction shared by the verbs that talk to an Auth0 tenant.

httpx is imported only when a client is built (`open_client`), so verbs that read files, and
`fetch` reading a file, start without it; the domain and the credentials are checked here with
the standard library alone, while the command line is parsed.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from ndpipe.commands import setting_option
from ndpipe.errors import UsageError, register_secret
from ndpipe.pipeline import warn
from ndpipe.progress import clear_line, progress_interval
from ndpipe.progress import duration as _duration
from ndpipe.services import settings

if TYPE_CHECKING:
    from ndpipe.services.auth0.client import Auth0Client, Credentials

F = TypeVar("F", bound=Callable[..., Any])

TENANT_OPTIONS = ("domain", "client_id", "client_secret", "token")
DEFAULT_POLL_INTERVAL = 2.0
DOMAIN_EXAMPLES = "tenant.eu.auth0.com or http://127.0.0.1:8080"
KINDS: dict[str, settings.Kind] = {
    "domain": "url",
    "client_id": "id",
    "client_secret": "secret",
    "token": "token",
}


@dataclass(frozen=True)
class Tenant:
    """Where the tenant is and how to sign in, as given on the command line or in AUTH0_*."""

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


def check_setting(name: str, value: str | None) -> str | None:
    """VALUE of tenant setting NAME ("domain", "client_id", "client_secret" or "token") without
    the whitespace around it; None when nothing is left (see ndpipe.services.settings)."""
    return settings.check_setting(KINDS[name], value, examples=DOMAIN_EXAMPLES)


def check_tenant(tenant: Tenant) -> None:
    """What `open_client` checks, without making the client: the domain, that credentials are
    there, NDPIPE_POLL_INTERVAL and NDPIPE_PROGRESS_INTERVAL. Commands call it while the command
    line is parsed, so a missing setting exits 2 before anything is read, written or sent."""
    _credentials(tenant)
    poll_interval()
    progress_interval()


def _credentials(tenant: Tenant) -> Credentials:
    from ndpipe.services.auth0.client import Credentials

    return Credentials(
        domain=tenant.domain or "",
        client_id=tenant.client_id,
        client_secret=tenant.client_secret,
        token=tenant.token,
    )


def open_client(
    command: str, tenant: Tenant, *, quiet: bool = False, **settings: Any
) -> Auth0Client:
    """An Auth0Client for the tenant; retries and waits are reported on stderr unless quiet.

    Raises UsageError (exit 2) when the domain or the credentials are missing.
    """
    from ndpipe.services.auth0.client import Auth0Client

    credentials = _credentials(tenant)

    def notify(message: str) -> None:
        clear_line()  # a redrawn progress line, if any, would run into the message
        warn(command, message)

    settings.setdefault("poll_interval", poll_interval())
    return Auth0Client(credentials, notify=None if quiet else notify, **settings)


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
