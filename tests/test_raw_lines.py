"""sort, dedupe, sample and head pass records on as their input lines: the output of a record
that no stage changed is its input line as read (compact: without surrounding white space or a
CR), never the record encoded again, and an error in a stage after them names the record's own
input line.

The oracle is the same pipeline behind a `map` that changes nothing but counts as changing
records, so every stage after it gets and gives whole records, encoded (the path that does not
carry lines). Each generated record holds its own line index `_n`, which maps the oracle's output
back to the input lines.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ndjson, records, run_ndpipe

WHOLE = ["map", "--del", "field_that_no_record_has", "then"]

# JSON texts of values, several spellings of one value among them (ties must keep input order).
NUMBER_TEXTS = [
    "0",
    "-0.0",
    "1",
    "1.0",
    "1e0",
    "-1",
    "2.5",
    "1e5",
    "1E5",
    "100000.0",
    "1e-7",
    "3.141592653589793",
    "18446744073709551616",
    "-123456789012345678901234567890",
    "123456789012345678901234567890",
]
STRING_TEXTS = [
    '""',
    '"a"',
    '"A"',
    '"ab"',
    '"\u00e9"',
    '"\\u00e9"',
    '"e\\u0301"',
    '"a\\u0000b"',
    '"a\\nb"',
    '"\\ud83d\\ude00"',
    '"\U0001f600"',
    '"Ω"',
]
OTHER_TEXTS = ["true", "false", "null", "[1,2]", "[ ]", '{"b":1,"a":[2]}', '{ "a" : {"x":null} }']
KEY_TEXTS = NUMBER_TEXTS + STRING_TEXTS + OTHER_TEXTS


def _render_string(value: str, rng: random.Random) -> str:
    return json.dumps(value, ensure_ascii=rng.random() < 0.5)


def _line(number: int, fields: dict[str, str], rng: random.Random) -> bytes:
    """One NDJSON line holding `_n` and the given fields (as JSON texts), spelled in varied
    ways: key order, white space inside and around, escaped or raw unicode, CRLF."""
    items = [("_n", str(number)), *fields.items()]
    rng.shuffle(items)

    def space() -> str:
        return rng.choice(["", "", " ", "  ", "\t"])

    body = ",".join(f"{space()}{_render_string(k, rng)}{space()}:{space()}{v}" for k, v in items)
    text = f"{space()}{{{body}{space()}}}{space()}"
    end = "\r\n" if rng.random() < 0.2 else "\n"
    return (text + end).encode()


def generated(seed: int, count: int, pad: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    lines = []
    for number in range(count):
        fields: dict[str, str] = {}
        for name in ("k", "j"):
            if rng.random() < 0.9:
                fields[name] = rng.choice(KEY_TEXTS)
        fields["s"] = _render_string(rng.choice(["x", "é", "Zoë", "\u2028", 'a"b']), rng)
        fields["v"] = rng.choice(NUMBER_TEXTS)
        if pad:
            fields["pad"] = _render_string("p" * rng.randrange(pad), rng)
        if rng.random() < 0.3:
            fields["deep"] = '{"x":[1,{"y":"\\u00e9"}],"z":1.0}'
        lines.append(_line(number, fields, rng))
    return lines


def as_read(line: bytes) -> bytes:
    """An input line as ndpipe writes an unchanged record (see ndpipe.io._as_read)."""
    line = line.rstrip(b"\n")
    return line if line[:1] == b"{" and line[-1:] == b"}" else line.strip(b" \t\r\n")


def expected_lines(oracle: bytes, lines: list[bytes]) -> bytes:
    """The oracle's records, each written as its input line."""
    return b"".join(as_read(lines[record["_n"]]) + b"\n" for record in records(oracle))


def run_both(args: list[str], data: bytes, env: dict[str, str] | None = None) -> tuple[Any, Any]:
    carried = run_ndpipe(*args, input=data, env=env)
    whole = run_ndpipe(*WHOLE, *args, input=data, env=env)
    assert whole.returncode == 0, whole.stderr
    assert carried.returncode == 0, carried.stderr
    return carried, whole


# Pipelines whose records come out unchanged: the output is the input lines.
UNCHANGED = [
    ["sort", "-k", "k"],
    ["sort", "-k", "k", "--desc"],
    ["sort", "-k", "k", "-k", "j"],
    ["sort", "-k", "j", "--desc", "-k", "k"],
    ["sort", "-k", "deep.x[1].y", "-k", "v"],
    ["dedupe", "-k", "k"],
    ["dedupe", "-k", "k", "-k", "s", "--ignore-case"],
    ["sample", "-n", "7", "--seed", "3"],
    ["head", "-n", "5"],
    ["sort", "-k", "k", "then", "filter", "v > `0`"],
    ["sort", "-k", "v", "then", "head", "-n", "4"],
    ["sort", "-k", "k", "then", "dedupe", "-k", "v"],
    ["dedupe", "-k", "v", "then", "sort", "-k", "s", "--desc"],
    ["sample", "-n", "9", "--seed", "1", "then", "sort", "-k", "j"],
    ["sort", "-k", "j", "then", "sample", "-n", "5", "--seed", "2"],
    ["filter", "v != `1`", "then", "sort", "-k", "k", "then", "head", "-n", "6"],
]
# Pipelines that end in a stage that builds or changes records: the output is theirs.
CHANGED = [
    ["sort", "-k", "k", "then", "select", "_n", "k", "s"],
    ["sort", "-k", "v", "--desc", "then", "map", "--set", "w=v"],
    ["sample", "-n", "6", "--seed", "4", "then", "select", "_n", "deep"],
    ["dedupe", "-k", "j", "then", "select", "_n", "j"],
    ["head", "-n", "4", "then", "map", "--del", "s"],
]


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    count=st.integers(0, 40),
    pipeline=st.sampled_from(UNCHANGED + CHANGED),
)
def test_output_is_the_input_lines_or_what_whole_records_give(seed, count, pipeline):
    lines = generated(seed, count)
    data = b"".join(lines)
    carried, whole = run_both(pipeline, data)
    if pipeline in UNCHANGED:
        assert carried.stdout == expected_lines(whole.stdout, lines)
    else:
        assert carried.stdout == whole.stdout
    assert carried.stderr == whole.stderr  # the same summaries and hints


