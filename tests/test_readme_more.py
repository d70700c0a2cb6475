"""The README's scripts and code that tests/test_readme.py cannot run line by line.

The text comes from README.md itself, found by section heading, so the README and these tests
cannot drift apart:

- the `diff` examples chained with `&&` (run with bash, `/tmp/` moved into the test's directory);
- the daily CRM sync script in the `diff` section, run twice against the loopback Auth0 server;
- the `Users from a spreadsheet` recipe, against the loopback server;
- the `Python API` code blocks (the Dask one only when dask is importable).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.auth0_fixtures import auth0_env_fixture, auth0_server_fixture  # noqa: F401
from tests.auth0_server import DEFAULT_CONNECTION, FakeAuth0
from tests.conftest import FIXTURES, ROOT, environment, records, shell
from tests.test_spreadsheet_users import EXPECTED as SPREADSHEET_USERS

README = (ROOT / "README.md").read_text()
EXPORT = records((FIXTURES / "users.ndjson").read_bytes())
FORMULA_STARTS = tuple("=+-@\t\r")


def section(heading: str) -> str:
    """The README text under HEADING, up to the next heading of the same or a higher level."""
    lines = README.splitlines()
    start = lines.index(heading)
    level = len(heading) - len(heading.lstrip("#"))
    body: list[str] = []
    for line in lines[start + 1 :]:
        match = re.match(r"(#+) ", line)
        if match and len(match.group(1)) <= level:
            break
        body.append(line)
    return "\n".join(body)


def code_blocks(text: str) -> list[str]:
    """The indented (4-space) code blocks of TEXT, dedented; blank lines inside a block kept."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in [*text.splitlines(), ""]:
        if line.startswith("    "):
            if current is None:
                current = []
                blocks.append(current)
            current.append(line[4:])
        elif not line.strip() and current is not None:
            current.append("")
        else:
            current = None
    return ["\n".join(block).strip("\n") + "\n" for block in blocks]


DIFF_BLOCKS = code_blocks(section("### `diff`"))
DIFF_EXAMPLES = [line for line in DIFF_BLOCKS[0].splitlines() if line.startswith("ndpipe ")]
CHAINED_DIFF_EXAMPLES = [line for line in DIFF_EXAMPLES if "&&" in line]
SYNC_SCRIPT = next(block for block in DIFF_BLOCKS if block.startswith("set -eo pipefail"))
SPREADSHEET_RECIPE = code_blocks(section("### Users from a spreadsheet"))[0]
API_BLOCKS = code_blocks(section("## Python API"))
API_BLOCK = next(block for block in API_BLOCKS if "import dask" not in block)
DASK_BLOCK = next(block for block in API_BLOCKS if "import dask" in block)


def bash(script: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """SCRIPT run by bash as a file would be, with the checkout's bin/ndpipe on PATH."""
    path = f"{ROOT / 'bin'}{os.pathsep}{os.environ['PATH']}"
    extra = {**(env or {}), "PATH": path, "NDPIPE_POLL_INTERVAL": "0"}
    return subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        env=environment(extra),
        cwd=cwd,
        timeout=120,
    )


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert b"Traceback" not in result.stderr, result.stderr.decode()


# -- what the README holds ---------------------------------------------------------------------


def test_the_sections_have_their_code():
    assert len(CHAINED_DIFF_EXAMPLES) == 2
    assert all("/tmp/" in line for line in CHAINED_DIFF_EXAMPLES)
    assert "ndpipe fetch --quiet" in SYNC_SCRIPT and "mv today.ndjson.gz" in SYNC_SCRIPT
    assert SPREADSHEET_RECIPE.startswith("ndpipe fetch users.csv")
    assert len(API_BLOCKS) == 2
    assert "ndpipe.DedupeStats()" in API_BLOCK


# -- diff examples chained with && ----------------------------------------------------------


@pytest.mark.parametrize("example", CHAINED_DIFF_EXAMPLES)
def test_chained_diff_example(example, tmp_path):
    command = example.replace("/tmp/", f"{tmp_path}/")
    result = shell(command, cwd=ROOT)
    no_traceback(result)
    assert result.returncode == 0, result.stderr.decode()
    today = records((tmp_path / "today.ndjson").read_bytes())
    out = records(result.stdout)
    counts = re.search(
        rb"(\d+) added, (\d+) removed, (\d+) changed, (\d+) unchanged", result.stderr
    )
    assert counts, result.stderr.decode()
    added, removed, changed, unchanged = map(int, counts.groups())
    before = {user["user_id"]: user for user in EXPORT}
    if "--only removed" in example:
        kept = {user["user_id"] for user in today}
        gone = sorted(set(before) - kept)
        assert len(today) == 36 and len(gone) == 4
        assert [entry["op"] for entry in out] == ["removed"] * 4
        assert [entry["key"] for entry in out] == [[key] for key in gone]
        assert [entry["record"] for entry in out] == [before[key] for key in gone]
        assert (added, removed, changed, unchanged) == (0, 4, 0, 36)
    else:
        assert "--fields app_metadata.plan" in example
        moved = sorted(
            user["user_id"]
            for user in EXPORT
            if (user.get("app_metadata") or {}).get("plan") != "pro"
        )
        assert all(user["app_metadata"]["plan"] == "pro" for user in today)
        assert out == [
            {"op": "changed", "key": [key], "fields": ["app_metadata.plan"]} for key in moved
        ]
        assert (added, removed, changed) == (0, 0, len(moved))
        assert unchanged == len(EXPORT) - len(moved)


# -- the daily CRM sync script --------------------------------------------------------------


def crm_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode(), newline="")))


