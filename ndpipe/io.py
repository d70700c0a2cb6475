"""The one streaming core: open a source, sniff its format, read records, write records.

Every command goes through here, so reading, parsing, per-line error handling and writing
exist once. Records are plain dicts. Memory stays constant: input is read line by line (NDJSON)
or item by item (JSON arrays, see ndpipe.arrays), and output is written in batches. What every
reader shares (positions, the error policy, read errors) is in ndpipe.reading.
"""

from __future__ import annotations

import io
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import orjson

from ndpipe import arrays, codec
from ndpipe.errors import DataError, OutputError, RecordError, UsageError
from ndpipe.output import AtomicFile
from ndpipe.reading import (
    LISTED_SKIPS,
    ErrorPolicy,
    GzipDamage,
    Position,
    ReadError,
    Record,
    Records,
    _describe,
    _excerpt,
    _zlib_reason,
    decode_error,
    read_failure,
)

__all__ = [
    "LISTED_SKIPS",
    "ErrorPolicy",
    "GzipDamage",
    "Position",
    "ReadError",
    "Record",
    "Records",
    "decode_error",
    "read_failure",
]

if TYPE_CHECKING:
    from ndpipe.projection import Projection


GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
# How far ahead the sniffer looks for the first meaningful byte (past whitespace and a BOM).
SNIFF_BYTES = 64 * 1024
# Input is read in blocks of about this size (whole lines for NDJSON).
READ_BLOCK_BYTES = 64 * 1024
# Output is gathered into batches of about this size before each write.
WRITE_BATCH_BYTES = 256 * 1024


def skipping(
    records: Iterable[Record],
    policy: ErrorPolicy | None,
    run: Callable[[Iterator[Record]], Records],
) -> Records:
    """`run(stream)` over the records, where a RecordError it raises goes to the policy.

    Without a policy, or when not skipping, the error stops the run. When skipping, it is
    counted and `run` starts again on the rest of the stream, so ops keep their fast loops
    (a try around the whole loop) and still skip one bad record. Errors from upstream stages
    carry their stage's name (see pipeline._named) and pass through untouched.
    """
    stream = iter(records)
    if policy is None or not policy.skip:
        return run(stream)  # no wrapper at all on the default path
    return _skipping(stream, policy, run)


def feed(
    records: Iterable[Record], add: Callable[[Record], object], policy: ErrorPolicy | None
) -> None:
    """Call `add` on every record; a RecordError it raises goes to the policy (which raises it
    unless skipping), or is raised when there is no policy. For ops that take all their input
    before they yield (sort, diff)."""
    for record in records:
        try:
            add(record)
        except RecordError as error:
            if policy is None:
                raise
            policy.bad_record(error)


def _skipping(
    stream: Iterator[Record], policy: ErrorPolicy, run: Callable[[Iterator[Record]], Records]
) -> Records:
    while True:
        try:
            yield from run(stream)
            return
        except RecordError as error:
            if getattr(error, "command", None) is not None:
                raise
            policy.bad_record(error)


# --- opening and sniffing -------------------------------------------------------------------

# Magic bytes of inputs ndpipe does not read, so they are named instead of misread.
_NOT_READ = (
    (b"BZh", "bzip2-compressed: decompress it first (bunzip2 -c FILE)"),
    (b"\xfd7zXZ\x00", "xz-compressed: decompress it first (xz -dc FILE)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed: decompress it first (zstd -dc FILE)"),
    (b"PK\x03\x04", "a zip archive: extract the file from it first (unzip -p FILE)"),
    (b"\xff\xfe\x00\x00", "UTF-32: convert it to UTF-8 first (iconv -f UTF-32 -t UTF-8)"),
    (b"\x00\x00\xfe\xff", "UTF-32: convert it to UTF-8 first (iconv -f UTF-32 -t UTF-8)"),
    (b"\xff\xfe", "UTF-16: convert it to UTF-8 first (iconv -f UTF-16 -t UTF-8)"),
    (b"\xfe\xff", "UTF-16: convert it to UTF-8 first (iconv -f UTF-16 -t UTF-8)"),
)
_JSON_WHITE_SPACE = b" \t\r\n"


