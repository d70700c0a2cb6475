"""csv and `escape-csv then csv` column-wise, in batches: the same bytes as record by record.

The record-by-record path (`csv` without the reader's position, `escape_csv` on its own) is the
reference: the batch path must give the same lines for any records, hostile cells included,
and an error must name the record's own input line with the lines before it written.
"""

from __future__ import annotations

import copy
import unicodedata
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndpipe import codec
from ndpipe.csvio import _INVISIBLE, _INVISIBLE_RANGES, formula_hits, formula_risk
from ndpipe.errors import RecordError
from ndpipe.io import Position
from ndpipe.ops import csv as csv_module
from ndpipe.ops.csv import BATCH_RECORDS, Dropped, csv, csv_batches
from ndpipe.ops.escape_csv import escape_csv
from tests.conftest import FIXTURES, run_ndpipe, shell

# Starts and pieces a spreadsheet or a CSV reader would trip on.
HOSTILE = [
    "=1+1", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "\x00x", " =1", "\ufeff=1", "\u200b-1",
    "\u00a0@x", "\u2028=x", "+14155550100", "-12.5", "'x", "''=x", "a,b", "a;b", "a\tb",
    'say "hi"', "two\nlines", "cr\rlf\r\n", "O'Brien", "", " ", "\x00", "\x01", "Łukasz",
    "佐藤", "김지민", "👩\u200d💻", "\u202e@x", "1e5", "-", "+", "=", "`", "a`=b", "~'x", "`'",
]  # fmt: skip

hostile_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=8),
    st.builds(lambda a, b: a + b, st.sampled_from(HOSTILE), st.text(max_size=4)),
)
scalar = st.one_of(
    hostile_text,
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
)


def nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["x", "y", "=z"]), inner, max_size=3),
    )


value = st.recursive(scalar, nested, max_leaves=6)
KEYS = ["email", "First Name", "a", "=b", "user_metadata"]
# Among them the characters csv joins a column's cells with (` or ~) and one they must differ from.
DELIMITERS = [",", ";", "\t", "|", "'", "\x00", "a", "`", "~"]


@st.composite
def batches(draw: Any, uniform: bool) -> list[dict[str, Any]]:
    """Records with the same keys (as select makes them: the column-wise path), or of mixed
    shapes (missing fields, extra fields, nesting: the other paths)."""
    count = draw(st.integers(min_value=1, max_value=30))
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True))
    cells = scalar if uniform else value
    rows = []
    for _ in range(count):
        if uniform:
            rows.append({key: draw(cells) for key in keys})
        else:
            rows.append(draw(st.dictionaries(st.sampled_from(KEYS), cells, max_size=4)))
    return rows


def reference(rows: list[dict[str, Any]], escape: bool, **options: Any) -> list[str]:
    """Today's path: escape-csv record by record, then csv record by record."""
    rows = copy.deepcopy(rows)
    source = escape_csv(iter(rows)) if escape else iter(rows)
    return list(csv(source, **options))


def batched(rows: list[dict[str, Any]], escape: bool, **options: Any) -> list[str]:
    """The batch path (and, with escape, the chain fused into csv), as the CLI runs it."""
    rows = copy.deepcopy(rows)
    position = Position("stdin")

    def read() -> Any:
        for number, record in enumerate(rows, 1):
            position.number = number
            yield record

    source = escape_csv(read()) if escape else read()
    return [line for lines in csv_batches(source, position=position, **options) for line in lines]


