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

Speed matters here (millions of rows on the main recipe). The command takes records in batches
of BATCH_RECORDS and works column by column (`_Table.lines`): each column's values are fetched
with one C call, converted only when they are not all strings, joined once, and searched once
per special character, so that only the few cells that need quotes are looked at one by one.
In a chain `escape-csv then csv` the escaping is done the same way, on the cells (see
`csv_batches`). A batch the column-wise path does not handle (fields outside the header, an
error) is written record by record (`_Table.line`, the reference), and an error still names
the record's own input line, after the lines before it. Cells are joined by hand, which
measured faster than the stdlib's C writer once the conversions it lacks (booleans, JSON, the
`'` rule, CR with an LF line end) are added.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain, count, islice, repeat
from operator import add, attrgetter, itemgetter
from typing import Any, BinaryIO

from ndpipe import codec
from ndpipe.csvio import PREFIX, formula_hits, formula_risk, header_cell
from ndpipe.errors import DataError, RecordError
from ndpipe.io import Position, Record
from ndpipe.ops.escape_csv import _apply_formula
from ndpipe.ops.select import Unset, suggest

# Rows are written in batches of this many lines.
BATCH_LINES = 2048
# With the reader's position, records are taken this many at a time and written column-wise.
BATCH_RECORDS = 256
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


def cell_text(value: Any) -> str:
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
    position: Position | None = None,
    escape: bool = False,
) -> Iterator[str]:
    """CSV lines (without line ends): the header line, if wanted, then one line per record.

    With the reader's `position`, records are taken in batches and written column by column
    (see `csv_batches`); the lines are the same. With `escape` (and a position), the cells are
    escaped as escape-csv's default style would, column-wise: the pipeline hands csv that work
    in a chain `escape-csv then csv`.
    """
    for lines in csv_batches(
        records,
        columns=columns,
        delimiter=delimiter,
        header=header,
        strict=strict,
        dropped=dropped,
        position=position,
        escape=escape,
    ):
        yield from lines


def csv_batches(
    records: Iterable[Record],
    *,
    columns: Sequence[str] | None = None,
    delimiter: str = ",",
    header: bool = True,
    strict: bool = False,
    dropped: Dropped | None = None,
    position: Position | None = None,
    escape: bool = False,
) -> Iterator[list[str]]:
    """The lines of `csv`, in lists: one per record without `position`; with it, one per batch
    of BATCH_RECORDS records, written column-wise (`_Table.lines`) when the batch allows, else
    record by record (`_Table.line`). An error names the record's own position either way: the
    lines before it are yielded, then it is raised with the position set back to that record.
    """
    if dropped is None:
        dropped = Dropped()
    stream = iter(records)
    first_number = 0
    first: Record | None = None
    if columns is None:
        first = next(stream, None)
        if first is None:
            return
        if position is not None:
            first_number = position.number
        columns = flatten_names(first)
        if not columns:
            raise RecordError("the first record is empty, so it gives no header; use --columns")
        if len(set(columns)) < len(columns):
            twice = sorted({name for name in columns if columns.count(name) > 1})
            raise RecordError(f"two fields would both fill the column {twice[0]!r}")
    else:
        dropped.unseen = list(columns)
    table = _Table(columns, delimiter, strict, dropped)
    if header:
        # A lone empty cell would be a blank line, which CSV readers skip: it is quoted instead.
        yield [delimiter.join([table.quote(header_cell(name)) for name in columns]) or '""']
    if position is None:
        line = table.line
        for record in chain([first], stream) if first is not None else stream:
            yield [line(record)]
        return
    if first is None:
        first = next(stream, None)
        if first is None:
            return
        first_number = position.number
    table.escape = escape
    numbers = chain([first_number], map(_NUMBER, repeat(position)))
    yield from _in_batches(table, chain([first], stream), numbers, position)


_NUMBER = attrgetter("number")
_RECORD = itemgetter(0)