def cell(value: Any) -> str:
    if value is None:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def expected_rows(users: list[dict[str, Any]]) -> list[list[str]]:
    return sorted([cell(user.get("email")), cell(user.get("given_name"))] for user in users)


def exported(path: Path) -> dict[str, dict[str, Any]]:
    return {user["user_id"]: user for user in records(gzip.decompress(path.read_bytes()))}


def test_daily_sync_script_two_days(auth0_server: FakeAuth0, auth0_env, tmp_path):
    server = auth0_server
    server.export_timeline = []
    server.load_users(EXPORT)
    (tmp_path / "sync.sh").write_text(SYNC_SCRIPT)
    output = tmp_path / "new-and-changed.csv"

    # Day 1: an empty yesterday.ndjson.gz, as the README says (`: > yesterday.ndjson.gz`).
    first = bash(": > yesterday.ndjson.gz && bash ./sync.sh", tmp_path, auth0_env)
    no_traceback(first)
    assert server.client_secret.encode() not in first.stdout + first.stderr
    assert first.returncode == 0, first.stderr.decode()
    day1 = list(server.users.values())
    rows = crm_rows(output)
    assert rows[0] == ["Email Address", "First Name"]
    assert sorted(rows[1:]) == expected_rows(day1)
    assert not (tmp_path / "today.ndjson.gz").exists()
    assert set(exported(tmp_path / "yesterday.ndjson.gz")) == {u["user_id"] for u in day1}

    # Day 2: two users get a new first name, one is added, one is deleted.
    database = sorted(server.users_in(), key=lambda user: user["user_id"])
    changed = database[:2]
    for user in changed:
        user["given_name"] = "Renamed " + (user.get("given_name") or "")
    removed = database[-1]
    del server.users[removed["user_id"]]
    added = server.add_user("new.user@example.com", given_name="=Newcomer")
    output.unlink()

    second = bash("bash ./sync.sh", tmp_path, auth0_env)
    no_traceback(second)
    assert second.returncode == 0, second.stderr.decode()
    rows = crm_rows(output)
    assert rows[0] == ["Email Address", "First Name"]
    assert sorted(rows[1:]) == expected_rows([*changed, added])
    assert ["new.user@example.com", "'=Newcomer"] in rows
    # Today's export became yesterday's.
    assert not (tmp_path / "today.ndjson.gz").exists()
    yesterday = exported(tmp_path / "yesterday.ndjson.gz")
    assert set(yesterday) == set(server.users)
    assert removed["user_id"] not in yesterday and added["user_id"] in yesterday
    assert yesterday[changed[0]["user_id"]]["given_name"].startswith("Renamed ")


# -- users from a spreadsheet ---------------------------------------------------------------


def test_users_from_a_spreadsheet(auth0_server: FakeAuth0, auth0_env, tmp_path):
    auth0_server.import_timeline = []
    shutil.copy(FIXTURES / "csv" / "spreadsheet-users.csv", tmp_path / "users.csv")
    result = shell_in(SPREADSHEET_RECIPE, tmp_path, auth0_env)
    no_traceback(result)
    assert auth0_server.client_secret.encode() not in result.stdout + result.stderr
    assert result.returncode == 0, result.stderr.decode()
    for report in ("rejects.ndjson", "failed.ndjson"):
        path = tmp_path / report
        assert not path.exists() or not records(path.read_bytes()), report
    held = {user["email"]: user for user in auth0_server.users_in(DEFAULT_CONNECTION)}
    assert sorted(held) == sorted(user["email"] for user in SPREADSHEET_USERS)
    for want in SPREADSHEET_USERS:
        user = held[want["email"]]
        assert {key: user.get(key) for key in want} == want


def shell_in(pipeline: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return bash("set -o pipefail\n" + pipeline, cwd, env)


# -- Python API -----------------------------------------------------------------------------


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    script = cwd / "readme_example.py"
    script.write_text(code)
    # The repository first, then whatever path gave this process its packages (dask, say).
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        env=environment({"PYTHONPATH": path}),
        cwd=cwd,
        timeout=120,
    )


def test_python_api_block(tmp_path):
    shutil.copy(FIXTURES / "users.json.gz", tmp_path / "export.json.gz")
    result = run_python(API_BLOCK, tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    read, kept, duplicates = map(int, result.stdout.split())
    assert read == len(EXPORT) and kept + duplicates == read

    # The CSV is what the same stages give on the command line.
    cli = shell(
        "ndpipe fetch export.json.gz then filter email_verified"
        " then select 'Email Address=email' 'Name=user_metadata.name || name'"
        " then escape-csv then csv",
        cwd=tmp_path,
    )
    assert cli.returncode == 0, cli.stderr.decode()
    assert (tmp_path / "salesforce.csv").read_bytes() == cli.stdout
    assert len(crm_rows(tmp_path / "salesforce.csv")) > 1

    unique = records((tmp_path / "unique.ndjson").read_bytes())
    cli = shell("ndpipe dedupe -k email --ignore-case < export.json.gz", cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr.decode()
    assert unique == records(cli.stdout)
    assert len(unique) == kept


def test_python_api_dask_block(tmp_path):
    pytest.importorskip("dask.bag")
    (tmp_path / "exports").mkdir()
    lines = (FIXTURES / "users.ndjson").read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    for number, part in enumerate((lines[:half], lines[half:]), 1):
        (tmp_path / "exports" / f"part-{number}.ndjson.gz").write_bytes(
            gzip.compress(b"".join(part))
        )
    result = run_python(DASK_BLOCK, tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    written = [
        record
        for path in sorted((tmp_path / "out").glob("*.ndjson"))
        for record in records(path.read_bytes())
    ]
    expected = [
        {"email": user.get("email"), "Name": user.get("name")}
        for user in EXPORT
        if user.get("email_verified")
    ]
    assert written == expected
