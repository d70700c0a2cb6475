"""The Auth0 Management API client against the loopback Auth0 server, over real HTTP.

Time is fake: the client's sleep and clock are a FakeTime, so retries, rate-limit waits and
polling are checked by the waits the client asked for, never by how long anything took.
"""

from __future__ import annotations

import gzip
import json
import socket
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ndpipe.errors import EXIT_DATA, EXIT_REMOTE, Refused, RemoteError, UsageError
from ndpipe.services.auth0.client import (
    OUTPUT_CHUNK,
    Auth0Client,
    Credentials,
    ImportSlotsBusy,
    ImportTooLarge,
    JobFailed,
    RetryPolicy,
    _Decoder,
)
from tests.auth0_fixtures import auth0_env_fixture, auth0_server_fixture  # noqa: F401
from tests.auth0_server import (
    DEFAULT_CONNECTION,
    FakeAuth0,
    auth0_csv_cell,
    resolve_path,
    validate_import_user,
)

JITTER = 0.5


class FakeTime:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def notices() -> list[str]:
    return []


def make_client(
    server: FakeAuth0,
    fake_time: FakeTime,
    notices: list[str],
    *,
    secret: str | None = None,
    token: str | None = None,
    client_id: str | None = "default",
    **options: Any,
) -> Auth0Client:
    credentials = Credentials(
        server.base_url,
        server.client_id if client_id == "default" else client_id,
        server.client_secret if secret is None else secret,
        token,
    )
    options.setdefault("sleep", fake_time.sleep)
    return Auth0Client(
        credentials,
        clock=fake_time.clock,
        jitter=lambda: JITTER,
        notify=notices.append,
        poll_interval=5.0,
        **options,
    )


@pytest.fixture
def client(auth0_server: FakeAuth0, fake_time: FakeTime, notices: list[str]) -> Iterator[Any]:
    with make_client(auth0_server, fake_time, notices) as client:
        yield client


def connection_id(server: FakeAuth0, name: str = DEFAULT_CONNECTION) -> str:
    return server.connection(name).id


def export(client: Auth0Client, **options: Any) -> bytes:
    job = client.start_export(**options)
    client.poll_job(job["id"])
    return b"".join(client.stream_export(job["id"]))


def lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


def users_file(users: list[Any]) -> bytes:
    return json.dumps(users).encode()


def run_import(client: Auth0Client, server: FakeAuth0, users: list[Any], **options: Any) -> Any:
    job = client.start_import(connection_id(server), users_file(users), **options)
    return client.poll_job(job["id"]), client.job_errors(job["id"])


# --- credentials and token ---------------------------------------------------------------------


def test_domain_forms_and_audience() -> None:
    bare = Credentials("tenant.eu.auth0.com/", "id", "client-secret-of-the-test")
    assert bare.base_url == "https://tenant.eu.auth0.com"
    assert bare.audience == "https://tenant.eu.auth0.com/api/v2/"
    local = Credentials("http://127.0.0.1:8080", token="t")
    assert local.audience == "http://127.0.0.1:8080/api/v2/"
    with pytest.raises(UsageError):
        Credentials("ftp://tenant", token="t").base_url  # noqa: B018
    with pytest.raises(UsageError, match="credentials"):
        Credentials("tenant.auth0.com", "id")
    with pytest.raises(UsageError, match="domain"):
        Credentials(" ", token="t")


def test_secret_and_token_stay_out_of_reprs() -> None:
    credentials = Credentials("tenant.auth0.com", "my-client", "hush-secret", "hush-token")
    client = Auth0Client(credentials)
    try:
        for text in (repr(credentials), repr(client), str(credentials)):
            assert "hush" not in text
        assert "my-client" in repr(credentials)
    finally:
        client.close()


def test_token_is_requested_once_with_the_management_audience(
    client: Auth0Client, auth0_server: FakeAuth0
) -> None:
    client.resolve_connection(DEFAULT_CONNECTION)
    client.resolve_connection(DEFAULT_CONNECTION)
    (token_request,) = auth0_server.requests("POST", "/oauth/token")
    assert token_request.header("content-type") == "application/x-www-form-urlencoded"
    form = dict(httpx.QueryParams(token_request.body.decode()))
    assert form == {
        "grant_type": "client_credentials",
        "client_id": auth0_server.client_id,
        "client_secret": auth0_server.client_secret,
        "audience": f"{auth0_server.base_url}/api/v2/",
    }
    assert auth0_server.tokens_issued == 1


def test_server_token_endpoint_takes_json_and_checks_the_audience(auth0_server: FakeAuth0) -> None:
    url = f"{auth0_server.base_url}/oauth/token"
    grant = {
        "grant_type": "client_credentials",
        "client_id": auth0_server.client_id,
        "client_secret": auth0_server.client_secret,
        "audience": auth0_server.audience,
    }
    answer = httpx.post(url, json=grant)
    assert answer.status_code == 200
    assert answer.json()["token_type"] == "Bearer" and answer.json()["expires_in"] == 86400
    wrong_audience = httpx.post(url, json={**grant, "audience": "https://elsewhere/api/v2/"})
    assert wrong_audience.status_code == 403
    assert "Service not found" in wrong_audience.json()["error_description"]
    wrong_secret = httpx.post(url, json={**grant, "client_secret": "nope"})
    assert wrong_secret.status_code == 401
    assert wrong_secret.json() == {"error": "access_denied", "error_description": "Unauthorized"}


def test_wrong_credentials_give_a_clear_error_without_the_secret(
    auth0_server: FakeAuth0, fake_time: FakeTime, notices: list[str]
) -> None:
    wrong = "wrong-secret-value-123"
    with (
        make_client(auth0_server, fake_time, notices, secret=wrong) as client,
        pytest.raises(RemoteError) as caught,
    ):
        client.resolve_connection(DEFAULT_CONNECTION)
    message = str(caught.value)
    assert "refused the client credentials" in message
    assert auth0_server.client_id in message
    assert "access_denied: Unauthorized" in message
    assert wrong not in message and wrong not in repr(caught.value)
    assert caught.value.exit_code == EXIT_DATA
    assert len(auth0_server.requests("POST", "/oauth/token")) == 1  # a 401 is not retried
    assert not auth0_server.requests(path="/api/v2/")