def test_a_spilled_sort_copies_the_input_lines(tmp_path):
    lines = generated(seed=7, count=1500, pad=300)
    data = b"".join(lines)
    assert len(data) > 4 * 64_000  # several runs at -S 64K
    args = ["sort", "-k", "k", "-k", "v", "--desc", "-S", "64K"]
    env = {"TMPDIR": str(tmp_path)}
    carried, whole = run_both(args, data, env)
    assert b"writing sorted runs" in carried.stderr
    assert carried.stdout == expected_lines(whole.stdout, lines)
    assert os.listdir(tmp_path) == []
    # Many runs merged in more than one pass give the same.
    ordered = run_ndpipe("sort", "-k", "s", "-k", "_n", "-S", "64K", input=data, env=env)
    assert ordered.returncode == 0, ordered.stderr
    got = [record["_n"] for record in records(ordered.stdout)]
    assert ordered.stdout == b"".join(as_read(lines[n]) + b"\n" for n in got)


def test_records_that_an_earlier_stage_changed_are_encoded(tmp_path):
    data = b'{"a": 2, "b": "\\u00e9"}\n{"a":1,  "b":1.0}\n'
    result = run_ndpipe("map", "--set", "c=a", "then", "sort", "-k", "a", input=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b'{"a":1,"b":1.0,"c":1}\n{"a":2,"b":"\xc3\xa9","c":2}\n'
    kept = run_ndpipe("sort", "-k", "a", "then", "sample", "-n", "5", input=data)
    assert kept.stdout == b'{"a":1,  "b":1.0}\n{"a": 2, "b": "\\u00e9"}\n'


def _failing_input(count: int, bad: int, pad: int = 0) -> bytes:
    """Records with `n` descending (so sorting reverses them) and a number `v`, except at line
    `bad`, whose `v` is a string that abs() refuses."""
    return ndjson(
        [
            {"n": count - line, "v": "x" if line == bad else line, "pad": "p" * pad}
            for line in range(1, count + 1)
        ]
    )


def test_an_error_after_sort_names_the_records_own_line():
    data = _failing_input(6, bad=4)
    result = run_ndpipe("sort", "-k", "n", "then", "filter", "abs(v) > `0`", input=data)
    assert result.returncode == 1
    assert b"stdin:4:" in result.stderr, result.stderr
    # The records sorted before the failing one are written, as their lines.
    assert [record["n"] for record in records(result.stdout)] == [0, 1]


def test_an_error_after_a_spilled_sort_names_the_records_own_line(tmp_path):
    data = _failing_input(2000, bad=777, pad=200)
    result = run_ndpipe(
        "sort", "-k", "n", "-S", "64K", "then", "head", "-n", "5000", "then",
        "filter", "abs(v) > `0`",
        input=data, env={"TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 1
    assert b"stdin:777:" in result.stderr, result.stderr
    assert os.listdir(tmp_path) == []


def test_an_error_after_sample_names_the_records_own_line():
    data = _failing_input(8, bad=3)
    result = run_ndpipe("sample", "-n", "20", "then", "filter", "abs(v) > `0`", input=data)
    assert result.returncode == 1
    assert b"stdin:3:" in result.stderr, result.stderr


def test_skipped_records_leave_the_others_as_their_lines():
    data = b'{"k": 2}\n{"k": {"x": 1 }, "y": "\\u00e9"}\nnot json\n{ "k": 1 }\r\n{"k":"a"}\n'
    result = run_ndpipe(
        "sort", "-k", "k", "--on-error", "skip", "then", "filter", "abs(k) >= `0`", input=data
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b'{ "k": 1 }\n{"k": 2}\n'
    # The bad line and the records that abs() refuses, each named by its own line.
    assert b"stdin:3" in result.stderr and b"stdin:2" in result.stderr
    assert b"stdin:5" in result.stderr


# --- the byte keys order as the documented order (KeyMaker's lists compare in it natively) ----

key_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, -0.0, 1, 1.0, 2**64, float(2**64), 1e300, -1e-300, 5e-324, 0.1])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet="a\x00\n\x0b\xe9\U0001f600", max_size=3),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=3,
)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.tuples(key_values, key_values), max_size=30),
    descending=st.booleans(),
    size=st.integers(1, 3),
)
def test_byte_keys_sort_as_the_documented_order(values, descending, size):
    from ndpipe.expr import compile_expression
    from ndpipe.ops.sort import KeyMaker, sort

    items = []
    for number, (first, second) in enumerate(values):
        item: dict[str, Any] = {"id": number}
        if first is not None or number % 2:
            item["a"] = first
        item["b"] = second
        items.append(item)
    keys = [compile_expression("a", "key"), compile_expression("b", "key")]
    reference = KeyMaker(keys, descending)
    # Python's stable sort on KeyMaker's lists, null and missing last in both directions.
    expected = sorted(items, key=reference, reverse=descending)
    got = list(sort(items, keys=keys, descending=descending, buffer_size=size * 300))
    assert [item["id"] for item in got] == [item["id"] for item in expected]
