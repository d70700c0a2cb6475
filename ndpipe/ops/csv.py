"""csv: records to RFC 4180 CSV text.

The header is `columns`, or the first record's flattened keys. Nested objects are flattened to
dotted columns (`user_metadata.name`); an array, or an object whose own path is a column, is
written as compact JSON. Booleans are `true`/`false`, null and missing fields are empty cells.
Numbers are written exactly: integers of any length as their digits, floats as the shortest text
that reads back to the same double, and numbers inside JSON cells likewise (ndpipe.codec).

The header is protected against formula injection by csv itself, since no earlier stage sees it:
each title gets escape-csv's default rule (`ndpipe.csvio.header_cell`), so a key such as
`=HYPERLINK(...)` is written `'=HYPERLINK(...)`. `fetch --csv-style auth0` undoes exactly that.
Data cells are written as they come: escaping them is escape-csv's job.

A cell is quoted when it holds the delimiter, a double quote, CR or LF (RFC 4180), or when it
starts with `'`: that is the escaped-cell mark of `escape-csv`, and quoting it gives Auth0's exact
cells (`"'jane@example.com"`). Nothing else is quoted.

Fields that are not in the header are never dropped silently: the values are not written, and
`Dropped` collects how many records had such fields and their names, for the command to report
(or, with `strict`, the first such record is an error).

Speed matters here (millions of rows on the main recipe): a record whose keys are exactly the
columns takes a fast path (one C `itemgetter` call), and cells are joined by hand, which measured
faster than the stdlib's C writer once the conversions it lacks (booleans, JSON, the `'` rule,
CR with an LF line end) are added.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any, BinaryIO

from ndpipe import codec
from ndpipe.csvio import header_cell
from ndpipe.errors import DataError, RecordError
from ndpipe.io import Record
from ndpipe.ops.select import Unset, suggest

# Rows are written in batches of this many lines.
BATCH_LINES = 2048
# How many distinct names of dropped fields are kept for the message.
LISTED_NAMES = 5
UTF8_BOM = "\ufeff"


@dataclass
class Dropped:
    """What did not fit the header: counted while writing, reported when the stream ends."""

    records: int = 0
    names: list[str] = field(default_factory=list)
    more_names: bool = False
    # Columns not (yet) found with a value in any record: a typo in --columns shows up as an
    # empty column. `sample` keeps the key paths of the first records, to suggest the right one.
    unseen: list[str] = field(default_factory=list)
    sample: Unset = field(default_factory=lambda: Unset({}))
    rows: int = 0

    def add(self, names: Iterable[str]) -> None:
        self.records += 1
        for name in names:
            if name in self.names:
                continue
            if len(self.names) < LISTED_NAMES:
                self.names.append(name)
            else:
                self.more_names = True

    def listed(self) -> str:
        return ", ".join(self.names) + (", ..." if self.more_names else "")

    def unseen_message(self) -> str | None:
        """What to say about the --columns columns that no record gave a value, if any."""
        if not (self.rows and self.unseen):
            return None
        every = "the record" if self.rows == 1 else f"all {self.rows} records"
        message = (
            f"no record has the column(s) {', '.join(self.unseen)} "
            f"(missing or null in {every}); left empty"
        )
        hints = [
            f"{intended!r} for {name!r}"
            for name in self.unseen
            if (intended := suggest(name, self.sample.paths)) is not None
        ]
        if hints:
            message += f"; did you mean {', '.join(hints)}?"
        return message


def parse_delimiter(text: str) -> str:
    """One character; `\\t` and `tab` spell a tab. Quotes and line ends cannot delimit."""
    named = {"\\t": "\t", "tab": "\t", "TAB": "\t"}
    delimiter = named.get(text, text)
    if len(delimiter) != 1:
        raise ValueError(f"the delimiter must be one character, got {text!r}")
    if delimiter in '"\r\n':
        raise ValueError(f"{text!r} cannot be the delimiter")
    return delimiter


def parse_columns(texts: Sequence[str]) -> list[str] | None:
    """--columns a,b --columns c: names in order; surrounding spaces are ignored."""
    if not texts:
        return None
    columns = [name.strip() for text in texts for name in text.split(",")]
    if any(not name for name in columns):
        raise ValueError("empty column name in --columns")
    duplicates = sorted({name for name in columns if columns.count(name) > 1})
    if duplicates:
        raise ValueError(f"column named twice in --columns: {', '.join(duplicates)}")
    return columns


def flatten_names(record: Record) -> list[str]:
    """Dotted column names of a record: nested non-empty objects become `parent.child`."""
    names: list[str] = []
    # Depth first with a stack of open objects (not recursion), so the order is the record's.
    stack = [(iter(record.items()), "")]
    while stack:
        items, prefix = stack[-1]
        for key, value in items:
            name = prefix + key
            if type(value) is dict and value:
                stack.append((iter(value.items()), name + "."))
                break
            names.append(name)
        else:
            stack.pop()
    return names


def _text(value: Any) -> str:
    """The cell text of a value that is not a string, exact for numbers of any size."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if kind is dict or kind is list:
        try:
            return codec.dumps(value).decode()
        except TypeError as error:
            raise RecordError(f"cannot write a value as JSON: {error}") from None
        except RecursionError:
            raise RecordError("a value is nested too deeply to write as JSON") from None
    try:
        # str() of an int is all its digits; of a float, the shortest text that reads back.
        return str(value)
    except ValueError as error:  # an integer beyond Python's digit limit for str()
        raise RecordError(f"cannot write a number: {error}") from None


