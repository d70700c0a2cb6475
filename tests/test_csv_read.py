"""Reading CSV with fetch: Auth0-escaped exports back to typed values, plain CSV, style detection,
RFC 4180 details, errors that name the CSV line, and the escape-csv | csv | fetch round trip."""

from __future__ import annotations

import datetime
import gzip
import io
import re
from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ndpipe.csvio import auth0_cell, detect_style, is_iso_datetime, read_csv
from ndpipe.errors import DataError
from ndpipe.io import ErrorPolicy, Position, sniff
from ndpipe.ops.csv import csv, write_lines
from ndpipe.ops.escape_csv import escape_csv
from tests.conftest import FIXTURES, ndjson, records, run_ndpipe, shell

AUTH0_CSV = FIXTURES / "csv" / "auth0-export.csv"
AUTH0_RECORDS = records((FIXTURES / "csv" / "auth0-export.ndjson").read_bytes())


def read(data: bytes, style: str = "auto", on_error: str = "fail") -> list[dict[str, Any]]:
    buffered, kind = sniff(io.BytesIO(data))
    if kind == "empty":
        return []
    assert kind == "other"
    return list(read_csv(buffered, Position("test.csv"), ErrorPolicy(on_error), style=style))


# --- the Auth0 fixture ----------------------------------------------------------------------


