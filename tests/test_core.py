"""The streaming core through the real CLI: formats, sniffing, errors, skipping, pipes, chains."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading

import orjson
import pytest

from tests.conftest import FIXTURES, ROOT, environment, ndjson, records, run_ndpipe, shell

USERS = (FIXTURES / "users.ndjson").read_bytes()
USER_RECORDS = records(USERS)


def test_fetch_reads_ndjson_gzip_and_arrays_alike(tmp_path):
    array = tmp_path / "users.txt"  # a misleading name: only the bytes count
    array.write_bytes(orjson.dumps(USER_RECORDS, option=orjson.OPT_INDENT_2))
    gzipped_array = tmp_path / "array.ndjson"
    gzipped_array.write_bytes(gzip.compress(array.read_bytes()))
    for source in [
        "fixtures/users.ndjson",
        "fixtures/users.json.gz",
        str(array),
        str(gzipped_array),
    ]:
        result = run_ndpipe("fetch", source)
        assert result.returncode == 0, result.stderr
        assert records(result.stdout) == USER_RECORDS, source
        assert result.stderr == b""


def test_stdin_is_sniffed_for_every_command():
    result = run_ndpipe("head", "-n", "3", input=gzip.compress(USERS))
    assert records(result.stdout) == USER_RECORDS[:3]
    result = run_ndpipe("select", "email", input=orjson.dumps(USER_RECORDS[:2]))
    assert records(result.stdout) == [{"email": u["email"]} for u in USER_RECORDS[:2]]


def test_blank_lines_crlf_and_bom_are_tolerated():
    data = b"\xef\xbb\xbf" + b'{"a":1}\r\n\r\n   \n{"a":2}\r\n{"a":3}'
    result = run_ndpipe("fetch", input=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b'{"a":1}\n{"a":2}\n{"a":3}\n'


SPACED = b'  {"b": [1, 2], "a": "\\u00e9"}  \r\n{"a":2,"b":1}\n{"a":3, "b":0}'


@pytest.mark.parametrize(
    "args",
    [
        ["fetch"],
        ["filter", "b"],
        ["head", "-n", "5"],
        ["dedupe", "-k", "a"],
        ["filter", "a", "then", "head"],
    ],
)
def test_untouched_records_are_written_as_read(args):
    # Nothing changed them, so they are copied, not encoded again: whitespace and escapes stay.
    result = run_ndpipe(*args, input=SPACED)
    assert result.returncode == 0, result.stderr
    kept = [b'{"b": [1, 2], "a": "\\u00e9"}', b'{"a":2,"b":1}', b'{"a":3, "b":0}']
    if args[1:] == ["a != `2`"]:
        del kept[1]
    assert result.stdout == b"".join(line + b"\n" for line in kept)


@pytest.mark.parametrize(
    "args",
    [["map", "--set", "c=`1`"], ["filter", "a", "then", "map", "--del", "c"]],
)
def test_records_a_stage_may_change_are_encoded_again(args):
    result = run_ndpipe(*args, input=SPACED)
    assert result.returncode == 0, result.stderr
    assert b" " not in result.stdout and "é".encode() in result.stdout


def test_to_json_array_copies_untouched_lines_and_counts_their_size(tmp_path):
    lines = [b'{"n": %d, "pad": "%s"}' % (n, b"x" * 50) for n in range(20)]
    result = run_ndpipe(
        "to-json-array", "--max-bytes", "300", "--out", f"{tmp_path}/part-{{n}}.json",
        input=b"\n".join(lines),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    files = sorted(tmp_path.iterdir(), key=lambda path: int(path.stem.split("-")[1]))
    assert all(path.stat().st_size <= 300 for path in files)
    assert b"".join(path.read_bytes() for path in files).count(b'{"n": ') == 20
    assert orjson.loads(files[0].read_bytes())[0] == {"n": 0, "pad": "x" * 50}


def test_empty_input_gives_empty_output():
    for args in (["fetch"], ["select", "email"], ["filter", "a"], ["head"]):
        result = run_ndpipe(*args, input=b"")
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a":1}\n\n{"a":\n', b"stdin:3: invalid JSON"),
        (b'{"a":1}\n[1,2]\n', b"stdin:2: expected a JSON object, got an array"),
        (b'{"a":1}\n\n"text"\n', b"stdin:3: expected a JSON object, got a string"),
        (b'{"a":1}\n{"a":"\xff\xfe"}\n', b"stdin:2: invalid UTF-8"),
    ],
)
def test_bad_lines_exit_1_naming_the_line(data, message):
    result = run_ndpipe("select", "a", input=data)
    assert result.returncode == 1
    assert result.stderr.startswith(b"ndpipe select: " + message), result.stderr
    assert b"Traceback" not in result.stderr
    assert records(result.stdout) == [{"a": 1}]


def test_error_shows_the_line_and_a_caret():
    result = run_ndpipe("fetch", input=b'{"email": "x@y.com", "n": 1,, "m": 2}\n')
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith("ndpipe fetch: stdin:1: invalid JSON")
    assert lines[1].strip() == '{"email": "x@y.com", "n": 1,, "m": 2}'
    caret = lines[2].index("^") - lines[1].index("{")
    assert lines[1][lines[1].index("{") + caret] == ","


def test_on_error_skip_reports_count_and_lines():
    data = b'{"a":1}\nnot json\n{"a":2}\n[3]\n{"a":3}\n'
    result = run_ndpipe("select", "a", "--on-error", "skip", input=data)
    assert result.returncode == 0
    assert records(result.stdout) == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert result.stderr == b"ndpipe select: skipped 2 bad lines (stdin:2, stdin:4)\n"


def test_bad_json_array_names_the_record():
    result = run_ndpipe("fetch", input=b'[{"a":1}, 7, {"a":2}]')
    assert result.returncode == 1
    assert b"stdin: record 2: expected a JSON object, got a number" in result.stderr
    truncated = run_ndpipe("fetch", input=b'[{"a":1}, {"a":')
    assert truncated.returncode == 1
    assert b"invalid JSON array after record 1" in truncated.stderr


def test_missing_file_is_a_usage_error():
    result = run_ndpipe("fetch", "no/such/file.json")
    assert result.returncode == 2
    assert b"cannot open no/such/file.json" in result.stderr


def test_usage_errors_come_before_reading_input():
    # The input is invalid, but the bad expression must be reported first, with exit 2.
    result = run_ndpipe("select", "email", "Name=user_metadata.name ||", input=b"garbage\n")
    assert result.returncode == 2
    assert b"user_metadata.name ||" in result.stderr
    assert b"column" in result.stderr and b"^" in result.stderr
    assert result.stdout == b""
    result = run_ndpipe("filter", "a ==", input=b"garbage\n")
    assert result.returncode == 2


def test_expression_failure_names_the_record_line():
    data = ndjson([{"m": {"a": 1}}, {"m": None}])
    result = run_ndpipe("select", "n=length(m)", input=data)
    assert result.returncode == 1
    assert result.stderr.startswith(b"ndpipe select: stdin:2: expression 'length(m)' failed")
    assert records(result.stdout) == [{"n": 1}]


def test_closed_downstream_ends_quietly():
    result = shell("ndpipe fetch fixtures/users.json.gz | ndpipe select email | head -c 10")
    assert result.returncode == 0
    assert result.stderr == b""
    # A producer that keeps writing after the reader has gone: ndpipe must stop quietly, exit 0.
    big = b'{"email":"a@b.c","n":1}\n' * 200_000
    process = subprocess.Popen(
        [sys.executable, "-m", "ndpipe", "select", "email"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
        cwd=ROOT,
    )
    assert process.stdout is not None and process.stdin is not None and process.stderr is not None

    def feed() -> None:
        try:
            process.stdin.write(big)  # type: ignore[union-attr]
            process.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed)
    writer.start()
    assert len(process.stdout.read(100)) == 100
    process.stdout.close()
    assert process.wait(timeout=60) == 0
    writer.join()
    assert process.stderr.read() == b""


def test_then_chaining_matches_pipes():
    piped = shell(
        "ndpipe fetch fixtures/users.json.gz | ndpipe filter 'logins_count > `20`'"
        " | ndpipe select email 'Name=user_metadata.name || name' | ndpipe head -n 5"
    )
    chained = run_ndpipe(
        "fetch", "fixtures/users.json.gz", "then", "filter", "logins_count > `20`",
        "then", "select", "email", "Name=user_metadata.name || name", "then", "head", "-n", "5",
    )  # fmt: skip
    assert piped.returncode == chained.returncode == 0
    assert piped.stdout == chained.stdout
    assert len(records(chained.stdout)) == 5


def test_chain_errors():
    assert run_ndpipe("select", "email", "then").returncode == 2
    result = run_ndpipe("select", "email", "then", "fetch", "x.json")
    assert result.returncode == 2
    assert b"must come first" in result.stderr
    result = run_ndpipe("select", "email", "then", "filter", "a ==")
    assert result.returncode == 2


def test_help_lists_verbs_and_shows_an_example():
    result = run_ndpipe("--help")
    assert result.returncode == 0
    for verb in ("fetch", "select", "filter", "map", "head"):
        assert f"  {verb}".encode() in result.stdout
    assert b"ndpipe fetch" in result.stdout and b"|" in result.stdout
    assert run_ndpipe("--version").stdout.startswith(b"ndpipe, version")
    unknown = run_ndpipe("frobnicate")
    assert unknown.returncode == 2
    assert b"No such command" in unknown.stderr
