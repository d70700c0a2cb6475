"""sort: order records by JMESPath keys in bounded memory (an external merge sort).

Each record is held as one line of JSON with its sort key and its input position. When the
buffer holds about `buffer_size` bytes it is sorted and written to a temporary file as a run; at
the end the runs, plus the last buffer still in memory, are merged. Input that fits in the buffer
never touches the disk. More than MAX_FAN_IN runs are first merged in groups, so the number of
open files stays bounded. The temporary directory is removed when the sort ends, fails, or is
interrupted.

When the records come straight from the reader (every stage before sort passes them on
untouched), the line held is the input line itself, never encoded again: as sort yields a record
it points the reader's position back at that line and its number, so the writer copies the line
and an error in a later stage names the record's own input line. The record handed on is the one
sort received when that is small (a reader that decodes only the fields the pipeline reads makes
such records), else the line decoded again. Records that an earlier stage built are serialised
as the line, and decoded again when they come out.

Keys are bytes whose byte order is the order of the keys (KeyEncoder), made unique by the
record's place in the input: sorting and merging compare them in C, and a merge that takes its
runs a block at a time (merge_blocks) is still stable. Runs are blocks of entries in marshal's
format, written and read in C.

Order of values, ascending: false, true, numbers (by value), strings (by code point, which is
UTF-8 byte order), arrays, objects (arrays and objects by their JSON text with sorted keys), and
last null and missing, which are equal. This is jq's order except that null sorts last, as SQL's
NULLS LAST. `descending` reverses the order of everything except null and missing, which stay
last. The sort is stable in both directions: records with equal keys keep their input order.
"""

from __future__ import annotations

import marshal
import os
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, islice
from operator import itemgetter
from sys import getsizeof
from typing import Any

import orjson

from ndpipe import codec, output
from ndpipe.errors import OutputError, RecordError
from ndpipe.expr import EvaluationError, Expression
from ndpipe.io import ErrorPolicy, Position, Record, Records, decode_error, feed

DEFAULT_BUFFER_SIZE = 64 * 1000 * 1000
# Runs merged at once; more are merged in groups first, so open files stay few.
MAX_FAN_IN = 64
# Bytes a buffered entry costs beyond its line and its key: the tuple, the bytes objects, the
# input position and the list's slot (measured on CPython 3.11 at about 200, rounded up).
ENTRY_OVERHEAD = 240
# A record received with at most this many top-level fields, all of them scalars, may be kept
# beside its line (see `retained`).
RETAINED_FIELDS = 8
# At least sys.getsizeof of a dict of up to RETAINED_FIELDS fields (CPython 3.11: 184 to 352).
SMALL_DICT_BYTES = 360
RUN_WRITE_BUFFER = 1024 * 1024
# Run files are written and read, and the buffer still in memory merged, in blocks of about
# this many bytes of lines (about 80 users).
RUN_BLOCK_BYTES = 64 * 1024
# Entries of a merge are written to a run in batches of this many (then in blocks as above).
MERGE_BLOCK = 1024

# Ranks of value kinds (ascending), the first byte of each part of a key; null and missing take
# NULL_LAST_ASCENDING, or NULL_LAST_DESCENDING when the whole key is compared in reverse, so they
# end up last either way.
_BOOLEAN, _NUMBER, _STRING, _ARRAY, _OBJECT = range(1, 6)
NULL_LAST_ASCENDING = 9
NULL_LAST_DESCENDING = 0

# A key as KeyMaker gives it: [rank, value, rank, value, ...] (diff's form).
Key = list[Any]
# A buffered record: its sort key (bytes for sort, see KeyEncoder), its input position (line or
# record number; 0 when sort is not given the reader's position), its JSON line without a line
# end, and the record itself when it is kept (see `retained`), else None: the line is decoded
# again when it comes out.
Entry = tuple[Any, int, bytes, Record | None]


@dataclass(frozen=True)
class SortProgress:
    """What the sort is doing on disk, for a progress callback: `spill` when the first run is
    written (to `directory`, because the input outgrew `buffer_size`), `merge` when `runs`
    sorted runs (the last one still in memory included) are about to be merged."""

    event: str
    directory: str
    buffer_size: int
    runs: int


