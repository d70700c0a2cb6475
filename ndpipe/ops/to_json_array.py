"""to-json-array: records as one JSON array, or as numbered files of bounded size.

The array is written one record per line, so it diffs and greps like NDJSON:

    [
    {"email":"a@example.com"},
    {"email":"b@example.com"}
    ]

No input gives `[]`. Every file ends with a newline. A file holding records of s1 ... sn bytes
(compact JSON, as orjson writes them) is exactly s1 + ... + sn + 2n + 3 bytes: "[\\n", a ",\\n"
between records, and "\\n]\\n". Nothing is held in memory but the current write batch.
"""

from __future__ import annotations

import contextlib
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

from ndpipe.errors import DataError, OutputError, UsageError
from ndpipe.io import Batch, Encoder, Record, dump_json
from ndpipe.output import AtomicFile

# The array framing is Auth0's import format's (`import --out` writes what to-json-array
# writes); Auth0 takes requests of up to 512,000 bytes, 500,000 leaves room for the multipart
# framing (AUTH0.md 2.2).
from ndpipe.services.auth0.import_format import CLOSE, EMPTY, FRAME, OPEN, SEPARATOR
from ndpipe.services.auth0.import_format import MAX_BYTES as AUTH0_MAX_BYTES

__all__ = ["AUTH0_MAX_BYTES", "CLOSE", "EMPTY", "FRAME", "OPEN", "SEPARATOR"]
# How many file numbers a pattern is checked for giving distinct names before any is written,
# when its format may drop digits (an exponent, a float's precision).
CHECKED_NUMBERS = 100_000
# Format specs that write an integer with all its digits: fill, alignment, sign, width,
# grouping, and a decimal, hex, octal or binary presentation.
_WHOLE_INTEGER = re.compile(r"(?:.?[<>=^])?[+\- ]?#?0?[0-9]*[,_]?[dxXob]?")

_SIZE = re.compile(r"\s*([0-9]+)\s*([A-Za-z]*)\s*")
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def array_size(record_sizes: Iterable[int]) -> int:
    """The exact size of the file that holds records of these serialised sizes."""
    total = 0
    count = 0
    for size in record_sizes:
        total += size
        count += 1
    return len(EMPTY) if count == 0 else total + len(SEPARATOR) * (count - 1) + FRAME


def parse_size(text: str) -> int:
    """A byte count: 500000, 500k or 500KB (x1000), 488KiB (x1024), 10MB, 1GiB."""
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise UsageError(f"bad size {text!r}: give bytes, e.g. 500000, 500KB or 488KiB")
    return int(match.group(1)) * _UNITS[unit]


class OutputPattern:
    """A file name with `{n}` (optionally `{n:04d}`) standing for the file number, from 1."""

    def __init__(self, text: str) -> None:
        if not text:
            raise UsageError("empty --out pattern")
        try:
            fields = list(string.Formatter().parse(text))
        except ValueError as error:
            raise UsageError(
                f"bad --out pattern {text!r}: {error} (write a brace as {{{{)"
            ) from None
        self.numbered = False
        exact = True  # every {n} is written with all its digits ({n}, {n:04d}, {n:x})
        for _, name, spec, conversion in fields:
            if name is None:
                continue
            if name != "n" or conversion:
                raise UsageError(
                    f"bad --out pattern {text!r}: only {{n}} or {{n:FORMAT}} may stand in braces "
                    f"(write a brace as {{{{)"
                )
            try:
                format(1, spec or "")
            except ValueError as error:
                raise UsageError(f"bad --out pattern {text!r}: {{n:{spec}}}: {error}") from None
            self.numbered = True
            exact = exact and _WHOLE_INTEGER.fullmatch(spec or "") is not None
        self.text = text
        if self.numbered and not exact:
            self._check_distinct()

    def _check_distinct(self) -> None:
        """Refuse a format that gives two file numbers one name ({n:.0e}: 11 and 12 are 1e+01)."""
        seen: dict[str, int] = {}
        for number in range(1, CHECKED_NUMBERS + 1):
            name = self.path(number)
            if name in seen:
                raise UsageError(f"bad --out pattern {self.collision(name, seen[name], number)}")
            seen[name] = number

    def collision(self, name: str, first: int, second: int) -> str:
        return (
            f"{self.text!r}: files {first} and {second} would both be {name}; use a format "
            "that numbers every file apart, such as {n:04d}"
        )

    def path(self, number: int) -> str:
        return self.text.format(n=number)


