"""`ndpipe fetch` in tenant mode (export jobs), end to end against the loopback Auth0 server.

Every test runs the real command in a subprocess (`python -m ndpipe fetch ...`) with the
tenant in the environment, exactly as a user's shell would, and checks what a user sees:
stdout bytes and records, stderr text and the exit code. What the command sent is checked in
the server's request log. Jobs are polled without pauses (NDPIPE_POLL_INTERVAL=0).

Every run goes through `fetch()`, which also checks what must hold for any run: no traceback,
no client secret, token or signed download link on stderr, and nothing but NDJSON on stdout.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import sys
from typing import Any

import orjson
import pytest

from ndpipe.services.auth0.export import JobProgress
from tests.auth0_fixtures import auth0_env_fixture, auth0_server_fixture  # noqa: F401
from tests.auth0_server import DEFAULT_CONNECTION, NOT_EXPORTED, FakeAuth0
from tests.conftest import FIXTURES, ROOT, environment, records, run_ndpipe

EXPORT = records((FIXTURES / "users.ndjson").read_bytes())
FIELDS_FILE = FIXTURES / "csv" / "auth0-export.fields.json"
SYNTHETIC = 20000
# Where a dropped download stops: inside the file, and not on a 64 KiB boundary.
DROP_AT = 150_000
STARTED = re.compile(r"started export job (job_[A-Za-z0-9]+)")
TOKEN = re.compile(r"eyJ[A-Za-z0-9]{40}")
MISSING: Any = object()


# --- helpers ---------------------------------------------------------------------------------


def fetch(
    server: FakeAuth0, env: dict[str, str], *args: str, **extra_env: str
) -> subprocess.CompletedProcess[bytes]:
    """`ndpipe fetch ARGS` against SERVER; checks the invariants of every run."""
    full_env = {"AUTH0_TOKEN": "", **env, "NDPIPE_POLL_INTERVAL": "0", **extra_env}
    result = run_ndpipe("fetch", *args, env=full_env, timeout=90)
    check_clean(result, server, full_env)
    return result


def check_clean(
    result: subprocess.CompletedProcess[bytes], server: FakeAuth0, env: dict[str, str]
) -> None:
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    secrets = {server.client_secret, env.get("AUTH0_CLIENT_SECRET"), env.get("AUTH0_TOKEN")}
    secrets |= set(server.tokens)
    for secret in filter(None, secrets):
        assert secret not in err, err
        assert secret.encode() not in result.stdout
    assert not TOKEN.search(err), err
    assert "Signature=" not in err, err  # a signed download link is a credential too
    if result.stdout:
        assert result.stdout.endswith(b"\n")
        for line in result.stdout.splitlines():
            assert isinstance(orjson.loads(line), dict), line


def job_id_of(result: subprocess.CompletedProcess[bytes]) -> str:
    match = STARTED.search(result.stderr.decode())
    assert match, result.stderr.decode()
    return match.group(1)


def export_file(server: FakeAuth0, job_id: str) -> bytes:
    """The export file as the server stored it, decompressed."""
    job = server.jobs[job_id]
    assert job.file is not None
    return gzip.decompress(job.file.read_bytes())


def exported(user: dict[str, Any]) -> dict[str, Any]:
    """A user as a JSON export without fields holds it."""
    return {key: value for key, value in user.items() if key not in NOT_EXPORTED}


def leaf(user: Any, name: str) -> Any:
    """An export field (user_metadata.country, identities[0].connection) of a stored user."""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", name):
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(user, list) or index >= len(user):
                return MISSING
            user = user[index]
        else:
            if not isinstance(user, dict) or part not in user:
                return MISSING
            user = user[part]
    return user


def projected(
    users: list[dict[str, Any]], fields: list[tuple[str, str]], missing: str = "omit"
) -> list[dict[str, Any]]:
    """USERS as an export of FIELDS ((name, key) pairs) holds them."""
    result = []
    for user in users:
        line = {}
        for name, key in fields:
            value = leaf(user, name)
            if value is MISSING:
                if missing == "omit":
                    continue
                value = None
            line[key] = value
        result.append(line)
    return result


def stderr_lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return result.stderr.decode().splitlines()


def export_requests(server: FakeAuth0) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in server.requests("POST", "/api/v2/jobs/users-exports")]


def big_tenant(server: FakeAuth0) -> FakeAuth0:
    """The fixture users and 20,000 synthetic ones: a gzip file of several download chunks."""
    server.load_users(EXPORT)
    server.seed_synthetic(SYNTHETIC)
    return server


def check_full_export(
    result: subprocess.CompletedProcess[bytes], server: FakeAuth0
) -> list[dict[str, Any]]:
    """The run printed the whole export file: every record once, none cut, nothing else."""
    assert result.returncode == 0, result.stderr.decode()
    job_id = job_id_of(result)
    file = server.jobs[job_id].file
    assert file is not None and file.stat().st_size > DROP_AT > 2 * 64 * 1024
    assert result.stdout == export_file(server, job_id)
    users = records(result.stdout)
    assert len(users) == SYNTHETIC + len(EXPORT)
    assert len({user["email"] for user in users}) == len(users)
    assert stderr_lines(result)[-1] == f"ndpipe fetch: export job {job_id}: {len(users)} users"
    return users


def no_env_credentials(env: dict[str, str]) -> dict[str, str]:
    return {**env, "AUTH0_CLIENT_ID": "", "AUTH0_CLIENT_SECRET": "", "AUTH0_TOKEN": ""}


# --- exports ---------------------------------------------------------------------------------


def test_json_export_of_a_connection(auth0_server, auth0_env):
    auth0_server.load_users(EXPORT)
    auth0_server.add_user("social@example.com", connection="google-oauth2")
    hashed = auth0_server.add_user("hashed@example.com", password_hash="$2b$10$" + "a" * 53)
    result = fetch(auth0_server, auth0_env, "--connection", DEFAULT_CONNECTION)
    assert result.returncode == 0, result.stderr.decode()

    members = auth0_server.users_in(DEFAULT_CONNECTION)
    assert hashed in members and 20 < len(members) < len(auth0_server.users)
    assert records(result.stdout) == [exported(user) for user in members]
    assert b"password_hash" not in result.stdout
    (body,) = export_requests(auth0_server)
    assert body == {"format": "json", "connection_id": auth0_server.connection().id}

    job_id = job_id_of(result)
    lines = stderr_lines(result)
    assert lines[0] == (
        f"ndpipe fetch: started export job {job_id} (connection {DEFAULT_CONNECTION}, json)"
    )
    progress = [line for line in lines if line.startswith(f"ndpipe fetch: job {job_id}: ")]
    assert progress == lines[1:-1]  # nothing else in between
    done = [int(m) for m in re.findall(r"processing, (\d+)% done", "\n".join(progress))]
    assert done and done == sorted(set(done))
    assert progress[-1] == f"ndpipe fetch: job {job_id}: completed"
    assert lines[-1] == f"ndpipe fetch: export job {job_id}: {len(members)} users"

    quiet = fetch(auth0_server, auth0_env, "--connection", DEFAULT_CONNECTION, "--quiet")
    assert quiet.returncode == 0
    assert quiet.stderr == b""
    assert quiet.stdout == result.stdout


def test_export_of_all_connections_counts_one_user(auth0_server, auth0_env):
    auth0_server.add_user("only@example.com", connection="google-oauth2", given_name="Only")
    result = fetch(auth0_server, auth0_env)
    assert result.returncode == 0, result.stderr.decode()
    assert records(result.stdout) == [exported(u) for u in auth0_server.users.values()]
    (body,) = export_requests(auth0_server)
    assert body == {"format": "json"}  # no connection_id: every connection
    job_id = job_id_of(result)
    assert f"started export job {job_id} (all connections, json)" in stderr_lines(result)[0]
    assert stderr_lines(result)[-1] == f"ndpipe fetch: export job {job_id}: 1 user"


def test_connection_by_id_needs_no_lookup(auth0_server, auth0_env):
    auth0_server.load_users(EXPORT)
    google = auth0_server.connection("google-oauth2")
    result = fetch(auth0_server, auth0_env, "--connection", google.id)
    assert result.returncode == 0, result.stderr.decode()
    assert not auth0_server.requests("GET", "/api/v2/connections")
    (body,) = export_requests(auth0_server)
    assert body == {"format": "json", "connection_id": google.id}
    expected = [exported(user) for user in auth0_server.users_in("google-oauth2")]
    assert expected and records(result.stdout) == expected


def test_unknown_connection_name_is_reported(auth0_server, auth0_env):
    auth0_server.load_users(EXPORT)
    result = fetch(auth0_server, auth0_env, "--connection", DEFAULT_CONNECTION.lower())
    assert result.returncode != 0
    assert result.stdout == b""
    assert (
        f"no connection named {DEFAULT_CONNECTION.lower()!r} (names are case-sensitive)"
        in result.stderr.decode()
    )
    (lookup,) = auth0_server.requests("GET", "/api/v2/connections")
    assert f"name={DEFAULT_CONNECTION.lower()}" in lookup.query
    assert not export_requests(auth0_server)  # no job was started


def test_unknown_connection_name_exits_1(auth0_server, auth0_env):
    result = fetch(auth0_server, auth0_env, "--connection", "No-Such-Connection")
    assert result.returncode == 1, result.stderr.decode()


# --- fields, limits, samples -----------------------------------------------------------------


def test_fields_and_limit_are_sent_as_given(auth0_server, auth0_env):
    auth0_server.load_users(EXPORT)
    result = fetch(
        auth0_server,
        auth0_env,
        *("--field", "email", "--field", "user_metadata.country=country", "--limit", "3"),
    )
    assert result.returncode == 0, result.stderr.decode()
    (body,) = export_requests(auth0_server)
    assert body == {
        "format": "json",
        "limit": 3,
        "fields": [{"name": "email"}, {"name": "user_metadata.country", "export_as": "country"}],
    }
    first = list(auth0_server.users.values())[:3]
    expected = [{"email": u["email"], "country": u["user_metadata"]["country"]} for u in first]
    assert records(result.stdout) == expected
    assert all(list(record) == ["email", "country"] for record in records(result.stdout))


def test_sample_is_limit_10(auth0_server, auth0_env):
    auth0_server.load_users(EXPORT)
    result = fetch(auth0_server, auth0_env, "--sample", "--field", "user_id")
    assert result.returncode == 0, result.stderr.decode()
    (body,) = export_requests(auth0_server)
    assert body == {"format": "json", "limit": 10, "fields": [{"name": "user_id"}]}
    expected = [{"user_id": user["user_id"]} for user in list(auth0_server.users.values())[:10]]
    assert records(result.stdout) == expected
    assert stderr_lines(result)[-1].endswith(": 10 users")


def test_fields_file_is_sent_as_is(auth0_server, auth0_env):
    assert FIELDS_FILE.is_file()
    fields = json.loads(FIELDS_FILE.read_text())
    assert len(fields) > 5 and all(set(f) == {"name", "export_as"} for f in fields)
    auth0_server.load_users(EXPORT)
    result = fetch(
        auth0_server,
        auth0_env,
        "--connection",
        DEFAULT_CONNECTION,
        "--fields-file",
        str(FIELDS_FILE),
    )
    assert result.returncode == 0, result.stderr.decode()
    (body,) = export_requests(auth0_server)
    assert body["fields"] == fields
    pairs = [(f["name"], f["export_as"]) for f in fields]
    assert records(result.stdout) == projected(auth0_server.users_in(), pairs)
    assert any("Country" in record for record in records(result.stdout))


# --- csv jobs --------------------------------------------------------------------------------

CSV_FIELDS = [
    ("email", "email"),
    ("given_name", "given_name"),
    ("family_name", "family_name"),
    ("email_verified", "email_verified"),
    ("logins_count", "logins_count"),
    ("user_metadata.country", "country"),
    ("app_metadata.plan", "plan"),
    ("created_at", "created_at"),
]


def test_csv_job_comes_back_as_typed_ndjson(auth0_server, auth0_env):
    auth0_server.load_users(EXPORT)
    auth0_server.export_missing = "null"  # a JSON line then has null where a CSV cell is empty
    options = [
        f"--field={name}={key}" if name != key else f"--field={name}" for name, key in CSV_FIELDS
    ]
    as_json = fetch(auth0_server, auth0_env, *options)
    as_csv = fetch(auth0_server, auth0_env, *options, "--format", "csv")
    assert as_json.returncode == as_csv.returncode == 0, as_csv.stderr.decode()

    csv_job = job_id_of(as_csv)
    assert auth0_server.jobs[csv_job].format == "csv"
    stored = export_file(auth0_server, csv_job)
    assert stored.startswith(b"email,given_name,family_name,email_verified,")
    assert b'"\'jane.doe0@example.com"' in stored  # Auth0's escaping, undone by fetch
    assert f"started export job {csv_job} (all connections, csv)" in as_csv.stderr.decode()

    expected = projected(list(auth0_server.users.values()), CSV_FIELDS, missing="null")
    assert records(as_csv.stdout) == expected
    assert records(as_csv.stdout) == records(as_json.stdout)
    users = records(as_csv.stdout)
    assert all(isinstance(u["email_verified"], bool) for u in users)
    assert all(isinstance(u["logins_count"], int) for u in users)
    assert any(u["given_name"] and u["given_name"].startswith("=") for u in users)
    assert not any(isinstance(v, str) and v.startswith("'") for u in users for v in u.values())


def test_csv_job_of_whole_metadata_warns(auth0_server, auth0_env):
    auth0_server.add_user("meta@example.com", user_metadata={"country": "NZ"})
    result = fetch(
        auth0_server, auth0_env, "--format", "csv", "--field", "email", "--field", "user_metadata"
    )
    assert result.returncode == 0, result.stderr.decode()
    assert (
        "ndpipe fetch: a csv export cannot hold user_metadata as a whole object; name its "
        "fields (user_metadata.plan, ...) or use --format json"
    ) in stderr_lines(result)
    (body,) = export_requests(auth0_server)
    assert body["fields"] == [{"name": "email"}, {"name": "user_metadata"}]

    plain = fetch(auth0_server, auth0_env, "--format", "csv", "--field", "user_metadata.country")
    assert plain.returncode == 0
    assert "cannot hold" not in plain.stderr.decode()
    assert records(plain.stdout) == [{"user_metadata.country": "NZ"}]


# --- --job -----------------------------------------------------------------------------------


@pytest.mark.parametrize("format_", ["json", "csv"])
def test_job_downloads_an_existing_job_again(auth0_server, auth0_env, format_):
    auth0_server.load_users(EXPORT)
    first = fetch(auth0_server, auth0_env, "--format", format_, "--field", "email")
    assert first.returncode == 0, first.stderr.decode()
    job_id = job_id_of(first)
    assert list(auth0_server.jobs) == [job_id]

    again = fetch(auth0_server, auth0_env, "--job", job_id)
    assert again.returncode == 0, again.stderr.decode()
    assert again.stdout == first.stdout
    assert len(records(again.stdout)) == len(EXPORT)
    assert len(export_requests(auth0_server)) == 1  # no new job
    assert "started export job" not in again.stderr.decode()
    assert stderr_lines(again) == [
        f"ndpipe fetch: job {job_id}: completed",
        f"ndpipe fetch: export job {job_id}: {len(EXPORT)} users",
    ]


def test_job_that_does_not_exist(auth0_server, auth0_env):
    result = fetch(auth0_server, auth0_env, "--job", "job_doesNotExist0000")
    assert result.returncode == 1
    assert result.stdout == b""
    assert "no such job" in result.stderr.decode()
    assert "deleted after 24 hours" in result.stderr.decode()


# --- usage errors and file mode --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env_change", "message"),
    [
        (["fixtures/users.ndjson", "--connection", DEFAULT_CONNECTION], {}, "--connection is for"),
        (["--job", "job_abc", "--field", "email"], {}, "--field is for a new one"),
        (["--job", "job_abc", "--limit", "5"], {}, "--limit is for a new one"),
        (["--sample", "--limit", "3"], {}, "--sample is --limit 10"),
        (["--field", "a..b"], {}, "bad Auth0 field name 'a..b'"),
        (["--field", "x" * 101], {}, "1 to 100 characters"),
        (["--limit", "0"], {}, "--limit"),
        (["--fields-file", "fixtures/users.ndjson"], {}, "--fields-file"),
        ([], {"AUTH0_CLIENT_ID": "", "AUTH0_CLIENT_SECRET": ""}, "no Auth0 credentials"),
        ([], {"AUTH0_CLIENT_SECRET": ""}, "no Auth0 credentials"),
        ([], {"AUTH0_CLIENT_ID": ""}, "no Auth0 credentials"),
        ([], {"NDPIPE_POLL_INTERVAL": "soon"}, "NDPIPE_POLL_INTERVAL must be seconds"),
        (["--domain", "ftp://tenant.example"], {}, "must be a host name or an http(s) URL"),
    ],
)
def test_usage_errors_exit_2_before_any_request(auth0_server, auth0_env, args, env_change, message):
    full_env = {"AUTH0_TOKEN": "", "NDPIPE_POLL_INTERVAL": "0", **auth0_env, **env_change}
    result = run_ndpipe("fetch", *args, env=full_env)
    check_clean(result, auth0_server, full_env)
    assert result.returncode == 2, result.stderr.decode()
    assert message in result.stderr.decode()
    assert result.stdout == b""
    assert auth0_server.log == []


def test_source_with_a_tenant_domain_reads_the_file(auth0_server, auth0_env):
    result = fetch(auth0_server, auth0_env, "fixtures/users.ndjson")
    assert result.returncode == 0, result.stderr.decode()
    assert records(result.stdout) == EXPORT
    assert result.stderr == b""
    assert auth0_server.log == []


def test_stdin_with_a_tenant_domain_is_read(auth0_server, auth0_env):
    data = (FIXTURES / "users.ndjson").read_bytes()
    env = {"AUTH0_TOKEN": "", **auth0_env, "NDPIPE_POLL_INTERVAL": "0"}
    result = run_ndpipe("fetch", "-", input=data, env=env)
    check_clean(result, auth0_server, env)
    assert result.returncode == 0, result.stderr.decode()
    assert records(result.stdout) == EXPORT
    assert auth0_server.log == []


@pytest.mark.parametrize(
    ("args", "imported"),
    [(["fetch", "fixtures/users.ndjson"], False), (["fetch", "--job", "job_none"], True)],
)
def test_httpx_is_imported_only_for_a_tenant(auth0_server, auth0_env, args, imported):
    code = (
        "import sys, ndpipe.cli as c; "
        f"code = c.main({args!r}); "
        "print(code, 'httpx' in sys.modules, file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environment({**auth0_env, "AUTH0_TOKEN": "", "NDPIPE_POLL_INTERVAL": "0"}),
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    last = result.stderr.decode().splitlines()[-1]
    assert last == ("1 True" if imported else "0 False"), result.stderr.decode()


# --- faults: the output is still exactly the export ------------------------------------------


def test_expired_download_link_is_renewed(auth0_server, auth0_env):
    big_tenant(auth0_server).faults.expire_downloads(1)
    result = fetch(auth0_server, auth0_env)
    check_full_export(result, auth0_server)
    downloads = auth0_server.requests("GET", "/downloads/")
    assert [d.status for d in downloads] == [403, 200]
    assert downloads[0].query != downloads[1].query  # a fresh link
    assert all(d.header("authorization") is None for d in downloads)
    assert "download link refused (403 AccessDenied: Request has expired)" in (
        result.stderr.decode()
    )


@pytest.mark.parametrize("range_support", [True, False])
def test_dropped_download_resumes_without_repeating(auth0_server, auth0_env, range_support):
    big_tenant(auth0_server).range_support = range_support
    auth0_server.faults.drop_downloads(1, after_bytes=DROP_AT)
    result = fetch(auth0_server, auth0_env)
    check_full_export(result, auth0_server)
    first, second = auth0_server.requests("GET", "/downloads/")
    assert first.header("range") is None
    assert second.header("range") == f"bytes={DROP_AT}-"
    assert second.status == (206 if range_support else 200)
    assert f"resuming at byte {DROP_AT}" in result.stderr.decode()


def test_rate_limit_storm_is_waited_out(auth0_server, auth0_env):
    big_tenant(auth0_server).faults.rate_limit(2, reset_in=1)
    result = fetch(auth0_server, auth0_env)
    check_full_export(result, auth0_server)
    assert [r.status for r in auth0_server.log].count(429) == 2
    waits = re.findall(r"Auth0 rate limit reached; waiting (\d+\.\d) s", result.stderr.decode())
    assert len(waits) == 2 and all(0 < float(w) <= 3 for w in waits)


@pytest.mark.parametrize("path", [None, "/downloads/"])
def test_intermittent_server_errors_are_retried(auth0_server, auth0_env, path):
    big_tenant(auth0_server).faults.server_errors(2, path=path)
    result = fetch(auth0_server, auth0_env)
    check_full_export(result, auth0_server)
    failed = [r for r in auth0_server.log if r.status == 500]
    assert len(failed) == 2
    assert all(r.path.startswith("/downloads/") == (path is not None) for r in failed)
    if path is None:
        assert result.stderr.decode().count("500 Internal Server Error; retrying in") == 2


def test_download_that_keeps_failing_exits_3_with_whole_records(auth0_server, auth0_env):
    """A drop in the middle, then links that keep expiring: exit 3, the output so far is whole
    records only, and the message says how to download the job again, which then works."""
    big_tenant(auth0_server).faults.drop_downloads(1, after_bytes=DROP_AT)
    serve = auth0_server._download

    def serve_then_expire(handler: Any, request: Any) -> None:
        try:
            serve(handler, request)
        finally:
            if len(auth0_server.requests("GET", "/downloads/")) == 1:
                auth0_server.faults.expire_downloads(8)

    auth0_server._download = serve_then_expire  # type: ignore[method-assign]
    result = fetch(auth0_server, auth0_env)
    assert result.returncode == 3, result.stderr.decode()
    job_id = job_id_of(result)
    full = export_file(auth0_server, job_id)
    assert result.stdout and full.startswith(result.stdout) and len(result.stdout) < len(full)
    last = stderr_lines(result)[-1]
    assert last.startswith(f"ndpipe fetch: could not download export job {job_id} after 8 ")
    assert f"`ndpipe fetch --job {job_id}` downloads it again" in last
    assert "users" not in last  # no summary, as if complete
    assert [r.status for r in auth0_server.requests("GET", "/downloads/")][1:] == [403] * 7

    auth0_server.faults.clear()
    again = fetch(auth0_server, auth0_env, "--job", job_id)
    assert again.returncode == 0, again.stderr.decode()
    assert again.stdout == full


def test_downstream_that_stops_early_ends_quietly(auth0_server, auth0_env):
    big_tenant(auth0_server)
    env = {**auth0_env, "AUTH0_TOKEN": "", "NDPIPE_POLL_INTERVAL": "0"}
    result = run_ndpipe("fetch", "then", "head", "-n", "2", env=env)
    check_clean(result, auth0_server, env)
    assert result.returncode == 0, result.stderr.decode()
    full = export_file(auth0_server, job_id_of(result))
    assert result.stdout == b"".join(full.splitlines(keepends=True)[:2])


# --- Auth0 says no ---------------------------------------------------------------------------


def test_wrong_client_secret_exits_1(auth0_server, auth0_env):
    wrong = "wrong-secret-must-not-be-printed"
    result = fetch(auth0_server, auth0_env, AUTH0_CLIENT_SECRET=wrong)
    assert result.returncode == 1, result.stderr.decode()
    assert result.stdout == b""
    message = result.stderr.decode()
    assert "refused the client credentials" in message
    assert auth0_server.client_id in message
    assert wrong not in message
    assert len(auth0_server.requests("POST", "/oauth/token")) == 1
    assert not auth0_server.requests(path="/api/v2/")


def test_credentials_on_the_command_line(auth0_server, auth0_env):
    auth0_server.load_users(EXPORT)
    result = fetch(
        auth0_server,
        no_env_credentials({}),
        *("--domain", auth0_server.base_url, "--client-id", auth0_server.client_id),
        *("--client-secret", auth0_server.client_secret, "--connection", DEFAULT_CONNECTION),
    )
    assert result.returncode == 0, result.stderr.decode()
    assert records(result.stdout) == [exported(u) for u in auth0_server.users_in()]


def test_ready_token_needs_no_token_request(auth0_server, auth0_env):
    auth0_server.load_users(EXPORT)
    token = auth0_server.issue_token()
    env = {**no_env_credentials(auth0_env), "AUTH0_TOKEN": token}
    result = fetch(auth0_server, env, "--connection", DEFAULT_CONNECTION)
    assert result.returncode == 0, result.stderr.decode()
    assert records(result.stdout) == [exported(u) for u in auth0_server.users_in()]
    assert not auth0_server.requests("POST", "/oauth/token")
    api = auth0_server.requests(path="/api/v2/")
    assert api and all(r.header("authorization") == f"Bearer {token}" for r in api)
    downloads = auth0_server.requests("GET", "/downloads/")
    assert downloads and all(r.header("authorization") is None for r in downloads)


def test_refused_ready_token_exits_1(auth0_server, auth0_env):
    token = auth0_server.issue_token()
    auth0_server.expire_tokens()
    env = {**no_env_credentials(auth0_env), "AUTH0_TOKEN": token}
    result = fetch(auth0_server, env, "--connection", DEFAULT_CONNECTION)
    assert result.returncode == 1, result.stderr.decode()
    assert "check the token" in result.stderr.decode()
    assert token not in result.stderr.decode()
    assert result.stdout == b""


@pytest.mark.parametrize("status", ["failed", "expired"])
def test_failed_job_exits_1_with_its_details(auth0_server, auth0_env, status):
    auth0_server.load_users(EXPORT)
    details = "Job failed: the export store is on fire"
    auth0_server.faults.fail_next_job("users_export", status=status, status_details=details)
    result = fetch(auth0_server, auth0_env)
    assert result.returncode == 1, result.stderr.decode()
    assert result.stdout == b""
    job_id = job_id_of(result)
    assert (
        stderr_lines(result)[-1] == f"ndpipe fetch: Auth0 export job {job_id} {status}: {details}"
    )
    assert f"ndpipe fetch: job {job_id}: {status}" in stderr_lines(result)
    assert not auth0_server.requests("GET", "/downloads/")


# --- JobProgress -----------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


READINGS = [
    {"id": "job_1", "status": "pending"},
    {"id": "job_1", "status": "pending"},
    {"id": "job_1", "status": "processing", "percentage_done": 10, "time_left_seconds": 30},
    {"id": "job_1", "status": "processing", "percentage_done": 10, "time_left_seconds": 30},
    {"id": "job_1", "status": "processing", "percentage_done": 50, "time_left_seconds": 120},
    {"id": "job_1", "status": "completed", "percentage_done": 50, "time_left_seconds": 9},
    {"id": "job_1", "status": "completed"},
]


def test_job_progress_redraws_one_bar_on_a_terminal():
    stream = Terminal()
    progress = JobProgress("fetch", stream=stream)
    for reading in READINGS:
        progress(reading)
    assert "\n" not in stream.getvalue()
    progress.close()
    progress.close()  # a second close adds nothing
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    frames = text[:-1].split("\r")
    assert frames[0] == "" and len(frames) == len(READINGS) + 1
    label = "ndpipe fetch: job job_1"
    assert frames[1] == f"{label} [{'.' * 30}] pending\x1b[K"
    assert frames[3] == f"{label} [{'#' * 3}{'.' * 27}] processing, 10% done, about 30 s left\x1b[K"
    assert (
        frames[5] == f"{label} [{'#' * 15}{'.' * 15}] processing, 50% done, about 2 min left\x1b[K"
    )
    assert frames[6] == frames[7] == f"{label} [{'#' * 30}] completed\x1b[K"


def test_job_progress_writes_a_line_per_change_elsewhere():
    stream = io.StringIO()
    progress = JobProgress("fetch", stream=stream)
    for reading in READINGS:
        progress(reading)
    progress.close()
    assert stream.getvalue().splitlines() == [
        "ndpipe fetch: job job_1: pending",
        "ndpipe fetch: job job_1: processing, 10% done, about 30 s left",
        "ndpipe fetch: job job_1: processing, 50% done, about 2 min left",
        "ndpipe fetch: job job_1: completed",
    ]
    assert "\r" not in stream.getvalue() and stream.getvalue().endswith("completed\n")


def test_job_progress_disabled_writes_nothing():
    stream = Terminal()
    progress = JobProgress("fetch", enabled=False, stream=stream)
    for reading in READINGS:
        progress(reading)
    progress.close()
    assert stream.getvalue() == ""
