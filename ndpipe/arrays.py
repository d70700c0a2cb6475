"""Reading a top-level JSON array item by item: never the whole array.

Each item's bytes are decoded by the same decoder as an NDJSON line, so both readers accept,
refuse and carry numbers alike, and an item passed on unchanged can be written as its bytes.

Two paths find the items. The exact path reads one item at a time: when the item fills the
rest of its line it is decoded as found (as to-json-array writes arrays), else its end is found
by counting brackets outside strings. The block path takes a whole block of lines at once, for
arrays written one item to a line with a comma after it (`[`, `{...},` ... `{...}`, `]`: how
Auth0's exports, to-json-array and most tools write arrays). A line of such a block is exactly
the item the exact path would find there, because a value that decodes whole ends where it ends
and JSON text never holds a raw line break inside a string. At the first line that does not
have that shape (the last item, a bad item, an item over several lines, a missing comma) the
exact path takes over for one item and its separator; so every error, its record number and its
message come from the exact path alone, whichever path found the item before it.

With a projection (ndpipe.projection) the block path decodes only the fields the pipeline reads,
with the NDJSON reader's checks for what that decoder cannot see; the exact path always decodes
whole records.
"""

from __future__ import annotations

import functools
import re
import zlib
from typing import TYPE_CHECKING, Any, BinaryIO

from ndpipe import codec
from ndpipe.errors import DataError
from ndpipe.reading import (
    ErrorPolicy,
    Position,
    ReadError,
    Records,
    _describe,
    decode_error,
    read_failure,
)

if TYPE_CHECKING:
    from ndpipe.projection import Projection

# The exact path reads input in pieces of this size; the block path takes the whole lines
# the buffer holds (tests make it tiny, to cut items and lines at every byte).
BLOCK_BYTES = 64 * 1024
_WHITE_SPACE = b" \t\r\n"
_COMMA = ord(",")
_CLOSE = ord("]")
_OPEN = ord("{")


class _ArrayScanner:
    """Finds the items of a top-level JSON array in a byte stream without decoding them.

    `buffer[at:]` is the input not read yet. An item is found the fast way when it is alone on
    its line, else by counting brackets outside strings.
    """

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self.stream = stream
        # read1: one read of the layer below, so that bytes read before a fault (damaged gzip)
        # come out before the error does.
        self.read = stream.read1 if hasattr(stream, "read1") else stream.read
        self.name = name
        self.buffer = b""
        self.at = 0
        self.ended = False
        self.line_mode = True

    def more(self, keep: int) -> int:
        """Read more input, dropping the bytes before `keep`; returns how far indexes moved."""
        if self.ended:
            return -1
        try:
            chunk = self.read(BLOCK_BYTES)
        except (OSError, EOFError, zlib.error) as error:
            raise read_failure(error, self.name) from None
        if not chunk:
            self.ended = True
            return -1
        self.buffer = self.buffer[keep:] + chunk
        self.at -= keep
        return keep

    def next_byte(self) -> int:
        """The next byte that is not JSON white space (without consuming it), or -1 at the end."""
        while True:
            match = _pattern("white space").match(self.buffer, self.at)
            self.at = match.end() if match else self.at
            if self.at < len(self.buffer):
                return self.buffer[self.at]
            if self.more(self.at) < 0:
                return -1

    def item(self) -> tuple[bytes, Any]:
        """The bytes of the value that starts at the current position, and the value when it is
        already decoded (else NOT_DECODED); moves past it."""
        first = self.buffer[self.at]
        if first in b"{[" and self.line_mode:
            found = self._alone_on_line()
            if found is not None:
                return found
        if first in b"{[":
            return self._bracketed(), NOT_DECODED
        string = first == 34
        pattern = _pattern("string" if string else "scalar")
        while True:
            # A string is whole once its closing quote is in the buffer, a scalar once a byte
            # after it is; else the buffer may have cut it, and the rest is read first.
            # (No match at all is a scalar that is not one, a separator say: whole as it is.)
            match = pattern.match(self.buffer, self.at)
            if match is None and not string:
                break
            if match is not None and (string or match.end() < len(self.buffer)):
                break
            if self.more(self.at) < 0:
                break
        end = match.end() if match else self.at
        item, self.at = self.buffer[self.at : max(end, self.at + 1)], max(end, self.at + 1)
        return item, NOT_DECODED

    def _alone_on_line(self) -> tuple[bytes, Any] | None:
        start = self.at
        line_end = self.buffer.find(b"\n", start)
        if line_end < 0:
            return None
        end = line_end
        while end > start and self.buffer[end - 1] in _WHITE_SPACE:
            end -= 1
        if end > start and self.buffer[end - 1] in b",]":
            end -= 1
        candidate = self.buffer[start:end]
        try:
            value = codec.decode(candidate)
        except codec.DECODE_ERRORS:
            self.line_mode = False
            return None
        # A complete value that fills the line up to a separator: values end where they end,
        # so this is the item (the separator is read next).
        self.at = end
        return candidate, value

    def _bracketed(self) -> bytes:
        start = self.at
        depth = 0
        scan = start
        while True:
            match = _pattern("up to bracket").match(self.buffer, scan)
            end = match.end() if match else scan
            if end >= len(self.buffer) or self.buffer[end] == 34:  # need more, or a cut string
                moved = self.more(start)
                if moved < 0:
                    raise DataError("the input ends inside an item")
                start -= moved
                scan -= moved
                continue
            byte = self.buffer[end]
            depth += 1 if byte in b"{[" else -1
            scan = end + 1
            if depth == 0:
                self.at = scan
                return self.buffer[start:scan]