def open_input(path: str) -> tuple[BinaryIO, str]:
    """Open a path ('-' is stdin) for binary reading; the name is what error messages show."""
    if path == "-":
        stdin = sys.stdin
        if stdin is None:  # started with stdin closed (`<&-`)
            raise UsageError("stdin is closed: give the input on stdin or as a file")
        return stdin.buffer, "stdin"
    try:
        return open(path, "rb"), path
    except OSError as error:
        raise UsageError(f"cannot open {path}: {error.strerror}") from None


def _peekable(stream: BinaryIO) -> io.BufferedReader:
    if isinstance(stream, io.BufferedReader):
        return stream
    return io.BufferedReader(stream, buffer_size=SNIFF_BYTES)  # type: ignore[arg-type]


class Gunzip(io.RawIOBase):
    """Gzip decompression that gives out every byte it can before a fault, then names it.

    The standard library's GzipFile drops what it decompressed in the read call that meets a
    fault (a bad CRC at the very end loses the last records). Here the decompressor's state is
    copied before each block, so after an error the block is fed again in small pieces to
    recover the output before the fault. Members that follow each other are read as one stream
    (as gunzip does); zeros after the last member are padding; anything else is an error.
    CRC and length are checked by zlib at the end of each member.
    """

    BLOCK = 64 * 1024
    SALVAGE_STEP = 256

    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        self.source = source
        self.decompressor: Any = zlib.decompressobj(31)  # 31: gzip header and trailer
        self.between_members = False  # True after a complete member
        self.pending = memoryview(b"")
        self.fault: GzipDamage | None = None
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            if self.fault is not None:
                raise self.fault
            if self.ended:
                return 0
            self._fill()
        count = min(len(buffer), len(self.pending))
        buffer[:count] = self.pending[:count]
        self.pending = self.pending[count:]
        return count

    def _fill(self) -> None:
        chunk = self.source.read(self.BLOCK)
        if not chunk:
            if not self.between_members:
                self.fault = GzipDamage("the gzip data is truncated (it ends before its end)")
            self.ended = True
            return
        output: list[bytes] = []
        self._decompress(chunk, output)
        self.pending = memoryview(b"".join(output))

    def _decompress(self, data: bytes, output: list[bytes]) -> None:
        while data:
            if self.between_members:
                data = data.lstrip(b"\0")  # zeros after a member are padding
                if not data:
                    return
                self.decompressor = zlib.decompressobj(31)
                self.between_members = False
            backup = self.decompressor.copy()
            try:
                output.append(self.decompressor.decompress(data))
            except zlib.error as error:
                output.append(self._salvage(backup, data))
                self.fault = GzipDamage(_zlib_reason(error))
                return
            if not self.decompressor.eof:
                return
            self.between_members = True
            data = self.decompressor.unused_data

    def _salvage(self, decompressor: Any, chunk: bytes) -> bytes:
        """The output of `chunk` up to the fault, fed in small pieces to a copy of the state."""
        parts = []
        for start in range(0, len(chunk), self.SALVAGE_STEP):
            before = decompressor.copy()
            try:
                parts.append(decompressor.decompress(chunk[start : start + self.SALVAGE_STEP]))
            except zlib.error:
                # The bad piece, a byte at a time, from the state before it.
                for byte in range(start, min(start + self.SALVAGE_STEP, len(chunk))):
                    try:
                        parts.append(before.decompress(chunk[byte : byte + 1]))
                    except zlib.error:
                        break
                break
        self.decompressor = decompressor
        return b"".join(parts)


def _peek(buffered: io.BufferedReader, name: str) -> bytes:
    try:
        return buffered.peek(SNIFF_BYTES)
    except (OSError, EOFError, zlib.error) as error:
        raise read_failure(error, name) from None


def _not_read(head: bytes) -> str | None:
    """Why input starting with `head` is not something ndpipe reads, or None."""
    for magic, what in _NOT_READ:
        if head.startswith(magic):
            return what
    if head.startswith(GZIP_MAGIC):
        return "gzip inside gzip: decompress it once first (gunzip -c FILE)"
    if b"\x00" in head[:4096]:
        return (
            "binary, or UTF-16 without a byte order mark (it has NUL bytes): "
            "if it is UTF-16, convert it first (iconv -f UTF-16LE -t UTF-8)"
        )
    return None


