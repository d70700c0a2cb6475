"""to-marketo: records to Marketo leads through bulk lead import, against a loopback Marketo.

The CLI runs in real pipes (bash, bin/ndpipe) against tests/marketo_server.py, which follows
CRM.md §1: token by client credentials, bulk batches Queued -> Importing -> Complete, at most
2 importing, failures and warnings files with a reason column, and its faults.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.auth0_fixtures import auth0_env_fixture, auth0_server_fixture  # noqa: F401
from tests.auth0_server import DEFAULT_CONNECTION, FakeAuth0
from tests.conftest import ROOT, environment, ndjson, records, run_ndpipe
from tests.marketo_server import FakeMarketo

sys.path.insert(0, str(ROOT / "bench"))
from generate import users as generated_users

REPORT_KEYS = {"record", "input", "batch", "reason", "warning"}


@pytest.fixture(name="marketo")
def marketo_fixture() -> Iterator[FakeMarketo]:
    server = FakeMarketo().start()
    try:
        yield server
    finally:
        server.stop()
    server.check()
    # Whatever the test did: never more than 2 batches importing, the token never in a URL,
    # and every bulk call carried it in the Authorization header.
    assert server.max_importing <= 2
    for request in server.log:
        if server.token:
            assert server.token not in request.query
        assert "access_token" not in request.query
        if request.path.startswith("/bulk/"):
            assert (request.header("authorization") or "").startswith("Bearer ")
        else:
            # The client credentials go to the identity service only, as query parameters.
            assert request.path == "/identity/oauth/token", request.path
            assert request.header("authorization") is None


def run(
    pipeline: str, env: dict[str, str], cwd: Path, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    path = f"{ROOT / 'bin'}{os.pathsep}{os.environ['PATH']}"
    extra = {"NDPIPE_POLL_INTERVAL": "0", "NDPIPE_PROGRESS_INTERVAL": "0", **env, "PATH": path}
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipeline],
        input=stdin,
        capture_output=True,
        env=environment(extra),
        cwd=cwd,
        timeout=120,
    )


def clean(result: subprocess.CompletedProcess[bytes], *servers: Any) -> None:
    """No secret and no token on stderr or stdout, no traceback."""
    shown = result.stdout + result.stderr
    for server in servers:
        assert server.client_secret.encode() not in shown
        token = getattr(server, "token", None)
        if isinstance(token, str):
            assert token.encode() not in shown
    assert b"Traceback" not in result.stderr, result.stderr


def leads(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"email": f"lead{n}@example.com", "firstName": f"Name{n}", "lastName": 'Ñandú, "Q"'}
        for n in range(start, start + count)
    ]


def marketo_form(record: dict[str, Any]) -> dict[str, str]:
    """A record's values as Marketo stores them from the file: text, null as empty."""
    return {key: "" if value is None else str(value) for key, value in record.items()}


# --- the recipe, end to end ---------------------------------------------------------------------