# What the scanner gives for an item it has not decoded.
NOT_DECODED = object()


# JSON white space, a string (quote to quote, escapes skipped), a scalar (up to a separator),
# and everything up to the next bracket that is not inside a string.
# (Compiled on first use: most runs read no array.)
@functools.cache
def _pattern(name: str) -> re.Pattern[bytes]:
    return re.compile(_PATTERNS[name], re.DOTALL)


_PATTERNS = {
    "white space": rb"[ \t\r\n]+",
    "string": rb'"[^"\\]*(?:\\.[^"\\]*)*"',
    "scalar": rb"[^,\]\s]+",
    "up to bracket": rb'[^"{}\[\]]*(?:"[^"\\]*(?:\\.[^"\\]*)*"[^"{}\[\]]*)*',
}


def _projected_lines(
    projection: Projection | None, block: bytes, lines: list[bytes]
) -> list[bool] | None:
    """For each line of `block`, whether the projected decoder may decode it: whether nothing in
    it can hide from that decoder (bytes that are not UTF-8, a number that may be out of range:
    see ndpipe.codec); None when no line may (no projection, or whole records for now).

    The checks run on the whole block and look at single lines only where the block fails them.
    """
    if projection is None or projection.whole_now():
        return None
    sure = [True] * len(lines)
    if not block.isascii() and not codec.is_utf8(block):
        for index, line in enumerate(lines):
            sure[index] = line.isascii() or codec.is_utf8(line)
    masked = codec.numbers_to_check(block)
    if masked is not None:
        # The lines that hold a suspect number (see codec.numbers_to_check), found in one scan.
        index = scanned = 0
        for match in _SUSPECT_EXPONENT.finditer(masked):
            index += masked.count(b"\n", scanned, match.start())
            scanned = match.start()
            sure[index] = False
        if _LONG_RUN in masked:
            for index, line in enumerate(masked.split(b"\n")):
                if _LONG_RUN in line:
                    sure[index] = False
    return sure


# What codec.number_may_overflow looks for, as two searches that run at the speed of a byte
# search: an exponent of three digits or more ending a number, and a run of 200 digits.
_SUSPECT_EXPONENT = re.compile(rb"e000+\x01")
_LONG_RUN = b"0" * 200


def _line_shaped(buffer: bytes, start: int) -> bool:
    """Whether the line at `start` looks like `{...},` (white space around it aside): a cheap
    test before the block path copies and splits a whole block."""
    end = buffer.find(b"\n", start)
    if end < 0:
        return False
    line = buffer[start:end].strip(_WHITE_SPACE)
    return line[:1] == b"{" and line[-2:] == b"},"


