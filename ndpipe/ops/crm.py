"""The record side of the CRM sinks (to-marketo, to-salesforce): flat records into upload files,
and the report lines that join a service's per-row results back to the records as read.

Upload files. Records are packed, in input order, into delimited files of at most `max_bytes`
bytes each (UTF-8, LF line ends, RFC 4180 quoting: a cell holding the delimiter, a double quote,
CR or LF is quoted with its quotes doubled). A file's header is the union of its own records'
keys in first-seen order, and a record without one of them gets an empty cell (Salesforce reads
an empty cell as "leave unchanged" on update, which is what a missing key means). Values:
strings as they are, numbers exact (integers with all their digits, floats as the shortest text
that reads back), booleans `true`/`false`, null an empty cell. A nested value (object or array)
has no cell: the record is refused, naming the field. Nothing is formula-escaped: an API stores
a `'` as data, so values that carry Auth0's export `'` prefix get one warning pointing to
`escape-csv --unescape`.

The size of a file is tracked exactly as rows are added (a new column costs one delimiter in
every row already there), so a row is never split and no file goes over the limit. Rows are
spooled to a scratch directory as they come, not kept in memory: a file's bytes are assembled
on disk when it is complete, next to the input records (as read) that its rows came from, so
the per-row results can be joined back. What stays in memory per row is its input position and
two small integers.

Report lines. A record that did not make it (or came back with a warning) becomes
`{"record": ..., "input": "stdin:12", "batch": 1234 | "job": "750...", "reason": "...",
"warning": true}`; `unwrap_reports` reads such a line back as its record, so a fixed report can
be sent again by the same command.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ndpipe.errors import NdpipeError, OutputError, RecordError
from ndpipe.io import Encoder, Position, Record, Records, dump_json
from ndpipe.ops.csv import cell_text as csv_text
from ndpipe.output import AtomicFile

DELIMITERS = {"csv": ",", "tsv": "\t", "ssv": ";"}
# The keys of a report line; a line with a "record" object, a "reason" string and no key outside
# these is read back as its record.
REPORT_KEYS = frozenset({"record", "input", "job", "batch", "reason", "warning"})
# Bytes read from a spool at a time.
SPOOL_BUFFER = 256 * 1024
PREFIX = "'"


# --- flat records -----------------------------------------------------------------------------


def check_flat(record: Record, position: Position | str | None = None) -> None:
    """Refuse a record with a nested value (an object or an array), naming the field.

    A CSV cell holds one value: flatten or pick the field first (`select`, `map`). The error
    carries `position` when given; otherwise the core adds the input line.
    """
    if not record:
        error = RecordError("the record has no fields: there is nothing to send")
        if position is not None:
            error.where = str(position)
        raise error
    for key, value in record.items():
        kind = type(value)
        if kind is dict or kind is list:
            if kind is dict:
                what, hint = "an object", f"select '{key}.KEY'"
            else:
                what, hint = "an array", f"select '{key}[0]', or map --set '{key}=join(`,`, {key})'"
            error = RecordError(
                f"field {key!r} is {what}; a cell holds one value: pick what to send "
                f"({hint}) or drop the field"
            )
            if position is not None:
                error.where = str(position)
            raise error


def cell_text(value: Any) -> str:
    """A flat value as cell text: strings as is, numbers exact, booleans, null as empty."""
    if type(value) is str:
        text: str = value
        return text
    if type(value) in (dict, list):
        raise RecordError("a nested value has no cell text")  # check_flat runs first
    return csv_text(value)


def quoter(delimiter: str) -> Callable[[str], str]:
    """RFC 4180 quoting for a delimiter: a cell with the delimiter, `"`, CR or LF is quoted."""
    needs_quotes = re.compile("[" + re.escape(delimiter) + '"\r\n]').search

    def quote(text: str) -> str:
        if needs_quotes(text):
            return '"' + text.replace('"', '""') + '"'
        return text

    return quote


# --- upload files -----------------------------------------------------------------------------


class _Positions:
    """Input positions of a file's rows, compact: a label per input and unit, and a number."""

    def __init__(self) -> None:
        self.labels: list[tuple[str, str]] = []
        self.label_index: dict[tuple[str, str], int] = {}
        self.which = array("I")
        self.numbers = array("Q")
        self.last: tuple[str, str, int] = ("", "", -1)  # the label of the row before

    def add(self, position: Position) -> None:
        name, unit, index = self.last
        if position.name is not name or position.unit is not unit:
            key = (position.name, position.unit)
            index = self.label_index.get(key, -1)
            if index < 0:
                index = self.label_index[key] = len(self.labels)
                self.labels.append(key)
            self.last = (position.name, position.unit, index)
        self.which.append(index)
        self.numbers.append(position.number)

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, row: int) -> str:
        name, unit = self.labels[self.which[row]]
        number = self.numbers[row]
        return f"{name}:{number}" if unit == "line" else f"{name}: {unit} {number}"