def _in_batches(
    table: _Table, records: Iterator[Record], numbers: Iterator[int], position: Position
) -> Iterator[list[str]]:
    # zip takes each record, then the number the reader has set for it.
    pairs = zip(records, numbers, strict=False)
    while True:
        batch: list[tuple[Record, int]] = []
        failure: Exception | None = None
        try:
            batch.extend(islice(pairs, BATCH_RECORDS))
        except Exception as error:  # the records read before it are written first
            failure = error
            failed_at = position.number
        if batch:
            lines = None
            if not table.dropped.unseen:
                try:
                    lines = table.lines(list(map(_RECORD, batch)))
                except Exception:  # record by record, which names the record at fault
                    lines = None
            if lines is None:
                lines = []
                line = table.line
                try:
                    for record, number in batch:
                        position.number = number
                        lines.append(line(record))
                except Exception as error:
                    # The lines before the record go out first; position names the record.
                    if lines:
                        yield lines
                    raise error from None
            yield lines
        if failure is not None:
            position.number = failed_at
            raise failure
        if len(batch) < BATCH_RECORDS:
            return


def _not_in_header(extra: list[str]) -> RecordError:
    return RecordError(
        f"fields not in the header: {', '.join(extra[:LISTED_NAMES])}"
        f"{', ...' if len(extra) > LISTED_NAMES else ''} "
        "(name the columns with --columns, or drop --strict)"
    )


class _Table:
    """The header's columns, and how records become lines: `line` one record at a time (the
    reference), `lines` a batch column by column, with the same result."""

    def __init__(
        self, columns: Sequence[str], delimiter: str, strict: bool, dropped: Dropped
    ) -> None:
        self.columns = list(columns)
        self.delimiter = delimiter
        self.strict = strict
        self.dropped = dropped
        self.quote = quoter(delimiter)
        self.might_quote = re.compile("[\"\r\n']").search
        self.separators = len(columns) - 1
        self.column_keys = frozenset(columns)
        self.get = itemgetter(*columns) if len(columns) > 1 else _single(columns[0])
        self.getters = [itemgetter(name) for name in columns]
        self.flattener = _Flattener(columns)
        # The delimiter, a double quote, CR or LF anywhere in a cell, or ' at its start, make
        # it quoted. The cells of a column are joined with a separator that is not the
        # delimiter, is rare in data, cannot start formula text (so an empty cell, a separator
        # next, is not taken for one) and is ASCII (so ASCII text is scanned as such).
        self.specials = sorted({delimiter, '"', "\r", "\n"})
        self.separator = "~" if delimiter == "`" else "`"
        # Whether the string values are escaped by escape-csv's default rule first.
        self.escape = False

    def line(self, record: Record) -> str:
        """One record's line."""
        if self.escape:
            _apply_formula(record)
        dropped = self.dropped
        dropped.rows += 1
        if record.keys() == self.column_keys:
            values = self.get(record)
            if dropped.unseen:
                dropped.sample.saw(record)
                dropped.unseen = [name for name in dropped.unseen if record[name] is None]
        else:
            row: Record = {}
            extra: list[str] = []
            self.flattener.walk(record, row, extra)
            if extra:
                if self.strict:
                    raise _not_in_header(extra)
                dropped.add(extra)
            if dropped.unseen:
                dropped.sample.saw(record)
                dropped.unseen = [name for name in dropped.unseen if row.get(name) is None]
            values = [row.get(name) for name in self.columns]
        cells = [value if type(value) is str else cell_text(value) for value in values]
        join = self.delimiter.join
        line = join(cells)
        # Most rows need no quoting at all: one scan of the joined line proves it.
        if self.might_quote(line) or line.count(self.delimiter) != self.separators:
            line = join([self.quote(cell) for cell in cells])
        return line or '""'

    def lines(self, batch: list[Record]) -> list[str]:
        """The lines of a batch, column by column: each column's cells are joined once, and one
        scan per special character finds the few cells to quote. Raises (and changes nothing)
        on whatever it does not handle, for `line` to deal with record by record."""
        width = len(self.columns)
        columns: list[list[Any]] | None = None
        extras: list[list[str]] = []
        if set(map(len, batch)) == {width}:
            try:  # every column is there, and nothing else: the keys are the columns
                columns = [list(map(get, batch)) for get in self.getters]
            except KeyError:
                columns = None
        if columns is None:
            rows: list[Sequence[Any]] = []
            keys, get = self.column_keys, self.get
            for record in batch:
                if record.keys() == keys:
                    rows.append(get(record))
                    continue
                row: Record = {}
                extra: list[str] = []
                self.flattener.walk(record, row, extra)
                if extra:
                    if self.strict:
                        raise _not_in_header(extra)
                    extras.append(extra)
                rows.append([row.get(name) for name in self.columns])
            columns = [list(column) for column in zip(*rows, strict=True)]
        cells = [self._cells(column) for column in columns]
        if width == 1:
            lines = cells[0]
            if "" in lines:  # a lone empty cell is quoted (see csv)
                lines = [line or '""' for line in lines]
        else:
            lines = list(map(self.delimiter.join, zip(*cells, strict=True)))
        for extra in extras:
            self.dropped.add(extra)
        self.dropped.rows += len(batch)
        return lines

    def _cells(self, column: list[Any]) -> list[str]:
        """A column's values as cell text, escaped (with `escape`) and quoted where needed: the
        cells are joined once, and one search per special character (and one scan for formula
        starts) finds the few cells to change. The column (a list of its own) is reused."""
        separator = self.separator
        values = column
        try:
            text = separator.join(column)
        except TypeError:  # not all strings
            text_of = _escaped_text if self.escape else cell_text
            column = [
                value if type(value) is str else "" if value is None else text_of(value)
                for value in column
            ]
            text = separator.join(column)
        risky: list[int] = []
        if self.escape:
            risky = [
                index
                for index in formula_hits(column, text, separator)
                if type(values[index]) is str and formula_risk(values[index])
            ]
        hits = set(risky)
        if text[:1] == "'":
            hits.add(0)
        found = [special for special in self.specials if special in text]
        apostrophe = separator + "'"
        if found or apostrophe in text:
            # Where each cell ends in `text`: the offset of the separator after it. (A cell may
            # hold the separator too: at worst a cell is looked at that needs no quotes.)
            ends = list(map(add, accumulate(map(len, column)), count()))
            for special in [*found, apostrophe]:
                at = text.find(special)
                while at >= 0:
                    # A special character lies in its cell; separator + ' before the cell.
                    index = bisect_right(ends, at)
                    hits.add(index)
                    at = text.find(special, ends[index] if index < len(ends) else len(text))
        for index in risky:
            column[index] = PREFIX + column[index]
        quote = self.quote
        for index in hits:
            column[index] = quote(column[index])
        return column


