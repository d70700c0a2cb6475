"""Hostile tests: ndpipe held to its promises on every verb, through the real CLI and real pipes.

Exact numbers, input decoding decided from content, files complete or absent, side files that
never destroy inputs, no tracebacks, an honest skip policy and expressions checked before input.
Values are written with Python's json module (exact integers of any size, floats as repr) and
read back the same way, so the checks never depend on ndpipe's own codec.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import math
import os
import signal
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, environment, run_ndpipe, shell

DOCUMENTED_EXITS = {0, 1, 2, 3, 129, 130, 143}  # 70 is documented too, but always a bug

# --- helpers -------------------------------------------------------------------------------


def clean(result: subprocess.CompletedProcess[bytes], *allowed: int) -> None:
    """No traceback, no internal error, and an exit code from the documented set (or `allowed`)."""
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    assert b"internal error" not in result.stderr, result.stderr.decode(errors="replace")
    assert result.returncode != 70, result.stderr.decode(errors="replace")
    assert result.returncode in (set(allowed) or DOCUMENTED_EXITS), (
        result.returncode,
        result.stderr.decode(errors="replace"),
    )


def dumps(record: object) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode()


def lines(records: list[dict]) -> bytes:
    return b"".join(dumps(record) + b"\n" for record in records)


def array(records: list[dict]) -> bytes:
    return b"[" + b",".join(dumps(record) for record in records) + b"]"


def parsed(output: bytes) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def canonical(value: object) -> object:
    """A value that compares equal only for the same JSON value: integers stay integers, a
    float keeps its sign (-0.0 is not 0.0) and is never equal to an integer."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", value, math.copysign(1.0, value))
    if isinstance(value, list):
        return [canonical(item) for item in value]
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items()}
    raise TypeError(type(value))


def same_records(left: list[dict], right: list[dict]) -> bool:
    return [canonical(record) for record in left] == [canonical(record) for record in right]


def listing(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def part_files(directory: Path) -> list[str]:
    return [name for name in listing(directory) if name.endswith(".part")]


# --- 1. exact numbers ------------------------------------------------------------------------

NUMBER_TEXTS = [
    "12345678901234567890123",
    "-12345678901234567890123",
    str(-(2**63)),
    str(2**64 - 1),
    str(2**64),
    str(10**300),
    "9" * 309,  # beyond the largest double, still an exact integer
    "-" + "1" + "0" * 400,
    "7" * 4300,  # the most digits Python converts
    "-0.0",
    "5e-324",
    "-5e-324",
    "1.7976931348623157e308",
    "-1.7976931348623157e308",
    "2.2250738585072014e-308",
    "1E5",
    "1.5e300",
    "0.1",
    "0",
    "-1",
    "1e22",
]


def number_record() -> bytes:
    fields = ",".join(f'"n{i}":{text}' for i, text in enumerate(NUMBER_TEXTS))
    nested = ",".join(NUMBER_TEXTS)
    return f'{{"email":"n@example.com","id":1,{fields},"deep":{{"list":[{nested}]}}}}'.encode()


NUMBER_LINE = number_record()
NUMBER_VALUE = json.loads(NUMBER_LINE)

# Verbs (with arguments) that promise to keep each record as it is.
KEEPING = {
    "fetch": ["fetch"],
    "select": ["select", *[f"{key}={key}" for key in NUMBER_VALUE]],
    "filter": ["filter", "`true`"],
    "map": ["map", "--set", "tmp=`1`", "--del", "tmp"],
    "head": ["head", "-n", "1000000000000"],
    "sample": ["sample", "-n", "1000000", "--seed", "3"],
    "sort": ["sort", "-k", "n0"],
    "dedupe": ["dedupe", "-k", "id"],
    "escape-csv": ["escape-csv", "--style", "none"],
}


@pytest.mark.parametrize("reader", ["ndjson", "array"])
@pytest.mark.parametrize("verb", sorted(KEEPING))
def test_numbers_are_exact_through_every_verb(verb, reader):
    data = NUMBER_LINE + b"\n" if reader == "ndjson" else b"[\n" + NUMBER_LINE + b"\n]\n"
    result = run_ndpipe(*KEEPING[verb], input=data)
    clean(result, 0)
    assert same_records(parsed(result.stdout), [NUMBER_VALUE]), result.stdout


@pytest.mark.parametrize("reader", ["ndjson", "array"])
def test_numbers_are_exact_through_to_json_array_and_back(reader, tmp_path):
    data = NUMBER_LINE + b"\n" if reader == "ndjson" else b"[" + NUMBER_LINE + b"]"
    result = shell("ndpipe to-json-array | ndpipe fetch", input=data)
    clean(result, 0)
    assert same_records(parsed(result.stdout), [NUMBER_VALUE])
    out = tmp_path / "numbers.json"
    result = run_ndpipe("to-json-array", "--out", str(out), input=data)
    clean(result, 0)
    assert same_records(json.loads(out.read_bytes()), [NUMBER_VALUE])


def test_numbers_are_exact_through_a_then_chain():
    chain = ["select", *KEEPING["select"][1:], "then", "map", "--set", "t=`1`", "--del", "t"]
    chain += ["then", "sort", "-k", "n5", "then", "dedupe", "-k", "id", "then", "to-json-array"]
    result = run_ndpipe(*chain, input=NUMBER_LINE + b"\n")
    clean(result, 0)
    assert same_records(json.loads(result.stdout), [NUMBER_VALUE])


def test_numbers_are_exact_in_csv_cells():
    keys = [f"n{i}" for i in range(len(NUMBER_TEXTS))]
    result = run_ndpipe("csv", "--columns", ",".join(keys), input=NUMBER_LINE + b"\n")
    clean(result, 0)
    cells = result.stdout.decode().splitlines()[1].split(",")
    for key, cell in zip(keys, cells, strict=True):
        assert canonical(json.loads(cell)) == canonical(NUMBER_VALUE[key]), (key, cell)


def test_numbers_are_exact_through_upsert_patch_and_import_dry_run(tmp_path):
    metadata = NUMBER_LINE.replace(b'"email":"n@example.com","id":1,', b"")
    user = b'{"email":"n@example.com","email_verified":true,"user_metadata":' + metadata
    user += b',"app_metadata":{}}\n'
    result = run_ndpipe("upsert-patch", "--set", "user_metadata.zz=1", input=user)
    clean(result, 0)
    (out,) = parsed(result.stdout)
    assert out["user_metadata"].pop("zz") == 1
    assert canonical(out["user_metadata"]) == canonical(json.loads(metadata))
    result = run_ndpipe(
        "import", "--dry-run", "--out", str(tmp_path / "c-{n}.json"), input=result.stdout
    )
    clean(result, 0)
    (sent,) = json.loads((tmp_path / "c-1.json").read_bytes())
    assert sent["user_metadata"].pop("zz") == 1
    assert canonical(sent["user_metadata"]) == canonical(json.loads(metadata))


# A float beyond the largest double (about 1.8e308) and an integer of more digits than can be
# read exactly (4,300) go through every verb; more spellings go through fetch. (Integers up to
# 4,300 digits are exact: see NUMBER_TEXTS.)
BEYOND_DOUBLE = ["1e400", "9" * 4301]
MORE_BEYOND_DOUBLE = ["-1e400", "1.8e308", "-2" + "0" * 4300, "1" + "0" * 5000, "9e999"]
ALL_VERB_ARGS = {
    **{verb: args for verb, args in KEEPING.items()},
    "csv": ["csv"],
    "to-json-array": ["to-json-array"],
    "import-clean": ["import-clean"],
    "upsert-patch": ["upsert-patch", "--set", "user_metadata.a=1"],
}


@pytest.mark.parametrize("number", BEYOND_DOUBLE)
@pytest.mark.parametrize("verb", sorted(ALL_VERB_ARGS))
def test_numbers_beyond_double_range_are_refused_naming_the_line(verb, number):
    good = b'{"email":"a@example.com","email_verified":true,"id":1,"n0":1}\n'
    bad = f'{{"email":"b@example.com","email_verified":true,"id":2,"n0":{number}}}\n'.encode()
    args = ["select", "email", "n0"] if verb == "select" else ALL_VERB_ARGS[verb]
    result = run_ndpipe(*args, input=good + bad)
    clean(result, 1)
    assert b"stdin:2" in result.stderr, result.stderr


@pytest.mark.parametrize("number", MORE_BEYOND_DOUBLE)
def test_more_numbers_beyond_double_range_are_refused(number):
    result = run_ndpipe("fetch", input=f'{{"a":1}}\n{{"a":{number}}}\n'.encode())
    clean(result, 1)
    assert b"stdin:2" in result.stderr, result.stderr


@pytest.mark.parametrize("number", ["1e400", "9" * 4301])
def test_numbers_beyond_double_range_are_refused_in_arrays(number):
    result = run_ndpipe("fetch", input=f'[{{"a":1}},{{"a":{number}}}]'.encode())
    clean(result, 1)
    assert b"record 2" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["select", "x=ceil(`1e400`)"],
        ["filter", "a > `1e400`"],
        ["map", "--set", "x=`-1e400`"],
        ["sort", "-k", "`1e400`"],
        ["dedupe", "-k", "`1e999`"],
    ],
)
def test_out_of_range_literals_are_usage_errors(args):
    result = run_ndpipe(*args, input=b'{"a":1}\n')
    clean(result, 2)
    assert result.stdout == b""


