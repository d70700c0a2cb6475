"""sort: order records by JMESPath keys in bounded memory (an external merge sort).

Records are serialised (orjson) into a buffer together with their sort keys. When the buffer
holds about `buffer_size` bytes it is sorted and written to a temporary file as a run; at the
end the runs, plus the last buffer still in memory, are merged k ways with heapq.merge. Input
that fits in the buffer never touches the disk. More than MAX_FAN_IN runs are first merged in
groups, so the number of open files stays bounded. The temporary directory is removed when the
sort ends, fails, or is interrupted.

Order of values, ascending: false, true, numbers (by value), strings (by code point, which is
UTF-8 byte order), arrays, objects (arrays and objects by their JSON text with sorted keys), and
last null and missing, which are equal. This is jq's order except that null sorts last, as SQL's
NULLS LAST. `descending` reverses the order of everything except null and missing, which stay
last. The sort is stable in both directions: records with equal keys keep their input order.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import Any, BinaryIO

import orjson

from ndpipe import codec, output
from ndpipe.errors import OutputError, RecordError
from ndpipe.expr import EvaluationError, Expression
from ndpipe.io import ErrorPolicy, Record, Records, feed

DEFAULT_BUFFER_SIZE = 64 * 1000 * 1000
# Runs merged at once; more are merged in groups first, so open files stay few.
MAX_FAN_IN = 64
# Bytes a buffered entry costs beyond its serialised record and key strings: the tuple, the
# bytes object, the key list and its small objects (measured on CPython 3.11, rounded up).
ENTRY_OVERHEAD = 240
RUN_WRITE_BUFFER = 1024 * 1024
RUN_READ_BUFFER = 64 * 1024

# Ranks of value kinds (ascending); null and missing take NULL_LAST_ASCENDING, or
# NULL_LAST_DESCENDING when the whole key is compared in reverse, so they end up last either way.
_BOOLEAN, _NUMBER, _STRING, _ARRAY, _OBJECT = range(5)
NULL_LAST_ASCENDING = 9
NULL_LAST_DESCENDING = -1

Key = list[Any]
Entry = tuple[Key, bytes]


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


def _composite(value: Any) -> str:
    try:
        return codec.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError as error:
        raise RecordError(f"cannot use the key as JSON: {error}") from None


class KeyMaker:
    """Turns a record into a flat list [rank, value, rank, value, ...] that compares natively.

    Lists (not tuples) because the keys are read back from run files as JSON and must compare
    with the in-memory ones.
    """

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


def _key_bytes(key: Key) -> int:
    return sum(len(part) for part in key if type(part) is str)


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
        """Write entries (already in order) as a run: a key line, then the record line."""
        path = self._new_path()
        dumps = codec.dumps
        try:
            with open(path, "wb", buffering=RUN_WRITE_BUFFER) as out:
                write = out.write
                for key, line in entries:
                    write(dumps(key))
                    write(b"\n")
                    write(line)
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


def read_run(path: str) -> Iterator[Entry]:
    """The entries of a run file, in order; the file is removed once read to the end."""
    loads = codec.loads
    with open(path, "rb", buffering=RUN_READ_BUFFER) as stream:
        lines: BinaryIO = stream
        # Each entry is two lines; zip over the same iterator pairs them up.
        for key_line, record_line in zip(lines, lines, strict=False):
            yield loads(key_line), record_line
    os.unlink(path)


class ExternalSorter:
    """Collects records, spilling sorted runs to disk, then yields them all in order."""

    def __init__(
        self,
        keys: Sequence[Expression],
        *,
        descending: bool = False,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        temp_dir: str | None = None,
        fan_in: int = MAX_FAN_IN,
        progress: Callable[[SortProgress], None] | None = None,
    ) -> None:
        self.key = KeyMaker(keys, descending)
        self.progress = progress
        self.descending = descending
        self.buffer_size = buffer_size
        self.fan_in = max(2, fan_in)
        self.buffer: list[Entry] = []
        self.buffered = 0
        self.runs = _Runs(temp_dir)
        self.run_paths: list[str] = []

    def add(self, record: Record) -> None:
        key = self.key(record)  # first: a key that fails leaves nothing half added
        line = serialise(record)
        self.buffer.append((key, line))
        self.buffered += len(line) + _key_bytes(key) + ENTRY_OVERHEAD
        if self.buffered >= self.buffer_size:
            self._spill()

    def _sorted_buffer(self) -> list[Entry]:
        # list.sort is stable, also with reverse=True: equal keys keep their input order.
        self.buffer.sort(key=itemgetter(0), reverse=self.descending)
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

    def _merge(self, sources: Sequence[Iterable[Entry]]) -> Iterator[Entry]:
        # heapq.merge breaks ties by the position of the source, and sources are in input
        # order, so the merge keeps the sort stable.
        return heapq.merge(*sources, key=itemgetter(0), reverse=self.descending)

    def _reduce_runs(self) -> None:
        """Merge runs in consecutive groups until one more source fits in a final merge."""
        while len(self.run_paths) >= self.fan_in:
            merged: list[str] = []
            paths = iter(self.run_paths)
            while group := list(islice(paths, self.fan_in)):
                if len(group) == 1:
                    merged.append(group[0])
                else:
                    merged.append(self.runs.write(self._merge([read_run(p) for p in group])))
            self.run_paths = merged

    def results(self) -> Records:
        """Every record added, in order. Call once, after the last add."""
        loads = codec.loads
        if not self.run_paths:
            for _, line in self._sorted_buffer():
                yield loads(line)
            return
        last = self._sorted_buffer()
        self._tell("merge", len(self.run_paths) + (1 if last else 0))
        self._reduce_runs()
        sources: list[Iterable[Entry]] = [read_run(path) for path in self.run_paths]
        sources.append(last)
        for _, line in self._merge(sources):
            yield loads(line)

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
) -> Records:
    """Yield the records ordered by `keys` (see the module docstring for the order of values).

    A record whose key cannot be computed is a RecordError, which `policy` may skip.
    `progress`, if given, is told when the sort first spills to disk and when it merges.
    """
    sorter = ExternalSorter(
        keys,
        descending=descending,
        buffer_size=buffer_size,
        temp_dir=temp_dir,
        progress=progress,
    )
    try:
        feed(records, sorter.add, policy)
        yield from sorter.results()
    finally:
        sorter.close()