@dataclass(frozen=True)
class WrittenFile:
    path: str
    records: int
    size: int


def write_json_array(records: Iterable[Record], out: BinaryIO, encode: Encoder = dump_json) -> int:
    """Write one JSON array to `out` in batches; returns the record count.

    `encode` gives a record's JSON (see ndpipe.io.encoder). If the stream fails part-way, the
    array is still closed, so `out` holds a valid array of the records before the failure.
    """
    batch = Batch(out)
    add = batch.add
    count = 0
    try:
        for record in records:
            add(SEPARATOR if count else OPEN)
            add(encode(record))
            count += 1
            if batch.full():
                batch.flush()
    except BaseException:
        add(CLOSE if count else EMPTY)
        with contextlib.suppress(OSError, OutputError):
            batch.flush()
            out.flush()
        raise
    add(CLOSE if count else EMPTY)
    batch.flush()
    out.flush()
    return count


class _ArrayFile:
    """One output file being filled: written in batches under a temporary name, renamed into
    place by `close` when complete (see ndpipe.output), removed by `abort`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file = AtomicFile(path, path, make_directories=True)
        self.records = 0
        self.size = 0  # bytes so far, without the closing bracket
        self.batch = Batch(self.file)

    def size_with(self, record_size: int) -> int:
        """The file's final size if `record_size` more bytes of record were its last record."""
        if self.records == 0:
            return record_size + FRAME
        return self.size + len(SEPARATOR) + record_size + len(CLOSE)

    def add(self, line: bytes) -> None:
        piece = SEPARATOR if self.records else OPEN
        self.batch.add(piece)
        self.batch.add(line)
        self.records += 1
        self.size += len(piece) + len(line)
        if self.batch.full():
            self.batch.flush()

    def close(self) -> WrittenFile:
        ending = CLOSE if self.records else EMPTY
        self.batch.add(ending)
        self.batch.flush()
        self.file.commit()
        total = self.size + len(ending) if self.records else len(EMPTY)
        return WrittenFile(self.path, self.records, total)

    def abort(self) -> None:
        self.file.abort()


def write_json_array_files(
    records: Iterable[Record],
    *,
    pattern: OutputPattern,
    on_file: Callable[[WrittenFile], None],
    max_bytes: int | None = None,
    max_records: int | None = None,
    encode: Encoder = dump_json,
) -> int:
    """Write records to numbered JSON-array files; returns how many were written.

    Without limits everything goes to one file (`[]` when there are no records). With
    `max_bytes` / `max_records`, a new file starts whenever the next record would break a
    limit, so every file holds at least one record and no file is written for no records.
    A record too large for any file is a DataError. On bad input the files hold the records
    before it; on Ctrl-C, SIGTERM or an output failure the file being filled is removed.
    """
    splitting = max_bytes is not None or max_records is not None
    current: _ArrayFile | None = None
    number = 0
    names: dict[str, int] = {}

    def start() -> _ArrayFile:
        path = pattern.path(number)
        if path in names:
            raise OutputError(f"--out {pattern.collision(path, names[path], number)}")
        names[path] = number
        return _ArrayFile(path)

    try:
        for record in records:
            line = encode(record)
            if max_bytes is not None and len(line) + FRAME > max_bytes:
                raise DataError(
                    f"record is {len(line)} bytes as JSON; a file holding only it would be "
                    f"{len(line) + FRAME} bytes, over --max-bytes {max_bytes}, so it was not "
                    f"written"
                )
            if current is not None and (
                (max_bytes is not None and current.size_with(len(line)) > max_bytes)
                or (max_records is not None and current.records >= max_records)
            ):
                written, current = current, None
                on_file(written.close())
            if current is None:
                number += 1
                current = start()
            current.add(line)
        if current is None and not splitting:
            number += 1
            current = start()
        if current is not None:
            written, current = current, None
            on_file(written.close())
    except DataError:
        # Bad input: like stdout, the files hold exactly the records before it, each a valid array.
        if current is not None and current.records:
            on_file(current.close())
        elif current is not None:
            current.abort()
        raise
    except BaseException:
        # Interrupted, or the output failed: the file being filled is not complete, so it goes.
        if current is not None:
            current.abort()
        raise
    return number