def auth0_documented_cell(value: Any) -> str:
    """AUTH0.md 1.6, literally: strings get '"' doubled, a leading ', and are wrapped in double
    quotes; Auth0's ISO 8601 dates, booleans and numbers are bare; null is an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text):
        return text
    return '"' + "'" + text.replace('"', '""') + '"'


def test_the_fixture_follows_auth0_documented_escaping():
    header = ",".join(AUTH0_RECORDS[0])
    rows = [",".join(auth0_documented_cell(v) for v in r.values()) for r in AUTH0_RECORDS]
    assert AUTH0_CSV.read_bytes().decode() == "\n".join([header, *rows]) + "\n"


@pytest.mark.parametrize("source", ["auth0-export.csv", "auth0-export.csv.gz"])
@pytest.mark.parametrize("style", [[], ["--csv-style", "auto"], ["--csv-style", "auth0"]])
def test_auth0_export_reads_back_into_typed_values(source, style):
    result = run_ndpipe("fetch", f"fixtures/csv/{source}", *style)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert records(result.stdout) == AUTH0_RECORDS


def test_auth0_export_from_stdin_gzip():
    result = run_ndpipe("fetch", input=gzip.compress(AUTH0_CSV.read_bytes()))
    assert records(result.stdout) == AUTH0_RECORDS


def test_read_and_written_again_the_auth0_export_is_unchanged():
    result = run_ndpipe(
        "fetch", "fixtures/csv/auth0-export.csv", "then", "escape-csv", "--style", "auth0",
        "then", "csv",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == AUTH0_CSV.read_bytes()


def test_auth0_export_read_as_plain_keeps_the_prefixes():
    result = run_ndpipe("fetch", "fixtures/csv/auth0-export.csv", "--csv-style", "plain")
    first = records(result.stdout)[0]
    assert first["Email"] == "'jane.doe0@example.com"
    assert first["Email Verified"] == "false"
    assert first["Created At"] == "2019-01-01T00:00:00.000Z"
    assert first["Logins Count"] == "0"


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("'jane", "jane"),
        ("''jane", "'jane"),  # exactly one ' is removed
        ("'", ""),
        ("'true", "true"),
        ("'19", "19"),
        ("", None),
        ("true", True),
        ("false", False),
        ("True", True),
        ("FALSE", False),
        ("19", 19),
        ("-5", -5),
        ("1.5", 1.5),
        ("1e+20", 1e20),
        ("007", "007"),
        ("+15550100", "+15550100"),
        ("1e999", "1e999"),
        ("2017-11-02T23:34:03.803Z", "2017-11-02T23:34:03.803Z"),
        ('["admin","user"]', ["admin", "user"]),
        ('{"plan":"free"}', {"plan": "free"}),
        ("[not json", "[not json"),
        ("null", "null"),
    ],
)
def test_auth0_cells(cell, value):
    assert auth0_cell(cell) == value
    assert type(auth0_cell(cell)) is type(value)


# --- plain CSV and detection ----------------------------------------------------------------


def test_plain_csv_with_bom_crlf_and_quoted_newlines():
    result = run_ndpipe("fetch", "fixtures/csv/plain.csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (FIXTURES / "csv" / "plain.ndjson").read_bytes()


@pytest.mark.parametrize(
    ("rows", "style"),
    [
        ([["'a", "true", "19", "2017-11-02T23:34:03.803Z", ""]], "auth0"),
        ([["'a", '["x"]'], ["", "'b"]], "auth0"),
        ([["'a", "b"]], "plain"),  # an unprefixed string: not an Auth0 export
        ([["O'Brien", "x"]], "plain"),
        ([["1", "true", "2017-11-02T23:34:03.803Z"]], "plain"),  # nothing to go on
        ([], "plain"),
    ],
)
def test_detect_style(rows, style):
    assert detect_style(rows) == style


def test_auto_decides_on_the_first_rows_only():
    head = b"a,b\n" + b'"\'x",1\n' * 100
    late = b"plain,2\n"
    assert read(head + late)[-1] == {"a": "plain", "b": 2}  # auth0 already decided
    assert read(b"a,b\nplain,1\n" + b'"\'x",1\n')[-1] == {"a": "'x", "b": "1"}


def test_auth0_header_titles_lose_their_prefix_only_when_all_have_one():
    assert read(b"'Email,'Count\n\"'a\",1\n") == [{"Email": "a", "Count": 1}]
    assert read(b"'Email,Count\n\"'a\",1\n") == [{"'Email": "a", "Count": 1}]


def test_blank_lines_header_only_and_cr_only_line_ends():
    assert read(b"a,b\n\n1,2\n\n") == [{"a": "1", "b": "2"}]
    assert read(b"a,b\n") == []
    assert read(b'a,b\r1,2\r"x\ry",3\r') == [{"a": "1", "b": "2"}, {"a": "x\ry", "b": "3"}]
    assert read(b'a\n""\n') == [{"a": None}]


# --- errors name the physical CSV line ------------------------------------------------------

RAGGED = b'id,note\n1,ok\n2,"two\nlines"\n3\n4,"also\ntwo",extra\n5,fine\n'


def test_ragged_row_names_the_line_where_the_record_starts():
    result = run_ndpipe("fetch", input=RAGGED)
    assert result.returncode == 1
    assert result.stderr.startswith(b"ndpipe fetch: stdin:5: expected 2 fields"), result.stderr
    assert records(result.stdout) == [{"id": "1", "note": "ok"}, {"id": "2", "note": "two\nlines"}]
    assert b"Traceback" not in result.stderr


def test_ragged_rows_can_be_skipped_and_are_reported():
    result = run_ndpipe("fetch", "--on-error", "skip", input=RAGGED)
    assert result.returncode == 0
    assert [r["id"] for r in records(result.stdout)] == ["1", "2", "5"]
    assert result.stderr == b"ndpipe fetch: skipped 2 bad lines (stdin:5, stdin:6)\n"


def test_a_failure_later_in_the_pipeline_names_the_csv_file_and_line(tmp_path):
    path = tmp_path / "users.csv"
    path.write_bytes(b'email,n\n"a\nb",1\nc,\n')
    # plain style: n is "1" on the record of lines 2-3 and null on line 4, where length() fails
    result = run_ndpipe("fetch", str(path), "then", "select", "x=length(n)")
    assert result.returncode == 1
    assert result.stderr.startswith(f"ndpipe select: {path}:4: expression".encode()), result.stderr


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'a,b\n1,2\n"x"y,3\n', b"stdin:3: bad CSV"),
        (b"a,b\n1,2\n3,\xff\n", b"stdin:3: invalid UTF-8"),
        (b"a,a\n1,2\n", b"stdin:1: the header names the column 'a' twice"),
        (b'a,b\n1,2\n3,"unclosed\n', b"stdin:3: bad CSV"),
    ],
)
def test_bad_csv_exits_1_naming_the_line(data, message):
    result = run_ndpipe("fetch", input=data)
    assert result.returncode == 1
    assert result.stderr.startswith(b"ndpipe fetch: " + message), result.stderr
    assert b"Traceback" not in result.stderr


def test_rows_before_a_bad_row_are_kept_while_auto_is_still_sampling():
    buffered, _ = sniff(io.BytesIO(b"a\n'x\n'y\n\"z\"q\n"))
    rows = read_csv(buffered, Position("test.csv"), ErrorPolicy("fail"))
    assert [next(rows), next(rows)] == [{"a": "x"}, {"a": "y"}]
    with pytest.raises(DataError, match=r"test\.csv:4"):
        next(rows)
    policy_rows = read(b'a\n"\'x"\n"z"q\n"\'y"\n', on_error="skip")
    assert policy_rows == [{"a": "x"}, {"a": "y"}]


# --- round trips ----------------------------------------------------------------------------

DATES = st.datetimes(
    min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2100, 1, 1)
).map(lambda moment: moment.isoformat(timespec="milliseconds") + "Z")
VALUES = st.one_of(
    st.text(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    DATES,
    st.none(),
)
# The first character is fixed: a header that starts with [ or { (after spaces) is sniffed as JSON;
# a header whose titles all start with ' is read as escaped (see csvio._header).
KEYS = st.builds(lambda first, rest: first + rest, st.sampled_from("aZ_é李"), st.text(max_size=6))


def through_csv(data: list[dict[str, Any]], style: str) -> list[dict[str, Any]]:
    out = io.BytesIO()
    escaped = escape_csv([dict(record) for record in data], style="auth0")
    write_lines(csv(escaped), out)
    return read(out.getvalue(), style=style)


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(KEYS, min_size=1, max_size=5, unique=True), data=st.data())
def test_escape_auth0_csv_fetch_round_trip(keys, data):
    values = st.lists(VALUES, min_size=len(keys), max_size=len(keys))
    rows = data.draw(st.lists(values, min_size=1, max_size=8))
    original = [dict(zip(keys, row, strict=True)) for row in rows]
    assert through_csv(original, "auth0") == original
    # auto recognises the escaping whenever there is a string that was prefixed
    cells = [value for row in rows[:100] for value in row]
    assume(any(isinstance(v, str) and not is_iso_datetime(v) for v in cells))
    assert through_csv(original, "auto") == original


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(KEYS, min_size=1, max_size=4, unique=True), data=st.data())
def test_plain_round_trip_gives_strings_and_null_for_empty(keys, data):
    rows = data.draw(st.lists(st.lists(st.text(), min_size=len(keys), max_size=len(keys))))
    out = io.BytesIO()
    write_lines(csv([dict(zip(keys, row, strict=True)) for row in rows]), out)
    expected = [{k: (v if v else None) for k, v in zip(keys, row, strict=True)} for row in rows]
    assert read(out.getvalue(), style="plain") == expected


def test_round_trip_through_the_real_cli_pipes():
    original = [
        {
            "email": 'a"b@x.com',
            "name": '=HYPERLINK("x")\nline two, with comma',
            "nickname": "'already quoted",
            "verified": True,
            "logins": 19,
            "created_at": "2017-11-02T23:34:03.803Z",
            "phone": None,
            "note": "",
            "zip": "02134",
            "word": "true",
        },
        {
            "email": "jane@example.com",
            "name": "Zoë 😀 李小龍",
            "nickname": "-2+3",
            "verified": False,
            "logins": 0,
            "created_at": "2021-09-16T03:24:32.897Z",
            "phone": "+15550100",
            "note": None,
            "zip": "-1",
            "word": "19",
        },
    ]
    pipeline = "ndpipe escape-csv --style auth0 | ndpipe csv | ndpipe fetch --csv-style auth0"
    result = shell(pipeline, input=ndjson(original))
    assert result.returncode == 0, result.stderr
    assert records(result.stdout) == original
    auto = shell(
        "ndpipe escape-csv --style auth0 | ndpipe csv | ndpipe fetch", input=ndjson(original)
    )
    assert records(auto.stdout) == original
    chained = run_ndpipe("escape-csv", "--style", "auth0", "then", "csv", input=ndjson(original))
    assert run_ndpipe("fetch", input=chained.stdout).stdout == orjson_lines(original)


def orjson_lines(data: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(record) + b"\n" for record in data)