# --- 2. input decoding -----------------------------------------------------------------------


@pytest.mark.parametrize("first", [b"5", b"null", b'"x"', b"true", b"-1.5", b"1"])
def test_a_json_first_line_is_ndjson_not_csv(first):
    data = first + b'\n{"a":1}\n'
    result = run_ndpipe("fetch", input=data)
    clean(result, 1)
    assert result.stderr.startswith(b"ndpipe fetch: stdin:1:"), result.stderr
    assert result.stdout == b""
    # ... and it stays NDJSON: skipping the bad first line gives the record, not a CSV row.
    result = run_ndpipe("fetch", "--on-error", "skip", input=data)
    clean(result, 0)
    assert parsed(result.stdout) == [{"a": 1}]


def test_lone_surrogates_are_refused_in_arrays_and_lines():
    for data, where in [
        (b'[{"a":"\\ud800"}]', b"record 1"),
        (b'[{"a":1},{"\\udc00":1}]', b"record 2"),
        (b'{"a":1}\n{"a":"x\\udbff"}\n', b"stdin:2"),
    ]:
        result = run_ndpipe("fetch", input=data)
        clean(result, 1)
        assert where in result.stderr, result.stderr


@pytest.mark.parametrize("padding", [b" " * 70_000, b"\n" * 70_000, b" \r\n\t" * 20_000])
def test_arrays_after_long_leading_white_space_are_arrays(padding):
    data = padding + b'[{"a":12345678901234567890123},\n{"b":-0.0}]'
    result = run_ndpipe("fetch", input=data)
    clean(result, 0)
    assert same_records(parsed(result.stdout), [{"a": 12345678901234567890123}, {"b": -0.0}])


def test_ndjson_after_long_leading_blank_lines_names_the_real_line():
    data = b"\n" * 70_000 + b'{"a":1}\n{"a":\n'
    result = run_ndpipe("select", "a", input=data)
    clean(result, 1)
    assert b"stdin:70002" in result.stderr, result.stderr


RECORDS = [{"i": i, "pad": "x" * 60, "big": 10**25 + i} for i in range(20_000)]
RECORD_BYTES = lines(RECORDS)


def decompressible_lines(data: bytes) -> int:
    """How many complete lines a streaming decompressor gets out of `data` before it fails."""
    decompressor = zlib.decompressobj(31)
    out = b""
    try:
        for start in range(0, len(data), 1024):
            out += decompressor.decompress(data[start : start + 1024])
    except zlib.error:
        pass
    return out.count(b"\n")


def bad_deflate() -> tuple[bytes, int]:
    """A gzip stream whose deflate data turns invalid after the first 5,000 records."""
    head = RECORD_BYTES[: RECORD_BYTES.index(b'{"i": 5000,')]
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + body + b"\x07\xff\xff\xff" * 4, 5000


