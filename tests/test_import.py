"""`ndpipe import` end to end: the real CLI against the loopback Auth0 server.

Every test checks the tenant afterwards, and that no secret and no traceback reached the output.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from ndpipe.services.auth0.client import Auth0Client, Credentials
from tests.auth0_fixtures import auth0_env_fixture, auth0_server_fixture  # noqa: F401
from tests.auth0_server import DEFAULT_CONNECTION, FakeAuth0
from tests.conftest import FIXTURES, ndjson, records, run_ndpipe

FAST = {"NDPIPE_POLL_INTERVAL": "0"}


def users(count: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "email": f"User{n}@Example.com",
            "email_verified": n % 2 == 0,
            "given_name": f"=Given {n}",
            "user_metadata": {"n": n, "note": 'quote " and\nnewline', "zoë": "ü"},
            **extra,
        }
        for n in range(start, start + count)
    ]


def import_(env: dict[str, str], *args: str, input: bytes = b"", cwd: Path | None = None) -> Any:
    return run_ndpipe(
        "import", "--connection", DEFAULT_CONNECTION, *args, input=input, env={**env, **FAST},
        cwd=cwd,
    )  # fmt: skip


def clean(result: Any, server: FakeAuth0) -> None:
    output = result.stdout + result.stderr
    assert server.client_secret.encode() not in output
    assert b"Traceback" not in result.stderr
    assert result.stdout == b""
    for request in server.requests():
        if request.header("authorization"):
            assert request.header("authorization").startswith("Bearer ")


def import_posts(server: FakeAuth0) -> list[Any]:
    return [r for r in server.requests("POST", "/api/v2/jobs/users-imports") if r.status == 202]


def sent_users(server: FakeAuth0) -> list[dict[str, Any]]:
    jobs = sorted(
        (job for job in server.jobs.values() if job.type == "users_import"),
        key=lambda job: job.external_id or "",
    )
    return [user for job in jobs for user in job.users]


def test_users_are_imported_in_chunks_within_the_limits(auth0_server, auth0_env, tmp_path):
    given = users(60)
    result = import_(auth0_env, "--max-bytes", "1000", "--external-id", "run7",
                     "--report", str(tmp_path / "failed.ndjson"), input=ndjson(given))  # fmt: skip
    assert result.returncode == 0, result.stderr
    clean(result, auth0_server)

    posts = import_posts(auth0_server)
    assert len(posts) > 5
    for post in posts:
        assert int(post.header("content-length")) < 1000 + 1000  # the file plus multipart framing
        assert b'name="send_completion_email"\r\n\r\nfalse' in post.body
        assert b'name="upsert"\r\n\r\nfalse' in post.body
    jobs = sorted(job.external_id for job in auth0_server.jobs.values())
    assert jobs == [f"run7-{n:04d}" for n in range(1, len(posts) + 1)]
    # Every user sent once, in input order; none refused for a third active job.
    assert sent_users(auth0_server) == given
    assert not [r for r in auth0_server.requests("POST") if r.status == 429]
    assert len(auth0_server.users_in()) == 60
    jane = auth0_server.user_by_email("user7@example.com")
    assert jane is not None and jane["user_metadata"] == given[7]["user_metadata"]
    assert (tmp_path / "failed.ndjson").read_bytes() == b""
    summary = result.stderr.decode().strip().splitlines()[-1]
    assert summary == (
        f"ndpipe import: 60 users read, 60 sent in {len(posts)} jobs: 60 inserted, 0 updated, "
        "0 failed; 0 rejected before sending"
    )
    assert "submitted" in result.stderr.decode() and "completed" in result.stderr.decode()


def test_never_more_than_two_jobs_active(auth0_server, auth0_env):
    auth0_server.import_timeline = ["pending", "processing", "processing", "processing"]
    result = import_(auth0_env, "--max-bytes", "2000", "--quiet", input=ndjson(users(40)))
    assert result.returncode == 0, result.stderr
    # Replay the log: a job is active from its POST until a GET shows it completed.
    active: set[str] = set()
    peak = 0
    for request in auth0_server.requests():
        if request.method == "POST" and request.path.endswith("users-imports"):
            assert request.status == 202
            active.add(orjson.loads(request.response)["id"])
            peak = max(peak, len(active))
        elif request.method == "GET" and request.path.startswith("/api/v2/jobs/job_"):
            body = orjson.loads(request.response)
            if body.get("status") == "completed":
                active.discard(body["id"])
    assert peak == 2


def test_one_email_is_never_in_two_running_jobs(auth0_server, auth0_env, tmp_path):
    auth0_server.import_timeline = ["pending", "processing", "processing"]
    first = users(3)
    again = {**first[1], "email": "USER1@example.com", "given_name": "Second"}
    report = tmp_path / "failed.ndjson"
    given = [*first, again, *users(2, start=10)]
    result = import_(auth0_env, "--upsert", "--report", str(report), input=ndjson(given))
    assert result.returncode == 0, result.stderr
    # The duplicate started a second file, sent only after the first job had completed.
    jobs = sorted(auth0_server.jobs.values(), key=lambda job: job.external_id or "")
    assert [len(job.users) for job in jobs] == [3, 3]
    first_done = next(
        index
        for index, request in enumerate(auth0_server.requests())
        if request.path == f"/api/v2/jobs/{jobs[0].id}"
        and orjson.loads(request.response).get("status") == "completed"
    )
    second_posted = next(
        index
        for index, request in enumerate(auth0_server.requests())
        if request.method == "POST" and jobs[1].id.encode() in request.response
    )
    assert first_done < second_posted
    assert auth0_server.user_by_email("user1@example.com")["given_name"] == "Second"


def test_invalid_users_go_to_the_report_not_to_auth0(auth0_server, auth0_env, tmp_path):
    bad = [
        {"email": "not-an-email", "given_name": "X"},
        {"given_name": "no email"},
        {"email": "ok@example.com", "created_at": "2020-01-01T00:00:00.000Z"},
        {"email": "phone@example.com", "phone_number": "021 555 0100"},
    ]
    good = users(3)
    report = tmp_path / "failed.ndjson"
    result = import_(auth0_env, "--report", str(report), input=ndjson([good[0], *bad, *good[1:]]))
    assert result.returncode == 1
    clean(result, auth0_server)
    assert sent_users(auth0_server) == good
    entries = records(report.read_bytes())
    assert [entry["user"] for entry in entries] == bad
    assert [entry["input"] for entry in entries] == ["stdin:2", "stdin:3", "stdin:4", "stdin:5"]
    codes = [{error["code"] for error in entry["errors"]} for entry in entries]
    assert codes[1] == {"OBJECT_REQUIRED"}
    assert codes[2] == {"OBJECT_ADDITIONAL_PROPERTIES"}
    assert "4 rejected before sending; 4 users to fix (in" in result.stderr.decode()


def test_auth0_failures_are_reported_with_the_user_as_sent_and_can_be_sent_again(
    auth0_server, auth0_env, tmp_path
):
    auth0_server.load_users(
        [{**user, "email": user["email"].lower(), "user_id": f"auth0|{n:024x}",
          "identities": [{"connection": DEFAULT_CONNECTION}]}
         for n, user in enumerate(users(2))]
    )  # fmt: skip
    digest = {"value": "x2I1ct5XlvqlwDZjhzkiLw==", "encoding": "base64"}
    hashed = {"algorithm": "md5", "hash": digest}
    given = [{**user, "given_name": "New", "custom_password_hash": hashed} for user in users(4)]
    report = tmp_path / "failed.ndjson"
    result = import_(auth0_env, "--report", str(report), input=ndjson(given))
    assert result.returncode == 1
    clean(result, auth0_server)
    entries = records(report.read_bytes())
    # The users Auth0 failed, as they were sent: with their password hash, which Auth0's copy
    # in /errors redacts.
    assert [entry["user"] for entry in entries] == given[:2]
    assert all(entry["errors"][0]["code"] == "DUPLICATED_USER" for entry in entries)
    assert all(entry["job"].startswith("job_") for entry in entries)
    assert "4 sent in 1 job: 2 inserted, 0 updated, 2 failed" in result.stderr.decode()

    # The report goes back in as it is, here with --upsert, as a FILE argument.
    again = import_(auth0_env, "--upsert", str(report), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "2 sent in 1 job: 0 inserted, 2 updated, 0 failed" in again.stderr.decode()
    assert auth0_server.user_by_email("user0@example.com")["given_name"] == "New"


def test_a_failed_job_puts_its_users_in_the_report_and_the_rest_goes_on(
    auth0_server, auth0_env, tmp_path
):
    auth0_server.faults.fail_next_job(
        "users_import", status_details="Failed to parse users file when importing users."
    )
    report = tmp_path / "failed.ndjson"
    given = users(30)
    result = import_(auth0_env, "--max-bytes", "3000", "--report", str(report),
                     input=ndjson(given))  # fmt: skip
    assert result.returncode == 1
    clean(result, auth0_server)
    failed = records(report.read_bytes())
    assert failed and {entry["errors"][0]["code"] for entry in failed} == {"JOB_FAILED"}
    assert "Failed to parse users file" in failed[0]["errors"][0]["message"]
    imported = {user["email"] for user in auth0_server.users_in()}
    assert len(imported) + len(failed) == 30
    assert {entry["user"]["email"].lower() for entry in failed}.isdisjoint(imported)
    assert f"{len(failed)} in failed jobs" in result.stderr.decode()
    assert "Failed to parse users file" in result.stderr.decode()


def test_upsert_replaces_metadata_and_keeps_email_verified_when_sent(auth0_server, auth0_env):
    auth0_server.load_users(
        [{"user_id": "auth0|1", "email": "jane@example.com", "email_verified": True,
          "user_metadata": {"a": 1, "b": 2}, "identities": [{"connection": DEFAULT_CONNECTION}]},
         {"user_id": "auth0|2", "email": "bob@example.com", "email_verified": True,
          "user_metadata": {"a": 1}, "identities": [{"connection": DEFAULT_CONNECTION}]}]
    )  # fmt: skip
    given = [
        {"email": "jane@example.com", "email_verified": True, "user_metadata": {"b": 3}},
        {"email": "bob@example.com", "user_metadata": {"c": 1}},
    ]
    result = import_(auth0_env, "--upsert", input=ndjson(given))
    assert result.returncode == 0, result.stderr
    jane = auth0_server.user_by_email("jane@example.com")
    bob = auth0_server.user_by_email("bob@example.com")
    assert jane["user_metadata"] == {"b": 3} and jane["email_verified"] is True
    # What Auth0 does to a record without email_verified: the reason upsert-patch exists.
    assert bob["user_metadata"] == {"c": 1} and bob["email_verified"] is False


def test_dry_run_writes_the_chunks_and_sends_nothing(tmp_path):
    given = users(50)
    bad = {"email": "bad"}
    result = run_ndpipe(
        "import", "--dry-run", "--max-bytes", "1500", "--out", str(tmp_path / "c-{n:03d}.json"),
        "--report", str(tmp_path / "failed.ndjson"),
        input=ndjson([*given[:10], bad, *given[10:]]),
        env={"AUTH0_DOMAIN": "http://127.0.0.1:9", "AUTH0_CLIENT_ID": "",
             "AUTH0_CLIENT_SECRET": ""},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # the rejected user
    files = sorted(tmp_path.glob("c-*.json"))
    assert len(files) > 3
    assert [path.name for path in files] == [f"c-{n:03d}.json" for n in range(1, len(files) + 1)]
    chunks = [orjson.loads(path.read_bytes()) for path in files]
    assert all(len(path.read_bytes()) <= 1500 for path in files)
    assert [user for chunk in chunks for user in chunk] == given
    assert records((tmp_path / "failed.ndjson").read_bytes())[0]["user"] == bad
    assert f"dry run: 51 users read; 50 in {len(files)} files, 1 rejected" in result.stderr.decode()


def test_waits_for_other_import_jobs_in_the_tenant(auth0_server, auth0_env):
    # Two jobs someone else started keep the tenant busy: Auth0 answers 429 "2 active import
    # users jobs" until one ends.
    auth0_server.import_timeline = ["pending"]
    credentials = Credentials(auth0_server.base_url, auth0_server.client_id,
                              auth0_server.client_secret)  # fmt: skip
    connection = auth0_server.connection().id
    with Auth0Client(credentials) as client:
        others = [
            client.start_import(connection, orjson.dumps(users(1, start=100 + n)))["id"]
            for n in range(2)
        ]
    auth0_server.import_timeline = []
    seen = len(auth0_server.log)
    done = threading.Event()

    def finish_once_refused() -> None:
        # One of the others ends only after the tenant has told the run it is busy, however
        # slowly the run starts on a loaded machine.
        while not done.wait(0.05):
            if any(r.status == 429 for r in auth0_server.log[seen:]):
                auth0_server.finish_job(others[0])
                return

    watcher = threading.Thread(target=finish_once_refused, daemon=True)
    watcher.start()
    try:
        result = import_(auth0_env, input=ndjson(users(3)))
    finally:
        done.set()
        watcher.join()
    assert result.returncode == 0, result.stderr
    assert "2 import jobs are active in the tenant; waiting" in result.stderr.decode()
    assert len(auth0_server.users_in()) == 4


def test_rate_limits_and_server_errors_are_ridden_out(auth0_server, auth0_env):
    auth0_server.faults.rate_limit(2, reset_in=1, path="/api/v2/jobs/users-imports")
    auth0_server.faults.server_errors(2, path="/api/v2/jobs/job_")
    result = import_(auth0_env, input=ndjson(users(5)))
    assert result.returncode == 0, result.stderr
    clean(result, auth0_server)
    assert "rate limit" in result.stderr.decode()
    assert len(auth0_server.users_in()) == 5
    assert len(import_posts(auth0_server)) == 1


def test_wrong_credentials_exit_1_without_the_secret(auth0_server, auth0_env):
    env = {**auth0_env, "AUTH0_CLIENT_SECRET": "wrong-" + auth0_server.client_secret}
    result = import_(env, input=ndjson(users(2)))
    assert result.returncode == 1
    assert b"refused the client credentials" in result.stderr
    assert b"wrong-" not in result.stderr and b"Traceback" not in result.stderr
    assert not import_posts(auth0_server)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --connection"),
        (["--dry-run", "--connection", "x"], "give --out PATTERN"),
        (["--connection", "x", "--max-bytes", "600000"], "between"),
        (["--dry-run", "--out", "no-number.json"], "{n}"),
    ],
)
def test_usage_errors_before_reading(args, message, auth0_env, auth0_server):
    result = run_ndpipe("import", *args, input=ndjson(users(1)), env=auth0_env)
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert not auth0_server.requests()


def test_fixture_export_through_import_clean_imports_everything_valid(
    auth0_server, auth0_env, tmp_path
):
    export = (FIXTURES / "users.ndjson").read_bytes()
    rejects = str(tmp_path / "rejects.ndjson")
    cleaned = run_ndpipe("import-clean", "--rejects", rejects, input=export)
    result = import_(auth0_env, "--report", str(tmp_path / "failed.ndjson"), input=cleaned.stdout)
    clean(result, auth0_server)
    failed = records((tmp_path / "failed.ndjson").read_bytes())
    sent = records(cleaned.stdout)
    assert len(auth0_server.users_in()) + len(failed) == len(sent)
    # Local validation catches what the server would refuse: nothing fails for its schema.
    assert not [e for entry in failed for e in entry["errors"] if e["code"] != "DUPLICATED_USER"]


def test_without_a_report_each_failure_is_a_line_on_stderr(auth0_server, auth0_env):
    given = [users(1)[0], {"email": "not-an-email"}]
    result = import_(auth0_env, "--quiet", input=ndjson(given))
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith("ndpipe import: stdin:2: not-an-email failed: FORMAT email: ")
    assert lines[-1].endswith("1 rejected before sending; 1 user to fix")
    assert len(auth0_server.users_in()) == 1


def test_a_run_that_stops_says_where_to_resume_and_start_at_resumes(
    auth0_server, auth0_env, tmp_path
):
    given = users(40)
    report = tmp_path / "failed.ndjson"
    args = ("--upsert", "--max-bytes", "1000", "--external-id", "run", "--report", str(report))
    # The third import request is cut off: it may or may not have started a job, so it is not
    # repeated, and the run stops with exit 3.
    auth0_server.faults.hang_up(1, path="/api/v2/jobs/users-imports", after=2)
    result = import_(auth0_env, *args, input=ndjson(given))
    assert result.returncode == 3, result.stderr
    clean(result, auth0_server)
    message = result.stderr.decode().strip().splitlines()[-1]
    resume = int(message.rsplit("--start-at ", 1)[1])
    assert "may or may not have started a job" in message
    assert 1 <= resume <= 3
    sent = {job.external_id for job in auth0_server.jobs.values()}
    assert sent == {"run-0001", "run-0002"}

    first_run = set(auth0_server.jobs)
    for job_id in first_run:  # what Auth0 does on its own meanwhile
        auth0_server.finish_job(job_id)
    again = import_(auth0_env, *args, "--start-at", str(resume), input=ndjson(given))
    assert again.returncode == 0, again.stderr
    assert "in chunks before --start-at" in again.stderr.decode()
    numbers = sorted(
        int(job.external_id.rsplit("-", 1)[1])
        for job_id, job in auth0_server.jobs.items()
        if job_id not in first_run
    )
    assert numbers == list(range(resume, resume + len(numbers))) and numbers[-1] > 3
    assert sorted(user["email"] for user in auth0_server.users_in()) == sorted(
        user["email"].lower() for user in given
    )
