"""No client secret or token ever shows, and a malformed credential is refused before any request.

The CLI tests run the real command in a subprocess (`python -m ndpipe fetch`) against the
loopback Auth0 server, with the credentials in the environment or on the command line, and check
what a user sees: the exit code, no traceback, and no secret or token in stdout or stderr, whole,
stripped, percent-encoded or in part (its first or last 20 characters). What reached the server
is checked in its request log: a refused credential sends nothing.
"""

from __future__ import annotations

import subprocess
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ndpipe.commands.tenant import check_setting
from ndpipe.errors import UsageError
from ndpipe.services.auth0.client import Auth0Client, Credentials
from tests.auth0_fixtures import auth0_env_fixture, auth0_server_fixture  # noqa: F401
from tests.auth0_server import ALL_SCOPES, FakeAuth0
from tests.conftest import run_ndpipe

VISIBLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
SURROUNDING = st.text(alphabet=" \t\r\n", max_size=4)
# Whatever can stand inside a bad value: whitespace, controls, non-ASCII (an environment
# variable or an argument cannot hold NUL or a lone surrogate).
BAD_CHARACTER = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00").filter(
    lambda character: not "!" <= character <= "~"
)
# Padding that puts a token echoed in a plain-text error page across the 200-character cut of
# the message: the first 20 characters of the token before the cut, the rest after.
CUT_PADDING = 200 - len(" Authorization: Bearer ") - 20


# --- helpers ---------------------------------------------------------------------------------