def test_ready_token_is_used_without_a_token_request(
    auth0_server: FakeAuth0, fake_time: FakeTime, notices: list[str]
) -> None:
    token = auth0_server.issue_token()
    with make_client(auth0_server, fake_time, notices, client_id=None, token=token) as client:
        assert client.resolve_connection(DEFAULT_CONNECTION) == connection_id(auth0_server)
    assert not auth0_server.requests("POST", "/oauth/token")
    (request,) = auth0_server.requests("GET", "/api/v2/connections")
    assert request.header("authorization") == f"Bearer {token}"


def test_refused_ready_token_is_an_error_without_the_token(
    auth0_server: FakeAuth0, fake_time: FakeTime, notices: list[str]
) -> None:
    token = auth0_server.issue_token()
    auth0_server.expire_tokens()
    with (
        make_client(auth0_server, fake_time, notices, client_id=None, token=token) as client,
        pytest.raises(RemoteError, match="401") as caught,
    ):
        client.resolve_connection(DEFAULT_CONNECTION)
    assert token not in str(caught.value)
    assert len(auth0_server.requests("GET", "/api/v2/connections")) == 1


def test_expired_token_is_renewed_once(
    client: Auth0Client, auth0_server: FakeAuth0, notices: list[str]
) -> None:
    client.resolve_connection(DEFAULT_CONNECTION)
    auth0_server.expire_tokens()
    assert client.resolve_connection(DEFAULT_CONNECTION) == connection_id(auth0_server)
    assert auth0_server.tokens_issued == 2
    statuses = [r.status for r in auth0_server.requests("GET", "/api/v2/connections")]
    assert statuses == [200, 401, 200]


