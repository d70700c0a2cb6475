"""to-salesforce through the real CLI, in real pipes, against the loopback org in
tests/salesforce_server.py: the recipe end to end on generated Auth0 users, the report and its
re-run, every fault the fake can play, and the promise that no job is ever left Open."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.generate import users as generated_users
from tests.conftest import ROOT, environment, ndjson, records, run_ndpipe
from tests.salesforce_server import FakeSalesforce, csv_rows

UPSERT = ["--object", "Contact", "--external-id", "Auth0_User_Id__c"]
# The Salesforce fields of an Auth0 user, as the recipe's select makes them.
SELECT = [
    "select",
    "Email=email",
    "FirstName=given_name",
    "LastName=family_name",
    "Auth0_User_Id__c=user_id",
    "Auth0_Logins_Count__c=logins_count",
    "Auth0_Email_Verified__c=email_verified",
]


@pytest.fixture(name="salesforce")
def salesforce_fixture() -> Iterator[FakeSalesforce]:
    server = FakeSalesforce().start()
    try:
        yield server
    finally:
        server.stop()
    server.check()


def sf_env(server: FakeSalesforce, **extra: str) -> dict[str, str]:
    env = {
        "SF_INSTANCE_URL": server.base_url,
        "SF_CLIENT_ID": server.client_id,
        "SF_CLIENT_SECRET": server.client_secret,
        "NDPIPE_POLL_INTERVAL": "0",
    }
    env.update(extra)
    return env


def contacts(count: int, start: int = 0) -> list[dict]:
    return [
        {
            "Email": f"user{n}@example.com",
            "FirstName": f"First{n}",
            "LastName": f"Last{n}",
            "Auth0_User_Id__c": f"auth0|{n:024x}",
        }
        for n in range(start, start + count)
    ]


def cell(value: object) -> str:
    """A value as the org stores it from a CSV cell."""
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def fix(entry: dict) -> dict:
    """A report line, fixed by hand: names cut to Salesforce's lengths, a LastName for all."""
    record = dict(entry["record"])
    record["LastName"] = (record.get("LastName") or "Unknown")[:80]
    if isinstance(record.get("FirstName"), str):
        record["FirstName"] = record["FirstName"][:40]
    return {**entry, "record": record}


def report_lines(path: Path) -> list[dict]:
    return records(path.read_bytes()) if path.exists() else []


def assert_no_secret(server: FakeSalesforce, *outputs: bytes) -> None:
    """No credential in any output, no token in any URL, every API call with a Bearer header."""
    tokens = set(server.tokens) | {server.client_secret}
    for output in outputs:
        for secret in tokens:
            assert secret.encode() not in output, output
    for request in server.log:
        assert "token" not in request.query.lower() and "secret" not in request.query.lower()
        if request.path.startswith("/services/data/"):
            assert (request.header("authorization") or "").startswith("Bearer ")


def assert_nothing_open(server: FakeSalesforce) -> None:
    assert server.open_jobs() == [], [job.id for job in server.open_jobs()]


def states_patched(server: FakeSalesforce) -> list[str]:
    return [
        records(request.body)[0]["state"]
        for request in server.requests("PATCH", "/jobs/ingest/")
        if request.body
    ]


# --- the recipe, end to end ------------------------------------------------------------------


