"""Pytest fixtures for the loopback Auth0 server; tests/conftest.py re-exports them:

    from tests.auth0_fixtures import auth0_env_fixture, auth0_server_fixture  # noqa: F401

(The functions have other names than the fixtures, so that test parameters named auth0_server
do not shadow an import.)

`auth0_server` is a started FakeAuth0 (tests/auth0_server.py) with the default database
connection "Username-Password-Authentication" and a social "google-oauth2" connection and no
users; the test seeds what it needs. At teardown the server stops, and a request that crashed
the server fails the test. `auth0_env` is the environment a CLI run needs to reach it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.auth0_server import FakeAuth0


@pytest.fixture(name="auth0_server")
def auth0_server_fixture() -> Iterator[FakeAuth0]:
    server = FakeAuth0().start()
    try:
        yield server
    finally:
        server.stop()
    server.check()


@pytest.fixture(name="auth0_env")
def auth0_env_fixture(auth0_server: FakeAuth0) -> dict[str, str]:
    return {
        "AUTH0_DOMAIN": auth0_server.base_url,
        "AUTH0_CLIENT_ID": auth0_server.client_id,
        "AUTH0_CLIENT_SECRET": auth0_server.client_secret,
    }