def test_a_renewed_token_that_is_refused_again_is_not_renewed_twice(
    client: Auth0Client, auth0_server: FakeAuth0, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every token the server hands out is unknown to it: renewing cannot help.
    monkeypatch.setattr(auth0_server, "issue_token", lambda scopes=None: "eyJnot-a-valid-token")
    with pytest.raises(RemoteError, match="renewing it did not help") as caught:
        client.resolve_connection(DEFAULT_CONNECTION)
    assert "eyJnot-a-valid-token" not in str(caught.value)
    assert len(auth0_server.requests("POST", "/oauth/token")) == 2
    assert len(auth0_server.requests("GET", "/api/v2/connections")) == 2


def test_missing_scope_names_the_scopes(client: Auth0Client, auth0_server: FakeAuth0) -> None:
    auth0_server.scopes = {"read:users"}
    with pytest.raises(RemoteError, match=r"403.*read:connections"):
        client.resolve_connection(DEFAULT_CONNECTION)


# --- connections -------------------------------------------------------------------------------


def test_resolve_connection_by_name_and_by_id(client: Auth0Client, auth0_server: FakeAuth0) -> None:
    other = auth0_server.add_connection("Legacy-DB")
    assert client.resolve_connection("Legacy-DB") == other.id
    (request,) = auth0_server.requests("GET", "/api/v2/connections")
    assert dict(httpx.QueryParams(request.query))["name"] == "Legacy-DB"
    assert client.resolve_connection(other.id) == other.id
    assert len(auth0_server.requests("GET", "/api/v2/connections")) == 1  # ids need no lookup
    with pytest.raises(Refused, match="no connection named 'legacy-db'"):
        client.resolve_connection("legacy-db")


def test_server_filters_connections_by_strategy(auth0_server: FakeAuth0) -> None:
    token = auth0_server.issue_token()
    response = httpx.get(
        f"{auth0_server.base_url}/api/v2/connections",
        params={"strategy": "google-oauth2"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert [c["name"] for c in response.json()] == ["google-oauth2"]
    assert httpx.get(f"{auth0_server.base_url}/api/v2/connections").status_code == 401


# --- export jobs -------------------------------------------------------------------------------


def seed_two(server: FakeAuth0) -> None:
    server.add_user(
        "Jane@Example.com",
        given_name="Jane",
        email_verified=True,
        app_metadata={"plan": "premium", "roles": ["admin"]},
        user_metadata={"name": "Jane Q. Doe", "country": "NZ"},
        logins_count=19,
    )
    server.add_user("bob@example.com", user_metadata={"country": "US"})
    server.add_user("social@example.com", connection="google-oauth2")


def test_json_export_with_paths_roots_and_export_as(
    client: Auth0Client, auth0_server: FakeAuth0
) -> None:
    seed_two(auth0_server)
    jane = auth0_server.user_by_email("jane@example.com")
    bob = auth0_server.user_by_email("bob@example.com")
    assert jane and bob
    fields = [
        {"name": "user_id", "export_as": "Id"},
        {"name": "email"},
        {"name": "email_verified"},
        {"name": "identities[0].connection", "export_as": "Connection"},
        {"name": "user_metadata.country"},
        {"name": "app_metadata"},
        {"name": "given_name"},
        {"name": "logins_count"},
    ]
    data = export(client, connection_id=connection_id(auth0_server), fields=fields)
    assert lines(data) == [
        {
            "Id": jane["user_id"],
            "email": "jane@example.com",
            "email_verified": True,
            "Connection": DEFAULT_CONNECTION,
            "user_metadata.country": "NZ",
            "app_metadata": {"plan": "premium", "roles": ["admin"]},
            "given_name": "Jane",
            "logins_count": 19,
        },
        {
            "Id": bob["user_id"],
            "email": "bob@example.com",
            "email_verified": False,
            "Connection": DEFAULT_CONNECTION,
            "user_metadata.country": "US",
            "logins_count": 0,
        },
    ]


def test_missing_attributes_can_be_exported_as_null(
    client: Auth0Client, auth0_server: FakeAuth0
) -> None:
    seed_two(auth0_server)
    fields = [{"name": "email"}, {"name": "given_name", "export_as": "First"}]
    assert lines(export(client, fields=fields, limit=2))[1] == {"email": "bob@example.com"}
    auth0_server.export_missing = "null"
    assert lines(export(client, fields=fields, limit=2))[1] == {
        "email": "bob@example.com",
        "First": None,
    }


def test_export_request_sends_only_what_was_asked(
    client: Auth0Client, auth0_server: FakeAuth0
) -> None:
    seed_two(auth0_server)
    data = export(client)
    (request,) = auth0_server.requests("POST", "/api/v2/jobs/users-exports")
    assert json.loads(request.body) == {"format": "json"}  # never the OAS defaults
    exported = lines(data)
    assert len(exported) == 3  # no connection: every connection
    assert all("password_hash" not in user for user in exported)
    assert lines(export(client, limit=2, fields=[{"name": "email"}])) == [
        {"email": "jane@example.com"},
        {"email": "bob@example.com"},
    ]


def test_export_body_is_validated_like_auth0(auth0_server: FakeAuth0) -> None:
    token = auth0_server.issue_token()
    url = f"{auth0_server.base_url}/api/v2/jobs/users-exports"
    headers = {"Authorization": f"Bearer {token}"}
    bad_bodies = [
        {"format": "json", "sort": "email"},
        {"format": "xml"},
        {"connection_id": "con_short"},
        {"limit": 0},
        {"fields": [{"name": "email", "rename": "x"}]},
        {"fields": [{"name": "x" * 101}]},
    ]
    for body in bad_bodies:
        response = httpx.post(url, json=body, headers=headers)
        assert response.status_code == 400, body
        assert response.json()["message"].startswith("Payload validation error"), body


def test_csv_export_escapes_every_string_like_auth0(
    client: Auth0Client, auth0_server: FakeAuth0
) -> None:
    auth0_server.add_user(
        'a"b@example.com',
        given_name="'quoted",
        family_name="=SUM(A1)",
        email_verified=True,
        user_metadata={"note": 'x,"y"\nz'},
        logins_count=3,
    )
    fields = [
        {"name": "email", "export_as": "Email"},
        {"name": "given_name", "export_as": "Given, Name"},
        {"name": "family_name"},
        {"name": "email_verified"},
        {"name": "logins_count"},
        {"name": "created_at", "export_as": "Created At"},
        {"name": "user_metadata.note"},
        {"name": "user_metadata.missing"},
    ]
    data = export(client, format="csv", fields=fields)
    assert data.decode() == (
        'Email,"Given, Name",family_name,email_verified,logins_count,Created At,'
        "user_metadata.note,user_metadata.missing\n"
        '"\'a""b@example.com","\'\'quoted","\'=SUM(A1)",true,3,2021-09-16T03:24:32.897Z,'
        '"\'x,""y""\nz",\n'
    )


def test_csv_cell_rules() -> None:
    assert auth0_csv_cell("2021-09-16T03:24:32.897Z", date=True) == "2021-09-16T03:24:32.897Z"
    # A date-looking string in metadata is not Auth0-generated: it is escaped.
    assert auth0_csv_cell("2021-09-16T03:24:32.897Z") == '"\'2021-09-16T03:24:32.897Z"'
    assert auth0_csv_cell(False) == "false"
    assert auth0_csv_cell(2.5) == "2.5"
    assert auth0_csv_cell(None) == ""
    assert auth0_csv_cell({"a": "b"}) == '"\'{""a"":""b""}"'


def test_field_paths() -> None:
    user = {"identities": [{"connection": "c"}], "app_metadata": {"stripe": [{"id": "cus"}]}}
    assert resolve_path(user, "identities[0].connection") == "c"
    assert resolve_path(user, "app_metadata.stripe[0].id") == "cus"
    assert resolve_path(user, "identities") == [{"connection": "c"}]
    missing = [resolve_path(user, p) for p in ("identities[1].x", "nope", "app_metadata.x.y")]
    assert all(value is missing[0] for value in missing)
    assert missing[0] is not None


def test_polling_reports_progress_and_tolerates_unknown_statuses(
    client: Auth0Client, auth0_server: FakeAuth0, fake_time: FakeTime
) -> None:
    auth0_server.seed_users(3)
    auth0_server.export_timeline = ["pending", "waiting", "processing", "processing"]
    job = client.start_export()
    seen: list[dict[str, Any]] = []
    finished = client.poll_job(job["id"], seen.append)
    statuses = ["pending", "waiting", "processing", "processing", "completed"]
    assert [j["status"] for j in seen] == statuses
    progress = [(j["percentage_done"], j["time_left_seconds"]) for j in seen[2:4]]
    assert progress[0][0] < progress[1][0] and progress[0][1] > progress[1][1]
    assert finished["status"] == "completed" and "location" in finished
    assert fake_time.sleeps == [5.0] * 4


def test_polling_gives_up_after_the_timeout(
    client: Auth0Client, auth0_server: FakeAuth0, fake_time: FakeTime
) -> None:
    auth0_server.export_timeline = ["processing"] * 50
    job = client.start_export()
    with pytest.raises(RemoteError, match=r"still 'processing' after 0.01 h"):
        client.poll_job(job["id"], interval=10, timeout=36)
    assert fake_time.sleeps == [10, 10, 10, 10]


@pytest.mark.parametrize("status", ["failed", "expired"])
def test_a_failed_job_is_reported_with_its_details(
    client: Auth0Client, auth0_server: FakeAuth0, status: str
) -> None:
    auth0_server.faults.fail_next_job(status=status, status_details="Job timed out after 8h")
    job = client.start_export()
    with pytest.raises(JobFailed) as caught:
        client.poll_job(job["id"])
    assert str(caught.value) == f"Auth0 export job {job['id']} {status}: Job timed out after 8h"
    assert caught.value.exit_code == EXIT_DATA
    assert caught.value.job["status"] == status
    with pytest.raises(JobFailed):
        list(client.stream_export(job["id"]))


def test_an_unfinished_job_has_nothing_to_download(
    client: Auth0Client, auth0_server: FakeAuth0
) -> None:
    auth0_server.export_timeline = ["processing"] * 5
    job = client.start_export()
    with pytest.raises(RemoteError, match="is 'processing', not completed"):
        list(client.stream_export(job["id"]))
    assert not auth0_server.requests("GET", "/downloads/")


def test_unknown_job_is_a_remote_error(client: Auth0Client) -> None:
    with pytest.raises(RemoteError, match="no such job"):
        client.get_job("job_0000000000000000")


def test_download_rereads_the_job_and_sends_no_authorization(
    client: Auth0Client, auth0_server: FakeAuth0
) -> None:
    auth0_server.seed_users(4)
    export(client, fields=[{"name": "email"}])
    log = auth0_server.requests()
    (download,) = auth0_server.requests("GET", "/downloads/")
    assert download.header("authorization") is None
    before = log[log.index(download) - 1]
    assert before.method == "GET" and before.path.startswith("/api/v2/jobs/")
    # The file store refuses a second credential, as signed S3 links do.
    token = auth0_server.issue_token()
    location = client.get_job(before.path.rsplit("/", 1)[1])["location"]
    refused = httpx.get(location, headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 400 and b"Only one auth mechanism" in refused.content


def test_download_is_sniffed_not_trusted_by_name(
    client: Auth0Client, auth0_server: FakeAuth0
) -> None:
    auth0_server.seed_users(3)
    compressed = export(client, fields=[{"name": "email"}])
    auth0_server.export_gzip = False
    plain = export(client, fields=[{"name": "email"}])
    assert compressed == plain
    assert [u["email"] for u in lines(plain)] == [f"user{n}@example.com" for n in range(3)]
    location = client.get_job(auth0_server.requests("GET", "/downloads/")[-1].path.split("/")[2])
    assert location["location"].split("?")[0].endswith(".json.gz")


def test_open_export_reads_lines(client: Auth0Client, auth0_server: FakeAuth0) -> None:
    auth0_server.seed_users(5)
    job = client.start_export(fields=[{"name": "email"}])
    client.poll_job(job["id"])
    with client.open_export(job["id"]) as stream:
        emails = [json.loads(line)["email"] for line in stream]
    assert emails == [f"user{n}@example.com" for n in range(5)]


# --- download faults ---------------------------------------------------------------------------


def big_export(client: Auth0Client, server: FakeAuth0, count: int = 10000) -> tuple[str, bytes]:
    """A job whose file is several download chunks long, and its content fetched fault-free."""
    server.seed_synthetic(count)
    job = client.start_export()
    client.poll_job(job["id"])
    reference = b"".join(client.stream_export(job["id"]))
    stored = server.jobs[job["id"]].file
    assert stored is not None and (count < 10000 or stored.stat().st_size > 150_000)
    server.log.clear()
    return job["id"], reference


def test_expired_link_gets_a_fresh_one(
    client: Auth0Client, auth0_server: FakeAuth0, notices: list[str]
) -> None:
    job_id, reference = big_export(client, auth0_server, 50)
    auth0_server.faults.expire_downloads(2)
    assert b"".join(client.stream_export(job_id)) == reference
    downloads = auth0_server.requests("GET", "/downloads/")
    assert [d.status for d in downloads] == [403, 403, 200]
    assert len({d.query for d in downloads}) == 3  # each attempt used a newly read link
    assert any("Request has expired" in notice for notice in notices)


def test_link_ttl_really_expires(auth0_server: FakeAuth0, client: Auth0Client) -> None:
    auth0_server.seed_users(2)
    job = client.start_export()
    client.poll_job(job["id"])
    auth0_server.link_ttl = -1  # every link is already stale when it is used
    with pytest.raises(
        RemoteError, match="after 8 attempts: 403 AccessDenied: Request has expired"
    ):
        list(client.stream_export(job["id"]))
    auth0_server.link_ttl = 60
    assert len(lines(b"".join(client.stream_export(job["id"])))) == 2


def test_dropped_connection_resumes_with_a_range_request(
    client: Auth0Client, auth0_server: FakeAuth0
) -> None:
    job_id, reference = big_export(client, auth0_server)
    auth0_server.faults.drop_downloads(1, after_bytes=100_000)
    result = b"".join(client.stream_export(job_id))
    assert result == reference
    first, second = auth0_server.requests("GET", "/downloads/")
    assert first.header("range") is None
    assert second.header("range") == "bytes=100000-"
    assert second.status == 206


def test_dropped_connection_restarts_when_ranges_are_not_honoured(
    client: Auth0Client, auth0_server: FakeAuth0
) -> None:
    job_id, reference = big_export(client, auth0_server)
    auth0_server.range_support = False
    auth0_server.faults.drop_downloads(2)  # each time halfway
    chunks = list(client.stream_export(job_id))
    assert b"".join(chunks) == reference
    statuses = [d.status for d in auth0_server.requests("GET", "/downloads/")]
    assert statuses == [200, 200, 200]
    assert len(lines(b"".join(chunks))) == 10000


def test_drops_expiry_and_file_store_errors_together(
    client: Auth0Client, auth0_server: FakeAuth0
) -> None:
    job_id, reference = big_export(client, auth0_server)
    auth0_server.faults.drop_downloads(1, after_bytes=70_000)
    auth0_server.faults.expire_downloads(1)
    auth0_server.faults.server_errors(1, status=503, path="/downloads/")
    auth0_server.faults.drop_downloads(1, after_bytes=50_000)
    assert b"".join(client.stream_export(job_id)) == reference
    # The server decides a 5xx first, then expiry, then a drop: whatever the order they were
    # switched on in, each fault is met once, and the resumed requests pick up where it broke.
    downloads = auth0_server.requests("GET", "/downloads/")
    assert [d.status for d in downloads] == [503, 403, 200, 206, 206]
    ranges = [d.header("range") for d in downloads]
    assert ranges == [None, None, None, "bytes=70000-", "bytes=120000-"]


def test_a_download_that_never_progresses_gives_up(
    client: Auth0Client, auth0_server: FakeAuth0
) -> None:
    job_id, _ = big_export(client, auth0_server, 100)
    auth0_server.faults.drop_downloads(100, after_bytes=0)
    with pytest.raises(RemoteError, match=r"could not download export job .* after 8 attempts"):
        list(client.stream_export(job_id))
    assert len(auth0_server.requests("GET", "/downloads/")) == 8


def test_server_supports_ranges(auth0_server: FakeAuth0, client: Auth0Client) -> None:
    job_id, _ = big_export(client, auth0_server, 20)
    location = client.get_job(job_id)["location"]
    whole = httpx.get(location).content
    client_location = client.get_job(job_id)["location"]
    part = httpx.get(client_location, headers={"Range": "bytes=10-"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 10-{len(whole) - 1}/{len(whole)}"
    assert part.content == whole[10:]
    beyond = httpx.get(client_location, headers={"Range": f"bytes={len(whole)}-"})
    assert beyond.status_code == 416


# --- the decoder -------------------------------------------------------------------------------


def test_decoder_handles_one_byte_chunks_and_several_members() -> None:
    data = gzip.compress(b'{"a":1}\n') + gzip.compress(b'{"a":2}\n')
    decoder = _Decoder()
    out = b"".join(b"".join(decoder.feed(data[i : i + 1])) for i in range(len(data)))
    out += b"".join(decoder.finish("job"))
    assert out == b'{"a":1}\n{"a":2}\n'


def test_decoder_refuses_a_truncated_file() -> None:
    data = gzip.compress(b'{"a":1}\n' * 1000)
    decoder = _Decoder()
    list(decoder.feed(data[:-10]))
    with pytest.raises(RemoteError, match="ended before its gzip end"):
        list(decoder.finish("job_x"))


def test_decoder_refuses_corrupt_data() -> None:
    data = bytearray(gzip.compress(b"hello world\n" * 10))
    data[-6] ^= 0xFF  # the CRC
    with pytest.raises(RemoteError, match="not valid gzip"):
        list(_Decoder().feed(bytes(data)))


def test_decoder_output_chunks_are_bounded() -> None:
    compressor = zlib.compressobj(wbits=31)
    data = compressor.compress(b"\n" * (20 * OUTPUT_CHUNK)) + compressor.flush()
    decoder = _Decoder()
    chunks = list(decoder.feed(data)) + list(decoder.finish("job"))
    assert sum(map(len, chunks)) == 20 * OUTPUT_CHUNK
    assert max(map(len, chunks)) <= OUTPUT_CHUNK


def test_decoder_passes_plain_data_through() -> None:
    decoder = _Decoder()
    out = list(decoder.feed(b"{")) + list(decoder.feed(b'"a":1}\n')) + list(decoder.finish("j"))
    assert b"".join(out) == b'{"a":1}\n'


# --- rate limits and retries -------------------------------------------------------------------


def test_429_waits_until_the_reset_plus_jitter(
    client: Auth0Client, auth0_server: FakeAuth0, fake_time: FakeTime
) -> None:
    reset = int(fake_time.now) + 7
    auth0_server.faults.rate_limit(2, reset_at=reset)
    assert client.resolve_connection(DEFAULT_CONNECTION)
    statuses = [r.status for r in auth0_server.log]
    assert statuses == [429, 429, 200, 200]  # the token request, then the lookup
    # First wait: until the reset, plus jitter; the reset has then passed: jitter only.
    assert fake_time.sleeps == [7 + JITTER, JITTER]


def test_a_rate_limit_storm_is_ridden_out(
    client: Auth0Client, auth0_server: FakeAuth0, fake_time: FakeTime
) -> None:
    auth0_server.seed_users(2)
    auth0_server.faults.rate_limit(25, reset_at=int(fake_time.now) + 1)
    assert len(lines(export(client))) == 2
    assert len(fake_time.sleeps) >= 25


def test_an_endless_storm_gives_up_within_the_budget(
    auth0_server: FakeAuth0, fake_time: FakeTime, notices: list[str]
) -> None:
    auth0_server.faults.storm(reset_in=1)
    retry = RetryPolicy(rate_limit_budget=20, max_rate_limit_wait=3)
    fake_time.now = 10_000_000_000  # far past any Reset the server computes: waits are jitter
    with (
        make_client(auth0_server, fake_time, notices, retry=retry) as client,
        pytest.raises(RemoteError, match=r"still rate limited \(429\)"),
    ):
        client.resolve_connection(DEFAULT_CONNECTION)
    assert sum(fake_time.sleeps) <= 20
    assert len(fake_time.sleeps) == len(auth0_server.requests()) - 1 == 40
    auth0_server.faults.clear()


def test_far_away_reset_is_capped(
    auth0_server: FakeAuth0, fake_time: FakeTime, notices: list[str]
) -> None:
    auth0_server.faults.rate_limit(1, reset_at=int(fake_time.now) + 86400)
    with make_client(auth0_server, fake_time, notices) as client:
        client.resolve_connection(DEFAULT_CONNECTION)
    assert fake_time.sleeps == [RetryPolicy().max_rate_limit_wait + JITTER]


def test_intermittent_500s_back_off_exponentially(
    client: Auth0Client, auth0_server: FakeAuth0, fake_time: FakeTime
) -> None:
    auth0_server.seed_users(2)
    auth0_server.faults.server_errors(3, status=500)
    assert len(lines(export(client))) == 2
    backoff = RetryPolicy().backoff * (0.5 + JITTER / 2)
    assert fake_time.sleeps[:3] == [backoff, 2 * backoff, 4 * backoff]
    assert [r.status for r in auth0_server.requests()][:4] == [500, 500, 500, 200]


def test_persistent_500s_give_up(client: Auth0Client, auth0_server: FakeAuth0) -> None:
    auth0_server.faults.server_errors(None, status=502)
    with pytest.raises(RemoteError, match="failed after 6 attempts: 502"):
        client.resolve_connection(DEFAULT_CONNECTION)
    assert len(auth0_server.requests()) == 6


def test_connection_errors_are_retried_then_reported(fake_time: FakeTime) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Auth0Client(
        Credentials(f"http://127.0.0.1:{port}", token="tok-sekrit"),
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        jitter=lambda: JITTER,
    )
    with client, pytest.raises(RemoteError, match="ConnectError") as caught:
        client.resolve_connection(DEFAULT_CONNECTION)
    assert len(fake_time.sleeps) == 5
    assert "tok-sekrit" not in str(caught.value)


def test_a_hung_up_request_is_retried(
    client: Auth0Client, auth0_server: FakeAuth0, fake_time: FakeTime
) -> None:
    auth0_server.faults.hang_up(2, path="/api/v2/connections")
    assert client.resolve_connection(DEFAULT_CONNECTION) == connection_id(auth0_server)
    assert len(auth0_server.requests("GET", "/api/v2/connections")) == 3
    assert len(fake_time.sleeps) == 2


def test_a_hung_up_import_is_not_repeated(client: Auth0Client, auth0_server: FakeAuth0) -> None:
    # The job may have been created: a second upload could run the same users twice at once.
    auth0_server.faults.hang_up(1, path="/api/v2/jobs/users-imports")
    with pytest.raises(RemoteError, match="may or may not have started a job"):
        client.start_import(connection_id(auth0_server), users_file([{"email": "a@b.co"}]))
    assert len(auth0_server.requests("POST", "/api/v2/jobs/users-imports")) == 1


# --- import jobs -------------------------------------------------------------------------------


def test_import_is_multipart_with_explicit_flags(
    client: Auth0Client, auth0_server: FakeAuth0
) -> None:
    users = [{"email": "new@example.com", "email_verified": True}]
    job = client.start_import(
        connection_id(auth0_server), users_file(users), external_id="ndpipe-run-1"
    )
    assert job["status"] == "pending" and job["external_id"] == "ndpipe-run-1"
    assert job["send_completion_email"] is False and job["upsert"] is False
    (request,) = auth0_server.requests("POST", "/api/v2/jobs/users-imports")
    assert request.header("content-type").startswith("multipart/form-data; boundary=")
    body = request.body
    assert b'name="users"; filename="users.json"' in body
    assert b"Content-Type: text/json" in body
    assert b'name="send_completion_email"\r\n\r\nfalse' in body
    assert b'name="upsert"\r\n\r\nfalse' in body
    client.poll_job(job["id"])
    user = auth0_server.user_by_email("new@example.com")
    assert user is not None and user["email_verified"] is True
    assert user["user_id"].startswith("auth0|")


def test_import_over_512000_bytes_is_refused(client: Auth0Client, auth0_server: FakeAuth0) -> None:
    users = [{"email": f"u{n}@example.com", "name": "x" * 140} for n in range(3500)]
    data = users_file(users)
    assert len(data) > 512000
    with pytest.raises(ImportTooLarge, match="greater than maximum allowed: 512000") as caught:
        client.start_import(connection_id(auth0_server), data)
    assert caught.value.exit_code == EXIT_DATA
    assert not auth0_server.jobs
    assert [r.status for r in auth0_server.requests("POST", "/api/v2/jobs")] == [413]


def test_just_under_the_limit_is_accepted(client: Auth0Client, auth0_server: FakeAuth0) -> None:
    users = [{"email": f"u{n}@example.com", "name": "x" * 140} for n in range(2700)]
    data = users_file(users)
    assert 490_000 < len(data) < 500_000
    job = client.start_import(connection_id(auth0_server), data)
    summary = client.poll_job(job["id"])["summary"]
    assert summary == {"failed": 0, "updated": 0, "inserted": 2700, "total": 2700}


def test_a_third_import_waits_for_a_free_slot(
    auth0_server: FakeAuth0, fake_time: FakeTime, notices: list[str]
) -> None:
    connection = connection_id(auth0_server)
    first_job: list[str] = []

    def sleep(seconds: float) -> None:
        fake_time.sleep(seconds)
        if len(fake_time.sleeps) == 2:  # meanwhile, the first job finishes
            auth0_server.finish_job(first_job[0])

    with make_client(auth0_server, fake_time, notices, sleep=sleep) as client:
        first_job.append(client.start_import(connection, users_file([{"email": "a@x.io"}]))["id"])
        client.start_import(connection, users_file([{"email": "b@x.io"}]))
        third = client.start_import(connection, users_file([{"email": "c@x.io"}]))
    statuses = [r.status for r in auth0_server.requests("POST", "/api/v2/jobs/users-imports")]
    assert statuses == [202, 202, 429, 429, 202]
    assert fake_time.sleeps == [5.0, 10.0]
    assert auth0_server.jobs[third["id"]].status == "pending"
    assert sum(1 for notice in notices if "2 import jobs are active" in notice) == 2


def test_waiting_for_a_slot_is_bounded(
    auth0_server: FakeAuth0, fake_time: FakeTime, notices: list[str]
) -> None:
    connection = connection_id(auth0_server)
    retry = RetryPolicy(import_slot_wait=100)
    with make_client(auth0_server, fake_time, notices, retry=retry) as client:
        for email in ("a@x.io", "b@x.io"):
            client.start_import(connection, users_file([{"email": email}]))
        with pytest.raises(ImportSlotsBusy, match="2 active import jobs"):
            client.start_import(connection, users_file([{"email": "c@x.io"}]))
    assert fake_time.sleeps == [5.0, 10.0, 20.0, 40.0]


def test_completed_imports_free_their_slots(client: Auth0Client, auth0_server: FakeAuth0) -> None:
    for number in range(4):
        run_import(client, auth0_server, [{"email": f"user{number}@x.io"}])
    assert all(r.status == 202 for r in auth0_server.requests("POST", "/api/v2/jobs"))


@pytest.mark.parametrize(
    ("connection", "payload", "message"),
    [
        (DEFAULT_CONNECTION, b"", "Users file must not be empty"),
        (DEFAULT_CONNECTION, b"[]", "Users file must not be empty"),
        (DEFAULT_CONNECTION, b'[{"email": ', "Users file must be a valid JSON array"),
        (DEFAULT_CONNECTION, b'{"email": "a@b.co"}', "Users file must be a valid JSON array"),
        ("google-oauth2", b'[{"email": "a@b.co"}]', "Connection must be a database connection"),
    ],
)
def test_import_requests_auth0_refuses(
    client: Auth0Client, auth0_server: FakeAuth0, connection: str, payload: bytes, message: str
) -> None:
    with pytest.raises(RemoteError, match=f"400 {message}"):
        client.start_import(connection_id(auth0_server, connection), payload)
    assert len(auth0_server.requests("POST", "/api/v2/jobs")) == 1  # a 400 is not retried


def test_insert_and_conflict_without_upsert(client: Auth0Client, auth0_server: FakeAuth0) -> None:
    existing = auth0_server.add_user("taken@example.com", given_name="Keep")
    job, errors = run_import(
        client,
        auth0_server,
        [
            {"email": "Fresh@Example.com", "user_id": "abc123", "given_name": "Fresh"},
            {"email": "taken@example.com", "given_name": "Overwrite"},
            {"email": "double@example.com", "user_id": "auth0|xyz"},
        ],
    )
    assert job["summary"] == {"failed": 1, "updated": 0, "inserted": 2, "total": 3}
    assert [e["errors"][0]["code"] for e in errors] == ["DUPLICATED_USER"]
    assert errors[0]["user"] == {"email": "taken@example.com", "given_name": "Overwrite"}
    assert existing["given_name"] == "Keep"
    fresh = auth0_server.user_by_email("fresh@example.com")
    assert fresh and fresh["user_id"] == "auth0|abc123" and fresh["email"] == "fresh@example.com"
    # An exported id re-imported as is gets the strategy prefix twice, as on Auth0.
    double = auth0_server.user_by_email("double@example.com")
    assert double and double["user_id"] == "auth0|auth0|xyz"


def test_upsert_replaces_metadata_and_resets_email_verified(
    client: Auth0Client, auth0_server: FakeAuth0
) -> None:
    kept = auth0_server.add_user(
        "kept@example.com",
        email_verified=True,
        given_name="Kept",
        username="kept",
        app_metadata={"plan": "premium", "roles": ["admin"]},
        user_metadata={"country": "NZ", "language": "en"},
    )
    reset = auth0_server.add_user("reset@example.com", email_verified=True)
    before = json.loads(json.dumps(kept))
    job, errors = run_import(
        client,
        auth0_server,
        [
            {
                "email": "kept@example.com",
                "email_verified": True,
                "user_metadata": {"language": "de"},
                "username": "renamed",
                "blocked": True,
            },
            {"email": "reset@example.com", "nickname": "r"},
            {"email": "brand-new@example.com"},
        ],
        upsert=True,
    )
    assert job["summary"] == {"failed": 0, "updated": 2, "inserted": 1, "total": 3}
    assert errors == []
    assert [r.status for r in auth0_server.requests("GET", "/api/v2/jobs/")][-1] == 204
    # Metadata is replaced whole: "country" is gone. Non-upsertable attributes are ignored,
    # and everything not in the record is untouched.
    assert kept["user_metadata"] == {"language": "de"}
    assert kept["username"] == "kept" and "blocked" not in kept
    changed = {k for k in kept if kept[k] != before.get(k)} | (set(before) - set(kept))
    assert changed == {"user_metadata", "updated_at"}
    assert reset["email_verified"] is False and reset["nickname"] == "r"


def test_a_duplicate_email_in_one_file_fails(client: Auth0Client, auth0_server: FakeAuth0) -> None:
    job, errors = run_import(
        client,
        auth0_server,
        [
            {"email": "dup@example.com", "name": "First"},
            {"email": "DUP@example.com", "name": "Two"},
        ],
        upsert=True,
    )
    assert job["summary"] == {"failed": 1, "updated": 0, "inserted": 1, "total": 2}
    assert errors[0]["user"]["name"] == "Two"
    assert errors[0]["errors"][0]["code"] == "DUPLICATED_USER"
    user = auth0_server.user_by_email("dup@example.com")
    assert user and user["name"] == "First"


def test_schema_errors_are_reported_per_user(client: Auth0Client, auth0_server: FakeAuth0) -> None:
    bad = [
        {"given_name": "no email"},
        {"email": "a@example.com", "email_verified": "yes"},
        {"email": "b@example.com", "phone_number": "0211234567"},
        {"email": "c@example.com", "app_metadata": {"clientID": "x", "plan": "p"}},
        {
            "email": "d@example.com",
            "password_hash": "$2b$10$abcdefghijklmnopqrstuv",
            "custom_password_hash": {"algorithm": "md5", "hash": {"value": "5f4dcc3b5aa7"}},
        },
        {"email": "e@example.com", "created_at": "2021-01-01T00:00:00.000Z"},
        {"email": "not-an-email"},
        {"email": "f@example.com", "custom_password_hash": {"algorithm": "rot13", "hash": {}}},
        "just a string",
    ]
    job, errors = run_import(client, auth0_server, [*bad, {"email": "good@example.com"}])
    assert job["summary"] == {"failed": 9, "updated": 0, "inserted": 1, "total": 10}
    codes = [[e["code"] for e in item["errors"]] for item in errors]
    assert codes == [
        ["OBJECT_REQUIRED"],
        ["INVALID_TYPE"],
        ["PATTERN"],
        ["NOT_PASSED"],
        ["NOT_PASSED"],
        ["OBJECT_ADDITIONAL_PROPERTIES"],
        ["FORMAT"],
        ["ENUM_MISMATCH", "OBJECT_REQUIRED"],
        ["INVALID_TYPE"],
    ]
    assert errors[3]["errors"][0]["path"] == "app_metadata.clientID"
    # Hashes are redacted in the report, as Auth0 does.
    assert errors[4]["user"]["password_hash"] == "*****"
    assert errors[4]["user"]["custom_password_hash"]["hash"]["value"] == "*****"
    assert [u["email"] for u in auth0_server.users_in()] == ["good@example.com"]


def test_schema_accepts_a_full_valid_user() -> None:
    user = {
        "email": "full@example.com",
        "email_verified": True,
        "phone_number": "+64211234567",
        "phone_verified": False,
        "user_id": "abc",
        "username": "full",
        "given_name": "F",
        "family_name": "U",
        "name": "Full",
        "nickname": "f",
        "picture": "https://example.com/p.png",
        "blocked": False,
        "custom_password_hash": {"algorithm": "bcrypt", "hash": {"value": "$2b$10$x"}},
        "app_metadata": {"plan": "p"},
        "user_metadata": {"a": 1},
        "mfa_factors": [{"totp": {"secret": "2PRXZWZAYYDAWCD"}}],
    }
    assert validate_import_user(user) == []


def test_a_failed_import_job_reports_its_details(
    client: Auth0Client, auth0_server: FakeAuth0
) -> None:
    auth0_server.faults.fail_next_job("users_import", status_details="Failed to parse users file")
    job = client.start_import(connection_id(auth0_server), users_file([{"email": "a@b.co"}]))
    with pytest.raises(JobFailed, match=r"import job .* failed: Failed to parse users file"):
        client.poll_job(job["id"])
    with pytest.raises(JobFailed, match="Failed to parse users file") as caught:
        client.job_errors(job["id"])
    assert caught.value.job["status"] == "failed"


def test_import_rides_out_rate_limits_and_500s(
    client: Auth0Client, auth0_server: FakeAuth0, fake_time: FakeTime
) -> None:
    path = "/api/v2/jobs/users-imports"
    auth0_server.faults.rate_limit(2, reset_at=int(fake_time.now) + 2, path=path)
    auth0_server.faults.server_errors(1, status=503, path=path)
    job, errors = run_import(client, auth0_server, [{"email": "a@b.co"}])
    assert job["summary"]["inserted"] == 1 and errors == []
    assert [r.status for r in auth0_server.requests("POST", path)] == [429, 429, 503, 202]
    assert len(auth0_server.jobs) == 1


# --- secrets never leak ------------------------------------------------------------------------


def test_no_secret_or_token_in_notices_errors_or_the_wrong_places(
    client: Auth0Client, auth0_server: FakeAuth0, notices: list[str]
) -> None:
    auth0_server.seed_users(300)
    auth0_server.faults.rate_limit(1, reset_at=0)
    auth0_server.faults.server_errors(1)
    auth0_server.faults.drop_downloads(1)
    auth0_server.faults.expire_downloads(1)
    export(client)
    auth0_server.expire_tokens()
    run_import(client, auth0_server, [{"email": "user1@example.com"}])
    auth0_server.expire_tokens()
    auth0_server.client_secret = "rotated"
    with pytest.raises(RemoteError) as caught:
        client.get_job(next(iter(auth0_server.jobs)))
    secret = "s3cr3t-ndpipe-test-client-secret-do-not-print"
    tokens = {
        r.header("authorization").removeprefix("Bearer ")
        for r in auth0_server.requests(path="/api/v2/")
        if r.header("authorization")
    }
    assert len(tokens) == 2
    token_statuses = [r.status for r in auth0_server.requests("POST", "/oauth/token")]
    assert token_statuses == [429, 500, 200, 200, 401]
    texts = [*notices, str(caught.value), repr(caught.value), repr(client)]
    for text in texts:
        assert secret not in text
        for token in tokens:
            assert token not in text
    for request in auth0_server.log:
        raw = request.raw()
        if request.path == "/oauth/token":
            continue
        assert secret.encode() not in raw
        if request.path.startswith("/downloads/"):
            assert request.header("authorization") is None
            assert b"eyJ" not in raw
    assert notices  # the faults did produce notices, and they were checked


# --- malformed settings, and httpx's own errors -------------------------------------------------


def mock_client(
    handler: Callable[[httpx.Request], httpx.Response], fake_time: FakeTime, notices: list[str]
) -> Auth0Client:
    return Auth0Client(
        Credentials("tenant.auth0.com", token="mock-token-value"),
        transport=httpx.MockTransport(handler),
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        jitter=lambda: JITTER,
        notify=notices.append,
    )


def test_credentials_drop_the_whitespace_around_them() -> None:
    credentials = Credentials(" tenant.auth0.com\r\n", "id\t", "\tsecret-value\r\n", "tok-abc\r\n")
    assert credentials.base_url == "https://tenant.auth0.com"
    assert (credentials.client_id, credentials.client_secret, credentials.token) == (
        "id",
        "secret-value",
        "tok-abc",
    )
    assert Credentials("tenant.auth0.com", "id", "client-secret-of-the-test", " \r\n").token is None


@pytest.mark.parametrize("name", ["client_id", "client_secret", "token"])
@pytest.mark.parametrize("value", ["hush\nhush-value", "hush hush-value", "hush-hush-välue"])
def test_credentials_refuse_what_no_header_carries(name: str, value: str) -> None:
    given = {"client_id": "id", "client_secret": "client-secret-of-the-test", name: value}
    with pytest.raises(UsageError, match="only visible ASCII") as caught:
        Credentials("tenant.auth0.com", **given)
    assert "hush" not in str(caught.value)


@pytest.mark.parametrize(
    "domain", ["http://[::1", "http://[::1]x", "http://h:99999", "http://h:port", "https://"]
)
def test_a_malformed_domain_is_a_usage_error(domain: str) -> None:
    with pytest.raises(UsageError, match="domain") as caught:
        Auth0Client(Credentials(domain, token="a-token-value")).close()
    assert caught.value.__context__ is None


@pytest.mark.parametrize("token", ["hush-token-value\r", "hush\ntoken-value", "hush-tøken-value"])
def test_a_token_httpx_cannot_send_is_a_usage_error_and_not_retried(
    auth0_server: FakeAuth0, fake_time: FakeTime, notices: list[str], token: str
) -> None:
    credentials = Credentials(auth0_server.base_url, token="placeholder-token")
    object.__setattr__(credentials, "token", token)  # as if the checks had been skipped
    client = Auth0Client(credentials, sleep=fake_time.sleep, notify=notices.append)
    with client, pytest.raises(UsageError, match="could not be sent") as caught:
        client.resolve_connection(DEFAULT_CONNECTION)
    assert "hush" not in str(caught.value)
    assert caught.value.__context__ is None  # httpx's exception, which quotes it, is gone
    assert fake_time.sleeps == [] and notices == [] and auth0_server.log == []


def test_an_access_token_that_cannot_be_sent_is_never_sent(
    auth0_server: FakeAuth0,
    client: Auth0Client,
    fake_time: FakeTime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issue_token = auth0_server.issue_token
    issued: list[str] = []

    def with_crlf(scopes: Any = None) -> str:
        issued.append(issue_token(scopes))
        return issued[-1] + "\r\n"

    monkeypatch.setattr(auth0_server, "issue_token", with_crlf)
    with pytest.raises(RemoteError, match="cannot be sent in a header") as caught:
        client.resolve_connection(DEFAULT_CONNECTION)
    assert issued and issued[0] not in str(caught.value)
    assert [request.path for request in auth0_server.log] == ["/oauth/token"]
    assert fake_time.sleeps == []


def test_echoed_credentials_are_redacted(
    auth0_server: FakeAuth0, fake_time: FakeTime, notices: list[str]
) -> None:
    auth0_server.faults.echo_credentials(1, status=401, path="/oauth/token")
    with make_client(auth0_server, fake_time, notices) as client:
        with pytest.raises(Refused) as refused:
            client.resolve_connection(DEFAULT_CONNECTION)
        auth0_server.faults.echo_credentials(1, status=403, path="/api/v2/connections")
        with pytest.raises(Refused) as echoed:
            client.resolve_connection(DEFAULT_CONNECTION)
    assert "client_secret=[redacted]" in str(refused.value)
    assert "Authorization: Bearer [redacted]" in str(echoed.value)
    for text in (str(refused.value), str(echoed.value)):
        assert auth0_server.client_secret not in text
        assert all(token not in text for token in auth0_server.tokens)


def test_a_garbled_response_is_retried_then_a_remote_error(
    fake_time: FakeTime, notices: list[str]
) -> None:
    def garbled(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"not gzip")

    client = mock_client(garbled, fake_time, notices)
    with client, pytest.raises(RemoteError, match="after 6 attempts: DecodingError") as caught:
        client.resolve_connection(DEFAULT_CONNECTION)
    assert caught.value.exit_code == EXIT_REMOTE
    assert caught.value.__context__ is None
    assert len(fake_time.sleeps) == 5


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("http://[::1/x.gz?Signature=sig-value", "has no usable download location"),
        ("https://files.example:port/x.gz?Signature=sig-value", r"cannot be requested \(Inv"),
    ],
)
def test_an_unusable_download_link_is_a_remote_error(
    fake_time: FakeTime, notices: list[str], location: str, message: str
) -> None:
    def completed(request: httpx.Request) -> httpx.Response:
        job = {"id": "job_x", "type": "users_export", "status": "completed", "location": location}
        return httpx.Response(200, json=job)

    client = mock_client(completed, fake_time, notices)
    with client, pytest.raises(RemoteError, match=message) as caught:
        b"".join(client.stream_export("job_x"))
    assert "sig-value" not in str(caught.value)
    assert caught.value.__context__ is None
    assert fake_time.sleeps == []