@dataclass
class UploadRow:
    """One row of an upload file, read back from the spool: its index in the file (from 0),
    its input position, the input record as JSON bytes, and its cells as written."""

    index: int
    input: str
    record_json: bytes
    cells: list[str]


@dataclass
class UploadFile:
    """One complete upload file on disk: `path` holds the header line and the rows."""

    number: int
    header: list[str]
    path: str
    size: int
    delimiter: str
    records_path: str
    positions: _Positions = field(repr=False)

    @property
    def count(self) -> int:
        return len(self.positions)

    def input(self, row: int) -> str:
        """The input position of row `row` (from 0)."""
        return self.positions[row]

    def open(self) -> BinaryIO:
        """The file's bytes, to stream into a request."""
        try:
            return open(self.path, "rb")
        except OSError as error:
            raise OutputError(
                f"cannot read the upload file {self.path}: {error.strerror}"
            ) from None

    def read_bytes(self) -> bytes:
        with self.open() as handle:
            return handle.read()

    def rows(self) -> Iterator[UploadRow]:
        """The rows in order, each with its record as read and its cells as uploaded."""
        with (
            open(self.path, encoding="utf-8", newline="") as text,
            open(self.records_path, "rb", buffering=SPOOL_BUFFER) as records,
        ):
            reader = csv.reader(text, delimiter=self.delimiter, strict=True)
            next(reader, None)  # the header
            for index, cells in enumerate(reader):
                record_json = records.readline().rstrip(b"\n")
                yield UploadRow(index, self.positions[index], record_json, cells)

    def save(self, path: str) -> None:
        """A copy of the file at PATH (--out), complete or not at all (see ndpipe.output)."""
        file = AtomicFile(path, path, make_directories=True)
        try:
            with self.open() as source:
                while block := source.read(SPOOL_BUFFER):
                    file.write(block)
            file.commit()
        except BaseException:
            file.abort()
            raise

    def remove(self) -> None:
        """Delete the file and its spool (its results have been read)."""
        for path in (self.path, self.records_path):
            with contextlib.suppress(OSError):
                os.unlink(path)