def outcome(run: Any, *args: Any, **options: Any) -> tuple[str, Any]:
    try:
        return "lines", run(*args, **options)
    except RecordError as error:
        return "error", str(error)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.one_of(batches(uniform=True), batches(uniform=False)),
    escape=st.booleans(),
    delimiter=st.sampled_from(DELIMITERS),
    header=st.booleans(),
    named=st.sampled_from([None, ["email", "=b", "user_metadata.x", "a"], ["a", "a.x", "a.=z"]]),
    size=st.sampled_from([1, 3, 8, BATCH_RECORDS]),
)
def test_batches_write_what_record_by_record_writes(rows, escape, delimiter, header, named, size):
    options: dict[str, Any] = {"delimiter": delimiter, "header": header}
    if named:
        options["columns"] = named
    # Small batches, so that a few records cross batch boundaries.
    with patch.object(csv_module, "BATCH_RECORDS", size):
        got = outcome(batched, rows, escape, **options)
    assert got == outcome(reference, rows, escape, **options)


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(hostile_text, max_size=40), separator=st.sampled_from(["\n", "\x00"]))
def test_formula_hits_name_every_text_that_needs_escaping(texts, separator):
    hits = formula_hits(texts, separator.join(texts), separator)
    assert hits == sorted(set(hits))
    assert all(0 <= index < len(texts) for index in hits)
    needed = [index for index, text in enumerate(texts) if formula_risk(text)]
    assert set(needed) <= set(hits)


@pytest.mark.skipif(
    unicodedata.unidata_version not in _INVISIBLE_RANGES, reason="no table for this Unicode"
)
def test_the_table_of_invisible_characters_is_unicodedata_s():
    ranges = _INVISIBLE_RANGES[unicodedata.unidata_version]
    listed = {code for low, high in ranges for code in range(low, high + 1)}
    category = unicodedata.category
    actual = {code for code in range(0x110000) if category(chr(code)) in _INVISIBLE}
    assert listed == actual


def test_dropped_fields_and_unseen_columns_are_counted_alike():
    rows = [{"a": "x", "b": None}] * 300 + [{"a": "y", "c": {"d": 1}}] * 300
    first, second = Dropped(), Dropped()
    assert batched(rows, False, dropped=first) == reference(rows, False, dropped=second)
    assert (first.records, first.names, first.rows) == (second.records, second.names, 600)
    first, second = Dropped(), Dropped()
    named = {"columns": ["a", "b", "typo"]}
    assert batched(rows, False, dropped=first, **named) == reference(
        rows, False, dropped=second, **named
    )
    assert first.unseen_message() == second.unseen_message()
    assert "typo" in (first.unseen_message() or "")


# --- through the CLI, in real pipes ----------------------------------------------------------

RECIPE = "select 'Email Address=email' 'First Name=given_name' 'Last Name=family_name' name"


def hostile_users(count: int) -> bytes:
    """Users shaped like an export, with hostile names and emails in every few records."""
    lines = []
    for number in range(count):
        hostile = HOSTILE[number % len(HOSTILE)]
        user: dict[str, Any] = {
            "user_id": f"auth0|{number}",
            "email": f"user{number}@example.com" if number % 3 else hostile + "@x.io",
            "given_name": hostile if number % 2 else f"Name{number}",
            "name": None if number % 5 == 0 else f"{hostile} {number}",
            "logins_count": number,
        }
        if number % 4 == 0:
            user["family_name"] = hostile
        lines.append(codec.dumps(user))
    return b"\n".join(lines) + b"\n"


USERS = hostile_users(3 * BATCH_RECORDS + 17)


def test_the_recipe_chained_and_piped_writes_the_same_bytes_as_record_by_record():
    chained = run_ndpipe(*_args(RECIPE + " then escape-csv then csv"), input=USERS)
    piped = shell(f"ndpipe {RECIPE} | ndpipe escape-csv | ndpipe csv", input=USERS)
    assert chained.returncode == 0 and piped.returncode == 0, chained.stderr + piped.stderr
    selected = run_ndpipe(*_args(RECIPE), input=USERS)
    rows = [codec.loads(line) for line in selected.stdout.splitlines()]
    expected = "".join(line + "\n" for line in reference(rows, True)).encode()
    assert chained.stdout == expected
    assert piped.stdout == expected
    assert b"'=1+1" in expected and b'"two\nlines' in expected


@pytest.mark.parametrize("delimiter", [";", "tab"])
def test_escape_then_csv_with_options_matches_record_by_record(delimiter):
    result = run_ndpipe(
        "escape-csv", "then", "csv", "--delimiter", delimiter, "--crlf", input=USERS
    )
    assert result.returncode == 0, result.stderr
    rows = [codec.loads(line) for line in USERS.splitlines()]
    separator = "\t" if delimiter == "tab" else delimiter
    expected = reference(rows, True, delimiter=separator)
    assert result.stdout == "".join(line + "\r\n" for line in expected).encode()