def fetch(server: FakeAuth0, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    """`ndpipe fetch ARGS` (an export job) with ENV on top of a clean Auth0 environment."""
    full_env = {
        "AUTH0_DOMAIN": server.base_url,
        "AUTH0_CLIENT_ID": "",
        "AUTH0_CLIENT_SECRET": "",
        "AUTH0_TOKEN": "",
        "NDPIPE_POLL_INTERVAL": "0",
        **env,
    }
    return run_ndpipe("fetch", *args, env=full_env, timeout=90)


def forms(secret: str) -> set[str]:
    """What must never be seen of SECRET: itself, stripped, percent-encoded, and its ends."""
    stripped = secret.strip()
    found = {secret, stripped, quote(stripped, safe=""), quote_plus(stripped)}
    found |= {stripped[:20], stripped[-20:]}
    return {form for form in found if form}


def assert_hidden(
    result: subprocess.CompletedProcess[bytes], server: FakeAuth0, *secrets: str
) -> str:
    """Check that no secret (nor a token the server issued) shows; returns stderr."""
    out = result.stdout.decode(errors="replace")
    err = result.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    for secret in {*secrets, *server.tokens}:
        for form in forms(secret):
            assert form not in err, (form, err)
            assert form not in out, form
    return err


def sent_tokens(server: FakeAuth0) -> set[str | None]:
    return {request.header("authorization") for request in server.requests(path="/api/v2/")}


@pytest.fixture
def tenant(auth0_server: FakeAuth0) -> FakeAuth0:
    auth0_server.add_user("jane@example.com", given_name="Jane")
    return auth0_server


# --- surrounding whitespace is dropped ---------------------------------------------------------


@pytest.mark.parametrize("around", [("", "\r"), ("", "\r\n"), (" \t", "\n"), ("\n", " ")])
@pytest.mark.parametrize("where", ["env", "option"])
def test_a_token_with_whitespace_around_it_works(
    tenant: FakeAuth0, around: tuple[str, str], where: str
) -> None:
    token = tenant.issue_token()
    given_token = around[0] + token + around[1]
    if where == "env":
        result = fetch(tenant, {"AUTH0_TOKEN": given_token})
    else:
        result = fetch(tenant, {}, f"--token={given_token}")
    err = assert_hidden(result, tenant, given_token)
    assert result.returncode == 0, err
    assert b"jane@example.com" in result.stdout
    assert sent_tokens(tenant) == {f"Bearer {token}"}


@settings(max_examples=12, deadline=None)
@given(
    token=st.text(alphabet=VISIBLE, min_size=24, max_size=80),
    before=SURROUNDING,
    after=SURROUNDING,
    where=st.sampled_from(["env", "option"]),
)
def test_any_visible_token_with_any_whitespace_around_it_works(
    token: str, before: str, after: str, where: str
) -> None:
    with FakeAuth0() as server:
        server.tokens[token] = set(ALL_SCOPES)
        given_token = before + token + after
        if where == "env":
            result = fetch(server, {"AUTH0_TOKEN": given_token})
        else:
            result = fetch(server, {}, f"--token={given_token}")
        err = assert_hidden(result, server, given_token)
        assert result.returncode == 0, err
        assert sent_tokens(server) == {f"Bearer {token}"}
    server.check()


def test_client_credentials_with_whitespace_around_them_work(tenant: FakeAuth0) -> None:
    env = {
        "AUTH0_DOMAIN": f" {tenant.base_url}/\r\n",
        "AUTH0_CLIENT_ID": f"{tenant.client_id}\r\n",
        "AUTH0_CLIENT_SECRET": f"\t{tenant.client_secret}\r\n",
    }
    result = fetch(tenant, env)
    err = assert_hidden(result, tenant, tenant.client_secret)
    assert result.returncode == 0, err
    assert b"jane@example.com" in result.stdout


# --- malformed credentials are refused before any request --------------------------------------


MALFORMED = [
    pytest.param("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9\nsecond-line-of-the-file", id="newline"),
    pytest.param("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9\r\nsecond-line", id="crlf-inside"),
    pytest.param("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9 with-a-space", id="space"),
    pytest.param("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9\twith-a-tab", id="tab"),
    pytest.param("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9é-non-ascii", id="non-ascii"),
    pytest.param("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9\u200bzero-width", id="zero-width"),
    pytest.param("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9\x1bescape", id="control"),
    pytest.param("“eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9”", id="smart-quotes"),
]


@pytest.mark.parametrize("token", MALFORMED)
@pytest.mark.parametrize("where", ["env", "option"])
def test_a_malformed_token_is_refused_before_any_request(
    tenant: FakeAuth0, token: str, where: str
) -> None:
    if where == "env":
        result = fetch(tenant, {"AUTH0_TOKEN": f"{token}\r\n"})
    else:
        result = fetch(tenant, {}, "--token", token)
    err = assert_hidden(result, tenant, token)
    assert result.returncode == 2, err
    assert ("AUTH0_TOKEN" if where == "env" else "'--token'") in err
    assert "only visible ASCII characters" in err
    assert result.stdout == b""
    assert tenant.log == []


@pytest.mark.parametrize("token", MALFORMED)
def test_a_malformed_client_secret_is_refused_before_any_request(
    tenant: FakeAuth0, token: str
) -> None:
    secret = token.replace("eyJ", "s3cr3t-")
    env = {"AUTH0_CLIENT_ID": tenant.client_id, "AUTH0_CLIENT_SECRET": secret}
    result = fetch(tenant, env)
    err = assert_hidden(result, tenant, secret)
    assert result.returncode == 2, err
    assert "AUTH0_CLIENT_SECRET" in err
    assert tenant.log == []


def test_a_non_ascii_client_id_is_refused_before_any_request(tenant: FakeAuth0) -> None:
    env = {"AUTH0_CLIENT_ID": "clïent-id", "AUTH0_CLIENT_SECRET": tenant.client_secret}
    result = fetch(tenant, env)
    err = assert_hidden(result, tenant, tenant.client_secret)
    assert result.returncode == 2, err
    assert "AUTH0_CLIENT_ID: it holds a non-ASCII character at character 3 of 9" in err
    assert tenant.log == []


def test_a_token_given_with_bearer_is_refused(tenant: FakeAuth0) -> None:
    token = tenant.issue_token()
    result = fetch(tenant, {"AUTH0_TOKEN": f"Bearer {token}"})
    err = assert_hidden(result, tenant, token)
    assert result.returncode == 2, err
    assert "without 'Bearer '" in err
    assert tenant.log == []


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    head=st.text(alphabet=VISIBLE, min_size=12, max_size=40),
    bad=BAD_CHARACTER,
    tail=st.text(alphabet=VISIBLE, min_size=12, max_size=40),
    before=SURROUNDING,
    after=SURROUNDING,
)
def test_any_token_with_a_bad_character_inside_is_refused(
    auth0_server: FakeAuth0, head: str, bad: str, tail: str, before: str, after: str
) -> None:
    token = before + head + bad + tail + after
    length = len(head + bad + tail)
    result = fetch(auth0_server, {"AUTH0_TOKEN": token})
    err = assert_hidden(result, auth0_server, token, head, tail)
    assert result.returncode == 2, err
    assert f"at character {len(head) + 1} of {length}" in err
    assert auth0_server.log == []