def test_tenant_to_marketo_recipe_and_the_fixed_report(
    auth0_server: FakeAuth0, auth0_env: dict[str, str], marketo: FakeMarketo, tmp_path: Path
) -> None:
    users = list(generated_users(2000, seed=11, hostile_rate=0.03))
    auth0_server.export_timeline = []
    auth0_server.load_users(users)
    marked = sorted(u["given_name"] for u in users if u.get("given_name"))[:3]
    marketo.fail_values = set(marked)
    warned = sorted(u["family_name"] for u in users if u.get("family_name"))[-2:]
    marketo.warn_values = set(warned)
    pipeline = (
        f"ndpipe fetch --connection {DEFAULT_CONNECTION} | ndpipe select --preset marketo "
        "| tee selected.ndjson | ndpipe to-marketo --max-bytes 8000 --report failed.ndjson"
    )
    result = run(pipeline, {**auth0_env, **marketo.env()}, tmp_path)
    clean(result, auth0_server, marketo)
    selected = records((tmp_path / "selected.ndjson").read_bytes())
    report = records((tmp_path / "failed.ndjson").read_bytes())
    failed = [entry for entry in report if not entry.get("warning")]
    warnings = [entry for entry in report if entry.get("warning")]
    assert result.returncode == 1, result.stderr
    assert len(selected) > 1000 and len(marketo.batches) >= 6

    # Every record is in Marketo or in the report, with Marketo's reason and its own line.
    for entry in report:
        assert set(entry) <= REPORT_KEYS
        number = int(entry["input"].removeprefix("stdin:"))
        assert entry["record"] == selected[number - 1]
        assert entry["batch"] in marketo.batches and entry["reason"]
    failed_lines = {entry["input"] for entry in failed}
    for number, record in enumerate(selected, 1):
        if f"stdin:{number}" in failed_lines:
            continue
        assert marketo.leads[record["email"]] == marketo_form(record), number
    assert len(marketo.leads) == len(selected) - len(failed)
    reasons = {entry["reason"] for entry in failed}
    assert "Invalid value for field 'firstName'" in reasons
    assert any(entry["record"]["firstName"] in marked for entry in failed)
    assert {entry["record"]["lastName"] for entry in warnings} <= set(warned) and warnings
    summary = result.stderr.decode().strip().splitlines()[-1]
    assert f"{len(selected):,} records read" in summary and f"{len(failed):,} failed" in summary

    # Fix the failed records and give the report back: they are imported, and nothing else.
    marketo.fail_values = set()
    fixed = []
    for entry in failed:
        if not entry["record"].get("email") or "@" not in entry["record"]["email"]:
            entry["record"]["email"] = f"fixed{len(fixed)}@example.com"
        fixed.append(entry)
    (tmp_path / "fixed.ndjson").write_bytes(ndjson(fixed))
    batches_before = set(marketo.batches)
    again = run("ndpipe to-marketo --report again.ndjson fixed.ndjson", marketo.env(), tmp_path)
    clean(again, marketo)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.ndjson").read_bytes() == b""
    uploads = [r for r in marketo.requests("POST", "/bulk/v1/leads.json")][
        -len(set(marketo.batches) - batches_before) :
    ]
    assert sum(r.body_length > 0 for r in uploads) == len(set(marketo.batches) - batches_before)
    for entry in fixed:
        assert marketo.leads[entry["record"]["email"]] == marketo_form(entry["record"])
    assert len(marketo.leads) == len(selected)  # the fixed ones, and nothing else


# --- faults -----------------------------------------------------------------------------------


def test_faults_are_ridden_out(marketo: FakeMarketo, tmp_path: Path) -> None:
    marketo.faults.expire_token(path="/bulk/v1/leads/batch/", after=2)
    marketo.faults.code("601", path="/bulk/v1/leads.json", after=1)
    marketo.faults.code("1016", path="/bulk/v1/leads.json", after=2)
    marketo.faults.code("611", path="/bulk/v1/leads/batch/", after=3)
    marketo.faults.status(502, path="/bulk/v1/leads/batch/", after=4)
    marketo.faults.hang_up(path="/bulk/v1/leads/batch/", after=5)
    data = ndjson(leads(300))
    result = run("ndpipe to-marketo --max-bytes 5000", marketo.env(), tmp_path, data)
    clean(result, marketo)
    assert result.returncode == 0, result.stderr
    assert len(marketo.leads) == 300
    assert marketo.tokens_issued == 2
    codes = [request.code for request in marketo.log if request.code]
    assert sorted(codes) == sorted(["602", "601", "1016", "611"])
    stderr = result.stderr.decode()
    assert "refused the access token" in stderr and "1016" in stderr and "retrying" in stderr


def test_daily_quota_stops_with_exit_3_and_resumes(marketo: FakeMarketo, tmp_path: Path) -> None:
    marketo.fail_values = {"Name7"}
    marketo.faults.code("607", count=None, path="/bulk/v1/leads.json", after=3)
    data = ndjson(leads(200))
    (tmp_path / "leads.ndjson").write_bytes(data)
    command = "ndpipe to-marketo --max-bytes 2000 --report failed.ndjson leads.ndjson"
    result = run(command, marketo.env(), tmp_path)
    clean(result, marketo)
    assert result.returncode == 3, result.stderr
    message = result.stderr.decode()
    assert "607" in message and "00:00 Central Time" in message
    start = int(re.search(r"--start-at ([0-9]+)", message).group(1))  # type: ignore[union-attr]
    # The failures of the batches that ended are kept for the resume.
    report = records((tmp_path / "failed.ndjson").read_bytes())
    assert [entry["record"]["firstName"] for entry in report] == ["Name7"]
    imported = len(marketo.leads)
    assert 0 < imported < 199

    marketo.faults.clear()
    marketo.fail_values = set()
    resumed = run(f"{command} --start-at {start}".replace("failed.", "rest."), marketo.env(),
                  tmp_path)  # fmt: skip
    clean(resumed, marketo)
    assert resumed.returncode == 0, resumed.stderr
    assert len(marketo.leads) == 199  # all but the one in the report
    summary = resumed.stderr.decode().strip().splitlines()[-1]
    assert "in files before --start-at" in summary