def test_recipe_end_to_end_then_the_fixed_report(salesforce, tmp_path):
    users = list(generated_users(3000, seed=11, hostile_rate=0.05))
    source = tmp_path / "users.ndjson"
    source.write_bytes(ndjson(users))
    report = tmp_path / "failed.ndjson"
    env = environment(sf_env(salesforce))
    env["PATH"] = f"{ROOT / 'bin'}{os.pathsep}{env['PATH']}"
    select = " ".join(f"'{part}'" for part in SELECT)
    pipeline = (
        f"cat {source} | ndpipe {select} | tee {tmp_path}/selected.ndjson "
        f"| ndpipe to-salesforce {' '.join(UPSERT)} --max-bytes 50KB --report {report}"
    )
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipeline],
        env=env,
        capture_output=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr  # users without family_name fail
    selected = records((tmp_path / "selected.ndjson").read_bytes())
    assert len(selected) == len(users)
    failed = report_lines(report)
    stored = {record["Auth0_User_Id__c"]: record for record in salesforce.records()}
    reported = {entry["record"]["Auth0_User_Id__c"]: entry for entry in failed}
    # Every record is in the org or in the report, never both, never lost.
    assert set(stored) | set(reported) == {record["Auth0_User_Id__c"] for record in selected}
    assert not set(stored) & set(reported)
    assert failed and stored
    for entry in failed:
        number = int(entry["input"].removeprefix("stdin:"))
        assert entry["record"] == selected[number - 1]  # the record as read, and its line
        assert entry["job"] in salesforce.jobs
        assert entry["reason"].split(":")[0] in (
            "REQUIRED_FIELD_MISSING",
            "STRING_TOO_LONG",
            "INVALID_EMAIL_ADDRESS",
        )
    # What was stored is exactly what was selected (hostile values included).
    for record in selected:
        if record["Auth0_User_Id__c"] in stored:
            org = stored[record["Auth0_User_Id__c"]]
            for name, value in record.items():
                assert org.get(name, "") == cell(value), (name, record)
    assert len(salesforce.jobs) >= 4
    assert all(len(job.data or b"") <= 50_000 for job in salesforce.jobs.values())
    assert_nothing_open(salesforce)
    assert_no_secret(salesforce, result.stderr, result.stdout)
    assert result.stdout == b""
    # One upload per job, with its length (never chunked); results asked for gzip.
    puts = salesforce.requests("PUT", "/batches")
    assert len(puts) == len(salesforce.jobs)
    assert all(int(put.header("content-length")) == len(put.body) for put in puts)
    downloads = salesforce.requests("GET", "Results/")
    assert downloads and all("gzip" in d.header("accept-encoding") for d in downloads)
    summary = result.stderr.decode().strip().splitlines()[-1]
    assert f"{len(users):,} records read" in summary
    assert f"{len(stored):,} created" in summary and f"{len(failed):,} failed" in summary

    # Fix the report as a user would (a LastName for everyone who lacks one, values cut to the
    # field's length) and send it back as it is: only those records go, and all make it.
    fixed = tmp_path / "fixed.ndjson"
    fixed.write_bytes(ndjson([fix(entry) for entry in failed]))
    jobs_before = set(salesforce.jobs)
    again = tmp_path / "again.ndjson"
    result = run_ndpipe(
        "to-salesforce", *UPSERT, "--report", str(again), str(fixed), env=sf_env(salesforce)
    )
    assert result.returncode == 0, result.stderr
    assert report_lines(again) == []
    sent = [
        row
        for job_id in set(salesforce.jobs) - jobs_before
        for row in csv_rows(salesforce.jobs[job_id].data or b"")
    ]
    assert sorted(row["Auth0_User_Id__c"] for row in sent) == sorted(reported)
    assert len(salesforce.records()) == len(users)
    assert_nothing_open(salesforce)


def test_the_issue_recipe_in_one_process(salesforce, tmp_path):
    """fetch export.json.gz then select --preset salesforce-lead then to-salesforce: Leads need
    LastName and Company, which the preset fills when Auth0 has none."""
    export = tmp_path / "export.json.gz"
    export.write_bytes(
        gzip.compress(ndjson(list(generated_users(1500, seed=12, hostile_rate=0.1))))
    )
    report = tmp_path / "failed.ndjson"
    lead = ["--object", "Lead", "--external-id", "Auth0_User_Id__c", "--max-bytes", "40KB"]
    result = run_ndpipe(
        "fetch",
        str(export),
        "then",
        "select",
        "--preset",
        "salesforce-lead",
        "Auth0_User_Id__c=user_id",
        "then",
        "to-salesforce",
        *lead,
        "--report",
        str(report),
        env=sf_env(salesforce),
    )
    failed = report_lines(report)
    assert result.returncode == (1 if failed else 0), result.stderr
    stored = salesforce.records("Lead")
    assert len(stored) + len(failed) == 1500
    assert all(lead["LastName"] and lead["Company"] for lead in stored)
    assert all(entry["reason"].startswith("STRING_TOO_LONG") for entry in failed)
    result = run_ndpipe(
        "to-salesforce", *lead, input=ndjson([fix(e) for e in failed]), env=sf_env(salesforce)
    )
    assert result.returncode == 0, result.stderr
    assert len(salesforce.records("Lead")) == 1500
    assert_nothing_open(salesforce)