def compact(data: bytes) -> bytes:
    """A copy of orjson's output that owns only its own bytes.

    A bytes object from orjson.dumps keeps the whole buffer orjson grew while writing (about
    8 KB for a 780-byte user, measured with orjson 3.13), so buffering them as they are would
    cost ten times the memory the bound assumes.
    """
    return memoryview(data).tobytes()


def serialise(record: Record) -> bytes:
    """The record as one compact NDJSON line (numbers exact), or a RecordError if it is not JSON."""
    try:
        return compact(codec.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
    except TypeError as error:
        raise RecordError(f"cannot serialise the record as JSON: {error}") from None


def encoded(record: Record) -> bytes:
    """The record as compact JSON without a line end (numbers exact), or a RecordError."""
    try:
        return compact(codec.dumps(record))
    except TypeError as error:
        raise RecordError(f"cannot serialise the record as JSON: {error}") from None


def line_of(record: Record, position: Position) -> bytes:
    """The record's input line when the reader has just yielded it (and kept the line), else
    the record encoded: what a stage that holds records keeps, to give it out again as read."""
    raw = position.raw
    if record is position.record and raw:
        return raw if type(raw) is bytes else bytes(raw)  # never a view that pins a block
    return encoded(record)


def retained(record: Record, line: bytes) -> int:
    """What keeping `record` beside its line costs in bytes, or -1 when it is not worth keeping.

    A record with a few fields (as a reader that decodes only the fields a pipeline reads makes
    them) that costs less to keep than its line spares decoding the line again; a whole record
    costs several times its line, so it is decoded again instead. Either way the stages that
    follow get what they read: the record as the reader gave it, or all of it. The cost is
    counted without sys.getsizeof where the size is known (it is slow): at most 360 bytes for a
    dict of up to 8 fields, a string's header and characters, 32 bytes for other scalars.
    """
    budget = len(line)
    size = SMALL_DICT_BYTES
    for value in record.values():
        kind = type(value)
        if kind is str:
            size += 49 + len(value) if value.isascii() else 80 + 4 * len(value)
        elif kind is dict or kind is list:
            size += _deep_size(value, budget - size)
        elif kind is int:
            size += getsizeof(value)
        else:
            size += 32
    return size if size < budget else -1


def _deep_size(value: Any, budget: int) -> int:
    """The bytes `value` and everything in it take, or more than `budget` once it is known
    to exceed it (the walk stops there)."""
    size = 0
    pending = [value]
    while pending:
        item = pending.pop()
        size += getsizeof(item)
        if size > budget:
            return size
        kind = type(item)
        if kind is dict:
            pending += item.keys()
            pending += item.values()
        elif kind is list:
            pending += item
    return size


def give_back(entries: Iterable[Entry], position: Position) -> Records:
    """The records of entries that hold input lines, each yielded with the reader's position
    pointed back at it (its line and number), so the writer copies the line and errors name it.
    """
    decode = codec.decode
    for _, number, line, record in entries:
        position.number = number
        position.raw = line
        if record is None:
            try:
                record = decode(line)
            except codec.DECODE_ERRORS as error:  # it decoded once: only a different reader
                bad = decode_error(line, error)
                bad.where = str(position)
                raise bad from None
        position.record = record
        yield record


def _composite(value: Any) -> str:
    try:
        return codec.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError as error:
        raise RecordError(f"cannot use the key as JSON: {error}") from None


class KeyMaker:
    """Turns a record into a flat list [rank, value, rank, value, ...] that compares natively
    (diff's keys, which it takes apart)."""

    def __init__(self, keys: Sequence[Expression], descending: bool) -> None:
        self.keys = list(keys)
        self.null_rank = NULL_LAST_DESCENDING if descending else NULL_LAST_ASCENDING

    def __call__(self, record: Record) -> Key:
        key: Key = []
        for expression in self.keys:
            try:
                value = expression.search(record)
            except EvaluationError as error:
                raise expression.failed(error) from None
            kind = type(value)
            if value is None:
                key += (self.null_rank, 0)
            elif kind is bool:
                key += (_BOOLEAN, int(value))
            elif kind is int or kind is float:
                key += (_NUMBER, value)
            elif kind is str:
                key += (_STRING, value)
            elif kind is list:
                key += (_ARRAY, _composite(value))
            else:
                key += (_OBJECT, _composite(value))
        return key


# Numbers in a key: a sign class, then for a number other than zero its binary exponent and the
# bits of its mantissa after the leading one (see _number_bytes).
_NEGATIVE, _ZERO, _POSITIVE = b"\x01", b"\x02", b"\x03"
_EXPONENT_BIAS = 1 << 31
_INVERTED = bytes(range(255, -1, -1))
_INFINITY = b"\xff\xff\xff\xff\x00"
_NOT_A_NUMBER = b"\xff\xff\xff\xff\x02"
_PLUS_INFINITY = float("inf")
# In a string followed by more parts: a NUL byte is escaped, and two NULs end the string.
_STRING_END = b"\x00\x00"


def _number_bytes(value: int | float) -> bytes:
    """A number as bytes that compare (as bytes) in the order of the numbers' values, exactly:
    integers of any size and floats alike, so 1 and 1.0 give the same bytes.

    A number other than zero is m * 2**e with m odd, exactly (floats are dyadic rationals); it
    is written as its exponent floor(log2 |x|) (4 bytes, biased, big-endian), then the bits of
    m after its leading one, 7 to a byte, each byte's lowest bit saying whether another follows.
    That code is prefix-free and, byte by byte, orders mantissas by value; a negative number is
    its absolute value's bytes inverted, which reverses their order.
    """
    if value == 0:
        return _ZERO
    if type(value) is float:
        if value != value:
            return _POSITIVE + _NOT_A_NUMBER
        if value in (_PLUS_INFINITY, -_PLUS_INFINITY):
            if value > 0:
                return _POSITIVE + _INFINITY
            return _NEGATIVE + _INFINITY.translate(_INVERTED)
        numerator, denominator = value.as_integer_ratio()
        exponent = 1 - denominator.bit_length()
    else:
        numerator, exponent = int(value), 0
    negative = numerator < 0
    mantissa = -numerator if negative else numerator
    zeros = (mantissa & -mantissa).bit_length() - 1
    mantissa >>= zeros
    exponent += zeros
    width = mantissa.bit_length() - 1  # the bits after the leading one
    body = (exponent + width + _EXPONENT_BIAS).to_bytes(4, "big")
    if width == 0:
        body += b"\x00"
    else:
        groups = -(-width // 7)
        fraction = (mantissa - (1 << width)) << (groups * 7 - width)
        digits = bytearray(groups)
        for index in range(groups):
            digits[index] = (((fraction >> (7 * (groups - 1 - index))) & 0x7F) << 1) | 1
        digits[-1] &= 0xFE
        body += digits
    if negative:
        return _NEGATIVE + body.translate(_INVERTED)
    return _POSITIVE + body


class KeyEncoder:
    """Turns a record into one bytes object whose byte order is the documented order of keys,
    made unique by the record's place in the input: every sort and merge compares these in C
    (several times faster than lists of mixed values), and ties never occur, so any merge of
    sorted runs is stable.

    Each key part is its rank byte, then: nothing for null and missing; 0 or 1 for false and
    true; a number as _number_bytes; a string as UTF-8 (code point order is UTF-8 byte order),
    and an array or object as its JSON text with sorted keys, likewise, with NUL bytes escaped
    and two NULs at the end, so no part runs into the next. Descending keys are inverted byte
    by byte (the parts are prefix-free, so that reverses their order; null and missing take the
    rank that ends up last). Then 8 bytes of the running count.
    """

    def __init__(self, keys: Sequence[Expression], descending: bool) -> None:
        self.keys = list(keys)
        self.descending = descending
        self.null = bytes([NULL_LAST_DESCENDING if descending else NULL_LAST_ASCENDING])
        self.single = self.keys[0] if len(self.keys) == 1 and not descending else None
        self.count = 0

    def __call__(self, record: Record) -> bytes:
        self.count += 1
        return self.encode(record, self.count)

    def encode(self, record: Record, count: int) -> bytes:
        """The key of `record`, the `count`-th record added (counts must increase)."""
        single = self.single
        if single is not None:
            try:
                value = single.search(record)
            except EvaluationError as error:
                raise single.failed(error) from None
            if type(value) is str:  # the common case, inline
                text = value.encode("utf-8", "surrogatepass").replace(b"\x00", b"\x00\xff")
                key = b"\x03" + text + b"\x00\x00" + count.to_bytes(8, "big")
            else:
                key = self._part(value) + count.to_bytes(8, "big")
        else:
            parts = []
            for expression in self.keys:
                try:
                    value = expression.search(record)
                except EvaluationError as error:
                    raise expression.failed(error) from None
                parts.append(self._part(value))
            key = b"".join(parts)
            if self.descending:
                key = key.translate(_INVERTED)
            key += count.to_bytes(8, "big")
        return key

    def _part(self, value: Any) -> bytes:
        kind = type(value)
        if kind is str:
            return b"\x03" + _ended(value.encode("utf-8", "surrogatepass"))
        if value is None:
            return self.null
        if kind is bool:
            return b"\x01\x01" if value else b"\x01\x00"
        if kind is int or kind is float:
            return b"\x02" + _number_bytes(value)
        try:
            text = codec.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError as error:
            raise RecordError(f"cannot use the key as JSON: {error}") from None
        return (b"\x04" if kind is list else b"\x05") + _ended(text)


def _ended(text: bytes) -> bytes:
    return text.replace(b"\x00", b"\x00\xff") + _STRING_END


class _Runs:
    """Sorted runs in a temporary directory, created on first use and always removed."""

    def __init__(self, temp_dir: str | None) -> None:
        self.parent = temp_dir
        self.directory: str | None = None
        self.paths: list[str] = []
        self.count = 0

    def _new_path(self) -> str:
        if self.directory is None:
            # Removed by close(), and by the CLI on any error, Ctrl-C or SIGTERM.
            self.directory = output.scratch_directory("ndpipe-sort-", self.parent)
        self.count += 1
        return os.path.join(self.directory, f"run-{self.count:06d}")

    def write(self, entries: Iterable[Entry]) -> str:
        """Write entries (already in order) as a run: blocks of about RUN_BLOCK_BYTES, each its
        length (8 bytes) and the list of its entries in marshal's format. marshal writes and
        reads keys, lines and kept records in C, exactly (integers of any size, floats to the
        bit, key order), and the file is read back by this same process only. Version 2: no
        references between objects, which makes it about twice as fast."""
        path = self._new_path()
        dumps = marshal.dumps
        try:
            with open(path, "wb", buffering=RUN_WRITE_BUFFER) as out:
                for block in _sized_blocks(entries):
                    data = dumps(block, 2)
                    out.write(len(data).to_bytes(8, "little"))
                    out.write(data)
        except OSError as error:
            raise OutputError(
                f"cannot write sort's temporary files in {os.path.dirname(path)}: "
                f"{error.strerror} (use --temp-dir for a place with more space)"
            ) from None
        return path

    def close(self) -> None:
        if self.directory is not None:
            output.remove_scratch(self.directory)
            self.directory = None


def read_run(path: str) -> Iterator[list[Entry]]:
    """The entries of a run file in order, in blocks; the file is removed once read to the end."""
    loads = marshal.loads
    with open(path, "rb", buffering=0) as stream:
        read = stream.read
        while head := read(8):
            yield loads(read(int.from_bytes(head, "little")))
    os.unlink(path)


def _sized_blocks(entries: Iterable[Entry]) -> Iterator[list[Entry]]:
    """Entries in blocks of about RUN_BLOCK_BYTES of lines (at least one entry each)."""
    if not isinstance(entries, list):
        for block in _batched(entries, MERGE_BLOCK):
            yield from _sized_blocks(block)
        return
    # Where each block ends, found in C: the running total of the lines' sizes, bisected.
    ends = list(accumulate(map(len, map(itemgetter(2), entries))))
    start = 0
    while start < len(entries):
        base = ends[start - 1] if start else 0
        stop = max(start + 1, bisect_right(ends, base + RUN_BLOCK_BYTES))
        yield entries[start:stop]
        start = stop


def _batched(entries: Iterable[Entry], size: int) -> Iterator[list[Entry]]:
    iterator = iter(entries)
    while block := list(islice(iterator, size)):
        yield block


def merge_blocks(sources: Sequence[Iterator[list[Entry]]]) -> Iterator[list[Entry]]:
    """Merge sorted sources, each given in blocks, into sorted blocks; keys must be unique.

    Each round takes, from every source's current block, the entries up to the smallest of
    the blocks' last keys (nothing later can come before them) and sorts them together: list.sort
    merges the sorted pieces in C. Unique keys make the result the same whatever the blocks.
    """
    first = itemgetter(0)
    current: list[tuple[list[Entry], Iterator[list[Entry]]]] = []
    for source in sources:
        block = next(source, None)
        if block:
            current.append((block, source))
    while len(current) > 1:
        frontier = min(block[-1][0] for block, _ in current)
        pool: list[Entry] = []
        refilled = []
        for block, source in current:
            cut = bisect_right(block, frontier, key=first)
            if cut < len(block):
                pool += block[:cut]
                refilled.append((block[cut:], source))
                continue
            pool += block
            following = next(source, None)
            if following:
                refilled.append((following, source))
        current = refilled
        pool.sort(key=first)
        yield pool
    for block, source in current:
        yield block
        yield from source


class ExternalSorter:
    """Collects records, spilling sorted runs to disk, then yields them all in order.

    With `position` (the reader's, given when every stage before passes records on untouched)
    it keeps each record's input line and yields each record with the position pointed back at
    it (see the module docstring); without it, it keeps the records encoded.
    """

    def __init__(
        self,
        keys: Sequence[Expression],
        *,
        descending: bool = False,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        temp_dir: str | None = None,
        fan_in: int = MAX_FAN_IN,
        progress: Callable[[SortProgress], None] | None = None,
        position: Position | None = None,
    ) -> None:
        self.key: Callable[[Record], Any] = KeyEncoder(keys, descending)
        self.progress = progress
        self.buffer_size = buffer_size
        self.fan_in = max(2, fan_in)
        self.position = position
        self.buffer: list[Entry] = []
        self.buffered = 0
        self.runs = _Runs(temp_dir)
        self.run_paths: list[str] = []

    def key_size(self, key: Any) -> int:
        """What a key costs in memory beyond the entry overhead."""
        return len(key)

    def add(self, record: Record) -> None:
        key = self.key(record)  # first: a key that fails leaves nothing half added
        position = self.position
        if position is None:
            line = encoded(record)
            self.buffer.append((key, 0, line, None))
            self.buffered += len(line) + self.key_size(key) + ENTRY_OVERHEAD
        else:
            raw = position.raw
            if record is position.record and raw:
                line = raw if type(raw) is bytes else bytes(raw)  # never a view of a block
            else:
                line = encoded(record)
            kept = retained(record, line) if len(record) <= RETAINED_FIELDS else -1
            if kept < 0:
                self.buffer.append((key, position.number, line, None))
                self.buffered += len(line) + self.key_size(key) + ENTRY_OVERHEAD
            else:
                self.buffer.append((key, position.number, line, record))
                self.buffered += len(line) + self.key_size(key) + ENTRY_OVERHEAD + kept
        if self.buffered >= self.buffer_size:
            self._spill()

    def add_all(self, records: Iterable[Record], policy: ErrorPolicy | None) -> None:
        """`add` every record (the same, in one loop: this is where sort spends its time); a
        RecordError goes to the policy (which raises it unless skipping), or is raised."""
        position = self.position
        key_of = self.key
        if position is None or not isinstance(key_of, KeyEncoder):
            feed(records, self.add, policy)
            return
        encode = key_of.encode
        single = key_of.single
        count = key_of.count
        limit = self.buffer_size
        buffered = self.buffered
        append = self.buffer.append
        for record in records:
            count += 1
            try:
                try:
                    if single is not None and type(value := single.search(record)) is str:
                        # The common key, inline (as KeyEncoder.encode writes it).
                        text = value.encode("utf-8", "surrogatepass").replace(b"\x00", b"\x00\xff")
                        key = b"\x03" + text + b"\x00\x00" + count.to_bytes(8, "big")
                    else:
                        key = encode(record, count)
                except EvaluationError as error:
                    raise (single or key_of.keys[0]).failed(error) from None
                raw = position.raw
                if record is position.record and raw:
                    line = raw if type(raw) is bytes else bytes(raw)  # never a view of a block
                else:
                    line = encoded(record)
            except RecordError as error:
                if policy is None:
                    raise
                policy.bad_record(error)
                continue
            if len(record) <= RETAINED_FIELDS and (kept := retained(record, line)) >= 0:
                append((key, position.number, line, record))
                buffered += len(line) + len(key) + ENTRY_OVERHEAD + kept
            else:
                append((key, position.number, line, None))
                buffered += len(line) + len(key) + ENTRY_OVERHEAD
            if buffered >= limit:
                self._spill()
                buffered = 0
                append = self.buffer.append
        key_of.count = count
        self.buffered = buffered

    def _sorted_buffer(self) -> list[Entry]:
        # Keys are unique, so the order is the same whatever the merge does later.
        self.buffer.sort(key=itemgetter(0))
        entries, self.buffer, self.buffered = self.buffer, [], 0
        return entries

    def _spill(self) -> None:
        self.run_paths.append(self.runs.write(self._sorted_buffer()))
        if self.runs.count == 1:
            self._tell("spill", 1)

    def _tell(self, event: str, runs: int) -> None:
        if self.progress is not None:
            directory = self.runs.directory or ""
            self.progress(SortProgress(event, directory, self.buffer_size, runs))

    def _reduce_runs(self) -> None:
        """Merge runs in consecutive groups until one more source fits in a final merge."""
        while len(self.run_paths) >= self.fan_in:
            merged: list[str] = []
            paths = iter(self.run_paths)
            while group := list(islice(paths, self.fan_in)):
                if len(group) == 1:
                    merged.append(group[0])
                else:
                    blocks = merge_blocks([read_run(path) for path in group])
                    merged.append(self.runs.write(chain.from_iterable(blocks)))
            self.run_paths = merged

    def entries(self) -> Iterator[Entry]:
        """Every entry added, in order. Call once, after the last add."""
        if not self.run_paths:
            return iter(self._sorted_buffer())
        last = self._sorted_buffer()
        self._tell("merge", len(self.run_paths) + (1 if last else 0))
        self._reduce_runs()
        sources = [read_run(path) for path in self.run_paths]
        sources.append(_sized_blocks(last))
        return chain.from_iterable(merge_blocks(sources))

    def results(self) -> Records:
        """Every record added, in order. Call once, after the last add."""
        entries = self.entries()
        if self.position is not None:
            yield from give_back(entries, self.position)
            return
        decode = codec.decode
        for entry in entries:
            yield decode(entry[2])

    def close(self) -> None:
        self.buffer = []
        self.runs.close()


def sort(
    records: Iterable[Record],
    *,
    keys: Sequence[Expression],
    descending: bool = False,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    temp_dir: str | None = None,
    policy: ErrorPolicy | None = None,
    progress: Callable[[SortProgress], None] | None = None,
    position: Position | None = None,
) -> Records:
    """Yield the records ordered by `keys` (see the module docstring for the order of values).

    A record whose key cannot be computed is a RecordError, which `policy` may skip.
    `progress`, if given, is told when the sort first spills to disk and when it merges.
    `position` is the reader's, given only when every stage before passes records on untouched:
    the sort then keeps input lines and gives them back (see the module docstring).
    """
    sorter = ExternalSorter(
        keys,
        descending=descending,
        buffer_size=buffer_size,
        temp_dir=temp_dir,
        progress=progress,
        position=position,
    )
    try:
        sorter.add_all(records, policy)
        yield from sorter.results()
    finally:
        sorter.close()
