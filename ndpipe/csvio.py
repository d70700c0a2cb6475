"""CSV as a source of records: the reader `fetch` uses for input that is neither NDJSON nor JSON.

RFC 4180 (quoted cells may hold the delimiter, doubled quotes, CR and LF), CRLF or LF line ends;
gzip and a UTF-8 BOM are handled by the core before the bytes get here. Each row becomes a record
keyed by the header row's cells, verbatim (a `user_metadata.name` column gives the flat key
`user_metadata.name`). Memory is constant: rows are parsed one at a time by the stdlib's C reader.
The core sniffs input starting with `[` or `{` as JSON, so a CSV header cannot start with those.

Two styles say what the cells mean:

- `auth0`: Auth0's CSV export escaping (AUTH0.md 1.6) carries the types. A cell that starts with
  `'` is a string, minus exactly that one `'`. Bare `true`/`false` (any case) are booleans, a bare
  JSON number is a number, a bare `[...]`/`{...}` that parses as JSON is that array or object (how
  `csv` writes them), an empty cell is null, and anything else (an ISO date) stays a string.
- `plain`: every cell is a string, and an empty cell is null. Nothing is guessed: inferring types
  would turn zip codes like `02134`, ids and `1.10` into numbers that no longer read as the source
  did. Convert explicitly where needed: `map --set 'logins_count=to_number(logins_count)'`.

`auto` (the default) looks at the first AUTO_ROWS data rows: the file is read as `auth0` when at
least one cell starts with `'` and every non-empty cell is either `'`-prefixed, a boolean, a
number, an ISO 8601 date-time, or JSON array/object text. That is what an Auth0 export looks
like; a plain CSV has unprefixed strings (names, emails) and is read as `plain`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

import orjson

from ndpipe.errors import DataError
from ndpipe.io import ErrorPolicy, Position, Records

CSV_STYLES = ("auto", "auth0", "plain")
# How many data rows `auto` looks at before deciding (they are held in memory meanwhile).
AUTO_ROWS = 100
# Cells longer than this (in characters) are an error rather than an unbounded buffer: an
# unclosed quote would otherwise swallow the rest of the file into one cell. The stdlib's
# default (128 Ki) is too small for metadata written as JSON.
FIELD_LIMIT = 1024 * 1024

# Auth0 writes its own dates bare: 2017-11-02T23:34:03.803Z (and a third-party sample shows
# 2024-01-01T12:00:00+00:00), so both the Z and the offset forms count.
_ISO_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:?[0-9]{2})"
)
# JSON's number grammar: no leading zeros or '+', so 02134 and +15550100 stay strings.
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_BOOLEANS = {"true": True, "false": False, "True": True, "False": False}
_BOOLEANS |= {"TRUE": True, "FALSE": False}
_NUMBER_STARTS = frozenset("-0123456789")


def is_iso_datetime(text: str) -> bool:
    """An ISO 8601 date-time as Auth0 writes it (date, 'T', time, optional fraction, zone)."""
    return _ISO_DATETIME.fullmatch(text) is not None


def _number(text: str) -> Any:
    """The number a bare cell spells, or None when it is not a JSON number."""
    if text[:1] not in _NUMBER_STARTS or _NUMBER.fullmatch(text) is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # beyond float range (1e999)
        return None
    return value


def auth0_cell(text: str) -> Any:
    """The value of one cell of an Auth0-escaped CSV."""
    if not text:
        return None
    first = text[0]
    if first == "'":
        return text[1:]
    boolean = _BOOLEANS.get(text)
    if boolean is not None:
        return boolean
    if first in _NUMBER_STARTS:
        number = _number(text)
        if number is not None:
            return number
    elif first in "[{":
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        if type(value) in (list, dict):
            return value
    return text


def looks_auth0(cell: str) -> bool | None:
    """True for an Auth0-escaped string, False for a cell Auth0 would never write bare,
    None when the cell says nothing (empty, boolean, number, date, JSON)."""
    if not cell:
        return None
    if cell[0] == "'":
        return True
    if cell in _BOOLEANS or is_iso_datetime(cell) or _number(cell) is not None:
        return None
    if cell[0] in "[{":
        try:
            value = orjson.loads(cell)
        except orjson.JSONDecodeError:
            return False
        return None if type(value) in (list, dict) else False
    return False


def detect_style(rows: Iterable[list[str]]) -> str:
    """'auth0' if the rows look like an Auth0 export (see the module docstring), else 'plain'."""
    prefixed = False
    for row in rows:
        for cell in row:
            verdict = looks_auth0(cell)
            if verdict is False:
                return "plain"
            prefixed = prefixed or bool(verdict)
    return "auth0" if prefixed else "plain"


# --- reading --------------------------------------------------------------------------------

Row = tuple[int, list[str]]


def _lines(buffered: io.BufferedReader) -> Iterator[str]:
    """Decoded text lines for the csv module, split so that line numbers are physical lines.

    Lines are split at LF (CRLF keeps its CR, which the csv module handles) and each is decoded
    on its own, so invalid UTF-8 is reported on its own line. A file with old-Mac CR-only line
    ends has no LF at all; it goes through a text wrapper that splits at CR.
    """
    head = buffered.peek(64 * 1024)
    if b"\r" in head and b"\n" not in head:
        return io.TextIOWrapper(buffered, encoding="utf-8", newline="")
    return map(bytes.decode, buffered)


def _rows(buffered: io.BufferedReader, position: Position, policy: ErrorPolicy) -> Iterator[Row]:
    """Non-blank rows with the physical line each starts on; malformed rows go to the policy."""
    csv.field_size_limit(FIELD_LIMIT)
    reader = csv.reader(_lines(buffered), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            hint = "; is a quote left open?" if "field limit" in str(error) else ""
            where = f"{position.name}:{start}"
            policy.bad_line(DataError(f"bad CSV: {error}{hint}", where=where))
            continue
        except UnicodeDecodeError as error:
            # The line cannot be decoded, so the file cannot be resynchronised: always fatal.
            raise DataError(
                f"invalid UTF-8 ({error.reason}); convert the file first, "
                "e.g. iconv -f latin1 -t utf-8",
                where=f"{position.name}:{reader.line_num + 1}",
            ) from None
        if row:
            yield start, row


def _header(cells: list[str], style: str, where: str) -> list[str]:
    # Whether Auth0 escapes its header titles is not documented; if every one is prefixed, they are.
    if style == "auth0" and all(cell[:1] == "'" for cell in cells):
        cells = [cell[1:] for cell in cells]
    seen: set[str] = set()
    for cell in cells:
        if cell in seen:
            raise DataError(
                f"the header names the column {cell!r} twice, so rows cannot be keyed by it",
                where=where,
            )
        seen.add(cell)
    return cells


def _raise(error: DataError) -> Iterator[Row]:
    raise error
    yield  # a generator, so the error comes after the rows before it


def read_csv(
    buffered: io.BufferedReader, position: Position, policy: ErrorPolicy, *, style: str = "auto"
) -> Records:
    """Records from CSV bytes: one per row, keyed by the header (the first non-blank row)."""
    rows = _rows(buffered, position, policy)
    first = next(rows, None)
    if first is None:
        return
    header_line, header_cells = first
    if style == "auto":
        sample: list[Row] = []
        try:
            for row in rows:
                sample.append(row)
                if len(sample) >= AUTO_ROWS:
                    break
        except DataError as error:
            # The rows before a bad one are still read (and written) first, as with NDJSON.
            sample_failed: DataError | None = error
        else:
            sample_failed = None
        style = detect_style(cells for _, cells in sample)
        rows = chain(sample, _raise(sample_failed)) if sample_failed else chain(sample, rows)
    header = _header(header_cells, style, f"{position.name}:{header_line}")
    width = len(header)
    convert = auth0_cell
    for line, cells in rows:
        if len(cells) != width:
            policy.bad_line(
                DataError(
                    f"expected {width} fields as in the header (line {header_line}), "
                    f"found {len(cells)}",
                    where=f"{position.name}:{line}",
                )
            )
            continue
        position.number = line
        if style == "plain":
            yield dict(zip(header, [cell or None for cell in cells], strict=True))
        else:
            yield dict(zip(header, [convert(cell) for cell in cells], strict=True))
