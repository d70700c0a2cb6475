"""JSON values in and out, exactly: the one place ndpipe turns bytes into values and back.

Reading is msgspec's decoder: as fast as orjson here, as strict (it refuses invalid UTF-8, lone
surrogates, NaN, control characters and floats beyond the range of a double), and exact for
integers of up to 4,300 digits (Python's limit for reading one), where orjson reads an integer
beyond 64 bits as a float. A longer integer is refused.

Writing is orjson, which refuses an integer beyond 64 bits and stops at 255 levels of nesting;
those rare values take a slower path here, as ready-made JSON fragments. Floats come out as
orjson writes them: the shortest text that reads back to the same double.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

# orjson's own limit for nesting when writing; a deeper subtree becomes a fragment.
WRITE_DEPTH = 200
# The most digits an integer may have (sys.get_int_max_str_digits(); msgspec follows it).
INTEGER_DIGITS = 4300
# What orjson writes as an integer: from -2^63 up to 2^64 - 1.
SMALLEST_INTEGER = -(2**63)
LARGEST_INTEGER = 2**64 - 1

decode = msgspec.json.Decoder().decode
# What `decode` raises for text that is not JSON it can carry (RecursionError: nesting deeper
# than Python's recursion limit).
DECODE_ERRORS = (msgspec.DecodeError, RecursionError)


class DecodeError(ValueError):
    """Text that is not one JSON value: `msg` says why, `pos` is the character offset if known."""

    def __init__(self, msg: str, pos: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.pos = pos


def explain(data: bytes | bytearray | memoryview | str, error: BaseException) -> DecodeError:
    """Why `data` does not decode, in words, with the character offset where orjson gives one."""
    if isinstance(error, RecursionError):
        return DecodeError("nested too deeply (more levels than ndpipe can process)")
    if "Integer value out of range" not in str(error):
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError as orjson_error:
            message = orjson_error.msg
            if "infinity" in message:
                message = "a number beyond the range of a double (about 1.8e308)"
            return DecodeError(message, orjson_error.pos)
    message = str(error)
    if "Integer value out of range" in message:
        message = (
            f"an integer of more than {INTEGER_DIGITS:,} digits, more than ndpipe reads exactly"
        )
    elif "out of range" in message:
        message = "a number beyond the range of a double (about 1.8e308)"
    return DecodeError(message)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """The JSON value of `data`, with every integer exact; raises DecodeError."""
    try:
        return decode(data)
    except DECODE_ERRORS as error:
        raise explain(data, error) from None


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