class Sniffed:
    """An input stream positioned at its first meaningful byte, with the format it holds.

    `kind` is 'array' (first byte '['), 'ndjson' (first byte '{', or a first line that is some
    other JSON value, such as `5` or `null`: an error then names it), 'empty' or 'other' (the
    caller decides: CSV, or an error). `lines_skipped` counts the blank lines consumed before
    it, so that line numbers stay those of the file.
    """

    __slots__ = ("kind", "lines_skipped", "stream")

    def __init__(self, stream: io.BufferedReader, kind: str, lines_skipped: int) -> None:
        self.stream = stream
        self.kind = kind
        self.lines_skipped = lines_skipped


def sniff(stream: BinaryIO, name: str = "input") -> Sniffed:
    """Decompress gzip if its magic bytes say so, drop a UTF-8 BOM, and name the format.

    File names and extensions are never trusted. Compressions and encodings that ndpipe does
    not read are named in a DataError rather than read as something else.
    """
    buffered = _peekable(stream)
    if _peek(buffered, name)[:2] == GZIP_MAGIC:
        buffered = io.BufferedReader(Gunzip(buffered), SNIFF_BYTES)
    head = _peek(buffered, name)
    if head.startswith(UTF8_BOM):
        buffered.read(len(UTF8_BOM))
        head = _peek(buffered, name)
    reason = _not_read(head)
    if reason:
        raise DataError(f"cannot read {name}: it is {reason}")
    lines_skipped = 0
    # White space longer than one peek: consume it (blank lines only) until content shows.
    while head and not head.lstrip(_JSON_WHITE_SPACE):
        lines_skipped += head.count(b"\n")
        buffered.read(len(head))
        head = _peek(buffered, name)
    first = head.lstrip(_JSON_WHITE_SPACE)[:1]
    if not first:
        return Sniffed(buffered, "empty", lines_skipped)
    if first == b"[":
        return Sniffed(buffered, "array", lines_skipped)
    if first == b"{" or _first_line_is_json(head):
        return Sniffed(buffered, "ndjson", lines_skipped)
    return Sniffed(buffered, "other", lines_skipped)


def _first_line_is_json(head: bytes) -> bool:
    """Whether the first non-blank line is a JSON value (`5`, `null`, `"text"`): then the input
    is NDJSON with a bad first record, not CSV."""
    content = head.lstrip(_JSON_WHITE_SPACE)
    end = content.find(b"\n")
    if end < 0:
        end = len(content)
    try:
        orjson.loads(content[:end])
    except orjson.JSONDecodeError:
        return False
    return True


# --- reading --------------------------------------------------------------------------------


def _blocks(stream: BinaryIO, name: str) -> Iterator[bytes]:
    """The stream in blocks of whole lines (the last may lack its line end).

    A line longer than a block is gathered whole, so memory is a block or the longest line.
    Failures to read (damaged gzip, I/O errors) become DataErrors naming the input.
    """
    # read1: one read of the layer below, so that bytes read before a fault (damaged gzip)
    # come out before the error does.
    read = stream.read1 if hasattr(stream, "read1") else stream.read
    pending: list[bytes] = []
    while True:
        try:
            chunk = read(READ_BLOCK_BYTES)
        except (OSError, EOFError, zlib.error) as error:
            raise read_failure(error, name) from None
        if not chunk:
            if pending:
                yield b"".join(pending)
            return
        end = chunk.rfind(b"\n") + 1
        if not end:
            pending.append(chunk)
            continue
        if pending:
            pending.append(chunk[:end])
            yield b"".join(pending)
            pending = []
        else:
            yield chunk[:end] if end < len(chunk) else chunk
        if end < len(chunk):
            pending.append(chunk[end:])


def read_ndjson(
    stream: BinaryIO,
    position: Position,
    policy: ErrorPolicy,
    first_line: int = 1,
    projection: Projection | None = None,
) -> Records:
    """One JSON object per line; blank lines are skipped; CRLF is fine (JSON whitespace).

    Numbers are exact (see ndpipe.codec). With a `projection`, records hold only its fields
    (see ndpipe.projection); what is read, refused and reported stays the same.
    """
    if projection is not None:
        return _read_projected(stream, position, policy, first_line, projection)
    return _read_whole(stream, position, policy, first_line)