def parse_rows(data: bytes | str, delimiter: str) -> Iterator[list[str]]:
    """The rows of a delimited file (a service's results file), header included."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    text = text.removeprefix("\ufeff")
    yield from csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)


class _Builder:
    """The file being filled: rows spooled as text, sizes tracked exactly."""

    def __init__(self, number: int, directory: str, delimiter: str) -> None:
        self.number = number
        self.delimiter = delimiter
        self.columns: dict[str, int] = {}
        self.header_bytes = 0  # the header's cells, without delimiters or line end
        self.cell_bytes = 0  # every row's cells, without delimiters or line ends
        self.widths = array("H")  # how many columns the header had when each row came
        self.lengths = array("I")  # each row's text in bytes, without the padding or LF
        # Rows with no text: in a one-column file each is written `""`, since a blank line
        # would be skipped by readers.
        self.blank = 0
        self.count = 0
        self.positions = _Positions()
        self.rows_path = os.path.join(directory, f"rows-{number}")
        self.records_path = os.path.join(directory, f"records-{number}.ndjson")
        self.path = os.path.join(directory, f"upload-{number}")
        self.rows = _create(self.rows_path)
        self.records = _create(self.records_path)

    def size(self) -> int:
        columns = len(self.columns)
        quoted = 2 * self.blank if columns == 1 else 0
        return self.header_bytes + self.cell_bytes + (self.count + 1) * columns + quoted

    def size_with(self, new_header_bytes: int, new_columns: int, row_bytes: int) -> int:
        """The file's size if a row of `row_bytes` cell bytes adding these columns came next."""
        columns = len(self.columns) + new_columns
        quoted = 2 * (self.blank + (row_bytes == 0)) if columns == 1 else 0
        return (
            self.header_bytes + new_header_bytes + self.cell_bytes + row_bytes
            + (self.count + 2) * columns + quoted
        )  # fmt: skip

    def add(self, row: bytes, cells_bytes: int, record_json: bytes, position: Position) -> None:
        try:
            self.rows.write(row)
            self.records.write(record_json)
            self.records.write(b"\n")
        except OSError as error:
            raise OutputError(f"cannot write a scratch file: {error.strerror}") from None
        self.count += 1
        self.cell_bytes += cells_bytes
        self.blank += not row
        self.widths.append(len(self.columns))
        self.lengths.append(len(row))
        self.positions.add(position)

    def finish(self, quote: Callable[[str], str]) -> UploadFile:
        """Assemble the upload file: the header, then each row padded to the full header."""
        columns = len(self.columns)
        delimiter = self.delimiter.encode()
        try:
            self.rows.close()
            self.records.close()
            with (
                open(self.rows_path, "rb", buffering=SPOOL_BUFFER) as rows,
                open(self.path, "wb", buffering=SPOOL_BUFFER) as upload,
            ):
                header = self.delimiter.join(quote(name) for name in self.columns)
                upload.write(header.encode() + b"\n")
                for width, length in zip(self.widths, self.lengths, strict=True):
                    if not length and columns == 1:
                        upload.write(b'""')
                    upload.write(rows.read(length))
                    if width < columns:
                        upload.write(delimiter * (columns - width))
                    upload.write(b"\n")
            os.unlink(self.rows_path)
        except OSError as error:
            raise OutputError(f"cannot write a scratch file: {error.strerror}") from None
        return UploadFile(
            number=self.number,
            header=list(self.columns),
            path=self.path,
            size=self.size(),
            delimiter=self.delimiter,
            records_path=self.records_path,
            positions=self.positions,
        )

    def discard(self) -> None:
        for handle in (self.rows, self.records):
            handle.close()
        for path in (self.rows_path, self.records_path):
            with contextlib.suppress(OSError):
                os.unlink(path)


def _create(path: str) -> BinaryIO:
    try:
        return open(path, "wb", buffering=SPOOL_BUFFER)
    except OSError as error:
        raise OutputError(f"cannot write a scratch file: {error.strerror}") from None


def prefixed(value: str) -> bool:
    """A value that looks escaped by Auth0's CSV export: a leading `'` before text."""
    return value[:1] == PREFIX and len(value) > 1


