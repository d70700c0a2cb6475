"""JSON values in and out, exactly: the one place ndpipe turns bytes into values and back.

orjson is fast and strict (it refuses invalid UTF-8, lone surrogates, NaN and numbers beyond
the range of a double), but it reads an integer beyond 64 bits as a float, writes such an
integer not at all, and stops at 255 levels of nesting when writing. Those cases are rare, so
they take a slower path here and the common one stays orjson alone:

- Reading: a text with a number token of 20 digits or more (an integer from 2^64 up, or a
  long float) is validated by orjson and then decoded by the standard library, which keeps
  integers exact and gives floats the same correctly rounded value.
- Writing: when orjson refuses a value, integers beyond 64 bits and subtrees deeper than it
  writes are passed to it as ready-made JSON fragments.

Floats come out as orjson writes them (the shortest text that reads back to the same double).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# orjson is exact below 2^64, so only a number token of 20 digits or more needs the slow path.
# To find one fast, the text is mapped to "1" for a digit and " " for anything else, a run of 20
# is found with bytes.find (both in C, under 1 ns a byte), and each run is checked for what
# stands before it: a number token follows `:`, `,` or `[` (and white space, and a minus).
# Digit runs inside strings (Google user ids have 21 digits) are rarely preceded by those; when
# one is, it only costs the slow path for that text.
_DIGIT_MAP = bytes(ord("1") if ord("0") <= byte <= ord("9") else ord(" ") for byte in range(256))
_LONG_RUN = b"1" * 20
_TOKEN_STARTS = frozenset(b":,[")
_WHITE_SPACE = frozenset(b" \t\r\n")
# orjson's own limit for nesting when writing; a deeper subtree becomes a fragment.
WRITE_DEPTH = 200
# What orjson writes as a 64-bit integer: from -2^63 up to 2^64 - 1.
SMALLEST_INTEGER = -(2**63)
LARGEST_INTEGER = 2**64 - 1


class NumberError(ValueError):
    """A number that cannot be carried exactly (beyond Python's digit limit for integers)."""


def long_numbers(data: bytes | bytearray) -> list[int]:
    """The offsets in `data` of number tokens of 20 digits or more (with a few false alarms)."""
    digits = data.translate(_DIGIT_MAP)
    found: list[int] = []
    at = digits.find(_LONG_RUN)
    while at >= 0:
        before = at - 1
        if before >= 0 and data[before] == 45:  # a minus sign
            before -= 1
        while before >= 0 and data[before] in _WHITE_SPACE:
            before -= 1
        if before >= 0 and data[before] in _TOKEN_STARTS:
            found.append(at)
        end = digits.find(b" ", at)
        if end < 0:
            break
        at = digits.find(_LONG_RUN, end)
    return found


def _refuse_constant(name: str) -> Any:
    raise NumberError(f"{name} is not JSON")


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """The JSON value of `data`, exact; raises orjson.JSONDecodeError or NumberError.

    Readers on a hot path call `long_numbers` once per block of lines and `loads_exact` only
    for the lines it points at.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if not long_numbers(raw):
        return orjson.loads(data)
    return loads_exact(data)


def loads_exact(data: bytes | bytearray | memoryview | str) -> Any:
    """The JSON value of `data` with every integer exact, however long."""
    orjson.loads(data)  # every check but the integers' range: UTF-8, syntax, depth, 1e400
    text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as error:  # more digits than int() converts (sys.get_int_max_str_digits)
        raise NumberError(f"a number too long to read exactly ({error})") from None


def dumps(value: Any, option: int = 0) -> bytes:
    """`value` as JSON bytes, as orjson writes it, with any integer and any depth.

    Raises TypeError for a value that is not JSON (as orjson does).
    """
    try:
        return orjson.dumps(value, option=option)
    except TypeError as error:
        if not _fixable(error):
            raise
    return orjson.dumps(_prepared(value, option & orjson.OPT_SORT_KEYS, 0), option=option)


def _fixable(error: TypeError) -> bool:
    message = str(error)
    return "64-bit" in message or "ecursion" in message


def _prepared(value: Any, sort_keys: int, depth: int) -> Any:
    """`value` with out-of-range integers and too-deep subtrees turned into fragments."""
    kind = type(value)
    if kind is int:
        if SMALLEST_INTEGER <= value <= LARGEST_INTEGER:
            return value
        return orjson.Fragment(str(value).encode())
    if kind is dict or kind is list:
        if depth >= WRITE_DEPTH:
            return orjson.Fragment(orjson.dumps(_prepared(value, sort_keys, 0), option=sort_keys))
        if kind is dict:
            return {key: _prepared(item, sort_keys, depth + 1) for key, item in value.items()}
        return [_prepared(item, sort_keys, depth + 1) for item in value]
    return value
