"""CSV as a source of records (the reader `fetch` uses for input that is neither NDJSON nor JSON),
and the cell rules that the writers (`escape-csv`, `csv`) share with it.

RFC 4180 (quoted cells may hold the delimiter, doubled quotes, CR and LF), CRLF, LF or CR line
ends; gzip and a UTF-8 BOM are handled by the core before the bytes get here. Each row becomes a
record keyed by the header row's cells. Memory is constant: rows are parsed one at a time by the
stdlib's C reader. The core sniffs input starting with `[` or `{` as JSON, so a CSV header cannot
start with those.

Two styles say what the cells mean:

- `auth0`: Auth0's CSV export escaping (AUTH0.md 1.6) carries the types. A cell that starts with
  `'` is a string, minus exactly that one `'`. Bare `true`/`false` (any case) are booleans, a bare
  JSON number is a number (integers exact however long), a bare `[...]`/`{...}` that parses as
  JSON is that array or object (how `csv` writes them), an empty cell is null, and anything else
  (an ISO date) stays a string. Header titles lose the `'` that `csv` puts before a title a
  spreadsheet would run as a formula (see `read_titles`), and dotted titles are nested back into
  objects when that is unambiguous (see `nested_paths`).
- `plain`: every cell is a string, and an empty cell is null; titles are used verbatim (and
  nested like the auth0 style's when the caller asks, as `fetch` does by default). Nothing
  is guessed: inferring types would turn zip codes like `02134`, ids and `1.10` into numbers
  that no longer read as the source did. Convert explicitly where needed:
  `map --set 'logins_count=to_number(logins_count)'`.

`auto` (the default) looks at the first AUTO_ROWS data rows: the file is read as `auth0` when at
least one cell starts with `'` and every non-empty cell is either `'`-prefixed, a boolean, a
number, an ISO 8601 date-time, or JSON array/object text. That is what an Auth0 export looks
like; a plain CSV has unprefixed strings (names, emails) and is read as `plain`. Rows with no
string cell at all (only numbers, booleans, dates, empty cells) give no evidence, and are read as
`plain`: give `--csv-style auth0` for those.

Columns with an empty title (the `,,` tail a spreadsheet leaves after the last used column) are
ignored as long as their cells are empty too; a row with data under an empty title is an error,
as there is no key to put it under.

Rows that cannot be read are reported by the physical lines they cover (see `_rows`).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import re
import unicodedata
import zlib
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate, chain, count
from operator import add
from typing import Any

from ndpipe import codec
from ndpipe.errors import DataError
from ndpipe.io import ErrorPolicy, Position, Records

CSV_STYLES = ("auto", "auth0", "plain")
# How many data rows `auto` looks at before deciding (they are held in memory meanwhile).
AUTO_ROWS = 100
# Cells longer than this (in characters) are an error rather than an unbounded buffer: an
# unclosed quote would otherwise swallow the rest of the file into one cell. The stdlib's
# default (128 Ki) is too small for metadata written as JSON.
FIELD_LIMIT = 1024 * 1024
# A file with CR line ends only (old Mac) is split at CR; this much is read at a time.
READ_BLOCK = 64 * 1024
PREFIX = "'"

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
# Auth0's export field paths index arrays (`identities[0].connection`); such titles stay flat.
_ARRAY_INDEX = re.compile(r"\[[0-9]+\]")


def is_iso_datetime(text: str) -> bool:
    """An ISO 8601 date-time as Auth0 writes it (date, 'T', time, optional fraction, zone)."""
    return _ISO_DATETIME.fullmatch(text) is not None


# --- the formula rule (escape-csv's default style, and every header csv writes) -------------

# OWASP lists = + - @ tab CR as the starts a spreadsheet evaluates; ASVS 1.2.10 adds NUL.
FORMULA_SIGNS = frozenset("=+-@")
ALWAYS_ESCAPED = frozenset("\t\r\x00")
# A first character that settles the question at once: printable ASCII that is not a sign.
# (Most strings start with one; only the others need the slower checks.)
SAFE_FIRST = frozenset(chr(code) for code in range(0x21, 0x7F)) - FORMULA_SIGNS
# White space, control and format (invisible) characters: BOM U+FEFF, zero-width space U+200B,
# joiners, direction marks. Spreadsheets strip some of these before they look at the first
# character, so the sign that counts is the first one after them.
_INVISIBLE = frozenset(("Zs", "Zl", "Zp", "Cc", "Cf"))
# What a spreadsheet reads as a plain number: an optional sign, digits with an optional decimal
# point, an optional exponent. `-12.5` and an E.164 phone number (`+14155550100`) are such
# numbers; a formula cannot hide in one, so they are left as they are.
_SPREADSHEET_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _visible(text: str) -> str:
    """`text` from its first character that is not white space, control or format."""
    category = unicodedata.category
    for index, char in enumerate(text):
        if category(char) not in _INVISIBLE:
            return text[index:] if index else text
    return ""


def formula_risk(text: str) -> bool:
    """Whether a spreadsheet could run `text` as a formula, so that it needs a leading `'`.

    True when the text starts with tab, CR or NUL, or when its first visible character (after
    white space, control and invisible format characters) is `=`, `+`, `-` or `@`, unless from
    there on it is entirely a number (`-12.5`, `+14155550100`).
    """
    first = text[:1]
    if first in SAFE_FIRST or not first:
        return False
    if first in FORMULA_SIGNS:
        return _SPREADSHEET_NUMBER.fullmatch(text) is None
    if first in ALWAYS_ESCAPED:
        return True
    visible = _visible(text)
    if visible[:1] not in FORMULA_SIGNS:
        return False
    return _SPREADSHEET_NUMBER.fullmatch(visible) is None


# --- the formula rule on many strings at once (csv's batches, in escape-csv then csv) --------

# The characters of the categories in _INVISIBLE in Unicode 14.0.0 (the unicodedata of Python
# 3.11), as ranges of code points; the tests check them against unicodedata.
_INVISIBLE_RANGES = {
    "14.0.0": (
        (0x0000, 0x0020), (0x007F, 0x00A0), (0x00AD, 0x00AD), (0x0600, 0x0605),
        (0x061C, 0x061C), (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891),
        (0x08E2, 0x08E2), (0x1680, 0x1680), (0x180E, 0x180E), (0x2000, 0x200F),
        (0x2028, 0x202F), (0x205F, 0x2064), (0x2066, 0x206F), (0x3000, 0x3000),
        (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
        (0x13430, 0x13438), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ),
}  # fmt: skip


def _unsafe_first_class() -> str:
    """A regex class of the first characters that can make a string formula text: the signs,
    tab, CR, NUL and the invisible characters. Under another Unicode version than the table's,
    every character outside SAFE_FIRST is in it (still a superset: `formula_risk` decides)."""
    ranges = _INVISIBLE_RANGES.get(unicodedata.unidata_version)
    if ranges is None:
        return "[^" + re.escape("".join(sorted(SAFE_FIRST))) + "]"
    parts = [re.escape(sign) for sign in sorted(FORMULA_SIGNS | ALWAYS_ESCAPED)]
    parts += [re.escape(chr(low)) + "-" + re.escape(chr(high)) for low, high in ranges]
    return "[" + "".join(parts) + "]"


_UNSAFE_FIRST = _unsafe_first_class()
_UNSAFE_START = re.compile(_UNSAFE_FIRST)
# The same for ASCII text, which is scanned faster with a small class.
_UNSAFE_ASCII = "[" + re.escape("".join(sorted(FORMULA_SIGNS))) + "\\x00-\\x20\\x7f]"


@functools.cache
def _unsafe_after(separator: str, ascii: bool) -> re.Pattern[str]:
    # Only the separator is matched, so that one text's match cannot hide the next one's.
    unsafe = _UNSAFE_ASCII if ascii else _UNSAFE_FIRST
    return re.compile(re.escape(separator) + "(?=" + unsafe + ")")


def formula_hits(texts: Sequence[str], joined: str, separator: str) -> list[int]:
    """The indexes, in order, of the texts that may need a `'` by the formula rule, given
    `joined` = separator.join(texts): one scan of the joined text finds the texts that start
    with a sign, tab, CR, NUL or an invisible character (`formula_risk` then says which do).

    Every text that needs the `'` is among them; a text holding the separator may be named
    when it needs nothing, and so may an empty one unless the separator is a character that
    needs no `'` (csv joins with one).
    """
    hits = [0] if texts and _UNSAFE_START.match(joined) else []
    found = [match.start() for match in _unsafe_after(separator, joined.isascii()).finditer(joined)]
    if not found:
        return hits
    # Where each text ends in `joined`: the offset of the separator after it.
    ends = list(map(add, accumulate(map(len, texts)), count()))
    hits += [bisect_right(ends, offset) for offset in found]
    return sorted(set(hits))


def header_cell(name: str) -> str:
    """A header title as `csv` writes it: the formula rule, applied so that it can be undone.

    A name gets a `'` when it needs one (`=x` -> `'=x`), and also when it already starts with
    `'` before such text (`'=x` -> `''=x`), so that a reader removes one `'` exactly when the
    rest, past its leading `'`s, is formula text (`read_titles`).
    """
    return PREFIX + name if formula_risk(name.lstrip(PREFIX)) else name


def read_titles(cells: Sequence[str]) -> list[str]:
    """Header titles of an Auth0-style CSV, with the escaping `csv` or Auth0 put on them undone.

    When every title starts with `'`, each loses one (Auth0 escaping its titles like strings;
    whether it does is not documented). Otherwise a title loses one `'` when what follows its
    leading `'`s is formula text: the inverse of `header_cell`.
    """
    if cells and all(cell[:1] == PREFIX for cell in cells):
        return [cell[1:] for cell in cells]
    return [
        cell[1:] if cell[:1] == PREFIX and formula_risk(cell.lstrip(PREFIX)) else cell
        for cell in cells
    ]


def nested_paths(titles: Sequence[str]) -> list[tuple[str, ...]] | None:
    """The key path of each column when dotted titles are nested back into objects, or None.

    A title is a path when it has a `.`, no part between dots is empty and it has no Auth0 array
    index (`identities[0].connection` stays one flat key). The header is nested only when no
    column's path is a prefix of another's (`a` and `a.b`, which cannot both hold a value);
    otherwise, or when no title is a path, every title stays a flat key (None).
    """
    paths: list[tuple[str, ...]] = []
    for title in titles:
        parts = tuple(title.split("."))
        if len(parts) > 1 and all(parts) and not _ARRAY_INDEX.search(title):
            paths.append(parts)
        else:
            paths.append((title,))
    if all(len(path) == 1 for path in paths):
        return None
    prefixes = {path[:end] for path in paths for end in range(1, len(path))}
    if any(path in prefixes for path in paths):
        return None
    return paths


def _nest(paths: Sequence[tuple[str, ...]], values: Iterable[Any]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for path, value in zip(paths, values, strict=True):
        target = record
        for part in path[:-1]:
            inner = target.get(part)
            if inner is None:
                inner = target[part] = {}
            target = inner
        target[path[-1]] = value
    return record


# --- cells ----------------------------------------------------------------------------------


def _number(text: str) -> Any:
    """The number a bare cell spells, exactly, or None when it is not a JSON number.

    Integers of any length stay integers; a float is the double nearest the text. Python's
    int() and float() read the JSON grammar that `_NUMBER` has already checked exactly.
    """
    if text[:1] not in _NUMBER_STARTS or _NUMBER.fullmatch(text) is None:
        return None
    if "." in text or "e" in text or "E" in text:
        value = float(text)
        # 1e999 is beyond a double; it stays the text it is.
        return value if math.isfinite(value) else None
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        return None


def _json(text: str) -> Any:
    """The array or object a bare `[...]`/`{...}` cell holds (numbers exact), or None."""
    try:
        value = codec.loads(text)
    except ValueError:  # not JSON, or a number it cannot carry exactly
        return None
    return value if type(value) in (list, dict) else None


def auth0_cell(text: str) -> Any:
    """The value of one cell of an Auth0-escaped CSV."""
    if not text:
        return None
    first = text[0]
    if first == PREFIX:
        return text[1:]
    boolean = _BOOLEANS.get(text)
    if boolean is not None:
        return boolean
    if first in _NUMBER_STARTS:
        number = _number(text)
        if number is not None:
            return number
    elif first in "[{":
        value = _json(text)
        if value is not None:
            return value
    return text


def looks_auth0(cell: str) -> bool | None:
    """True for an Auth0-escaped string, False for a cell Auth0 would never write bare,
    None when the cell says nothing (empty, boolean, number, date, JSON)."""
    if not cell:
        return None
    if cell[0] == PREFIX:
        return True
    if cell in _BOOLEANS or is_iso_datetime(cell) or _number(cell) is not None:
        return None
    if cell[0] in "[{":
        return None if _json(cell) is not None else False
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

# A row: the physical line it starts on, the line it ends on, and its cells.
Row = tuple[int, int, list[str]]


def _split_at_cr(buffered: io.BufferedReader) -> Iterator[bytes]:
    """Lines of a file whose line ends are CR only, each with its CR (as the csv module wants)."""
    pending = b""
    while True:
        block = buffered.read(READ_BLOCK)
        if not block:
            break
        lines = (pending + block).split(b"\r")
        pending = lines.pop()
        for line in lines:
            yield line + b"\r"
    if pending:
        yield pending


def _byte_lines(buffered: io.BufferedReader) -> Iterator[bytes]:
    """Physical lines as bytes, so that line numbers are those of the file.

    Lines are split at LF (CRLF keeps its CR, which the csv module handles). A file with old-Mac
    CR-only line ends has no LF in its first block at all; it is split at CR instead.
    """
    head = buffered.peek(READ_BLOCK)
    if b"\r" in head and b"\n" not in head:
        return _split_at_cr(buffered)
    return iter(buffered)


def _not_utf8(error: UnicodeDecodeError, line: int) -> str:
    byte = error.object[error.start]
    return (
        f"invalid UTF-8 on line {line}: byte {error.start + 1} of the line (0x{byte:02x}) is "
        "not UTF-8, so the input is not UTF-8 text. Convert it first from the encoding it is "
        "in; Excel, for one, often saves CSV as Windows-1252: iconv -f WINDOWS-1252 -t UTF-8"
    )


def _lines_text(count: int, start: int, end: int) -> str:
    return f"line {start}" if count == 1 else f"lines {start}-{end}"


def _lines_lost(policy: ErrorPolicy, name: str, start: int, end: int, message: str) -> None:
    """Report lines start..end as unreadable: the error (named at `start`) when failing, or one
    skipped line per physical line when skipping, so the count is that of the lines lost."""
    error = DataError(message, where=f"{name}:{start}")
    policy.bad_line(error)
    for line in range(start + 1, end + 1):
        policy.bad_line(DataError(message, where=f"{name}:{line}"))


def _count(lines: Iterator[bytes], name: str) -> int:
    """How many lines are left (they are read, not parsed)."""
    try:
        return sum(1 for _ in lines)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"cannot read {name}: {error}") from None


def _rows(buffered: io.BufferedReader, position: Position, policy: ErrorPolicy) -> Iterator[Row]:
    """Non-blank rows with the physical lines they span; rows that cannot be read go to the
    policy, counted by the lines they cover.

    After a malformed row the reader goes on with the line after the one where the csv module
    gave up (the lines of the bad row are all counted). Two cases cannot be read past, because
    it is unknown where the open quote would end: a quote never closed before the end of the
    input (its lines, to the end, are counted), and a cell over FIELD_LIMIT (likely the same
    mistake; the rest of the input is counted as unread).
    """
    csv.field_size_limit(FIELD_LIMIT)
    name = position.name
    byte_lines = _byte_lines(buffered)
    reader = csv.reader(map(bytes.decode, byte_lines), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            end = max(reader.line_num, start)
            text = str(error)
            if "field limit" in text:
                message = (
                    f"the row that starts on line {start} has a cell longer than {FIELD_LIMIT:,} "
                    f"characters (by line {end}): is a quote left open? The input after it "
                    "cannot be read reliably"
                )
                if policy.skip:
                    end += _count(byte_lines, name)
                    message = f"lines {start}-{end} could not be read: {message}"
                _lines_lost(policy, name, start, end, message)
                return
            count = end - start + 1
            if text == "unexpected end of data":
                message = (
                    f"{_lines_text(count, start, end)} could not be read: the row that starts "
                    f"on line {start} opens a quote that is never closed"
                )
            else:
                message = f"bad CSV on line {end}: {text}"
                if count > 1:
                    message += f" (lines {start}-{end}, the row that starts on line {start})"
            _lines_lost(policy, name, start, end, message)
            continue
        except UnicodeDecodeError as error:
            # Which bytes belong to which cell is unknown from here on: always fatal.
            line = reader.line_num + 1
            raise DataError(_not_utf8(error, line), where=f"{name}:{line}") from None
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"cannot read {name}: {error}") from None
        if row:
            yield start, reader.line_num, row


def _header(cells: list[str], style: str, where: str) -> list[str]:
    if style == "auth0":
        cells = read_titles(cells)
    seen: set[str] = set()
    for cell in cells:
        if not cell:
            continue  # untitled columns are left out of the records (see read_csv)
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
    buffered: io.BufferedReader,
    position: Position,
    policy: ErrorPolicy,
    *,
    style: str = "auto",
    nest: bool | None = None,
) -> Records:
    """Records from CSV bytes: one per row, keyed by the header (the first non-blank row).

    `nest` says whether dotted titles are nested into objects (see `nested_paths`): True for
    both styles, False for neither, None (the default) for the auth0 style only, whose dots are
    known to be Auth0's field paths. Columns with an empty title are left out; a row with data
    in one is an error.
    """
    rows = _rows(buffered, position, policy)
    first = next(rows, None)
    if first is None:
        return
    header_line, _, header_cells = first
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
        style = detect_style(cells for _, _, cells in sample)
        rows = chain(sample, _raise(sample_failed)) if sample_failed else chain(sample, rows)
    all_titles = _header(header_cells, style, f"{position.name}:{header_line}")
    width = len(all_titles)
    untitled = [index for index, title in enumerate(all_titles) if not title]
    titled = [index for index, title in enumerate(all_titles) if title]
    header = [all_titles[index] for index in titled]
    if nest is None:
        nest = style == "auth0"
    paths = nested_paths(header) if nest else None
    convert = auth0_cell
    name = position.name
    for line, end, cells in rows:
        if len(cells) != width:
            _lines_lost(
                policy,
                name,
                line,
                end,
                f"expected {width} fields as in the header (line {header_line}), "
                f"found {len(cells)}",
            )
            continue
        if untitled:
            filled = next((index for index in untitled if cells[index]), None)
            if filled is not None:
                _lines_lost(
                    policy,
                    name,
                    line,
                    end,
                    f"column {filled + 1} has data ({cells[filled][:40]!r}) but no title in "
                    f"the header (line {header_line}), so it has no key: give it a title",
                )
                continue
            cells = [cells[index] for index in titled]
        position.number = line
        values = (
            [cell or None for cell in cells]
            if style == "plain"
            else [convert(cell) for cell in cells]
        )
        if paths is None:
            yield dict(zip(header, values, strict=True))
        else:
            yield _nest(paths, values)