def quoter(delimiter: str) -> Callable[[str], str]:
    """The cell-quoting function for a delimiter (see the module docstring for the rule)."""
    needs_quotes = re.compile("[" + re.escape(delimiter) + '"\r\n]').search

    def quote(text: str) -> str:
        if text[:1] == "'" or needs_quotes(text):
            return '"' + text.replace('"', '""') + '"'
        return text

    return quote


class _Flattener:
    """Maps a record onto the header's columns, noting the fields that have no column."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = frozenset(columns)
        # Every proper dotted prefix of a column (`a` and `a.b` for `a.b.c`). Prefixes are found
        # from the longest down, stopping at one already known (its own prefixes are then known
        # too), so deep columns that share their parents cost their length, not its square.
        parents: set[str] = set()
        for name in columns:
            end = name.rfind(".")
            while end >= 0:
                prefix = name[:end]
                if prefix in parents:
                    break
                parents.add(prefix)
                end = name.rfind(".", 0, end)
        self.parents = frozenset(parents)

    def walk(self, record: Record, row: Record, extra: list[str]) -> None:
        """Fill `row` (column -> value) from `record`; names without a column go to `extra`."""
        columns, parents = self.columns, self.parents
        # Depth first with a stack of open objects (not recursion), in the record's order. Each
        # entry carries the list its unplaced names go to.
        stack: list[tuple[Iterator[tuple[str, Any]], str, list[str]]] = [
            (iter(record.items()), "", extra)
        ]
        while stack:
            items, prefix, unplaced = stack[-1]
            for key, item in items:
                name = prefix + key
                if name in columns:
                    if name in row:
                        raise RecordError(f"two fields would both fill the column {name!r}")
                    row[name] = item
                    if type(item) is dict and name in parents:
                        # Both `a` and `a.b` are columns; a's other fields are in a's JSON cell.
                        stack.append((iter(item.items()), name + ".", []))
                        break
                elif type(item) is dict:
                    if item:
                        stack.append((iter(item.items()), name + ".", unplaced))
                        break
                    if name not in parents:
                        unplaced.append(name)
                elif item is None and name in parents:
                    continue  # null metadata: its columns are simply empty
                else:
                    unplaced.append(name)
            else:
                stack.pop()


def csv(
    records: Iterable[Record],
    *,
    columns: Sequence[str] | None = None,
    delimiter: str = ",",
    header: bool = True,
    strict: bool = False,
    dropped: Dropped | None = None,
) -> Iterator[str]:
    """CSV lines (without line ends): the header line, if wanted, then one line per record."""
    if dropped is None:
        dropped = Dropped()
    records = iter(records)
    if columns is None:
        first = next(records, None)
        if first is None:
            return
        columns = flatten_names(first)
        if not columns:
            raise RecordError("the first record is empty, so it gives no header; use --columns")
        if len(set(columns)) < len(columns):
            twice = sorted({name for name in columns if columns.count(name) > 1})
            raise RecordError(f"two fields would both fill the column {twice[0]!r}")
        records = chain([first], records)
    else:
        dropped.unseen = list(columns)
    quote = quoter(delimiter)
    might_quote = re.compile("[\"\r\n']").search
    separators = len(columns) - 1
    join = delimiter.join
    if header:
        # A lone empty cell would be a blank line, which CSV readers skip: it is quoted instead.
        yield join([quote(header_cell(name)) for name in columns]) or '""'
    column_keys = frozenset(columns)
    get = itemgetter(*columns) if len(columns) > 1 else _single(columns[0])
    flattener = _Flattener(columns)
    for record in records:
        dropped.rows += 1
        if record.keys() == column_keys:
            values = get(record)
            if dropped.unseen:
                dropped.sample.saw(record)
                dropped.unseen = [name for name in dropped.unseen if record[name] is None]
        else:
            row: Record = {}
            extra: list[str] = []
            flattener.walk(record, row, extra)
            if extra:
                if strict:
                    raise RecordError(
                        f"fields not in the header: {', '.join(extra[:LISTED_NAMES])}"
                        f"{', ...' if len(extra) > LISTED_NAMES else ''} "
                        "(name the columns with --columns, or drop --strict)"
                    )
                dropped.add(extra)
            if dropped.unseen:
                dropped.sample.saw(record)
                dropped.unseen = [name for name in dropped.unseen if row.get(name) is None]
            values = [row.get(name) for name in columns]
        cells = [value if type(value) is str else _text(value) for value in values]
        line = join(cells)
        # Most rows need no quoting at all: one scan of the joined line proves it.
        if might_quote(line) or line.count(delimiter) != separators:
            line = join([quote(cell) for cell in cells])
        yield line or '""'


def _single(name: str) -> Callable[[Record], tuple[Any]]:
    # itemgetter with one key returns the value itself, not a 1-tuple.
    def get(record: Record) -> tuple[Any]:
        return (record[name],)

    return get


def write_lines(
    lines: Iterable[str], out: BinaryIO, *, line_end: str = "\n", bom: bool = False
) -> int:
    """Write text lines as UTF-8 in batches; returns how many lines were written.

    When the stream fails part-way, the lines before the failure are still written.
    """
    batch: list[str] = []
    # The BOM goes in front of the first line, so empty output stays empty.
    prefix = UTF8_BOM if bom else ""
    count = 0

    def flush() -> None:
        nonlocal prefix
        if not batch:
            return
        try:
            data = (prefix + line_end.join(batch) + line_end).encode("utf-8")
        except UnicodeEncodeError as error:
            raise DataError(
                f"cannot write text that is not valid Unicode: {error.reason}"
            ) from None
        prefix = ""
        out.write(data)
        batch.clear()

    try:
        for line in lines:
            batch.append(line)
            count += 1
            if len(batch) >= BATCH_LINES:
                flush()
    finally:
        flush()
        out.flush()
    return count