# --- faults ----------------------------------------------------------------------------------


def send(server, records_in, *args, env=None, **kw):
    return run_ndpipe(
        "to-salesforce", *args, input=ndjson(records_in), env=sf_env(server, **(env or {})), **kw
    )


@pytest.mark.parametrize("fault", ["expired-session", "dropped-upload", "flaky-org"])
def test_faults_are_ridden_out(salesforce, fault, tmp_path):
    if fault == "expired-session":
        salesforce.faults.expire_session(1, path=r"/jobs/ingest/\w+$", method="GET")
        salesforce.faults.expire_session(1, method="PUT")
        salesforce.faults.expire_session(1, path="successfulResults")
    elif fault == "dropped-upload":
        salesforce.faults.hang_up(1, method="PUT")
    else:
        salesforce.faults.server_errors(1, path="/batches")
        salesforce.faults.server_errors(1, status=500, path="Results")
        salesforce.faults.hang_up(1, path="successfulResults")
        salesforce.faults.hang_up(1, method="PATCH")
        salesforce.faults.request_limit(1, method="POST", path="/jobs/ingest$")
    result = send(salesforce, contacts(300), *UPSERT, "--max-bytes", "10KB")
    assert result.returncode == 0, result.stderr
    assert len(salesforce.records()) == 300
    assert_nothing_open(salesforce)
    assert_no_secret(salesforce, result.stderr)
    if fault == "expired-session":
        assert salesforce.tokens_issued == 4
    if fault == "dropped-upload":
        # The broken job was aborted, and its file went again in a new job.
        assert "Aborted" in states_patched(salesforce)
        assert sum(job.state == "Aborted" for job in salesforce.jobs.values()) == 1


def test_daily_limit_stops_with_the_resume_instruction(salesforce, tmp_path):
    # Three jobs go through, then the org's 24-hour allocation is used up.
    salesforce.faults.request_limit(None, daily=True, method="POST", path="/jobs/ingest$", after=3)
    data = contacts(300)
    data[5]["LastName"] = ""  # in file 1
    report = tmp_path / "report.ndjson"
    result = send(salesforce, data, *UPSERT, "--max-bytes", "5KB", "--report", str(report))
    assert result.returncode == 3, result.stderr
    message = result.stderr.decode()
    assert "TotalRequests" in message and "--start-at 4" in message, message
    # The failures of the files that were settled are kept.
    assert [entry["input"] for entry in report_lines(report)] == ["stdin:6"]
    assert_nothing_open(salesforce)
    done = len(salesforce.records())
    assert 0 < done < 300
    salesforce.faults.clear()
    result = send(salesforce, data, *UPSERT, "--max-bytes", "5KB", "--start-at", "4")
    assert result.returncode == 0, result.stderr
    assert len(salesforce.records()) == 299
    assert f"{done + 1:,} in files before --start-at" in result.stderr.decode()


def test_failed_job_reports_its_unprocessed_records(salesforce, tmp_path):
    salesforce.faults.fail_next_job("InternalServerError : Something went wrong", processed=40)
    data = contacts(100)
    data[10]["LastName"] = ""
    report = tmp_path / "report.ndjson"
    result = send(salesforce, data, *UPSERT, "--report", str(report))
    assert result.returncode == 1, result.stderr
    entries = report_lines(report)
    reasons = {entry["input"]: entry["reason"] for entry in entries}
    assert len(entries) == 61  # 1 failed of the 40 processed, 60 never processed
    assert reasons["stdin:11"].startswith("REQUIRED_FIELD_MISSING")
    unprocessed = [e for e in entries if e["reason"].startswith("not processed: job Failed")]
    assert len(unprocessed) == 60
    assert "Something went wrong" in unprocessed[0]["reason"]
    assert len(salesforce.records()) == 39
    summary = result.stderr.decode().splitlines()[-1]
    assert "39 created" in summary and "1 failed" in summary and "60 not processed" in summary