def split_files(
    records: Iterable[Record],
    *,
    delimiter: str = ",",
    max_bytes: int,
    position: Position,
    spool_dir: str,
    encode: Encoder = dump_json,
    convert: Callable[[str, str], str] | None = None,
    notify: Callable[[str], None] | None = None,
) -> Iterator[UploadFile]:
    """Flat records packed into upload files of at most `max_bytes` bytes, in input order.

    `position` is the reader's (where each record came from, read as the record arrives);
    `spool_dir` an existing scratch directory (ndpipe.output.scratch_directory) that holds the
    files until the caller removes them (UploadFile.remove). `encode` gives a record's JSON as
    read, for the report. `convert(field, text)` may rewrite a string value for the service
    (to-marketo writes `Z` date-times with an offset). `notify` gets the one-time warning about
    `'`-prefixed values. A record with a nested value, or one that alone makes a file larger
    than `max_bytes`, is a RecordError naming its position; the files before it are yielded
    first, as for any bad input.
    """
    if len(delimiter.encode()) != 1 or delimiter in '"\r\n':
        raise ValueError(f"the delimiter must be one ASCII character, not {delimiter!r}")
    quote = quoter(delimiter)
    needs_quotes = re.compile("[" + re.escape(delimiter) + '"\r\n]').search
    number = 1
    builder = _Builder(number, spool_dir, delimiter)
    warned = notify is None
    try:
        for record in records:
            columns = builder.columns
            cells: list[str] = [""] * len(columns)
            new_columns: list[str] = []
            for key, value in record.items():
                kind = type(value)
                if kind is str:
                    text = value
                    if not warned and text[:1] == PREFIX and len(text) > 1:
                        warned = True
                        assert notify is not None
                        notify(
                            f"{position}: field {key!r} starts with ' ({text[:20]!r}): values "
                            "from Auth0's CSV export carry a ' that the service would store as "
                            "part of the value; remove it with `ndpipe escape-csv --unescape` "
                            "(this warning is shown once)"
                        )
                    if convert is not None:
                        text = convert(key, text)
                elif kind is dict or kind is list:
                    check_flat(record, position)  # raises, naming the field
                    raise AssertionError("unreachable")
                else:
                    text = cell_text(value)
                if needs_quotes(text):
                    text = '"' + text.replace('"', '""') + '"'
                index = columns.get(key)
                if index is None:
                    new_columns.append(key)
                    cells.append(text)
                else:
                    cells[index] = text
            if not record:
                check_flat(record, position)  # an empty record: raises
            row_text = delimiter.join(cells).encode()
            cells_bytes = len(row_text) - len(cells) + 1  # the delimiters are one byte
            new_header = (
                sum(len(quote(name).encode()) for name in new_columns) if new_columns else 0
            )
            if builder.count and (
                builder.size_with(new_header, len(new_columns), cells_bytes) > max_bytes
            ):
                yield builder.finish(quote)
                number += 1
                builder = _Builder(number, spool_dir, delimiter)
                # The record starts the next file, whose header holds only its keys.
                cells = [quote(cell_text_for(key, value, convert)) for key, value in record.items()]
                new_columns = list(record)
                row_text = delimiter.join(cells).encode()
                cells_bytes = len(row_text) - len(cells) + 1
                new_header = sum(len(quote(name).encode()) for name in new_columns)
            if not builder.count:
                alone = new_header + cells_bytes + 2 * len(new_columns)
                alone += 2 if not cells_bytes and len(new_columns) == 1 else 0
                if alone > max_bytes:
                    error = RecordError(
                        f"the record makes a file of {alone:,} bytes with its header, over the "
                        f"{max_bytes:,}-byte limit (--max-bytes); shorten or drop its largest "
                        "values"
                    )
                    error.where = str(position)
                    raise error
            if new_columns:
                for name in new_columns:
                    builder.columns[name] = len(builder.columns)
                builder.header_bytes += new_header
            builder.add(row_text, cells_bytes, encode(record), position)
    except NdpipeError:
        # Bad input stops the run, as everywhere: the records before it still go out first.
        if builder.count:
            yield builder.finish(quote)
        else:
            builder.discard()
        raise
    except BaseException:
        builder.discard()
        raise
    if builder.count:
        yield builder.finish(quote)
    else:
        builder.discard()


def cell_text_for(key: str, value: Any, convert: Callable[[str, str], str] | None) -> str:
    """The cell text of one value, with the service's conversion applied to strings."""
    if type(value) is str:
        return convert(key, value) if convert is not None else value
    return cell_text(value)


# --- joining results back -------------------------------------------------------------------


def join_results(
    upload: UploadFile,
    header: list[str],
    results: list[tuple[list[str], Any]],
    *,
    key: str | None = None,
) -> Iterator[tuple[UploadRow | None, list[str], Any]]:
    """Match a service's result rows (cells under `header`, each with a payload such as its
    reason) to the upload's rows: by all their cells first, then by the `key` column's value.

    Yields (row, cells, payload) for every result, in upload order, then the results that match
    no row (row None), so that none is ever lost. Memory is the results, not the file.
    """
    names = {name: index for index, name in enumerate(header)}
    order = [names.get(name) for name in upload.header]

    def aligned(cells: list[str]) -> tuple[str, ...]:
        return tuple(cells[i] if i is not None and i < len(cells) else "" for i in order)

    exact: dict[tuple[str, ...], list[int]] = {}
    for number, (cells, _) in enumerate(results):
        exact.setdefault(aligned(cells), []).append(number)
    matched: dict[int, UploadRow] = {}
    for row in upload.rows():
        waiting = exact.get(tuple(row.cells))
        if waiting:
            matched[waiting.pop(0)] = row
    key_index = names.get(key) if key is not None else None
    row_key = upload.header.index(key) if key is not None and key in upload.header else None
    if key_index is not None and row_key is not None and len(matched) < len(results):
        by_key: dict[str, list[int]] = {}
        for number, (cells, _) in enumerate(results):
            if number not in matched and key_index < len(cells) and cells[key_index]:
                by_key.setdefault(cells[key_index], []).append(number)
        taken = {row.index for row in matched.values()}
        for row in upload.rows():
            if row.index in taken or row_key >= len(row.cells):
                continue
            waiting = by_key.get(row.cells[row_key])
            if waiting:
                matched[waiting.pop(0)] = row
    for number in sorted(matched, key=lambda number: matched[number].index):
        cells, payload = results[number]
        yield matched[number], cells, payload
    for number, (cells, payload) in enumerate(results):
        if number not in matched:
            yield None, cells, payload