def _args(text: str) -> list[str]:
    import shlex

    return shlex.split(text)


@pytest.mark.parametrize(
    "command",
    [
        "escape-csv then csv --strict",
        "csv --strict",
        f"{RECIPE} extra=user_id then escape-csv then csv --strict "
        "--columns 'Email Address,First Name,Last Name,name'",
    ],
)
def test_an_error_in_a_batch_names_its_own_line_after_the_lines_before_it(command):
    lines = USERS.splitlines()
    bad_at = BATCH_RECORDS + 100  # inside the second batch
    bad = codec.loads(lines[bad_at - 1])
    bad["unexpected"] = "field"
    lines[bad_at - 1] = codec.dumps(bad)
    if "extra=" in command:
        # Every record has the extra field: the first one fails.
        bad_at = 1
    result = run_ndpipe(*_args(command), input=b"\n".join(lines) + b"\n")
    assert result.returncode == 1
    assert f"stdin:{bad_at}: fields not in the header" in result.stderr.decode()
    written = result.stdout.decode().splitlines()
    # The header, then every record before the bad one (no record here spans two lines).
    good = run_ndpipe(*_args(command), input=b"\n".join(lines[: bad_at - 1]) + b"\n")
    assert result.stdout == good.stdout
    assert len(written) >= bad_at - 1


@pytest.mark.parametrize("command", ["escape-csv then csv", "csv", "escape-csv"])
def test_a_bad_line_in_a_batch_comes_after_the_records_before_it(command):
    lines = USERS.splitlines()
    bad_at = BATCH_RECORDS + 5
    lines[bad_at - 1] = b'{"email": "broken'
    data = b"\n".join(lines) + b"\n"
    result = run_ndpipe(*_args(command), input=data)
    assert result.returncode == 1
    name = command.split()[0]
    assert result.stderr.decode().startswith(f"ndpipe {name}: stdin:{bad_at}: invalid JSON")
    before = run_ndpipe(*_args(command), input=b"\n".join(lines[: bad_at - 1]) + b"\n")
    assert result.stdout == before.stdout
    skipped = run_ndpipe(*_args(command), "--on-error", "skip", input=data)
    rest = run_ndpipe(*_args(command), input=b"\n".join(lines[: bad_at - 1] + lines[bad_at:]))
    assert skipped.returncode == 0 and skipped.stdout == rest.stdout
    assert f"stdin:{bad_at}" in skipped.stderr.decode()


def test_the_fixture_export_through_escape_then_csv_is_unchanged_by_batching():
    data = (FIXTURES / "users.ndjson").read_bytes() * 30
    chained = run_ndpipe("escape-csv", "then", "csv", input=data)
    assert chained.returncode == 0, chained.stderr
    rows = [codec.loads(line) for line in data.splitlines() if line.strip()]
    assert chained.stdout == "".join(line + "\n" for line in reference(rows, True)).encode()


def test_csv_takes_over_escaping_only_from_escape_csv_right_before_it():
    from ndpipe.cli import parse_stages
    from ndpipe.pipeline import _taken_over

    def stages(*args: str) -> Any:
        return parse_stages(args)

    chain = stages("select", "email", "then", "escape-csv", "then", "csv")
    assert _taken_over(chain) is chain[1]
    for args in (
        ["escape-csv", "--style", "auth0", "then", "csv"],
        ["escape-csv", "--unescape", "then", "csv"],
        ["escape-csv", "then", "head", "then", "csv"],
        ["escape-csv", "then", "to-json-array"],
        ["csv"],
    ):
        assert _taken_over(stages(*args)) is None, args


@pytest.mark.parametrize("between", ["head -n 700", "filter 'email != `null`'", "sort -k email"])
def test_a_stage_between_escape_csv_and_csv_keeps_the_escaping(between):
    chained = run_ndpipe(*_args(f"escape-csv then {between} then csv"), input=USERS)
    piped = shell(f"ndpipe escape-csv | ndpipe {between} | ndpipe csv", input=USERS)
    assert chained.returncode == 0, chained.stderr
    assert chained.stdout == piped.stdout
    assert b"'=1+1" in chained.stdout