def test_unknown_header_fails_the_job_with_the_field_named(salesforce, tmp_path):
    data = contacts(30)
    data[5]["Favourite_Colour__c"] = "teal"
    report = tmp_path / "report.ndjson"
    result = send(salesforce, data, *UPSERT, "--report", str(report))
    assert result.returncode == 1
    entries = report_lines(report)
    assert [entry["record"] for entry in entries] == data
    assert {e["reason"] for e in entries} == {
        "not processed: job Failed: InvalidBatch : Field name not found : Favourite_Colour__c"
    }
    assert salesforce.records() == []
    assert_nothing_open(salesforce)


def test_duplicate_external_ids_and_stderr_without_report(salesforce):
    data = contacts(10)
    data[7]["Auth0_User_Id__c"] = data[2]["Auth0_User_Id__c"]
    result = send(salesforce, data, *UPSERT)
    assert result.returncode == 1
    lines = [line for line in result.stderr.decode().splitlines() if "DUPLICATE" in line]
    assert len(lines) == 2
    assert lines[0].startswith("ndpipe to-salesforce: stdin:3 (Auth0_User_Id__c auth0|")
    assert "stdin:8" in lines[1]
    assert len(salesforce.records()) == 8


def test_a_record_without_its_external_id_is_refused_with_its_line(salesforce, tmp_path):
    data = contacts(5)
    del data[1]["Auth0_User_Id__c"]
    data[3]["Auth0_User_Id__c"] = None
    report = tmp_path / "report.ndjson"
    result = send(salesforce, data, *UPSERT, "--report", str(report))
    assert result.returncode == 1
    entries = report_lines(report)
    assert [entry["input"] for entry in entries] == ["stdin:2", "stdin:4"]
    assert all("Auth0_User_Id__c" in entry["reason"] for entry in entries)
    assert len(salesforce.records()) == 3
    assert "2 refused before sending" in result.stderr.decode()


def test_token_only_is_not_renewed_and_secrets_stay_hidden(salesforce):
    token = salesforce.issue_token()
    salesforce.faults.echo_credentials(1, method="POST")
    result = run_ndpipe(
        "to-salesforce",
        *UPSERT,
        input=ndjson(contacts(3)),
        env={"SF_INSTANCE_URL": salesforce.base_url, "SF_ACCESS_TOKEN": token},
    )
    assert result.returncode == 1, result.stderr
    assert b"[redacted]" in result.stderr
    assert_no_secret(salesforce, result.stderr)
    salesforce.expire_tokens()
    result = run_ndpipe(
        "to-salesforce",
        *UPSERT,
        input=ndjson(contacts(3)),
        env={"SF_INSTANCE_URL": salesforce.base_url, "SF_ACCESS_TOKEN": token},
    )
    assert result.returncode == 1
    assert b"INVALID_SESSION_ID" in result.stderr and b"SF_ACCESS_TOKEN" in result.stderr
    assert_no_secret(salesforce, result.stderr)
    result = run_ndpipe(
        "to-salesforce",
        *UPSERT,
        input=ndjson(contacts(3)),
        env=sf_env(salesforce, SF_CLIENT_SECRET="wrong-secret-value-123"),
    )
    assert result.returncode == 1
    assert b"refused the client credentials" in result.stderr
    assert b"wrong-secret-value-123" not in result.stderr


def test_calls_go_where_the_token_answer_says(salesforce):
    # The My Domain URL given, and the instance_url the token answer names: the same server
    # under another host name.
    port = salesforce.base_url.rsplit(":", 1)[1]
    salesforce.instance_url = f"http://localhost:{port}"
    result = send(salesforce, contacts(20), *UPSERT)
    assert result.returncode == 0, result.stderr
    (token,) = salesforce.requests("POST", "/oauth2/token")
    assert token.header("host") == f"127.0.0.1:{port}"
    calls = salesforce.requests(path="/services/data/")
    assert calls and all(call.header("host") == f"localhost:{port}" for call in calls)