def corrupt_gzips() -> dict[str, tuple[bytes, int]]:
    whole = gzip.compress(RECORD_BYTES)
    crc = bytearray(whole)
    crc[-8] ^= 0xFF
    truncated = whole[: len(whole) // 2]
    return {
        "truncated": (truncated, decompressible_lines(truncated)),
        # The fault is found after every record was decompressed: all of them come out.
        "trailing-garbage": (whole + b"garbage!", len(RECORDS)),
        "bad-deflate": bad_deflate(),
    }


CORRUPT = corrupt_gzips()


@pytest.mark.parametrize("how", ["stdin", "file"])
@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_gzip_keeps_the_records_before_the_fault(kind, how, tmp_path):
    data, expected = CORRUPT[kind]
    if how == "file":
        path = tmp_path / "users.json.gz"
        path.write_bytes(data)
        result = run_ndpipe("fetch", str(path))
    else:
        result = run_ndpipe("select", "i", "pad", "big", input=data)
    clean(result, 1)
    assert b"gzip" in result.stderr, result.stderr
    out = parsed(result.stdout)
    assert same_records(out, RECORDS[: len(out)])
    assert len(out) == expected, (len(out), expected, result.stderr)


def test_gzip_with_a_bad_crc_is_named_and_keeps_a_prefix():
    whole = bytearray(gzip.compress(RECORD_BYTES))
    whole[-8] ^= 0xFF
    result = run_ndpipe("fetch", input=bytes(whole))
    clean(result, 1)
    assert b"gzip" in result.stderr
    out = parsed(result.stdout)
    assert out and same_records(out, RECORDS[: len(out)])
    # The CRC is checked after the last byte was decompressed: every record came before it.
    assert len(out) == len(RECORDS), len(out)


def test_truncated_gzip_patch_file_is_an_error_not_an_interrupt(tmp_path):
    patches = b"".join(
        dumps({"email": f"u{i}@example.com", "user_metadata": {"n": i}}) + b"\n"
        for i in range(20_000)
    )
    compressed = gzip.compress(patches)
    patch = tmp_path / "changes.ndjson.gz"
    patch.write_bytes(compressed[: len(compressed) // 2])
    user = b'{"email":"u1@example.com","email_verified":true,"user_metadata":{}}\n'
    result = run_ndpipe("upsert-patch", "--patch", str(patch), input=user)
    clean(result, 1)
    assert b"gzip" in result.stderr, result.stderr


def not_read_inputs() -> dict[str, tuple[bytes, bytes]]:
    sample = RECORD_BYTES[:2000]
    buffer = __import__("io").BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("users.ndjson", sample)
    text = sample.decode()
    return {
        "utf-16-bom": (text.encode("utf-16"), b"UTF-16"),
        "utf-16-le": (text.encode("utf-16-le"), b"UTF-16"),
        "utf-16-be": (text.encode("utf-16-be"), b"UTF-16"),
        "utf-16-be-bom": (b"\xfe\xff" + text.encode("utf-16-be"), b"UTF-16"),
        "bzip2": (bz2.compress(sample), b"bzip2"),
        "xz": (lzma.compress(sample), b"xz"),
        "zstd": (b"\x28\xb5\x2f\xfd\x24\x00\x01\x00\x00" + sample[:50], b"zstd"),
        "zip": (buffer.getvalue(), b"zip"),
        "gzip-inside-gzip": (gzip.compress(gzip.compress(sample)), b"gzip"),
        "gzip-of-utf-16": (gzip.compress(text.encode("utf-16")), b"UTF-16"),
        "gzip-of-bzip2": (gzip.compress(bz2.compress(sample)), b"bzip2"),
    }


NOT_READ = not_read_inputs()


@pytest.mark.parametrize("verb", ["fetch", "select"])
@pytest.mark.parametrize("kind", sorted(NOT_READ))
def test_other_encodings_and_compressions_are_named(kind, verb):
    data, name = NOT_READ[kind]
    result = run_ndpipe(verb, *(["i"] if verb == "select" else []), input=data)
    clean(result, 1)
    assert name in result.stderr, result.stderr
    assert result.stdout == b""
    assert b"WINDOWS-1252" not in result.stderr.upper() and b"latin" not in result.stderr.lower()


@pytest.mark.parametrize("reader", ["ndjson", "array", "csv"])
def test_invalid_utf8_is_named_with_line_and_column(reader):
    if reader == "ndjson":
        data, where = b'{"a":"ok"}\n{"a":"caf\xe9"}\n', b"stdin:2"
    elif reader == "array":
        data, where = b'[{"a":"ok"},\n{"a":"caf\xe9"}]', b"record 2"
    else:
        data, where = b"a,b\nok,1\ncaf\xe9,2\n", b"stdin:3"
    result = run_ndpipe("fetch", input=data)
    clean(result, 1)
    assert where in result.stderr, result.stderr
    assert b"UTF-8" in result.stderr
    assert b"column 10" in result.stderr or b"byte 4" in result.stderr, result.stderr


# --- hypothesis: hostile records through every verb that keeps them --------------------------

HOSTILE_STRINGS = [
    "=1+1",
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1)",
    "\t=1",
    "\r=1",
    '"quoted", with comma',
    "''",
    "line\nbreak\r\nand CR\r",
    "😀 emoji",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 astral",
    "\u2028\u2029",
    "\ufeff=BOM",
    "\x00nul",
    "",
    "null",
    "1e400",
]
HOSTILE_NUMBERS = [
    12345678901234567890123,
    -(2**63),
    2**64 - 1,
    10**300,
    -0.0,
    5e-324,
    1.7976931348623157e308,
    1e16,
]
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(HOSTILE_NUMBERS)
    | st.sampled_from(HOSTILE_STRINGS)
    | text
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(HOSTILE_STRINGS) | text, inner, max_size=4)
    ),
    max_leaves=10,
)
# Top-level keys a field spec can name: no `=`, `<`, `>` or `!` (they split NAME=EXPR).
key_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="=<>!"),
    min_size=1,
    max_size=8,
).filter(lambda key: key == key.strip())
record_lists = st.lists(st.dictionaries(key_text, values, max_size=5), min_size=1, max_size=8).map(
    lambda found: [{**record, "id": index} for index, record in enumerate(found)]
)

CLI_SETTINGS = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def field_spec(key: str) -> str:
    return f"{key}={json.dumps(key)}"