def test_a_failed_batch_reports_every_row(marketo: FakeMarketo, tmp_path: Path) -> None:
    marketo.faults.fail_next_batch("Failed to import: file could not be parsed")
    # A later batch fails a row that its failures file does not list: said, and counted.
    marketo.fail_values = {"Name50"}
    marketo.missing_files = {"failures"}
    sent = leads(60)
    result = run("ndpipe to-marketo --max-bytes 1000 --report failed.ndjson", marketo.env(),
                 tmp_path, ndjson(sent))  # fmt: skip
    clean(result, marketo)
    assert result.returncode == 1, result.stderr
    report = records((tmp_path / "failed.ndjson").read_bytes())
    first = marketo.batches[min(marketo.batches)]
    assert first.status == "Failed" and report
    assert all(entry["batch"] == first.id for entry in report)
    assert all("file could not be parsed" in entry["reason"] for entry in report)
    assert [entry["record"] for entry in report] == sent[: len(report)]
    assert len(marketo.leads) == 60 - len(report) - 1
    stderr = result.stderr.decode()
    assert "Marketo counted 1 failed rows, but its failures file lists 0" in stderr
    assert f"{len(report) + 1} failed ({len(report)} in failed batches)" in stderr


def test_a_header_marketo_refuses_names_the_column(marketo: FakeMarketo, tmp_path: Path) -> None:
    data = ndjson([{"email": "a@example.com", "emailAddress": "a@example.com"}])
    result = run("ndpipe to-marketo", marketo.env(), tmp_path, data)
    clean(result, marketo)
    assert result.returncode == 1, result.stderr
    assert "1006" in result.stderr.decode() and "emailAddress" in result.stderr.decode()
    assert "REST API field name" in result.stderr.decode()


def test_bad_credentials_and_row_errors_on_stderr(marketo: FakeMarketo, tmp_path: Path) -> None:
    env = {**marketo.env(), "MARKETO_CLIENT_SECRET": "wrong-secret-value-123"}
    result = run("ndpipe to-marketo", env, tmp_path, ndjson(leads(2)))
    clean(result, marketo)
    assert b"wrong-secret-value-123" not in result.stderr
    assert result.returncode == 1 and b"refused the client credentials" in result.stderr
    # Without --report, each failed row is one line on stderr, with its line and reason.
    data = ndjson([*leads(2), {"email": "not an email", "firstName": "X"}])
    result = run("ndpipe to-marketo --quiet", marketo.env(), tmp_path, data)
    clean(result, marketo)
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert lines[0] == (
        "ndpipe to-marketo: stdin:3 (email not an email): failed in batch "
        f"{max(marketo.batches)}: Invalid email address"
    )
    assert len(lines) == 2 and "1 failed" in lines[1]