# --- no job left Open --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", [b'{"Email": "x@example.com",\n', b'{"Auth0_User_Id__c": "x", "LastName": {"a": 1}}\n']
)
def test_bad_input_mid_run_leaves_no_job_open(salesforce, bad):
    data = ndjson(contacts(200)) + bad + ndjson(contacts(50, start=200))
    result = run_ndpipe(
        "to-salesforce", *UPSERT, "--max-bytes", "10KB", input=data, env=sf_env(salesforce)
    )
    assert result.returncode == 1
    assert b"stdin:201" in result.stderr and b"Traceback" not in result.stderr
    assert len(salesforce.records()) == 200  # every file before the bad line went through
    assert_nothing_open(salesforce)


def start(args: list[str], server: FakeSalesforce, data: bytes) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "ndpipe", "to-salesforce", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(sf_env(server, NDPIPE_POLL_INTERVAL="0.05")),
        cwd=ROOT,
    )
    assert process.stdin is not None
    process.stdin.write(data)
    process.stdin.close()
    process.stdin = None
    return process


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("moment", "signame"),
    [("uploading", "SIGTERM"), ("uploading", "SIGINT"), ("polling", "SIGTERM")],
)
def test_a_stop_leaves_no_job_open(salesforce, moment, signame):
    if moment == "uploading":
        salesforce.faults.stall(30, method="PUT")
    else:
        salesforce.timeline = ["UploadComplete"] + ["InProgress"] * 100_000
    process = start(UPSERT, salesforce, ndjson(contacts(50)))
    if moment == "uploading":
        wait_for(salesforce.stalled.is_set)
    else:
        wait_for(lambda: any(job.state == "InProgress" for job in salesforce.jobs.values()))
    process.send_signal(getattr(signal, signame))
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == (143 if signame == "SIGTERM" else 130), stderr
    assert b"Traceback" not in stderr
    (job,) = salesforce.jobs.values()
    if moment == "uploading":
        assert job.state == "Aborted" and states_patched(salesforce) == ["Aborted"]
    else:
        assert states_patched(salesforce) == ["UploadComplete"]
        assert b"was still processing" in stderr
    assert_nothing_open(salesforce)


# --- operations, options -----------------------------------------------------------------------


def test_insert_joins_failures_back_by_the_whole_row(salesforce, tmp_path):
    data = [{k: v for k, v in c.items() if k != "Auth0_User_Id__c"} for c in contacts(40)]
    data += [dict(data[3]), dict(data[3])]  # identical rows: each needs its own result
    salesforce.reject("Contact", "FirstName", "First3", "FIELD_CUSTOM_VALIDATION_EXCEPTION:No 3")
    salesforce.reject("Contact", "FirstName", "First17", "FIELD_CUSTOM_VALIDATION_EXCEPTION:No 17")
    report = tmp_path / "report.ndjson"
    result = send(
        salesforce, data, "--object", "Contact", "--operation", "insert", "--report", str(report)
    )
    assert result.returncode == 1
    entries = report_lines(report)
    assert sorted(entry["input"] for entry in entries) == sorted(
        ["stdin:4", "stdin:18", "stdin:41", "stdin:42"]
    )
    assert all(entry["record"] == data[int(entry["input"][6:]) - 1] for entry in entries)
    sent = csv_rows(next(iter(salesforce.jobs.values())).data or b"")
    assert list(sent[0]) == ["Email", "FirstName", "LastName"]  # nothing added to the upload
    assert len(salesforce.records()) == 38


def test_update_by_id_and_null_as_na(salesforce, tmp_path):
    assert send(salesforce, contacts(5), *UPSERT).returncode == 0
    by_user = {r["Auth0_User_Id__c"]: r["Id"] for r in salesforce.records()}
    changes = [
        {"Id": by_user[c["Auth0_User_Id__c"]], "FirstName": None, "Title": "CTO"}
        for c in contacts(5)
    ]
    changes.append({"Id": "003000000000000AAA", "Title": "Ghost", "FirstName": None})
    report = tmp_path / "report.ndjson"
    result = send(
        salesforce,
        changes,
        "--object",
        "Contact",
        "--operation",
        "update",
        "--null-as-na",
        "--report",
        str(report),
    )
    assert result.returncode == 1
    (entry,) = report_lines(report)
    assert entry["input"] == "stdin:6" and entry["record"] == changes[5]
    assert entry["reason"].startswith("INVALID_CROSS_REFERENCE_KEY")
    for record in salesforce.records():
        assert record["Title"] == "CTO" and "FirstName" not in record  # #N/A cleared it
    # Without --null-as-na a null is an empty cell: the field is left as it is.
    result = send(
        salesforce,
        [{"Id": changes[0]["Id"], "Title": None, "LastName": "New"}],
        "--object",
        "Contact",
        "--operation",
        "update",
    )
    assert result.returncode == 0, result.stderr
    record = next(r for r in salesforce.records() if r["Id"] == changes[0]["Id"])
    assert record["Title"] == "CTO" and record["LastName"] == "New"


