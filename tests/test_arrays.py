"""Reading JSON arrays: the block path gives the same records, raw bytes and errors as the exact
path, on random arrays in every layout, damaged in random ways, cut into blocks of any size."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.generate import users
from ndpipe import arrays, codec
from ndpipe.errors import DataError
from ndpipe.io import ErrorPolicy, Position
from ndpipe.projection import Projection
from tests.conftest import run_ndpipe

# Strings full of what a scanner could trip on: brackets, quotes, backslashes, commas, a `},`
# that looks like the end of an item, escapes of line breaks, non-ASCII.
tricky_text = st.text(
    alphabet=st.sampled_from(list('[]{}",:\\ \t\n\r/ab1eE+-é中😀\x00\x1f')), max_size=12
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | tricky_text
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=10,
)
records = st.dictionaries(tricky_text, values, max_size=5)
items = st.lists(records | scalars, max_size=8)  # mostly objects; a scalar is a bad item

SPACES = ["", "", "", " ", "\n", "\r\n", "\t", "  \n  "]


def render(value: Any, rng: random.Random, spread: bool) -> str:
    """JSON text for `value`; with `spread`, random white space between every two tokens."""

    def space() -> str:
        return rng.choice(SPACES) if spread else ""

    if isinstance(value, dict):
        inner = ",".join(
            f"{space()}{json.dumps(key)}{space()}:{space()}{render(item, rng, spread)}{space()}"
            for key, item in value.items()
        )
        return "{" + inner + space() + "}"
    if isinstance(value, list):
        inner = ",".join(f"{space()}{render(item, rng, spread)}{space()}" for item in value)
        return "[" + inner + space() + "]"
    return codec.dumps(value).decode()


def layout(found: list[Any], style: str, rng: random.Random) -> bytes:
    """The items as one JSON array, written in one of the layouts arrays come in."""
    if style == "lines":  # to-json-array's and Auth0's: an item per line, comma at its end
        text = "[\n" + ",\n".join(render(item, rng, False) for item in found) + "\n]\n"
    elif style == "crlf":
        text = "[\r\n" + ",\r\n".join(render(item, rng, False) for item in found) + "\r\n]\r\n"
    elif style == "one line":
        text = "[" + ",".join(render(item, rng, False) for item in found) + "]"
    elif style == "indented":
        text = "[\n" + ",\n".join("  " + render(item, rng, False) for item in found) + "\n]"
    elif style == "pretty":
        text = json.dumps(found, indent=2, ensure_ascii=False) if found else "[]"
    else:  # white space anywhere
        text = render(found, rng, True)
    return text.encode("utf-8", "surrogatepass")


DAMAGE = ["none", "none", "cut", "byte", "garbage", "bad utf-8", "lose comma", "extra comma"]


def damaged(data: bytes, how: str, rng: random.Random) -> bytes:
    if how == "none" or not data:
        return data
    at = rng.randrange(len(data) + 1)
    if how == "cut":
        return data[:at]
    if how == "byte":
        return data[:at] + bytes([rng.choice(b',]}[{"\\ :x1\n')]) + data[at + 1 :]
    if how == "garbage":
        return data + rng.choice([b"x", b",", b"]", b"{}", b"\n[]", b" 5"])
    if how == "bad utf-8":
        return data[:at] + b"\xff" + data[at:]
    if how == "lose comma":
        at = data.find(b",", at)
        return data if at < 0 else data[:at] + data[at + 1 :]
    at = data.find(b"\n", at)  # "extra comma"
    return data if at < 0 else data[:at] + b"," + data[at:]


def outcome(
    data: bytes, blocks: bool, on_error: str, fields: tuple[str, ...] | None = None
) -> tuple[Any, ...]:
    """Everything a reader shows: each record with its number and raw bytes, the error, the
    skipped items. With `fields`, the reader decodes only those (a projection), and only those
    are compared."""
    position = Position("test")
    policy = ErrorPolicy(on_error, position)
    projection = Projection(fields) if fields is not None else None
    got = []
    error = None
    try:
        for record in arrays.read_json_array(
            io.BytesIO(data), position, policy, blocks=blocks, projection=projection
        ):
            assert position.record is record
            if fields is not None:
                record = {key: record[key] for key in fields if key in record}
            got.append((position.number, codec.dumps(record), position.raw))
    except DataError as failure:
        error = (type(failure).__name__, failure.message, failure.where)
    return got, error, policy.skipped, policy.skipped_at


@pytest.fixture
def restore_block_size() -> Iterator[None]:
    saved = arrays.BLOCK_BYTES
    yield
    arrays.BLOCK_BYTES = saved


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    items,
    st.sampled_from(["lines", "lines", "crlf", "one line", "indented", "pretty", "spread"]),
    st.sampled_from(DAMAGE),
    st.sampled_from([1, 2, 3, 7, 16, 64, 200, 4096]),
    st.sampled_from(["fail", "skip"]),
    st.sampled_from([None, None, (), ("a",), ("a", "é", "[")]),
    st.randoms(use_true_random=False),
)
def test_the_block_path_reads_what_the_exact_path_reads(
    restore_block_size, found, style, how, block_size, on_error, fields, rng
):
    """Also with a projection: the records hold the same values of its fields."""
    data = damaged(layout(found, style, rng), how, rng)
    arrays.BLOCK_BYTES = block_size
    fast = outcome(data, True, on_error, fields)
    exact = outcome(data, False, on_error, fields)
    assert fast == exact
    if how == "none" and fields is None and all(type(item) is dict for item in found):
        # An intact array of objects: every item, in order, each raw text its value.
        records, error, _, _ = fast
        assert error is None
        assert [json.loads(text) for _, text, _ in records] == json.loads(data)
        for _number, text, raw in records:
            if raw:
                assert codec.dumps(codec.loads(raw)) == text


@settings(max_examples=40, deadline=None)
@given(st.lists(records, min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_every_block_boundary_gives_the_same_records(found, rng):
    """The to-json-array layout, cut into blocks of every size up to the longest line."""
    data = layout(found, "lines", rng)
    expected = outcome(data, False, "fail")
    saved = arrays.BLOCK_BYTES
    try:
        for size in sorted({1, 2, 5, rng.randrange(1, len(data) + 1), len(data)}):
            arrays.BLOCK_BYTES = size
            assert outcome(data, True, "fail") == expected
    finally:
        arrays.BLOCK_BYTES = saved


HOSTILE = {
    "crlf lines": b'[\r\n{"a":1},\r\n{"b":"\\r"},\r\n{"c":\r3},\r\n{"d":4}\r\n]\r\n',
    "indented lines": b'[\n  {"a":1},\n\t{"b":2} ,\n{"c":3}  \n]',
    "bad item in the middle": b'[\n{"a":1},\n{"a":\xff},\n{"a":3}\n]\n',
    "number beyond a double": b'[\n{"a":1},\n{"a":1e400},\n{"a":3}\n]\n',
    "a scalar item": b'[\n{"a":1},\n5,\n{"a":3}\n]\n',
    "missing comma": b'[\n{"a":1}\n{"a":2}\n]\n',
    "comma before ]": b'[\n{"a":1},\n]\n',
    "ends inside an item": b'[\n{"a":1},\n{"a":[1,2',
    "ends after a comma": b'[\n{"a":1},\n',
    "data after ]": b'[\n{"a":1}\n]\n{"b":2}\n',
    "item over two lines after a line item": b'[\n{"x":1},{"y":[{"a":1},\n{"b":2}]}\n]\n',
    "lone surrogate": b'[\n{"a":1},\n{"a":"\\ud800"},\n{"a":3}\n]\n',
    "deep nesting": b'[\n{"a":1},\n{"a":' + b"[" * 3000 + b"]" * 3000 + b"},\n{}\n]\n",
    "huge integer": b'[\n{"a":1},\n{"a":' + b"9" * 5000 + b"},\n{}\n]\n",
    # What a projected decoder skips without looking: the exact path must still refuse it.
    "bad UTF-8 in another field": b'[\n{"a":1},\n{"a":2,"b":"\xc3("},\n{"a":3}\n]\n',
    "overflow in another field": b'[\n{"a":1},\n{"b":[1e400],"a":2},\n{"a":3}\n]\n',
    "long integer in another field": b'[\n{"a":1},\n{"b":' + b"1" * 4400 + b',"a":2},\n{}\n]\n',
    "duplicate keys": b'[\n{"a":1,"a":2},\n{"a":{"a":3},"a":4},\n{}\n]\n',
}


@pytest.mark.parametrize("fields", [None, ("a",), ()])
@pytest.mark.parametrize("on_error", ["fail", "skip"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_bad_arrays_give_the_exact_paths_errors(case, on_error, fields):
    data = HOSTILE[case]
    assert outcome(data, True, on_error, fields) == outcome(data, False, on_error, fields)


def test_the_cli_reads_an_array_of_real_shaped_users_as_its_ndjson(tmp_path):
    """fetch of a to-json-array file gives back the very lines, and a bad item deep in a large
    array is named with its record number."""
    lines = [codec.dumps(user) for user in users(3000, seed=3, dup_rate=0.01, hostile_rate=0.05)]
    array = tmp_path / "users.json"
    array.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    result = run_ndpipe("fetch", str(array))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"".join(line + b"\n" for line in lines)

    lines[2500] = lines[2500][:-1] + b',"n":1e999}'
    array.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    result = run_ndpipe("fetch", str(array))
    assert result.returncode == 1
    assert result.stdout == b"".join(line + b"\n" for line in lines[:2500])
    _, error, _, _ = outcome(array.read_bytes(), False, "fail")
    assert error is not None
    assert f"{array}: record 2501: {error[1]}".encode() in result.stderr