# --- domains -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "problem"),
    [
        ("http://[::1", "not a valid [IPv6] address"),
        ("http://[::1]x", "host and port are not valid"),
        ("http://[not-an-address]", "not a valid [IPv6] address"),
        ("ftp://tenant.example", "must be a host name or an http(s) URL"),
        ("https://admin:hunter2-password@tenant.auth0.com", "without a user name or password"),
        ("http://127.0.0.1:99999", "port must be a number from 1 to 65535"),
        ("http://127.0.0.1:port", "host and port are not valid"),
        ("http://127.0.0.1:0", "port must be a number from 1 to 65535"),
        ("https://tenant.auth0.com/api/v2/", "without a path"),
        ("https://tenant.auth0.com?x=1", "without a query or fragment"),
        ("https://", "names no host"),
        ("tenant..auth0.com", "not a valid host name"),
        ("-tenant.auth0.com", "not a valid host name"),
        ("300.1.1.1", "not a valid IPv4 address"),
        ("tenant .auth0.com", "a space (U+0020) at character 7"),
        ("tenänt.auth0.com", "a non-ASCII character at character 4"),
    ],
)
@pytest.mark.parametrize("where", ["env", "option"])
def test_a_bad_domain_is_a_usage_error(
    tenant: FakeAuth0, domain: str, problem: str, where: str
) -> None:
    token = tenant.issue_token()
    if where == "env":
        result = fetch(tenant, {"AUTH0_TOKEN": token, "AUTH0_DOMAIN": domain})
    else:
        result = fetch(tenant, {"AUTH0_TOKEN": token}, f"--domain={domain}")
    err = assert_hidden(result, tenant, token, "hunter2-password")
    assert result.returncode == 2, err
    assert ("AUTH0_DOMAIN" if where == "env" else "'--domain'") in err
    assert problem in err
    assert result.stdout == b""
    assert tenant.log == []


@pytest.mark.parametrize("form", ["{url}", "{url}/", " {url}\r\n", "{URL}"])
def test_good_domain_forms_reach_the_tenant(tenant: FakeAuth0, form: str) -> None:
    domain = form.format(url=tenant.base_url, URL=tenant.base_url.upper())
    result = fetch(
        tenant, {"AUTH0_TOKEN": tenant.issue_token(), "AUTH0_DOMAIN": domain}, "--job", "job_x"
    )
    err = assert_hidden(result, tenant)
    assert result.returncode == 1, err  # the tenant has no job_x
    assert "no such job" in err
    assert [request.path for request in tenant.log] == ["/api/v2/jobs/job_x"]


# --- what Auth0 refuses or echoes ---------------------------------------------------------------


def test_a_refused_client_secret_is_not_shown(tenant: FakeAuth0) -> None:
    secret = "wrong+secret/with=symbols-that-are-percent-encoded-in-a-form"
    env = {"AUTH0_CLIENT_ID": tenant.client_id, "AUTH0_CLIENT_SECRET": secret}
    result = fetch(tenant, env)
    err = assert_hidden(result, tenant, secret)
    assert result.returncode == 1, err
    assert "Auth0 refused the client credentials" in err
    assert [request.status for request in tenant.log] == [401]