def _block_lines(
    stream: BinaryIO, name: str, first_line: int
) -> Iterator[tuple[int, bytes, list[bytes]]]:
    """Each block of whole lines as (the number of the line before it, the block, its lines);
    a read error names the last line read."""
    number = first_line - 1
    blocks = _blocks(stream, name)
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            return
        except ReadError as error:
            error.message += f", after line {number}"
            raise
        lines = block.split(b"\n")
        if not lines[-1]:
            lines.pop()
        yield number, block, lines
        number += len(lines)


def _read_whole(
    stream: BinaryIO, position: Position, policy: ErrorPolicy, first_line: int
) -> Records:
    decode = codec.decode
    errors = codec.DECODE_ERRORS
    name = position.name
    for number, _, lines in _block_lines(stream, name, first_line):
        for line in lines:
            number += 1
            try:
                record = decode(line)
            except errors as error:
                if not line.strip(_JSON_WHITE_SPACE):
                    continue
                bad = decode_error(line, error)
                bad.where = f"{name}:{number}"
                policy.bad_line(bad)
                continue
            if type(record) is not dict:
                policy.bad_line(
                    DataError(
                        f"expected a JSON object, got {_describe(record)}{_excerpt(line, None)}",
                        where=f"{name}:{number}",
                    )
                )
                continue
            position.number = number
            position.record = record
            position.raw = line
            yield record


def _whole_line(line: bytes, where: str, policy: ErrorPolicy) -> Record | None:
    """A line decoded whole, exactly as _read_whole does; None for a blank or skipped line."""
    try:
        record = codec.decode(line)
    except codec.DECODE_ERRORS as error:
        if not line.strip(_JSON_WHITE_SPACE):
            return None
        bad = decode_error(line, error)
        bad.where = where
        policy.bad_line(bad)
        return None
    if type(record) is not dict:
        policy.bad_line(
            DataError(
                f"expected a JSON object, got {_describe(record)}{_excerpt(line, None)}",
                where=where,
            )
        )
        return None
    return record


def _read_projected(
    stream: BinaryIO,
    position: Position,
    policy: ErrorPolicy,
    first_line: int,
    projection: Projection,
) -> Records:
    """read_ndjson with a projection: a block of lines at a time, its lines decoded by the
    projected decoder when nothing in the block can hide from it (see ndpipe.codec), each
    doubtful line decoded whole, so errors and their messages are those of _read_whole."""
    projected = codec.Projected(projection.fields)
    decode = projected.decode
    build = projected.build
    failures = codec.PROJECTED_ERRORS
    is_utf8 = codec.is_utf8
    may_overflow = codec.number_may_overflow
    name = position.name
    for number, block, lines in _block_lines(stream, name, first_line):
        whole = projection.whole_now()
        masked = None if whole else codec.numbers_to_check(block)
        doubtful = masked.split(b"\n") if masked is not None else None
        ascii = block.isascii()
        for index, line in enumerate(lines):
            number += 1
            record = None
            if (
                not whole
                and (doubtful is None or not may_overflow(doubtful[index]))
                and (ascii or line.isascii() or is_utf8(line))
            ):
                try:
                    record = build(decode(line))
                except failures:
                    record = None
            if record is None:
                record = _whole_line(line, f"{name}:{number}", policy)
                if record is None:
                    continue
            position.number = number
            position.record = record
            position.raw = line
            yield record


def read_json_array(
    stream: BinaryIO,
    position: Position,
    policy: ErrorPolicy,
    projection: Projection | None = None,
) -> Records:
    """Items of a top-level JSON array, one at a time: never the whole array (see ndpipe.arrays).

    With a `projection`, records hold only its fields where that is sure, as read_ndjson's."""
    return arrays.read_json_array(stream, position, policy, projection=projection)


Reader = Callable[[io.BufferedReader, Position, ErrorPolicy], Records]


def read_records(
    path: str,
    policy: ErrorPolicy,
    position: Position | None = None,
    other: Reader | None = None,
    projection: Projection | None = None,
) -> Records:
    """Records from a path or '-': NDJSON or a JSON array, gzip or not, sniffed from the bytes.

    `other` reads input that is neither (fetch passes the CSV reader); without it such input
    is read as NDJSON, so the first bad line gets the usual clear error. `projection`: NDJSON
    and array records hold only its fields (see ndpipe.projection); CSV gives whole records.
    """
    stream, name = open_input(path)
    return read_stream(stream, name, policy, position, other, projection)