@CLI_SETTINGS
@given(record_lists, st.sampled_from(["ndjson", "array"]))
def test_hypothesis_fetch_filter_head_sample_dedupe_escape_keep_records(found, reader):
    data = lines(found) if reader == "ndjson" else array(found)
    for args in (
        ["fetch"],
        ["filter", "`true`"],
        ["head", "-n", str(10**30)],
        ["sample", "-n", str(10**30), "--seed", "7"],
        ["dedupe", "-k", "id"],
        ["escape-csv", "--style", "none"],
    ):
        result = run_ndpipe(*args, input=data)
        clean(result, 0)
        assert same_records(parsed(result.stdout), found), (args, result.stdout)


@CLI_SETTINGS
@given(record_lists)
def test_hypothesis_select_of_every_field_keeps_records(found):
    keys = list(dict.fromkeys(key for record in found for key in record))
    result = run_ndpipe("select", "--", *[field_spec(key) for key in keys], input=lines(found))
    clean(result, 0)
    expected = [{key: record.get(key) for key in keys} for record in found]
    assert same_records(parsed(result.stdout), expected), result.stderr


@pytest.mark.parametrize("name", ["two  spaces", "Email Address", "é ü"])
def test_select_names_keep_their_inner_spaces(name):
    """NAME=EXPR writes the flat key NAME, spaces inside included."""
    result = run_ndpipe("select", f"{name}={json.dumps(name)}", input=lines([{name: 1}]))
    clean(result, 0)
    assert parsed(result.stdout) == [{name: 1}]


@pytest.mark.parametrize("name", [" a", "a ", "\tTab"])
def test_select_names_ignore_surrounding_spaces_as_documented(name):
    """Spaces around NAME are ignored (README: `'Name = name'` writes `Name`)."""
    record = {name: 1, name.strip(): 2}
    result = run_ndpipe("select", f"{name}={json.dumps(name)}", input=lines([record]))
    clean(result, 0)
    assert parsed(result.stdout) == [{name.strip(): 1}]
    result = run_ndpipe("select", f"{name}=a", input=lines([record]))
    clean(result, 0)


def test_select_a_blank_name_is_a_usage_error():
    result = run_ndpipe("select", ' =" "', input=b'{" ":1}\n')
    clean(result, 2)
    assert result.stdout == b""


@CLI_SETTINGS
@given(record_lists)
def test_hypothesis_map_no_op_keeps_records(found):
    result = run_ndpipe(
        "map", "--set", "__ndpipe_tmp=`1`", "--del", "__ndpipe_tmp", input=lines(found)
    )
    clean(result, 0)
    assert same_records(parsed(result.stdout), found)


SORT_KEYS = (
    st.none() | st.booleans() | st.sampled_from([0, -1, 2.5, 10**30, "a", "B", "", [1], {"x": 1}])
)


def sort_rank(record: dict) -> tuple:
    if "k" not in record or record["k"] is None:
        return (9,)
    value = record["k"]
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    if isinstance(value, list):
        return (3, json.dumps(value, sort_keys=True, separators=(",", ":")))
    return (4, json.dumps(value, sort_keys=True, separators=(",", ":")))


@CLI_SETTINGS
@given(st.lists(st.fixed_dictionaries({}, optional={"k": SORT_KEYS, "v": values}), max_size=12))
def test_hypothesis_sort_is_a_stable_permutation(found):
    found = [{**record, "id": index} for index, record in enumerate(found)]
    result = run_ndpipe("sort", "-k", "k", input=lines(found))
    clean(result, 0)
    assert same_records(parsed(result.stdout), sorted(found, key=sort_rank))


@CLI_SETTINGS
@given(record_lists)
def test_hypothesis_to_json_array_then_fetch_gives_back_the_input(found):
    result = shell("ndpipe to-json-array | ndpipe fetch", input=lines(found))
    clean(result, 0)
    assert same_records(parsed(result.stdout), found)


@CLI_SETTINGS
@given(record_lists)
def test_hypothesis_then_chain_equals_pipes(found):
    segments = [
        ["filter", "`true`"],
        ["map", "--set", "seen=`true`"],
        ["sort", "-k", "id", "--desc"],
        ["dedupe", "-k", "id"],
        ["escape-csv"],
        ["head", "-n", "5"],
    ]
    chained = [word for segment in segments for word in ["then", *segment]][1:]
    one = run_ndpipe(*chained, input=lines(found))
    clean(one, 0)
    piped = " | ".join(
        "ndpipe " + " ".join("'" + word + "'" for word in segment) for segment in segments
    )
    two = shell(piped, input=lines(found))
    clean(two, 0)
    assert one.stdout == two.stdout
    assert len(parsed(one.stdout)) == min(5, len(found))


def test_sort_spilling_to_disk_is_stable_and_cleans_up(tmp_path):
    found = [{"k": i % 7, "id": i, "pad": "p" * 300, "big": 10**30 + i} for i in range(3000)]
    spill = tmp_path / "spill"
    spill.mkdir()
    result = run_ndpipe("sort", "-k", "k", "-S", "64K", "-T", str(spill), input=lines(found))
    clean(result, 0)
    assert same_records(parsed(result.stdout), sorted(found, key=lambda r: r["k"]))
    assert listing(spill) == []


# --- 3. files complete or absent: signals ------------------------------------------------------

SIGNALS = {
    "SIGINT": (signal.SIGINT, 130),
    "SIGTERM": (signal.SIGTERM, 143),
    "SIGHUP": (signal.SIGHUP, 129),
}


def users(count: int, *, email: bool = True, dups: bool = True) -> bytes:
    out = []
    for i in range(count):
        user: dict = {"email_verified": True, "user_metadata": {"i": i, "pad": "x" * 200}}
        if email:
            user["email"] = f"u{i % 50 if dups else i}@example.com"
        out.append(user)
    return lines(out)


