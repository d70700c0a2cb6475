"""The one streaming core: open a source, sniff its format, read records, write records.

Every command goes through here, so reading, parsing, per-line error handling and writing
exist once. Records are plain dicts. Memory stays constant: input is read line by line (NDJSON)
or item by item (JSON arrays, through ijson's C backend), and output is written in batches.
"""

from __future__ import annotations

import gzip
import io
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

import orjson

from ndpipe.errors import DataError, UsageError

Record = dict[str, Any]
Records = Iterator[Record]

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
# How far ahead the sniffer looks for the first meaningful byte (past whitespace and a BOM).
SNIFF_BYTES = 64 * 1024
# Output is gathered into batches of about this size before each write.
WRITE_BATCH_BYTES = 256 * 1024
# At most this many skipped line numbers are listed in the summary; the count is always exact.
LISTED_SKIPS = 10


class Position:
    """Where the record being processed came from, for error messages.

    The reader updates it as it yields each record; ops that raise a RecordError are
    processing the most recently read record, so the core names that position. The NDJSON
    reader also keeps that record and its line, so a writer can copy the line instead of
    encoding the record again when nothing has changed it (see `encoder`).
    """

    __slots__ = ("name", "number", "raw", "record", "unit")

    def __init__(self, name: str) -> None:
        self.name = name
        self.number = 0
        self.unit = "line"
        self.record: Record | None = None
        self.raw = b""

    def __str__(self) -> str:
        if self.unit == "line":
            return f"{self.name}:{self.number}"
        return f"{self.name}: {self.unit} {self.number}"


class ErrorPolicy:
    """What to do with a bad input line: fail at once (default), or skip it and report it later."""

    def __init__(self, on_error: str = "fail") -> None:
        self.skip = on_error == "skip"
        self.skipped = 0
        self.skipped_at: list[str] = []

    def bad_line(self, error: DataError) -> None:
        if not self.skip:
            raise error
        self.skipped += 1
        if len(self.skipped_at) < LISTED_SKIPS:
            self.skipped_at.append(error.where or "?")

    def summary(self) -> str | None:
        if not self.skipped:
            return None
        listed = ", ".join(self.skipped_at)
        more = ", ..." if self.skipped > len(self.skipped_at) else ""
        noun = "line" if self.skipped == 1 else "lines"
        return f"skipped {self.skipped} bad {noun} ({listed}{more})"


# --- opening and sniffing -------------------------------------------------------------------


def open_input(path: str) -> tuple[BinaryIO, str]:
    """Open a path ('-' is stdin) for binary reading; the name is what error messages show."""
    if path == "-":
        return sys.stdin.buffer, "stdin"
    try:
        return open(path, "rb"), path
    except OSError as error:
        raise UsageError(f"cannot open {path}: {error.strerror}") from None


def _peekable(stream: BinaryIO) -> io.BufferedReader:
    if isinstance(stream, io.BufferedReader):
        return stream
    return io.BufferedReader(stream, buffer_size=SNIFF_BYTES)  # type: ignore[arg-type]


def sniff(stream: BinaryIO) -> tuple[io.BufferedReader, str]:
    """Decompress gzip if its magic bytes say so, drop a UTF-8 BOM, and name the format.

    The format is 'array' when the first non-space byte is '[', 'ndjson' when it is '{',
    'empty' for no content, and 'other' otherwise (the caller decides: CSV, or an error).
    File names and extensions are never trusted.
    """
    buffered = _peekable(stream)
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        buffered = io.BufferedReader(gzip.GzipFile(fileobj=buffered, mode="rb"), SNIFF_BYTES)
    try:
        head = buffered.peek(SNIFF_BYTES)
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read input: {error}") from None
    if head.startswith(UTF8_BOM):
        buffered.read(len(UTF8_BOM))
        head = head[len(UTF8_BOM) :]
    first = head.lstrip()[:1]
    if not first:
        return buffered, "empty"
    if first == b"[":
        return buffered, "array"
    if first == b"{":
        return buffered, "ndjson"
    return buffered, "other"


# --- reading --------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    kind = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
    }
    return kind.get(type(value), type(value).__name__)


def _excerpt(line: bytes, column: int | None) -> str:
    """The bad line (shortened around the error) with a caret under the failing column."""
    text = line.rstrip(b"\r\n").decode("utf-8", "replace")
    start = 0
    if column is not None and column > 60:
        start = column - 40
    shown = text[start : start + 100]
    prefix = "..." if start else ""
    suffix = "..." if len(text) > start + 100 else ""
    caret = ""
    if column is not None:
        caret = "\n  " + " " * (len(prefix) + column - start) + "^"
    return f"\n  {prefix}{shown}{suffix}{caret}"


def read_ndjson(stream: Iterable[bytes], position: Position, policy: ErrorPolicy) -> Records:
    """One JSON object per line; blank lines are skipped; CRLF is fine (JSON whitespace)."""
    loads = orjson.loads
    for number, line in enumerate(stream, 1):
        try:
            record = loads(line)
        except orjson.JSONDecodeError as error:
            if not line.strip():
                continue
            message = error.msg if hasattr(error, "msg") else str(error)
            policy.bad_line(
                DataError(
                    f"invalid JSON: {message}{_excerpt(line, error.pos)}",
                    where=f"{position.name}:{number}",
                )
            )
            continue
        if type(record) is not dict:
            policy.bad_line(
                DataError(
                    f"expected a JSON object, got {_describe(record)}{_excerpt(line, None)}",
                    where=f"{position.name}:{number}",
                )
            )
            continue
        position.number = number
        position.record = record
        position.raw = line
        yield record