def test_dry_run_needs_no_credentials_and_writes_the_files(tmp_path):
    data = contacts(120)
    result = run_ndpipe(
        "to-salesforce",
        "--dry-run",
        "--out",
        str(tmp_path / "sf" / "contacts-{n:02d}.csv"),
        "--external-id",
        "Auth0_User_Id__c",
        "--max-bytes",
        "3KB",
        input=ndjson(data),
        env={"SF_CLIENT_SECRET": "", "SF_INSTANCE_URL": ""},
    )
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "sf").iterdir())
    assert len(files) >= 3 and all(f.stat().st_size <= 3000 for f in files)
    rows = [row for f in files for row in csv_rows(f.read_bytes())]
    assert rows == data
    assert b"dry run: 120 records read" in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--object", "Contact"], {}, b"--external-id"),
        (UPSERT, {"SF_CLIENT_SECRET": ""}, b"no Salesforce credentials"),
        ([*UPSERT, "--api-version", "30.0"], {}, b"API version"),
        ([*UPSERT, "--max-bytes", "150MB"], {}, b"100 MB"),
        ([*UPSERT, "--operation", "insert"], {}, b"upsert only"),
        (UPSERT, {"SF_CLIENT_SECRET": "has a space inside"}, b"SF_CLIENT_SECRET"),
        (UPSERT, {"SF_INSTANCE_URL": "ftp://example.com"}, b"SF_INSTANCE_URL"),
    ],
)
def test_usage_errors_exit_2_before_anything(salesforce, args, env, message):
    result = send(salesforce, contacts(2), *args, env=env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert b"has a space inside" not in result.stderr
    assert salesforce.log == []


@settings(max_examples=4, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.fixed_dictionaries(
            {"LastName": st.text(min_size=1, max_size=30).filter(lambda s: s != "#N/A")},
            optional={
                "FirstName": st.text(max_size=30),
                "Auth0_Logins_Count__c": st.integers(-(2**70), 2**70) | st.none(),
                "Description": st.text(alphabet="\",\n\r x'=é😀", max_size=40),
            },
        ),
        min_size=1,
        max_size=30,
    )
)
def test_values_arrive_exactly(salesforce, data):
    before = {r["Id"] for r in salesforce.records()}
    result = send(
        salesforce, data, "--object", "Contact", "--operation", "insert", "--max-bytes", "2KB"
    )
    assert result.returncode == 0, result.stderr
    new = [r for r in salesforce.records() if r["Id"] not in before]
    assert len(new) == len(data)
    expected = sorted(
        sorted((k, "" if v is None else str(v)) for k, v in record.items() if v not in (None, ""))
        for record in data
    )
    got = sorted(sorted((k, v) for k, v in r.items() if k != "Id") for r in new)
    assert got == expected


def test_on_error_skip_reports_nested_records_and_goes_on(tmp_path):
    lines = [
        {"Email": "a@example.com", "Id": "003A"},
        {"Email": "b@example.com", "Id": "003B", "Tags": ["x"]},
        {"Email": "c@example.com", "Id": "003C"},
    ]
    report = tmp_path / "report.ndjson"
    result = run_ndpipe(
        "to-salesforce", "--dry-run", "--out", str(tmp_path / "sf-{n}.csv"),
        "--operation", "update", "--on-error", "skip", "--report", str(report),
        input=ndjson(lines),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    sent = (tmp_path / "sf-1.csv").read_text()
    assert sent == "Email,Id\na@example.com,003A\nc@example.com,003C\n"
    (entry,) = records(report.read_bytes())
    assert entry["record"] == lines[1] and entry["input"] == "stdin:2"
    assert "'Tags' is an array" in entry["reason"]