def _escaped_text(value: Any) -> str:
    """cell_text of a value after escape-csv's default rule (which escapes inside objects)."""
    if type(value) is dict:
        _apply_formula(value)
    return cell_text(value)


def _single(name: str) -> Callable[[Record], tuple[Any]]:
    # itemgetter with one key returns the value itself, not a 1-tuple.
    def get(record: Record) -> tuple[Any]:
        return (record[name],)

    return get


def write_batches(
    batches: Iterable[list[str]], out: BinaryIO, *, line_end: str = "\n", bom: bool = False
) -> int:
    """Write lists of text lines (`csv_batches`) as UTF-8 in batches; returns how many lines
    were written. When the stream fails part-way, the lines before the failure are still
    written."""
    writer = _Writer(out, line_end, bom)
    try:
        for lines in batches:
            writer.add(lines)
    finally:
        writer.close()
    return writer.count


def write_lines(
    lines: Iterable[str], out: BinaryIO, *, line_end: str = "\n", bom: bool = False
) -> int:
    """Write text lines as UTF-8 in batches; returns how many lines were written.

    When the stream fails part-way, the lines before the failure are still written.
    """
    writer = _Writer(out, line_end, bom)
    batch = writer.batch
    try:
        for line in lines:
            batch.append(line)
            if len(batch) >= BATCH_LINES:
                writer.flush()
    finally:
        writer.close()
    return writer.count


class _Writer:
    """Lines gathered and written as one encoded block per BATCH_LINES."""

    def __init__(self, out: BinaryIO, line_end: str, bom: bool) -> None:
        self.out = out
        self.line_end = line_end
        # The BOM goes in front of the first line, so empty output stays empty.
        self.prefix = UTF8_BOM if bom else ""
        self.batch: list[str] = []
        self.count = 0

    def add(self, lines: list[str]) -> None:
        self.batch += lines
        if len(self.batch) >= BATCH_LINES:
            self.flush()

    def flush(self) -> None:
        batch = self.batch
        if batch:
            line_end = self.line_end
            try:
                data = (self.prefix + line_end.join(batch) + line_end).encode("utf-8")
            except UnicodeEncodeError as error:
                raise DataError(
                    f"cannot write text that is not valid Unicode: {error.reason}"
                ) from None
            self.prefix = ""
            self.out.write(data)
            self.count += len(batch)
            batch.clear()

    def close(self) -> None:
        self.flush()
        self.out.flush()