# --- report lines -----------------------------------------------------------------------------


def report_entry(
    record: Any,
    input: str | None,
    reason: str,
    *,
    job: str | None = None,
    batch: int | str | None = None,
    warning: bool = False,
) -> Record:
    """A --report line: the record as read, where it was read, the batch or job, the reason."""
    entry: Record = {"record": record}
    if input is not None:
        entry["input"] = input
    if batch is not None:
        entry["batch"] = batch
    if job is not None:
        entry["job"] = job
    entry["reason"] = reason
    if warning:
        entry["warning"] = True
    return entry


def is_report_entry(record: Record) -> bool:
    return (
        isinstance(record.get("record"), dict)
        and isinstance(record.get("reason"), str)
        and record.keys() <= REPORT_KEYS
    )


def unwrap_reports(records: Iterable[Record]) -> Records:
    """Each line of an earlier --report as its record; any other record as itself."""
    for record in records:
        if "record" in record and "reason" in record and is_report_entry(record):
            inner: Record = record["record"]
            yield inner
        else:
            yield record


def describe_entry(entry: Record, *, key: str | None = None) -> str:
    """A report line as one line of stderr (for runs without --report)."""
    record = entry.get("record")
    where = entry.get("input") or ""
    which = ""
    if key and isinstance(record, dict) and record.get(key) not in (None, ""):
        which = f" ({key} {record[key]})"
    container = ""
    if entry.get("batch") is not None:
        container = f" in batch {entry['batch']}"
    elif entry.get("job") is not None:
        container = f" in job {entry['job']}"
    outcome = "warning" if entry.get("warning") else "failed"
    return f"{where}{which}: {outcome}{container}: {entry.get('reason')}"


# --- the summary ------------------------------------------------------------------------------


@dataclass
class Counts:
    """What a CRM sink did, for the summary line. `created`/`updated` stay None when the
    service does not say (Marketo's bulk import does not)."""

    read: int = 0
    skipped: int = 0  # in files before --start-at
    rejected: int = 0  # refused before sending, and reported
    chunked: int = 0  # in the files from --start-at on
    sent: int = 0
    failed: int = 0
    warned: int = 0
    lost: int = 0  # in batches or jobs that failed whole (also counted in failed)
    files: int = 0
    jobs: int = 0
    created: int | None = None
    updated: int | None = None
    notes: list[str] = field(default_factory=list)


def counted(count: int, noun: str, many: str | None = None) -> str:
    """`1 record`, `200,000 records`: a count with its noun, in the summaries."""
    return f"{count:,} {noun if count == 1 else (many or noun + 's')}"


def summary_line(
    counts: Counts,
    *,
    job_noun: str = "job",
    job_plural: str | None = None,
    report: str | None = None,
    dry_run: bool = False,
) -> str:
    """The closing line on stderr: records read, sent, created/updated, failed, warned, jobs."""
    read = f"{counted(counts.read, 'record')} read"
    if counts.skipped:
        read += f" ({counts.skipped:,} in files before --start-at)"
    if dry_run:
        refused = f", {counts.rejected:,} refused" if counts.rejected else ""
        files = counted(counts.files, "file")
        return f"dry run: {read}; {counts.sent:,} in {files}{refused}; nothing was sent"
    parts = [f"{read}, {counts.sent:,} sent in {counted(counts.jobs, job_noun, job_plural)}"]
    if counts.created is not None:
        parts.append(f"{counts.created:,} created")
    if counts.updated is not None:
        parts.append(f"{counts.updated:,} updated")
    accepted = counts.sent - counts.failed
    if counts.created is None and counts.updated is None:
        parts.append(f"{accepted:,} accepted")
    parts.append(f"{counts.failed:,} failed")
    if counts.rejected:
        parts[-1] += f", {counts.rejected:,} refused before sending"
    if counts.lost:
        parts[-1] += f" ({counts.lost:,} in failed {job_plural or job_noun + 's'})"
    parts.append(f"{counts.warned:,} with warnings")
    line = ": ".join([parts[0], ", ".join(parts[1:])])
    if counts.failed or counts.warned or counts.rejected:
        line += f"; see {report}" if report else "; listed above"
    return line


