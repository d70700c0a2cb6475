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

import re
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


# --- decoding only some fields ---------------------------------------------------------------
#
# A msgspec decoder of a Struct type skips the fields it does not hold. It still checks the
# syntax of what it skips (brackets, strings, escapes, surrogate pairs, control characters,
# the shape of numbers, nesting depth), but not three things the whole decoder refuses: bytes
# that are not UTF-8 inside skipped strings, numbers beyond the range of a double (`1e400`), and
# integers of more than INTEGER_DIGITS digits. Lines that may hold one of those are found with a
# cheap scan (see `numbers_to_check`, `may_hide`) and decoded whole, so that they are refused with
# the very same error; so is every line the projected decoder refuses.

PROJECTED_ERRORS = (msgspec.DecodeError, RecursionError)

# Digits as '0', signs and exponent marks as 'e', and the bytes that can end a number as \x01.
# A number beyond the range of a double, or an integer too long, then has an exponent of three
# digits or more ("e000\x01", "e0000..."), or a run of at least 200 digits (a double overflows
# with a two-digit exponent only after 209 digits before the point). Digits in strings are never
# followed by \x01 (a string ends with a quote), and a number of three digits or more matches
# only with a sign or an exponent before them; so hexadecimal ids, timestamps, counts and
# coordinates pass the block scan, and the rare line that matches is looked at closer.
_NUMBER_MASK = bytes.maketrans(b"0123456789+-E,}] \t\r", b"0000000000eee" + b"\x01" * 6)
_LONG_RUN = b"0" * 200
# Its literal prefix makes the regex engine look for "e000" only.
_LONG_EXPONENT = re.compile(rb"e000+\x01")


def numbers_to_check(data: bytes) -> bytes | None:
    """`data` with its number bytes masked, when some number in it may be out of range (a
    line of it then needs `number_may_overflow`), else None."""
    masked = data.translate(_NUMBER_MASK)
    if _LONG_EXPONENT.search(masked) is not None or _LONG_RUN in masked:
        return masked
    return None


def number_may_overflow(masked_line: bytes) -> bool:
    """Whether a masked line (see numbers_to_check) may hold a number that is out of range."""
    return _LONG_RUN in masked_line or _LONG_EXPONENT.search(masked_line) is not None


def is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


class Projected:
    """Decodes JSON objects to dicts of only the given top-level fields, those present.

    `decode(data)` and `decode_lines(block)` give msgspec structs, `build(struct)` the dict.
    A field that is null stays null; one that is missing is left out (msgspec.UNSET).
    """

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = fields
        attributes = [f"f{index}" for index in range(len(fields))]
        struct = msgspec.defstruct(
            "Projected",
            [(attribute, Any, msgspec.UNSET) for attribute in attributes],
            rename=dict(zip(attributes, fields, strict=True)),
        )
        decoder = msgspec.json.Decoder(struct)
        self.decode = decoder.decode
        self.decode_lines = decoder.decode_lines
        self.build = _builder(attributes, fields)


def _builder(attributes: list[str], fields: tuple[str, ...]) -> Any:
    """A function from a projected struct to the dict of its set fields, written out in full
    (a loop over the fields costs about twice as much per record)."""
    body = ["def build(item):", "    record = {}"]
    for attribute, name in zip(attributes, fields, strict=True):
        body.append(f"    value = item.{attribute}")
        body.append(f"    if value is not UNSET: record[{name!r}] = value")
    body.append("    return record")
    namespace: dict[str, Any] = {"UNSET": msgspec.UNSET}
    exec("\n".join(body), namespace)  # names are repr()'d: only the code above is run
    return namespace["build"]