def read_stream(
    stream: BinaryIO,
    name: str,
    policy: ErrorPolicy,
    position: Position | None = None,
    other: Reader | None = None,
    projection: Projection | None = None,
) -> Records:
    """Records from an open binary stream (a file, stdin, a download), as `read_records`.

    The first bytes are read now, to tell the format; the records as they are asked for.
    """
    if position is None:
        position = Position(name)
    else:
        position.name = name
    sniffed = sniff(stream, name)
    if sniffed.kind == "array":
        return read_json_array(sniffed.stream, position, policy, projection)
    if sniffed.kind == "other" and other is not None:
        return other(sniffed.stream, position, policy)
    return read_ndjson(sniffed.stream, position, policy, sniffed.lines_skipped + 1, projection)


# --- writing --------------------------------------------------------------------------------


Encoder = Callable[[Record], bytes]


def _as_read(raw: bytes) -> bytes:
    """An input line as compact output: without surrounding whitespace (or a CR)."""
    return raw if raw[:1] == b"{" and raw[-1:] == b"}" else raw.strip(_JSON_WHITE_SPACE)


def dump_json(record: Record) -> bytes:
    """A record as compact JSON bytes, numbers exact; a value JSON cannot hold is a DataError."""
    try:
        return codec.dumps(record)
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
        if record is unchanged.record and unchanged.raw:
            return _as_read(unchanged.raw)
        return dump_json(record)

    return encode


def write_ndjson(
    records: Iterable[Record], out: BinaryIO, unchanged: Position | None = None
) -> int:
    """Write records as NDJSON in batches; returns how many were written.

    `unchanged` is as for `encoder`: an untouched record is written as its input line. When the
    stream fails part-way, the records before the failure are still written, so the output
    holds exactly what came before the reported line.
    """
    dumps = orjson.dumps
    option = orjson.OPT_APPEND_NEWLINE
    batch = Batch(out)
    add = batch.add
    count = 0
    try:
        for record in records:
            if unchanged is not None and record is unchanged.record and unchanged.raw:
                raw = unchanged.raw
                if raw[:1] == b"{" and raw[-1:] == b"}":
                    add(raw)
                else:
                    add(raw.strip(_JSON_WHITE_SPACE))
                add(b"\n")
            else:
                try:
                    add(dumps(record, option=option))
                except TypeError:
                    add(dump_json(record))  # the exact path, or a DataError
                    add(b"\n")
            count += 1
            if batch.full():
                batch.flush()
    except BaseException:
        # The records before the failure still go out, unless the output itself failed.
        try:
            batch.flush()
            out.flush()
        except (OSError, OutputError):
            pass
        raise
    batch.flush()
    out.flush()
    return count


class Writable(Protocol):
    """Where a Batch goes: stdout, a file, an AtomicFile."""

    def write(self, data: Any, /) -> Any: ...


class Batch:
    """Bytes gathered for one write to OUT, in one buffer that keeps its size from one write
    to the next. A bytearray frees its buffer when cleared, and growing it again past malloc's
    mmap threshold costs a system call per step (thousands per second); a list of orjson's
    results would keep orjson's spare capacity with each."""

    __slots__ = ("add", "buffer", "out")

    def __init__(self, out: Writable) -> None:
        self.out = out
        self.buffer = io.BytesIO()
        self.add = self.buffer.write

    def full(self) -> bool:
        return self.buffer.tell() >= WRITE_BATCH_BYTES

    def flush(self) -> None:
        """Write what was added, and start again at the buffer's beginning (overwriting)."""
        buffer = self.buffer
        size = buffer.tell()
        if size:
            with buffer.getbuffer() as whole, whole[:size] as written:
                self.out.write(written)
            buffer.seek(0)


class SideFile:
    """A file for the records a command sets aside (--rejects, --dups, --unmatched), as NDJSON.

    Opened when the stage starts (after the whole command line has been checked), written under
    a temporary name and renamed into place when the run succeeds (see ndpipe.output).
    """

    def __init__(self, path: str, option: str) -> None:
        self.path = path
        self.option = option
        self.file = AtomicFile(path, f"{option} {path}")

    def write(self, record: Record) -> None:
        try:
            line = codec.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError as error:
            raise DataError(f"cannot write a record to {self.option} as JSON: {error}") from None
        self.file.write(line)

    def close(self) -> None:
        """Nothing to do: the run commits the file when it succeeds and removes it if not."""
