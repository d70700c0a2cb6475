"""to-json-array: one JSON array on stdout, or numbered files of bounded size; round trips."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ndpipe import codec
from ndpipe.errors import DataError, UsageError
from ndpipe.io import ErrorPolicy, Position, read_json_array
from ndpipe.ops.to_json_array import (
    FRAME,
    OutputPattern,
    WrittenFile,
    array_size,
    parse_size,
    write_json_array,
    write_json_array_files,
)
from tests.conftest import FIXTURES, ROOT, environment, ndjson, records, run_ndpipe, shell

GOLDEN = FIXTURES / "to-json-array"

# JSON values as Auth0 exports hold them: any unicode (astral, control characters), nesting,
# empty objects and arrays, integers of any size (exact both ways), finite floats.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
record_lists = st.lists(st.dictionaries(st.text(), values, max_size=6), max_size=12)


def read_back(data: bytes) -> list[dict]:
    """Parse an array the way `ndpipe fetch` does."""
    return list(read_json_array(io.BytesIO(data), Position("test"), ErrorPolicy()))


def same(left: object, right: object) -> bool:
    """Equal as JSON values (-0.0 == 0.0 as in JSON; NaN cannot occur)."""
    return (
        codec.dumps(left, option=orjson.OPT_SORT_KEYS)
        == codec.dumps(right, option=orjson.OPT_SORT_KEYS)
        or left == right
    )


# --- the op -------------------------------------------------------------------------------------


def test_format_is_one_record_per_line():
    out = io.BytesIO()
    assert write_json_array(iter([{"a": 1}, {"b": "é"}]), out) == 2
    assert out.getvalue() == '[\n{"a":1},\n{"b":"é"}\n]\n'.encode()
    out = io.BytesIO()
    assert write_json_array(iter([]), out) == 0
    assert out.getvalue() == b"[]\n"


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(record_lists)
def test_array_round_trips_through_json_and_the_array_reader(given_records):
    out = io.BytesIO()
    write_json_array(iter(given_records), out)
    data = out.getvalue()
    assert len(data) == array_size(len(codec.dumps(r)) for r in given_records)
    assert json.loads(data) == given_records
    assert same(read_back(data), given_records)


def test_array_is_closed_when_the_stream_fails():
    def failing():
        yield {"a": 1}
        raise DataError("bad line")

    out = io.BytesIO()
    with pytest.raises(DataError):
        write_json_array(failing(), out)
    assert json.loads(out.getvalue()) == [{"a": 1}]


def write_files(tmp_path: Path, given_records, **limits) -> list[WrittenFile]:
    written: list[WrittenFile] = []
    pattern = OutputPattern(str(tmp_path / "part-{n:03d}.json"))
    count = write_json_array_files(
        iter(given_records), pattern=pattern, on_file=written.append, **limits
    )
    assert count == len(written)
    return written


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record_lists, st.integers(0, 400), st.none() | st.integers(1, 5))
def test_files_are_valid_arrays_within_the_limits_and_packed(
    tmp_path_factory, given_records, slack, max_records
):
    tmp_path = tmp_path_factory.mktemp("files")
    sizes = [len(codec.dumps(record)) for record in given_records]
    max_bytes = max(sizes, default=2) + FRAME + slack
    written = write_files(tmp_path, given_records, max_bytes=max_bytes, max_records=max_records)

    assert [file.path for file in written] == [
        str(tmp_path / f"part-{n:03d}.json") for n in range(1, len(written) + 1)
    ]
    assert sorted(os.listdir(tmp_path)) == [Path(file.path).name for file in written]
    back: list[dict] = []
    start = 0
    for index, file in enumerate(written):
        data = Path(file.path).read_bytes()
        chunk = json.loads(data)
        assert 1 <= len(chunk) == file.records
        assert len(data) == file.size == array_size(sizes[start : start + file.records])
        assert file.size <= max_bytes
        if max_records is not None:
            assert file.records <= max_records
        end = start + file.records
        if index + 1 < len(written):
            # A new file starts only when the next record would break a limit.
            full_by_count = max_records is not None and file.records == max_records
            assert full_by_count or array_size(sizes[start : end + 1]) > max_bytes
        back.extend(read_back(data))
        start = end
    assert same(back, given_records)


def test_one_file_without_limits(tmp_path):
    written = write_files(tmp_path, [{"a": 1}, {"b": 2}])
    assert [(file.records, Path(file.path).read_bytes()) for file in written] == [
        (2, b'[\n{"a":1},\n{"b":2}\n]\n')
    ]
    assert [Path(f.path).read_bytes() for f in write_files(tmp_path, [])] == [b"[]\n"]
    assert write_files(tmp_path / "split", [], max_bytes=100) == []


def test_record_larger_than_a_file_is_an_error_and_earlier_files_are_complete(tmp_path):
    small = {"a": "x" * 10}  # 18 bytes as JSON: 23 bytes alone in a file
    big = {"a": "x" * 100}
    written: list[WrittenFile] = []
    pattern = OutputPattern(str(tmp_path / "{n}.json"))
    with pytest.raises(
        DataError,
        match=r"record is 108 bytes as JSON; a file holding only it would be 113 bytes, "
        r"over --max-bytes 50",
    ):
        write_json_array_files(
            iter([small, small, small, big, small]),
            pattern=pattern,
            on_file=written.append,
            max_bytes=50,
        )
    assert [(Path(f.path).name, f.records) for f in written] == [("1.json", 2), ("2.json", 1)]
    assert json.loads((tmp_path / "2.json").read_bytes()) == [small]
    assert sorted(os.listdir(tmp_path)) == ["1.json", "2.json"]  # no .part file left


def test_exact_boundary(tmp_path):
    record = {"a": 1}  # 7 bytes: one record makes a 12-byte file, two make 21
    assert [f.records for f in write_files(tmp_path / "a", [record] * 4, max_bytes=21)] == [2, 2]
    assert [f.records for f in write_files(tmp_path / "b", [record] * 4, max_bytes=20)] == [
        1,
        1,
        1,
        1,
    ]
    with pytest.raises(DataError):
        write_files(tmp_path / "c", [record], max_bytes=11)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500000", 500_000),
        ("500k", 500_000),
        ("500KB", 500_000),
        ("488KiB", 499_712),
        ("10MB", 10**7),
        (" 1 GiB ", 2**30),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "x", "12q", "-5", "1.5MB"])
def test_parse_size_refuses(text):
    with pytest.raises(UsageError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "number", "path"),
    [
        ("users-{n}.json", 7, "users-7.json"),
        ("import/users-{n:04d}.json", 12, "import/users-0012.json"),
        ("a{{b}}-{n:>3}.json", 5, "a{b}-  5.json"),
        ("users.json", 1, "users.json"),
    ],
)
def test_output_pattern(text, number, path):
    assert OutputPattern(text).path(number) == path


@pytest.mark.parametrize(
    "text", ["", "users-{}.json", "{x}.json", "{n!r}.json", "{n:q}.json", "{n.json"]
)
def test_output_pattern_refuses(text):
    with pytest.raises(UsageError):
        OutputPattern(text)


# --- the command --------------------------------------------------------------------------------


def test_cli_golden():
    result = run_ndpipe("to-json-array", input=(GOLDEN / "records.ndjson").read_bytes())
    assert result.returncode == 0, result.stderr
    assert result.stdout == (GOLDEN / "records.json").read_bytes()
    assert result.stderr == b""


def test_cli_reads_a_json_array_too():
    golden = (GOLDEN / "records.json").read_bytes()
    result = run_ndpipe("to-json-array", input=golden)
    assert result.stdout == golden


def test_cli_files_reported_on_stderr(tmp_path):
    users = (FIXTURES / "users.ndjson").read_bytes()
    result = run_ndpipe(
        "to-json-array",
        "--max-bytes",
        "5000",
        "--out",
        "out/users-{n:04d}.json",
        input=users,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    files = sorted((tmp_path / "out").iterdir())
    assert len(files) > 3
    lines = result.stderr.decode().splitlines()
    back = []
    for file, line in zip(files, lines, strict=False):
        chunk = json.loads(file.read_bytes())
        size = file.stat().st_size
        assert size <= 5000
        assert (
            line
            == f"ndpipe to-json-array: wrote out/{file.name}: {len(chunk)} records, {size} bytes"
        )
        back.extend(chunk)
    assert lines[-1] == f"ndpipe to-json-array: wrote 40 records in {len(files)} files"
    assert back == records(users)


def test_cli_max_records_and_single_file(tmp_path):
    data = ndjson([{"n": n} for n in range(5)])
    result = run_ndpipe(
        "to-json-array", "--max-records", "2", "--out", "{n}.json", input=data, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads((tmp_path / f"{n}.json").read_bytes()) for n in (1, 2, 3)] == [
        [{"n": 0}, {"n": 1}], [{"n": 2}, {"n": 3}], [{"n": 4}],
    ]  # fmt: skip
    result = run_ndpipe("to-json-array", "--out", "all.json", input=data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "all.json").read_bytes()) == [{"n": n} for n in range(5)]
    size = (tmp_path / "all.json").stat().st_size
    assert size == 5 * 7 + 2 * 5 + 3
    assert (
        result.stderr == f"ndpipe to-json-array: wrote all.json: 5 records, {size} bytes\n".encode()
    )


def test_cli_no_records_no_files(tmp_path):
    result = run_ndpipe(
        "to-json-array", "--max-bytes", "500000", "--out", "u-{n}.json", cwd=tmp_path
    )
    assert result.returncode == 0
    assert list(tmp_path.iterdir()) == []
    assert b"no records, so no files were written" in result.stderr


def test_cli_warns_about_files_left_from_an_earlier_run(tmp_path):
    (tmp_path / "u-2.json").write_bytes(b"[]\n")
    result = run_ndpipe(
        "to-json-array",
        "--max-records",
        "5",
        "--out",
        "u-{n}.json",
        input=b'{"a":1}\n',
        cwd=tmp_path,
    )
    assert result.returncode == 0
    assert b"u-2.json is left from an earlier run; this run did not write it" in result.stderr


def test_cli_record_too_large_names_its_line(tmp_path):
    data = ndjson([{"a": "x"}, {"a": "y"}, {"a": "z" * 200}, {"a": "w"}])
    result = run_ndpipe(
        "to-json-array", "--max-bytes", "100", "--out", "{n}.json", input=data, cwd=tmp_path
    )
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "ndpipe to-json-array: stdin:3: record is 208 bytes as JSON" in stderr
    assert "over --max-bytes 100, so it was not written" in stderr
    assert stderr.startswith("ndpipe to-json-array: wrote 1.json: 2 records")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.json"]
    assert json.loads((tmp_path / "1.json").read_bytes()) == [{"a": "x"}, {"a": "y"}]


def test_cli_bad_line_leaves_a_valid_array():
    result = run_ndpipe("to-json-array", input=b'{"a":1}\n{"a":\n')
    assert result.returncode == 1
    assert json.loads(result.stdout) == [{"a": 1}]
    assert result.stderr.startswith(b"ndpipe to-json-array: stdin:2: invalid JSON")


@pytest.mark.parametrize(
    "args",
    [
        ["--max-bytes", "500000"],
        ["--max-records", "3"],
        ["--max-bytes", "500000", "--out", "users.json"],
        ["--out", "users-{x}.json"],
        ["--max-bytes", "12q", "--out", "{n}.json"],
        ["--max-bytes", "6", "--out", "{n}.json"],
        ["--max-records", "0", "--out", "{n}.json"],
    ],
)
def test_cli_usage_errors(args, tmp_path):
    result = run_ndpipe("to-json-array", *args, input=b'{"a":1}\n', cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == b""
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record_lists.filter(bool))
def test_cli_round_trip_through_fetch(given_records):
    """to-json-array, then `ndpipe fetch` of the array, gives the same records back."""
    given_records = [json.loads(codec.dumps(r)) for r in given_records]
    result = shell("ndpipe to-json-array | ndpipe fetch", input=ndjson(given_records))
    assert result.returncode == 0, result.stderr
    assert same(records(result.stdout), given_records)


def test_cli_chunked_round_trip_through_fetch(tmp_path):
    users = (FIXTURES / "users.ndjson").read_bytes()
    (tmp_path / "users.ndjson").write_bytes(users)
    result = shell(
        "ndpipe fetch users.ndjson | ndpipe to-json-array --max-bytes 3000 --out 'c/{n:02d}.json' "
        "&& for f in c/*.json; do ndpipe fetch $f; done",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "c").iterdir())) > 5
    assert records(result.stdout) == records(users)


# --- memory -------------------------------------------------------------------------------------

# Linux counts the memory a process had before exec in its max RSS, so a child forked straight
# from pytest (large after the hypothesis tests) would report pytest's size. A small launcher
# forks ndpipe instead and prints the child's max RSS (KiB) on stderr.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "ndpipe", *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write(f"{usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def max_rss_kib(count: int) -> int:
    """Run `ndpipe to-json-array` over COUNT small generated records; returns its max RSS."""
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, "to-json-array"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
        cwd=ROOT,
    )
    assert process.stdin is not None and process.stdout is not None
    block = b"".join(
        orjson.dumps({"email": f"user{n}@example.com", "n": n, "tags": ["a", "ü"]}) + b"\n"
        for n in range(1000)
    )

    def feed() -> None:
        for _ in range(count // 1000):
            process.stdin.write(block)  # type: ignore[union-attr]
        process.stdin.close()  # type: ignore[union-attr]

    writer = threading.Thread(target=feed)
    writer.start()
    opened = process.stdout.read(2)
    tail = b""
    written = 2
    while chunk := process.stdout.read(1 << 20):
        written += len(chunk)
        tail = (tail + chunk)[-3:]
    writer.join()
    stderr = process.stderr.read()  # type: ignore[union-attr]
    assert process.wait() == 0, stderr
    assert opened == b"[\n" and tail == b"\n]\n"
    assert written > count * 50
    return int(stderr)


def test_constant_memory_on_a_million_records():
    small = max_rss_kib(100_000)
    large = max_rss_kib(1_000_000)
    assert large < 40 * 1024, f"max RSS {large} KiB on 1M records"
    assert large - small < 8 * 1024, f"max RSS grew from {small} to {large} KiB"