# --- before any request -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "environment_change", "expected"),
    [
        (["--lookup-field", "firstName"], {}, "cannot be a lookup field"),
        (["--max-bytes", "11MB"], {}, "10 MB"),
        ([], {"MARKETO_CLIENT_SECRET": ""}, "--client-secret"),
        ([], {"MARKETO_ENDPOINT": "https://123-abc-456.mktorest.com/soap"}, "path can only be"),
        (["--out", "leads.csv"], {}, "{n}"),
    ],
)
def test_usage_errors_exit_2_before_any_request(
    marketo: FakeMarketo, tmp_path: Path, arguments: list[str], environment_change: dict,
    expected: str,
) -> None:  # fmt: skip
    env = {**marketo.env(), **environment_change}
    command = [sys.executable, "-m", "ndpipe", "to-marketo", *arguments]
    result = subprocess.run(command, input=ndjson(leads(3)), capture_output=True,
                            env=environment(env), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr.decode()
    clean(result, marketo)
    assert marketo.log == []


def test_records_marketo_cannot_take_stop_before_sending(
    marketo: FakeMarketo, tmp_path: Path
) -> None:
    for record, expected in (
        ({"email": "a@example.com", "app_metadata": {"plan": "pro"}}, "field 'app_metadata'"),
        ({"Email Address": "a@example.com"}, "field 'Email Address' is not a Marketo"),
    ):
        result = run("ndpipe to-marketo", marketo.env(), tmp_path, ndjson([record]))
        assert result.returncode == 1, result.stderr
        assert result.stderr.decode().startswith(f"ndpipe to-marketo: stdin:1: {expected}")
        clean(result, marketo)
    assert marketo.log == []


# --- dry run --------------------------------------------------------------------------------------


def test_dry_run_writes_the_files_it_would_send(tmp_path: Path) -> None:
    records_in = [
        {"email": "'jane@example.com", "auth0CreatedAt": "2024-01-02T03:04:05.678Z"},
        *leads(40),
        {"email": "x@example.com", "dateOfBirth": "1990-01-02", "leadScore": 10**30},
    ]
    env = {"MARKETO_ENDPOINT": "", "MARKETO_CLIENT_ID": "", "MARKETO_CLIENT_SECRET": ""}
    command = (
        "ndpipe to-marketo --dry-run --format tsv --max-bytes 700 --out 'out/leads-{n:03d}.tsv'"
    )
    result = run(command, env, tmp_path, ndjson(records_in))
    assert result.returncode == 0, result.stderr
    stderr = result.stderr.decode()
    assert "escape-csv --unescape" in stderr and stderr.count("starts with '") == 1
    assert "nothing was sent" in stderr.splitlines()[-1]
    files = sorted((tmp_path / "out").iterdir())
    assert len(files) >= 3
    rows: list[dict[str, str]] = []
    for path in files:
        data = path.read_bytes()
        assert len(data) <= 700
        table = list(csv.reader(io.StringIO(data.decode(), newline=""), delimiter="\t"))
        assert "email" in table[0]
        rows += [dict(zip(table[0], row, strict=True)) for row in table[1:]]
    assert [row["email"] for row in rows] == [str(r["email"]) for r in records_in]
    assert rows[0]["auth0CreatedAt"] == "2024-01-02T03:04:05.678+00:00"
    assert rows[-1]["leadScore"] == str(10**30)
    assert rows[5]["lastName"] == 'Ñandú, "Q"'


# --- the client itself: waits that a CLI test cannot afford ---------------------------------------


def test_rate_limits_wait_for_the_next_window(marketo: FakeMarketo) -> None:
    from ndpipe.services.marketo.client import MarketoClient

    waits: list[float] = []
    clock = [1_000_013.0]
    marketo.faults.code("606", path="/bulk/v1/leads/batch/")
    marketo.faults.code("615", path="/bulk/v1/leads/batch/")
    with MarketoClient(
        marketo.base_url, marketo.client_id, marketo.client_secret,
        sleep=waits.append, clock=lambda: clock[0], jitter=lambda: 0.0,
    ) as client:  # fmt: skip
        created = client.create_batch(
            io.BytesIO(b"email\na@example.com\n"), filename="a.csv", format="csv",
            lookup_field="email", list_id=1001, partition="Default",
        )  # fmt: skip
        batch = client.batch(created["batchId"])
    # 606: to the next 20-second window (1,000,013 is 13 s into one); 615: a short back-off.
    assert waits == [7.0, 2.0]
    assert batch["status"] == "Importing"
    create = marketo.requests("POST", "/bulk/v1/leads.json")[0].params()
    assert create == {"format": ["csv"], "lookupField": ["email"], "listId": ["1001"],
                      "partitionName": ["Default"]}  # fmt: skip
    identity = marketo.requests("GET", "/identity/")[0].params()
    assert identity["client_secret"] == [marketo.client_secret]


def test_a_bad_line_stops_the_run_after_the_sent_batches_end(
    marketo: FakeMarketo, tmp_path: Path
) -> None:
    marketo.fail_values = {"Name3"}
    data = ndjson(leads(100)) + b'{"email": "broken@example.com",\n'
    command = "ndpipe to-marketo --format ssv --max-bytes 2000 --report failed.ndjson"
    result = run(command, marketo.env(), tmp_path, data)
    clean(result, marketo)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.decode().splitlines()
    error = next(number for number, line in enumerate(lines) if "stdin:101" in line)
    assert lines[error].startswith("ndpipe to-marketo: stdin:101: invalid JSON")
    assert lines[error - 1].endswith("the failures of the batches that ended are in failed.ndjson")
    # The records before the bad line were sent and settled; the one failure is reported.
    assert len(marketo.leads) == 99
    report = records((tmp_path / "failed.ndjson").read_bytes())
    assert [(entry["input"], entry["record"]["firstName"]) for entry in report] == [
        ("stdin:4", "Name3")
    ]


def test_token_is_renewed_before_it_expires(marketo: FakeMarketo) -> None:
    from ndpipe.services.marketo.client import MarketoClient

    clock = [5_000.0]
    with MarketoClient(marketo.endpoint + "/", marketo.client_id, marketo.client_secret,
                       clock=lambda: clock[0]) as client:  # fmt: skip
        created = client.create_batch(
            io.BytesIO(b"email\na@example.com\n"), filename="a.csv", format="csv",
            lookup_field=None, list_id=None, partition=None,
        )  # fmt: skip
        client.batch(created["batchId"])
        clock[0] += 3_550  # less than a minute of the token's hour left: asked again first
        client.batch(created["batchId"])
    identity = marketo.requests("GET", "/identity/oauth/token")
    assert len(identity) == 2
    # Asked before expiry, Marketo returns the same token with what is left of its life.
    assert marketo.tokens_issued == 1
    assert [r.path for r in marketo.log if r.path.startswith("/bulk/")] == [
        "/bulk/v1/leads.json", f"/bulk/v1/leads/batch/{created['batchId']}.json",
        f"/bulk/v1/leads/batch/{created['batchId']}.json",
    ]  # fmt: skip


def test_a_body_over_10_mb_is_refused_not_retried(marketo: FakeMarketo) -> None:
    from ndpipe.errors import Refused
    from ndpipe.services.marketo.client import MarketoClient

    big = io.BytesIO(b"email\n" + b"a@example.com\n" * 760_000)  # 10.6 MB
    client = MarketoClient(marketo.endpoint, marketo.client_id, marketo.client_secret)
    with client, pytest.raises(Refused, match=r"too large .*smaller --max-bytes"):
        client.create_batch(big, filename="big.csv", format="csv", lookup_field="email",
                            list_id=None, partition=None)  # fmt: skip
    assert len(marketo.requests("POST", "/bulk/v1/leads.json")) == 1
    assert marketo.batches == {}


def test_on_error_skip_reports_records_marketo_could_never_take_and_goes_on(tmp_path):
    lines = [
        {"email": "a@example.com"},
        {"email": "b@example.com", "user_metadata": {"plan": "pro"}},  # nested
        {"Email Address": "c@example.com"},  # a display name, not a REST name
        {"email": "d@example.com"},
    ]
    report = tmp_path / "report.ndjson"
    args = ["to-marketo", "--dry-run", "--out", str(tmp_path / "leads-{n}.csv")]
    result = run_ndpipe(*args, "--on-error", "skip", "--report", str(report), input=ndjson(lines))
    assert result.returncode == 1, result.stderr  # two records did not make it
    assert (tmp_path / "leads-1.csv").read_text() == "email\na@example.com\nd@example.com\n"
    entries = records(report.read_bytes())
    assert [(e["record"], e["input"]) for e in entries] == [
        (lines[1], "stdin:2"),
        (lines[2], "stdin:3"),
    ]
    assert "user_metadata" in entries[0]["reason"] and "Email Address" in entries[1]["reason"]
    assert "2 refused" in result.stderr.decode()
    # Without skip, the first such record stops the run, named.
    stopped = run_ndpipe(*args, input=ndjson(lines))
    assert stopped.returncode == 1
    assert "stdin:2: field 'user_metadata' is an object" in stopped.stderr.decode()