def read_json_array(
    stream: BinaryIO,
    position: Position,
    policy: ErrorPolicy,
    *,
    blocks: bool = True,
    projection: Projection | None = None,
) -> Records:
    """Items of a top-level JSON array, one at a time; a failure to read the input itself names
    the last record read.

    Each item is decoded as an NDJSON line is, so numbers are exact and bad text is refused
    alike; an item that does not decode can be skipped with the skip policy, since its
    end is known. A broken array (a missing comma or bracket) cannot be read past, so it always
    fails. `blocks=False` reads every item by the exact path (the block path's reference).

    With a `projection`, the block path gives records of only its fields where the projected
    decoder is sure to accept and refuse what the whole decoder does (the checks of
    ndpipe.codec), and whole records elsewhere, as the NDJSON reader does.
    """
    position.unit = "record"
    name = position.name
    decode = codec.decode
    scanner = _ArrayScanner(stream, name)
    errors = codec.DECODE_ERRORS
    white_space = _WHITE_SPACE
    number = 0
    misses = wait = 0
    # Used only where `_projected_lines` says so: never without a projection.
    projected = codec.Projected(projection.fields if projection is not None else ())
    project, build = projected.decode, projected.build

    def broken(reason: str) -> DataError:
        return DataError(f"invalid JSON array after record {number}: {reason}", where=name)

    try:
        if scanner.next_byte() != ord("["):
            raise broken("it does not start with [")
        scanner.at += 1
        if scanner.next_byte() == ord("]"):
            scanner.at += 1
            if scanner.next_byte() >= 0:
                raise broken("more data follows the closing ]")
            return
        while True:
            # The block path: the whole lines in the buffer, while each is an object and a
            # comma. A block whose first line only looks like one (an item over several lines)
            # costs a copy of the block, so after such a miss the exact path reads a growing
            # number of items before the block path tries again.
            if wait:
                wait -= 1
            while (
                blocks
                and not wait
                and scanner.next_byte() == _OPEN
                and _line_shaped(scanner.buffer, scanner.at)
            ):
                buffer = scanner.buffer
                start = scanner.at
                end = buffer.rfind(b"\n") + 1
                carriage_returns = buffer.find(b"\r", start, end) >= 0
                region = buffer[start : end - 1]
                lines = region.split(b"\n")
                first = number
                sure = _projected_lines(projection, region, lines)
                for index, line in enumerate(lines):
                    if line[-1:] == b",":
                        item = line[:-1]
                    else:
                        item = line.rstrip(white_space)
                        if item[-1:] != b",":
                            break
                        item = item[:-1]
                    record = None
                    if sure is not None and sure[index]:
                        try:
                            record = build(project(item))
                        except errors:
                            record = None
                    if record is None:
                        try:
                            record = decode(item)
                        except errors:
                            break
                        if type(record) is not dict:
                            break
                    if item[0] != _OPEN:
                        item = item.lstrip(white_space)
                    number += 1
                    position.number = number
                    position.record = record
                    # An item copied as read must be one line of NDJSON.
                    position.raw = item if not carriage_returns or b"\r" not in item else b""
                    yield record
                read = number - first
                whole = read == len(lines)
                scanner.at = end if whole else start + sum(len(line) + 1 for line in lines[:read])
                if not read:
                    misses = min(misses * 2 + 1, 1024)
                    wait = misses
                    break
                misses = 0
                if not whole:
                    break  # a line of another kind: the exact path reads it
                if scanner.more(scanner.at) < 0:
                    break
            # The exact path: one item and its separator.
            if scanner.next_byte() < 0:
                raise broken("the input ends before the closing ]")
            try:
                raw, record = scanner.item()
            except ReadError:
                raise
            except DataError as error:
                raise broken(error.message) from None
            number += 1
            where = f"{name}: record {number}"
            if record is NOT_DECODED:
                try:
                    record = decode(raw)
                except errors as error:
                    bad = decode_error(raw, error)
                    bad.where = where
                    policy.bad_line(bad)
                    record = None
            if record is not None and type(record) is not dict:
                policy.bad_line(
                    DataError(f"expected a JSON object, got {_describe(record)}", where=where)
                )
            elif record is not None:
                position.number = number
                position.record = record
                position.raw = raw if b"\n" not in raw and b"\r" not in raw else b""
                yield record
            separator = scanner.next_byte()
            if separator == _COMMA:
                scanner.at += 1
                continue
            if separator == _CLOSE:
                scanner.at += 1
                break
            if separator < 0:
                raise broken("the input ends before the closing ]")
            raise broken(f"expected , or ] but found {chr(separator)!r}")
        if scanner.next_byte() >= 0:
            raise broken("more data follows the closing ]")
    except ReadError as error:
        error.message += f", after record {position.number}"
        raise