# Each: the arguments (with {d} the directory watched), the input, the file that must not
# stand under its final name until the run ends.
SIDE_FILE_RUNS = {
    "dedupe --dups": (["dedupe", "-k", "email", "--dups", "{d}/dups.ndjson"], users(2000)),
    "import-clean --rejects": (
        ["import-clean", "--rejects", "{d}/rejects.ndjson"],
        users(2000, email=False),
    ),
    "upsert-patch --unmatched": (
        ["upsert-patch", "--patch", "{p}", "--unmatched", "{d}/unmatched.ndjson"],
        users(2000),
    ),
    "import --report": (
        ["import", "--dry-run", "--out", "{d}/chunk-{{n}}.json", "--report", "{d}/report.ndjson"],
        users(2000, email=False),
    ),
    "to-json-array --out": (["to-json-array", "--out", "{d}/users.json"], users(2000)),
}


def start(args: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ndpipe", *args],
        stdin=subprocess.PIPE,
        stdout=open(cwd / "stdout", "wb"),
        stderr=open(cwd / "stderr", "wb"),
        cwd=ROOT,
        env=environment(env),
    )


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def stderr_of(cwd: Path) -> bytes:
    return (cwd / "stderr").read_bytes()


@pytest.mark.parametrize("signame", sorted(SIGNALS))
@pytest.mark.parametrize("run", sorted(SIDE_FILE_RUNS))
def test_a_signal_mid_run_leaves_no_side_file(run, signame, tmp_path):
    watched = tmp_path / "out"
    watched.mkdir()
    patch = tmp_path / "patch.ndjson"
    patch.write_bytes(b'{"email":"nobody@example.com","user_metadata":{"a":1}}\n')
    template, data = SIDE_FILE_RUNS[run]
    args = [arg.format(d=watched, p=patch) for arg in template]
    process = start(args, cwd=tmp_path)
    try:
        process.stdin.write(data)
        process.stdin.flush()
        # While the run goes on, its files exist only under hidden temporary names.
        assert wait_for(lambda: part_files(watched)), listing(watched)
        final = [name for name in listing(watched) if not name.startswith(".")]
        assert not [n for n in final if not n.startswith("chunk-")], final
        number, code = SIGNALS[signame]
        process.send_signal(number)
        process.wait(timeout=20)
    finally:
        process.kill()
        process.stdin.close()
    assert process.returncode == code, (process.returncode, stderr_of(tmp_path))
    assert b"Traceback" not in stderr_of(tmp_path)
    left = [name for name in listing(watched) if not name.startswith("chunk-")]
    assert left == [], left


def side_file_run(run: str, tmp_path: Path) -> tuple[Path, list[str], bytes]:
    """The watched directory, the arguments and the input of one SIDE_FILE_RUNS entry."""
    watched = tmp_path / "out"
    watched.mkdir()
    patch = tmp_path / "patch.ndjson"
    patch.write_bytes(b'{"email":"nobody@example.com","user_metadata":{"a":1}}\n')
    template, data = SIDE_FILE_RUNS[run]
    return watched, [arg.format(d=watched, p=patch) for arg in template], data


@pytest.mark.parametrize("run", sorted(SIDE_FILE_RUNS))
def test_side_files_are_renamed_into_place_when_the_run_ends(run, tmp_path):
    watched, args, data = side_file_run(run, tmp_path)
    result = run_ndpipe(*args, input=data)
    clean(result, 0, 1)
    assert part_files(watched) == []
    target = args[-1]
    assert os.path.exists(target), (listing(watched), result.stderr)
    content = Path(target).read_bytes()
    if target.endswith(".json"):
        json.loads(content)
    else:
        assert all(json.loads(line) for line in content.splitlines())


@pytest.mark.parametrize("run", sorted(SIDE_FILE_RUNS))
def test_bad_input_leaves_no_side_file(run, tmp_path):
    watched, args, data = side_file_run(run, tmp_path)
    result = run_ndpipe(*args, input=data + b'{"email": broken\n')
    clean(result, 1)
    assert b"stdin:2001" in result.stderr, result.stderr
    left = [name for name in listing(watched) if not name.startswith("chunk-")]
    if run == "to-json-array --out":
        # --out holds exactly the records before the bad line.
        assert left == ["users.json"], left
        assert len(json.loads((watched / "users.json").read_bytes())) == 2000
    else:
        assert left == [], left


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_to_json_array_files_are_complete_after_a_signal(signame, tmp_path):
    watched = tmp_path / "out"
    watched.mkdir()
    process = start(
        ["to-json-array", "--max-records", "100", "--out", f"{watched}/u-{{n:03d}}.json"],
        cwd=tmp_path,
    )
    try:
        process.stdin.write(users(1050))
        process.stdin.flush()
        assert wait_for(lambda: len(listing(watched)) >= 5), listing(watched)
        process.send_signal(SIGNALS[signame][0])
        process.wait(timeout=20)
    finally:
        process.kill()
        process.stdin.close()
    assert process.returncode == SIGNALS[signame][1], stderr_of(tmp_path)
    names = listing(watched)
    assert part_files(watched) == [], names
    assert names == [f"u-{n:03d}.json" for n in range(1, len(names) + 1)], names
    assert len(names) >= 4, names
    for name in names:
        assert len(json.loads((watched / name).read_bytes())) == 100


def test_to_json_array_files_after_bad_input_hold_the_records_before_it(tmp_path):
    data = users(5, dups=False) + b"{oops\n" + users(3, dups=False)
    result = run_ndpipe(
        "to-json-array", "--max-records", "2", "--out", f"{tmp_path}/u-{{n}}.json", input=data
    )
    clean(result, 1)
    assert b"stdin:6" in result.stderr
    assert listing(tmp_path) == ["u-1.json", "u-2.json", "u-3.json"]
    counts = [len(json.loads((tmp_path / f"u-{n}.json").read_bytes())) for n in (1, 2, 3)]
    assert counts == [2, 2, 1]


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("where", ["--temp-dir", "TMPDIR"])
def test_a_signal_mid_sort_leaves_no_temporary_directory(where, signame, tmp_path):
    spill = tmp_path / "spill"
    spill.mkdir()
    args = ["sort", "-k", "email", "-S", "64K"]
    env = {"TMPDIR": str(spill)}
    if where == "--temp-dir":
        args += ["-T", str(spill)]
        env = {}
    process = start(args, cwd=tmp_path, env=env)
    try:
        process.stdin.write(users(3000))
        process.stdin.flush()
        assert wait_for(lambda: listing(spill)), "sort never spilled"
        process.send_signal(SIGNALS[signame][0])
        process.wait(timeout=20)
    finally:
        process.kill()
        process.stdin.close()
    assert process.returncode == SIGNALS[signame][1], stderr_of(tmp_path)
    assert listing(spill) == []