def read_json_array(stream: BinaryIO, position: Position, policy: ErrorPolicy) -> Records:
    """Items of a top-level JSON array, one at a time (ijson's C backend): never the whole array."""
    import ijson  # imported here: NDJSON-only runs do not pay for it

    position.unit = "record"
    number = 0
    try:
        for number, item in enumerate(ijson.items(stream, "item", use_float=True), 1):
            if type(item) is not dict:
                policy.bad_line(
                    DataError(
                        f"expected a JSON object, got {_describe(item)}",
                        where=f"{position.name}: record {number}",
                    )
                )
                continue
            position.number = number
            yield item
    except ijson.JSONError as error:
        # A JSON array cannot be resynchronised after a syntax error, so this always fails.
        raise DataError(
            f"invalid JSON array after record {number}: {error}", where=position.name
        ) from None


Reader = Callable[[io.BufferedReader, Position, ErrorPolicy], Records]


def read_records(
    path: str,
    policy: ErrorPolicy,
    position: Position | None = None,
    other: Reader | None = None,
) -> Records:
    """Records from a path or '-': NDJSON or a JSON array, gzip or not, sniffed from the bytes.

    `other` reads input that is neither (fetch passes the CSV reader); without it such input
    is read as NDJSON, so the first bad line gets the usual clear error.
    """
    stream, name = open_input(path)
    return read_stream(stream, name, policy, position, other)


def read_stream(
    stream: BinaryIO,
    name: str,
    policy: ErrorPolicy,
    position: Position | None = None,
    other: Reader | None = None,
) -> Records:
    """Records from an open binary stream (a file, stdin, a download), as `read_records`."""
    if position is None:
        position = Position(name)
    else:
        position.name = name
    buffered, kind = sniff(stream)
    if kind == "array":
        return read_json_array(buffered, position, policy)
    if kind == "other" and other is not None:
        return other(buffered, position, policy)
    return read_ndjson(buffered, position, policy)


# --- writing --------------------------------------------------------------------------------


Encoder = Callable[[Record], bytes]


def _as_read(raw: bytes) -> bytes:
    """An input line as compact output: without its line end and surrounding whitespace."""
    return raw[:-1] if raw[:1] == b"{" and raw[-2:] == b"}\n" else raw.strip()


def dump_json(record: Record) -> bytes:
    """A record as compact JSON bytes; a value JSON cannot hold is a DataError."""
    try:
        return orjson.dumps(record)
    except TypeError as error:
        raise DataError(f"cannot write record as JSON: {error}") from None


def encoder(unchanged: Position | None = None) -> Encoder:
    """A function from a record to its JSON bytes (no line end).

    With `unchanged` (the reader's position, given only when every stage passes records on
    untouched), the record the reader has just yielded is its input line as read: filter, head
    and dedupe copy lines instead of encoding them again.
    """
    if unchanged is None:
        return dump_json

    def encode(record: Record) -> bytes:
        return _as_read(unchanged.raw) if record is unchanged.record else dump_json(record)

    return encode


def write_ndjson(
    records: Iterable[Record], out: BinaryIO, unchanged: Position | None = None
) -> int:
    """Write records as NDJSON in batches; returns how many were written.

    `unchanged` is as for `encoder`: an untouched record is written as its input line. When the
    stream fails part-way, the records before the failure are still written, so the output
    holds exactly what came before the reported line. The batch is one bytearray: orjson's
    bytes objects keep spare capacity, and a list of them costs twice the memory.
    """
    dumps = orjson.dumps
    option = orjson.OPT_APPEND_NEWLINE
    batch = bytearray()
    count = 0
    try:
        for record in records:
            if unchanged is not None and record is unchanged.record:
                raw = unchanged.raw
                if raw[:1] == b"{" and raw[-2:] == b"}\n":
                    batch += raw
                else:
                    batch += raw.strip()
                    batch += b"\n"
            else:
                try:
                    batch += dumps(record, option=option)
                except TypeError as error:
                    raise DataError(f"cannot write record as JSON: {error}") from None
            count += 1
            if len(batch) >= WRITE_BATCH_BYTES:
                out.write(batch)
                batch.clear()
    finally:
        if batch:
            out.write(batch)
        out.flush()
    return count


class SideFile:
    """A file for the records a command sets aside (--rejects, --dups, --unmatched), as NDJSON.

    Opened when the command is built, so a bad path fails before any input is read; write
    errors, such as a full disk, become DataErrors naming the option.
    """

    def __init__(self, path: str, option: str) -> None:
        self.path = path
        self.option = option
        try:
            self.handle = open(path, "wb", buffering=WRITE_BATCH_BYTES)  # noqa: SIM115
        except OSError as error:
            raise UsageError(f"cannot write {option} {path}: {error.strerror}") from None

    def _failed(self, error: OSError) -> DataError:
        return DataError(f"cannot write {self.option} {self.path}: {error.strerror}")

    def write(self, record: Record) -> None:
        try:
            line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError as error:
            raise DataError(f"cannot write a record to {self.option} as JSON: {error}") from None
        try:
            self.handle.write(line)
        except OSError as error:
            raise self._failed(error) from None

    def close(self) -> None:
        try:
            self.handle.close()
        except OSError as error:
            raise self._failed(error) from None