# --- Marketo ----------------------------------------------------------------------------------

# A Marketo REST API field name (CRM.md §1.7): an identifier such as email, firstName or a
# custom field's rest.name (myField, Auth0_User_Id__c). Display names (`Email Address`) have
# spaces, and Marketo refuses them (1006) after the file has waited in its queue.
MARKETO_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# The fields `lookupField` may name besides custom string, email and integer fields
# (bulk-lead-import.md); `id` makes the import update-only.
MARKETO_LOOKUP_FIELDS = (
    "email",
    "id",
    "cookies",
    "twitterId",
    "facebookId",
    "linkedInId",
    "sfdcAccountId",
    "sfdcContactId",
    "sfdcLeadId",
    "sfdcLeadOwnerId",
    "sfdcOpptyId",
)
# Standard lead fields that are not lookup fields (Marketo answers 1011 for them).
MARKETO_NOT_LOOKUP = frozenset(
    {
        "firstName", "lastName", "middleName", "salutation", "title", "company", "phone",
        "mobilePhone", "fax", "address", "city", "state", "country", "postalCode", "website",
        "industry", "annualRevenue", "numberOfEmployees", "leadScore", "leadSource",
        "leadStatus", "leadRole", "rating", "dateOfBirth", "createdAt", "updatedAt",
        "unsubscribed", "unsubscribedReason", "emailInvalid", "emailInvalidCause",
        "doNotCall", "doNotCallReason", "originalSourceType", "personType", "leadPerson",
    }
)  # fmt: skip
# An ISO 8601 date-time without a zone: Marketo reads it as Central Time (CRM.md §1.7).
_NAIVE_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
)
_UTC_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?Z")


def check_lookup_field(name: str) -> str:
    """A --lookup-field Marketo accepts: a documented lookup field or a custom field's name.

    Raises ValueError saying why not (a standard field that cannot be one, a display name, a
    documented name in the wrong case).
    """
    if name in MARKETO_LOOKUP_FIELDS:
        return name
    listed = ", ".join(MARKETO_LOOKUP_FIELDS)
    for known in (*MARKETO_LOOKUP_FIELDS, *MARKETO_NOT_LOOKUP):
        if name.lower() == known.lower():
            if known in MARKETO_LOOKUP_FIELDS:
                raise ValueError(f"{name!r} is spelled {known!r} in Marketo's API")
            break
    else:
        if MARKETO_NAME.fullmatch(name):
            return name  # a custom string, email or integer field
        raise ValueError(
            f"{name!r} is not a Marketo REST API field name (letters, digits and _); "
            f"use one of {listed}, or a custom field's REST name"
        )
    raise ValueError(
        f"{name!r} cannot be a lookup field (Marketo answers 1011); use one of {listed}, or "
        "a custom string, email or integer field"
    )


def check_marketo_names(records: Iterable[Record], position: Position) -> Records:
    """Refuse a record whose key is not a Marketo REST API field name, naming it."""
    good: set[str] = set()
    for record in records:
        if not good.issuperset(record):
            check_marketo_record(record, position)
            good.update(record)
        yield record


def check_marketo_record(record: Record, position: Position | str | None = None) -> None:
    """Refuse RECORD if one of its keys is not a Marketo REST API field name, naming it."""
    for key in record:
        if not MARKETO_NAME.fullmatch(key):
            error = RecordError(
                f"field {key!r} is not a Marketo REST API field name (such as email, "
                "firstName, lastName: letters, digits and _); rename it, e.g. with "
                "`select --preset marketo` or `select 'email=Email Address'`"
            )
            if position is not None:
                error.where = str(position)
            raise error


def marketo_datetime(text: str) -> str:
    """Auth0's UTC date-times (`2024-01-02T03:04:05.678Z`) with an explicit offset
    (`...05.678+00:00`): W3C's form, which Marketo's field types document; other text as is."""
    if text[-1:] == "Z" and _UTC_DATETIME.fullmatch(text):
        return text[:-1] + "+00:00"
    return text


def is_naive_datetime(text: str) -> bool:
    """A date and time without a zone, which Marketo would read as Central Time."""
    return text[10:11] in ("T", " ") and _NAIVE_DATETIME.fullmatch(text) is not None