def run_upsert_with_an_index(tmp_path: Path) -> tuple[int, list[str], Path]:
    """upsert-patch with a patch file too big for memory (an on-disk index in TMPDIR), stopped
    by SIGTERM mid-run: the exit code, what TMPDIR held during the run, and TMPDIR."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    patch = tmp_path / "patch.ndjson"
    patch.write_bytes(
        b"".join(
            dumps({"email": f"u{i}@example.com", "user_metadata": {"n": i, "p": "y" * 100}}) + b"\n"
            for i in range(3000)
        )
    )
    process = start(
        ["upsert-patch", "--patch", str(patch), "--buffer-size", "1K"],
        cwd=tmp_path,
        env={"TMPDIR": str(scratch)},
    )
    try:
        process.stdin.write(users(500, dups=False))
        process.stdin.flush()
        assert wait_for(lambda: any(scratch.rglob("*"))), "no index in TMPDIR"
        during = sorted(str(path.relative_to(scratch)) for path in scratch.rglob("*"))
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    finally:
        process.kill()
        process.stdin.close()
    return process.returncode, during, scratch


def test_upsert_patch_index_in_tmpdir_is_removed_on_sigterm(tmp_path):
    code, during, scratch = run_upsert_with_an_index(tmp_path)
    assert code == 143, stderr_of(tmp_path)
    assert listing(scratch) == [], (listing(scratch), during)


def test_upsert_patch_index_in_tmpdir_is_in_a_private_directory(tmp_path):
    """Working files are no result: they live in a private ndpipe-* directory (README)."""
    _, during, _ = run_upsert_with_an_index(tmp_path)
    assert during
    for path in during:
        assert Path(path).parts[0].startswith("ndpipe-upsert-patch-"), during


def test_sort_spill_files_are_in_a_private_directory(tmp_path):
    spill = tmp_path / "spill"
    spill.mkdir()
    process = start(["sort", "-k", "email", "-S", "64K", "-T", str(spill)], cwd=tmp_path)
    try:
        process.stdin.write(users(3000))
        process.stdin.flush()
        assert wait_for(lambda: any(path.is_file() for path in spill.rglob("*")))
        during = sorted(str(path.relative_to(spill)) for path in spill.rglob("*"))
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    finally:
        process.kill()
        process.stdin.close()
    for path in during:
        assert Path(path).parts[0].startswith("ndpipe-sort-"), during
    assert list(spill.iterdir()) == []


# --- 3. full disks ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "users.ndjson"
    path.write_bytes(users(3000, dups=False))
    return path


FULL_DISK_RUNS = {
    "to-json-array --out": ("ndpipe to-json-array --out {d}/u.json", "u.json"),
    "to-json-array --out numbered": (
        "ndpipe to-json-array --max-bytes 100000 --out '{d}/u-{{n}}.json'",
        "u-",
    ),
    "dedupe --dups": (
        "ndpipe dedupe -k email_verified --dups {d}/dups.ndjson > /dev/null",
        "dups.ndjson",
    ),
    "import --out": ("ndpipe import --dry-run --max-bytes 200000 --out '{d}/c-{{n}}.json'", "c-"),
    "sort spill": ("ndpipe sort -k email -S 300K -T {d} > /dev/null", "{d}"),
    "stdout": ("ndpipe select email user_metadata > {d}/out.ndjson", "stdout"),
    "stdout of a chain": ("ndpipe fetch then map --set a=i > {d}/out.ndjson", "stdout"),
}


@pytest.mark.parametrize("run", sorted(FULL_DISK_RUNS))
def test_a_full_disk_is_a_clean_error_naming_the_file(run, big_input, tmp_path):
    command, named = FULL_DISK_RUNS[run]
    result = shell(f"ulimit -f 64; {command.format(d=tmp_path)} < {big_input}")
    clean(result, 1)
    message = result.stderr.decode()
    assert "cannot write" in message, message
    assert named.format(d=tmp_path) in message, message
    assert "stdin:" not in message, message
    assert part_files(tmp_path) == [], listing(tmp_path)
    if run == "sort spill":
        assert listing(tmp_path) == [], listing(tmp_path)
    if run.startswith("to-json-array --out numbered") or run == "import --out":
        for name in listing(tmp_path):
            json.loads((tmp_path / name).read_bytes())  # every file left is complete


@pytest.mark.parametrize("verb", sorted(ALL_VERB_ARGS))
def test_dev_full_is_a_clean_error(verb, big_input):
    args = " ".join("'" + arg + "'" for arg in ALL_VERB_ARGS[verb])
    result = shell(f"ndpipe {args} < {big_input} > /dev/full")
    clean(result, 1)
    message = result.stderr.decode()
    assert "cannot write" in message and "stdout" in message, message
    assert "stdin:" not in message, message


# --- 4. side files never destroy inputs --------------------------------------------------------


def same_file_cases(tmp: Path) -> dict[str, tuple[str, Path]]:
    data = tmp / "data.ndjson"
    return {
        "--dups is stdin": (f"ndpipe dedupe -k email --dups {data} < {data}", data),
        "--dups is fetch SOURCE": (f"ndpipe fetch {data} then dedupe -k email --dups {data}", data),
        "--rejects is stdin": (f"ndpipe import-clean --rejects {data} < {data}", data),
        "--out is stdin": (f"ndpipe to-json-array --out {data} < {data}", data),
        "--out is fetch SOURCE": (f"ndpipe fetch {data} then to-json-array --out {data}", data),
        "--report is import FILE": (
            f"ndpipe import --dry-run --out '{tmp}/c-{{n}}.json' --report {data} {data}",
            data,
        ),
        "--unmatched is --patch": (
            f"ndpipe upsert-patch --patch {data} --unmatched {data} < /dev/null",
            data,
        ),
        "--unmatched is stdin": (
            f"ndpipe upsert-patch --set user_metadata.a=1 --unmatched {data} < {data}",
            data,
        ),
        "--dups is a hard link to stdin": (
            f"ln {data} {tmp}/link && ndpipe dedupe -k email --dups {tmp}/link < {data}",
            data,
        ),
        "--dups is a symlink to stdin": (
            f"ln -s {data} {tmp}/sym && ndpipe dedupe -k email --dups {tmp}/sym < {data}",
            data,
        ),
        "import --out is its FILE": (
            f"ndpipe import --dry-run --out '{tmp}/data.ndjson{{n}}' {tmp}/data.ndjson1",
            tmp / "data.ndjson1",
        ),
    }


@pytest.mark.parametrize("case", sorted(same_file_cases(Path("/x"))))
def test_an_output_that_is_an_input_is_refused_before_anything_is_written(case, tmp_path):
    command, protected = same_file_cases(tmp_path)[case]
    content = users(3) + b'{"email":"u0@example.com","email_verified":true}\n'
    protected.write_bytes(content)
    before = set(listing(tmp_path))
    result = shell(command)
    clean(result, 2)
    assert protected.read_bytes() == content
    created = set(listing(tmp_path)) - before - {"link", "sym"}
    assert created == set(), created


@pytest.mark.parametrize("tool", ["to-json-array", "import"])
def test_a_numbered_out_file_that_is_the_input_is_refused_up_front(tool, tmp_path):
    data = tmp_path / "u-2.json"
    content = users(3, dups=False)
    data.write_bytes(content)
    pattern = f"{tmp_path}/u-{{n}}.json"
    if tool == "import":
        result = run_ndpipe(
            "import", "--dry-run", "--max-bytes", "300", "--out", pattern, str(data)
        )
    else:
        result = shell(f"ndpipe to-json-array --max-records 1 --out '{pattern}' < {data}")
    assert data.read_bytes() == content
    clean(result, 2)
    assert listing(tmp_path) == ["u-2.json"], listing(tmp_path)


# The bad segment comes after the stage with the side file: nothing may be created or touched.
SIDE_EFFECT_FREE = {
    "--unmatched": "ndpipe upsert-patch --unmatched {f} --set 'user_metadata.a=1' then csv --bogus",
    "--dups": "ndpipe dedupe -k email --dups {f} then csv --bogus",
    "--rejects": "ndpipe import-clean --rejects {f} then select 'x=nope(a)'",
    "--report": (
        "ndpipe fetch {i} then import --dry-run --out '{d}/c-{{n}}.json' --report {f} then csv"
    ),
    "--out to-json-array": "ndpipe to-json-array --out {f} then csv",
    "--out after a bad segment": "ndpipe select 'x=abs(a, b)' then to-json-array --out {f}",
    "--report after a bad segment": (
        "ndpipe map --bogus then import --dry-run --out '{d}/c-{{n}}.json' --report {f}"
    ),
}


@pytest.mark.parametrize("exists", [True, False], ids=["existing", "absent"])
@pytest.mark.parametrize("case", sorted(SIDE_EFFECT_FREE))
def test_stages_build_without_side_effects(case, exists, tmp_path):
    target = tmp_path / "side.ndjson"
    source = tmp_path / "in.ndjson"
    source.write_bytes(users(3))
    if exists:
        target.write_bytes(b"precious\n")
    command = SIDE_EFFECT_FREE[case].format(f=target, i=source, d=tmp_path)
    result = shell(f"{command} < {source}")
    clean(result, 2)
    expected = ["in.ndjson", "side.ndjson"] if exists else ["in.ndjson"]
    assert listing(tmp_path) == expected
    if exists:
        assert target.read_bytes() == b"precious\n"


# --- 5. no tracebacks ever -------------------------------------------------------------------


def nested(depth: int) -> bytes:
    return b'{"email":"deep@example.com","id":1,"d":' + b"[" * depth + b"]" * depth + b"}"


DEEP_ARGS = {
    **ALL_VERB_ARGS,
    "select": ["select", "email", "id", "d"],
    "sort": ["sort", "-k", "d"],
    "dedupe": ["dedupe", "-k", "d"],
    "filter": ["filter", "d"],
    "map": ["map", "--set", "e=d"],
    "upsert-patch": ["upsert-patch", "--set", "user_metadata.a=1", "--all"],
}


@pytest.mark.parametrize("verb", sorted(DEEP_ARGS))
def test_records_nested_1000_deep_pass_every_verb(verb):
    line = nested(1000)
    data = line + b"\n" + line.replace(b'"id":1', b'"id":2') + b"\n"
    result = run_ndpipe(*DEEP_ARGS[verb], input=data)
    clean(result, 0, 1)
    if verb in ("import-clean", "upsert-patch"):
        return  # they check users against Auth0's schema; the point is no crash
    assert result.returncode == 0, result.stderr[-500:]
    if verb in KEEPING or verb == "select":
        assert b'"d":' + b"[" * 1000 + b"]" * 1000 in result.stdout


@pytest.mark.parametrize("verb", sorted(DEEP_ARGS))
@pytest.mark.parametrize("reader", ["ndjson", "array"])
def test_records_nested_too_deep_are_refused_cleanly(verb, reader):
    line = nested(5000)
    data = line + b"\n" if reader == "ndjson" else b"[" + line + b"]"
    result = run_ndpipe(*DEEP_ARGS[verb], input=data)
    clean(result, 0, 1)
    if result.returncode == 1:
        assert result.stderr.strip(), "no message"
    elif verb in KEEPING or verb in ("to-json-array", "select"):
        # Not refused: then the record comes out whole.
        assert b"[" * 5000 + b"]" * 5000 in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["head", "-n", str(10**30)],
        ["sample", "-n", str(10**30)],
        ["head", "-n", str(2**63)],
        ["sample", "-n", str(2**64), "--seed", str(10**30)],
        ["to-json-array", "--max-records", str(10**30), "--out", "/tmp/ndpipe-hostile-{n}.json"],
        ["sort", "-k", "a", "-S", str(10**30)],
    ],
)
def test_huge_counts_are_fine(args):
    result = run_ndpipe(*args, input=b'{"a":1}\n{"a":2}\n')
    clean(result, 0, 2)
    if result.returncode == 0 and args[0] != "to-json-array":
        assert parsed(result.stdout) == [{"a": 1}, {"a": 2}]
    for leftover in Path("/tmp").glob("ndpipe-hostile-*.json"):
        leftover.unlink()


@pytest.mark.parametrize(
    "args",
    [
        ["fetch", "--domain", "http://[::1", "--token", "abcdefghijk"],
        ["import", "--domain", "http://[::1", "--token", "abcdefghijk", "--connection", "c"],
        ["fetch", "--domain", "http://[::1]:99999", "--token", "abcdefghijk"],
        ["fetch", "--domain", "ex\u00e4mple.com\r", "--token", "abcdefghijk"],
    ],
)
def test_bad_domains_are_clean(args):
    result = run_ndpipe(*args, input=users(1), timeout=60)
    clean(result)
    assert result.returncode in (1, 2, 3)
    assert b"abcdefghijk" not in result.stderr + result.stdout


SECRET_TOKENS = [
    "s\u00e9cr\u00e8t-t\u00f6ken-123",
    "  secret-token-456\r",
    "secret\r\ntoken-789",
    "token\u200b-zero-width",
]


@pytest.fixture(scope="module")
def tenant():
    from tests.auth0_server import FakeAuth0

    with FakeAuth0() as server:
        yield server


@pytest.mark.parametrize(
    "where", ["--token", "--client-secret", "AUTH0_TOKEN", "AUTH0_CLIENT_SECRET"]
)
@pytest.mark.parametrize("secret", SECRET_TOKENS)
def test_hostile_tokens_are_clean_and_never_shown(secret, where, tenant):
    args = ["fetch", "--domain", tenant.base_url]
    env = {
        "AUTH0_TOKEN": "",
        "AUTH0_CLIENT_SECRET": "",
        "AUTH0_CLIENT_ID": "",
        "NDPIPE_POLL_INTERVAL": "0",
    }
    if where.startswith("--"):
        args += [where, secret]
    else:
        env[where] = secret
    if "SECRET" in where.upper():
        args += ["--client-id", "ndpipeTestClientId0000000000001"]
    result = run_ndpipe(*args, env=env, timeout=60)
    clean(result)
    assert result.returncode in (1, 2, 3)
    shown = result.stderr + result.stdout
    for form in {secret, secret.strip()}:
        assert form.encode() not in shown, shown


@pytest.mark.parametrize("verb", ["fetch", "select", "to-json-array", "sort"])
def test_closed_stdin_is_clean(verb):
    args = {"select": "select a", "sort": "sort -k a"}.get(verb, verb)
    result = shell(f"ndpipe {args} <&-")
    clean(result, 1, 2)
    assert result.stderr.strip()


# --- 6. skip policy -------------------------------------------------------------------------


def test_skip_malformed_lines_counts_and_names_them():
    data = b'{"a":1}\n{"a":\nnot json\n{"a":2}\n[1]\n{"a":3}\n'
    result = run_ndpipe("select", "a", "--on-error", "skip", input=data)
    clean(result, 0)
    assert parsed(result.stdout) == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert b"skipped 3 bad lines" in result.stderr, result.stderr
    for where in (b"stdin:2", b"stdin:3", b"stdin:5"):
        assert where in result.stderr


def test_skip_bad_csv_rows_counts_them_honestly():
    data = b"a,b\n1,2\n3\n4,5,6\n7,8\n"
    result = run_ndpipe("fetch", "--on-error", "skip", input=data)
    clean(result, 0)
    assert [record["a"] for record in parsed(result.stdout)] == ["1", "7"]
    assert b"skipped 2 bad lines" in result.stderr, result.stderr
    assert b"stdin:3" in result.stderr and b"stdin:4" in result.stderr


BAD_EXPRESSION_RECORDS = b'{"email":"a@x.com","email_verified":true,"a":1}\n'
BAD_EXPRESSION_RECORDS += b'{"email":"b@x.com","email_verified":true,"a":"text"}\n'
BAD_EXPRESSION_RECORDS += b'{"email":"c@x.com","email_verified":true,"a":-3}\n'


@pytest.mark.parametrize(
    "args,kept",
    [
        (["select", "email", "x=abs(a)"], 2),
        (["filter", "abs(a) > `0`"], 2),
        (["map", "--set", "x=abs(a)"], 2),
        (["sort", "-k", "abs(a)"], 2),
        (["dedupe", "-k", "abs(a)"], 2),
        (["upsert-patch", "--set", "user_metadata.x=1", "--where", "abs(a) > `0`"], 2),
        (["select", "email", "then", "map", "--set", "x=length(missing)"], 0),
    ],
)
def test_skip_records_on_which_an_expression_fails(args, kept):
    failing = run_ndpipe(*args, input=BAD_EXPRESSION_RECORDS)
    clean(failing, 1)
    result = run_ndpipe(*args, "--on-error", "skip", input=BAD_EXPRESSION_RECORDS)
    clean(result, 0)
    assert len(parsed(result.stdout)) == kept, result.stdout
    if kept == 2:
        assert b"stdin:2" in result.stderr, result.stderr
        assert b"1 record that could not be processed" in result.stderr, result.stderr
    else:
        assert b"3 records that could not be processed" in result.stderr, result.stderr


# --- 7. expressions are checked before input is read ------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["select", "x=nope(a)"],
        ["select", "x=abs(a, b)"],
        ["filter", "length()"],
        ["map", "--set", "x=sort_by(a)"],
        ["sort", "-k", "nope(a)"],
        ["dedupe", "-k", "lower(email, email)"],
        ["upsert-patch", "--set", "user_metadata.a=1", "--where", "nope(a)"],
        ["select", "email", "then", "filter", "contains(a)"],
        ["fetch", "then", "sort", "-k", "max_by(a)"],
    ],
)
def test_bad_expressions_exit_2_before_input_is_read(args):
    for data in (b"", b'{"a":1}\n', b"not json at all\n"):
        result = run_ndpipe(*args, input=data)
        clean(result, 2)
        assert result.stdout == b""
        assert b"stdin" not in result.stderr, result.stderr
    # Even with stdin closed, the expression is what is reported.
    result = shell("ndpipe " + " ".join("'" + arg + "'" for arg in args) + " <&-")
    clean(result, 2)