def test_a_token_request_echoed_back_is_redacted(tenant: FakeAuth0) -> None:
    # The server quotes the form it was sent: the secret, percent-encoded.
    secret = "wrong+secret/with=symbols-that-are-percent-encoded-in-a-form"
    tenant.client_secret = secret
    tenant.faults.echo_credentials(1, status=401, path="/oauth/token")
    env = {"AUTH0_CLIENT_ID": tenant.client_id, "AUTH0_CLIENT_SECRET": secret}
    result = fetch(tenant, env)
    err = assert_hidden(result, tenant, secret)
    assert result.returncode == 1, err
    assert "client_secret=[redacted]" in err
    assert quote_plus(secret).encode() in tenant.log[0].body  # it really was echoed


def test_an_echoed_token_is_redacted_in_the_error(tenant: FakeAuth0) -> None:
    token = tenant.issue_token()
    tenant.faults.echo_credentials(None, status=403, path="/api/v2/jobs/users-exports")
    result = fetch(tenant, {"AUTH0_TOKEN": token})
    err = assert_hidden(result, tenant, token)
    assert result.returncode == 1, err
    assert "Authorization: Bearer [redacted]" in err


def test_echoed_tokens_are_redacted_in_retry_notices_even_when_cut(tenant: FakeAuth0) -> None:
    # Client credentials: the token is one the client obtained itself. The plain-text page puts
    # the token across the 200-character cut of the message; the retries then succeed.
    tenant.faults.echo_credentials(
        2, status=500, path="/api/v2/jobs/users-exports", text=True, padding=CUT_PADDING
    )
    env = {"AUTH0_CLIENT_ID": tenant.client_id, "AUTH0_CLIENT_SECRET": tenant.client_secret}
    result = fetch(tenant, env)
    err = assert_hidden(result, tenant, tenant.client_secret)
    assert result.returncode == 0, err
    assert err.count("Authorization: Bearer [redacted]") == 2
    assert b"jane@example.com" in result.stdout
    issued = {request.header("authorization") for request in tenant.log if request.status == 500}
    assert len(issued) == 1 and None not in issued  # the echoed token was a real one


def test_a_renewed_token_echoed_back_is_redacted(tenant: FakeAuth0) -> None:
    # Both the first token and the one fetched after the 401 are echoed.
    tenant.faults.echo_credentials(None, status=401, path="/api/v2/jobs/users-exports")
    env = {"AUTH0_CLIENT_ID": tenant.client_id, "AUTH0_CLIENT_SECRET": tenant.client_secret}
    result = fetch(tenant, env)
    err = assert_hidden(result, tenant, tenant.client_secret)
    assert result.returncode == 1, err
    assert len(tenant.tokens) == 2
    assert "Bearer [redacted]" in err


# --- the checks themselves, in process ----------------------------------------------------------


# Pieces of URLs, right and wrong, for domains to be built from.
URL_PIECES = [
    *"abcAZ019-_.:/[]@?#%é \t\r\n",
    *("http://", "https://", "ftp://", "[::1]", "[::1", "127.0.0.1", ":8080", ":99999", ".com"),
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(URL_PIECES), max_size=12).map("".join))
def test_a_domain_that_passes_the_check_builds_a_client(text: str) -> None:
    try:
        domain = check_setting("domain", text)
    except UsageError:
        return
    if domain is None:
        assert not text.strip(" \t\r\n")
        return
    client = Auth0Client(Credentials(domain, token="a-token-for-the-test"))
    client.close()


@settings(max_examples=300, deadline=None)
@given(
    head=st.text(alphabet=VISIBLE, min_size=12, max_size=30),
    bad=BAD_CHARACTER | st.just("\x00"),
    tail=st.text(alphabet=VISIBLE, min_size=1, max_size=30),
)
def test_a_refused_credential_is_never_quoted(head: str, bad: str, tail: str) -> None:
    value = head + bad + tail
    for name in ("client_id", "client_secret", "token"):
        with pytest.raises(UsageError) as caught:
            check_setting(name, value)
        for form in forms(value) | {head}:
            assert form not in caught.value.message
