"""What every reader shares: records, where each came from, and what to do with a bad one.

`Position` names the record in hand (`stdin:12`, `users.json: record 7`), `ErrorPolicy` fails
at a bad line or record or counts it (--on-error skip), and the errors here name what could not
be read and why. The NDJSON and array readers (ndpipe.io, ndpipe.arrays) build on this module.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

from ndpipe import codec
from ndpipe.errors import DataError

Record = dict[str, Any]
Records = Iterator[Record]

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
    """What to do with a bad input line, or a record an op cannot process: fail at once
    (default), or skip it and report it at the end (--on-error skip)."""

    def __init__(self, on_error: str = "fail", position: Position | None = None) -> None:
        self.skip = on_error == "skip"
        self.position = position
        self.skipped = 0
        self.failed = 0
        self.skipped_at: list[str] = []

    def bad_line(self, error: DataError) -> None:
        """Input that cannot be read as a record: raise it, or count it when skipping."""
        if not self.skip:
            raise error
        self.skipped += 1
        if len(self.skipped_at) < LISTED_SKIPS:
            self.skipped_at.append(error.where or "?")

    def bad_record(self, error: DataError) -> None:
        """A record an op cannot process (an expression fails on it): raise it, or count it
        when skipping. It is the record the reader yielded last, so that is its position."""
        if error.where is None and self.position is not None and self.position.number:
            error.where = str(self.position)
        if not self.skip:
            raise error
        self.failed += 1
        if len(self.skipped_at) < LISTED_SKIPS:
            self.skipped_at.append(error.where or "?")

    def summary(self) -> str | None:
        if not self.skipped and not self.failed:
            return None
        listed = ", ".join(self.skipped_at)
        more = ", ..." if self.skipped + self.failed > len(self.skipped_at) else ""
        parts = []
        if self.skipped:
            parts.append(f"{self.skipped} bad {'line' if self.skipped == 1 else 'lines'}")
        if self.failed:
            noun = "record" if self.failed == 1 else "records"
            parts.append(f"{self.failed} {noun} that could not be processed")
        return f"skipped {' and '.join(parts)} ({listed}{more})"


class GzipDamage(OSError):
    """Gzip data that cannot be read to its end; raised after every byte before the fault."""


def _zlib_reason(error: zlib.error) -> str:
    if "incorrect header check" in str(error):
        return "the gzip data is followed by bytes that are not gzip"
    if "incorrect data check" in str(error):
        return "the gzip data is damaged: its CRC check failed (so what came before may be too)"
    if "incorrect length check" in str(error):
        return "the gzip data is damaged: its length check failed"
    return f"the gzip data is damaged ({str(error).split(': ', 1)[-1]})"


class ReadError(DataError):
    """The input itself cannot be read on (damaged gzip, an I/O error): not one bad line."""


def read_failure(error: BaseException, name: str) -> ReadError:
    """A ReadError for a failure to read the input itself: damaged gzip, an I/O error."""
    if isinstance(error, GzipDamage):
        reason = str(error)
    elif isinstance(error, EOFError):
        reason = "the gzip data is truncated (it ends before its end)"
    elif isinstance(error, zlib.error):
        reason = _zlib_reason(error)
    elif isinstance(error, OSError) and error.strerror:
        reason = error.strerror
    else:
        reason = str(error) or type(error).__name__
    return ReadError(reason, where=name)


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


def _undecodable(data: bytes) -> DataError | None:
    """A DataError naming the first byte of `data` that is not UTF-8, or None if all are."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        column = len(data[: error.start].decode("utf-8", "replace"))
        byte = data[error.start]
        return DataError(
            f"invalid UTF-8: byte 0x{byte:02x} at column {column + 1} is not UTF-8 (the input "
            "may be in another encoding, such as Windows-1252: convert it first, e.g. "
            f"iconv -f WINDOWS-1252 -t UTF-8){_excerpt(data, column)}"
        )
    return None


def decode_error(data: bytes, error: BaseException) -> DataError:
    """The DataError for JSON text that does not decode: named, with the spot shown."""
    bad_bytes = _undecodable(data)
    if bad_bytes is not None:
        return bad_bytes
    explained = codec.explain(data, error)
    return DataError(f"invalid JSON: {explained.msg}{_excerpt(data, explained.pos)}")
